"""E-mails at a real SMTP server (aiosmtpd on 127.0.0.1): each message kind arrives with the
right recipient, subject, text and HTML parts, non-ASCII names and currency symbols intact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from coverline.events.service import EventType, record
from coverline.kit.http import UNSTORABLE_TEXT
from coverline.messaging.dispatcher import MessageDispatcher, Transports
from coverline.renewals.models import Renewal
from coverline.renewals.service import renewal_json
from coverline.runtime import Services
from coverline.webhooks.dispatcher import disable_endpoint
from coverline.webhooks.models import WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request, ticket_item
from tests.messaging.conftest import (
    EMAIL_FROM,
    FULL_NAME,
    NAME_FIRST,
    Mail,
    SmtpServer,
    configure,
    customer_email,
    gadget_request,
    messages_of,
    nigerian_holder,
    running_dispatcher,
    sell,
    wait_until,
)

REPLY_TO = "help@shop-ng.example"


def assert_envelope(mail: Mail, address: str) -> None:
    """Recipient, sender, Reply-To, and a multipart/alternative of text then HTML."""
    assert mail.rcpt_tos == [address]
    assert mail.mail_from == EMAIL_FROM
    to = mail.message["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [(FULL_NAME, address)]
    assert mail.message["Reply-To"] == REPLY_TO
    assert mail.message.get_content_type() == "multipart/alternative"
    subtypes = [part.get_content_type() for part in mail.message.iter_parts()]
    assert subtypes == ["text/plain", "text/html"]
    assert mail.message["Message-ID"].startswith("<cmsg_")
    assert mail.message["Message-ID"].endswith("@coverline.test>")


async def test_purchase_and_activation_at_once(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO, sender_name="Shop NG Cover")
    address = customer_email()
    booking = await sell(partner.live, gadget_request(address))

    mails = await smtp.handler.wait_for(address, 2)
    by_subject = {mail.subject: mail for mail in mails}
    purchase = by_subject[f"Your cover is confirmed: booking {booking['id']}"]
    activation = by_subject[f"Your cover has started: booking {booking['id']}"]
    for mail in (purchase, activation):
        assert_envelope(mail, address)
        assert mail.message["From"].addresses[0].display_name == "Shop NG Cover"
        assert mail.part("plain").startswith(f"Dear {NAME_FIRST},\n")
        assert f"Dear {NAME_FIRST}," in mail.part("html")

    text = purchase.part("plain")
    price = booking["total_price_formatted"]
    assert price.startswith("₦")
    assert f"you paid {price}." in text
    quote = booking["quotes"][0]
    assert f"Price: {quote['price_formatted']}" in text
    assert f"Policy wording (PDS): {quote['pds_url']}" in text
    assert f"Your certificate of insurance: {booking['coi']['url']}" in text
    html = purchase.part("html")
    assert f"<strong>{price}</strong>" in html
    assert booking["coi"]["url"].replace("&", "&amp;") in html or booking["coi"]["url"] in html
    assert "Shop NG Cover" in html
    assert "Your cover has started" in activation.part("plain")

    rows = await wait_until(services, booking["id"], _sent(2))
    assert {(m.kind, m.status, m.attempts) for m in rows} == {
        ("purchase", "sent", 1),
        ("activation", "sent", 1),
    }
    assert all(m.provider == "smtp" and m.provider_message_id for m in rows)


def _sent(count: int) -> Any:
    return lambda rows: len(rows) == count and all(m.status == "sent" for m in rows)


async def test_activation_waits_for_the_policy_start(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    address = customer_email()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    booking = await sell(partner.live, gadget_request(address, start))

    first = await smtp.handler.wait_for(address, 1)
    assert first[0].subject.startswith("Your cover is confirmed")
    rows = await messages_of(services, booking["id"])
    activation = next(m for m in rows if m.kind == "activation")
    assert activation.status == "queued"
    assert activation.next_attempt_at == start
    assert activation.scheduled_at == start

    mails = await smtp.handler.wait_for(address, 2, timeout=20)
    assert datetime.now(UTC) >= start
    assert mails[1].subject == f"Your cover has started: booking {booking['id']}"
    assert "You are now protected until" in mails[1].part("plain")


async def test_modification(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO, events=["modification"])
    address = customer_email()
    booking = await sell(partner.live, gadget_request(address))
    changed = await partner.live.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"phone": "+2348099999999"}}
    )
    assert changed.status_code == 200, changed.text

    mails = await smtp.handler.wait_for(address, 1)
    await asyncio.sleep(0.2)
    assert len(smtp.handler.to(address)) == 1  # purchase and activation are off
    mail = mails[0]
    assert_envelope(mail, address)
    assert mail.subject == f"Your policy has been updated: booking {booking['id']}"
    assert "Your policy has been updated." in mail.part("plain")
    assert "Your policy has been updated." in mail.part("html")
    rows = await messages_of(services, booking["id"])
    assert [(m.kind, m.source_event) for m in rows] == [("modification", "BOOKING_UPDATED")]


async def test_cancellation_with_its_refund_and_no_activation(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO)
    address = customer_email()
    holder = nigerian_holder(address, country="GB", phone=None)
    booking = await sell(
        partner.live,
        instant_booking_request(ticket_item(timedelta(days=3)), policyholder=holder),
    )
    await smtp.handler.wait_for(address, 1)  # the purchase; the activation waits 3 days
    cancelled = await partner.live.call("POST", f"bookings/{booking['id']}/cancel", {})
    assert cancelled.status_code == 200, cancelled.text
    refund = cancelled.json()["total_refund_formatted"]
    assert refund.startswith("£")

    mails = await smtp.handler.wait_for(address, 2)
    mail = mails[1]
    assert_envelope(mail, address)
    assert mail.subject == f"Your policy has been cancelled: booking {booking['id']}"
    assert f"You will receive a refund of {refund}." in mail.part("plain")
    assert f"You will receive a refund of <strong>{refund}</strong>." in mail.part("html")
    expected = {"purchase": "sent", "activation": "cancelled", "cancellation": "sent"}
    await wait_until(
        services, booking["id"], lambda rows: {m.kind: m.status for m in rows} == expected
    )
    await asyncio.sleep(0.2)
    assert len(smtp.handler.to(address)) == 2


async def advance(partner: PartnerFixture, duration: str) -> list[str]:
    response = await partner.sandbox.call("POST", "sandbox/clock", {"advance": duration})
    assert response.status_code == 200, response.text
    return [t["event"] for t in response.json()["transitions"]]


async def test_renewal_messages_on_the_sandbox_clock(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(
        partner.sandbox,
        reply_to=REPLY_TO,
        send_in_sandbox=True,
        events=["renewal_notification", "renewal_due", "renewal_expired", "renewal_success"],
    )
    clock = await partner.sandbox.call("POST", "sandbox/clock", {"to": "2030-01-31T09:00:00Z"})
    assert clock.status_code == 200
    address = customer_email()
    start = datetime(2030, 1, 31, 9, 30, tzinfo=UTC)
    booking = await sell(partner.sandbox, gadget_request(address, start))

    assert await advance(partner, "P22D") == ["RENEWAL_NOTIFICATION"]
    quoted = await partner.sandbox.call("PATCH", f"renewals/{booking['id']}/quote_for_renewal/", {})
    renewal_id = quoted.json()["renewal_id"]
    paid = await partner.sandbox.call("POST", f"renewals/{booking['id']}/confirm/{renewal_id}/", {})
    assert paid.status_code == 200, paid.text
    assert await advance(partner, "P37DT1H") == ["RENEWAL_NOTIFICATION", "RENEWAL_DUE"]
    assert await advance(partner, "P14D") == ["RENEWAL_EXPIRED"]

    mails = await smtp.handler.wait_for(address, 5)
    subjects = [mail.subject for mail in mails]
    policy = booking["quotes"][0]["policy"]["content"]["title"]
    assert subjects == [
        f"Your {policy} renews on 28 February 2030, 09:30 UTC",
        f"Your policy has been renewed: booking {booking['id']}",
        f"Your {policy} renews on 31 March 2030, 09:30 UTC",
        f"Your renewal is due: booking {booking['id']}",
        f"Your cover has lapsed: booking {booking['id']}",
    ]
    for mail in mails:
        assert_envelope(mail, address)
    price = quoted.json()["renewal"]["price_formatted"]
    assert price.startswith("₦")
    assert f"has been renewed for {price}." in mails[1].part("plain")
    assert "You can still renew until 14 April 2030, 09:30 UTC" in mails[3].part("plain")
    assert "was not renewed by 14 April 2030, 09:30 UTC" in mails[4].part("plain")
    rows = await messages_of(services, booking["id"])
    periods = [m.dedup_key.split(":")[2] for m in rows]
    assert periods[0] == renewal_id and periods[1] == renewal_id
    assert len(set(periods[2:])) == 1 and periods[2] != renewal_id


async def test_a_sandbox_activation_follows_the_test_clock(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.sandbox, send_in_sandbox=True, events=["activation"])
    clock = await partner.sandbox.call("POST", "sandbox/clock", {"to": "2030-06-01T08:00:00Z"})
    assert clock.status_code == 200
    address = customer_email()
    start = datetime(2030, 6, 3, 9, 0, tzinfo=UTC)
    booking = await sell(partner.sandbox, gadget_request(address, start))
    [activation] = await messages_of(services, booking["id"])
    assert (activation.kind, activation.status, activation.scheduled_at) == (
        "activation",
        "queued",
        start,
    )
    # Due two days ahead in real time too, unless the test clock gets there first.
    assert activation.next_attempt_at > datetime.now(UTC) + timedelta(days=2)
    await asyncio.sleep(0.3)
    assert smtp.handler.to(address) == []

    await advance(partner, "P3D")
    mails = await smtp.handler.wait_for(address, 1)
    assert mails[0].subject == f"Your cover has started: booking {booking['id']}"
    assert "Your cover has started (3 June 2030, 09:00 UTC)." in mails[0].part("plain")


async def test_sandbox_stores_without_sending_by_default(
    partner: PartnerFixture, smtp: SmtpServer, mail_dispatcher: MessageDispatcher
) -> None:
    address = customer_email()
    booking = await sell(partner.sandbox, gadget_request(address))
    listed = await partner.sandbox.call("GET", "messages/", params={"booking": booking["id"]})
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 2
    assert {(m["event"], m["channel"], m["status"]) for m in body["results"]} == {
        ("purchase", "email", "stored"),
        ("activation", "email", "stored"),
    }
    purchase = next(m for m in body["results"] if m["event"] == "purchase")
    assert purchase["recipient"] == address
    assert purchase["subject"] == f"Your cover is confirmed: booking {booking['id']}"
    assert purchase["text"].startswith(f"Dear {NAME_FIRST},")
    assert "<!DOCTYPE html>" in purchase["html"]
    assert purchase["attempts"] == 0 and purchase["sent_at"] is None
    one = await partner.sandbox.call("GET", f"messages/{purchase['id']}/")
    assert one.status_code == 200 and one.json() == purchase
    stored = await partner.sandbox.call("GET", "messages/", params={"status": "stored"})
    assert purchase["id"] in {m["id"] for m in stored.json()["results"]}
    await asyncio.sleep(0.3)
    assert smtp.handler.to(address) == []


async def test_sandbox_sends_when_turned_on(
    partner: PartnerFixture, smtp: SmtpServer, mail_dispatcher: MessageDispatcher
) -> None:
    settings = await configure(partner.sandbox, send_in_sandbox=True, events=["purchase"])
    assert settings["effective"]["sending"] is True
    address = customer_email()
    await sell(partner.sandbox, gadget_request(address))
    mails = await smtp.handler.wait_for(address, 1)
    assert mails[0].subject.startswith("Your cover is confirmed")


async def test_a_channel_or_an_event_turned_off_sends_nothing(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, channels=[])
    no_channel = customer_email()
    first = await sell(partner.live, gadget_request(no_channel))
    await configure(partner.live, events=["cancellation"])
    no_event = customer_email()
    second = await sell(partner.live, gadget_request(no_event))
    await configure(partner.live, enabled=False)
    disabled = customer_email()
    third = await sell(partner.live, gadget_request(disabled))
    # The control: the same partner with the defaults back sends at once.
    await configure(partner.live)
    control = customer_email()
    await sell(partner.live, gadget_request(control))

    await smtp.handler.wait_for(control, 2)
    await asyncio.sleep(0.2)
    for address in (no_channel, no_event, disabled):
        assert smtp.handler.to(address) == []
    for booking in (first, second, third):
        assert await messages_of(services, booking["id"]) == []


async def test_send_email_sends_exactly_one_more(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO, events=["purchase"])
    address = customer_email()
    booking = await sell(partner.live, gadget_request(address))
    await smtp.handler.wait_for(address, 1)

    resent = await partner.live.call(
        "POST", f"bookings/{booking['id']}/send_email", {}, idempotency_key="resend-1"
    )
    assert resent.status_code == 202, resent.text
    assert resent.json()["event"] == "purchase"
    replayed = await partner.live.call(
        "POST", f"bookings/{booking['id']}/send_email", {}, idempotency_key="resend-1"
    )
    assert replayed.status_code == 409
    assert replayed.headers["Idempotent-Replayed"] == "true"

    mails = await smtp.handler.wait_for(address, 2)
    await asyncio.sleep(0.3)
    assert len(smtp.handler.to(address)) == 2
    assert mails[0].subject == mails[1].subject
    assert mails[0].part("plain") == mails[1].part("plain")
    assert mails[0].message["Message-ID"] != mails[1].message["Message-ID"]
    rows = await messages_of(services, booking["id"])
    assert [(m.kind, m.status) for m in rows] == [("purchase", "sent"), ("purchase", "sent")]
    assert rows[1].dedup_key.split(":")[2].startswith("resend")


async def test_send_email_refuses_an_event_the_booking_has_not_had(
    services: Services, partner: PartnerFixture, mail_dispatcher: MessageDispatcher
) -> None:
    booking = await sell(partner.live, gadget_request(customer_email()))
    before = await messages_of(services, booking["id"])
    wrong = await partner.live.call(
        "POST", f"bookings/{booking['id']}/send_email", {"event": "BOOKING_CANCELLED"}
    )
    assert wrong.status_code == 422
    assert wrong.json() == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": ["BOOKING_CANCELLED email can be only triggered for CANCELLED bookings."],
    }
    unknown = await partner.live.call(
        "POST", f"bookings/{booking['id']}/send_email", {"event": "POLICY_EXPLODED"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0].startswith("Unknown event 'POLICY_EXPLODED'")
    missing = await partner.live.call("POST", "bookings/NOPE0-NOPE0-INS/send_email", {})
    assert missing.status_code == 404
    assert [m.id for m in await messages_of(services, booking["id"])] == [m.id for m in before]


async def test_send_email_for_a_cancellation(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO, events=["purchase"])
    address = customer_email()
    booking = await sell(partner.live, gadget_request(address))
    await smtp.handler.wait_for(address, 1)
    cancelled = await partner.live.call("POST", f"bookings/{booking['id']}/cancel", {})
    assert cancelled.status_code == 200, cancelled.text
    await asyncio.sleep(0.2)
    assert len(smtp.handler.to(address)) == 1  # cancellation e-mails are off

    resent = await partner.live.call(
        "POST", f"bookings/{booking['id']}/send_email", {"event": "BOOKING_CANCELLED"}
    )
    assert resent.status_code == 202, resent.text
    mails = await smtp.handler.wait_for(address, 2)
    assert mails[1].subject == f"Your policy has been cancelled: booking {booking['id']}"
    refund = cancelled.json()["total_refund_formatted"]
    assert f"You will receive a refund of {refund}." in mails[1].part("plain")


async def test_a_refused_message_is_retried_and_sent_once(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, events=["purchase"])
    smtp.handler.script.extend(["451 4.3.0 Try again later"])
    address = customer_email()
    booking = await sell(partner.live, gadget_request(address))
    rows = await wait_until(services, booking["id"], _sent(1))
    assert rows[0].attempts == 2 and rows[0].error is None
    assert len(smtp.handler.refused) == 1
    await asyncio.sleep(0.2)
    assert len(smtp.handler.to(address)) == 1


async def test_a_permanent_refusal_fails_without_retrying(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, events=["purchase"])
    smtp.handler.script.extend(["554 5.7.1 Message rejected"])
    booking = await sell(partner.live, gadget_request(customer_email()))
    rows = await wait_until(
        services, booking["id"], lambda rows: bool(rows) and rows[0].status == "failed"
    )
    assert rows[0].attempts == 1
    assert "554" in (rows[0].error or "")


async def test_failed_after_the_configured_attempts(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, events=["purchase"])
    smtp.handler.script.extend(["421 4.7.0 Busy"] * 3)
    booking = await sell(partner.live, gadget_request(customer_email()))
    rows = await wait_until(
        services, booking["id"], lambda rows: bool(rows) and rows[0].status == "failed"
    )
    assert rows[0].attempts == 3  # FAST.max_attempts
    assert len(smtp.handler.refused) == 3


async def test_the_partner_is_told_once_when_an_endpoint_is_disabled(
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, reply_to=REPLY_TO)
    created = await partner.live.call(
        "POST", "webhooks/", {"url": "https://hooks.shop-ng.example/coverline"}
    )
    assert created.status_code == 201, created.text
    async with services.database.transaction() as session:
        endpoint = await session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.public_id == created.json()["id"])
        )
        assert endpoint is not None
        now = services.clock.now()
        await disable_endpoint(session, endpoint.id, "The endpoint answered 410 Gone.", now)
        await disable_endpoint(session, endpoint.id, "The endpoint answered 410 Gone.", now)

    mails = await smtp.handler.wait_for(REPLY_TO, 1)
    await asyncio.sleep(0.2)
    assert len(smtp.handler.to(REPLY_TO)) == 1
    mail = mails[0]
    assert mail.subject == "Webhook endpoint disabled: https://hooks.shop-ng.example/coverline"
    assert "Reason: The endpoint answered 410 Gone." in mail.part("plain")
    assert created.json()["id"] in mail.part("html")


async def test_messages_and_settings_are_private_to_a_partner_and_mode(
    services: Services,
    partner: PartnerFixture,
    other_partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, sender_name="Private Name", events=["purchase"])
    booking = await sell(partner.live, gadget_request(customer_email()))
    listed = await partner.live.call("GET", "messages/", params={"booking": booking["id"]})
    message_id = listed.json()["results"][0]["id"]
    await wait_until(services, booking["id"], _sent(1))
    messages_before = (await partner.live.call("GET", "messages/")).json()

    other = other_partner.live
    assert (await other.call("GET", f"messages/{message_id}/")).status_code == 404
    across = await other.call("GET", "messages/", params={"booking": booking["id"]})
    assert across.status_code == 200 and across.json() == {"count": 0, "results": []}
    assert (await other.call("GET", "messaging/settings", code=partner.code)).status_code == 404
    assert (await other.call("GET", "messages/", code=partner.code)).status_code == 404
    foreign_put = await other.call("PUT", "messaging/settings", {}, code=partner.code)
    assert foreign_put.status_code == 404
    assert (await other.call("GET", "messaging/settings")).json()["sender_name"] is None
    for method, path, body in [
        ("POST", f"bookings/{booking['id']}/send_email", {}),
        ("GET", "messaging/templates/", None),
        ("PUT", "messaging/templates/purchase/email/en", {"subject": "x", "text": "y"}),
        ("POST", "messaging/templates/purchase/email/en/preview", {"booking": booking["id"]}),
    ]:
        assert (await other.call(method, path, body, code=partner.code)).status_code == 404
    own_path = await other.call("POST", f"bookings/{booking['id']}/send_email", {})
    assert own_path.status_code == 404
    preview = await other.call(
        "POST", "messaging/templates/purchase/email/en/preview", {"booking": booking["id"]}
    )
    assert preview.status_code == 404
    sandbox = partner.sandbox
    assert (await sandbox.call("GET", f"messages/{message_id}/")).status_code == 404
    assert (await sandbox.call("GET", "messaging/settings")).json()["sender_name"] is None
    resend = await sandbox.call("POST", f"bookings/{booking['id']}/send_email", {})
    assert resend.status_code == 404
    assert (await partner.live.call("GET", "messages/")).json() == messages_before
    templates = (await partner.live.call("GET", "messaging/templates/")).json()["results"]
    assert all(t["source"] == "built_in" for t in templates)


async def test_a_template_of_the_partners_own_is_sent(
    partner: PartnerFixture, smtp: SmtpServer, mail_dispatcher: MessageDispatcher
) -> None:
    template = {
        "subject": "{{ customer.first_name }}, bienvenue ({{ booking.id }})",
        "text": "Bonjour {{ customer.full_name }}, vous avez payé {{ booking.total_price }}.",
    }
    saved = await partner.live.call("PUT", "messaging/templates/purchase/email/fr", template)
    assert saved.status_code == 200, saved.text
    await configure(partner.live, events=["purchase"])
    address = customer_email()
    body = {**gadget_request(address), "customer_language": "fr-ca"}
    booking = await sell(partner.live, body)
    mails = await smtp.handler.wait_for(address, 1)
    mail = mails[0]
    assert mail.subject == f"{NAME_FIRST}, bienvenue ({booking['id']})"
    price = booking["total_price_formatted"]
    assert mail.part("plain") == f"Bonjour {FULL_NAME}, vous avez payé {price}.\n"
    assert f"Bonjour {FULL_NAME}, vous avez payé {price}." in mail.part("html")
    english = customer_email()
    await sell(partner.live, gadget_request(english))
    assert (await smtp.handler.wait_for(english, 1))[0].subject.startswith("Your cover")


async def test_sms_numbers_are_only_used_when_the_channel_is_on(
    services: Services, partner: PartnerFixture, mail_dispatcher: MessageDispatcher
) -> None:
    await configure(partner.sandbox, channels=["email", "sms"], events=["purchase"])
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await messages_of(services, booking["id"])
    assert sorted((m.channel, m.status) for m in rows) == [
        ("email", "stored"),
        ("sms", "stored"),
    ]
    sms = next(m for m in rows if m.channel == "sms")
    assert sms.recipient == "+2348031234567"
    assert sms.subject is None and sms.html is None
    assert sms.text.startswith(f"{partner_name(partner)}: Hi {NAME_FIRST}, your cover")


def partner_name(partner: PartnerFixture) -> str:
    return f"Partner {partner.code}"


async def test_renewal_messages_read_the_booking_from_the_outbox(
    services: Services, partner: PartnerFixture
) -> None:
    """RENEWAL_NOTIFICATION carries only the renewal: its message takes the customer and the
    policy from the booking's latest event."""
    await configure(partner.sandbox, events=["renewal_notification"])
    await partner.sandbox.call("POST", "sandbox/clock", {"to": "2031-03-01T08:00:00Z"})
    address = customer_email()
    booking = await sell(
        partner.sandbox, gadget_request(address, datetime(2031, 3, 1, 9, 0, tzinfo=UTC))
    )
    await advance(partner, "P25D")
    rows = await messages_of(services, booking["id"])
    assert [(m.kind, m.status, m.recipient) for m in rows] == [
        ("renewal_notification", "stored", address)
    ]
    title = booking["quotes"][0]["policy"]["content"]["title"]
    assert rows[0].subject == f"Your {title} renews on 1 April 2031, 09:00 UTC"
    assert rows[0].text.startswith(f"Dear {NAME_FIRST},")


