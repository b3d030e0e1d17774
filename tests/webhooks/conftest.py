from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from tests.conftest import PartnerClient
from tests.fixtures.receiver import Receiver, running_receiver

FAST = [0.2, 0.2, 0.2]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
async def dispatcher(services: Services) -> AsyncIterator[Dispatcher]:
    settings = DispatchSettings(allow_private_networks=True, poll_seconds=0.01, default_timeout=2)
    async with Dispatcher(services.database, services.box, services.clock, settings) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop))
        yield running
        stop.set()
        await task


async def add_endpoint(client: PartnerClient, url: str, **fields: Any) -> dict[str, Any]:
    response = await client.call(
        "POST", "webhooks/", {"url": url, "retry_schedule": FAST, **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())
