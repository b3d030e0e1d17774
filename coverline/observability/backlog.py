"""The gauges read from the database when scraped: outbox depth and the oldest due work.

Each is an index range scan or an index probe, and every count stops at `DEPTH_CAP` rows, so
the cost of a scrape stops growing with the outbox (docs/operations.md has the measurements at
a million rows; a plain `count(*)` reads every due row). The values are cached for a few
seconds per process, so scrapes from several Prometheus servers, or a flood of requests on the
unauthenticated /metrics, read the database once per interval at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import false, func, select, true
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.db.engine import Database
from coverline.kit.clock import Clock
from coverline.messaging.models import Message
from coverline.observability.metrics import MESSAGE_CHANNELS
from coverline.renewals.models import Renewal
from coverline.webhooks.models import (
    DELIVERING,
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
    status_is,
)

log = logging.getLogger("coverline.metrics")
DEPTH_CAP = 100_000
WEBHOOKS = "webhooks"

D = WebhookDelivery
E = WebhookEndpoint
M = Message


async def _capped_count(session: AsyncSession, *where: Any, table: Any) -> int:
    bounded = select(table.id).where(*where).limit(DEPTH_CAP).subquery()
    return int(await session.scalar(select(func.count()).select_from(bounded)) or 0)


def _age(now: datetime, oldest: datetime | None) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


async def _held(session: AsyncSession, *when: Any) -> int:
    per_endpoint = (
        select(func.count())
        .select_from(D)
        .where(D.endpoint_id == E.id, status_is(D.status, PENDING), *when)
        .scalar_subquery()
    )
    total = await session.scalar(
        select(func.coalesce(func.sum(per_endpoint), 0)).where(
            E.enabled == false(), E.deleted_at.is_(None)
        )
    )
    return int(total or 0)


async def _webhooks(session: AsyncSession, now: datetime) -> tuple[dict[str, int], float]:
    pending = status_is(D.status, PENDING)
    due = await _capped_count(session, pending, D.next_attempt_at <= now, table=D)
    waiting = await _capped_count(session, pending, D.next_attempt_at > now, table=D)
    in_flight = await _capped_count(session, status_is(D.status, DELIVERING), table=D)
    # Pending deliveries of a disabled endpoint wait for it to be enabled again: not a
    # backlog of the dispatcher. A disabled endpoint gets no new deliveries, so it holds what
    # was pending when it was disabled; each is counted on the endpoint's own index.
    held_due = await _held(session, D.next_attempt_at <= now)
    held_waiting = await _held(session, D.next_attempt_at > now)
    depth = {
        "due": due - held_due if due < DEPTH_CAP else DEPTH_CAP,
        "waiting": waiting - held_waiting if waiting < DEPTH_CAP else DEPTH_CAP,
        "in_flight": in_flight,
        "held": min(held_due + held_waiting, DEPTH_CAP),
    }
    # One probe of the (endpoint, next attempt) index of pending deliveries per enabled endpoint.
    per_endpoint = (
        select(func.min(D.next_attempt_at))
        .where(D.endpoint_id == E.id, pending, D.next_attempt_at <= now)
        .scalar_subquery()
    )
    oldest_each = (
        select(per_endpoint.label("oldest"))
        .where(E.enabled == true(), E.deleted_at.is_(None))
        .subquery()
    )
    oldest = await session.scalar(select(func.min(oldest_each.c.oldest)))
    return depth, _age(now, oldest)


async def _messages(
    session: AsyncSession, now: datetime, channel: str
) -> tuple[dict[str, int], float]:
    mine = M.channel == channel
    queued = M.status == "queued"
    depth = {
        "due": await _capped_count(session, queued, M.next_attempt_at <= now, mine, table=M),
        "waiting": await _capped_count(session, queued, M.next_attempt_at > now, mine, table=M),
        "in_flight": await _capped_count(session, M.status == "sending", mine, table=M),
    }
    oldest = await session.scalar(
        select(M.next_attempt_at)
        .where(queued, M.next_attempt_at <= now, mine)
        .order_by(M.next_attempt_at)
        .limit(1)
    )
    return depth, _age(now, oldest)


async def _renewals(session: AsyncSession, now: datetime) -> float:
    oldest = await session.scalar(
        select(func.min(Renewal.next_transition_at)).where(Renewal.next_transition_at <= now)
    )
    return _age(now, oldest)


async def read_backlog(database: Database, now: datetime) -> list[Metric]:
    depth = GaugeMetricFamily(
        "coverline_outbox_depth",
        f"Work waiting in the outbox tables, by queue and state (each count stops at {DEPTH_CAP}).",
        labels=["queue", "state"],
    )
    oldest = GaugeMetricFamily(
        "coverline_outbox_oldest_due_seconds",
        "Age of the oldest due, unclaimed item of each queue (0 when none is due).",
        labels=["queue"],
    )
    renewals = GaugeMetricFamily(
        "coverline_renewals_oldest_due_seconds",
        "How long the oldest renewal transition that is due has waited for the scheduler, on "
        "real time (0 when none is due).",
    )
    async with database.reading() as session:
        queues = [(WEBHOOKS, await _webhooks(session, now))]
        for channel in MESSAGE_CHANNELS:
            queues.append((channel, await _messages(session, now, channel)))
        renewals.add_metric([], await _renewals(session, now))
    for queue, (states, age) in queues:
        for state, count in states.items():
            depth.add_metric([queue, state], float(count))
        oldest.add_metric([queue], age)
    return [depth, oldest, renewals]


class Backlog:
    """The backlog gauges of one process, read at most once per `ttl` seconds.

    When the database does not answer, a scrape still reports the process's own metrics,
    with `coverline_database_up` 0 instead of the backlog.
    """

    def __init__(self, database: Database, clock: Clock, ttl: float) -> None:
        self._database = database
        self._clock = clock
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._read_at = float("-inf")
        self._families: list[Metric] = []

    async def families(self) -> list[Metric]:
        async with self._lock:
            if time.monotonic() - self._read_at >= self._ttl:
                up = GaugeMetricFamily(
                    "coverline_database_up",
                    "1 when the last scrape could read the backlog from the database.",
                )
                try:
                    backlog = await read_backlog(self._database, self._clock.now())
                except (OSError, SQLAlchemyError) as exc:
                    log.warning("backlog gauges not read: %s", type(exc).__name__)
                    backlog = []
                up.add_metric([], 1.0 if backlog else 0.0)
                self._families = [*backlog, up]
                self._read_at = time.monotonic()
            return self._families
