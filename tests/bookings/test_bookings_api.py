"""Bookings over HTTP: book, instant booking, payment confirmation, get, list, modify."""

from __future__ import annotations

from typing import Any

import pytest

from coverline.kit.http import EmptyBody, NoBody, PartnerRouter
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.gadget import gadget_item
from tests.fixtures.payloads import (
    instant_booking_request,
    policyholder,
    quote_request,
    ticket_item,
)


async def quote(partner: PartnerFixture, *items: dict[str, Any]) -> dict[str, Any]:
    response = await partner.sandbox.call("POST", "quotes/", quote_request(*items))
    assert response.status_code == 201
    return dict(response.json())


async def book(
    partner: PartnerFixture, package: dict[str, Any], **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {
        "quotes": [{"id": package["quotes"]["0"]["id"]}],
        "policyholder": policyholder(),
        **extra,
    }
    response = await partner.sandbox.call("POST", f"bookings/{package['id']}/", body)
    return response.status_code, response.json()


async def test_book_a_quote_package(partner: PartnerFixture) -> None:
    package = await quote(partner)
    status, booking = await book(partner, package)
    assert status == 200
    assert booking["id"] == package["id"]
    assert booking["status"] == "CONFIRMED"
    assert [q["status"] for q in booking["quotes"]] == ["CONFIRMED"]
    assert booking["quotes"][0]["confirmed_at"] is not None
    assert booking["quotes"][0]["can_be_cancelled"] is True
    assert booking["quotes"][0]["next_renewal"] is None
    assert booking["quotes"][0]["total_renewed_times"] == 0
    assert booking["policyholder"]["email"] == "mark.mcintosh@example.com"
    assert booking["policyholder"]["phone"] is None
    assert (booking["total_price"], booking["total_tax"], booking["total_premium"]) == (
        2.01,
        1.11,
        0.9,
    )
    assert booking["total_premium_formatted"] == "£0.90"
    fetched = await partner.sandbox.call("GET", f"bookings/{package['id']}/")
    assert fetched.status_code == 200
    assert fetched.json() == booking


async def test_only_chosen_quotes_are_booked(partner: PartnerFixture) -> None:
    package = await quote(partner, ticket_item(), ticket_item())
    status, booking = await book(partner, package)
    assert status == 200
    assert [q["id"] for q in booking["quotes"]] == [package["quotes"]["0"]["id"]]
    assert booking["total_price"] == 2.01


async def test_payment_confirmation(partner: PartnerFixture) -> None:
    package = await quote(partner)
    status, booking = await book(partner, package, require_payment_confirmation=True)
    assert status == 200
    assert booking["status"] == "PENDING_PAYMENT"
    assert booking["quotes"][0]["can_be_cancelled"] is False
    assert booking["quotes"][0]["confirmed_at"] is None
    confirmed = await partner.sandbox.call("PUT", f"bookings/{package['id']}/confirm", {})
    assert confirmed.status_code == 201
    assert confirmed.json()["status"] == "CONFIRMED"
    assert confirmed.json()["quotes"][0]["status"] == "CONFIRMED"
    again = await partner.sandbox.call("PUT", f"bookings/{package['id']}/confirm", {})
    assert again.status_code == 409
    assert again.json()["type"] == "conflict"


async def test_instant_booking(partner: PartnerFixture) -> None:
    response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert response.status_code == 200, response.text
    booking = response.json()
    assert booking["status"] == "CONFIRMED"
    assert booking["total_price"] == 2.01
    assert booking["policyholder"]["last_name"] == "Mcintosh"
    fetched = (await partner.sandbox.call("GET", f"bookings/{booking['id']}/")).json()
    assert fetched == booking


async def test_list_bookings_pagination(partner: PartnerFixture) -> None:
    ids = []
    for _ in range(3):
        response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
        ids.append(response.json()["id"])
    await quote(partner)  # a quote package that is not a booking is not listed
    page = await partner.sandbox.call("GET", "bookings/", params={"limit": 1, "offset": 1})
    assert page.status_code == 200
    body = page.json()
    base = f"https://cover.test/api/partners/{partner.code}/bookings/"
    assert body["count"] == 3
    assert body["next"] == f"{base}?limit=1&offset=2"
    assert body["previous"] == f"{base}?limit=1"
    assert [b["id"] for b in body["results"]] == [ids[1]]
    last = (await partner.sandbox.call("GET", "bookings/", params={"limit": 2, "offset": 2})).json()
    assert last["next"] is None
    assert last["previous"] == f"{base}?limit=2"
    assert [b["id"] for b in last["results"]] == [ids[0]]


@pytest.mark.parametrize("offset", [2**31, 2**63, 10**25])
async def test_list_offset_past_any_database_integer_is_422(
    partner: PartnerFixture, offset: int
) -> None:
    response = await partner.sandbox.call("GET", "bookings/", params={"offset": offset})
    assert response.status_code == 422
    assert response.json() == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": {"offset": ["Input should be less than or equal to 2147483647"]},
    }


