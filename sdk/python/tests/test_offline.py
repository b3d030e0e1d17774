"""Tests that need no server: signing vectors, retry rules, configuration, models, error
mapping (on httpx's mock transport) and webhook verification of messages signed here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import formatdate
from typing import Any, Callable, Dict, List

import httpx
import pytest

from coverline_sdk import (
    APIConnectionError,
    APIError,
    AsyncCoverline,
    AuthenticationError,
    ConflictError,
    Coverline,
    NotFoundError,
    QuotePackage,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ValidationError,
    Webhook,
    WebhookVerificationError,
    verify_webhook,
)
from coverline_sdk._core import encode_json, iso_duration
from coverline_sdk._models import parse_datetime
from coverline_sdk._retry import parse_retry_after
from coverline_sdk._signing import signature_header

DATE = "Tue, 01 Jan 2019 00:00:00 GMT"


def _signature(header: str) -> str:
    return header.split('signature="')[1].rstrip('"')


# ------------------------------------------------------------------------- signing vectors


def test_contract_vector_date_only_sha512() -> None:
    header = signature_header(
        "abcd", "efgh", method="get", target="/", date=DATE, headers=("date",)
    )
    assert _signature(header) == (
        "f6RnwuCiDBJiAgi7fbc4cXEeKF%2BPKiIA%2BQbKVHqQmu3KHemhLg2wV5FDceUEbzPurmnqQi5H7W9Ot1om0o7W3A%3D%3D"
    )
    assert header.startswith('Signature keyId="abcd",algorithm="hmac-sha512",headers="date",')


def test_contract_vector_sha256() -> None:
    header = signature_header(
        "key",
        "test_api_secret",
        method="get",
        target="/",
        date="Sun, 29 Aug 2021 12:07:26 GMT",
        algorithm="hmac-sha256",
        headers=("date",),
    )
    assert _signature(header) == "bfxytCfvFqito27v0%2FKcN1jBJsgnCReimKXdAWwoi0k%3D"


def test_contract_vector_request_target() -> None:
    header = signature_header(
        "abcd", "efgh", method="POST", target="/api/partners/LLODT/quotes/", date=DATE
    )
    assert _signature(header) == (
        "UcylBqzj%2BjXSzOQZKZe%2BWH%2FZOx6Lq5fk066xlnZYmbqy8zVPJNtJjoOtJQDxS%2FJ%2F2SiaY6LrxQoKbO8KJr5glg%3D%3D"
    )
    assert 'headers="(request-target) date"' in header


# ------------------------------------------------------------------------- retry rules


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_backoff_is_exponential_capped_and_bounded_by_max_retries() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff=0.5, max_backoff=2.0)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 2.0, 2.0]):
        delay = policy.delay(retry, None)
        assert delay is not None and 0.75 * ceiling <= delay <= ceiling
    assert policy.delay(5, None) is None
    assert policy.delay(0, 7.0) == 7.0
    assert RetryPolicy(max_retry_after=10).delay(0, 11.0) is None


# ------------------------------------------------------------------------- configuration


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERLINE_BASE_URL", "http://127.0.0.1:8000/api/")
    monkeypatch.setenv("COVERLINE_PARTNER_CODE", "DEMO1")
    monkeypatch.setenv("COVERLINE_API_KEY", "pk_sandbox_x")
    monkeypatch.setenv("COVERLINE_API_SECRET", "sk_sandbox_y")
    monkeypatch.setenv("COVERLINE_MAX_RETRIES", "7")
    monkeypatch.setenv("COVERLINE_TIMEOUT", "12.5")
    with Coverline() as client:
        assert client.config.base_url == "http://127.0.0.1:8000"
        assert client.config.partner_code == "DEMO1"
        assert client.config.retry.max_retries == 7
        assert client.config.timeout == 12.5
        assert client.config.auth == "signature"
    with Coverline(partner_code="OTHER", max_retries=1) as client:
        assert client.config.partner_code == "OTHER"
        assert client.config.retry.max_retries == 1


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "PARTNER_CODE", "API_KEY", "API_SECRET", "AUTH"):
        monkeypatch.delenv(f"COVERLINE_{name}", raising=False)
    with pytest.raises(ValueError, match=r"COVERLINE_PARTNER_CODE.*COVERLINE_API_KEY"):
        Coverline(base_url="http://x", api_secret="s")
    bearer = Coverline("http://x", "DEMO1", api_secret="s", auth="bearer")
    assert bearer.config.api_key is None
    with pytest.raises(ValueError, match="auth"):
        Coverline("http://x", "DEMO1", "k", "s", auth="basic")


# ------------------------------------------------------------------------- models and JSON


def test_rfc3339_parsing_keeps_offsets() -> None:
    parsed = parse_datetime("2030-03-29T09:00:00+01:00")
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=1)
    micro = parse_datetime("2021-10-02T01:55:33.737094Z")
    assert micro == datetime(2021, 10, 2, 1, 55, 33, 737094, timezone.utc)
    assert parse_datetime("2023-08-18T09:47:22.008Z") == datetime(
        2023, 8, 18, 9, 47, 22, 8000, timezone.utc
    )
    assert parse_datetime("2030-01-01T00:00:00.1234567-05:30") is not None
    assert parse_datetime("not a date") is None
    assert parse_datetime(None) is None


def test_quote_package_keeps_order_and_unpriced_slots() -> None:
    quotes: Dict[str, Any] = {str(i): {"id": f"q{i}", "price": Decimal("1.10")} for i in range(11)}
    quotes["3"] = None
    package = QuotePackage.from_json(
        {
            "id": "AAAAA-BBBBB-INS",
            "status": "RECEIVED",
            "currency": "GBP",
            "total_price": Decimal("2.01"),
            "quotes": quotes,
            "errors": {"3": {"currency": ["not sold"]}},
        }
    )
    assert [q.id if q else None for q in package.quotes][:4] == ["q0", "q1", "q2", None]
    assert package.quotes[10] is not None and package.quotes[10].id == "q10"
    assert len(package.priced_quotes) == 10
    assert package.total_price == Decimal("2.01")
    assert package["errors"]["3"] == {"currency": ["not sold"]}


def test_request_json_is_utf8_with_exact_decimals() -> None:
    body = encode_json(
        {
            "name": "Ọláolúwa",
            "price": Decimal("10.10"),
            "whole": Decimal("5"),
            "at": datetime(2030, 1, 1, tzinfo=timezone.utc),
        }
    )
    assert body == (
        '{"name":"Ọláolúwa","price":10.1,"whole":5,"at":"2030-01-01T00:00:00+00:00"}'.encode()
    )
    assert iso_duration(timedelta(days=30)) == "P30D"
    assert iso_duration(timedelta(days=1, hours=2, seconds=5)) == "P1DT2H5S"
    assert iso_duration(timedelta(minutes=90)) == "PT1H30M"


# ------------------------------------------------------------------------- errors and retries


def _client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> Coverline:
    options.setdefault("retry", RetryPolicy(max_retries=2, initial_backoff=0.01))
    return Coverline(
        "http://coverline.test",
        "LLODT",
        "pk_sandbox_key",
        "sk_sandbox_secret",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        **options,
    )


def _error(status: int, kind: str, errors: Any = None, **headers: str) -> httpx.Response:
    body = {"type": kind, "message": "An API error occurred.", "errors": errors or {}}
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req-123", **headers})


def test_errors_carry_status_type_message_fields_and_request_id() -> None:
    phone = {"policyholder": {"phone": ['The phone number should start with "+" character']}}
    cases = [
        (_error(422, "validation_error", phone), ValidationError),
        (_error(401, "authentication_error"), AuthenticationError),
        (_error(404, "not_found"), NotFoundError),
        (_error(409, "conflict"), ConflictError),
    ]
    for response, expected in cases:
        client = _client(lambda request, response=response: response)
        with pytest.raises(expected) as caught:
            client.bookings.get("AAAAA-BBBBB-INS")
        error = caught.value
        assert error.status == response.status_code
        assert error.type == response.json()["type"]
        assert error.message == "An API error occurred."
        assert error.request_id == "req-123"
        assert "req-123" in str(error)
    client = _client(lambda request: _error(422, "validation_error", phone))
    with pytest.raises(ValidationError) as caught:
        client.bookings.get("AAAAA-BBBBB-INS")
    assert caught.value.errors == phone


def test_a_replayed_409_is_the_stored_result() -> None:
    stored = {"id": "AAAAA-BBBBB-INS", "status": "CONFIRMED", "quotes": []}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json=stored, headers={"Idempotent-Replayed": "true"})

    booking = _client(handler).bookings.confirm_payment("AAAAA-BBBBB-INS")
    assert booking.id == "AAAAA-BBBBB-INS" and booking.status == "CONFIRMED"


def test_retries_keep_the_idempotency_key_and_sign_each_attempt() -> None:
    seen: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(seen) == 2:
            return _error(429, "rate_limit_error", **{"Retry-After": "0"})
        return httpx.Response(204)

    _client(handler).quotes.opt_out("AAAAA-BBBBB-INS")
    assert len(seen) == 3
    keys = {request.headers["x-idempotency-key"] for request in seen}
    assert len(keys) == 1
    for request in seen:
        assert request.headers["Authorization"].startswith('Signature keyId="pk_sandbox_key"')
        assert request.headers["X-Api-Key"] == "pk_sandbox_key"
        assert request.headers["Date"].endswith(" GMT")


def test_spent_retries_raise_the_last_error() -> None:
    calls: List[int] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _error(429, "rate_limit_error", **{"Retry-After": "0"})

    with pytest.raises(RateLimitError) as caught:
        _client(busy).bookings.list()
    assert len(calls) == 3 and caught.value.retry_after == 0.0

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(APIConnectionError):
        _client(down).bookings.list()

    with pytest.raises(ServerError) as server_error:
        _client(lambda request: httpx.Response(500, text="<html>oops</html>")).bookings.list()
    assert server_error.value.status == 500 and "oops" in server_error.value.message


def test_statuses_that_are_not_retried() -> None:
    calls: List[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _error(500, "api_error")

    with pytest.raises(ServerError):
        _client(handler).bookings.list()
    assert len(calls) == 1


def test_bearer_auth_and_gets_without_idempotency_keys() -> None:
    seen: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"count": 0, "next": None, "previous": None, "results": []})

    page = _client(handler, auth="bearer").bookings.list(limit=5, offset=10)
    assert page.count == 0 and list(page) == []
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer sk_sandbox_secret"
    assert "x-idempotency-key" not in request.headers
    assert request.url.params["limit"] == "5" and request.url.params["offset"] == "10"


async def test_the_async_client_retries_replays_and_raises() -> None:
    seen: List[httpx.Request] = []
    stored = {"id": "AAAAA-BBBBB-INS", "status": "CONFIRMED", "quotes": []}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return _error(404, "not_found")
        if len(seen) == 1:
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(409, json=stored, headers={"Idempotent-Replayed": "true"})

    async with AsyncCoverline(
        "http://coverline.test",
        "LLODT",
        "pk_sandbox_key",
        "sk_sandbox_secret",
        retry=RetryPolicy(max_retries=2, initial_backoff=0.01),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    ) as client:
        booking = await client.bookings.confirm_payment("AAAAA-BBBBB-INS")
        assert booking.status == "CONFIRMED"
        assert seen[0].headers["x-idempotency-key"] == seen[1].headers["x-idempotency-key"]
        with pytest.raises(NotFoundError) as caught:
            await client.bookings.get("AAAAA-BBBBB-INS")
        assert caught.value.request_id == "req-123"


def test_an_unexpected_answer_is_an_api_error() -> None:
    client = _client(lambda request: httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(APIError) as caught:
        client.bookings.get("AAAAA-BBBBB-INS")
    assert caught.value.status == 200 and caught.value.body == {"unexpected": True}


def test_identifiers_are_not_path_injection() -> None:
    client = _client(lambda request: httpx.Response(200, json={}))
    for bad in ("../api_keys", "a/b", "x?y", ""):
        with pytest.raises(ValueError):
            client.bookings.get(bad)


# ------------------------------------------------------------------------- webhooks


BODY = '{"event":"purchase.successful","data":{"id":"q1","amount":5000,"reference":"AAAAA-BBBBB-INS","customer":{"first_name":"Ọláolúwa","last_name":"Adéwálé"}}}'.encode()  # noqa: E501
STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 24 byt").decode()


def standard_headers(
    secrets: List[str], body: bytes, at: int, msg_id: str = "msg_1"
) -> Dict[str, str]:
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret[len("whsec_") :])
        digest = hmac.new(key, f"{msg_id}.{at}.".encode() + body, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(at),
        "Webhook-Signature": " ".join(signatures),
    }


def test_standard_scheme() -> None:
    now = int(time.time())
    headers = standard_headers([STANDARD_SECRET], BODY, now)
    event = Webhook(STANDARD_SECRET).verify(BODY, headers)
    assert event.type == "purchase.successful" and event.id == "msg_1"
    assert event.purchase is not None and event.purchase.customer is not None
    assert event.purchase.customer.first_name == "Ọláolúwa"
    assert event.purchase.amount == 5000
    assert event.timestamp == datetime.fromtimestamp(now, timezone.utc)
    assert (
        verify_webhook(BODY.decode(), list(headers.items()), secret=STANDARD_SECRET).id == "msg_1"
    )

    rotated = standard_headers([OTHER_SECRET, STANDARD_SECRET], BODY, now)
    assert Webhook(STANDARD_SECRET).verify(BODY, rotated).type == "purchase.successful"
    assert Webhook(OTHER_SECRET).verify(BODY, rotated).type == "purchase.successful"

    failures = [
        (BODY.replace("Adéwálé".encode(), b"Adewale"), headers, {}),
        (BODY, headers, {"secret": OTHER_SECRET}),
        (BODY, {**headers, "Webhook-Timestamp": str(now + 1)}, {}),
        (BODY, {**headers, "Webhook-Id": "msg_2"}, {}),
        (BODY, standard_headers([STANDARD_SECRET], BODY, now - 301), {}),
        (BODY, standard_headers([STANDARD_SECRET], BODY, now + 301), {}),
        (BODY, {k: v for k, v in headers.items() if k != "Webhook-Signature"}, {}),
        (BODY, {**headers, "Webhook-Signature": "v1,not base64!"}, {}),
    ]
    for body, bad_headers, options in failures:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body, bad_headers, secret=options.get("secret", STANDARD_SECRET))
    stale = standard_headers([STANDARD_SECRET], BODY, now - 3600)
    assert Webhook(STANDARD_SECRET, tolerance=7200).verify(BODY, stale).id == "msg_1"


def xcover_headers(
    secret: str, key: str, at: float, algorithm: str = "hmac-sha256"
) -> Dict[str, str]:
    date = formatdate(at, usegmt=True)
    digestmod = {"hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}[algorithm]
    digest = hmac.new(secret.encode(), f"date: {date}".encode(), digestmod).digest()
    encoded = base64.b64encode(digest).decode().replace("+", "%2B").replace("/", "%2F")
    encoded = encoded.replace("=", "%3D")
    return {
        "Date": date,
        "X-Api-Key": key,
        "Authorization": (
            f'Signature keyId="{key}",algorithm="{algorithm}",headers="date",signature="{encoded}"'
        ),
    }


def test_xcover_scheme() -> None:
    body = json.dumps(
        {
            "event": "BOOKING_CREATED",
            "payload": {"id": "AAAAA-BBBBB-INS", "status": "CONFIRMED", "quotes": []},
        }
    ).encode()
    now = time.time()
    for algorithm in ("hmac-sha256", "hmac-sha512"):
        headers = xcover_headers(STANDARD_SECRET, "whk_1", now, algorithm)
        event = Webhook(STANDARD_SECRET, scheme="xcover", key="whk_1").verify(body, headers)
        assert event.type == "BOOKING_CREATED" and event.format == "xcover"
        assert event.booking is not None and event.booking.id == "AAAAA-BBBBB-INS"
    headers = xcover_headers(STANDARD_SECRET, "whk_1", now)
    failures = [
        (headers, {"secret": OTHER_SECRET}),
        (headers, {"key": "whk_2"}),
        ({**headers, "X-Api-Key": "whk_2"}, {}),
        ({**headers, "Date": formatdate(now + 1, usegmt=True)}, {}),
        (xcover_headers(STANDARD_SECRET, "whk_1", now - 301), {}),
        ({k: v for k, v in headers.items() if k != "Authorization"}, {}),
        ({**headers, "Authorization": "Bearer x"}, {}),
    ]
    for bad_headers, options in failures:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(
                body,
                bad_headers,
                secret=options.get("secret", STANDARD_SECRET),
                scheme="xcover",
                key=options.get("key", "whk_1"),
            )


def test_mycover_scheme() -> None:
    secret = "sk_sandbox_partner_secret"
    signature = hmac.new(secret.encode(), BODY, hashlib.sha512).hexdigest()
    headers = {"x-mycoverai-signature": signature, "webhook-id": "msg_9"}
    event = verify_webhook(BODY, headers, secret=secret, scheme="mycover")
    assert event.format == "mycover" and event.id == "msg_9"
    assert event.purchase is not None and event.purchase.reference == "AAAAA-BBBBB-INS"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY + b" ", headers, secret=secret, scheme="mycover")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, headers, secret=secret + "x", scheme="mycover")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(
            b"[1]",
            {
                "x-mycoverai-signature": hmac.new(
                    secret.encode(), b"[1]", hashlib.sha512
                ).hexdigest()
            },
            secret=secret,
            scheme="mycover",
        )


def test_verifier_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Webhook(STANDARD_SECRET, scheme="other")
    with pytest.raises(ValueError):
        Webhook("whsec_%%%")
    with pytest.raises(ValueError):
        Webhook([])
