"""What the request guard refuses before anything else happens, with the documented error
body: a body over COVERLINE_MAX_BODY_BYTES, announced by its Content-Length or streamed in
chunks without one (413), and text that no database column takes, U+0000 and unpaired
surrogates, in the path, the query string or the body (400: PostgreSQL refuses NUL in text and
JSON, and no driver encodes a lone surrogate, so they used to end as 500s)."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from coverline.app import create_app
from coverline.config import Settings
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.dashboard.helpers import add_user, browser_for
from tests.fixtures.payloads import instant_booking_request, quote_request
from tests.fixtures.signing import signed_headers

LIMIT = 4096
TOO_LARGE = {
    "type": "invalid_request_error",
    "message": f"The request body exceeds {LIMIT} bytes.",
    "errors": {},
}


@pytest.fixture
async def small(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"max_body_bytes": LIMIT})
    app = create_app(limited, dataclasses.replace(services, settings=limited))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        yield client


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes (a quote request takes a free-text field)."""
    raw = orjson.dumps({**body, "customer_region": ""})
    filler = "x" * (size - len(raw))
    return orjson.dumps({**body, "customer_region": filler})


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# (method, path relative to the partner, what reads the body: a model, or the handler itself)
ROUTES = [
    pytest.param("POST", "quotes/", id="body model"),
    pytest.param("POST", "api_keys/", id="read by the handler"),
    pytest.param("PUT", "messaging/settings", id="another body model"),
]