async def test_list_at_the_largest_offset_is_an_empty_page(partner: PartnerFixture) -> None:
    await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    response = await partner.sandbox.call("GET", "bookings/", params={"offset": 2**31 - 1})
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["results"]) == (1, None, [])


async def test_direct_modification_of_the_phone(partner: PartnerFixture) -> None:
    booking = (
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    ).json()
    response = await partner.sandbox.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"phone": "+380506022279"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["policyholder"]["phone"] == "+380506022279"
    assert body["policyholder"]["first_name"] == "Mark"
    assert body["quotes"][0]["price_diff"] == 0.0
    assert body["quotes"][0]["price_diff_formatted"] == "£0.00"


@pytest.mark.parametrize(
    ("holder", "errors"),
    [
        (
            {"phone": "invalid phone format"},
            {"policyholder": {"phone": ['The phone number should start with "+" character']}},
        ),
        ({"phone": "+44 12"}, {"policyholder": {"phone": ["The phone number is not valid."]}}),
        (
            {"country": "XX"},
            {"policyholder": {"country": ["'XX' is not an ISO 3166-1 alpha-2 country code."]}},
        ),
        ({"nickname": "Al"}, {"policyholder": {"nickname": "Unexpected field"}}),
    ],
)
async def test_invalid_modifications_change_nothing(
    services: Services, partner: PartnerFixture, holder: dict[str, Any], errors: dict[str, Any]
) -> None:
    booking = (
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    ).json()
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": holder}
    )
    assert response.status_code == 422
    assert response.json() == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": errors,
    }
    assert await partner_state(services, partner.id) == before


@pytest.mark.parametrize(
    ("holder", "errors"),
    [
        (
            policyholder(phone="07700900123"),
            {"policyholder": {"phone": ['The phone number should start with "+" character']}},
        ),
        (
            policyholder(email="not-an-email"),
            {
                "policyholder": {
                    "email": [
                        "Enter a valid email address (An email address must have an @-sign.)."
                    ]
                }
            },
        ),
        (
            policyholder(country="GBR"),
            {"policyholder": {"country": ["'GBR' is not an ISO 3166-1 alpha-2 country code."]}},
        ),
    ],
)
async def test_booking_with_invalid_policyholder_changes_nothing(
    services: Services, partner: PartnerFixture, holder: dict[str, Any], errors: dict[str, Any]
) -> None:
    package = await quote(partner)
    before = await partner_state(services, partner.id)
    body = {"quotes": [{"id": package["quotes"]["0"]["id"]}], "policyholder": holder}
    response = await partner.sandbox.call("POST", f"bookings/{package['id']}/", body)
    assert response.status_code == 422
    assert response.json()["errors"] == errors
    assert await partner_state(services, partner.id) == before


