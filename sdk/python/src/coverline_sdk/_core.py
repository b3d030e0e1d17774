"""What the synchronous and asynchronous clients share: configuration, the operations (path,
body, how to read the answer), request signing and the reading of responses. Only sending
and waiting differ between the two clients."""

from __future__ import annotations

import json
import os
import platform
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Generic, List, Mapping, Optional, Sequence, TypeVar, Union

import httpx

from ._errors import APIError, RateLimitError, error_class
from ._models import (
    ApiKey,
    Booking,
    Cancellation,
    Country,
    Currency,
    Instalments,
    Language,
    Message,
    Page,
    QuotePackage,
    Recovery,
    Redelivery,
    Region,
    SandboxClock,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
    page_of,
)
from ._retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from ._signing import ALGORITHMS, http_date, signature_header

__version__ = "0.1.0"

T = TypeVar("T")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
IDEMPOTENCY_HEADER = "x-idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
REQUEST_ID_HEADER = "x-request-id"
AUTH_MODES = ("signature", "bearer")
ENV_PREFIX = "COVERLINE_"


class NotGiven:
    """The type of `NOT_GIVEN`: an argument left out, as opposed to one given as None."""

    _instance: Optional[NotGiven] = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


# ------------------------------------------------------------------------------- configuration


def _env(name: str) -> Optional[str]:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value else None


@dataclass(frozen=True)
class Config:
    """A client's settings, resolved from its arguments, then `COVERLINE_*` variables."""

    base_url: str
    partner_code: str
    api_key: Optional[str]
    api_secret: str
    auth: str
    algorithm: str
    timeout: float
    retry: RetryPolicy
    user_agent: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        *,
        base_url: Optional[str],
        partner_code: Optional[str],
        api_key: Optional[str],
        api_secret: Optional[str],
        auth: Optional[str],
        algorithm: str,
        timeout: Optional[float],
        max_retries: Optional[int],
        retry: Optional[RetryPolicy],
        user_agent: Optional[str],
        headers: Optional[Mapping[str, str]],
    ) -> Config:
        base_url = base_url or _env("BASE_URL")
        partner_code = partner_code or _env("PARTNER_CODE")
        api_key = api_key or _env("API_KEY")
        api_secret = api_secret or _env("API_SECRET")
        auth = (auth or _env("AUTH") or "signature").lower()
        missing = [
            name
            for name, value in (
                ("base_url (COVERLINE_BASE_URL)", base_url),
                ("partner_code (COVERLINE_PARTNER_CODE)", partner_code),
                ("api_secret (COVERLINE_API_SECRET)", api_secret),
            )
            if not value
        ]
        if auth == "signature" and not api_key:
            missing.append("api_key (COVERLINE_API_KEY)")
        if missing:
            raise ValueError("Coverline client settings missing: " + ", ".join(missing) + ".")
        if auth not in AUTH_MODES:
            raise ValueError(f"auth must be 'signature' or 'bearer', not {auth!r}.")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"Unsupported signature algorithm {algorithm!r}.")
        if timeout is None:
            timeout = float(_env("TIMEOUT") or 60.0)
        if retry is None:
            env_retries = _env("MAX_RETRIES")
            retry = RetryPolicy()
            if max_retries is None and env_retries is not None:
                max_retries = int(env_retries)
            if max_retries is not None:
                retry = RetryPolicy(max_retries=max_retries)
        assert base_url is not None and partner_code is not None and api_secret is not None
        return cls(
            base_url=_server_root(base_url),
            partner_code=partner_code,
            api_key=api_key,
            api_secret=api_secret,
            auth=auth,
            algorithm=algorithm,
            timeout=timeout,
            retry=retry,
            user_agent=user_agent
            or f"coverline-sdk-python/{__version__} python/{platform.python_version()}",
            headers=dict(headers or {}),
        )


def _server_root(base_url: str) -> str:
    """`http://host:8000`, also from `http://host:8000/api/` (XCover's `XC_BASE_URL` form)."""
    root = base_url.rstrip("/")
    if root.endswith("/api"):
        root = root[: -len("/api")]
    return root


