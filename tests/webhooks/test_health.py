"""An endpoint that keeps failing is disabled, and the operational event is recorded."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from coverline.events.models import Event
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint, fail_until_disabled


async def test_continuously_failing_endpoint_is_disabled(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[0.05, 0.05])
    receiver.default = Answer(status=500)
    state = await fail_until_disabled(services, partner, endpoint, failures=6)
    assert state["disabled_reason"].startswith("Every delivery failed for 0 hours")
    assert state["failing_since"] is not None
    async with services.database.reading() as session:
        events = list(
            await session.scalars(
                select(Event).where(
                    Event.partner_id == partner.id, Event.type == "ENDPOINT_DISABLED"
                )
            )
        )
    assert [e.resource_id for e in events] == [endpoint["id"]]
    assert events[0].payload["url"] == receiver.url


async def test_success_clears_failing_since(
    services: Services, partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=500))
    await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    await receiver.wait_for(1)
    await asyncio.sleep(0.1)
    failing = (await partner.sandbox.call("GET", f"webhooks/{endpoint['id']}/")).json()
    assert failing["failing_since"] is not None
    await receiver.wait_for(2)
    for _ in range(50):
        state = (await partner.sandbox.call("GET", f"webhooks/{endpoint['id']}/")).json()
        if state["failing_since"] is None:
            break
        await asyncio.sleep(0.05)
    assert state["failing_since"] is None
    assert state["enabled"] is True
