"""The messaging pages: settings, templates with their live preview, the message log, and
messages in a booking's timeline."""

from __future__ import annotations

import re
from typing import Any

from coverline.runtime import Services
from tests.dashboard.conftest import SignedIn
from tests.fixtures.payloads import instant_booking_request

CUSTOM_TEXT = "Hello {{ customer.first_name }}, booking {{ booking.id }} is yours."


async def book(signed_in: SignedIn) -> dict[str, Any]:
    response = await signed_in.partner.sandbox.call(
        "POST", "instant_booking/", instant_booking_request()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_settings_turn_channels_and_events_on_and_off(signed_in: SignedIn) -> None:
    url = signed_in.url("messaging")
    page = await signed_in.browser.get(url)
    assert page.status_code == 200 and "Send messages to customers" in page.text
    saved = await signed_in.browser.post(
        url,
        {
            "enabled": "on",
            "channels": ["email", "sms"],
            "events": ["purchase", "renewal_due"],
            "sender_name": "Acme Cover",
            "reply_to": "help@acme.example",
            "brand_colour": "#0B57D0",
            "sms_sender": "ACME",
        },
    )
    assert saved.status_code == 303
    settings = (await signed_in.partner.sandbox.call("GET", "messaging/settings")).json()
    assert settings["channels"] == ["email", "sms"]
    assert settings["events"] == ["purchase", "renewal_due"]
    assert (settings["sender_name"], settings["brand_colour"]) == ("Acme Cover", "#0b57d0")
    refused = await signed_in.browser.post(url, {"enabled": "on", "brand_colour": "blue"})
    assert refused.status_code == 422 and "#RRGGBB" in refused.text
    after = (await signed_in.partner.sandbox.call("GET", "messaging/settings")).json()
    assert after == settings


async def test_a_template_is_previewed_live_saved_and_deleted(signed_in: SignedIn) -> None:
    booking = await book(signed_in)
    url = signed_in.url("messaging/templates/purchase/sms/en")
    editor = await signed_in.browser.get(url)
    assert editor.status_code == 200 and "Built in" not in editor.text
    assert 'hx-post="' + url + '/preview"' in editor.text
    live = await signed_in.browser.post(
        url + "/preview", {"text": CUSTOM_TEXT, "booking": booking["id"]}
    )
    assert live.status_code == 200
    assert f"booking {booking['id']} is yours" in live.text and "<html" not in live.text
    broken = await signed_in.browser.post(url + "/preview", {"text": "{{ nope.secret }}"})
    assert "The preview cannot be shown" in broken.text
    saved = await signed_in.browser.post(url, {"action": "save", "text": CUSTOM_TEXT})
    assert saved.headers["location"] == url + "?notice=saved"
    listing = await signed_in.browser.get(signed_in.url("messaging"))
    assert "Your own" in listing.text
    api = await signed_in.partner.sandbox.call("GET", "messaging/templates/")
    [own] = [t for t in api.json()["results"] if t["source"] == "partner"]
    assert (own["event"], own["channel"], own["text"]) == ("purchase", "sms", CUSTOM_TEXT)
    deleted = await signed_in.browser.post(url + "/delete")
    assert deleted.status_code == 303
    api = await signed_in.partner.sandbox.call("GET", "messaging/templates/")
    assert all(t["source"] == "built_in" for t in api.json()["results"])


async def test_the_message_log_and_the_booking_timeline_show_messages(
    signed_in: SignedIn, services: Services
) -> None:
    booking = await book(signed_in)
    log = await signed_in.browser.get(signed_in.url("messaging/log"), booking=booking["id"])
    assert log.status_code == 200
    ids = re.findall(r"/messaging/log/(cmsg_[0-9a-f]+)\"", log.text)
    assert ids, "the purchase message is in the log"
    message = await signed_in.browser.get(signed_in.url(f"messaging/log/{ids[0]}"))
    assert message.status_code == 200 and booking["id"] in message.text
    timeline = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
    assert f"/messaging/log/{ids[0]}" in timeline.text
    assert (
        await signed_in.browser.get(signed_in.url(f"messaging/log/{ids[0]}", "live"))
    ).status_code == 404
