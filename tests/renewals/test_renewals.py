"""Renewals on the sandbox test clock: the RENEWAL_* sequence at a real receiver, renewal
quotes and payment, opt-out, refused transitions, and a scheduler that acts exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from coverline.events.models import Event
from coverline.renewals.scheduler import Scheduler
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.gadget import gadget_booking, gadget_item
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Receiver
from tests.fixtures.webhooks import add_endpoint


async def sell(partner: PartnerFixture, **overrides: Any) -> dict[str, Any]:
    response = await partner.sandbox.call("POST", "instant_booking/", gadget_booking(**overrides))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def advance(partner: PartnerFixture, duration: str) -> list[str]:
    response = await partner.sandbox.call("POST", "sandbox/clock", {"advance": duration})
    assert response.status_code == 200, response.text
    return [t["event"] for t in response.json()["transitions"]]


async def renew(partner: PartnerFixture, booking_id: str) -> dict[str, Any]:
    quoted = await partner.sandbox.call("PATCH", f"renewals/{booking_id}/quote_for_renewal/", {})
    assert quoted.status_code == 200, quoted.text
    renewal_id = quoted.json()["renewal_id"]
    paid = await partner.sandbox.call("POST", f"renewals/{booking_id}/confirm/{renewal_id}/", {})
    assert paid.status_code == 200, paid.text
    return dict(paid.json())


async def test_three_months_on_the_test_clock_at_a_real_receiver(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(
        partner.sandbox,
        receiver.url,
        events=[
            "RENEWAL_CREATED",
            "RENEWAL_NOTIFICATION",
            "RENEWAL_DUE",
            "RENEWAL_EXPIRED",
        ],
    )
    start = datetime(2030, 1, 31, 9, 30, tzinfo=UTC)
    clock = await partner.sandbox.call("POST", "sandbox/clock", {"to": "2030-01-31T09:00:00Z"})
    assert clock.status_code == 200
    booking = await sell(partner, request=[gadget_booking(start)["request"][0]])
    quote = booking["quotes"][0]
    assert quote["policy_end_date"] == "2030-02-28T09:30:00+00:00"
    assert quote["next_renewal"]["due_date"] == "2030-02-28T09:30:00Z"
    assert quote["next_renewal"]["notification_date"] == "2030-02-21T09:30:00Z"
    assert quote["next_renewal"]["expiry_date"] == "2030-03-14T09:30:00Z"

    assert await advance(partner, "P22D") == ["RENEWAL_NOTIFICATION"]  # 22 Feb 09:00
    first = await renew(partner, booking["id"])  # month 2 paid before it is due
    assert first["quotes"][0]["total_renewed_times"] == 1
    assert first["quotes"][0]["policy_end_date"] == "2030-03-31T09:30:00+00:00"
    assert await advance(partner, "P31D") == ["RENEWAL_NOTIFICATION"]  # 25 Mar 09:00
    assert await advance(partner, "P6D") == []  # 31 Mar 09:00: due only at 09:30
    second = await renew(partner, booking["id"])  # month 3 paid
    assert second["quotes"][0]["policy_end_date"] == "2030-04-30T09:30:00+00:00"
    assert await advance(partner, "P31D") == ["RENEWAL_NOTIFICATION", "RENEWAL_DUE"]  # 1 May
    assert await advance(partner, "P14D") == ["RENEWAL_EXPIRED"]  # 15 May: grace over

    await receiver.wait_for(7)
    await asyncio.sleep(0.2)
    assert receiver.events() == [
        "RENEWAL_NOTIFICATION",
        "RENEWAL_CREATED",
        "RENEWAL_NOTIFICATION",
        "RENEWAL_CREATED",
        "RENEWAL_NOTIFICATION",
        "RENEWAL_DUE",
        "RENEWAL_EXPIRED",
    ]
    payloads = [r.json()["payload"] for r in receiver.received]
    assert [p["status"] for p in payloads] == [
        "ACTIVE",
        "ACTIVE",
        "ACTIVE",
        "ACTIVE",
        "ACTIVE",
        "DUE",
        "UNPAID",
    ]
    assert payloads[1]["paid_on"] is not None and payloads[0]["paid_on"] is None
    assert {p["package_id"] for p in payloads} == {booking["id"]}
    assert payloads[6]["due_date"] == "2030-04-30T09:30:00Z"
    final = (await partner.sandbox.call("GET", f"bookings/{booking['id']}/")).json()
    assert final["quotes"][0]["next_renewal"] is None
    assert final["quotes"][0]["total_renewed_times"] == 2


async def test_mycover_renewal_successful(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.sandbox, receiver.url, format="mycover")
    booking = await sell(partner)
    await receiver.wait_for(1)
    await advance(partner, "P25D")
    paid = await renew(partner, booking["id"])
    await receiver.wait_for(2)
    assert receiver.events() == ["purchase.successful", "renewal.successful"]
    data = receiver.received[1].json()["data"]
    assert data["reference"] == booking["id"]
    assert data["id"] == booking["quotes"][0]["id"]
    assert data["amount"] == paid["quotes"][0]["price"]
    assert data["customer"]["first_name"] == "Ọláolúwa"


async def test_quote_for_renewal_uses_the_current_price_and_changes_nothing_until_paid(
    services: Services, partner: PartnerFixture
) -> None:
    booking = await sell(partner)
    before = (await partner.sandbox.call("GET", f"bookings/{booking['id']}/")).json()
    quoted = await partner.sandbox.call("PATCH", f"renewals/{booking['id']}/quote_for_renewal/", {})
    assert quoted.status_code == 200
    body = quoted.json()
    assert body["renewal_id"].endswith("-REN")
    assert body["renewal"]["price"] == booking["quotes"][0]["price"]
    assert body["renewal"]["policy_start_date"] == booking["quotes"][0]["policy_end_date"]
    after = (await partner.sandbox.call("GET", f"bookings/{booking['id']}/")).json()
    assert after["quotes"][0]["policy_end_date"] == before["quotes"][0]["policy_end_date"]
    assert after["quotes"][0]["total_renewed_times"] == 0


async def test_refused_renewal_transitions_change_nothing(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    booking = await sell(partner)
    bid = booking["id"]
    unquoted_id = booking["quotes"][0]["next_renewal"]["id"]
    before = await partner_state(services, partner.id)
    unquoted = await partner.sandbox.call("POST", f"renewals/{bid}/confirm/{unquoted_id}/", {})
    assert unquoted.status_code == 422
    assert unquoted.json()["errors"] == {
        "renewal": ["Quote the renewal (quote_for_renewal) before confirming it."]
    }
    foreign = await other_partner.sandbox.call("POST", f"renewals/{bid}/confirm/{unquoted_id}/", {})
    assert foreign.status_code == 404
    live = await partner.live.call("PATCH", f"renewals/{bid}/quote_for_renewal/", {})
    assert live.status_code == 404
    assert await partner_state(services, partner.id) == before

    quoted = await partner.sandbox.call("PATCH", f"renewals/{bid}/quote_for_renewal/", {})
    renewal_id = quoted.json()["renewal_id"]
    assert await advance(partner, "P60D") == [
        "RENEWAL_NOTIFICATION",
        "RENEWAL_DUE",
        "RENEWAL_EXPIRED",
    ]
    expired = await partner_state(services, partner.id)
    late = await partner.sandbox.call("POST", f"renewals/{bid}/confirm/{renewal_id}/", {})
    assert late.status_code == 409
    assert "can no longer be renewed" in late.json()["message"]
    requote = await partner.sandbox.call("PATCH", f"renewals/{bid}/quote_for_renewal/", {})
    assert requote.status_code == 409
    assert await partner_state(services, partner.id) == expired


async def test_paying_twice_and_opting_out(services: Services, partner: PartnerFixture) -> None:
    booking = await sell(partner)
    bid = booking["id"]
    quoted = await partner.sandbox.call("PATCH", f"renewals/{bid}/quote_for_renewal/", {})
    renewal_id = quoted.json()["renewal_id"]
    assert (
        await partner.sandbox.call("POST", f"renewals/{bid}/confirm/{renewal_id}/", {})
    ).status_code == 200
    paid = await partner_state(services, partner.id)
    again = await partner.sandbox.call("POST", f"renewals/{bid}/confirm/{renewal_id}/", {})
    assert again.status_code == 409
    assert again.json()["message"] == f"Renewal {renewal_id} is paid already."
    assert await partner_state(services, partner.id) == paid

    out = await partner.sandbox.call("POST", f"renewals/{bid}/opt_out/", {})
    assert out.status_code == 200
    assert out.json()["quotes"][0]["next_renewal"] is None
    assert await advance(partner, "P90D") == []
    twice = await partner.sandbox.call("POST", f"renewals/{bid}/opt_out/", {})
    assert twice.status_code == 409


async def test_products_that_do_not_renew(partner: PartnerFixture) -> None:
    booking = (
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    ).json()
    assert booking["quotes"][0]["is_renewable"] is False
    assert booking["quotes"][0]["next_renewal"] is None
    response = await partner.sandbox.call(
        "PATCH", f"renewals/{booking['id']}/quote_for_renewal/", {}
    )
    assert response.status_code == 422


async def test_no_cover_is_renewed_to_end_in_year_9000(partner: PartnerFixture) -> None:
    """A monthly cover ending a month before year 9000 is renewed once more, and then no
    longer (no cover ends in year 9000 or later: dates are counted from the end)."""
    start = datetime(8999, 10, 15, tzinfo=UTC)
    booking = await sell(partner, request=[gadget_item(start)])
    quote = booking["quotes"][0]
    assert quote["policy_end_date"] == "8999-11-15T00:00:00+00:00"
    assert quote["next_renewal"] is not None
    await renew(partner, booking["id"])
    after = (await partner.sandbox.call("GET", f"bookings/{booking['id']}/")).json()["quotes"][0]
    assert after["policy_end_date"] == "8999-12-15T00:00:00+00:00"
    assert (after["total_renewed_times"], after["next_renewal"]) == (1, None)
    again = await partner.sandbox.call("PATCH", f"renewals/{booking['id']}/quote_for_renewal/", {})
    assert again.status_code == 422, again.text
    # Sold a month later, it is never renewed at all.
    late = await sell(partner, request=[gadget_item(datetime(8999, 11, 15, tzinfo=UTC))])
    assert late["quotes"][0]["next_renewal"] is None


async def test_sandbox_clock_rules(partner: PartnerFixture, other_partner: PartnerFixture) -> None:
    live = await partner.live.call("GET", "sandbox/clock")
    assert live.status_code == 404
    assert (await partner.live.call("POST", "sandbox/clock", {"advance": "P1D"})).status_code == 404
    start = (await partner.sandbox.call("GET", "sandbox/clock")).json()
    assert start["offset_seconds"] == 0
    moved = await partner.sandbox.call("POST", "sandbox/clock", {"advance": "P2D"})
    assert moved.json()["offset_seconds"] == 172800.0
    back = await partner.sandbox.call("POST", "sandbox/clock", {"to": "2001-01-01T00:00:00Z"})
    assert back.status_code == 422
    assert back.json()["errors"] == {"to": ["The clock only moves forward."]}
    bad = await partner.sandbox.call("POST", "sandbox/clock", {"advance": "two days"})
    assert bad.status_code == 422
    # At most a century ahead of real time: every date counted from the clock stays a date.
    horizon = "The test clock moves at most 100 years ahead of real time."
    for field, value in (
        ("to", "9999-12-01T00:00:00Z"),
        # At the very end of the calendar, in any offset.
        ("to", "9999-12-31T00:00:00Z"),
        ("to", "9999-12-31T23:59:59-14:00"),
        ("to", "2200-01-01T00:00:00Z"),
        ("advance", "P101Y"),
        ("advance", "P1000000Y"),
    ):
        far = await partner.sandbox.call("POST", "sandbox/clock", {field: value})
        assert (far.status_code, far.json()["errors"]) == (422, {field: [horizon]}), value
    for value, problem in (
        ("0001-01-01T00:00:00+14:00", "The clock only moves forward."),
        ("9999-12-31T00:00:00", "'9999-12-31T00:00:00' is not an RFC 3339 date-time."),
        ("9999-13-01T00:00:00Z", "'9999-13-01T00:00:00Z' is not an RFC 3339 date-time."),
    ):
        edge = await partner.sandbox.call("POST", "sandbox/clock", {"to": value})
        assert (edge.status_code, edge.json()["errors"]) == (422, {"to": [problem]}), value
    assert (await partner.sandbox.call("GET", "sandbox/clock")).json()["offset_seconds"] == 172800
    both = await partner.sandbox.call(
        "POST", "sandbox/clock", {"advance": "P1D", "to": "2040-01-01T00:00:00Z"}
    )
    assert both.status_code == 422
    # Another partner's sandbox and this partner's live data keep real time.
    assert (await other_partner.sandbox.call("GET", "sandbox/clock")).json()["offset_seconds"] == 0
    # The moved clock is the sandbox's "now": a start date two days ahead is now in the past.
    soon = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()
    item = gadget_booking()["request"][0] | {"policy_start_date": soon}
    refused = await partner.sandbox.call("POST", "instant_booking/", gadget_booking(request=[item]))
    assert refused.status_code == 422
    accepted = await partner.live.call("POST", "instant_booking/", gadget_booking(request=[item]))
    assert accepted.status_code == 200


async def test_concurrent_schedulers_apply_each_transition_once(
    services: Services, partner: PartnerFixture
) -> None:
    bookings = [await sell(partner) for _ in range(5)]
    # Move the partner's sandbox clock without running its transitions, as if the clock had
    # been moved by another process, then let two schedulers race for them.
    from coverline.sandbox.service import set_offset

    async with services.database.transaction() as session:
        await set_offset(session, partner.id, timedelta(days=60), services.clock.now())
    services.clocks.forget()
    first = Scheduler(services.database, services.clocks, batch=2)
    second = Scheduler(services.database, services.clocks, batch=2)
    await asyncio.gather(first.drain(), second.drain())
    async with services.database.reading() as session:
        counts = dict(
            (
                await session.execute(
                    select(Event.type, func.count())
                    .where(Event.partner_id == partner.id, Event.type.like("RENEWAL_%"))
                    .group_by(Event.type)
                )
            ).all()
        )
    assert counts == {"RENEWAL_NOTIFICATION": 5, "RENEWAL_DUE": 5, "RENEWAL_EXPIRED": 5}
    assert len(bookings) == 5


async def test_redelivery_after_the_test_clock_moved_is_sent_in_real_time(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    from tests.fixtures.receiver import Answer

    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[])
    receiver.answer(Answer(status=500))
    await sell(partner)
    await receiver.wait_for(1)
    await advance(partner, "P40D")  # the sandbox is now weeks ahead of real time
    await receiver.wait_for(3)  # the month's NOTIFICATION and DUE
    listed = await partner.sandbox.call(
        "GET", f"webhooks/{endpoint['id']}/deliveries/", params={"status": "failed"}
    )
    (failed,) = listed.json()["results"]
    redone = await partner.sandbox.call(
        "POST", f"webhooks/{endpoint['id']}/deliveries/{failed['id']}/redeliver", {}
    )
    assert redone.status_code == 202
    await receiver.wait_for(4, timeout=5)
    assert receiver.received[-1].headers["webhook-id"] == failed["id"]
    assert receiver.received[-1].json()["event"] == "BOOKING_CREATED"
