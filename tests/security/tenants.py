"""A partner with one of each thing a partner owns, for the tests that try to reach it from
elsewhere (another partner, the other mode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from coverline.runtime import Services
from tests.conftest import PartnerFixture, make_partner, partner_state
from tests.fixtures.gadget import gadget_booking
from tests.fixtures.payloads import instant_booking_request, policyholder, quote_request
from tests.fixtures.webhooks import add_endpoint

SURNAME = "Vandersloot-Isolation"
EMAIL = "victim.customer@isolation.example"
TEMPLATE_MARK = "Only-the-victim-writes-this"
SENDER_MARK = "Victim Sender Co"
HOOK_PATH = "/victim-hooks-7c1f"


@dataclass
class Victim:
    partner: PartnerFixture
    ids: dict[str, str]
    # Values that must never reach another tenant or the other mode.
    secrets: list[str]
    # Its sandbox rows once built: no call of an intruder may change them.
    baseline: dict[str, Any]

    def leaked(self, response: httpx.Response, sent: str) -> list[str]:
        """The victim's values in an answer, less those the caller sent itself."""
        return [value for value in self.secrets if value in response.text and value not in sent]


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()) if response.content else {}


async def build_victim(services: Services, http: httpx.AsyncClient) -> Victim:
    """One of each thing a partner owns, in sandbox, each in the state where a foreign call
    would do harm if it got through (a priced update, a previewed cancellation and a quoted
    renewal waiting to be confirmed, a pending payment, a revocable key)."""
    owner = await make_partner(services, http)
    client = owner.sandbox
    holder = policyholder(last_name=SURNAME, email=EMAIL, phone="+447400123456")
    package = await _ok(await client.call("POST", "quotes/", quote_request()), 201)
    to_book = await _ok(await client.call("POST", "quotes/", quote_request()), 201)
    booked_quote = to_book["quotes"]["0"]["id"]
    booking = await _ok(
        await client.call(
            "POST",
            f"bookings/{to_book['id']}/",
            {
                "quotes": [{"id": booked_quote, "instalment_plan": "1year-monthly"}],
                "policyholder": holder,
            },
        )
    )
    pending_package = await _ok(await client.call("POST", "quotes/", quote_request()), 201)
    await _ok(
        await client.call(
            "POST",
            f"bookings/{pending_package['id']}/",
            {
                "quotes": [{"id": pending_package["quotes"]["0"]["id"]}],
                "policyholder": holder,
                "require_payment_confirmation": True,
            },
        )
    )
    updatable = await _ok(
        await client.call("POST", "instant_booking/", instant_booking_request(policyholder=holder))
    )
    updatable_quote = updatable["quotes"][0]["id"]
    update = await _ok(
        await client.call(
            "PATCH",
            f"bookings/{updatable['id']}/quote_for_update",
            {"quotes": [{"id": updatable_quote, "update_fields": {"tickets": [{"price": 50}]}}]},
        )
    )
    cancellable = await _ok(
        await client.call("POST", "instant_booking/", instant_booking_request(policyholder=holder))
    )
    cancellation = await _ok(
        await client.call("POST", f"bookings/{cancellable['id']}/cancel", {"preview": True})
    )
    renewable = await _ok(
        await client.call("POST", "instant_booking/", gadget_booking(policyholder=holder))
    )
    renewal = await _ok(
        await client.call("PATCH", f"renewals/{renewable['id']}/quote_for_renewal/", {})
    )
    endpoint = await add_endpoint(client, f"http://127.0.0.1:9{HOOK_PATH}", retry_schedule=[])
    delivery = await _ok(await client.call("POST", f"webhooks/{endpoint['id']}/test"), 202)
    await _ok(await client.call("PATCH", "messaging/settings", {"sender_name": SENDER_MARK}))
    await _ok(
        await client.call(
            "PUT",
            "messaging/templates/purchase/email/en",
            {"subject": TEMPLATE_MARK, "text": f"{TEMPLATE_MARK} {{{{ booking.id }}}}"},
        )
    )
    await _ok(
        await client.call(
            "PUT", "messaging/templates/purchase/sms/en", {"text": f"{TEMPLATE_MARK} SMS"}
        )
    )
    messages = await _ok(await client.call("GET", "messages/", params={"booking": booking["id"]}))
    ids = {
        "package": package["id"],
        "quote": package["quotes"]["0"]["id"],
        "booking": booking["id"],
        "booked_quote": booked_quote,
        "pending": pending_package["id"],
        "updatable": updatable["id"],
        "updatable_quote": updatable_quote,
        "update": update["update_id"],
        "cancellable": cancellable["id"],
        "cancellation": cancellation["cancellation_id"],
        "renewable": renewable["id"],
        "renewal": renewal["renewal_id"],
        "endpoint": endpoint["id"],
        "delivery": delivery["id"],
        "message": messages["results"][0]["id"],
        "api_key": client.credential.api_key,
    }
    secrets = [
        *ids.values(),
        SURNAME,
        EMAIL,
        "+447400123456",
        TEMPLATE_MARK,
        SENDER_MARK,
        HOOK_PATH,
        endpoint["secret"],
        client.credential.api_secret,
        booking["security_token"],
    ]
    return Victim(owner, ids, secrets, await partner_state(services, owner.id, "sandbox"))


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value