async def test_a_renewal_message_reads_a_booking_change_of_its_own_transaction(
    services: Services, partner: PartnerFixture
) -> None:
    """A transaction that changes the booking, then moves its renewal along: the renewal's
    message is about the booking as just changed, not as the database had it before."""
    await configure(partner.sandbox, events=["renewal_notification"])
    booking = await sell(partner.sandbox, gadget_request(customer_email(), datetime.now(UTC)))
    changed = {**booking, "policyholder": {**booking["policyholder"], "first_name": "Renamed"}}
    async with services.database.reading() as session:
        renewal = await session.scalar(select(Renewal).where(Renewal.package_id == booking["id"]))
    assert renewal is not None
    async with services.database.transaction() as session:
        for kind, payload in (
            (EventType.BOOKING_UPDATED, changed),
            (EventType.RENEWAL_NOTIFICATION, {"renewal": renewal_json(renewal)}),
        ):
            await record(
                session,
                partner_id=partner.id,
                mode="sandbox",
                type=kind,
                resource_type="booking",
                resource_id=booking["id"],
                payload=payload,
                at=services.clock.now(),
            )
    rows = [
        m for m in await messages_of(services, booking["id"]) if m.kind == "renewal_notification"
    ]
    assert len(rows) == 1
    assert rows[0].text.startswith("Dear Renamed,")


