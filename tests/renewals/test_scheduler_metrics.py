"""The scheduler's lag: how long after its due time each transition was applied, on a clock
that stands still so that the lag is exact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from coverline.events.models import Event
from coverline.kit.clock import FrozenClock
from coverline.kit.request_id import JOB_PREFIX
from coverline.renewals.models import Renewal
from coverline.renewals.scheduler import Scheduler
from coverline.runtime import Services
from coverline.sandbox.service import Clocks
from tests.conftest import PartnerFixture
from tests.fixtures.gadget import gadget_booking
from tests.fixtures.metrics import key, scrape

LAG = "coverline_renewal_scheduler_lag_seconds"
# Long before every renewal the other tests of the run make, sandbox test clocks included: the
# scheduler on this clock applies this test's renewal alone.
AT = datetime(2001, 1, 1, tzinfo=UTC)


async def live_renewal_due(services: Services, partner: PartnerFixture, due: datetime) -> str:
    booked = await partner.live.call("POST", "instant_booking/", gadget_booking())
    assert booked.status_code == 200
    async with services.database.transaction() as session:
        await session.execute(
            update(Renewal)
            .where(Renewal.package_id == booked.json()["id"])
            .values(next_transition_at=due)
        )
    return str(booked.json()["id"])


async def test_the_lag_of_a_transition_applied_late(
    http: httpx.AsyncClient, services: Services, partner: PartnerFixture
) -> None:
    booking = await live_renewal_due(services, partner, AT - timedelta(seconds=90))
    scheduler = Scheduler(services.database, Clocks(services.database, FrozenClock(AT)))
    before = await scrape(http)
    transitions = await scheduler.run_once()
    after = await scrape(http)

    assert [(t.type.value, t.package_id) for t in transitions] == [
        ("RENEWAL_NOTIFICATION", booking)
    ]
    changes = after.minus(before)
    assert changes[key(f"{LAG}_count")] == 1
    assert changes[key(f"{LAG}_sum")] == 90.0
    buckets = {
        dict(labels)["le"]: change
        for (name, labels), change in changes.items()
        if name == f"{LAG}_bucket"
    }
    # Cumulative buckets: 90 s is above 60 and within 300.
    assert buckets == {le: 1 for le in ("300.0", "900.0", "3600.0", "21600.0", "86400.0", "+Inf")}
    assert changes[key("coverline_renewal_transitions_total", type="RENEWAL_NOTIFICATION")] == 1


async def test_events_of_a_scheduler_pass_carry_its_job_id(
    services: Services, partner: PartnerFixture
) -> None:
    booking = await live_renewal_due(services, partner, AT - timedelta(seconds=5))
    scheduler = Scheduler(
        services.database, Clocks(services.database, FrozenClock(AT)), poll_seconds=0.01
    )
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    try:
        for _ in range(500):
            async with services.database.reading() as session:
                event = await session.scalar(
                    select(Event).where(
                        Event.resource_id == booking, Event.type == "RENEWAL_NOTIFICATION"
                    )
                )
            if event is not None:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await running
    assert event is not None
    assert event.request_id is not None and event.request_id.startswith(JOB_PREFIX)
    assert len(event.request_id) == len(JOB_PREFIX) + 16
