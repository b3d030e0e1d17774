"""Every partner endpoint, called with another partner's or another mode's credentials: 404,
never data, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from coverline.runtime import Services
from tests.conftest import PartnerClient, PartnerFixture, partner_state
from tests.fixtures.payloads import policyholder, quote_request, ticket_item


async def resources(owner: PartnerFixture) -> dict[str, str]:
    """A quote package, a booking and a booking pending payment, in sandbox."""
    package = (await owner.sandbox.call("POST", "quotes/", quote_request())).json()
    booked = (await owner.sandbox.call("POST", "quotes/", quote_request())).json()
    await owner.sandbox.call(
        "POST",
        f"bookings/{booked['id']}/",
        {"quotes": [{"id": booked["quotes"]["0"]["id"]}], "policyholder": policyholder()},
    )
    pending = (await owner.sandbox.call("POST", "quotes/", quote_request())).json()
    await owner.sandbox.call(
        "POST",
        f"bookings/{pending['id']}/",
        {
            "quotes": [{"id": pending["quotes"]["0"]["id"]}],
            "policyholder": policyholder(),
            "require_payment_confirmation": True,
        },
    )
    return {
        "package": package["id"],
        "quote": package["quotes"]["0"]["id"],
        "booking": booked["id"],
        "pending": pending["id"],
    }


CALLS: list[tuple[str, str, Any]] = [
    ("GET", "quotes/{package}/", None),
    ("PATCH", "quotes/{package}/", {"currency": "USD"}),
    ("POST", "quotes/{package}/add/", {"request": [ticket_item()]}),
    ("POST", "quotes/{package}/delete/", {"quotes": [{"id": "{quote}"}]}),
    ("POST", "bookings/{package}/opt_out", {}),
    (
        "POST",
        "bookings/{package}/",
        {"quotes": [{"id": "{quote}"}], "policyholder": policyholder()},
    ),
    ("GET", "bookings/{booking}/", None),
    ("PATCH", "bookings/{booking}/", {"policyholder": {"phone": "+447911123456"}}),
    ("PUT", "bookings/{pending}/confirm", {}),
]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
@pytest.mark.parametrize(
    "intruder", ["other partner, own path", "other partner, victim path", "live mode"]
)
async def test_foreign_credentials_see_nothing(
    services: Services,
    partner: PartnerFixture,
    other_partner: PartnerFixture,
    method: str,
    path: str,
    body: Any,
    intruder: str,
) -> None:
    ids = await resources(partner)
    before = await partner_state(services, partner.id)
    client: PartnerClient
    code = None
    if intruder == "live mode":
        client = partner.live
    else:
        client = other_partner.sandbox
        if intruder == "other partner, victim path":
            code = partner.code
    response = await client.call(method, fill(path, ids), fill(body, ids), code=code)
    assert response.status_code == 404, response.text
    body = response.json()
    assert set(body) == {"type", "message", "errors"}
    assert body["type"] == "not_found" and body["errors"] == {}
    assert "Mcintosh" not in response.text and "price" not in response.text
    assert await partner_state(services, partner.id) == before


async def test_lists_show_only_own_mode_and_partner(
    partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    ids = await resources(partner)
    own = (await partner.sandbox.call("GET", "bookings/")).json()
    assert {b["id"] for b in own["results"]} == {ids["booking"], ids["pending"]}
    for client in (partner.live, other_partner.sandbox, other_partner.live):
        listed = (await client.call("GET", "bookings/")).json()
        assert listed["count"] == 0 and listed["results"] == []
    keys = (await other_partner.sandbox.call("GET", "api_keys/")).json()
    assert partner.sandbox.credential.api_key not in str(keys)
    revoke = await other_partner.sandbox.call(
        "DELETE", f"api_keys/{partner.sandbox.credential.api_key}/"
    )
    assert revoke.status_code == 404
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200
