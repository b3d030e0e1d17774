"""Customer messages counted by channel and outcome, at a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from coverline.messaging.dispatcher import MessageDispatcher
from coverline.messaging.models import Message
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.fixtures.metrics import Samples, scrape
from tests.messaging.conftest import (
    SmtpServer,
    configure,
    customer_email,
    gadget_request,
    messages_of,
    sell,
    wait_until,
)

MESSAGES = "coverline_messages_total"


def counted(after: Samples, before: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["channel"], dict(labels)["outcome"]): change
        for (name, labels), change in after.minus(before).items()
        if name == MESSAGES
    }


async def test_a_refusal_then_a_send_and_a_permanent_refusal(
    http: httpx.AsyncClient,
    services: Services,
    partner: PartnerFixture,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    await configure(partner.live, events=["purchase"])
    before = await scrape(http)
    smtp.handler.script.extend(["451 4.3.0 Try again later"])
    retried = await sell(partner.live, gadget_request(customer_email()))
    await wait_until(services, retried["id"], lambda rows: bool(rows) and rows[0].status == "sent")
    smtp.handler.script.extend(["554 5.7.1 Message rejected"])
    refused = await sell(partner.live, gadget_request(customer_email()))
    await wait_until(
        services, refused["id"], lambda rows: bool(rows) and rows[0].status == "failed"
    )
    after = await scrape(http)
    assert counted(after, before) == {
        ("email", "retry"): 1,
        ("email", "sent"): 1,
        ("email", "failed"): 1,
    }


async def test_messages_never_sent_in_time_count_as_expired(
    http: httpx.AsyncClient,
    services: Services,
    partner: PartnerFixture,
    mail_dispatcher: MessageDispatcher,
) -> None:
    # The dispatcher sends e-mail only: the SMS waits queued until it expires.
    await configure(partner.live, channels=["email", "sms"], events=["purchase"])
    booking = await sell(partner.live, gadget_request(customer_email()))
    rows = await wait_until(
        services,
        booking["id"],
        lambda rows: (
            {(m.channel, m.status) for m in rows} == {("email", "sent"), ("sms", "queued")}
        ),
    )
    (sms,) = [m for m in rows if m.channel == "sms"]
    now = services.clock.now()
    async with services.database.transaction() as session:
        await session.execute(
            update(Message)
            .where(Message.id == sms.id)
            .values(next_attempt_at=now - timedelta(hours=25))
        )
    before = await scrape(http)
    await mail_dispatcher.expire(now)
    after = await scrape(http)
    assert counted(after, before) == {("sms", "expired"): 1}
    assert [m.status for m in await messages_of(services, booking["id"]) if m.channel == "sms"] == [
        "failed"
    ]
