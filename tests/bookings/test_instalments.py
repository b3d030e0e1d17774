"""Instalment plans over HTTP: offered in quotes, chosen at booking, the schedule XCover's
client reads (`get_instalments`) and the payments it reports
(`update_instalment_payment_status`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from coverline.runtime import Services
from tests.bookings.lifecycle_helpers import (
    EPOCH,
    MovableClock,
    freeze,
    instant,
    quote,
    ticket,
    travel,
)
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import policyholder

PLAN = "1year-monthly"
# (total, premium, admin fee, IPT) of each instalment of £2.01 (£0.90 + £1.00 + £0.11).
SHARES = [(25, 12, 12, 1)] + [(16, 7, 8, 1)] * 6 + [(16, 8, 8, 0)] + [(16, 7, 8, 1)] * 4


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    return freeze(services, monkeypatch, EPOCH)


async def book_with_plan(
    partner: PartnerFixture, package: dict[str, Any], plan: str | None = PLAN, **extra: Any
) -> tuple[int, dict[str, Any]]:
    item: dict[str, Any] = {"id": package["quotes"]["0"]["id"]}
    if plan is not None:
        item["instalment_plan"] = plan
    body = {"quotes": [item], "policyholder": policyholder(), **extra}
    response = await partner.sandbox.call("POST", f"bookings/{package['id']}/", body)
    return response.status_code, response.json()


async def schedule_of(partner: PartnerFixture, booking_id: str) -> dict[str, Any]:
    response = await partner.sandbox.call("GET", f"bookings/{booking_id}/instalments/")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def report(
    partner: PartnerFixture, booking_id: str, *payments: dict[str, Any]
) -> tuple[int, Any]:
    response = await partner.sandbox.call(
        "POST", f"bookings/{booking_id}/instalments/", {"quotes": list(payments)}
    )
    return response.status_code, response.json() if response.content else None


def payment(quote_id: str, number: int, status: str = "PAID", **extra: Any) -> dict[str, Any]:
    return {
        "id": quote_id,
        "payment_attempted_date": "2030-02-10T19:00:00Z",
        "payment_status": status,
        "instalment_number": number,
        **extra,
    }


def pounds(minor: int) -> str:
    return f"£{minor // 100}.{minor % 100:02d}"


def expected_instalment(
    quote_id: str, number: int, status: str, period: tuple[str, str], instalment_id: str
) -> dict[str, Any]:
    total, premium, admin, ipt = SHARES[number - 1]
    return {
        "id": instalment_id,
        "number": number,
        "quote": quote_id,
        "period_start_date": period[0],
        "period_end_date": period[1],
        "status": status,
        "commission": 0.0,
        "total_amount": total / 100,
        "tax": {
            "taxes": [
                {
                    "tax_code": "Admin. fee",
                    "tax_type": "FIXED_VALUE",
                    "tax_label": "Admin. fee",
                    "tax_value": "1.00",
                    "tax_amount": f"0.{admin:02d}",
                    "tax_amount_formatted": pounds(admin),
                },
                {
                    "tax_code": "IPT",
                    "tax_type": "PERCENTAGE",
                    "tax_label": "IPT",
                    "tax_value": "12",
                    "tax_amount": f"0.{ipt:02d}",
                    "tax_amount_formatted": pounds(ipt),
                },
            ],
            "total_tax": f"0.{admin + ipt:02d}",
            "total_tax_formatted": pounds(admin + ipt),
            "total_amount_without_tax": f"0.{premium:02d}",
            "total_amount_without_tax_formatted": pounds(premium),
        },
        "surcharges": {},
        "payment_failures": None,
    }


async def test_quotes_offer_the_plan_of_their_product(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(
        partner, ticket(start, start + timedelta(days=1)), travel(start, start + timedelta(days=3))
    )
    assert package["quotes"]["0"]["instalment_plans"] == [
        {"name": PLAN, "label": "1Year-Monthly", "amount": 2.01}
    ]
    assert package["quotes"]["1"]["instalment_plans"] == []


async def test_the_recorded_instalment_workflow(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(hours=7)  # 2030-01-10T19:00:00Z
    package = await quote(partner, ticket(start, start + timedelta(hours=12)))
    quote_id = package["quotes"]["0"]["id"]
    status, booking = await book_with_plan(partner, package)
    assert status == 200, booking
    assert booking["total_price"] == 2.01

    schedule = await schedule_of(partner, booking["id"])

    months = [f"2030-{month:02d}-10T19:00:00Z" for month in range(1, 13)] + ["2031-01-10T19:00:00Z"]
    rendered = schedule["quotes"][0]["payment_schedule"]
    assert len(rendered) == 12
    assert rendered == [
        expected_instalment(
            quote_id,
            number,
            "PAID" if number == 1 else "UNPAID",
            (months[number - 1], months[number]),
            rendered[number - 1]["id"],
        )
        for number in range(1, 13)
    ]
    assert schedule == {
        "quotes": [
            {
                "id": quote_id,
                "next_payment": rendered[1],
                "paid_until": "2030-02-10T19:00:00Z",
                "payment_schedule": rendered,
                "total_amount_paid": 0.25,
                "total_amount_due": 1.76,
            }
        ],
        "currency": "GBP",
    }
    assert sum(round(entry["total_amount"] * 100) for entry in rendered) == 201

    # The recorded report: the first instalment, paid at booking already.
    recorded = payment(quote_id, 1, payment_attempted_date="2030-01-10T19:00:00Z")
    state = await partner_state(services, partner.id)
    assert await report(partner, booking["id"], recorded) == (204, None)
    assert await partner_state(services, partner.id) == state

    assert await report(partner, booking["id"], payment(quote_id, 2)) == (204, None)
    after = (await schedule_of(partner, booking["id"]))["quotes"][0]
    assert [entry["status"] for entry in after["payment_schedule"][:3]] == [
        "PAID",
        "PAID",
        "UNPAID",
    ]
    assert (after["paid_until"], after["next_payment"]["number"]) == ("2030-03-10T19:00:00Z", 3)
    assert (after["total_amount_paid"], after["total_amount_due"]) == (0.41, 1.6)


async def test_a_failed_payment_is_kept_and_can_be_paid_later(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=2)))
    quote_id = package["quotes"]["0"]["id"]
    _, booking = await book_with_plan(partner, package)

    assert await report(partner, booking["id"], payment(quote_id, 2, "FAILED")) == (204, None)
    assert await report(
        partner,
        booking["id"],
        payment(quote_id, 2, "FAILED", payment_attempted_date="2030-02-13T19:00:00+01:00"),
    ) == (204, None)
    failed = (await schedule_of(partner, booking["id"]))["quotes"][0]
    second = failed["payment_schedule"][1]
    assert second["status"] == "FAILED"
    assert second["payment_failures"] == [
        {"payment_attempted_date": "2030-02-10T19:00:00Z"},
        {"payment_attempted_date": "2030-02-13T19:00:00+01:00"},
    ]
    assert failed["next_payment"] == second
    assert failed["total_amount_due"] == 1.76

    assert await report(partner, booking["id"], payment(quote_id, 2)) == (204, None)
    paid = (await schedule_of(partner, booking["id"]))["quotes"][0]
    assert paid["payment_schedule"][1]["status"] == "PAID"
    assert paid["next_payment"]["number"] == 3


async def test_periods_keep_the_partner_offset_across_month_ends(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    item = ticket(clock.at, clock.at, policy_start_date="2030-01-31T10:00:00+01:00")
    item["event_datetime"] = "2030-03-31T10:00:00+02:00"
    package = await quote(partner, item)
    _, booking = await book_with_plan(partner, package)
    rendered = (await schedule_of(partner, booking["id"]))["quotes"][0]["payment_schedule"]
    assert [(e["period_start_date"], e["period_end_date"]) for e in rendered[:3]] == [
        ("2030-01-31T10:00:00+01:00", "2030-02-28T10:00:00+01:00"),
        ("2030-02-28T10:00:00+01:00", "2030-03-31T10:00:00+01:00"),
        ("2030-03-31T10:00:00+01:00", "2030-04-30T10:00:00+01:00"),
    ]


async def test_payment_pending_bookings_pay_the_first_instalment_on_confirmation(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=2)))
    status, booking = await book_with_plan(partner, package, require_payment_confirmation=True)
    assert status == 200
    pending = (await schedule_of(partner, booking["id"]))["quotes"][0]
    assert (pending["paid_until"], pending["next_payment"]["number"]) == (None, 1)
    assert pending["total_amount_paid"] == 0.0
    confirmed = await partner.sandbox.call("PUT", f"bookings/{booking['id']}/confirm", {})
    assert confirmed.status_code == 201
    paid = (await schedule_of(partner, booking["id"]))["quotes"][0]
    assert (paid["payment_schedule"][0]["status"], paid["total_amount_paid"]) == ("PAID", 0.25)


async def test_cancelling_refunds_what_was_paid_and_stops_the_schedule(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=60)))
    quote_id = package["quotes"]["0"]["id"]
    _, booking = await book_with_plan(partner, package)
    assert await report(partner, booking["id"], payment(quote_id, 2)) == (204, None)

    response = await partner.sandbox.call("POST", f"bookings/{booking['id']}/cancel", {})

    assert response.status_code == 200
    # Within the cooling-off period: the £0.41 paid, not the £2.01 price.
    assert response.json()["quotes"][0]["refund_value"] == 0.41
    schedule = (await schedule_of(partner, booking["id"]))["quotes"][0]
    assert [e["status"] for e in schedule["payment_schedule"]] == ["PAID"] * 2 + ["CANCELLED"] * 10
    assert (schedule["next_payment"], schedule["total_amount_due"]) == (None, 0.0)
    state = await partner_state(services, partner.id)
    status, body = await report(partner, booking["id"], payment(quote_id, 3))
    assert (status, body["message"]) == (409, f"Booking {booking['id']} is cancelled.")
    assert await partner_state(services, partner.id) == state


async def test_after_the_cooling_off_period_the_used_cover_is_kept_from_what_was_paid(
    partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=20)))
    _, booking = await book_with_plan(partner, package)
    clock.advance(timedelta(days=16))  # 15 of 20 days used: £1.51 earned, £0.25 paid

    response = await partner.sandbox.call(
        "POST", f"bookings/{booking['id']}/cancel", {"preview": True}
    )

    assert response.status_code == 200
    line = response.json()["quotes"][0]
    assert (line["refund_value"], line["adjustment_fee"]) == (0.0, 0.0)


async def test_plans_the_product_does_not_offer_are_refused(
    services: Services, partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    trip = await quote(partner, travel(start, start + timedelta(days=3)))
    tickets = await quote(partner, ticket(start, start + timedelta(days=3)))
    state = await partner_state(services, partner.id)

    status, body = await book_with_plan(partner, trip)
    assert status == 422
    assert body["errors"] == {
        "instalment_plan": [
            f"Quote {trip['quotes']['0']['id']} (Travel Medical Cover) is not sold with "
            "instalments."
        ]
    }
    status, body = await book_with_plan(partner, tickets, plan="1year-quarterly")
    assert status == 422
    assert body["errors"] == {
        "instalment_plan": [
            f"Quote {tickets['quotes']['0']['id']} offers the instalment plan '1year-monthly', "
            "not '1year-quarterly'."
        ]
    }
    assert await partner_state(services, partner.id) == state


async def test_wrong_payment_reports_change_nothing(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture, clock: MovableClock
) -> None:
    start = clock.at + timedelta(days=1)
    package = await quote(partner, ticket(start, start + timedelta(days=3)))
    quote_id = package["quotes"]["0"]["id"]
    _, booking = await book_with_plan(partner, package)
    plain = await instant(partner, ticket(start, start + timedelta(days=3)))
    state = await partner_state(services, partner.id)

    invalid = [
        (
            [payment("nope", 2)],
            {
                "quotes": {
                    "0": {
                        "id": [f"Quote nope of booking {booking['id']} is not paid by instalments."]
                    }
                }
            },
        ),
        (
            [payment(quote_id, 13)],
            {
                "quotes": {
                    "0": {"instalment_number": [f"Quote {quote_id} has instalments 1 to 12."]}
                }
            },
        ),
        (
            [payment(quote_id, 2), payment(quote_id, 2)],
            {
                "quotes": {
                    "1": {
                        "instalment_number": [f"Instalment 2 of quote {quote_id} is listed twice."]
                    }
                }
            },
        ),
        ([payment(quote_id, 0)], {"quotes": {"0": {"instalment_number": None}}}),
        ([payment(quote_id, 2, "LATE")], {"quotes": {"0": {"payment_status": None}}}),
        (
            [payment(quote_id, 2, payment_attempted_date="yesterday")],
            {
                "quotes": {
                    "0": {"payment_attempted_date": ["'yesterday' is not an RFC 3339 date-time."]}
                }
            },
        ),
        ([payment(quote_id, 2, amount=1)], {"quotes": {"0": {"amount": "Unexpected field"}}}),
        ([], {"quotes": None}),
    ]
    for payments, errors in invalid:
        status, body = await report(partner, booking["id"], *payments)
        assert status == 422, (payments, body)
        assert body["type"] == "validation_error"
        assert set(body["errors"]) == set(errors)
        detail = errors["quotes"]
        if isinstance(detail, dict):
            for index, fields in detail.items():
                for name, messages in fields.items():
                    if messages is not None:
                        assert body["errors"]["quotes"][index][name] == messages

    status, body = await report(partner, booking["id"], payment(quote_id, 1, "FAILED"))
    assert (status, body["message"]) == (409, f"Instalment 1 of quote {quote_id} is paid already.")
    plain_quote = plain["quotes"][0]["id"]
    status, body = await report(partner, plain["id"], payment(plain_quote, 1))
    assert status == 422
    status, body = await report(other_partner, booking["id"], payment(quote_id, 2))
    assert status == 404
    assert await partner_state(services, partner.id) == state

    assert await schedule_of(partner, plain["id"]) == {"quotes": [], "currency": "GBP"}
    response = await other_partner.sandbox.call("GET", f"bookings/{booking['id']}/instalments/")
    assert response.status_code == 404
