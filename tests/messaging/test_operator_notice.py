"""The partner is told, by e-mail, once, when one of its webhook endpoints is disabled: at its
messaging `reply_to`, else its support address, else its first dashboard user."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from coverline.messaging.dispatcher import MessageDispatcher
from coverline.messaging.models import Message
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.dashboard.helpers import add_user
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint, fail_until_disabled
from tests.messaging.conftest import SmtpServer, configure


async def disable(services: Services, partner: PartnerFixture, receiver: Receiver) -> Any:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[0.05])
    receiver.default = Answer(status=500)
    await fail_until_disabled(services, partner, endpoint, failures=2)
    return endpoint


async def notices(services: Services, partner: PartnerFixture) -> list[Message]:
    async with services.database.reading() as session:
        return list(
            await session.scalars(
                select(Message).where(
                    Message.partner_id == partner.id, Message.kind == "endpoint_disabled"
                )
            )
        )


async def test_the_first_dashboard_user_is_told_by_default(
    services: Services,
    partner: PartnerFixture,
    receiver: Receiver,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    code = partner.code.lower()
    first = await add_user(services, partner_id=partner.id, email=f"first-{code}@partner.example")
    second = await add_user(services, partner_id=partner.id, email=f"second-{code}@partner.example")
    endpoint = await disable(services, partner, receiver)
    [mail] = await smtp.handler.wait_for(first.email, 1)
    assert endpoint["id"] in mail.part("plain") and receiver.url in mail.part("plain")
    # The message is marked sent once the server has taken it: a moment after it arrives.
    for _ in range(100):
        sent = [(m.recipient, m.status) for m in await notices(services, partner)]
        if sent == [(first.email, "sent")]:
            break
        await asyncio.sleep(0.05)
    assert sent == [(first.email, "sent")]
    assert smtp.handler.to(second.email) == []


async def test_the_reply_to_address_comes_first(
    services: Services,
    partner: PartnerFixture,
    receiver: Receiver,
    smtp: SmtpServer,
    mail_dispatcher: MessageDispatcher,
) -> None:
    code = partner.code.lower()
    user = await add_user(services, partner_id=partner.id, email=f"user-{code}@partner.example")
    await configure(partner.sandbox, reply_to=f"ops-{code}@partner.example")
    await disable(services, partner, receiver)
    await smtp.handler.wait_for(f"ops-{code}@partner.example", 1)
    recipients = [m.recipient for m in await notices(services, partner)]
    assert recipients == [f"ops-{code}@partner.example"]
    assert smtp.handler.to(user.email) == []


async def test_a_partner_with_no_address_is_told_nothing(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    await disable(services, partner, receiver)
    assert await notices(services, partner) == []
