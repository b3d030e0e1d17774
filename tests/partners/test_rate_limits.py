"""Rate limits per partner and mode: 429 with Retry-After and X-Ratelimit-* headers; Redis
shares one budget between API processes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import time

import httpx
import pytest
import redis.asyncio
from sqlalchemy import update

from coverline.app import create_app
from coverline.config import Settings
from coverline.kit.errors import RateLimited
from coverline.partners.auth import Principal
from coverline.partners.models import Partner
from coverline.partners.ratelimit import RateLimiter
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.signing import signed_headers

REDIS_URL = os.environ.get("COVERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def limit_partner(services: Services, partner: PartnerFixture, limit: str) -> None:
    async with services.database.transaction() as session:
        await session.execute(
            update(Partner).where(Partner.id == partner.id).values(rate_limit=limit)
        )
    services.authenticator.forget()


async def clear_of_a_window_edge(window: int = 60, needed: float = 10.0) -> None:
    """The limits count in sliding windows that weigh the previous fixed window by how much of
    it is still inside: just past an edge, requests made just before it count a little less
    than one each, and one more than the limit gets through. A test that counts to the limit
    starts clear of an edge (window edges fall on multiples of the window since the epoch)."""
    left = window - time.time() % window
    if left < needed:
        await asyncio.sleep(left + 0.05)


async def test_limit_per_partner_and_mode(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    await limit_partner(services, partner, "3/minute")
    await clear_of_a_window_edge()
    first = await partner.sandbox.call("GET", "bookings/")
    assert first.status_code == 200
    assert first.headers["X-Ratelimit-Limit"] == "3"
    assert first.headers["X-Ratelimit-Remaining"] == "2"
    assert int(first.headers["X-Ratelimit-Reset"]) > 0
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200
    before = await partner_state(services, partner.id)
    limited = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert limited.status_code == 429
    assert limited.json()["type"] == "rate_limit_error"
    assert limited.json()["message"] == "Rate limit of 3 requests per minute exceeded."
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-Ratelimit-Remaining"] == "0"
    assert await partner_state(services, partner.id) == before
    # Live mode and other partners have budgets of their own.
    assert (await partner.live.call("GET", "bookings/")).status_code == 200
    assert (await other_partner.sandbox.call("GET", "bookings/")).status_code == 200


async def redis_available() -> bool:
    client = redis.asyncio.from_url(REDIS_URL)
    try:
        await client.ping()
        return True
    except (OSError, redis.RedisError):
        return False
    finally:
        await client.aclose()


async def test_redis_budget_is_shared_between_processes(settings: Settings) -> None:
    if not await redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required on CI at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    shared = settings.model_copy(update={"redis_url": REDIS_URL, "rate_limit": "5/minute"})
    # Two limiters stand for two API processes: they share nothing but Redis.
    one, two = RateLimiter(shared), RateLimiter(shared)
    principal = Principal(1, "R" + secrets.token_hex(2).upper(), "sandbox", 1, None)
    await clear_of_a_window_edge()
    for limiter in (one, two, one, two, one):
        await limiter.check(principal)
    with pytest.raises(RateLimited):
        await two.check(principal)
    with pytest.raises(RateLimited):
        await one.check(principal)
    other_mode = Principal(1, principal.partner_code, "live", 2, None)
    assert (await two.check(other_mode)).remaining == 4


async def test_redis_out_of_reach_is_a_503_and_not_ready(
    settings: Settings, services: Services, partner: PartnerFixture
) -> None:
    """Like the database's, an outage of the store the limits are counted in is a moment's:
    503 with Retry-After, nothing done, and /readyz takes the process out."""
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    cut_off = dataclasses.replace(services, rate_limiter=RateLimiter(unreachable))
    app = create_app(unreachable, cut_off)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        before = await partner_state(services, partner.id)
        path = partner.sandbox.path("instant_booking/")
        credential = partner.sandbox.credential
        response = await client.post(
            path,
            json=instant_booking_request(),
            headers=signed_headers(credential.api_key, credential.api_secret, "POST", path),
        )
        assert response.status_code == 503, response.text
        assert response.json() == {
            "type": "service_unavailable",
            "message": "The rate limit store cannot be reached; try again shortly.",
            "errors": {},
        }
        assert response.headers["retry-after"] == "1"
        assert await partner_state(services, partner.id) == before
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "unavailable", "database": "ok", "redis": "unreachable"},
        )
