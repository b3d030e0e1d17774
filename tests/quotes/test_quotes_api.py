"""Quote packages over HTTP: create, get, update, add, delete, opt out, and refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from coverline.kit.http import UNSTORABLE_TEXT
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import quote_request, ticket_item


async def create(partner: PartnerFixture, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await partner.sandbox.call("POST", "quotes/", body or quote_request())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_quote_prices_and_shape(partner: PartnerFixture) -> None:
    package = await create(partner)
    assert package["id"].endswith("-INS") and len(package["id"]) == 15
    assert package["status"] == "RECEIVED"
    assert package["currency"] == "GBP"
    assert (package["total_price"], package["total_price_formatted"]) == (2.01, "£2.01")
    assert package["errors"] == {}
    assert list(package["quotes"]) == ["0"]
    quote = package["quotes"]["0"]
    assert quote["status"] == "RECEIVED"
    assert (quote["price"], quote["price_formatted"]) == (2.01, "£2.01")
    assert quote["tax"] == {
        "total_tax": 1.11,
        "total_tax_formatted": "£1.11",
        "total_amount_without_tax": 0.9,
        "total_amount_without_tax_formatted": "£0.90",
        "taxes": [
            {"tax_amount": 1.0, "tax_amount_formatted": "£1.00", "tax_code": "Admin. fee"},
            {"tax_amount": 0.11, "tax_amount_formatted": "£0.11", "tax_code": "IPT"},
        ],
    }
    assert quote["policy"]["policy_type"] == "event_ticket_protection"
    assert quote["policy"]["content"]["title"] == "Missed Event Cover for Ariana Grande"
    assert quote["duration"] == "10 00:00:00"
    assert quote["is_renewable"] is False


async def test_get_quote_round_trips(partner: PartnerFixture) -> None:
    package = await create(partner)
    response = await partner.sandbox.call("GET", f"quotes/{package['id']}/")
    assert response.status_code == 200
    assert response.json() == package


async def test_offset_of_the_partner_is_kept(partner: PartnerFixture) -> None:
    item = ticket_item(
        policy_start_date="2031-03-29T09:00:00+01:00", event_datetime="2031-04-02T20:30:00+01:00"
    )
    package = await create(partner, quote_request(item))
    quote = package["quotes"]["0"]
    assert quote["policy_start_date"] == "2031-03-29T09:00:00+01:00"
    assert quote["policy_end_date"] == "2031-04-02T20:30:00+01:00"
    assert quote["duration"] == "4 11:30:00"
    assert package["created_at"].endswith("Z")


async def test_update_currency_and_ticket_price(partner: PartnerFixture) -> None:
    package = await create(partner)
    quote_id = package["quotes"]["0"]["id"]
    response = await partner.sandbox.call(
        "PATCH",
        f"quotes/{package['id']}/",
        {"currency": "AUD", "request": [{"quote_id": quote_id, "tickets": [{"price": 50}]}]},
        idempotency_key="update-1",
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["currency"] == "AUD"
    quote = updated["quotes"]["0"]
    assert quote["id"] == quote_id
    assert quote["price_formatted"].startswith("A$")
    assert updated["total_price"] == quote["price"]
    fetched = (await partner.sandbox.call("GET", f"quotes/{package['id']}/")).json()
    assert fetched["quotes"]["0"]["price"] == quote["price"]
    assert fetched["currency"] == "AUD"


async def test_add_and_delete_quotes(partner: PartnerFixture) -> None:
    package = await create(partner)
    added = await partner.sandbox.call(
        "POST", f"quotes/{package['id']}/add/", {"request": [ticket_item()]}, idempotency_key="a1"
    )
    assert added.status_code == 201
    body = added.json()
    assert list(body["quotes"]) == ["0", "1"]
    assert body["total_price"] == 4.02
    second = body["quotes"]["1"]["id"]
    deleted = await partner.sandbox.call(
        "POST", f"quotes/{package['id']}/delete/", {"quotes": [{"id": second}]}
    )
    assert deleted.status_code == 200
    after = deleted.json()
    assert list(after["quotes"]) == ["0"]
    assert after["quotes"]["0"]["id"] == package["quotes"]["0"]["id"]
    assert after["total_price"] == 2.01


async def test_opt_out(partner: PartnerFixture) -> None:
    package = await create(partner)
    response = await partner.sandbox.call("POST", f"bookings/{package['id']}/opt_out", {})
    assert response.status_code == 204
    assert response.content == b""
    fetched = (await partner.sandbox.call("GET", f"quotes/{package['id']}/")).json()
    assert fetched["status"] == "OPTED_OUT"
    again = await partner.sandbox.call("POST", f"bookings/{package['id']}/opt_out", {})
    assert again.status_code == 409


async def test_unpriceable_product_is_null_with_reason(partner: PartnerFixture) -> None:
    """A component that cannot be priced is null, and the package still succeeds."""
    body = quote_request(ticket_item(), ticket_item(), currency="CHF")
    response = await partner.sandbox.call("POST", "quotes/", body)
    assert response.status_code == 201, response.text
    package = response.json()
    assert package["quotes"] == {"0": None, "1": None}
    assert set(package["errors"]) == {"0", "1"}
    assert package["total_price"] == 0.0


BAD_REQUESTS: list[tuple[str, dict[str, Any] | bytes, int, dict[str, Any]]] = [
    (
        "unknown field",
        quote_request(ticket_item(policy_version="x")),
        422,
        {"policy_version": "Unexpected field"},
    ),
    (
        "a language with a final newline",
        quote_request(customer_language="en\n"),
        422,
        {"customer_language": ["'en\n' is not an ISO 639-1 language code (e.g. 'en' or 'en-us')."]},
    ),
    (
        "unknown currency",
        quote_request(currency="XYZ"),
        422,
        {"currency": ["'XYZ' is not an ISO 4217 currency code."]},
    ),
    (
        "unknown country",
        quote_request(customer_country="UK"),
        422,
        {"customer_country": ["'UK' is not an ISO 3166-1 alpha-2 country code."]},
    ),
    (
        "start date in the past",
        quote_request(ticket_item(start_in=-timedelta(days=2))),
        422,
        {"policy_start_date": ["The policy start date cannot be in the past."]},
    ),
    (
        "unknown product",
        quote_request(ticket_item(policy_type="space_travel")),
        422,
        {"policy_type": ["Unknown policy type 'space_travel' (version 1)."]},
    ),
    (
        "no items",
        quote_request(request=[]),
        422,
        {"request": ["List should have at least 1 item after validation, not 0"]},
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "errors"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
async def test_bad_quote_requests_change_nothing(
    services: Services,
    partner: PartnerFixture,
    name: str,
    body: dict[str, Any],
    status: int,
    errors: dict[str, Any],
) -> None:
    await create(partner)
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call("POST", "quotes/", body)
    assert response.status_code == status, response.text
    assert response.json() == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": errors,
    }
    assert await partner_state(services, partner.id) == before


async def test_negative_ticket_price_is_refused(
    services: Services, partner: PartnerFixture
) -> None:
    before = await partner_state(services, partner.id)
    body = quote_request(ticket_item(tickets=[{"price": -5}]))
    response = await partner.sandbox.call("POST", "quotes/", body)
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "tickets": ["tickets[0].price must be greater than or equal to 0"]
    }
    assert await partner_state(services, partner.id) == before


async def test_malformed_json_is_400_and_changes_nothing(
    services: Services, partner: PartnerFixture
) -> None:
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "POST", "quotes/", content=b'{"request": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "invalid_request_error",
        "message": "The request body is not valid JSON.",
        "errors": {},
    }
    not_object = await partner.sandbox.call(
        "POST", "quotes/", content=b"[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert not_object.status_code == 400
    assert await partner_state(services, partner.id) == before


NOT_JSON = "The request body is not valid JSON."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"request": [], "currency": NaN}', NOT_JSON),
        (b'{"request": [], "currency": "GBP", "customer_region": Infinity}', NOT_JSON),
        (
            b'{"request": [{"policy_type": "event_ticket_protection", '
            b'"tickets": [{"price": 1e999}]}]}',
            NOT_JSON,
        ),
        # No database stores a lone surrogate: refused before the body is parsed.
        (
            b'{"request": [], "currency": "GBP", "partner_transaction_id": "\\ud800"}',
            UNSTORABLE_TEXT,
        ),
        (
            b'{"request": [{"policy_type": "event_ticket_protection", "event_name": "\\udfffx"}]}',
            UNSTORABLE_TEXT,
        ),
    ],
    ids=["nan", "infinity", "overflow", "lone-high-surrogate", "lone-low-surrogate"],
)
async def test_json_that_javascript_cannot_parse_is_400(
    services: Services, partner: PartnerFixture, content: bytes, message: str
) -> None:
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "POST", "quotes/", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"type": "invalid_request_error", "message": message, "errors": {}}
    assert await partner_state(services, partner.id) == before


async def test_integers_past_64_bits_are_read_as_javascript_numbers(
    partner: PartnerFixture,
) -> None:
    body = quote_request(ticket_item(insured=[{"membership": 10**30, "age": 2**64 - 1}]))
    package = await create(partner, body)
    assert package["quotes"]["0"]["insured"] == [{"membership": 1e30, "age": 2**64 - 1}]
    fetched = await partner.sandbox.call("GET", f"quotes/{package['id']}/")
    assert fetched.json()["quotes"]["0"]["insured"] == [{"membership": 1e30, "age": 2**64 - 1}]


async def test_nul_characters_are_refused_before_any_work(
    services: Services, partner: PartnerFixture
) -> None:
    before = await partner_state(services, partner.id)
    body = quote_request(
        ticket_item(event_name="The\x00O2", insured=[{"name\x00": "Ann"}]),
        partner_transaction_id="order\x001",
    )
    refused = {"type": "invalid_request_error", "message": UNSTORABLE_TEXT, "errors": {}}
    response = await partner.sandbox.call("POST", "quotes/", body)
    assert response.status_code == 400
    assert response.json() == refused
    in_path = await partner.sandbox.call("GET", "quotes/AB%00CD-EFGHI-INS/")
    assert in_path.status_code == 400
    assert in_path.json() == refused
    assert await partner_state(services, partner.id) == before


async def test_updates_of_a_booked_package_are_refused(
    services: Services, partner: PartnerFixture
) -> None:
    package = await create(partner)
    quote_id = package["quotes"]["0"]["id"]
    booked = await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {
            "quotes": [{"id": quote_id}],
            "policyholder": {"first_name": "A", "last_name": "B", "email": "a@example.com"},
        },
    )
    assert booked.status_code == 200
    before = await partner_state(services, partner.id)
    patch = await partner.sandbox.call("PATCH", f"quotes/{package['id']}/", {"currency": "USD"})
    assert patch.status_code == 409
    add = await partner.sandbox.call(
        "POST", f"quotes/{package['id']}/add/", {"request": [ticket_item()]}
    )
    assert add.status_code == 409
    delete = await partner.sandbox.call(
        "POST", f"quotes/{package['id']}/delete/", {"quotes": [{"id": quote_id}]}
    )
    assert delete.status_code == 409
    assert await partner_state(services, partner.id) == before


async def test_update_with_foreign_quote_id_is_refused(
    services: Services, partner: PartnerFixture
) -> None:
    first, second = await create(partner), await create(partner)
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "PATCH",
        f"quotes/{first['id']}/",
        {"request": [{"quote_id": second["quotes"]["0"]["id"], "tickets": [{"price": 1}]}]},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "quote_id": [f"Quote {second['quotes']['0']['id']} is not in this package."]
    }
    assert await partner_state(services, partner.id) == before


async def test_a_quote_listed_twice_is_refused_and_changes_nothing(
    services: Services, partner: PartnerFixture
) -> None:
    """Updating, deleting or booking one quote twice in a request is a mistake the partner
    hears of (the second would silently win or do nothing), as cancelling one twice is."""
    package = await create(partner)
    quote_id = package["quotes"]["0"]["id"]
    twice = f"Quote {quote_id} is listed twice."
    holder = {"first_name": "A", "last_name": "B", "email": "a@example.com"}
    before = await partner_state(services, partner.id)
    for method, path, body, errors in (
        (
            "PATCH",
            f"quotes/{package['id']}/",
            {"request": [{"quote_id": quote_id, **ticket_item()}] * 2},
            {"quote_id": [twice]},
        ),
        (
            "POST",
            f"quotes/{package['id']}/delete/",
            {"quotes": [{"id": quote_id}, {"id": quote_id}]},
            {"quotes": [twice]},
        ),
        (
            "POST",
            f"bookings/{package['id']}/",
            {"quotes": [{"id": quote_id}, {"id": quote_id}], "policyholder": holder},
            {"quotes": [twice]},
        ),
    ):
        response = await partner.sandbox.call(method, path, body)
        assert (response.status_code, response.json()["errors"]) == (422, errors), path
    assert await partner_state(services, partner.id) == before
