"""Replayed signed requests. The signature covers the Date, and a Date outside the window
(COVERLINE_SIGNATURE_MAX_SKEW_SECONDS, past or future) is refused with 401 and changes
nothing; inside the window, a state-changing request replayed with its idempotency key gets
the stored response (409) and books nothing twice."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from coverline.app import create_app
from coverline.config import Settings
from coverline.kit.clock import FrozenClock
from coverline.partners.auth import Authenticator
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.signing import http_date, signed_headers

SKEW = 120


@dataclasses.dataclass
class Replayer:
    """An application whose signature window is SKEW seconds, measured on a clock the test
    moves, and a recorder of the exact bytes of a request to send them again."""

    http: httpx.AsyncClient
    wall_clock: FrozenClock

    async def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        return await self.http.request(method, path, headers=headers, content=body)


@pytest.fixture
async def replayer(settings: Settings, services: Services) -> AsyncIterator[Replayer]:
    narrow = settings.model_copy(update={"signature_max_skew_seconds": SKEW})
    wall_clock = FrozenClock(datetime.now(UTC))
    authenticator = Authenticator(services.database, services.box, narrow, wall_clock)
    app = create_app(
        narrow, dataclasses.replace(services, settings=narrow, authenticator=authenticator)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        yield Replayer(client, wall_clock)


def unauthorised(message: str) -> dict[str, Any]:
    return {"type": "authentication_error", "message": message, "errors": {}}


OUTSIDE = unauthorised(f"The Date header is more than {SKEW} seconds from the server clock.")


def booking_request(
    partner: PartnerFixture, date: str, key: str | None
) -> tuple[str, dict[str, str], bytes]:
    path = partner.sandbox.path("instant_booking/")
    credential = partner.sandbox.credential
    headers = signed_headers(credential.api_key, credential.api_secret, "POST", path, date=date)
    headers["Content-Type"] = "application/json"
    if key is not None:
        headers["x-idempotency-key"] = key
    return path, headers, orjson.dumps(instant_booking_request())


async def test_a_signed_request_replayed_after_the_window_is_refused(
    replayer: Replayer, services: Services, partner: PartnerFixture
) -> None:
    path, headers, body = booking_request(partner, http_date(), key=None)
    first = await replayer.send("POST", path, headers, body)
    assert first.status_code == 200, first.text
    booked = await partner_state(services, partner.id)
    assert len(booked["quote_packages"]) == 1
    replayer.wall_clock.advance(timedelta(seconds=SKEW + 2))
    replayed = await replayer.send("POST", path, headers, body)
    assert replayed.status_code == 401
    assert replayed.json() == OUTSIDE
    assert await partner_state(services, partner.id) == booked


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        pytest.param(-(SKEW + 2), False, id="past, outside"),
        pytest.param(SKEW + 2, False, id="future, outside"),
        pytest.param(-(SKEW - 10), True, id="past, inside"),
        pytest.param(SKEW - 10, True, id="future, inside"),
    ],
)
async def test_the_window_is_the_configured_skew_both_ways(
    replayer: Replayer, services: Services, partner: PartnerFixture, offset: int, accepted: bool
) -> None:
    moment = replayer.wall_clock.now().timestamp() + offset
    path, headers, body = booking_request(partner, http_date(moment), key=None)
    before = await partner_state(services, partner.id)
    response = await replayer.send("POST", path, headers, body)
    if accepted:
        assert response.status_code == 200, response.text
        assert len((await partner_state(services, partner.id))["quote_packages"]) == 1
    else:
        assert response.status_code == 401
        assert response.json() == OUTSIDE
        assert await partner_state(services, partner.id) == before


async def test_the_default_window_is_five_minutes(
    http: httpx.AsyncClient, services: Services, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = partner.sandbox.path("bookings/")
    before = await partner_state(services, partner.id)
    for moment in (time.time() - 302, time.time() + 302):
        stale = signed_headers(cred.api_key, cred.api_secret, "GET", path, date=http_date(moment))
        response = await http.get(path, headers=stale)
        assert response.status_code == 401
        assert response.json() == unauthorised(
            "The Date header is more than 300 seconds from the server clock."
        )
    within = signed_headers(
        cred.api_key, cred.api_secret, "GET", path, date=http_date(time.time() - 250)
    )
    assert (await http.get(path, headers=within)).status_code == 200
    assert await partner_state(services, partner.id) == before


async def test_a_missing_or_unsigned_date_is_refused(
    http: httpx.AsyncClient, services: Services, partner: PartnerFixture
) -> None:
    """Without a signed Date a captured signature would be valid for ever."""
    cred = partner.sandbox.credential
    path = partner.sandbox.path("instant_booking/")
    body = orjson.dumps(instant_booking_request())
    before = await partner_state(services, partner.id)
    no_date = signed_headers(cred.api_key, cred.api_secret, "POST", path)
    del no_date["Date"]
    unsigned = signed_headers(
        cred.api_key, cred.api_secret, "POST", path, headers=("(request-target)",)
    )
    unparsable = {**signed_headers(cred.api_key, cred.api_secret, "POST", path), "Date": "soon"}
    for headers, message in (
        (no_date, "The Date header is missing."),
        (unsigned, "The signature must cover the date header."),
        (unparsable, "The Date header is not an HTTP date."),
    ):
        response = await http.post(path, headers=headers, content=body)
        assert response.status_code == 401
        assert response.json() == unauthorised(message)
    # A Date other than the one signed does not pass either.
    moved = signed_headers(cred.api_key, cred.api_secret, "POST", path)
    moved["Date"] = http_date(time.time() + 5)
    response = await http.post(path, headers=moved, content=body)
    assert response.status_code == 401
    assert response.json() == unauthorised("Invalid signature.")
    assert await partner_state(services, partner.id) == before


async def test_a_replay_inside_the_window_gets_the_stored_response_and_books_once(
    replayer: Replayer, services: Services, partner: PartnerFixture
) -> None:
    path, headers, body = booking_request(partner, http_date(), key="order-1187")
    first = await replayer.send("POST", path, headers, body)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    booked = await partner_state(services, partner.id)
    replayer.wall_clock.advance(timedelta(seconds=SKEW - 10))
    replayed = await replayer.send("POST", path, headers, body)
    assert replayed.status_code == 409
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == first.json()
    assert await partner_state(services, partner.id) == booked
    assert len(booked["quote_packages"]) == 1 and len(booked["idempotency_keys"]) == 1