# ------------------------------------------------------------------------------- JSON


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    raw = getattr(value, "raw", None)
    if isinstance(raw, Mapping):
        return dict(raw)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(document: Any) -> bytes:
    """UTF-8 JSON, non-ASCII characters unescaped; `Decimal`, `datetime`, `date` and
    `timedelta` (as an ISO 8601 duration) allowed."""
    return json.dumps(
        document, ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode("utf-8")


def decode_json(content: bytes) -> Any:
    """JSON with every number that has a fraction as a `Decimal`."""
    return json.loads(content, parse_float=Decimal)


def iso_duration(delta: timedelta) -> str:
    """`P1DT2H3M4S`-style text for a positive `timedelta` (whole seconds, rounded up)."""
    total = int(-(-delta.total_seconds() // 1))
    if total <= 0:
        raise ValueError("A duration must be positive.")
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"P{days}D" if days else "P"
    clock = "".join(
        f"{amount}{unit}"
        for amount, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
        if amount
    )
    return text + ("T" + clock if clock else "")


def rfc3339(value: Union[datetime, str]) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("Give an aware datetime (with a tzinfo).")
    return value.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------- operations

NO_BODY: Any = object()


@dataclass
class Operation(Generic[T]):
    """One API call: method, path (relative to the partner's root unless it starts with
    `/`), query, body, and how to read a successful answer. A write gets its idempotency key
    when the operation is made, so that every retry of it carries the same key."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Any = NO_BODY
    params: Optional[Mapping[str, Any]] = None
    idempotency_key: Optional[str] = None
    content: Optional[bytes] = None

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.body is not NO_BODY:
            self.content = encode_json(self.body)
        if self.method in WRITE_METHODS and self.idempotency_key is None:
            self.idempotency_key = str(uuid.uuid4())


def _none(_: Any) -> None:
    return None


def _message_or_none(data: Any) -> Optional[Message]:
    """XCover answers `send_email` with an empty body; Coverline with the message queued."""
    if isinstance(data, Mapping) and "id" in data:
        return Message.from_json(data)
    return None


def _raw(data: Any) -> Any:
    return data


def _results(parse: Callable[[Mapping[str, Any]], T]) -> Callable[[Any], List[T]]:
    def read(data: Any) -> List[T]:
        items = data.get("results", []) if isinstance(data, Mapping) else data
        return [parse(item) for item in items or [] if isinstance(item, Mapping)]

    return read


def _page(parse: Callable[[Mapping[str, Any]], T]) -> Callable[[Any], Page[T]]:
    def read(data: Any) -> Page[T]:
        if isinstance(data, list):
            data = {"count": len(data), "results": data, "next": None, "previous": None}
        return page_of(data, parse)

    return read


def _clean(document: Mapping[str, Any]) -> dict[str, Any]:
    """The body without the arguments that were not given (None or NOT_GIVEN)."""
    return {
        key: value
        for key, value in document.items()
        if value is not None and not isinstance(value, NotGiven)
    }


def _patch(document: Mapping[str, Any]) -> dict[str, Any]:
    """A PATCH body: NOT_GIVEN left out, None sent as null."""
    return {key: value for key, value in document.items() if not isinstance(value, NotGiven)}


def _quote_refs(quotes: Sequence[Union[str, Mapping[str, Any]]]) -> List[Any]:
    return [{"id": quote} if isinstance(quote, str) else dict(quote) for quote in quotes]


def _segment(value: str) -> str:
    """A path segment; ids are URL-safe, anything else is refused rather than escaped."""
    text = str(value)
    if not text or any(ch in text for ch in "/?#%") or text in {".", ".."}:
        raise ValueError(f"{value!r} is not a valid identifier.")
    return text


class Ops:
    """Builders of every operation of the partner API."""

    # quotes ------------------------------------------------------------------------------
    @staticmethod
    def create_quote(body: Mapping[str, Any], key: Optional[str]) -> Operation[QuotePackage]:
        return Operation("POST", "quotes/", QuotePackage.from_json, _clean(body), None, key)

    @staticmethod
    def get_quote(package_id: str) -> Operation[QuotePackage]:
        return Operation("GET", f"quotes/{_segment(package_id)}/", QuotePackage.from_json)

    @staticmethod
    def update_quote(
        package_id: str, body: Mapping[str, Any], key: Optional[str]
    ) -> Operation[QuotePackage]:
        path = f"quotes/{_segment(package_id)}/"
        return Operation("PATCH", path, QuotePackage.from_json, _clean(body), None, key)

    @staticmethod
    def add_quotes(
        package_id: str, request: Sequence[Mapping[str, Any]], key: Optional[str]
    ) -> Operation[QuotePackage]:
        path = f"quotes/{_segment(package_id)}/add/"
        body = {"request": [dict(item) for item in request]}
        return Operation("POST", path, QuotePackage.from_json, body, None, key)

    @staticmethod
    def delete_quotes(
        package_id: str, quote_ids: Sequence[str], key: Optional[str]
    ) -> Operation[QuotePackage]:
        path = f"quotes/{_segment(package_id)}/delete/"
        body = {"quotes": [{"id": quote_id} for quote_id in quote_ids]}
        return Operation("POST", path, QuotePackage.from_json, body, None, key)

    @staticmethod
    def opt_out(package_id: str, key: Optional[str]) -> Operation[None]:
        path = f"bookings/{_segment(package_id)}/opt_out"
        return Operation("POST", path, _none, NO_BODY, None, key)

    # bookings ----------------------------------------------------------------------------
    @staticmethod
    def book(package_id: str, body: Mapping[str, Any], key: Optional[str]) -> Operation[Booking]:
        path = f"bookings/{_segment(package_id)}/"
        return Operation("POST", path, Booking.from_json, _clean(body), None, key)

    @staticmethod
    def instant_booking(body: Mapping[str, Any], key: Optional[str]) -> Operation[Booking]:
        return Operation("POST", "instant_booking/", Booking.from_json, _clean(body), None, key)

    @staticmethod
    def get_booking(booking_id: str) -> Operation[Booking]:
        return Operation("GET", f"bookings/{_segment(booking_id)}/", Booking.from_json)

    @staticmethod
    def list_bookings(limit: int, offset: int) -> Operation[Page[Booking]]:
        params = {"limit": limit, "offset": offset}
        return Operation("GET", "bookings/", _page(Booking.from_json), params=params)

    @staticmethod
    def confirm_payment(booking_id: str, key: Optional[str]) -> Operation[Booking]:
        path = f"bookings/{_segment(booking_id)}/confirm"
        return Operation("PUT", path, Booking.from_json, NO_BODY, None, key)

    @staticmethod
    def modify_booking(
        booking_id: str, body: Mapping[str, Any], key: Optional[str]
    ) -> Operation[Booking]:
        path = f"bookings/{_segment(booking_id)}/"
        return Operation("PATCH", path, Booking.from_json, _clean(body), None, key)

    @staticmethod
    def quote_for_update(
        booking_id: str, body: Mapping[str, Any], key: Optional[str]
    ) -> Operation[Booking]:
        path = f"bookings/{_segment(booking_id)}/quote_for_update"
        return Operation("PATCH", path, Booking.from_json, _clean(body), None, key)

    @staticmethod
    def confirm_update(booking_id: str, update_id: str, key: Optional[str]) -> Operation[Booking]:
        path = f"bookings/{_segment(booking_id)}/confirm_update/{_segment(update_id)}/"
        return Operation("POST", path, Booking.from_json, {}, None, key)

    @staticmethod
    def cancel(
        booking_id: str,
        preview: bool,
        quote_ids: Optional[Sequence[str]],
        key: Optional[str],
    ) -> Operation[Cancellation]:
        body: dict[str, Any] = {"preview": True} if preview else {}
        if quote_ids is not None:
            body["quotes"] = [{"id": quote_id} for quote_id in quote_ids]
        path = f"bookings/{_segment(booking_id)}/cancel"
        return Operation("POST", path, Cancellation.from_json, body, None, key)

    @staticmethod
    def confirm_cancellation(
        booking_id: str, cancellation_id: str, key: Optional[str]
    ) -> Operation[Cancellation]:
        path = f"bookings/{_segment(booking_id)}/confirm_cancellation/{_segment(cancellation_id)}/"
        return Operation("POST", path, Cancellation.from_json, {}, None, key)

    @staticmethod
    def send_email(
        booking_id: str, event: Optional[str], key: Optional[str]
    ) -> Operation[Optional[Message]]:
        body = {"event": event} if event is not None else {}
        path = f"bookings/{_segment(booking_id)}/send_email"
        return Operation("POST", path, _message_or_none, body, None, key)

    @staticmethod
    def get_instalments(booking_id: str) -> Operation[Instalments]:
        path = f"bookings/{_segment(booking_id)}/instalments/"
        return Operation("GET", path, Instalments.from_json)

    @staticmethod
    def update_instalments(
        booking_id: str, payments: Sequence[Mapping[str, Any]], key: Optional[str]
    ) -> Operation[None]:
        path = f"bookings/{_segment(booking_id)}/instalments/"
        body = {"quotes": [dict(payment) for payment in payments]}
        return Operation("POST", path, _none, body, None, key)

    # renewals ----------------------------------------------------------------------------
    @staticmethod
    def quote_for_renewal(booking_id: str, key: Optional[str]) -> Operation[Booking]:
        path = f"renewals/{_segment(booking_id)}/quote_for_renewal/"
        return Operation("PATCH", path, Booking.from_json, NO_BODY, None, key)

    @staticmethod
    def confirm_renewal(booking_id: str, renewal_id: str, key: Optional[str]) -> Operation[Booking]:
        path = f"renewals/{_segment(booking_id)}/confirm/{_segment(renewal_id)}/"
        return Operation("POST", path, Booking.from_json, NO_BODY, None, key)

    @staticmethod
    def renewal_opt_out(booking_id: str, key: Optional[str]) -> Operation[Booking]:
        path = f"renewals/{_segment(booking_id)}/opt_out/"
        return Operation("POST", path, Booking.from_json, NO_BODY, None, key)

    # webhooks ----------------------------------------------------------------------------
    @staticmethod
    def list_endpoints() -> Operation[List[WebhookEndpoint]]:
        return Operation("GET", "webhooks/", _results(WebhookEndpoint.from_json))

    @staticmethod
    def create_endpoint(body: Mapping[str, Any], key: Optional[str]) -> Operation[WebhookEndpoint]:
        return Operation("POST", "webhooks/", WebhookEndpoint.from_json, _clean(body), None, key)

    @staticmethod
    def get_endpoint(endpoint_id: str) -> Operation[WebhookEndpoint]:
        return Operation("GET", f"webhooks/{_segment(endpoint_id)}/", WebhookEndpoint.from_json)

    @staticmethod
    def update_endpoint(
        endpoint_id: str, body: Mapping[str, Any], key: Optional[str]
    ) -> Operation[WebhookEndpoint]:
        path = f"webhooks/{_segment(endpoint_id)}/"
        return Operation("PATCH", path, WebhookEndpoint.from_json, _patch(body), None, key)

    @staticmethod
    def delete_endpoint(endpoint_id: str) -> Operation[None]:
        return Operation("DELETE", f"webhooks/{_segment(endpoint_id)}/", _none)

    @staticmethod
    def endpoint_secret(endpoint_id: str) -> Operation[WebhookSecret]:
        path = f"webhooks/{_segment(endpoint_id)}/secret"
        return Operation("GET", path, WebhookSecret.from_json)

    @staticmethod
    def rotate_secret(endpoint_id: str, key: Optional[str]) -> Operation[WebhookEndpoint]:
        path = f"webhooks/{_segment(endpoint_id)}/rotate_secret"
        return Operation("POST", path, WebhookEndpoint.from_json, NO_BODY, None, key)

    @staticmethod
    def test_endpoint(endpoint_id: str, key: Optional[str]) -> Operation[WebhookDelivery]:
        path = f"webhooks/{_segment(endpoint_id)}/test"
        return Operation("POST", path, WebhookDelivery.from_json, NO_BODY, None, key)

    @staticmethod
    def list_deliveries(
        endpoint_id: str, status: Optional[str], limit: int, offset: int
    ) -> Operation[Page[WebhookDelivery]]:
        params = _clean({"status": status, "limit": limit, "offset": offset})
        path = f"webhooks/{_segment(endpoint_id)}/deliveries/"
        return Operation("GET", path, _page(WebhookDelivery.from_json), params=params)

    @staticmethod
    def get_delivery(endpoint_id: str, delivery_id: str) -> Operation[WebhookDelivery]:
        path = f"webhooks/{_segment(endpoint_id)}/deliveries/{_segment(delivery_id)}/"
        return Operation("GET", path, WebhookDelivery.from_json)

    @staticmethod
    def redeliver(endpoint_id: str, delivery_id: str, key: Optional[str]) -> Operation[Redelivery]:
        path = f"webhooks/{_segment(endpoint_id)}/deliveries/{_segment(delivery_id)}/redeliver"
        return Operation("POST", path, Redelivery.from_json, NO_BODY, None, key)

    @staticmethod
    def recover(
        endpoint_id: str, since: Union[datetime, str], key: Optional[str]
    ) -> Operation[Recovery]:
        path = f"webhooks/{_segment(endpoint_id)}/recover"
        body = {"since": rfc3339(since)}
        return Operation("POST", path, Recovery.from_json, body, None, key)

    # messages ----------------------------------------------------------------------------
    @staticmethod
    def list_messages(
        booking: Optional[str], status: Optional[str], limit: int, offset: int
    ) -> Operation[Page[Message]]:
        params = _clean({"booking": booking, "status": status, "limit": limit, "offset": offset})
        return Operation("GET", "messages/", _page(Message.from_json), params=params)

    @staticmethod
    def get_message(message_id: str) -> Operation[Message]:
        return Operation("GET", f"messages/{_segment(message_id)}/", Message.from_json)

    # sandbox -----------------------------------------------------------------------------
    @staticmethod
    def get_clock() -> Operation[SandboxClock]:
        return Operation("GET", "sandbox/clock", SandboxClock.from_json)

    @staticmethod
    def move_clock(body: Mapping[str, Any], key: Optional[str]) -> Operation[SandboxClock]:
        return Operation("POST", "sandbox/clock", SandboxClock.from_json, dict(body), None, key)

    # API keys ----------------------------------------------------------------------------
    @staticmethod
    def list_api_keys() -> Operation[List[ApiKey]]:
        return Operation("GET", "api_keys/", _results(ApiKey.from_json))

    @staticmethod
    def create_api_key(key: Optional[str]) -> Operation[ApiKey]:
        return Operation("POST", "api_keys/", ApiKey.from_json, NO_BODY, None, key)

    @staticmethod
    def revoke_api_key(api_key: str) -> Operation[ApiKey]:
        return Operation("DELETE", f"api_keys/{_segment(api_key)}/", ApiKey.from_json)

    # auxiliary ---------------------------------------------------------------------------
    @staticmethod
    def countries() -> Operation[List[Country]]:
        return Operation("GET", "/api/auxiliary/countries/", _results(Country.from_json))

    @staticmethod
    def country(code: str) -> Operation[Country]:
        path = f"/api/auxiliary/countries/{_segment(code)}/"
        return Operation("GET", path, Country.from_json)

    @staticmethod
    def regions(country_code: str) -> Operation[List[Region]]:
        path = f"/api/auxiliary/countries/{_segment(country_code)}/regions/"
        return Operation("GET", path, _results(Region.from_json))

    @staticmethod
    def currencies() -> Operation[List[Currency]]:
        return Operation("GET", "/api/auxiliary/currencies/", _results(Currency.from_json))

    @staticmethod
    def languages() -> Operation[List[Language]]:
        return Operation("GET", "/api/auxiliary/languages/", _results(Language.from_json))

    # anything else -----------------------------------------------------------------------
    @staticmethod
    def raw(
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]],
        body: Any,
        key: Optional[str],
    ) -> Operation[Any]:
        return Operation(method, path, _raw, body, params, key)


def quote_request_body(
    request: Sequence[Mapping[str, Any]],
    *,
    currency: str,
    customer_country: Optional[str],
    customer_region: Optional[str],
    customer_language: Optional[str],
    partner_transaction_id: Optional[str],
) -> dict[str, Any]:
    return {
        "request": [dict(item) for item in request],
        "currency": currency,
        "customer_country": customer_country,
        "customer_region": customer_region,
        "customer_language": customer_language,
        "partner_transaction_id": partner_transaction_id,
    }


def clock_move(
    advance: Union[str, timedelta, None], to: Union[datetime, str, None]
) -> dict[str, Any]:
    if advance is not None:
        return {"advance": advance if isinstance(advance, str) else iso_duration(advance)}
    assert to is not None
    return {"to": rfc3339(to)}


# ------------------------------------------------------------------------------- the wire


def build_request(
    config: Config, operation: Operation[Any], http: Union[httpx.Client, httpx.AsyncClient]
) -> httpx.Request:
    """The request for one attempt, signed now: every retry gets a fresh Date."""
    if operation.path.startswith("/"):
        url = config.base_url + operation.path
    else:
        url = f"{config.base_url}/api/partners/{_segment(config.partner_code)}/{operation.path}"
    headers = {
        "Accept": "application/json",
        "User-Agent": config.user_agent,
        **config.headers,
    }
    if operation.content is not None:
        headers["Content-Type"] = "application/json"
    if operation.idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = operation.idempotency_key
    params = _clean(operation.params or {})
    request = http.build_request(
        operation.method, url, params=params or None, content=operation.content, headers=headers
    )
    date = http_date()
    request.headers["Date"] = date
    if config.auth == "bearer":
        request.headers["Authorization"] = f"Bearer {config.api_secret}"
    else:
        assert config.api_key is not None
        request.headers["X-Api-Key"] = config.api_key
        request.headers["Authorization"] = signature_header(
            config.api_key,
            config.api_secret,
            method=operation.method,
            target=request.url.raw_path.decode("ascii"),
            date=date,
            algorithm=config.algorithm,
        )
    return request


@dataclass
class Outcome(Generic[T]):
    """What one attempt came to: a value, or an error and whether to try again."""

    value: Optional[T] = None
    error: Optional[Exception] = None
    retryable: bool = False
    retry_after: Optional[float] = None


def _body_of(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return decode_json(response.content)
    except ValueError:
        return response.text


def read_response(operation: Operation[T], response: httpx.Response) -> Outcome[T]:
    """A success (2xx, or 409 with `Idempotent-Replayed: true`: the stored answer of the
    first attempt) parsed into its model; otherwise the error and whether to retry."""
    status = response.status_code
    replayed = status == 409 and response.headers.get(REPLAYED_HEADER, "").lower() == "true"
    if 200 <= status < 300 or replayed:
        body = _body_of(response)
        if body is None and operation.parse is not _raw:
            body = {}  # 204, or a replayed 204
        try:
            return Outcome(value=operation.parse(body))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            error = APIError(
                f"The {status} answer to {operation.method} {operation.path} is not the "
                f"expected JSON ({exc!r}).",
                status=status,
                request_id=response.headers.get(REQUEST_ID_HEADER),
                body=body,
                headers=dict(response.headers),
            )
            return Outcome(error=error)
    return Outcome(
        error=api_error(response),
        retryable=status in RETRY_STATUSES,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def api_error(response: httpx.Response) -> APIError:
    body = _body_of(response)
    kind = message = None
    errors: Mapping[str, Any] = {}
    if isinstance(body, Mapping):
        kind = body.get("type") if isinstance(body.get("type"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
        if isinstance(body.get("errors"), Mapping):
            errors = body["errors"]
    if message is None:
        text = body if isinstance(body, str) else ""
        message = text[:500] or response.reason_phrase or f"HTTP {response.status_code}"
    common: dict[str, Any] = {
        "status": response.status_code,
        "type": kind,
        "errors": errors,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
        "body": body,
        "headers": dict(response.headers),
    }
    cls = error_class(response.status_code)
    if cls is RateLimitError:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitError(message, retry_after=retry_after, **common)
    return cls(message, **common)
