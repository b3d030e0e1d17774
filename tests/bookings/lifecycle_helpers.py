"""Shared pieces of the lifecycle tests: a clock the tests move, request bodies built from
it, and every row a refused request must leave alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from coverline.events.models import Event
from coverline.kit.dates import server_time
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import policyholder, rfc3339

# A fixed instant (a Thursday, in winter) the tests' clock starts from.
EPOCH = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)


class MovableClock:
    """The services' clock, frozen at `at` until a test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> datetime:
        self.at += delta
        return self.at

    def text(self, delta: timedelta = timedelta(0)) -> str:
        """Server time `delta` after now, as responses render it."""
        return server_time(self.at + delta)


def freeze(services: Services, monkeypatch: pytest.MonkeyPatch, at: datetime) -> MovableClock:
    clock = MovableClock(at)
    monkeypatch.setattr(services.clock, "now", clock.now)
    return clock


def ticket(start: datetime, end: datetime, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "policy_type": "event_ticket_protection",
        "policy_type_version": 1,
        "policy_start_date": rfc3339(start),
        "event_datetime": rfc3339(end),
        "event_name": "Ariana Grande",
        "event_location": "The O2",
        "number_of_tickets": 2,
        "tickets": [{"price": 100}],
        "resale_ticket": False,
        "event_country": "GB",
    }
    item.update(changes)
    return item


def travel(start: datetime, end: datetime, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "policy_type": "travel_medical",
        "policy_type_version": 1,
        "policy_start_date": rfc3339(start),
        "policy_end_date": rfc3339(end),
        "destination_country": "GB",
        "travellers": [{"age": 30}],
    }
    item.update(changes)
    return item


def gadget(start: datetime, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "policy_type": "gadget_cover",
        "policy_type_version": 1,
        "policy_start_date": rfc3339(start),
        "device_type": "phone",
        "device_make": "Apple",
        "device_model": "iPhone 15",
        "device_value": 1000,
    }
    item.update(changes)
    return item


async def instant(partner: PartnerFixture, *items: dict[str, Any], **body: Any) -> dict[str, Any]:
    """An instant booking (customer country from the policyholder: GB)."""
    request = {"request": list(items), "currency": "GBP", "policyholder": policyholder(), **body}
    response = await partner.sandbox.call("POST", "instant_booking/", request)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def quote(partner: PartnerFixture, *items: dict[str, Any], **body: Any) -> dict[str, Any]:
    request = {
        "request": list(items),
        "currency": "GBP",
        "customer_country": "GB",
        "customer_region": "London",
        "customer_language": "en",
        **body,
    }
    response = await partner.sandbox.call("POST", "quotes/", request)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def get_booking(partner: PartnerFixture, booking_id: str) -> dict[str, Any]:
    response = await partner.sandbox.call("GET", f"bookings/{booking_id}/")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def events_of(services: Services, partner_id: int, kind: str) -> list[Event]:
    async with services.database.reading() as session:
        rows = await session.scalars(
            select(Event)
            .where(Event.partner_id == partner_id, Event.type == kind)
            .order_by(Event.id)
        )
        return list(rows)