async def test_booking_twice_or_a_foreign_quote_is_refused(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    package = await quote(partner)
    foreign = await quote(other_partner)
    before = await partner_state(services, partner.id)
    wrong_quote = await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {"quotes": [{"id": foreign["quotes"]["0"]["id"]}], "policyholder": policyholder()},
    )
    assert wrong_quote.status_code == 422
    assert wrong_quote.json()["errors"] == {
        "quotes": [f"Quote {foreign['quotes']['0']['id']} is not in this package."]
    }
    foreign_package = await partner.sandbox.call(
        "POST",
        f"bookings/{foreign['id']}/",
        {"quotes": [{"id": foreign["quotes"]["0"]["id"]}], "policyholder": policyholder()},
    )
    assert foreign_package.status_code == 404
    assert await partner_state(services, partner.id) == before

    assert (await book(partner, package))[0] == 200
    booked = await partner_state(services, partner.id)
    status, body = await book(partner, package)
    assert status == 409
    assert body["message"] == f"Quote package {package['id']} is booked already."
    assert await partner_state(services, partner.id) == booked


async def test_get_booking_of_a_quote_that_is_not_booked_is_404(partner: PartnerFixture) -> None:
    package = await quote(partner)
    response = await partner.sandbox.call("GET", f"bookings/{package['id']}/")
    assert response.status_code == 404
    assert response.json()["message"] == f"Booking {package['id']} not found."


async def test_payment_confirmation_reads_its_body(
    services: Services, partner: PartnerFixture
) -> None:
    """`PUT …/confirm` takes no body (none, or `{}` as XCover's client sends): a malformed
    one or a field is refused like any other body and confirms nothing."""
    package = await quote(partner)
    status, _ = await book(partner, package, require_payment_confirmation=True)
    assert status == 200
    path = f"bookings/{package['id']}/confirm"
    state = await partner_state(services, partner.id)
    malformed = await partner.sandbox.call("PUT", path, content=b"{not json")
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["type"] == "invalid_request_error"
    field = await partner.sandbox.call("PUT", path, {"paid": True})
    assert (field.status_code, field.json()["errors"]) == (422, {"paid": "Unexpected field"})
    assert await partner_state(services, partner.id) == state
    confirmed = await partner.sandbox.call("PUT", path, content=b"")
    assert (confirmed.status_code, confirmed.json().get("status")) == (201, "CONFIRMED")


def test_a_partner_write_that_declares_no_body_is_refused_when_registered() -> None:
    """A body no parameter declares is never read, so a malformed one would go through: every
    partner write declares one (`NoBody` when it takes none)."""
    router = PartnerRouter(tags=["test"])

    async def endpoint() -> None:
        raise AssertionError

    with pytest.raises(TypeError, match="a partner write declares its body"):
        router.add_api_route("/things/", endpoint, methods=["POST"], response_model=EmptyBody)

    async def declared(_body: NoBody | None = None) -> None:
        raise AssertionError

    router.add_api_route("/things/", declared, methods=["POST"], response_model=EmptyBody)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("9999-12-15T00:00:00Z", "policy_start_date is too far in the future"),
        ("8999-12-15T00:00:00Z", "policy_start_date is too far in the future"),
    ],
)
async def test_a_far_future_start_is_refused(
    services: Services, partner: PartnerFixture, start: str, message: str
) -> None:
    item = gadget_item() | {"policy_start_date": start}
    state = await partner_state(services, partner.id)
    response = await partner.sandbox.call("POST", "quotes/", quote_request(item))
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == {"policy_start_date": [message]}
    assert await partner_state(services, partner.id) == state


async def test_a_date_time_past_what_any_offset_can_show_is_refused(
    services: Services, partner: PartnerFixture
) -> None:
    """9999-12-31T23:59-14:00 is in year 10000 in UTC: refused as a malformed date-time."""
    item = ticket_item() | {"policy_start_date": "9999-12-31T23:59:59-14:00"}
    state = await partner_state(services, partner.id)
    response = await partner.sandbox.call("POST", "quotes/", quote_request(item))
    assert response.status_code == 422, response.text
    assert "policy_start_date" in response.json()["errors"]
    assert await partner_state(services, partner.id) == state
