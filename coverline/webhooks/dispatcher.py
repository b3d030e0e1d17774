"""The webhook dispatcher: claim due deliveries, send them, record what happened.

- Claims are short transactions: `FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional
  `UPDATE … RETURNING` on SQLite. A claim is a lease; a lease that runs out (the worker died)
  makes the delivery due again, so every event is delivered at least once.
- No transaction stays open across a network call: claim and commit, send, then record the
  results of many sends in one transaction.
- Concurrency is bounded per process and per endpoint, and an endpoint only gets as many new
  claims as it has free slots, so one slow partner never holds the slots of the others.
- Deliveries about one resource to one endpoint go out one at a time in commit order: a
  delivery is only claimed when no earlier one for the same endpoint and resource is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast

import aiohttp
from sqlalchemy import Table, and_, bindparam, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from coverline.db.engine import Database, database_unreachable
from coverline.events.models import Event
from coverline.events.service import EventType, record
from coverline.kit import ids
from coverline.kit.aio import keep_stepping
from coverline.kit.clock import Clock
from coverline.partners.crypto import SecretBox
from coverline.webhooks import formats, signing
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from coverline.webhooks.network import ForbiddenAddress, GuardedResolver, refuse_literal
from coverline.webhooks.service import partner_api_secret

log = logging.getLogger("coverline.webhooks")

USER_AGENT = "Coverline-Webhooks/1"
EXCERPT_BYTES = 2048
READ_LIMIT = 65536
DEFAULT_SCHEDULE = (30.0, 300.0, 1800.0)
RETRY_AFTER_STATUSES = {429, 503}
MAX_RETRY_AFTER = 86_400.0

D = WebhookDelivery
E = WebhookEndpoint


@dataclass(frozen=True)
class DispatchSettings:
    allow_private_networks: bool = False
    batch_size: int = 200
    max_in_flight: int = 256
    per_endpoint: int = 16
    default_timeout: float = 15.0
    lease_seconds: float = 90.0
    poll_seconds: float = 0.02
    jitter: float = 0.1
    disable_after: timedelta = timedelta(hours=24)
    disable_after_failures: int = 10


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    public_id: str
    event_type: str
    name: str
    part: int
    attempts: int
    failures: int
    payload: dict[str, Any]
    endpoint: EndpointConfig


@dataclass(frozen=True)
class EndpointConfig:
    id: int
    public_id: str
    url: str
    format: str
    signature: str
    key: str
    secrets: list[str]
    schedule: tuple[float, ...]
    timeout: float
    max_concurrency: int


@dataclass
class Result:
    claim: Claim
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    excerpt: str | None
    error: str | None
    request_headers: dict[str, str]
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class _State:
    in_flight: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER)


class Dispatcher:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        clock: Clock,
        settings: DispatchSettings,
        worker_id: str | None = None,
    ) -> None:
        self._database = database
        self._box = box
        self._clock = clock
        self._settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{ids.event_id()[4:12]}"
        self._state = _State()
        self._http: aiohttp.ClientSession | None = None
        self._secrets: dict[str, str] = {}
        self._last_reap = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Dispatcher:
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_in_flight,
            resolver=GuardedResolver(self._settings.allow_private_networks),
            ttl_dns_cache=30,
        )
        self._http = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.drain()
        if self._http is not None:
            await self._http.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set, then finish the sends under way and record them."""
        await keep_stepping(stop, self.step, self._settings.poll_seconds, log, "webhook dispatch")

    async def drain(self) -> None:
        while self._state.tasks:
            await asyncio.wait(set(self._state.tasks))
        await self._flush()

    # ------------------------------------------------------------------ one turn
    async def step(self) -> bool:
        """Claim, start sends, record finished ones. True when there was work."""
        state = self._state
        if state.tasks:
            await asyncio.wait(set(state.tasks), timeout=0.005, return_when=asyncio.FIRST_COMPLETED)
        await self._flush()
        await self._reap_leases()
        capacity = self._settings.max_in_flight - len(state.tasks)
        claims = await self.claim(capacity) if capacity > 0 else []
        for claim in claims:
            self._start(claim)
        return bool(claims) or bool(state.tasks)

    def _start(self, claim: Claim) -> None:
        state = self._state
        state.in_flight[claim.endpoint.id] += 1
        task = asyncio.create_task(self._send(claim))
        state.tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            state.tasks.discard(done)
            state.in_flight[claim.endpoint.id] -= 1

        task.add_done_callback(finished)

    # ------------------------------------------------------------------ claiming
    async def _claim_endpoint(
        self, session: AsyncSession, endpoint_id: int, limit: int, now: datetime
    ) -> list[Any]:
        """Lease up to `limit` due deliveries of one endpoint, heads of their resource only."""
        earlier = aliased(WebhookDelivery)
        blocked = exists().where(
            earlier.endpoint_id == D.endpoint_id,
            earlier.ordering_key == D.ordering_key,
            earlier.id < D.id,
            earlier.status.in_(("pending", "delivering")),
        )
        due = (
            select(D.id)
            .where(
                D.endpoint_id == endpoint_id,
                D.status == "pending",
                D.next_attempt_at <= now,
                ~blocked,
            )
            .order_by(D.id)
            .limit(limit)
        )
        if self._database.is_sqlite:
            # One writer at a time: the subquery cannot race.
            chosen: Any = due.scalar_subquery()
        else:
            # Lock first, then update those rows: PostgreSQL may run a LIMIT … SKIP LOCKED
            # subquery of an UPDATE more than once and so lease more rows than asked.
            due = due.with_for_update(skip_locked=True)
            chosen = list(await session.scalars(due))
            if not chosen:
                return []
        lease = now + timedelta(seconds=self._settings.lease_seconds)
        statement = (
            update(D)
            .where(D.id.in_(chosen), D.status == "pending")
            .values(status="delivering", lease_expires_at=lease, leased_by=self.worker_id)
            .returning(D.id, D.public_id, D.event_id, D.part, D.event_type, D.attempts, D.failures)
            .execution_options(synchronize_session=False)
        )
        return list((await session.execute(statement)).all())

    async def claim(self, capacity: int) -> list[Claim]:
        now = self._clock.now()
        async with self._database.transaction() as session:
            due_rows = list(
                await session.execute(
                    select(D.endpoint_id, E.max_concurrency)
                    .join(E, E.id == D.endpoint_id)
                    .where(
                        D.status == "pending",
                        D.next_attempt_at <= now,
                        E.enabled.is_(True),
                        E.deleted_at.is_(None),
                    )
                    .group_by(D.endpoint_id, E.max_concurrency)
                    .limit(1000)
                )
            )
            if not due_rows:
                return []
            random.shuffle(due_rows)
            claimed: list[tuple[int, Any]] = []
            for endpoint_id, max_concurrency in due_rows:
                cap = max_concurrency or self._settings.per_endpoint
                free = min(
                    cap - self._state.in_flight[endpoint_id],
                    capacity - len(claimed),
                    self._settings.batch_size,
                )
                if free <= 0:
                    continue
                rows = await self._claim_endpoint(session, endpoint_id, free, now)
                claimed.extend((endpoint_id, row) for row in rows)
                if len(claimed) >= capacity:
                    break
            if not claimed:
                return []
            return await self._load(session, claimed, now)

    async def _load(
        self, session: AsyncSession, claimed: list[tuple[int, Any]], now: datetime
    ) -> list[Claim]:
        event_ids = {row.event_id for _, row in claimed}
        events = {
            row.id: row
            for row in (
                await session.execute(
                    select(Event.id, Event.type, Event.payload).where(Event.id.in_(event_ids))
                )
            ).all()
        }
        endpoint_ids = {endpoint_id for endpoint_id, _ in claimed}
        endpoints = {
            endpoint.id: await self._config(session, endpoint, now)
            for endpoint in await session.scalars(select(E).where(E.id.in_(endpoint_ids)))
        }
        claims = []
        for endpoint_id, row in claimed:
            event = events[row.event_id]
            claims.append(
                Claim(
                    delivery_id=row.id,
                    public_id=row.public_id,
                    event_type=event.type,
                    name=row.event_type,
                    part=row.part,
                    attempts=row.attempts,
                    failures=row.failures,
                    payload=event.payload,
                    endpoint=endpoints[endpoint_id],
                )
            )
        return claims

    def _decrypt(self, ciphertext: str) -> str:
        plain = self._secrets.get(ciphertext)
        if plain is None:
            plain = self._box.decrypt(ciphertext)
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            self._secrets[ciphertext] = plain
        return plain

    async def _config(
        self, session: AsyncSession, endpoint: WebhookEndpoint, now: datetime
    ) -> EndpointConfig:
        if endpoint.signature == signing.MYCOVER:
            secrets = [
                await partner_api_secret(session, self._box, endpoint.partner_id, endpoint.mode)
            ]
        else:
            secrets = [self._decrypt(endpoint.secret_ciphertext)]
            if (
                endpoint.previous_secret_ciphertext
                and endpoint.previous_secret_expires_at is not None
                and endpoint.previous_secret_expires_at > now
            ):
                secrets.append(self._decrypt(endpoint.previous_secret_ciphertext))
        schedule = (
            tuple(endpoint.retry_schedule)
            if endpoint.retry_schedule is not None
            else DEFAULT_SCHEDULE
        )
        return EndpointConfig(
            id=endpoint.id,
            public_id=endpoint.public_id,
            url=endpoint.url,
            format=endpoint.format,
            signature=endpoint.signature,
            key=endpoint.key,
            secrets=secrets,
            schedule=schedule,
            timeout=endpoint.timeout_seconds or self._settings.default_timeout,
            max_concurrency=endpoint.max_concurrency or self._settings.per_endpoint,
        )

    # ------------------------------------------------------------------ sending
    async def _send(self, claim: Claim) -> None:
        assert self._http is not None
        endpoint = claim.endpoint
        body = formats.body_for(
            endpoint.format, claim.name, claim.part, claim.event_type, claim.payload
        )
        now = time.time()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signing.sign_headers(
                endpoint.signature,
                body=body,
                message_id=claim.public_id,
                timestamp=now,
                key=endpoint.key,
                secrets_in_use=endpoint.secrets,
            ),
        }
        attempted_at = self._clock.now()
        started = time.perf_counter()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            refuse_literal(endpoint.url, self._settings.allow_private_networks)
            async with self._http.post(
                endpoint.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
            ) as response:
                status = response.status
                content = await response.content.read(READ_LIMIT)
                excerpt = content[:EXCERPT_BYTES].decode("utf-8", "replace")
                if status in RETRY_AFTER_STATUSES:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"), now)
                if 300 <= status < 400:
                    location = response.headers.get("Location", "")
                    error = f"Redirect to {location!r} not followed."
        except TimeoutError:
            error = f"No response within {endpoint.timeout:g} s."
        except ForbiddenAddress as exc:
            error = f"Refused: {exc}."
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ForbiddenAddress):
                error = f"Refused: {exc.os_error}."
            else:
                error = f"{type(exc).__name__}: {exc}"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration = int((time.perf_counter() - started) * 1000)
        self._state.results.append(
            Result(claim, attempted_at, duration, status, excerpt, error, headers, retry_after)
        )

    # ------------------------------------------------------------------ recording
    def _next_delay(self, result: Result, failures: int) -> float | None:
        schedule = result.claim.endpoint.schedule
        if failures > len(schedule):
            return None
        if result.retry_after is not None:
            return result.retry_after
        delay = schedule[failures - 1]
        return delay * (1 + random.uniform(-self._settings.jitter, self._settings.jitter))

    async def _flush(self) -> None:
        results, self._state.results = self._state.results, []
        if not results:
            return
        now = self._clock.now()
        attempts = []
        finals = []
        retries = []
        gone: set[int] = set()
        health: dict[int, bool] = {}
        first_failure: dict[int, datetime] = {}
        for result in results:
            claim = result.claim
            attempts.append(
                {
                    "delivery_id": claim.delivery_id,
                    "attempted_at": result.attempted_at,
                    "duration_ms": result.duration_ms,
                    "status_code": result.status_code,
                    "request_headers": result.request_headers,
                    "response_excerpt": result.excerpt,
                    "error": result.error,
                    "worker": self.worker_id,
                }
            )
            health[claim.endpoint.id] = health.get(claim.endpoint.id, False) or result.succeeded
            if not result.succeeded:
                earliest = first_failure.get(claim.endpoint.id, result.attempted_at)
                first_failure[claim.endpoint.id] = min(earliest, result.attempted_at)
            base = {
                "b_id": claim.delivery_id,
                "b_attempts": claim.attempts + 1,
                "b_code": result.status_code,
                "b_error": result.error,
            }
            if result.succeeded:
                finals.append({**base, "b_status": "succeeded", "b_failures": claim.failures})
                continue
            failures = claim.failures + 1
            delay = None if result.status_code == 410 else self._next_delay(result, failures)
            if result.status_code == 410:
                gone.add(claim.endpoint.id)
            if delay is None:
                finals.append({**base, "b_status": "failed", "b_failures": failures})
            else:
                retries.append(
                    {**base, "b_failures": failures, "b_next": now + timedelta(seconds=delay)}
                )
        table = cast(Table, WebhookDelivery.__table__)
        async with self._kept_if_unreachable(results), self._database.transaction() as session:
            # Core executemany on the connection: many rows, one statement each.
            connection = await session.connection()
            await connection.execute(insert(cast(Table, WebhookAttempt.__table__)), attempts)
            mine = and_(
                table.c.id == bindparam("b_id"),
                table.c.leased_by == self.worker_id,
                table.c.status == "delivering",
            )
            common: dict[str, Any] = {
                "attempts": bindparam("b_attempts"),
                "failures": bindparam("b_failures"),
                "last_status_code": bindparam("b_code"),
                "last_error": bindparam("b_error"),
                "lease_expires_at": None,
                "leased_by": None,
            }
            if finals:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(**common, status=bindparam("b_status"), completed_at=now),
                    finals,
                )
            if retries:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(**common, status="pending", next_attempt_at=bindparam("b_next")),
                    retries,
                )
            await self._record_health(session, health, first_failure, gone, now)

    @contextlib.asynccontextmanager
    async def _kept_if_unreachable(self, results: list[Result]) -> AsyncIterator[None]:
        """Results that could not be written because the database was out of reach (a
        restart, a failover) wait for the next flush: dropped, their deliveries would be
        sent again once their leases ran out, though they had been sent."""
        try:
            yield
        except Exception as exc:
            if database_unreachable(exc):
                self._state.results[:0] = results
            raise

    async def _record_health(
        self,
        session: AsyncSession,
        health: dict[int, bool],
        first_failure: dict[int, datetime],
        gone: set[int],
        now: datetime,
    ) -> None:
        healthy = [endpoint_id for endpoint_id, ok in health.items() if ok]
        failing = [endpoint_id for endpoint_id, ok in health.items() if not ok]
        if healthy:
            await session.execute(
                update(E)
                .where(E.id.in_(healthy), E.failing_since.is_not(None))
                .values(failing_since=None)
            )
        for endpoint_id in failing:
            await session.execute(
                update(E)
                .where(E.id == endpoint_id, E.failing_since.is_(None))
                .values(failing_since=first_failure[endpoint_id])
            )
        for endpoint_id in gone:
            await disable_endpoint(session, endpoint_id, "The endpoint answered 410 Gone.", now)
        threshold = now - self._settings.disable_after
        for endpoint_id in failing:
            if endpoint_id in gone:
                continue
            endpoint = await session.get(E, endpoint_id)
            if (
                endpoint is None
                or not endpoint.enabled
                or endpoint.failing_since is None
                or endpoint.failing_since > threshold
            ):
                continue
            failed_since = await session.scalar(
                select(func.count())
                .select_from(WebhookAttempt)
                .join(D, D.id == WebhookAttempt.delivery_id)
                .where(
                    D.endpoint_id == endpoint_id,
                    WebhookAttempt.attempted_at >= endpoint.failing_since,
                )
            )
            if (failed_since or 0) >= self._settings.disable_after_failures:
                hours = self._settings.disable_after.total_seconds() / 3600
                await disable_endpoint(
                    session,
                    endpoint_id,
                    f"Every delivery failed for {hours:g} hours ({failed_since} attempts).",
                    now,
                )

    async def _reap_leases(self) -> None:
        """Deliveries whose worker died with them claimed become due again."""
        if time.monotonic() - self._last_reap < 1.0:
            return
        self._last_reap = time.monotonic()
        now = self._clock.now()
        async with self._database.transaction() as session:
            await session.execute(
                update(D)
                .where(D.status == "delivering", D.lease_expires_at < now)
                .values(status="pending", leased_by=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )


async def disable_endpoint(
    session: AsyncSession, endpoint_id: int, reason: str, now: datetime
) -> None:
    endpoint = await session.get(E, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    await record(
        session,
        partner_id=endpoint.partner_id,
        mode=endpoint.mode,
        type=EventType.ENDPOINT_DISABLED,
        resource_type="webhook_endpoint",
        resource_id=endpoint.public_id,
        payload={"id": endpoint.public_id, "url": endpoint.url, "reason": reason},
        at=now,
    )
    log.warning("webhook endpoint %s disabled: %s", endpoint.public_id, reason)
