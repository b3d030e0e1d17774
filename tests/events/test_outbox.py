"""The outbox: every state change writes its event in the same transaction, and a change that
is rolled back leaves no event."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.events.models import Event
from coverline.events.service import EventType, record
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import (
    instant_booking_request,
    policyholder,
    quote_request,
    ticket_item,
)


async def events_of(services: Services, partner: PartnerFixture) -> list[tuple[str, str, str]]:
    async with services.database.reading() as session:
        rows = await session.scalars(
            select(Event).where(Event.partner_id == partner.id).order_by(Event.id)
        )
        return [(e.type, e.resource_id, e.mode) for e in rows]


async def test_each_change_writes_one_event_in_order(
    services: Services, partner: PartnerFixture
) -> None:
    package = (await partner.sandbox.call("POST", "quotes/", quote_request())).json()
    pid, qid = package["id"], package["quotes"]["0"]["id"]
    await partner.sandbox.call("PATCH", f"quotes/{pid}/", {"currency": "USD"})
    await partner.sandbox.call("POST", f"quotes/{pid}/add/", {"request": [ticket_item()]})
    await partner.sandbox.call(
        "POST",
        f"bookings/{pid}/",
        {
            "quotes": [{"id": qid}],
            "policyholder": policyholder(),
            "require_payment_confirmation": True,
        },
    )
    await partner.sandbox.call("PUT", f"bookings/{pid}/confirm", {})
    await partner.sandbox.call(
        "PATCH", f"bookings/{pid}/", {"policyholder": {"phone": "+447911123456"}}
    )
    other = (await partner.sandbox.call("POST", "quotes/", quote_request())).json()
    await partner.sandbox.call("POST", f"bookings/{other['id']}/opt_out", {})
    instant = (
        await partner.live.call("POST", "instant_booking/", instant_booking_request())
    ).json()

    assert await events_of(services, partner) == [
        ("QUOTE_CREATED", pid, "sandbox"),
        ("QUOTE_UPDATED", pid, "sandbox"),
        ("QUOTE_UPDATED", pid, "sandbox"),
        ("BOOKING_CREATED", pid, "sandbox"),
        ("BOOKING_PAYMENT_CONFIRMED", pid, "sandbox"),
        ("BOOKING_UPDATED", pid, "sandbox"),
        ("QUOTE_CREATED", other["id"], "sandbox"),
        ("QUOTE_OPTED_OUT", other["id"], "sandbox"),
        ("BOOKING_CREATED", instant["id"], "live"),
    ]


async def test_booking_event_carries_the_booking_as_committed(
    services: Services, partner: PartnerFixture
) -> None:
    booking = (
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    ).json()
    async with services.database.reading() as session:
        event = await session.scalar(select(Event).where(Event.resource_id == booking["id"]))
    assert event is not None
    assert event.type == "BOOKING_CREATED"
    assert event.payload == booking
    assert event.public_id.startswith("evt_")


async def test_rolled_back_change_leaves_no_event(
    services: Services, partner: PartnerFixture
) -> None:
    before = await partner_state(services, partner.id)
    with pytest.raises(RuntimeError):
        async with services.database.transaction() as session:
            await record(
                session,
                partner_id=partner.id,
                mode="sandbox",
                type=EventType.BOOKING_CREATED,
                resource_type="booking",
                resource_id="XXXXX-XXXXX-INS",
                payload={},
                at=services.clock.now(),
            )
            await session.flush()
            raise RuntimeError("the change fails after its event was written")
    assert await partner_state(services, partner.id) == before


async def test_refused_requests_write_no_event(services: Services, partner: PartnerFixture) -> None:
    await partner.sandbox.call("POST", "quotes/", quote_request(currency="XYZ"))
    await partner.sandbox.call("POST", "instant_booking/", instant_booking_request(currency="ABC"))
    assert await events_of(services, partner) == []


async def test_many_events_of_one_transaction_are_written_together_in_order(
    services: Services, partner: PartnerFixture
) -> None:
    async with services.database.transaction() as session:
        recorded = [
            await record(
                session,
                partner_id=partner.id,
                mode="sandbox",
                type=EventType.QUOTE_UPDATED,
                resource_type="quote_package",
                resource_id=f"PKG{index}",
                payload={"id": f"PKG{index}", "index": index},
                at=services.clock.now(),
            )
            for index in range(5)
        ]
        # Written when the transaction commits, not before.
        assert all(event.id is None for event in recorded)
    ids = [event.id for event in recorded]
    assert ids == sorted(ids) and len(set(ids)) == 5
    async with services.database.reading() as session:
        rows = list(
            await session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id))
        )
    assert [(row.resource_id, row.payload["index"]) for row in rows] == [
        (f"PKG{index}", index) for index in range(5)
    ]


async def test_a_payload_is_the_resource_as_recorded(
    services: Services, partner: PartnerFixture
) -> None:
    payload = {"id": "PKGX", "status": "RECEIVED"}
    async with services.database.transaction() as session:
        event = await record(
            session,
            partner_id=partner.id,
            mode="sandbox",
            type=EventType.QUOTE_UPDATED,
            resource_type="quote_package",
            resource_id="PKGX",
            payload=payload,
            at=services.clock.now(),
        )
        payload["status"] = "CHANGED AFTERWARDS"
    async with services.database.reading() as session:
        stored = await session.get(Event, event.id)
        assert stored is not None
        assert stored.payload == {"id": "PKGX", "status": "RECEIVED"}


async def test_a_session_committed_without_writing_its_outbox_is_refused(
    services: Services, partner: PartnerFixture
) -> None:
    """Events recorded in a session that commits outside `Database.transaction` would be lost:
    the commit fails instead, and nothing is written."""
    async with AsyncSession(services.database.engine) as session:
        await record(
            session,
            partner_id=partner.id,
            mode="sandbox",
            type=EventType.QUOTE_UPDATED,
            resource_type="quote_package",
            resource_id="PKGLOST",
            payload={"id": "PKGLOST"},
            at=services.clock.now(),
        )
        with pytest.raises(RuntimeError, match="without writing its outbox"):
            await session.commit()
    async with services.database.reading() as session:
        found = await session.scalar(select(Event).where(Event.resource_id == "PKGLOST"))
    assert found is None
