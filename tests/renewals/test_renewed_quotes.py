"""A renewed quote has a period for each renewal paid: cancelling it refunds the period it is in
at that period's price, changing it re-prices that period and keeps the periods paid, a change
made after a renewal was priced makes the price be quoted again, a renewal past its expiry is
closed, and the period a renewal quote shows is the period its payment gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from coverline.runtime import Services
from tests.bookings.lifecycle_helpers import (
    EPOCH,
    MovableClock,
    events_of,
    freeze,
    gadget,
    get_booking,
    instant,
)
from tests.conftest import PartnerFixture, partner_state


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    return freeze(services, monkeypatch, EPOCH)


async def quote_renewal(partner: PartnerFixture, booking_id: str) -> dict[str, Any]:
    quoted = await partner.sandbox.call("PATCH", f"renewals/{booking_id}/quote_for_renewal/", {})
    assert quoted.status_code == 200, quoted.text
    return dict(quoted.json())


async def pay_renewal(partner: PartnerFixture, booking_id: str, renewal_id: str) -> Any:
    return await partner.sandbox.call("POST", f"renewals/{booking_id}/confirm/{renewal_id}/", {})


async def renew(partner: PartnerFixture, booking_id: str) -> dict[str, Any]:
    quoted = await quote_renewal(partner, booking_id)
    paid = await pay_renewal(partner, booking_id, quoted["renewal_id"])
    assert paid.status_code == 200, paid.text
    return dict(paid.json())


async def quote_update(partner: PartnerFixture, booking_id: str, body: dict[str, Any]) -> Any:
    return await partner.sandbox.call("PATCH", f"bookings/{booking_id}/quote_for_update", body)


async def confirm_update(partner: PartnerFixture, booking_id: str, update_id: str) -> Any:
    path = f"bookings/{booking_id}/confirm_update/{update_id}/"
    return await partner.sandbox.call("POST", path, {})


async def renewed_gadget(partner: PartnerFixture, clock: MovableClock) -> dict[str, Any]:
    """£15.75 a month from 11 Jan 12:00, the second month (11 Feb to 11 Mar) paid on 5 Feb."""
    booking = await instant(partner, gadget(clock.at + timedelta(days=1)), customer_country="DE")
    assert booking["total_price"] == 15.75
    clock.advance(timedelta(days=26))  # 5 Feb
    renewed = await renew(partner, booking["id"])
    quote = renewed["quotes"][0]
    assert (quote["price"], quote["total_renewed_times"]) == (15.75, 1)
    assert quote["policy_end_date"] == "2030-03-11T12:00:00+00:00"
    return renewed


async def test_cancelling_a_renewed_quote_refunds_the_period_it_is_in(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await renewed_gadget(partner, clock)
    path = f"bookings/{booking['id']}/cancel"
    # 5 Feb: 25 of the first month's 31 days used, the second month not started.
    first = await partner.sandbox.call("POST", path, {"preview": True})
    assert first.status_code == 200, first.text
    line = first.json()["quotes"][0]
    unused = 15.75 * 6 / 31 + 15.75  # 3.05 + 15.75 = 18.80; 10 % fee 1.88
    assert round(unused, 2) == 18.80
    assert (line["refund_value"], line["adjustment_fee"]) == (16.92, 1.88)
    # 25 Feb: half of the second month (14 of 28 days) used, the first month used up.
    clock.advance(timedelta(days=20))
    second = await partner.sandbox.call("POST", path, {"preview": True})
    line = second.json()["quotes"][0]
    assert (line["refund_value"], line["adjustment_fee"]) == (7.09, 0.79)
    cancelled = await partner.sandbox.call("POST", path, {})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["total_refund"] == 7.09


async def test_changing_a_renewed_quote_reprices_its_period_and_keeps_the_periods_paid(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await renewed_gadget(partner, clock)
    quote_id = booking["quotes"][0]["id"]
    change = {"quotes": [{"id": quote_id, "update_fields": {"device_value": 2000}}]}
    # 5 Feb: the second month is paid and has not started: no change until it does.
    state = await partner_state(services, partner.id)
    early = await quote_update(partner, booking["id"], change)
    assert early.status_code == 409, early.text
    assert early.json()["message"] == (
        f"Quote {quote_id} is renewed for a period that has not started; it can be changed "
        "once that period starts."
    )
    assert await partner_state(services, partner.id) == state

    clock.advance(timedelta(days=10))  # 15 Feb, in the second month
    priced = await quote_update(partner, booking["id"], change)
    assert priced.status_code == 200, priced.text
    preview = priced.json()["quotes"][0]
    assert preview["policy_end_date"] == "2030-03-11T12:00:00+00:00"
    assert preview["policy_start_date"] == "2030-01-11T12:00:00+00:00"
    assert (priced.json()["total_price_diff"], preview["price"]) == (15.75, 31.5)
    applied = await confirm_update(partner, booking["id"], priced.json()["update_id"])
    assert applied.status_code == 201, applied.text
    quote = applied.json()["quotes"][0]
    assert quote["policy_end_date"] == "2030-03-11T12:00:00+00:00"
    assert (quote["total_renewed_times"], quote["price"]) == (1, 31.5)
    assert quote["next_renewal"]["due_date"] == "2030-03-11T12:00:00Z"


async def test_a_change_after_a_renewal_was_priced_makes_it_be_priced_again(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await instant(partner, gadget(clock.at + timedelta(days=1)), customer_country="DE")
    quote_id = booking["quotes"][0]["id"]
    clock.advance(timedelta(days=5))
    renewal = await quote_renewal(partner, booking["id"])
    assert renewal["renewal"]["price"] == 15.75
    change = {"quotes": [{"id": quote_id, "update_fields": {"device_value": 2000}}]}
    priced = await quote_update(partner, booking["id"], change)
    applied = await confirm_update(partner, booking["id"], priced.json()["update_id"])
    assert applied.status_code == 201, applied.text

    state = await partner_state(services, partner.id)
    stale = await pay_renewal(partner, booking["id"], renewal["renewal_id"])
    assert stale.status_code == 422, stale.text
    assert stale.json()["errors"] == {
        "renewal": ["Quote the renewal (quote_for_renewal) before confirming it."]
    }
    assert await partner_state(services, partner.id) == state
    assert await events_of(services, partner.id, "RENEWAL_CREATED") == []

    again = await quote_renewal(partner, booking["id"])
    assert (again["renewal_id"], again["renewal"]["price"]) == (renewal["renewal_id"], 31.5)
    paid = await pay_renewal(partner, booking["id"], again["renewal_id"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["quotes"][0]["price"] == 31.5
    [created] = await events_of(services, partner.id, "RENEWAL_CREATED")
    assert created.payload["amount"] == 31.5


async def test_a_start_moved_before_the_cover_starts_moves_the_renewal(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await instant(partner, gadget(clock.at + timedelta(days=1)), customer_country="DE")
    quote_id = booking["quotes"][0]["id"]
    assert booking["quotes"][0]["next_renewal"]["due_date"] == "2030-02-11T12:00:00Z"
    later = {"policy_start_date": "2030-01-20T12:00:00+00:00"}
    priced = await quote_update(
        partner, booking["id"], {"quotes": [{"id": quote_id, "update_fields": later}]}
    )
    assert priced.status_code == 200, priced.text
    applied = await confirm_update(partner, booking["id"], priced.json()["update_id"])
    assert applied.status_code == 201, applied.text
    renewal = applied.json()["quotes"][0]["next_renewal"]
    assert applied.json()["quotes"][0]["policy_end_date"] == "2030-02-20T12:00:00+00:00"
    assert (renewal["start_date"], renewal["due_date"]) == (
        "2030-02-20T12:00:00Z",
        "2030-02-20T12:00:00Z",
    )
    assert renewal["notification_date"] == "2030-02-13T12:00:00Z"
    assert renewal["expiry_date"] == "2030-03-06T12:00:00Z"


async def test_a_renewal_past_its_expiry_is_closed_before_the_scheduler_marks_it(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await instant(partner, gadget(clock.at + timedelta(days=1)), customer_country="DE")
    renewal = booking["quotes"][0]["next_renewal"]
    assert renewal["expiry_date"] == "2030-02-25T12:00:00Z"
    clock.advance(timedelta(days=20))  # 30 Jan
    quoted = await quote_renewal(partner, booking["id"])
    clock.advance(timedelta(days=26))  # 25 Feb 12:00, no scheduler pass since
    state = await partner_state(services, partner.id)
    expected = (
        f"Renewal {renewal['id']} expired on 2030-02-25T12:00:00Z and can no longer be renewed."
    )
    for attempt in (
        partner.sandbox.call("PATCH", f"renewals/{booking['id']}/quote_for_renewal/", {}),
        pay_renewal(partner, booking["id"], quoted["renewal_id"]),
    ):
        answer = await attempt
        assert (answer.status_code, answer.json()["message"]) == (409, expected)
    assert await partner_state(services, partner.id) == state


async def test_the_period_a_renewal_quote_shows_is_the_period_paying_gives(
    partner: PartnerFixture, monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    clock = freeze(services, monkeypatch, datetime(2030, 1, 30, 9, tzinfo=UTC))
    start = datetime(2030, 1, 31, 9, 30, tzinfo=UTC)
    booking = await instant(partner, gadget(start), customer_country="DE")
    assert booking["quotes"][0]["policy_end_date"] == "2030-02-28T09:30:00+00:00"
    clock.advance(timedelta(days=25))
    quoted = await quote_renewal(partner, booking["id"])
    period = (quoted["renewal"]["policy_start_date"], quoted["renewal"]["policy_end_date"])
    assert period == ("2030-02-28T09:30:00+00:00", "2030-03-31T09:30:00+00:00")
    paid = await pay_renewal(partner, booking["id"], quoted["renewal_id"])
    assert paid.json()["quotes"][0]["policy_end_date"] == period[1]
    assert (await get_booking(partner, booking["id"]))["quotes"][0]["policy_end_date"] == period[1]


async def test_next_renewal_is_in_utc_however_the_partner_sent_the_start(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    """A renewal made in the request that books has the partner's offset in memory; its
    times are written in UTC all the same, as when it is read back."""
    start = (clock.at + timedelta(days=1)).astimezone(timezone(timedelta(hours=1)))
    booking = await instant(partner, gadget(start), customer_country="DE")
    renewal = booking["quotes"][0]["next_renewal"]
    assert booking["quotes"][0]["policy_end_date"] == "2030-02-11T13:00:00+01:00"
    assert renewal["due_date"] == "2030-02-11T12:00:00Z"
    assert (await get_booking(partner, booking["id"]))["quotes"][0]["next_renewal"] == renewal


async def test_a_booking_with_two_renewable_quotes_renews_both(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    """One renewal a call, the one falling due first: the phone's (due 11 Feb) then the
    tablet's (due 12 Feb), then the phone's next month."""
    phone = gadget(clock.at + timedelta(days=1))
    tablet = gadget(clock.at + timedelta(days=2), device_type="tablet", device_model="iPad")
    booking = await instant(partner, phone, tablet, customer_country="DE")
    by_start = sorted(booking["quotes"], key=lambda q: q["policy_start_date"])
    clock.advance(timedelta(days=27))  # 6 Feb
    renewed = [
        next(q for q in (await renew(partner, booking["id"]))["quotes"] if q["id"] == quote["id"])
        for quote in by_start
    ]
    assert [q["total_renewed_times"] for q in renewed] == [1, 1]
    assert [q["policy_end_date"] for q in renewed] == [
        "2030-03-11T12:00:00+00:00",
        "2030-03-12T12:00:00+00:00",
    ]
    third = await quote_renewal(partner, booking["id"])
    assert third["renewal"]["quote_id"] == by_start[0]["id"]
    assert third["renewal"]["policy_end_date"] == "2030-04-11T12:00:00+00:00"


async def test_month_ends_are_counted_in_the_partners_offset(
    partner: PartnerFixture, monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    """31 Jan 09:00 at +11:00 is 30 Jan 22:00 UTC: its months end on the last day of each
    month at +11:00 (30 April, 30 June), as the first one ended on 28 February."""
    clock = freeze(services, monkeypatch, datetime(2030, 1, 29, 9, tzinfo=UTC))
    start = datetime(2030, 1, 31, 9, tzinfo=timezone(timedelta(hours=11)))
    booking = await instant(partner, gadget(start), customer_country="DE")
    assert booking["quotes"][0]["policy_end_date"] == "2030-02-28T09:00:00+11:00"
    ends = []
    for _ in range(5):
        clock.advance(timedelta(days=31))
        ends.append((await renew(partner, booking["id"]))["quotes"][0]["policy_end_date"])
    assert ends == [
        "2030-03-31T09:00:00+11:00",
        "2030-04-30T09:00:00+11:00",
        "2030-05-31T09:00:00+11:00",
        "2030-06-30T09:00:00+11:00",
        "2030-07-31T09:00:00+11:00",
    ]
