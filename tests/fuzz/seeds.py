"""Real resources for the fuzzer to aim at: for each operation, the ids its path parameters can
take and request bodies that the API accepts, made through the API of a running server.

Without them nearly every fuzzed call would stop at a 404 for an unknown id or a 422 for an
unknown quote, and the code behind (pricing a change, refunds, renewals, deliveries) would never
see a fuzzed body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.fixtures.gadget import gadget_booking
from tests.fixtures.payloads import (
    instant_booking_request,
    policyholder,
    quote_request,
    rfc3339,
    ticket_item,
)
from tests.fixtures.signing import signed_headers

TEMPLATE_EVENTS = ("purchase", "cancellation", "renewal_due")
TEMPLATE_CHANNELS = ("email", "sms")
TEMPLATE_LANGUAGES = ("en", "fr", "en-gb")
COUNTRY_CODES = ("NG", "GB", "US")


@dataclass
class Seeds:
    """What one operation's cases are built from."""

    path: dict[str, list[str]] = field(default_factory=dict)
    bodies: list[Any] = field(default_factory=list)


@dataclass
class SeedPartner:
    """Signed calls, as a partner makes them, to set up the resources."""

    http: httpx.Client
    code: str
    api_key: str
    api_secret: str

    def call(self, method: str, relative: str, body: Any = None) -> dict[str, Any]:
        path = f"/api/partners/{self.code}/{relative}"
        headers = signed_headers(self.api_key, self.api_secret, method, path)
        response = self.http.request(method, path, json=body, headers=headers)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        if response.status_code == 204:
            return {}
        result: dict[str, Any] = response.json()
        return result

    # ------------------------------------------------------------------ resources
    def quote_package(self) -> dict[str, Any]:
        return self.call("POST", "quotes/", quote_request(ticket_item(), ticket_item()))

    def booking(self, **overrides: Any) -> dict[str, Any]:
        return self.call("POST", "instant_booking/", instant_booking_request(**overrides))

    def instalment_booking(self) -> dict[str, Any]:
        package = self.quote_package()
        quote = package["quotes"]["0"]
        return self.call(
            "POST",
            f"bookings/{package['id']}/",
            {
                "quotes": [{"id": quote["id"], "instalment_plan": "1year-monthly"}],
                "policyholder": policyholder(),
            },
        )

    def renewable_booking(self) -> dict[str, Any]:
        return self.call("POST", "instant_booking/", gadget_booking())

    def endpoint(self) -> dict[str, Any]:
        return self.call("POST", "webhooks/", {"url": "https://hooks.example.com/coverline"})


def _quote_ids(package: dict[str, Any]) -> list[str]:
    quotes = package["quotes"]
    listed = quotes.values() if isinstance(quotes, dict) else quotes
    return [quote["id"] for quote in listed if quote is not None]


def seeds_for(partner: SeedPartner, method: str, path: str) -> Seeds:
    """Fresh resources for one operation (`path` relative to the partner's base path)."""
    seeds = Seeds()
    if path.startswith("/api/auxiliary/"):
        seeds.path["code"] = list(COUNTRY_CODES)
        return seeds
    if "{package_id}" in path:
        _package_seeds(partner, method, path, seeds)
    if "{endpoint_id}" in path or path.startswith("webhooks/"):
        _webhook_seeds(partner, path, seeds)
    if "{event}" in path:
        seeds.path["event"] = list(TEMPLATE_EVENTS)
        seeds.path["channel"] = list(TEMPLATE_CHANNELS)
        seeds.path["language"] = list(TEMPLATE_LANGUAGES)
        seeds.bodies = [
            {"subject": "Your cover {{ booking.id }}", "text": "Hello {{ customer.first_name }}"},
            {"text": "Cover {{ booking.id }} for {{ customer.full_name }}"},
            {},
        ]
    if "{message_id}" in path:
        booking = partner.booking()
        message = partner.call("POST", f"bookings/{booking['id']}/send_email", {})
        seeds.path["message_id"] = [message["id"]]
    if "{api_key}" in path:
        seeds.path["api_key"] = [partner.call("POST", "api_keys/")["api_key"]]
    seeds.bodies += _static_bodies(method, path)
    return seeds


