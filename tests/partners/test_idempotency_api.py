"""Idempotency keys (API-CONTRACT §5)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from coverline.partners.models import IdempotencyKey
from coverline.quotes.models import QuotePackage
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import instant_booking_request, policyholder


async def bookings_count(services: Services, partner: PartnerFixture) -> int:
    async with services.database.reading() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(QuotePackage)
            .where(QuotePackage.partner_id == partner.id, QuotePackage.is_booking.is_(True))
        )
    return int(count or 0)


async def test_replay_returns_the_stored_response_with_409(
    services: Services, partner: PartnerFixture
) -> None:
    body = instant_booking_request()
    first = await partner.sandbox.call("POST", "instant_booking/", body, idempotency_key="k-1")
    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    state = await partner_state(services, partner.id)
    replay = await partner.sandbox.call("POST", "instant_booking/", body, idempotency_key="k-1")
    assert replay.status_code == 409
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert await bookings_count(services, partner) == 1
    assert await partner_state(services, partner.id) == state


async def test_same_key_with_another_body_is_422(
    services: Services, partner: PartnerFixture
) -> None:
    body = instant_booking_request()
    assert (
        await partner.sandbox.call("POST", "instant_booking/", body, idempotency_key="k-2")
    ).status_code == 200
    state = await partner_state(services, partner.id)
    other = instant_booking_request(policyholder=policyholder(first_name="Other"))
    response = await partner.sandbox.call("POST", "instant_booking/", other, idempotency_key="k-2")
    assert response.status_code == 422
    assert response.json() == {
        "type": "validation_error",
        "message": "This idempotency key was used with a different request.",
        "errors": {"x-idempotency-key": ["Keys must not be reused for other requests."]},
    }
    assert await partner_state(services, partner.id) == state


async def test_key_in_flight_is_423(services: Services, partner: PartnerFixture) -> None:
    from coverline.partners.idempotency import request_digest

    body = instant_booking_request()
    path = f"/api/partners/{partner.code}/instant_booking/"
    import orjson

    now = services.clock.now()
    async with services.database.transaction() as session:
        session.add(
            IdempotencyKey(
                partner_id=partner.id,
                mode="sandbox",
                key="k-3",
                request_digest=request_digest("POST", path, orjson.dumps(body)),
                state="in_flight",
                locked_at=now,
                created_at=now,
                expires_at=now + timedelta(hours=48),
            )
        )
    state = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "POST",
        "instant_booking/",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        idempotency_key="k-3",
    )
    assert response.status_code == 423
    assert response.json()["type"] == "idempotency_error"
    assert await partner_state(services, partner.id) == state


async def test_abandoned_key_is_taken_over_after_its_lock_expires(
    services: Services, partner: PartnerFixture
) -> None:
    import orjson

    from coverline.partners.idempotency import request_digest

    body = orjson.dumps(instant_booking_request())
    path = f"/api/partners/{partner.code}/instant_booking/"
    long_ago = services.clock.now() - timedelta(minutes=5)
    async with services.database.transaction() as session:
        session.add(
            IdempotencyKey(
                partner_id=partner.id,
                mode="sandbox",
                key="k-4",
                request_digest=request_digest("POST", path, body),
                state="in_flight",
                locked_at=long_ago,
                created_at=long_ago,
                expires_at=long_ago + timedelta(hours=48),
            )
        )
    response = await partner.sandbox.call(
        "POST",
        "instant_booking/",
        content=body,
        headers={"Content-Type": "application/json"},
        idempotency_key="k-4",
    )
    assert response.status_code == 200
    assert await bookings_count(services, partner) == 1


async def test_a_refused_request_releases_its_key(
    services: Services, partner: PartnerFixture
) -> None:
    bad = instant_booking_request(currency="XYZ")
    refused = await partner.sandbox.call("POST", "instant_booking/", bad, idempotency_key="k-5")
    assert refused.status_code == 422
    assert (await partner_state(services, partner.id))["idempotency_keys"] == []
    good = instant_booking_request()
    accepted = await partner.sandbox.call("POST", "instant_booking/", good, idempotency_key="k-5")
    assert accepted.status_code == 200


async def test_keys_are_per_mode_and_partner(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    body = instant_booking_request()
    for client in (partner.sandbox, partner.live, other_partner.sandbox):
        response = await client.call("POST", "instant_booking/", body, idempotency_key="shared")
        assert response.status_code == 200
    assert await bookings_count(services, partner) == 2


async def test_concurrent_repeats_book_once(services: Services, partner: PartnerFixture) -> None:
    body = instant_booking_request()
    responses = await asyncio.gather(
        *(
            partner.sandbox.call("POST", "instant_booking/", body, idempotency_key="k-race")
            for _ in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 409, 423}
    assert await bookings_count(services, partner) == 1
