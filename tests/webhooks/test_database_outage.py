"""A dispatcher whose database goes away while a send is under way records that send once
the database is back: the delivery is not sent a second time when its lease runs out.

PostgreSQL only (marker `postgresql`): the dispatcher reaches the test database through a
TCP proxy that the test cuts, as a restart or a failover would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from coverline.db.engine import Database
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.fixtures.deployment import TcpProxy
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint

pytestmark = pytest.mark.postgresql

SEND_SECONDS = 1.0
LEASE_SECONDS = 2.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(database_url)
    running = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await running.start()
    yield running
    await running.cut()


async def test_results_written_during_an_outage_are_kept_for_the_next_flush(
    services: Services,
    database_url: str,
    proxy: TcpProxy,
    partner: PartnerFixture,
    receiver: Receiver,
) -> None:
    target = urlsplit(database_url)
    proxied = Database(
        database_url.replace(f"@{target.hostname}:{target.port}/", f"@127.0.0.1:{proxy.port}/")
    )
    settings = DispatchSettings(
        allow_private_networks=True, poll_seconds=0.01, lease_seconds=LEASE_SECONDS
    )
    receiver.default = Answer(delay=SEND_SECONDS)
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    booked = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert booked.status_code == 200, booked.text

    stop = asyncio.Event()
    try:
        async with Dispatcher(proxied, services.box, services.clock, settings) as dispatcher:
            task = asyncio.create_task(dispatcher.run(stop))
            await receiver.wait_for(1)
            # The send is under way; its result comes while the database is unreachable.
            await proxy.cut()
            await asyncio.sleep(SEND_SECONDS * 1.5)
            await proxy.restore()
            for _ in range(200):
                async with services.database.reading() as session:
                    status = await session.scalar(
                        select(WebhookDelivery.status).where(
                            WebhookDelivery.public_id == receiver.received[0].headers["webhook-id"]
                        )
                    )
                if status == "succeeded":
                    break
                await asyncio.sleep(0.05)
            # Past the lease: a dropped result would have made the delivery due again.
            await asyncio.sleep(LEASE_SECONDS + 1.5)
            stop.set()
            await task
    finally:
        await proxied.dispose()

    assert status == "succeeded"
    assert len(receiver.received) == 1
    async with services.database.reading() as session:
        attempts = list(
            await session.scalars(
                select(WebhookAttempt.status_code)
                .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookEndpoint.public_id == endpoint["id"])
            )
        )
    assert attempts == [200]
