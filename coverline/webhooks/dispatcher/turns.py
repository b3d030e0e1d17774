"""The dispatcher's loop: its turns, its claims, its sends and the record of their results."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import aiohttp
import orjson
from aiohttp.resolver import DefaultResolver
from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from coverline.db.engine import Database
from coverline.events.service import EventType, record
from coverline.kit import ids
from coverline.kit.clock import Clock
from coverline.kit.errors import ValidationFailed
from coverline.kit.request_id import bound_request_id, new_job_id
from coverline.observability import metrics
from coverline.partners.crypto import SecretBox
from coverline.webhooks import signing
from coverline.webhooks.dispatcher.queues import (
    DURATION_WEIGHT,
    Claim,
    DispatchSettings,
    EndpointConfig,
    EndpointQueue,
    Result,
)
from coverline.webhooks.dispatcher.sending import attempt
from coverline.webhooks.dispatcher.statements import RUN, SQL
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from coverline.webhooks.network import (
    ForbiddenAddress,
    GuardedResolver,
    ResolverFactory,
    refuse_literal,
)
from coverline.webhooks.service import WAKE_CHANNEL, partner_api_secret

log = logging.getLogger("coverline.webhooks")

DEFAULT_SCHEDULE = (30.0, 300.0, 1800.0)
REAP_SECONDS = 1.0
CONFIG_SECONDS = 5.0
FAILURE_BACKOFF = 0.5
MAX_FAILURE_BACKOFF = 5.0

D = WebhookDelivery
E = WebhookEndpoint


class Dispatcher:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        clock: Clock,
        settings: DispatchSettings,
        worker_id: str | None = None,
        resolver: ResolverFactory = DefaultResolver,
    ) -> None:
        self._database = database
        self._box = box
        self._clock = clock
        self._settings = settings
        self._resolver = resolver
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{ids.event_id()[4:12]}"
        self._http: aiohttp.ClientSession | None = None
        self._secrets: dict[str, str] = {}
        self._partner_secrets: dict[tuple[int, str], tuple[float, str]] = {}
        self._queues: dict[int, EndpointQueue] = {}
        # Response times of endpoints whose queue was forgotten while idle.
        self._durations: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._results: list[Result] = []
        self._outcomes: list[tuple[Result, str]] = []
        self._first_result_at = 0.0
        self._release: list[int] = []
        # Endpoints named by wake-ups since the last turn; `_look_everywhere` when a wake-up
        # named none or a poll is due.
        self._hinted: set[int] = set()
        self._look_everywhere = True
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_turn = 0.0
        self._last_search = 0.0
        self._last_reap = 0.0
        self._idle = settings.poll_seconds

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Dispatcher:
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_in_flight,
            resolver=GuardedResolver(self._settings.allow_private_networks, self._resolver()),
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
        """Dispatch until `stop` is set; then finish the sends under way, record them and give
        back the leases of the deliveries not yet sent."""
        self._stopping = False
        stopped = asyncio.create_task(stop.wait())
        backoff = FAILURE_BACKOFF
        async with self._database.subscribed(WAKE_CHANNEL, self.wake):
            try:
                while not stop.is_set():
                    try:
                        # A turn is a job: what it logs and the events it writes (an endpoint
                        # disabled) carry its id.
                        with bound_request_id(new_job_id()):
                            busy = await self.turn()
                    except Exception:
                        # The database is away, say: keep sending what is leased, try again
                        # later, not in a tight loop.
                        log.exception("webhook dispatch failed")
                        await asyncio.wait({stopped}, timeout=backoff)
                        backoff = min(backoff * 2, MAX_FAILURE_BACKOFF)
                        continue
                    backoff = FAILURE_BACKOFF
                    self._idle = (
                        self._settings.poll_seconds
                        if busy
                        else min(self._idle * 2, self._settings.idle_poll_seconds)
                    )
                    await self._until_next_turn(stopped)
            finally:
                stopped.cancel()
        await self.drain()

    async def drain(self) -> None:
        """Finish the sends under way, record them, give back every unsent lease."""
        self._stopping = True
        for queue in self._queues.values():
            self._release.extend(claim.delivery_id for claim in queue.waiting)
            queue.waiting.clear()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        for _attempt in range(3):
            if not self._results and not self._release:
                return
            try:
                await self.turn()
            except Exception:
                log.exception("recording the last webhook results failed")
                await asyncio.sleep(FAILURE_BACKOFF)

    def wake(self, endpoint_ids: set[str]) -> None:
        """New due deliveries for these endpoints (none named: anywhere)."""
        if endpoint_ids:
            self._hinted.update(int(value) for value in endpoint_ids if value.isdigit())
        else:
            self._look_everywhere = True
        self._wake.set()

    async def _until_next_turn(self, stopped: asyncio.Task[bool]) -> None:
        loop = asyncio.get_running_loop()
        while not stopped.done():
            delay = self._turn_due_in(loop.time())
            if delay <= 0:
                return
            self._wake.clear()
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({woken, stopped}, timeout=delay, return_when="FIRST_COMPLETED")
            woken.cancel()

    def _turn_due_in(self, now: float) -> float:
        settings = self._settings
        spaced = self._last_turn + settings.turn_seconds - now
        if len(self._results) >= settings.record_batch or self._release:
            return spaced
        if self._hinted or self._look_everywhere:
            return spaced
        if any(
            not q.exhausted and q.room(settings) > q.target(settings) // 2 for q in self._live()
        ):
            return spaced
        if self._results:
            return max(spaced, self._first_result_at + settings.record_seconds - now)
        return self._last_search + self._idle - now

    def _live(self) -> list[EndpointQueue]:
        return [queue for queue in self._queues.values() if not queue.retired]

    # ------------------------------------------------------------------ one turn
    async def turn(self) -> bool:
        """Record finished sends, reap expired leases, claim more. True when there was work."""
        loop = asyncio.get_running_loop()
        self._last_turn = loop.time()
        results, self._results = self._results, []
        release, self._release = self._release, []
        hinted, self._hinted = self._hinted, set()
        search = self._look_everywhere or self._last_turn - self._last_search >= self._idle
        self._look_everywhere = False
        if search:
            self._last_search = self._last_turn
        now = self._clock.now()
        claimed: dict[int, list[Claim]] = {}
        try:
            async with self._database.transaction(first=True) as session:
                if results:
                    await self._record(session, results, now)
                if release:
                    await self._give_back(session, release)
                if self._last_turn - self._last_reap >= REAP_SECONDS:
                    self._last_reap = self._last_turn
                    await self._reap_leases(session, now)
                if not self._stopping:
                    claimed = await self._claim(session, now, hinted, search)
        except BaseException:
            # Nothing of this turn happened: keep the results and hints for the next one.
            self._outcomes.clear()
            self._results = results + self._results
            self._release = release + self._release
            self._hinted |= hinted
            self._look_everywhere = self._look_everywhere or search
            raise
        self._count_outcomes()
        for endpoint_id, claims in claimed.items():
            self._queues[endpoint_id].waiting.extend(claims)
        # Every queue, not only those that claimed: a slot may have freed (a raised
        # `max_concurrency`, the global limit no longer reached) with deliveries waiting.
        for queue in self._live():
            self._pump(queue)
        self._forget_idle_queues()
        return bool(claimed) or bool(results) or bool(self._tasks)

    def _count_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        metrics.webhook_attempts(
            (
                result.endpoint.format,
                outcome,
                result.duration_ms / 1000,
                (result.attempted_at - result.claim.created_at).total_seconds()
                if result.claim.attempts == 0
                else None,
            )
            for result, outcome in outcomes
        )

    # ------------------------------------------------------------------ claiming
    async def _claim(
        self, session: AsyncSession, now: datetime, hinted: set[int], search: bool
    ) -> dict[int, list[Claim]]:
        settings = self._settings
        connection = await session.connection()
        if search:
            await self._refresh(session, connection, now)
        live = {q.config.id for q in self._live()}
        candidates = {
            endpoint_id for endpoint_id in live if not self._queues[endpoint_id].exhausted
        }
        candidates |= hinted & live
        # Retired queues included: an endpoint enabled again while a send of its old queue
        # is still under way is read again at its first wake-up, not at the next search.
        unknown = hinted - live
        if unknown:
            rows = await connection.execute(SQL["endpoints"], {"ids": list(unknown)})
            candidates |= await self._know_all(session, rows.all(), now)
        if search:
            rows = await connection.execute(SQL["due_endpoints"], {"now": now})
            candidates |= await self._know_all(session, rows.all(), now)
        left = settings.max_leased - sum(queue.held for queue in self._queues.values())
        claimed: dict[int, list[Claim]] = {}
        order = list(candidates)
        random.shuffle(order)
        for endpoint_id in order:
            queue = self._queues.get(endpoint_id)
            if queue is None or queue.retired:
                continue
            room = min(queue.room(settings), left)
            if room <= 0:
                continue
            claims = await self._claim_endpoint(connection, endpoint_id, room, now)
            queue.exhausted = len(claims) < room
            queue.asked = False
            if claims:
                claimed[endpoint_id] = claims
                left -= len(claims)
        # After the claims, not before: on PostgreSQL each statement sees what committed before
        # it, so a change committed before a claim is seen by this later read, and every
        # delivery claimed is sent under it. Claims for an endpoint disabled meanwhile are
        # given back.
        await self._refresh(session, connection, now, changed_only=True)
        for endpoint_id in list(claimed):
            queue = self._queues.get(endpoint_id)
            if queue is None or queue.retired:
                self._release.extend(claim.delivery_id for claim in claimed.pop(endpoint_id))
        return claimed

    async def _know_all(
        self, session: AsyncSession, rows: Sequence[Row[Any]], now: datetime
    ) -> set[int]:
        """Configurations of these endpoint rows, for those that are enabled."""
        known = set()
        for row in rows:
            if row.enabled and row.deleted_at is None:
                await self._know(session, row, now)
                known.add(row.id)
        return known

    async def _refresh(
        self,
        session: AsyncSession,
        connection: AsyncConnection,
        now: datetime,
        *,
        changed_only: bool = False,
    ) -> None:
        """Reload what changed of the endpoints this worker holds work for; retire those that
        were disabled or deleted meanwhile (their unsent leases are given back).

        Every turn, after its claims, reads at least the endpoints' versions (`changed_only`:
        one small statement) and reads again the rows that changed: a delivery is sent under
        the configuration of its endpoint as of its claim or later, so one made after a PATCH
        or a secret rotation is sent as that change says. The searches of the poll read every
        row (a MyCover endpoint's partner secret changes without its row, and is read again
        at most every `CONFIG_SECONDS`)."""
        versions = {q.config.id: q.config.version for q in self._queues.values() if not q.retired}
        if not versions:
            return
        if changed_only:
            name, ids = self._for_ids("versions", list(versions))
            current = dict(await RUN[name].execute(connection, {"ids": ids}))
            held = [key for key, version in versions.items() if current.get(key) != version]
            if not held:
                return
        else:
            held = list(versions)
        rows = await connection.execute(SQL["endpoints"], {"ids": held})
        found = {row.id: row for row in rows.all()}
        for endpoint_id in held:
            row = found.get(endpoint_id)
            if row is None or not row.enabled or row.deleted_at is not None:
                self._retire(endpoint_id)
            else:
                await self._know(session, row, now)

    async def _know(self, session: AsyncSession, endpoint: Row[Any], now: datetime) -> None:
        queue = self._queues.get(endpoint.id)
        fresh = (
            queue is not None
            and not queue.retired
            and queue.config.version == endpoint.updated_at
            and endpoint.signature != signing.MYCOVER
        )
        if fresh:
            return
        config = await self._config(session, endpoint, now)
        if queue is None or queue.retired:
            duration = self._durations.pop(endpoint.id, config.timeout)
            self._queues[endpoint.id] = EndpointQueue(config, duration=duration)
        else:
            queue.config = config

    def _retire(self, endpoint_id: int) -> None:
        queue = self._queues.get(endpoint_id)
        if queue is None:
            return
        queue.retired = True
        self._release.extend(claim.delivery_id for claim in queue.waiting)
        queue.waiting.clear()

    def _forget_idle_queues(self) -> None:
        for endpoint_id, queue in list(self._queues.items()):
            if queue.held == 0 and (queue.retired or queue.exhausted):
                del self._queues[endpoint_id]
                if not queue.retired:
                    self._durations[endpoint_id] = queue.duration
        if len(self._durations) > 10_000:
            self._durations.clear()

    async def _claim_endpoint(
        self, connection: AsyncConnection, endpoint_id: int, limit: int, now: datetime
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries of one endpoint, heads of their resource only,
        oldest first."""
        lease = now + timedelta(seconds=self._settings.lease_seconds)
        if self._database.is_sqlite:
            found = await RUN["claim"].execute(
                connection,
                {
                    "endpoint": endpoint_id,
                    "now": now,
                    "limit": limit,
                    "lease": lease,
                    "worker": self.worker_id,
                },
            )
            # RETURNING follows no ORDER BY; every row is due, one per resource at most.
            rows = sorted(found, key=itemgetter(0))
        else:
            rows = await RUN["due_locking"].execute(
                connection, {"endpoint": endpoint_id, "now": now, "limit": limit}
            )
            if rows:
                await RUN["lease"].execute(
                    connection,
                    {"ids": [row[0] for row in rows], "lease": lease, "worker": self.worker_id},
                )
        if not rows:
            return []
        name, public_ids = self._for_ids("bodies", [row[1] for row in rows])
        found = await RUN[name].execute(connection, {"ids": public_ids})
        bodies: dict[str, bytes] = dict(found)
        events = await self._events_to_render(connection, rows, bodies)
        claims = []
        for row in rows:
            (delivery_id, public_id, part, name, attempts, failures, created_at) = row[:7]
            request_id, event_id = row[7:9]
            body = bodies.get(public_id)
            event_type, payload = "", None
            if body is None:
                event_type, payload, request_id = events[event_id]
            claims.append(
                Claim(
                    delivery_id=delivery_id,
                    public_id=public_id,
                    part=part,
                    name=name,
                    attempts=attempts,
                    failures=failures,
                    created_at=created_at,
                    body=body,
                    request_id=request_id,
                    event_type=event_type,
                    payload=payload,
                )
            )
        return claims

    def _for_ids(self, name: str, ids: Sequence[int | str]) -> tuple[str, str | Sequence[Any]]:
        """The name of the statement `name` about these ids for this backend, and its `ids`
        parameter: a JSON array for `json_each` on SQLite, an array (`name`_array) on
        PostgreSQL."""
        if self._database.is_sqlite:
            return name, orjson.dumps(list(ids)).decode()
        return f"{name}_array", ids

    async def _events_to_render(
        self,
        connection: AsyncConnection,
        rows: Sequence[tuple[Any, ...]],
        bodies: dict[str, bytes],
    ) -> dict[int, tuple[str, dict[str, Any], str | None]]:
        """The events of the claimed deliveries that have no stored body (made before bodies
        were stored, or whose rendering failed when the event was written)."""
        missing = {row[8] for row in rows if row[1] not in bodies}
        if not missing:
            return {}
        found = await connection.execute(SQL["events"], {"ids": list(missing)})
        return {row[0]: (row[1], row[2], row[3]) for row in found.all()}

    def _decrypt(self, ciphertext: str) -> str:
        plain = self._secrets.get(ciphertext)
        if plain is None:
            plain = self._box.decrypt(ciphertext)
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            self._secrets[ciphertext] = plain
        return plain

    async def _partner_secret(self, session: AsyncSession, endpoint: Row[Any]) -> str:
        """MyCover signs with the partner's API secret, which changes with key rotation, not
        with the endpoint: read again every few seconds."""
        key = (endpoint.partner_id, endpoint.mode)
        cached = self._partner_secrets.get(key)
        if cached is not None and time.monotonic() - cached[0] < CONFIG_SECONDS:
            return cached[1]
        secret = await partner_api_secret(session, self._box, endpoint.partner_id, endpoint.mode)
        self._partner_secrets[key] = (time.monotonic(), secret)
        return secret

    async def _config(
        self, session: AsyncSession, endpoint: Row[Any], now: datetime
    ) -> EndpointConfig:
        refused: str | None = None
        previous_until = None
        try:
            if endpoint.signature == signing.MYCOVER:
                secrets = [await self._partner_secret(session, endpoint)]
            else:
                secrets = [self._decrypt(endpoint.secret_ciphertext)]
                expires = endpoint.previous_secret_expires_at
                if endpoint.previous_secret_ciphertext and expires is not None and expires > now:
                    secrets.append(self._decrypt(endpoint.previous_secret_ciphertext))
                    previous_until = expires.timestamp()
        except (ValidationFailed, ValueError) as exc:
            # Nothing to sign with (no active API key for MyCover's scheme, a secret the master
            # key cannot decrypt): this endpoint's attempts fail and are retried; the others go
            # on. The config is built again as soon as it changes.
            log.warning("webhook endpoint %s cannot sign: %s", endpoint.public_id, exc)
            secrets = []
            refused = f"Cannot sign: {exc}"
        schedule = (
            tuple(endpoint.retry_schedule)
            if endpoint.retry_schedule is not None
            else DEFAULT_SCHEDULE
        )
        timeout = endpoint.timeout_seconds or self._settings.default_timeout
        try:
            refuse_literal(endpoint.url, self._settings.allow_private_networks)
        except ForbiddenAddress as exc:
            refused = f"Refused: {exc}."
        return EndpointConfig(
            id=endpoint.id,
            public_id=endpoint.public_id,
            url=endpoint.url,
            format=endpoint.format,
            signature=endpoint.signature,
            key=endpoint.key,
            secrets=secrets,
            schedule=schedule,
            timeout=timeout,
            max_concurrency=endpoint.max_concurrency or self._settings.per_endpoint,
            version=endpoint.updated_at,
            client_timeout=aiohttp.ClientTimeout(total=timeout),
            refused=refused,
            previous_until=previous_until,
        )

    # ------------------------------------------------------------------ sending
    def _may_send(self, queue: EndpointQueue) -> bool:
        return (
            bool(queue.waiting)
            and queue.in_flight < queue.config.max_concurrency
            and self._in_flight < self._settings.max_in_flight
            and not self._stopping
        )

    def _take(self, queue: EndpointQueue) -> Claim:
        queue.in_flight += 1
        self._in_flight += 1
        return queue.waiting.popleft()

    def _pump(self, queue: EndpointQueue) -> None:
        """Start a lane for each of the endpoint's waiting deliveries its slots allow."""
        while self._may_send(queue):
            task = asyncio.create_task(self._lane(queue, self._take(queue)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _lane(self, queue: EndpointQueue, claim: Claim) -> None:
        """Send, then the endpoint's next waiting delivery while its slot is free: one task
        per slot in use, not one per request."""
        while True:
            await self._send(queue, claim)
            if not self._may_send(queue):
                return
            claim = self._take(queue)

    def _finished(self, queue: EndpointQueue, result: Result) -> None:
        queue.in_flight -= 1
        self._in_flight -= 1
        seconds = result.duration_ms / 1000
        queue.duration += DURATION_WEIGHT * (seconds - queue.duration)
        if not self._results:
            self._first_result_at = asyncio.get_running_loop().time()
            self._wake.set()
        self._results.append(result)
        if len(self._results) == self._settings.record_batch:
            self._wake.set()
        if (
            not queue.exhausted
            and not queue.asked
            and queue.room(self._settings) >= queue.target(self._settings) // 2
        ):
            queue.asked = True
            self._wake.set()
        if self._in_flight == self._settings.max_in_flight - 1:
            # A global slot freed: give it to whichever endpoint waits for one (this one's
            # lane takes it back if none does).
            for other in self._live():
                if other is not queue:
                    self._pump(other)

    async def _send(self, queue: EndpointQueue, claim: Claim) -> None:
        endpoint = queue.config
        attempted_at = self._clock.now()
        started = time.perf_counter()
        headers: dict[str, str] = {}
        try:
            assert self._http is not None
            result = await attempt(self._http, endpoint, claim, headers)
        except Exception as exc:
            # A payload the format cannot render, say: an attempt that failed, never a lost
            # delivery or a lost slot.
            log.exception("webhook %s could not be sent", claim.public_id)
            result = (None, None, f"{type(exc).__name__}: {exc}", None)
        status, excerpt, error, retry_after = result
        duration = int((time.perf_counter() - started) * 1000)
        self._finished(
            queue,
            Result(
                claim,
                endpoint,
                attempted_at,
                duration,
                status,
                excerpt,
                error,
                headers,
                retry_after,
            ),
        )

    # ------------------------------------------------------------------ recording
    def _next_delay(self, result: Result, failures: int) -> float | None:
        schedule = result.endpoint.schedule
        if failures > len(schedule):
            return None
        if result.retry_after is not None:
            return result.retry_after
        delay = schedule[failures - 1]
        return delay * (1 + random.uniform(-self._settings.jitter, self._settings.jitter))

    async def _record(self, session: AsyncSession, results: list[Result], now: datetime) -> None:
        attempts = []
        succeeded: dict[int, list[int]] = {}
        finals = []
        retries = []
        gone: set[int] = set()
        health: dict[int, bool] = {}
        first_failure: dict[int, datetime] = {}
        outcomes: list[tuple[Result, str]] = []
        for result in results:
            claim = result.claim
            endpoint_id = result.endpoint.id
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
                    "request_id": claim.request_id,
                }
            )
            health[endpoint_id] = health.get(endpoint_id, False) or result.succeeded
            if not result.succeeded:
                earliest = first_failure.get(endpoint_id, result.attempted_at)
                first_failure[endpoint_id] = min(earliest, result.attempted_at)
            if result.succeeded:
                assert result.status_code is not None
                succeeded.setdefault(result.status_code, []).append(claim.delivery_id)
                outcomes.append((result, "succeeded"))
                continue
            base: dict[str, Any] = {
                "b_id": claim.delivery_id,
                "b_attempts": claim.attempts + 1,
                "b_code": result.status_code,
                "b_error": result.error,
                "worker": self.worker_id,
            }
            failures = claim.failures + 1
            delay = None if result.status_code == 410 else self._next_delay(result, failures)
            if result.status_code == 410:
                gone.add(endpoint_id)
            if delay is None:
                finals.append(
                    {**base, "b_status": "failed", "b_failures": failures, "completed": now}
                )
                outcomes.append((result, "failed"))
            else:
                retries.append(
                    {**base, "b_failures": failures, "b_next": now + timedelta(seconds=delay)}
                )
                outcomes.append((result, "retry"))
        # Core executemany on the connection: many rows, one statement each.
        connection = await session.connection()
        await RUN["attempt"].executemany(connection, attempts)
        for code, delivery_ids in succeeded.items():
            name, ids = self._for_ids("succeeded", delivery_ids)
            await RUN[name].execute(
                connection, {"ids": ids, "code": code, "completed": now, "worker": self.worker_id}
            )
        await RUN["final"].executemany(connection, finals)
        await RUN["retry"].executemany(connection, retries)
        for endpoint_id, ok in health.items():
            queue = self._queues.get(endpoint_id)
            if ok and queue is not None:
                # A success may unblock the next delivery of the same resource.
                queue.exhausted = False
        disabled = await self._record_health(session, health, first_failure, gone, now)
        for endpoint_id in disabled:
            self._retire(endpoint_id)
        # Counted once committed (`turn`): a batch that fails to commit is recorded again.
        self._outcomes.extend(outcomes)

    async def _give_back(self, session: AsyncSession, delivery_ids: list[int]) -> None:
        """Leased deliveries this worker will not send (stopping, or their endpoint was
        disabled) become due again at once, for any worker."""
        connection = await session.connection()
        await connection.execute(SQL["give_back"], {"ids": delivery_ids, "worker": self.worker_id})

    async def _record_health(
        self,
        session: AsyncSession,
        health: dict[int, bool],
        first_failure: dict[int, datetime],
        gone: set[int],
        now: datetime,
    ) -> set[int]:
        """Endpoint health; returns the endpoints disabled by this batch."""
        healthy = [endpoint_id for endpoint_id, ok in health.items() if ok]
        failing = [endpoint_id for endpoint_id, ok in health.items() if not ok]
        connection = await session.connection()
        if healthy:
            name, ids = self._for_ids("healthy", healthy)
            await RUN[name].execute(connection, {"ids": ids})
        await RUN["failing"].executemany(
            connection,
            [{"b_id": endpoint_id, "since": first_failure[endpoint_id]} for endpoint_id in failing],
        )
        disabled = set()
        for endpoint_id in gone:
            if await disable_endpoint(session, endpoint_id, "The endpoint answered 410 Gone.", now):
                disabled.add(endpoint_id)
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
                reason = f"Every delivery failed for {hours:g} hours ({failed_since} attempts)."
                if await disable_endpoint(session, endpoint_id, reason, now):
                    disabled.add(endpoint_id)
        return disabled

    async def _reap_leases(self, session: AsyncSession, now: datetime) -> None:
        """Deliveries whose worker died with them claimed become due again."""
        connection = await session.connection()
        await RUN["reap"].execute(connection, {"now": now})


async def disable_endpoint(
    session: AsyncSession, endpoint_id: int, reason: str, now: datetime
) -> bool:
    """Disable an endpoint and record `ENDPOINT_DISABLED`; False when it was disabled already."""
    endpoint = await session.get(E, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return False
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
    return True
