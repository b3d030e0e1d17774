"""Priced modifications over HTTP: `quote_for_update` then `confirm_update`, as XCover's
client calls them, and every way a confirmation is refused."""

from __future__ import annotations

import re
from datetime import timedelta
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
    quote,
    ticket,
    travel,
)
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import policyholder

UPDATE_ID = re.compile(r"^[A-Za-z0-9]{5}-[A-Za-z0-9]{5}-[A-Za-z0-9]{5}-UPD$")
# The keys of XCover's recorded answer to quote_for_update (less its partner profile).
RECORDED_KEYS = [
    "id",
    "status",
    "currency",
    "total_price",
    "total_price_formatted",
    "partner_transaction_id",
    "created_at",
    "updated_at",
    "pds_url",
    "security_token",
    "quotes",
    "coi",
    "policyholder",
    "total_tax",
    "total_tax_formatted",
    "total_premium",
    "total_premium_formatted",
    "total_price_diff",
    "total_price_diff_formatted",
    "update_id",
]


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    return freeze(services, monkeypatch, EPOCH)


async def booked_ticket(partner: PartnerFixture, clock: MovableClock) -> dict[str, Any]:
    start = clock.at + timedelta(days=1)
    return await instant(partner, ticket(start, start + timedelta(days=26)))