def _package_seeds(partner: SeedPartner, method: str, path: str, seeds: Seeds) -> None:
    if path.startswith("quotes/") or (method == "POST" and path == "bookings/{package_id}/"):
        package = partner.quote_package()
        quote_ids = _quote_ids(package)
        seeds.path["package_id"] = [package["id"], partner.booking()["id"]]
        if path == "quotes/{package_id}/":
            seeds.bodies = [
                {"currency": "EUR"},
                {"request": [{"quote_id": quote_ids[0], "number_of_tickets": 3}]},
                {"customer_country": "FR", "partner_transaction_id": "order-9"},
            ]
        elif path == "quotes/{package_id}/add/":
            seeds.bodies = [{"request": [ticket_item()]}]
        elif path == "quotes/{package_id}/delete/":
            seeds.bodies = [{"quotes": [{"id": quote_ids[0]}]}]
        elif path == "bookings/{package_id}/":
            seeds.bodies = [
                {"quotes": [{"id": quote_ids[0]}], "policyholder": policyholder()},
                {
                    "quotes": [{"id": quote_id} for quote_id in quote_ids],
                    "policyholder": policyholder(phone="+447911123456"),
                    "require_payment_confirmation": True,
                },
            ]
        return
    if path.startswith("renewals/"):
        booking = partner.renewable_booking()
        seeds.path["package_id"] = [booking["id"], partner.booking()["id"]]
        if "{renewal_id}" in path:
            renewal = partner.call("PATCH", f"renewals/{booking['id']}/quote_for_renewal/")
            seeds.path["renewal_id"] = [renewal["renewal_id"]]
        return
    if path == "bookings/{package_id}/confirm":
        pending = partner.booking(require_payment_confirmation=True)
        seeds.path["package_id"] = [pending["id"], partner.booking()["id"]]
        return
    if path == "bookings/{package_id}/instalments/":
        booking = partner.instalment_booking()
        seeds.path["package_id"] = [booking["id"], partner.booking()["id"]]
        quote_id = _quote_ids(booking)[0]
        attempted = rfc3339(datetime.now(UTC))
        seeds.bodies = [
            {
                "quotes": [
                    {
                        "id": quote_id,
                        "instalment_number": number,
                        "payment_status": status,
                        "payment_attempted_date": attempted,
                    }
                ]
            }
            for number, status in ((1, "PAID"), (2, "FAILED"), (2, "PAID"))
        ]
        return
    booking = partner.booking(request=[ticket_item(start_in=timedelta(days=30))])
    renewable = partner.renewable_booking()
    seeds.path["package_id"] = [booking["id"], renewable["id"]]
    quote_id = _quote_ids(booking)[0]
    if "{update_id}" in path:
        update = partner.call(
            "PATCH",
            f"bookings/{booking['id']}/quote_for_update",
            {"quotes": [{"id": quote_id, "update_fields": {"number_of_tickets": 3}}]},
        )
        seeds.path["update_id"] = [update["update_id"]]
    if "{cancellation_id}" in path:
        preview = partner.call("POST", f"bookings/{booking['id']}/cancel", {"preview": True})
        seeds.path["cancellation_id"] = [preview["cancellation_id"]]
    if path == "bookings/{package_id}/quote_for_update":
        seeds.bodies = [
            {"quotes": [{"id": quote_id, "update_fields": {"number_of_tickets": 4}}]},
            {"policyholder": {"phone": "+447911123456"}},
            {"quotes": [{"id": quote_id, "update_fields": {"tickets": [{"price": 150}]}}]},
        ]
    elif path == "bookings/{package_id}/cancel":
        seeds.bodies = [{"preview": True}, {"quotes": [{"id": quote_id}]}, {}]
    elif path == "bookings/{package_id}/":
        seeds.bodies = [
            {"policyholder": {"phone": "+447911123456", "city": "Leeds"}},
            {"partner_transaction_id": "order-10"},
        ]


def _webhook_seeds(partner: SeedPartner, path: str, seeds: Seeds) -> None:
    if "{endpoint_id}" not in path:
        return
    endpoint = partner.endpoint()
    seeds.path["endpoint_id"] = [endpoint["id"]]
    if "{delivery_id}" in path:
        delivery = partner.call("POST", f"webhooks/{endpoint['id']}/test")
        seeds.path["delivery_id"] = [delivery["id"]]


def _static_bodies(method: str, path: str) -> list[Any]:
    """Bodies that need no resource of their own."""
    since = rfc3339(datetime.now(UTC) - timedelta(days=1))
    bodies: dict[tuple[str, str], list[Any]] = {
        ("POST", "quotes/"): [
            quote_request(ticket_item()),
            quote_request(ticket_item(), currency="EUR", customer_country="FR"),
        ],
        ("POST", "instant_booking/"): [
            instant_booking_request(),
            gadget_booking(),
            instant_booking_request(require_payment_confirmation=True),
        ],
        ("POST", "webhooks/"): [
            {"url": "https://hooks.example.com/a"},
            {"url": "https://hooks.example.com/b", "format": "mycover", "events": None},
            {"url": "https://hooks.example.com/c", "signature": "standard"},
        ],
        ("PATCH", "webhooks/{endpoint_id}/"): [
            {"enabled": False},
            {"url": "https://hooks.example.com/d", "retry_schedule": [1, 60]},
        ],
        ("POST", "webhooks/{endpoint_id}/recover"): [{"since": since}],
        ("PUT", "messaging/settings"): [
            {"enabled": True, "channels": ["email", "sms"], "sender_name": "Acme Cover"},
            {"brand_colour": "#1A56DB", "support_url": "https://acme.example.com/help"},
        ],
        ("PATCH", "messaging/settings"): [{"enabled": False}, {"events": ["purchase"]}],
        ("POST", "sandbox/clock"): [{"advance": "PT1H"}, {"advance": "P1D"}],
        ("POST", "bookings/{package_id}/send_email"): [{}, {"event": "BOOKING_CREATED"}],
        ("POST", "bookings/{package_id}/confirm_update/{update_id}/"): [{}],
        ("POST", "bookings/{package_id}/confirm_cancellation/{cancellation_id}/"): [{}],
    }
    return bodies.get((method, path), [])