@pytest.mark.parametrize(("method", "relative"), ROUTES)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_and_changes_nothing(
    small: httpx.AsyncClient,
    services: Services,
    partner: PartnerFixture,
    method: str,
    relative: str,
    framing: str,
) -> None:
    path = partner.sandbox.path(relative)
    credential = partner.sandbox.credential
    headers = {
        **signed_headers(credential.api_key, credential.api_secret, method, path),
        "Content-Type": "application/json",
        "x-idempotency-key": f"too-large-{framing}",
    }
    body = padded(quote_request(), LIMIT + 1)
    before = await partner_state(services, partner.id)
    if framing == "chunked":
        response = await small.request(method, path, content=chunks(body), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
    else:
        response = await small.request(method, path, content=body, headers=headers)
        assert response.request.headers["content-length"] == str(LIMIT + 1)
    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE
    assert await partner_state(services, partner.id) == before


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_at_the_limit_is_served(
    small: httpx.AsyncClient, services: Services, partner: PartnerFixture, framing: str
) -> None:
    path = partner.sandbox.path("quotes/")
    credential = partner.sandbox.credential
    headers = {
        **signed_headers(credential.api_key, credential.api_secret, "POST", path),
        "Content-Type": "application/json",
    }
    body = padded(quote_request(), LIMIT)
    assert len(body) == LIMIT
    content: bytes | AsyncIterator[bytes] = chunks(body) if framing == "chunked" else body
    response = await small.post(path, content=content, headers=headers)
    # The region is not one of GB's: a validation error, so the body was read and parsed.
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["customer_region"]
    assert (await partner_state(services, partner.id))["quote_packages"] == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_the_limit_comes_before_authentication(
    small: httpx.AsyncClient, partner: PartnerFixture, framing: str
) -> None:
    body = b"{" + b" " * LIMIT + b"}"
    content: bytes | AsyncIterator[bytes] = chunks(body) if framing == "chunked" else body
    response = await small.post(partner.sandbox.path("quotes/"), content=content)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE


async def test_a_dashboard_form_over_the_limit_is_413(small: httpx.AsyncClient) -> None:
    form = b"csrf_token=x&email=a%40example.com&password=" + b"p" * LIMIT
    announced = await small.post(
        "/dashboard/sign-in",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # Refused before the body is read, as a dashboard page with the dashboard's headers.
    assert announced.status_code == 413
    assert announced.headers["content-type"].startswith("text/html")
    assert TOO_LARGE["message"] in announced.text
    assert announced.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in announced.headers
    streamed = await small.post(
        "/dashboard/sign-in",
        content=chunks(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"].startswith("text/html")
    assert TOO_LARGE["message"] in streamed.text
    assert "coverline_session" not in streamed.cookies


# ------------------------------------------------------------------------------ unstorable text

UNSTORABLE = {
    "type": "invalid_request_error",
    "message": "Text in the request must be UTF-8 without U+0000 (NUL) or unpaired surrogates.",
    "errors": {},
}


def json_with(body: dict[str, Any], old: bytes, new: bytes) -> bytes:
    raw = orjson.dumps(body)
    assert old in raw
    return raw.replace(old, new)


BOOKING = instant_booking_request(partner_transaction_id="order-1")


async def book_raw(partner: PartnerFixture, old: bytes, new: bytes) -> httpx.Response:
    """An instant booking whose JSON has `old` replaced by `new`, as sent."""
    return await partner.sandbox.call(
        "POST",
        "instant_booking/",
        content=json_with(BOOKING, old, new),
        headers={"Content-Type": "application/json"},
    )


UNSTORABLE_BODIES = [
    pytest.param(b'"Mark"', b'"Ma\\u0000rk"', id="NUL in a name"),
    pytest.param(b'"order-1"', b'"order\\u0000"', id="NUL in a free-text field"),
    pytest.param(b'"Ariana Grande"', b'"Ariana\\ud800"', id="lone surrogate in a product field"),
    pytest.param(b'"event_name"', b'"event\\u0000name"', id="NUL in a key"),
    pytest.param(b'"The O2"', b'"\\udc00 O2"', id="lone low surrogate"),
]


@pytest.mark.parametrize(("old", "new"), UNSTORABLE_BODIES)
async def test_unstorable_text_in_a_body_is_400_and_changes_nothing(
    services: Services, partner: PartnerFixture, old: bytes, new: bytes
) -> None:
    before = await partner_state(services, partner.id)
    response = await book_raw(partner, old, new)
    assert response.status_code == 400, response.text
    assert response.json() == UNSTORABLE
    assert await partner_state(services, partner.id) == before


async def test_unstorable_text_in_the_path_or_query_is_400(
    services: Services, partner: PartnerFixture, http: httpx.AsyncClient
) -> None:
    before = await partner_state(services, partner.id)
    for target in (
        partner.sandbox.path("bookings/AB%00CD/"),
        partner.sandbox.path("messages/?booking=%00"),
    ):
        response = await http.get(target)
        assert response.status_code == 400, target
        assert response.json() == UNSTORABLE
    page = await http.get("/dashboard/sign-in?next=%00")
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert UNSTORABLE["message"] in page.text
    assert await partner_state(services, partner.id) == before


@pytest.mark.parametrize(
    ("old", "new", "stored"),
    [
        pytest.param(b'"Mark"', b'"Ma\\\\u0000rk"', "Ma\\u0000rk", id="an escaped backslash"),
        pytest.param(b'"Mark"', b'"Ma\\ud83d\\ude00rk"', "Ma\U0001f600rk", id="a surrogate pair"),
    ],
)
async def test_text_that_only_looks_alike_is_stored(
    partner: PartnerFixture, old: bytes, new: bytes, stored: str
) -> None:
    response = await book_raw(partner, old, new)
    assert response.status_code == 200, response.text
    assert response.json()["policyholder"]["first_name"] == stored


async def test_unstorable_text_in_a_dashboard_form_is_400(
    services: Services, partner: PartnerFixture, settings: Settings
) -> None:
    user = await add_user(services, partner_id=partner.id)
    async with browser_for(settings, services) as browser:
        await browser.sign_in(user.email)
        before = await partner_state(services, partner.id)
        page = await browser.client.post(
            f"/dashboard/{partner.code}/sandbox/webhooks",
            content=f"csrf_token={browser.csrf}&url=https%3A%2F%2Fx.example%2F&description=a%00b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert page.status_code == 400
        assert page.headers["content-type"].startswith("text/html")
        assert UNSTORABLE["message"] in page.text
        assert await partner_state(services, partner.id) == before


async def test_the_api_never_redirects_and_the_dashboard_path_does(
    services: Services, partner: PartnerFixture, http: httpx.AsyncClient
) -> None:
    """A path that matches no route, also one that only differs by slashes (an encoded `/`
    as an id), is a 404 with the error body; only the dashboard's bare path redirects."""
    booking = (
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    ).json()
    before = await partner_state(services, partner.id)
    for method, relative in (
        ("GET", "webhooks/%2F/"),
        ("GET", "webhooks//"),
        ("GET", "bookings/%2F"),
        ("GET", "webhooks%2F"),
        ("GET", "webhooks%2f"),
        ("POST", f"bookings/{booking['id']}%2Fcancel"),
        ("PATCH", f"bookings%2F{booking['id']}/"),
    ):
        response = await partner.sandbox.call(method, relative, {} if method != "GET" else None)
        assert response.status_code == 404, relative
        assert response.json() == {"type": "not_found", "message": "Not found.", "errors": {}}, (
            relative
        )
        assert "location" not in response.headers
    assert await partner_state(services, partner.id) == before
    wrong = await partner.sandbox.call("DELETE", "bookings/")
    assert (wrong.status_code, wrong.json()) == (
        405,
        {"type": "method_not_allowed", "message": "Method not allowed.", "errors": {}},
    )
    # An encoded slash in the query string is a value like any other.
    listed = await partner.sandbox.call("GET", "messages/?booking=a%2Fb")
    assert listed.status_code == 200, listed.text
    home = await http.get("/dashboard")
    assert (home.status_code, home.headers["location"]) == (307, "/dashboard/")
    back = await http.get("/dashboard/sign-in?next=%2Fdashboard%2F")
    assert back.status_code == 200


async def test_a_second_content_type_does_not_pass_unchecked(partner: PartnerFixture) -> None:
    """The guard reads the Content-Type the parsers read (the first): text no database
    stores is refused whatever follows."""
    client = partner.sandbox
    body = b'{"url": "https://hooks.example/in", "description": "nul\\u0000here"}'
    path = client.path("webhooks/")
    signed = signed_headers(client.credential.api_key, client.credential.api_secret, "POST", path)
    headers = [
        *signed.items(),
        ("content-type", "application/json"),
        ("content-type", "text/plain"),
    ]
    response = await client.http.post(path, content=body, headers=headers)
    assert (response.status_code, response.json()) == (400, UNSTORABLE)


async def test_an_encoded_body_is_refused_as_such(partner: PartnerFixture) -> None:
    response = await partner.sandbox.call(
        "POST",
        "quotes/",
        content=gzip.compress(b"{}"),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Request bodies are not accepted with a Content-Encoding (send them uncompressed)."
    )