def change(booking: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The recorded request: new product fields for the booking's first quote."""
    return {"quotes": [{"id": booking["quotes"][0]["id"], "update_fields": fields}]}


def without_diffs(booking: dict[str, Any]) -> dict[str, Any]:
    def strip(data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in data.items() if "price_diff" not in key}

    return {**strip(booking), "quotes": [strip(quote) for quote in booking["quotes"]]}


async def quote_update(
    partner: PartnerFixture, booking_id: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = await partner.sandbox.call("PATCH", f"bookings/{booking_id}/quote_for_update", body)
    return response.status_code, response.json()


async def confirm(
    partner: PartnerFixture, booking_id: str, update_id: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    response = await partner.sandbox.call(
        "POST", f"bookings/{booking_id}/confirm_update/{update_id}/", {} if body is None else body
    )
    return response.status_code, response.json()


async def test_quote_then_confirm_the_recorded_ticket_price_change(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    quote_id = booking["quotes"][0]["id"]
    before = await partner_state(services, partner.id)
    clock.advance(timedelta(minutes=5))

    status, priced = await quote_update(
        partner, booking["id"], change(booking, tickets=[{"price": 100500}])
    )

    assert status == 200, priced
    assert [key for key in priced if key != "update_expires_at"] == RECORDED_KEYS
    assert UPDATE_ID.match(priced["update_id"])
    assert priced["update_expires_at"] == clock.text(timedelta(hours=24))
    # 0.45% of £201,000 = £904.50; IPT 12% £108.54; admin fee £1.00.
    assert (priced["total_price"], priced["total_tax"], priced["total_premium"]) == (
        1014.04,
        109.54,
        904.5,
    )
    assert (priced["total_price_diff"], priced["total_price_diff_formatted"]) == (
        1012.03,
        "£1,012.03",
    )
    shown = priced["quotes"][0]
    assert shown["id"] == quote_id
    assert (shown["price"], shown["price_diff"], shown["price_diff_formatted"]) == (
        1014.04,
        1012.03,
        "£1,012.03",
    )
    assert shown["cover_amount"] == 201000.0
    assert shown["updated_at"] == clock.text()
    assert list(shown)[-2:] == ["price_diff", "price_diff_formatted"]
    # Nothing is applied: the booking, its quotes and events are as they were.
    assert await get_booking(partner, booking["id"]) == booking
    after_quote = await partner_state(services, partner.id)
    assert after_quote["quotes"] == before["quotes"]
    assert after_quote["quote_packages"] == before["quote_packages"]
    assert after_quote["events"] == before["events"]
    assert [row["id"] for row in after_quote["booking_updates"]] == [priced["update_id"]]

    clock.advance(timedelta(minutes=5))
    status, confirmed = await confirm(partner, booking["id"], priced["update_id"])

    assert status == 201, confirmed
    assert confirmed["total_price"] == 1014.04
    assert confirmed["total_price_diff"] == 1012.03
    assert confirmed["quotes"][0]["price_diff"] == 1012.03
    assert confirmed["quotes"][0]["updated_at"] == clock.text()
    assert "update_id" not in confirmed
    fetched = await get_booking(partner, booking["id"])
    assert fetched["total_price"] == 1014.04
    assert fetched["quotes"][0]["tax"]["total_tax"] == 109.54
    assert fetched["quotes"][0]["policy_start_date"] == booking["quotes"][0]["policy_start_date"]
    assert "price_diff" not in fetched["quotes"][0]
    assert without_diffs(confirmed) == fetched
    updated = await events_of(services, partner.id, "BOOKING_UPDATED")
    assert len(updated) == 1
    assert updated[0].payload == fetched


async def test_non_price_fields_and_the_policyholder_change_together(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    body = {
        **change(booking, event_name="Taylor Swift"),
        "policyholder": {"phone": "+380506022279", "city": "Leeds"},
    }
    body["quotes"][0]["insured"] = [{"first_name": "Ann", "last_name": "Lee"}]
    status, priced = await quote_update(partner, booking["id"], body)
    assert status == 200, priced
    assert priced["total_price_diff"] == 0.0
    assert priced["quotes"][0]["price_diff"] == 0.0
    assert (
        priced["quotes"][0]["policy"]["content"]["title"] == "Missed Event Cover for Taylor Swift"
    )
    assert priced["policyholder"]["phone"] == "+380506022279"
    assert priced["quotes"][0]["insured"] == [{"first_name": "Ann", "last_name": "Lee"}]
    unchanged = await get_booking(partner, booking["id"])
    assert unchanged["policyholder"]["phone"] is None
    assert unchanged["quotes"][0]["insured"] is None

    status, confirmed = await confirm(partner, booking["id"], priced["update_id"])
    assert (status, confirmed["total_price_diff"]) == (201, 0.0)
    fetched = await get_booking(partner, booking["id"])
    assert fetched["quotes"][0]["policy"]["content"]["title"] == (
        "Missed Event Cover for Taylor Swift"
    )
    assert (fetched["policyholder"]["phone"], fetched["policyholder"]["city"]) == (
        "+380506022279",
        "Leeds",
    )
    assert fetched["policyholder"]["first_name"] == "Mark"
    assert fetched["quotes"][0]["insured"] == [{"first_name": "Ann", "last_name": "Lee"}]
    assert fetched["total_price"] == booking["total_price"] == 2.01


async def test_a_later_start_reprices_a_trip(partner: PartnerFixture, clock: MovableClock) -> None:
    start = clock.at + timedelta(days=2)
    booking = await instant(partner, travel(start, start + timedelta(days=30)))
    # 30 days x £1.20 x 0.6 (GB) = £21.60, IPT 20% £4.32.
    assert booking["total_price"] == 25.92
    later = (start + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, priced = await quote_update(
        partner, booking["id"], change(booking, policy_start_date=later)
    )
    assert status == 200, priced
    # 20 days: £14.40 + £2.88.
    assert (priced["total_price"], priced["total_price_diff"]) == (17.28, -8.64)
    assert priced["total_price_diff_formatted"] == "-£8.64"
    assert priced["quotes"][0]["policy_start_date"] == later.replace("Z", "+00:00")
    status, confirmed = await confirm(partner, booking["id"], priced["update_id"])
    assert (status, confirmed["total_price"]) == (201, 17.28)
    fetched = await get_booking(partner, booking["id"])
    assert fetched["quotes"][0]["policy_start_date"] == later.replace("Z", "+00:00")
    assert fetched["quotes"][0]["duration"] == "20 00:00:00"


async def test_a_renewable_policy_keeps_its_next_renewal(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await instant(partner, gadget(clock.at + timedelta(days=1)), customer_country="DE")
    renewal = booking["quotes"][0]["next_renewal"]
    assert renewal is not None
    status, priced = await quote_update(partner, booking["id"], change(booking, device_value=2000))
    assert status == 200, priced
    # 1% of £2,000 x 1.5 = £30.00 and 5% premium tax, instead of £15.75.
    assert (priced["total_price"], priced["total_price_diff"]) == (31.5, 15.75)
    assert priced["quotes"][0]["next_renewal"] == renewal
    status, confirmed = await confirm(partner, booking["id"], priced["update_id"])
    assert (status, confirmed["quotes"][0]["next_renewal"]) == (201, renewal)


async def test_expired_repeated_stale_and_foreign_updates_change_nothing(
    services: Services,
    partner: PartnerFixture,
    other_partner: PartnerFixture,
    clock: MovableClock,
) -> None:
    booking = await booked_ticket(partner, clock)
    other_booking = await booked_ticket(partner, clock)
    foreign_booking = await booked_ticket(other_partner, clock)
    _, first = await quote_update(partner, booking["id"], change(booking, tickets=[{"price": 50}]))
    _, second = await quote_update(
        partner, booking["id"], change(booking, tickets=[{"price": 500}])
    )
    _, foreign = await quote_update(
        other_partner, foreign_booking["id"], change(foreign_booking, tickets=[{"price": 500}])
    )
    _, late = await quote_update(
        partner, other_booking["id"], change(other_booking, number_of_tickets=3)
    )

    state = await partner_state(services, partner.id)
    for update_id, booking_id in [
        (foreign["update_id"], booking["id"]),  # another partner's update
        (late["update_id"], booking["id"]),  # an update of another booking
        ("AAAAA-BBBBB-CCCCC-UPD", booking["id"]),
    ]:
        status, body = await confirm(partner, booking_id, update_id)
        assert status == 404
        assert body == {
            "type": "not_found",
            "message": f"Update {update_id} not found for booking {booking_id}.",
            "errors": {},
        }
    status, body = await confirm(partner, foreign_booking["id"], foreign["update_id"])
    assert status == 404
    assert body["message"] == f"Booking {foreign_booking['id']} not found."
    assert await partner_state(services, partner.id) == state

    clock.advance(timedelta(hours=24))  # the second's deadline, exactly
    status, body = await confirm(partner, booking["id"], second["update_id"])
    assert status == 409
    assert body == {
        "type": "conflict",
        "message": f"Update {second['update_id']} expired at {clock.text()}; "
        "quote the change again.",
        "errors": {},
    }
    assert await partner_state(services, partner.id) == state

    clock.advance(timedelta(hours=-1))
    assert (await confirm(partner, booking["id"], first["update_id"]))[0] == 201
    confirmed = await partner_state(services, partner.id)
    status, body = await confirm(partner, booking["id"], first["update_id"])
    assert status == 409
    assert body["message"] == f"Update {first['update_id']} was confirmed already."
    status, body = await confirm(partner, booking["id"], second["update_id"])
    assert status == 409
    assert body["message"] == (
        f"Booking {booking['id']} changed after update {second['update_id']} was quoted; "
        "quote the change again."
    )
    assert await partner_state(services, partner.id) == confirmed


async def test_confirm_refuses_a_body_with_fields(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    _, priced = await quote_update(partner, booking["id"], change(booking, number_of_tickets=3))
    state = await partner_state(services, partner.id)
    status, body = await confirm(partner, booking["id"], priced["update_id"], {"force": True})
    assert status == 422
    assert body["errors"] == {"force": "Unexpected field"}
    assert await partner_state(services, partner.id) == state


@pytest.mark.parametrize(
    ("update_fields", "errors"),
    [
        (
            {"tickets": [{"price": -1}]},
            {"tickets": ["tickets[0].price must be greater than or equal to 0"]},
        ),
        ({"policy_version": 2}, {"policy_version": "Unexpected field"}),
        (
            {"policy_type": "travel_medical"},
            {"policy_type": ["The product of a booked quote cannot change."]},
        ),
        (
            {"policy_start_date": "2020-01-01T00:00:00Z"},
            {"policy_start_date": ["The policy start date cannot be in the past."]},
        ),
        (
            {"policy_start_date": "next week"},
            {"policy_start_date": ["'next week' is not an RFC 3339 date-time."]},
        ),
        (
            {"event_datetime": "2030-01-10T12:30:00Z"},
            {"event_datetime": ["event_datetime must be after policy_start_date"]},
        ),
        ({}, None),
    ],
)
async def test_invalid_changes_are_refused_and_change_nothing(
    services: Services,
    partner: PartnerFixture,
    clock: MovableClock,
    update_fields: dict[str, Any],
    errors: dict[str, Any] | None,
) -> None:
    booking = await booked_ticket(partner, clock)
    state = await partner_state(services, partner.id)
    status, body = await quote_update(partner, booking["id"], change(booking, **update_fields))
    assert status == 422
    expected = (
        {"update_fields": errors}
        if errors is not None
        else {"update_fields": ["Nothing to change."]}
    )
    assert body == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": {"quotes": {"0": expected}},
    }
    assert await partner_state(services, partner.id) == state


async def test_unknown_or_repeated_quotes_and_empty_requests_are_refused(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    quote_id = booking["quotes"][0]["id"]
    state = await partner_state(services, partner.id)
    cases = [
        (
            {"quotes": [{"id": "nope", "update_fields": {"number_of_tickets": 3}}]},
            {"quotes": {"0": {"id": [f"Quote nope is not in booking {booking['id']}."]}}},
        ),
        (
            {
                "quotes": [
                    {"id": quote_id, "update_fields": {"number_of_tickets": 3}},
                    {"id": quote_id, "update_fields": {"number_of_tickets": 4}},
                ]
            },
            {"quotes": {"1": {"id": [f"Quote {quote_id} is listed twice."]}}},
        ),
        ({}, {"quotes": ["Nothing to change."]}),
        ({"quotes": [], "policyholder": {}}, {"quotes": ["Nothing to change."]}),
        (
            {"quotes": [{"id": quote_id, "fields": {}}]},
            {"quotes": {"0": {"fields": "Unexpected field"}}},
        ),
        (
            {"policyholder": {"phone": "0770"}},
            {"policyholder": {"phone": ['The phone number should start with "+" character']}},
        ),
        (
            {"policyholder": {"last_name": None}},
            {"policyholder": {"last_name": ["This field may not be null."]}},
        ),
    ]
    for body, errors in cases:
        status, answer = await quote_update(partner, booking["id"], body)
        assert (status, answer["errors"]) == (422, errors), body
    assert await partner_state(services, partner.id) == state


async def test_closed_bookings_and_quotes_cannot_be_changed(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    body = change(booking, number_of_tickets=3)
    _, priced = await quote_update(partner, booking["id"], body)
    cancel = await partner.sandbox.call("POST", f"bookings/{booking['id']}/cancel", {})
    assert cancel.status_code == 200
    package = await quote(
        partner, ticket(clock.at + timedelta(days=1), clock.at + timedelta(days=3))
    )
    pending = await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {
            "quotes": [{"id": package["quotes"]["0"]["id"]}],
            "policyholder": policyholder(),
            "require_payment_confirmation": True,
        },
    )
    assert pending.status_code == 200
    state = await partner_state(services, partner.id)

    status, answer = await quote_update(partner, booking["id"], body)
    assert (status, answer["message"]) == (409, f"Booking {booking['id']} is cancelled.")
    status, answer = await confirm(partner, booking["id"], priced["update_id"])
    assert (status, answer["message"]) == (409, f"Booking {booking['id']} is cancelled.")
    status, answer = await quote_update(
        partner,
        package["id"],
        {
            "quotes": [
                {"id": package["quotes"]["0"]["id"], "update_fields": {"number_of_tickets": 3}}
            ]
        },
    )
    assert (status, answer["message"]) == (
        409,
        f"Booking {package['id']} is pending payment; confirm the payment first.",
    )
    status, answer = await quote_update(other_partner, booking["id"], body)
    assert status == 404
    assert await partner_state(services, partner.id) == state


async def test_a_quote_whose_cover_ended_cannot_be_changed(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(hours=1)
    booking = await instant(partner, ticket(start, start + timedelta(days=1)))
    clock.advance(timedelta(days=2))
    state = await partner_state(services, partner.id)
    status, answer = await quote_update(
        partner, booking["id"], change(booking, number_of_tickets=3)
    )
    quote_id = booking["quotes"][0]["id"]
    assert (status, answer["message"]) == (
        409,
        f"The cover of quote {quote_id} has ended; it cannot be changed.",
    )
    assert await partner_state(services, partner.id) == state


async def test_the_start_of_cover_that_began_cannot_move(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(hours=1)
    booking = await instant(partner, ticket(start, start + timedelta(days=5)))
    clock.advance(timedelta(days=1))
    state = await partner_state(services, partner.id)
    later = (clock.at + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, answer = await quote_update(
        partner, booking["id"], change(booking, policy_start_date=later)
    )
    assert status == 422
    assert answer["errors"] == {
        "quotes": {
            "0": {
                "update_fields": {
                    "policy_start_date": ["The cover has started; its start date cannot change."]
                }
            }
        }
    }
    assert await partner_state(services, partner.id) == state
    # Other fields still change once the cover has started.
    status, priced = await quote_update(partner, booking["id"], change(booking, resale_ticket=True))
    assert status == 200
    # Resale tickets: £0.90 x 1.5 = £1.35 of premium, £0.16 of IPT.
    assert (priced["total_price"], priced["total_price_diff"]) == (2.51, 0.5)


async def test_a_priced_change_the_clock_has_overtaken_is_refused(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    """The rules a change was priced under are checked again when it is confirmed: a start
    that can no longer move, a cover that has ended."""
    start = clock.at + timedelta(hours=2)
    trip = await instant(partner, travel(start, start + timedelta(days=10)))
    later = (clock.at + timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, moved = await quote_update(partner, trip["id"], change(trip, policy_start_date=later))
    assert status == 200, moved
    start = clock.at + timedelta(hours=1)
    match = await instant(partner, ticket(start, start + timedelta(hours=5)))
    status, dearer = await quote_update(
        partner, match["id"], change(match, tickets=[{"price": 500}])
    )
    assert status == 200, dearer

    clock.advance(timedelta(hours=12))  # the trip's cover has started, the match's has ended
    state = await partner_state(services, partner.id)
    cases = [
        (trip, moved, "has started; its start date cannot change"),
        (match, dearer, "has ended"),
    ]
    for booking, priced, reason in cases:
        status, answer = await confirm(partner, booking["id"], priced["update_id"])
        quote_id = booking["quotes"][0]["id"]
        assert (status, answer["message"]) == (
            409,
            f"Update {priced['update_id']}: the cover of quote {quote_id} {reason}; "
            "quote the change again.",
        )
    assert await partner_state(services, partner.id) == state


async def test_a_priced_change_confirmed_after_a_direct_one_is_refused(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    status, priced = await quote_update(
        partner, booking["id"], {"policyholder": {"phone": "+447911123456"}}
    )
    assert status == 200, priced
    direct = await partner.sandbox.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"phone": "+447911123457"}}
    )
    assert direct.status_code == 200, direct.text
    state = await partner_state(services, partner.id)
    status, answer = await confirm(partner, booking["id"], priced["update_id"])
    assert (status, answer["message"]) == (
        409,
        f"Booking {booking['id']} changed after update {priced['update_id']} was quoted; "
        "quote the change again.",
    )
    assert await partner_state(services, partner.id) == state
    assert (await get_booking(partner, booking["id"]))["policyholder"]["phone"] == "+447911123457"


async def test_the_policyholders_names_and_email_cannot_be_removed(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    state = await partner_state(services, partner.id)
    for name in ("first_name", "last_name", "email"):
        body = {"policyholder": {name: None}}
        direct = await partner.sandbox.call("PATCH", f"bookings/{booking['id']}/", body)
        status, priced = await quote_update(partner, booking["id"], body)
        expected = {"policyholder": {name: ["This field may not be null."]}}
        assert (direct.status_code, direct.json()["errors"]) == (422, expected)
        assert (status, priced["errors"]) == (422, expected)
    assert await partner_state(services, partner.id) == state


async def test_a_payment_is_not_confirmed_for_a_cover_that_has_ended(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=2)))
    body = {
        "quotes": [{"id": package["quotes"]["0"]["id"]}],
        "policyholder": policyholder(),
        "require_payment_confirmation": True,
    }
    booked = await partner.sandbox.call("POST", f"bookings/{package['id']}/", body)
    assert booked.json()["status"] == "PENDING_PAYMENT"
    clock.advance(timedelta(days=4))
    state = await partner_state(services, partner.id)
    late = await partner.sandbox.call("PUT", f"bookings/{package['id']}/confirm", {})
    assert (late.status_code, late.json()["message"]) == (
        409,
        f"The cover of booking {package['id']} has ended; its payment can no longer be confirmed.",
    )
    assert await partner_state(services, partner.id) == state