async def test_two_dispatchers_never_send_a_message_twice(
    services: Services, partner: PartnerFixture, smtp: SmtpServer
) -> None:
    await configure(partner.live, events=["purchase", "activation"])
    smtp.handler.delay = 0.05
    transports = Transports(email=smtp.config())
    addresses = [customer_email() for _ in range(12)]
    async with (
        running_dispatcher(services, transports) as first,
        running_dispatcher(services, transports) as second,
    ):
        assert first.worker_id != second.worker_id
        for address in addresses:
            await sell(partner.live, gadget_request(address, datetime.now(UTC)))
        for address in addresses:
            await smtp.handler.wait_for(address, 2)
        await asyncio.sleep(0.3)
    for address in addresses:
        subjects = [mail.subject.split(":")[0] for mail in smtp.handler.to(address)]
        assert subjects == ["Your cover is confirmed", "Your cover has started"]


async def test_message_list_refuses_offsets_and_nul_characters_it_cannot_query(
    partner: PartnerFixture,
) -> None:
    too_far = await partner.sandbox.call("GET", "messages/", params={"offset": 2**63})
    assert too_far.status_code == 422
    assert too_far.json()["errors"] == {
        "offset": ["Input should be less than or equal to 2147483647"]
    }
    nul = await partner.sandbox.call("GET", "messages/", params={"booking": "AB\x00C"})
    assert nul.status_code == 400
    assert nul.json() == {"type": "invalid_request_error", "message": UNSTORABLE_TEXT, "errors": {}}
    found = await partner.sandbox.call("GET", "messages/", params={"offset": 2**31 - 1})
    assert found.status_code == 200
    assert found.json() == {"count": 0, "results": []}
