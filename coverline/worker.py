"""Background work of a process: the webhook dispatcher and housekeeping.

`coverline serve` runs it inside the API process (embedded mode); `coverline worker` runs it
alone, as many times over as there are machines to share the work.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, select

from coverline.kit.aio import pause
from coverline.messaging.dispatcher import (
    MessageDispatcher,
    dispatch_settings_from,
    transports_from,
)
from coverline.renewals.scheduler import Scheduler
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery

log = logging.getLogger("coverline.worker")
HOUSEKEEPING_SECONDS = 60.0


def dispatch_settings(services: Services) -> DispatchSettings:
    settings = services.settings
    return DispatchSettings(
        allow_private_networks=settings.webhooks_allow_private_networks,
        max_in_flight=settings.webhook_max_in_flight,
        per_endpoint=settings.webhook_per_endpoint_concurrency,
        default_timeout=settings.webhook_timeout_seconds,
        lease_seconds=settings.webhook_lease_seconds,
        poll_seconds=settings.webhook_poll_seconds,
        idle_poll_seconds=settings.webhook_idle_poll_seconds,
        batch_size=settings.webhook_batch_size,
        disable_after=timedelta(hours=settings.webhook_disable_after_hours),
        disable_after_failures=settings.webhook_disable_after_failures,
    )


class Worker:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.dispatcher = Dispatcher(
            services.database,
            services.box,
            services.clock,
            dispatch_settings(services),
            resolver=services.webhook_resolver,
        )
        self.scheduler = Scheduler(services.database, services.clocks)
        self.messages = MessageDispatcher(
            services.database,
            services.clock,
            transports_from(services.settings),
            dispatch_settings_from(services.settings),
            services.clocks,
        )

    async def run(self, stop: asyncio.Event) -> None:
        async with self.dispatcher, self.messages:
            await asyncio.gather(
                self.dispatcher.run(stop),
                self.messages.run(stop),
                self.scheduler.run(stop),
                self._housekeeping(stop),
            )

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.housekeeping()
            except Exception:
                log.exception("housekeeping failed")
            await pause(stop, HOUSEKEEPING_SECONDS)

    async def housekeeping(self) -> None:
        services = self.services
        now = services.clock.now()
        await services.idempotency.purge_expired(now)
        horizon = now - timedelta(days=services.settings.webhook_attempt_retention_days)
        async with services.database.transaction() as session:
            old = select(WebhookDelivery.id).where(
                WebhookDelivery.status.in_(("succeeded", "failed")),
                WebhookDelivery.completed_at < horizon,
            )
            await session.execute(
                delete(WebhookAttempt).where(WebhookAttempt.attempted_at < horizon)
            )
            await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))


class BackgroundWorker:
    """A worker as an asyncio task of its own, for the embedded mode and tests."""

    def __init__(self, services: Services) -> None:
        self.worker = Worker(services)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.worker.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
