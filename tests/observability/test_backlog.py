"""The backlog gauges read from the database at scrape time match the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from coverline.config import Settings
from coverline.messaging.models import Message
from coverline.observability import backlog
from coverline.renewals.models import Renewal
from coverline.runtime import Services
from coverline.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.fixtures.gadget import gadget_booking
from tests.fixtures.metrics import Samples, key, metrics_at, scrape
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.webhooks import add_endpoint

DEPTH = "coverline_outbox_depth"
OLDEST = "coverline_outbox_oldest_due_seconds"
D = WebhookDelivery
E = WebhookEndpoint
# Nothing listens there: a dispatcher of a later test fails these at once.
CLOSED_PORT = "http://127.0.0.1:9/hooks"


def depth_change(after: Samples, before: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["queue"], dict(labels)["state"]): change
        for (name, labels), change in after.minus(before).items()
        if name == DEPTH
    }


async def deliveries_of(services: Services, endpoint_public_id: str) -> list[int]:
    async with services.database.reading() as session:
        rows = await session.scalars(
            select(D.id).join(E, E.id == D.endpoint_id).where(E.public_id == endpoint_public_id)
        )
        return list(rows)


async def forget(partner: PartnerFixture, *endpoints: dict[str, Any]) -> None:
    """Delete the test's endpoints: their pending deliveries are not other tests' to send."""
    for endpoint in endpoints:
        deleted = await partner.live.call("DELETE", f"webhooks/{endpoint['id']}/")
        assert deleted.status_code == 204


async def test_outbox_depth_counts_each_state_of_the_rows(
    settings: Settings, services: Services, partner: PartnerFixture
) -> None:
    now = datetime.now(UTC) + timedelta(hours=1)
    active = await add_endpoint(partner.live, CLOSED_PORT)
    paused = await add_endpoint(partner.live, CLOSED_PORT)
    async with metrics_at(settings, now) as metrics:
        before = await scrape(metrics)
        for _ in range(4):
            booked = await partner.live.call("POST", "instant_booking/", instant_booking_request())
            assert booked.status_code == 200
        mine = await deliveries_of(services, active["id"])
        held = await deliveries_of(services, paused["id"])
        assert len(mine) == len(held) == 4
        async with services.database.transaction() as session:
            await session.execute(update(D).where(D.id == mine[0]).values(status="delivering"))
            later = now + timedelta(minutes=5)
            await session.execute(update(D).where(D.id == mine[1]).values(next_attempt_at=later))
            await session.execute(update(D).where(D.id == held[0]).values(next_attempt_at=later))
            await session.execute(update(D).where(D.id == mine[2]).values(status="succeeded"))
        patched = await partner.live.call("PATCH", f"webhooks/{paused['id']}/", {"enabled": False})
        assert patched.status_code == 200
        after = await scrape(metrics)

    webhooks = {
        (queue, state): change
        for (queue, state), change in depth_change(after, before).items()
        if queue == "webhooks"
    }
    # Active: one due, one waiting, one in flight, one done. Paused: four held.
    assert webhooks == {
        ("webhooks", "due"): 1,
        ("webhooks", "waiting"): 1,
        ("webhooks", "in_flight"): 1,
        ("webhooks", "held"): 4,
    }
    await forget(partner, active, paused)


async def test_queued_messages_by_channel_and_state(
    settings: Settings, services: Services, partner: PartnerFixture
) -> None:
    now = datetime.now(UTC) + timedelta(hours=1)
    async with metrics_at(settings, now) as metrics:
        before = await scrape(metrics)
        booked = await partner.live.call("POST", "instant_booking/", instant_booking_request())
        assert booked.status_code == 200
        async with services.database.reading() as session:
            made = list(
                await session.execute(
                    select(Message.channel, Message.status, Message.next_attempt_at <= now).where(
                        Message.booking_id == booked.json()["id"]
                    )
                )
            )
        after = await scrape(metrics)
    assert made, "a live booking queues its customer's messages"
    expected: dict[tuple[str, str], int] = {}
    for channel, status, due in made:
        state = {"sending": "in_flight"}.get(status) or ("due" if due else "waiting")
        expected[channel, state] = expected.get((channel, state), 0) + 1
    assert depth_change(after, before) == expected


async def test_the_oldest_due_items_are_measured_on_the_clock(
    settings: Settings, services: Services, partner: PartnerFixture
) -> None:
    now = datetime.now(UTC) + timedelta(hours=1)
    # Older than anything the other tests of the run made.
    stale = now - timedelta(days=10)
    active = await add_endpoint(partner.live, CLOSED_PORT)
    paused = await add_endpoint(partner.live, CLOSED_PORT)
    booked = await partner.live.call("POST", "instant_booking/", instant_booking_request())
    assert booked.status_code == 200
    (mine,) = await deliveries_of(services, active["id"])
    (held,) = await deliveries_of(services, paused["id"])
    async with services.database.transaction() as session:
        await session.execute(update(D).where(D.id == mine).values(next_attempt_at=stale))
        older = stale - timedelta(days=10)
        await session.execute(update(D).where(D.id == held).values(next_attempt_at=older))
        await session.execute(update(E).where(E.public_id == paused["id"]).values(enabled=False))
    async with metrics_at(settings, now) as metrics:
        samples = await scrape(metrics)
    assert samples.get(OLDEST, queue="webhooks") == timedelta(days=10).total_seconds()
    assert samples.get("coverline_database_up") == 1
    await forget(partner, active, paused)


async def test_the_oldest_due_renewal_is_measured_on_the_clock(
    settings: Settings, services: Services, partner: PartnerFixture
) -> None:
    at = datetime(2001, 1, 1, tzinfo=UTC)
    booked = await partner.live.call("POST", "instant_booking/", gadget_booking())
    assert booked.status_code == 200
    async with services.database.transaction() as session:
        await session.execute(
            update(Renewal)
            .where(Renewal.package_id == booked.json()["id"])
            .values(next_transition_at=at - timedelta(minutes=3))
        )
    try:
        async with metrics_at(settings, at) as metrics:
            samples = await scrape(metrics)
        assert samples.get("coverline_renewals_oldest_due_seconds") == 180.0
        async with metrics_at(settings, at - timedelta(minutes=4)) as metrics:
            samples = await scrape(metrics)
        assert samples.get("coverline_renewals_oldest_due_seconds") == 0.0
    finally:
        async with services.database.transaction() as session:
            await session.execute(
                update(Renewal)
                .where(Renewal.package_id == booked.json()["id"])
                .values(next_transition_at=Renewal.notification_date)
            )


async def test_a_count_stops_at_the_cap(
    settings: Settings, partner: PartnerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped = await add_endpoint(partner.live, CLOSED_PORT)
    for _ in range(3):
        booked = await partner.live.call("POST", "instant_booking/", instant_booking_request())
        assert booked.status_code == 200
    monkeypatch.setattr(backlog, "DEPTH_CAP", 2)
    async with metrics_at(settings, datetime.now(UTC) + timedelta(hours=1)) as metrics:
        samples = await scrape(metrics)
    assert samples.values[key(DEPTH, queue="webhooks", state="due")] == 2
    await forget(partner, capped)


async def test_a_database_that_does_not_answer_leaves_the_rest_of_the_scrape(
    settings: Settings,
) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql://coverline@127.0.0.1:9/none"}
    )
    async with metrics_at(unreachable, datetime.now(UTC)) as metrics:
        samples = await scrape(metrics)
    assert samples.get("coverline_database_up") == 0
    assert not samples.labelled(DEPTH)
    assert samples.labelled("coverline_http_requests_total")
