"""Cancellations over HTTP: at once, previewed then confirmed, partial; the refunds of each
product's terms; BOOKING_CANCELLED; and every refused transition."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from coverline.runtime import Services
from coverline.webhooks.formats import XCOVER, body_for
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

CANCELLATION_ID = re.compile(r"^[A-Za-z0-9]{5}-[A-Za-z0-9]{5}-[A-Za-z0-9]{5}-CCL$")
# The keys of XCover's recorded answers to cancel and confirm_cancellation.
RECORDED_KEYS = [
    "id",
    "status",
    "quotes",
    "policyholder",
    "pds_url",
    "coi",
    "created_at",
    "updated_at",
    "total_price",
    "total_price_formatted",
    "total_refund",
    "total_refund_formatted",
    "total_tax",
    "total_tax_formatted",
    "total_premium",
    "total_premium_formatted",
    "currency",
    "cancellation_id",
    "confirm_before",
]
RECORDED_QUOTE_KEYS = [
    "id",
    "policy_start_date",
    "policy_end_date",
    "policy_cancellation_date",
    "policy_coolingoff_date",
    "status",
    "price",
    "refund_value",
    "adjustment_fee",
    "policy",
    "insured",
    "created_at",
    "confirmed_at",
    "updated_at",
    "cancelled_at",
    "commission",
]


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    return freeze(services, monkeypatch, EPOCH)


async def cancel(partner: PartnerFixture, booking_id: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await partner.sandbox.call("POST", f"bookings/{booking_id}/cancel", body)
    return response.status_code, response.json()


async def confirm(
    partner: PartnerFixture, booking_id: str, cancellation_id: str
) -> tuple[int, dict[str, Any]]:
    response = await partner.sandbox.call(
        "POST", f"bookings/{booking_id}/confirm_cancellation/{cancellation_id}/", {}
    )
    return response.status_code, response.json()


async def booked_ticket(partner: PartnerFixture, clock: MovableClock) -> dict[str, Any]:
    start = clock.at + timedelta(days=1)
    return await instant(partner, ticket(start, start + timedelta(days=12)))


async def test_cancel_at_once_within_the_cooling_off_period(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    booked_at = clock.at
    clock.advance(timedelta(hours=3))

    status, body = await cancel(partner, booking["id"], {})

    assert status == 200, body
    assert list(body) == RECORDED_KEYS
    assert list(body["quotes"][0]) == RECORDED_QUOTE_KEYS
    shown = booking["quotes"][0]
    assert body["quotes"][0] == {
        "id": shown["id"],
        "policy_start_date": "2030-01-11T12:00:00Z",
        "policy_end_date": "2030-01-23T12:00:00Z",
        "policy_cancellation_date": clock.text(),
        "policy_coolingoff_date": "2030-01-24T12:00:00.000000Z",
        "status": "CANCELLED",
        "price": 2.01,
        "refund_value": 2.01,
        "adjustment_fee": 0.0,
        "policy": shown["policy"],
        "insured": None,
        "created_at": shown["created_at"],
        "confirmed_at": shown["confirmed_at"],
        "updated_at": clock.text(),
        "cancelled_at": clock.text(),
        "commission": None,
    }
    assert (
        shown["confirmed_at"]
        == "2030-01-10T12:00:00.000000Z"
        == booked_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    assert {key: body[key] for key in RECORDED_KEYS if key != "quotes"} == {
        "id": booking["id"],
        "status": "CANCELLED",
        "policyholder": booking["policyholder"],
        "pds_url": booking["pds_url"],
        "coi": booking["coi"],
        "created_at": booking["created_at"],
        "updated_at": clock.text(),
        "total_price": 0.0,
        "total_price_formatted": "£0.00",
        "total_refund": 2.01,
        "total_refund_formatted": "£2.01",
        "total_tax": 0.0,
        "total_tax_formatted": "£0.00",
        "total_premium": 0.0,
        "total_premium_formatted": "£0.00",
        "currency": "GBP",
        "cancellation_id": None,
        "confirm_before": None,
    }

    fetched = await get_booking(partner, booking["id"])
    assert fetched["status"] == "CANCELLED"
    assert (fetched["total_price"], fetched["total_tax"], fetched["total_premium"]) == (0, 0, 0)
    assert fetched["quotes"][0]["status"] == "CANCELLED"
    assert fetched["quotes"][0]["cancelled_at"] == clock.text()
    assert fetched["quotes"][0]["can_be_cancelled"] is False
    assert fetched["quotes"][0]["price"] == 2.01

    events = await events_of(services, partner.id, "BOOKING_CANCELLED")
    assert len(events) == 1
    payload = events[0].payload
    webhook = json.loads(body_for(XCOVER, "BOOKING_CANCELLED", 0, "BOOKING_CANCELLED", payload))
    assert webhook["event"] == "BOOKING_CANCELLED"
    assert webhook["payload"]["status"] == "CANCELLED"
    assert webhook["payload"]["quotes"][0]["refund_value"] == 2.01
    assert payload["quotes"][0].pop("refund_value") == 2.01
    assert payload == fetched


async def test_preview_then_confirm(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    booking = await booked_ticket(partner, clock)
    before = await partner_state(services, partner.id)
    clock.advance(timedelta(hours=1))
    previewed_at = clock.text()

    status, preview = await cancel(partner, booking["id"], {"preview": True})

    assert status == 200, preview
    assert list(preview) == RECORDED_KEYS
    assert CANCELLATION_ID.match(preview["cancellation_id"])
    assert preview["confirm_before"] == clock.text(timedelta(hours=24))
    assert (preview["status"], preview["total_refund"], preview["total_price"]) == (
        "CANCELLED",
        2.01,
        0.0,
    )
    assert preview["updated_at"] == booking["updated_at"]
    line = preview["quotes"][0]
    assert (line["status"], line["refund_value"], line["adjustment_fee"]) == (
        "CANCELLED",
        2.01,
        0.0,
    )
    assert (line["policy_cancellation_date"], line["cancelled_at"]) == (None, None)
    assert line["policy_coolingoff_date"] == "2030-01-24T12:00:00.000000Z"
    # Nothing changed but the stored preview.
    assert await get_booking(partner, booking["id"]) == booking
    after = await partner_state(services, partner.id)
    assert {k: v for k, v in after.items() if k != "cancellations"} == {
        k: v for k, v in before.items() if k != "cancellations"
    }
    assert [row["id"] for row in after["cancellations"]] == [preview["cancellation_id"]]

    clock.advance(timedelta(hours=23))
    status, done = await confirm(partner, booking["id"], preview["cancellation_id"])

    assert status == 200, done
    assert list(done) == RECORDED_KEYS
    assert (done["status"], done["cancellation_id"], done["confirm_before"]) == (
        "CANCELLED",
        None,
        None,
    )
    assert done["total_refund"] == 2.01
    # Cancelled as of the preview, whose refunds it honours.
    assert done["quotes"][0]["policy_cancellation_date"] == previewed_at
    assert done["quotes"][0]["cancelled_at"] == previewed_at
    assert done["updated_at"] == clock.text()
    fetched = await get_booking(partner, booking["id"])
    assert fetched["status"] == "CANCELLED"
    assert fetched["quotes"][0]["cancelled_at"] == previewed_at
    events = await events_of(services, partner.id, "BOOKING_CANCELLED")
    assert [event.payload["quotes"][0]["refund_value"] for event in events] == [2.01]


async def test_pro_rata_after_the_cooling_off_period_less_a_flat_fee(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    booking = await instant(partner, travel(start, start + timedelta(days=30)))
    assert booking["total_price"] == 25.92  # £21.60 + IPT 20%
    clock.advance(timedelta(days=16))  # 15 of the 30 days used

    status, preview = await cancel(partner, booking["id"], {"preview": True})

    assert status == 200
    # £25.92 - £12.96 used - £5.00 fee.
    line = preview["quotes"][0]
    assert (line["refund_value"], line["adjustment_fee"]) == (7.96, 5.0)
    assert (preview["total_refund"], preview["total_refund_formatted"]) == (7.96, "£7.96")
    assert line["policy_coolingoff_date"] == "2030-01-24T12:00:00.000000Z"


async def test_pro_rata_less_a_percentage_fee_cancels_the_renewal_too(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    booking = await instant(partner, gadget(start), customer_country="DE")
    # 1% of £1,000 x 1.5 = £15.00; premium tax 5% £0.75; cover to 11 February (31 days).
    assert booking["total_price"] == 15.75
    assert booking["quotes"][0]["policy_end_date"] == "2030-02-11T12:00:00+00:00"
    assert booking["quotes"][0]["next_renewal"] is not None
    clock.advance(timedelta(days=16))  # 15 of 31 days used

    status, body = await cancel(partner, booking["id"], {})

    assert status == 200
    # £15.75 x 16/31 = £8.13; 10% fee £0.81.
    line = body["quotes"][0]
    assert (line["refund_value"], line["adjustment_fee"]) == (7.32, 0.81)
    fetched = await get_booking(partner, booking["id"])
    assert fetched["quotes"][0]["next_renewal"] is None


async def test_offsets_are_kept_across_a_change_of_summer_time(
    services: Services, partner: PartnerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = freeze(services, monkeypatch, datetime(2030, 3, 10, 10, tzinfo=UTC))
    london_winter, london_summer = timezone(timedelta(0)), timezone(timedelta(hours=1))
    start = datetime(2030, 3, 20, 10, tzinfo=london_winter)
    end = datetime(2030, 4, 9, 10, tzinfo=london_summer)  # after 31 March: 19 days 23 hours
    item = ticket(start, end, policy_start_date="2030-03-20T10:00:00+00:00")
    item["event_datetime"] = "2030-04-09T10:00:00+01:00"
    booking = await instant(partner, item)
    assert booking["quotes"][0]["policy_end_date"] == "2030-04-09T10:00:00+01:00"
    assert booking["quotes"][0]["duration"] == "19 23:00:00"
    clock.advance(timedelta(days=20))  # 10 days of cover used, cooling-off over

    status, preview = await cancel(partner, booking["id"], {"preview": True})

    assert status == 200
    line = preview["quotes"][0]
    assert (line["policy_start_date"], line["policy_end_date"]) == (
        "2030-03-20T10:00:00Z",
        "2030-04-09T10:00:00+01:00",
    )
    # £2.01 x (479 - 240) / 479 hours = £1.0029.
    assert (line["refund_value"], line["adjustment_fee"]) == (1.0, 0.0)
    assert end - start == timedelta(hours=479)


async def test_partial_cancellation_keeps_the_booking(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(
        partner,
        ticket(start, start + timedelta(days=5)),
        travel(start, start + timedelta(days=10)),
    )
    ticket_id, travel_id = package["quotes"]["0"]["id"], package["quotes"]["1"]["id"]
    response = await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {"quotes": [{"id": ticket_id}, {"id": travel_id}], "policyholder": policyholder()},
    )
    assert response.status_code == 200
    booking = response.json()
    assert booking["total_price"] == 16.41

    status, body = await cancel(partner, booking["id"], {"quotes": [{"id": travel_id}]})

    assert status == 200, body
    assert body["status"] == "CONFIRMED"
    assert [line["id"] for line in body["quotes"]] == [travel_id]
    assert body["quotes"][0]["refund_value"] == 14.4
    assert (body["total_price"], body["total_refund"]) == (2.01, 14.4)
    fetched = await get_booking(partner, booking["id"])
    assert fetched["status"] == "CONFIRMED"
    assert [q["status"] for q in fetched["quotes"]] == ["CONFIRMED", "CANCELLED"]
    assert [q["can_be_cancelled"] for q in fetched["quotes"]] == [True, False]
    assert fetched["total_price"] == 2.01
    events = await events_of(services, partner.id, "BOOKING_CANCELLED")
    assert [[q.get("refund_value") for q in e.payload["quotes"]] for e in events] == [[None, 14.4]]
    assert events[0].payload["status"] == "CONFIRMED"

    status, body = await cancel(partner, booking["id"], {})
    assert status == 200
    assert [line["id"] for line in body["quotes"]] == [ticket_id]
    assert (body["status"], body["total_refund"], body["total_price"]) == ("CANCELLED", 2.01, 0.0)
    events = await events_of(services, partner.id, "BOOKING_CANCELLED")
    assert [[q.get("refund_value") for q in e.payload["quotes"]] for e in events] == [
        [None, 14.4],
        [2.01, None],
    ]


async def test_refused_cancellations_change_nothing(
    services: Services,
    partner: PartnerFixture,
    other_partner: PartnerFixture,
    clock: MovableClock,
) -> None:
    booking = await booked_ticket(partner, clock)
    quote_id = booking["quotes"][0]["id"]
    other = await booked_ticket(partner, clock)
    foreign = await booked_ticket(other_partner, clock)
    _, stale = await cancel(partner, booking["id"], {"preview": True})
    _, expired = await cancel(partner, booking["id"], {"preview": True})
    _, others = await cancel(partner, other["id"], {"preview": True})
    _, foreigns = await cancel(other_partner, foreign["id"], {"preview": True})
    state = await partner_state(services, partner.id)

    refused = [
        (await cancel(partner, booking["id"], {"quotes": [{"id": "nope"}]}), 422),
        (
            await cancel(partner, booking["id"], {"quotes": [{"id": quote_id}, {"id": quote_id}]}),
            422,
        ),
        (await cancel(partner, booking["id"], {"quotes": []}), 422),
        (await cancel(partner, booking["id"], {"preview": "maybe"}), 422),
        (await cancel(partner, booking["id"], {"reason": "changed my mind"}), 422),
        (await cancel(partner, foreign["id"], {}), 404),
        (await confirm(partner, booking["id"], others["cancellation_id"]), 404),
        (await confirm(partner, booking["id"], foreigns["cancellation_id"]), 404),
        (await confirm(partner, booking["id"], "AAAAA-BBBBB-CCCCC-CCL"), 404),
        (await confirm(partner, foreign["id"], foreigns["cancellation_id"]), 404),
    ]
    assert [status for (status, _body), _ in refused] == [expected for _, expected in refused]
    assert refused[0][0][1]["errors"] == {
        "quotes": {"0": {"id": [f"Quote nope is not in booking {booking['id']}."]}}
    }
    assert refused[1][0][1]["errors"] == {
        "quotes": {"1": {"id": [f"Quote {quote_id} is listed twice."]}}
    }
    assert refused[4][0][1]["errors"] == {"reason": "Unexpected field"}
    assert refused[6][0][1] == {
        "type": "not_found",
        "message": f"Cancellation {others['cancellation_id']} not found for booking "
        f"{booking['id']}.",
        "errors": {},
    }
    assert await partner_state(services, partner.id) == state

    clock.advance(timedelta(hours=24))
    status, body = await confirm(partner, booking["id"], expired["cancellation_id"])
    assert (status, body["message"]) == (
        409,
        f"Cancellation {expired['cancellation_id']} expired at {clock.text()}; "
        "preview the cancellation again.",
    )
    assert await partner_state(services, partner.id) == state

    assert (await cancel(partner, booking["id"], {}))[0] == 200
    cancelled = await partner_state(services, partner.id)
    status, body = await cancel(partner, booking["id"], {})
    assert (status, body["message"]) == (409, f"Booking {booking['id']} is cancelled already.")
    status, body = await cancel(partner, booking["id"], {"preview": True})
    assert status == 409
    status, body = await cancel(partner, booking["id"], {"quotes": [{"id": quote_id}]})
    assert status == 409
    clock.advance(timedelta(hours=-1))
    status, body = await confirm(partner, booking["id"], stale["cancellation_id"])
    assert (status, body["message"]) == (409, f"Booking {booking['id']} is cancelled already.")
    assert await partner_state(services, partner.id) == cancelled


async def test_a_confirmed_preview_cannot_be_confirmed_again_nor_a_changed_booking(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(
        partner, ticket(start, start + timedelta(days=5)), ticket(start, start + timedelta(days=6))
    )
    first, second = package["quotes"]["0"]["id"], package["quotes"]["1"]["id"]
    response = await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {"quotes": [{"id": first}, {"id": second}], "policyholder": policyholder()},
    )
    assert response.status_code == 200
    _, whole = await cancel(partner, package["id"], {"preview": True})
    _, part = await cancel(partner, package["id"], {"preview": True, "quotes": [{"id": first}]})
    assert (await confirm(partner, package["id"], part["cancellation_id"]))[0] == 200
    state = await partner_state(services, partner.id)

    status, body = await confirm(partner, package["id"], part["cancellation_id"])
    assert (status, body["message"]) == (
        409,
        f"Cancellation {part['cancellation_id']} was confirmed already.",
    )
    status, body = await confirm(partner, package["id"], whole["cancellation_id"])
    assert (status, body["message"]) == (
        409,
        f"Booking {package['id']} changed after cancellation {whole['cancellation_id']} was "
        "previewed; preview the cancellation again.",
    )
    status, body = await cancel(partner, package["id"], {"quotes": [{"id": first}]})
    assert (status, body["message"]) == (409, f"Quote {first} is cancelled already.")
    assert await partner_state(services, partner.id) == state


async def test_what_cannot_be_cancelled(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(hours=1)
    ended = await instant(partner, ticket(start, start + timedelta(days=1)))
    package = await quote(partner, ticket(start, start + timedelta(days=3)))
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
    clock.advance(timedelta(days=2))
    state = await partner_state(services, partner.id)

    status, body = await cancel(partner, ended["id"], {})
    assert (status, body["message"]) == (
        409,
        f"Booking {ended['id']} has no quote in cover left to cancel.",
    )
    quote_id = ended["quotes"][0]["id"]
    status, body = await cancel(partner, ended["id"], {"quotes": [{"id": quote_id}]})
    assert (status, body["message"]) == (
        409,
        f"Quote {quote_id} cannot be cancelled: its cover has ended.",
    )
    assert (await get_booking(partner, ended["id"]))["quotes"][0]["can_be_cancelled"] is False
    status, body = await cancel(partner, package["id"], {})
    assert (status, body["message"]) == (
        409,
        f"Booking {package['id']} is pending payment; there is nothing to cancel yet.",
    )
    status, body = await cancel(partner, package["id"] + "X", {})
    assert status == 404
    assert await partner_state(services, partner.id) == state
