"""The synchronous client, `Coverline`."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Type, TypeVar, Union, cast

import httpx

from ._core import (
    NO_BODY,
    NOT_GIVEN,
    Config,
    NotGiven,
    Operation,
    Ops,
    build_request,
    clock_move,
    quote_request_body,
    read_response,
)
from ._errors import APIConnectionError, APITimeoutError
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
)
from ._pagination import iterate_pages
from ._retry import RetryPolicy

T = TypeVar("T")
log = logging.getLogger("coverline_sdk")
QuoteRefs = Sequence[Union[str, Mapping[str, Any]]]


class Coverline:
    """A client of one partner's API, in the mode of its credentials (sandbox or live).

    Arguments left out are read from `COVERLINE_BASE_URL`, `COVERLINE_PARTNER_CODE`,
    `COVERLINE_API_KEY`, `COVERLINE_API_SECRET`, `COVERLINE_AUTH` (`signature`, the default,
    or `bearer`), `COVERLINE_TIMEOUT` (seconds) and `COVERLINE_MAX_RETRIES`. `base_url` is
    the server's root (`http://127.0.0.1:8000`; a trailing `/api/` is accepted too).

    Requests are signed with `(request-target) date` and `algorithm` (hmac-sha512 by
    default), or carry the secret as a Bearer token with `auth="bearer"`. Every POST, PUT and
    PATCH carries an idempotency key, kept across retries; `retry` (or `max_retries`) says
    how failures are retried. Pass `http_client` to use an `httpx.Client` of your own
    (proxies, transports); the client then leaves closing it to you.

    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        partner_code: Optional[str] = None,
        api_key: Optional[str] = None,
        api_secret: Optional[str] = None,
        *,
        auth: Optional[str] = None,
        algorithm: str = "hmac-sha512",
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        retry: Optional[RetryPolicy] = None,
        user_agent: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        self.config = Config.resolve(
            base_url=base_url,
            partner_code=partner_code,
            api_key=api_key,
            api_secret=api_secret,
            auth=auth,
            algorithm=algorithm,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            user_agent=user_agent,
            headers=headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.config.timeout)
        self.quotes = Quotes(self)
        self.bookings = Bookings(self)
        self.renewals = Renewals(self)
        self.webhooks = Webhooks(self)
        self.messages = Messages(self)
        self.sandbox = Sandbox(self)
        self.api_keys = ApiKeys(self)
        self.auxiliary = Auxiliary(self)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
    ) -> Any:
        """Any call, signed and retried like the others; the parsed JSON answer (None when
        empty). `path` is relative to `/api/partners/{code}/` unless it starts with `/`."""
        body = NO_BODY if json is None else json
        return self._send(Ops.raw(method, path, params, body, idempotency_key))

    def _send(self, operation: Operation[T]) -> T:
        policy = self.config.retry
        retry = 0
        while True:
            request = build_request(self.config, operation, self._http)
            try:
                response = self._http.send(request)
            except httpx.TimeoutException as exc:
                error: Exception = APITimeoutError(f"{operation.method} {request.url}: timed out")
                error.__cause__ = exc
                retryable, retry_after = True, None
            except httpx.TransportError as exc:
                error = APIConnectionError(f"{operation.method} {request.url}: {exc!r}")
                error.__cause__ = exc
                retryable, retry_after = True, None
            else:
                outcome = read_response(operation, response)
                if outcome.error is None:
                    return cast(T, outcome.value)
                error, retryable = outcome.error, outcome.retryable
                retry_after = outcome.retry_after
            delay = policy.delay(retry, retry_after) if retryable else None
            if delay is None:
                raise error
            log.info(
                "retrying %s %s in %.2f s after %s", operation.method, request.url, delay, error
            )
            time.sleep(delay)
            retry += 1

    def close(self) -> None:
        """Close the HTTP connections (unless the `http_client` was given)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Coverline:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Coverline) -> None:
        self._client = client

    def _send(self, operation: Operation[T]) -> T:
        return self._client._send(operation)


class Quotes(_Resource):
    """Quote packages: `client.quotes`."""

    def create(
        self,
        request: Sequence[Mapping[str, Any]],
        *,
        currency: str,
        customer_country: Optional[str] = None,
        customer_region: Optional[str] = None,
        customer_language: Optional[str] = None,
        partner_transaction_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> QuotePackage:
        """Price one or more products (`request`: one item per product, with `policy_type`,
        `policy_type_version`, `policy_start_date` and the product's fields)."""
        body = quote_request_body(
            request,
            currency=currency,
            customer_country=customer_country,
            customer_region=customer_region,
            customer_language=customer_language,
            partner_transaction_id=partner_transaction_id,
        )
        return self._send(Ops.create_quote(body, idempotency_key))

    def get(self, package_id: str) -> QuotePackage:
        """A quote package by id."""
        return self._send(Ops.get_quote(package_id))

    def update(
        self,
        package_id: str,
        *,
        request: Optional[Sequence[Mapping[str, Any]]] = None,
        currency: Optional[str] = None,
        customer_country: Optional[str] = None,
        customer_region: Optional[str] = None,
        customer_language: Optional[str] = None,
        partner_transaction_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> QuotePackage:
        """Change a package's currency, country, language or products (`request` items name
        the quote by `quote_id`); arguments left out are not changed."""
        body = {
            "request": [dict(item) for item in request] if request is not None else None,
            "currency": currency,
            "customer_country": customer_country,
            "customer_region": customer_region,
            "customer_language": customer_language,
            "partner_transaction_id": partner_transaction_id,
        }
        return self._send(Ops.update_quote(package_id, body, idempotency_key))

    def add(
        self,
        package_id: str,
        request: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: Optional[str] = None,
    ) -> QuotePackage:
        """Add products to a package."""
        return self._send(Ops.add_quotes(package_id, request, idempotency_key))

    def delete(
        self, package_id: str, quote_ids: Sequence[str], *, idempotency_key: Optional[str] = None
    ) -> QuotePackage:
        """Remove quotes from a package."""
        return self._send(Ops.delete_quotes(package_id, quote_ids, idempotency_key))

    def opt_out(self, package_id: str, *, idempotency_key: Optional[str] = None) -> None:
        """Record that the customer declined the offer."""
        return self._send(Ops.opt_out(package_id, idempotency_key))


class Bookings(_Resource):
    """Bookings and their lifecycle: `client.bookings`."""

    def create(
        self,
        package_id: str,
        *,
        quotes: QuoteRefs,
        policyholder: Mapping[str, Any],
        require_payment_confirmation: bool = False,
        partner_transaction_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Booking:
        """Book quotes of a package (ids, or objects with `id` and e.g. `insured` or
        `instalment_plan`); the package's other quotes are declined. With
        `require_payment_confirmation` the booking waits in PENDING_PAYMENT for
        `confirm_payment`."""
        body = {
            "quotes": [{"id": q} if isinstance(q, str) else dict(q) for q in quotes],
            "policyholder": dict(policyholder),
            "require_payment_confirmation": require_payment_confirmation or None,
            "partner_transaction_id": partner_transaction_id,
        }
        return self._send(Ops.book(package_id, body, idempotency_key))

    def instant(
        self,
        request: Sequence[Mapping[str, Any]],
        *,
        currency: str,
        policyholder: Mapping[str, Any],
        customer_country: Optional[str] = None,
        customer_region: Optional[str] = None,
        customer_language: Optional[str] = None,
        partner_transaction_id: Optional[str] = None,
        require_payment_confirmation: bool = False,
        idempotency_key: Optional[str] = None,
    ) -> Booking:
        """Quote and book in one call."""
        body = quote_request_body(
            request,
            currency=currency,
            customer_country=customer_country,
            customer_region=customer_region,
            customer_language=customer_language,
            partner_transaction_id=partner_transaction_id,
        )
        body["policyholder"] = dict(policyholder)
        body["require_payment_confirmation"] = require_payment_confirmation or None
        return self._send(Ops.instant_booking(body, idempotency_key))

    def get(self, booking_id: str) -> Booking:
        """A booking by id."""
        return self._send(Ops.get_booking(booking_id))

    def list(self, *, limit: int = 20, offset: int = 0) -> Page[Booking]:
        """One page of bookings."""
        return self._send(Ops.list_bookings(limit, offset))

    def iterate(self, *, page_size: int = 100) -> Iterator[Booking]:
        """Every booking, fetched a page at a time."""
        return iterate_pages(lambda limit, offset: self.list(limit=limit, offset=offset), page_size)

    def confirm_payment(self, booking_id: str, *, idempotency_key: Optional[str] = None) -> Booking:
        """Confirm the payment of a booking made with `require_payment_confirmation`."""
        return self._send(Ops.confirm_payment(booking_id, idempotency_key))

    def modify(
        self,
        booking_id: str,
        *,
        policyholder: Optional[Mapping[str, Any]] = None,
        partner_transaction_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Booking:
        """Change what does not touch the price (policyholder fields) directly."""
        body = {
            "policyholder": dict(policyholder) if policyholder is not None else None,
            "partner_transaction_id": partner_transaction_id,
        }
        return self._send(Ops.modify_booking(booking_id, body, idempotency_key))

    def quote_for_update(
        self,
        booking_id: str,
        *,
        quotes: Sequence[Mapping[str, Any]] = (),
        policyholder: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Booking:
        """Price a change (`quotes`: `{"id": …, "update_fields": {…}}`); the booking as it
        would be, with `update_id`, `total_price_diff` and each quote's `price_diff`.
        Nothing changes until `confirm_update`."""
        body = {
            "quotes": [dict(item) for item in quotes] if quotes else None,
            "policyholder": dict(policyholder) if policyholder is not None else None,
        }
        return self._send(Ops.quote_for_update(booking_id, body, idempotency_key))

    def confirm_update(
        self, booking_id: str, update_id: str, *, idempotency_key: Optional[str] = None
    ) -> Booking:
        """Apply a change priced by `quote_for_update`."""
        return self._send(Ops.confirm_update(booking_id, update_id, idempotency_key))

    def cancel(
        self,
        booking_id: str,
        *,
        preview: bool = False,
        quote_ids: Optional[Sequence[str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Cancellation:
        """Cancel some (`quote_ids`) or all quotes now, or with `preview=True` show the
        refunds and get a `cancellation_id` for `confirm_cancellation`."""
        return self._send(Ops.cancel(booking_id, preview, quote_ids, idempotency_key))

    def confirm_cancellation(
        self, booking_id: str, cancellation_id: str, *, idempotency_key: Optional[str] = None
    ) -> Cancellation:
        """Carry out a previewed cancellation with the refunds it showed."""
        return self._send(Ops.confirm_cancellation(booking_id, cancellation_id, idempotency_key))

    def send_email(
        self,
        booking_id: str,
        *,
        event: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Optional[Message]:
        """Send the customer's e-mail again (the booking's latest, or that of `event`, such
        as `BOOKING_CANCELLED`); the message queued (None from servers that answer 202
        without a body)."""
        return self._send(Ops.send_email(booking_id, event, idempotency_key))

    def instalments(self, booking_id: str) -> Instalments:
        """The instalment schedules of a booking."""
        return self._send(Ops.get_instalments(booking_id))

    def update_instalments(
        self,
        booking_id: str,
        payments: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: Optional[str] = None,
    ) -> None:
        """Report instalment payments: `{"id": quote id, "instalment_number": n,
        "payment_status": "PAID" or "FAILED", "payment_attempted_date": …}`."""
        return self._send(Ops.update_instalments(booking_id, payments, idempotency_key))


class Renewals(_Resource):
    """Renewals of renewable policies: `client.renewals`."""

    def quote_for_renewal(
        self, booking_id: str, *, idempotency_key: Optional[str] = None
    ) -> Booking:
        """Price the next period; the booking with `renewal_id` and `renewal` (its price)."""
        return self._send(Ops.quote_for_renewal(booking_id, idempotency_key))

    def confirm(
        self, booking_id: str, renewal_id: str, *, idempotency_key: Optional[str] = None
    ) -> Booking:
        """Pay a quoted renewal."""
        return self._send(Ops.confirm_renewal(booking_id, renewal_id, idempotency_key))

    def opt_out(self, booking_id: str, *, idempotency_key: Optional[str] = None) -> Booking:
        """Stop renewing; the current period runs to its end."""
        return self._send(Ops.renewal_opt_out(booking_id, idempotency_key))


class Webhooks(_Resource):
    """Webhook endpoints and their deliveries: `client.webhooks`."""

    def list(self) -> List[WebhookEndpoint]:
        """Every endpoint of this mode."""
        return self._send(Ops.list_endpoints())

    def create(
        self,
        url: str,
        *,
        format: str = "xcover",
        signature: Optional[str] = None,
        events: Optional[Sequence[str]] = None,
        description: Optional[str] = None,
        enabled: bool = True,
        retry_schedule: Optional[Sequence[float]] = None,
        timeout_seconds: Optional[float] = None,
        max_concurrency: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> WebhookEndpoint:
        """A new endpoint; the answer carries its signing `key` and `secret`. `signature` is
        `xcover`, `mycover` or `standard` (by default the format's own); `events` None means
        every event."""
        body = {
            "url": url,
            "format": format,
            "signature": signature,
            "events": list(events) if events is not None else None,
            "description": description,
            "enabled": enabled,
            "retry_schedule": list(retry_schedule) if retry_schedule is not None else None,
            "timeout_seconds": timeout_seconds,
            "max_concurrency": max_concurrency,
        }
        return self._send(Ops.create_endpoint(body, idempotency_key))

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """An endpoint by id."""
        return self._send(Ops.get_endpoint(endpoint_id))

    def update(
        self,
        endpoint_id: str,
        *,
        url: Union[str, NotGiven] = NOT_GIVEN,
        format: Union[str, NotGiven] = NOT_GIVEN,
        signature: Union[str, NotGiven] = NOT_GIVEN,
        events: Union[Sequence[str], NotGiven, None] = NOT_GIVEN,
        description: Union[str, NotGiven, None] = NOT_GIVEN,
        enabled: Union[bool, NotGiven] = NOT_GIVEN,
        retry_schedule: Union[Sequence[float], NotGiven, None] = NOT_GIVEN,
        timeout_seconds: Union[float, NotGiven, None] = NOT_GIVEN,
        max_concurrency: Union[int, NotGiven, None] = NOT_GIVEN,
        idempotency_key: Optional[str] = None,
    ) -> WebhookEndpoint:
        """Change an endpoint; arguments left out are not changed, None resets a field
        (`events=None`: every event)."""
        body = {
            "url": url,
            "format": format,
            "signature": signature,
            "events": events if isinstance(events, (NotGiven, type(None))) else list(events),
            "description": description,
            "enabled": enabled,
            "retry_schedule": (
                retry_schedule
                if isinstance(retry_schedule, (NotGiven, type(None)))
                else list(retry_schedule)
            ),
            "timeout_seconds": timeout_seconds,
            "max_concurrency": max_concurrency,
        }
        return self._send(Ops.update_endpoint(endpoint_id, body, idempotency_key))

    def delete(self, endpoint_id: str) -> None:
        """Delete an endpoint."""
        return self._send(Ops.delete_endpoint(endpoint_id))

    def secret(self, endpoint_id: str) -> WebhookSecret:
        """The endpoint's signing key and secret."""
        return self._send(Ops.endpoint_secret(endpoint_id))

    def rotate_secret(
        self, endpoint_id: str, *, idempotency_key: Optional[str] = None
    ) -> WebhookEndpoint:
        """A new secret; the old one keeps signing beside it for 24 hours (standard scheme)."""
        return self._send(Ops.rotate_secret(endpoint_id, idempotency_key))

    def test(self, endpoint_id: str, *, idempotency_key: Optional[str] = None) -> WebhookDelivery:
        """Send a test event (`WEBHOOK_TEST` or `webhook.test`) to the endpoint."""
        return self._send(Ops.test_endpoint(endpoint_id, idempotency_key))

    def deliveries(
        self,
        endpoint_id: str,
        *,
        status: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Page[WebhookDelivery]:
        """One page of the endpoint's delivery log, newest first; `status` filters
        (`pending`, `delivering`, `succeeded`, `failed`)."""
        return self._send(Ops.list_deliveries(endpoint_id, status, limit, offset))

    def iterate_deliveries(
        self, endpoint_id: str, *, status: Optional[str] = None, page_size: int = 100
    ) -> Iterator[WebhookDelivery]:
        """Every delivery of the endpoint, fetched a page at a time."""
        return iterate_pages(
            lambda limit, offset: self.deliveries(
                endpoint_id, status=status, limit=limit, offset=offset
            ),
            page_size,
        )

    def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """One delivery with its payload and every attempt."""
        return self._send(Ops.get_delivery(endpoint_id, delivery_id))

    def redeliver(
        self, endpoint_id: str, delivery_id: str, *, idempotency_key: Optional[str] = None
    ) -> Redelivery:
        """Send a delivery again."""
        return self._send(Ops.redeliver(endpoint_id, delivery_id, idempotency_key))

    def recover(
        self,
        endpoint_id: str,
        since: Union[datetime, str],
        *,
        idempotency_key: Optional[str] = None,
    ) -> Recovery:
        """Send again every failed delivery since `since` (an aware datetime or RFC 3339)."""
        return self._send(Ops.recover(endpoint_id, since, idempotency_key))


class Messages(_Resource):
    """E-mails and SMS sent to customers: `client.messages`."""

    def list(
        self,
        *,
        booking: Optional[str] = None,
        status: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Page[Message]:
        """One page of messages, newest first; of one booking when `booking` is given, of
        one status (`stored`, `queued`, `sent`, `failed`, …) when `status` is."""
        return self._send(Ops.list_messages(booking, status, limit, offset))

    def get(self, message_id: str) -> Message:
        """One message, with its text and HTML."""
        return self._send(Ops.get_message(message_id))

    def iterate(
        self, *, booking: Optional[str] = None, status: Optional[str] = None, page_size: int = 100
    ) -> Iterator[Message]:
        """Every message (of one booking, of one status, when given), a page at a time."""
        return iterate_pages(
            lambda limit, offset: self.list(
                booking=booking, status=status, limit=limit, offset=offset
            ),
            page_size,
        )


class Sandbox(_Resource):
    """The sandbox test clock: `client.sandbox` (sandbox credentials only)."""

    def clock(self) -> SandboxClock:
        """The sandbox's current time."""
        return self._send(Ops.get_clock())

    def advance(
        self, duration: Union[str, timedelta], *, idempotency_key: Optional[str] = None
    ) -> SandboxClock:
        """Move the clock forward by an ISO 8601 duration (`P30D`) or a `timedelta`, running
        every renewal transition on the way; the clock with those transitions."""
        return self._send(Ops.move_clock(clock_move(duration, None), idempotency_key))

    def set(
        self, to: Union[datetime, str], *, idempotency_key: Optional[str] = None
    ) -> SandboxClock:
        """Move the clock forward to `to` (an aware datetime or RFC 3339 text)."""
        return self._send(Ops.move_clock(clock_move(None, to), idempotency_key))


class ApiKeys(_Resource):
    """The API keys of the calling mode: `client.api_keys`."""

    def list(self) -> List[ApiKey]:
        """Every key of this mode, without secrets."""
        return self._send(Ops.list_api_keys())

    def create(self, *, idempotency_key: Optional[str] = None) -> ApiKey:
        """A new key; its `api_secret` is shown in this answer only. The old key keeps
        working until revoked."""
        return self._send(Ops.create_api_key(idempotency_key))

    def revoke(self, api_key: str) -> ApiKey:
        """Revoke a key; it stops working at once."""
        return self._send(Ops.revoke_api_key(api_key))


class Auxiliary(_Resource):
    """Reference data: `client.auxiliary`."""

    def countries(self) -> List[Country]:
        """Every ISO 3166-1 country."""
        return self._send(Ops.countries())

    def country(self, code: str) -> Country:
        """One country by its alpha-2 code."""
        return self._send(Ops.country(code))

    def regions(self, country_code: str) -> List[Region]:
        """A country's ISO 3166-2 subdivisions."""
        return self._send(Ops.regions(country_code))

    def currencies(self) -> List[Currency]:
        """Every ISO 4217 currency."""
        return self._send(Ops.currencies())

    def languages(self) -> List[Language]:
        """Every ISO 639-1 language."""
        return self._send(Ops.languages())
