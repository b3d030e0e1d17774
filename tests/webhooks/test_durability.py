"""Durability and scale-out of `coverline worker` processes sharing one PostgreSQL database.

These tests run on PostgreSQL, in the PostgreSQL pass only (marker `postgresql`): claims made
with `FOR UPDATE SKIP LOCKED` by several processes are what is under test. The bookings are made
through the HTTP app in this process, each one a real transaction that writes the booking, its
outbox event and the event's delivery (the partner's customer messages are switched off); the
workers are `python -m coverline worker` subprocesses; the partner's endpoint is a real
aiohttp receiver in this process that answers after a short delay, so that every worker always
has requests in flight.

The workers get `COVERLINE_WEBHOOK_LEASE_SECONDS` so that a killed worker's leases run out
within the test."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, update

from coverline.app import create_app
from coverline.catalog.definition import load_catalog_file
from coverline.catalog.service import load_catalog
from coverline.cli import DEMO_CATALOG
from coverline.config import Settings
from coverline.db.migrate import upgrade
from coverline.runtime import Services
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.conftest import PartnerFixture, make_partner
from tests.fixtures.database import POSTGRES_ADMIN_URL, postgres_database
from tests.fixtures.deployment import WorkerProcess, kill_mid_batch, require_postgres, worker_pid
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

MASTER_KEY = Fernet.generate_key().decode()
BOOKINGS = 400
BOOKING_CONCURRENCY = 8
RECEIVER_DELAY = 0.08
# Short, so that the deliveries a killed worker held are due again within the test.
LEASE_SECONDS = 5
BATCH_SIZE = 32
DELIVERY_TIMEOUT = 45.0

D = WebhookDelivery


@dataclass
class World:
    """One fresh PostgreSQL database, a partner with an XCover-format endpoint at a receiver,
    and the worker processes started on that database."""

    tmp: Path
    database_url: str
    services: Services
    partner: PartnerFixture
    receiver: Receiver
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, **settings: str) -> WorkerProcess:
        env = {
            name: value for name, value in os.environ.items() if not name.startswith("COVERLINE_")
        }
        env.update(
            COVERLINE_DATABASE_URL=self.database_url,
            COVERLINE_MASTER_KEY=MASTER_KEY,
            COVERLINE_DATA_DIR=str(self.tmp),
            COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
            COVERLINE_WEBHOOK_LEASE_SECONDS=str(LEASE_SECONDS),
            # Small claims: neither worker can take the whole backlog before the other starts.
            COVERLINE_WEBHOOK_BATCH_SIZE=str(BATCH_SIZE),
            # Both workers look for due work as often when idle as when busy: the deliveries
            # are made due by an UPDATE, which wakes nobody.
            COVERLINE_WEBHOOK_IDLE_POLL_SECONDS="0.02",
            COVERLINE_LOG_LEVEL="warning",
            PYTHONUNBUFFERED="1",
        )
        env.update(settings)
        index = len(self.workers)
        worker = WorkerProcess(
            name=f"worker-{index}",
            command=[sys.executable, "-m", "coverline", "worker"],
            env=env,
            cwd=self.tmp,
            log=self.tmp / f"worker-{index}.log",
        )
        worker.spawn()
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop_now()

    def logs(self) -> str:
        return "\n".join(worker.describe() for worker in self.workers)

    async def book(self, count: int) -> list[str]:
        """`count` instant bookings, a few at a time; their ids."""
        gate = asyncio.Semaphore(BOOKING_CONCURRENCY)

        async def one() -> str:
            async with gate:
                response = await self.partner.sandbox.call(
                    "POST", "instant_booking/", instant_booking_request()
                )
            assert response.status_code == 200, response.text
            return str(response.json()["id"])

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def due_in(self, delay: timedelta) -> None:
        """Make every pending delivery due after `delay` from now."""
        async with self.services.database.transaction() as session:
            await session.execute(
                update(D)
                .where(D.status == "pending")
                .values(next_attempt_at=self.services.clock.now() + delay)
            )

    async def statuses(self) -> Counter[str]:
        async with self.services.database.reading() as session:
            rows = await session.execute(select(D.status, func.count()).group_by(D.status))
            return Counter({status: count for status, count in rows.all()})

    async def leases(self) -> dict[int, set[str]]:
        """The deliveries each worker process holds now, by process id."""
        async with self.services.database.reading() as session:
            rows = await session.execute(
                select(D.leased_by, D.public_id).where(D.status == "delivering")
            )
            held: dict[int, set[str]] = {}
            for leased_by, public_id in rows.all():
                held.setdefault(worker_pid(leased_by), set()).add(public_id)
            return held

    async def wait_until_delivered(self, deliveries: int) -> None:
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            statuses = await self.statuses()
            if statuses["succeeded"] == deliveries:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not delivered within {DELIVERY_TIMEOUT:g} s: {dict(statuses)}, "
                    f"{len(self.receiver.received)} received\n{self.logs()}"
                )
            await asyncio.sleep(0.1)

    async def attempts_by_worker(self) -> dict[str, Counter[int]]:
        """For each delivery, how many attempts each worker process recorded."""
        async with self.services.database.reading() as session:
            rows = await session.execute(
                select(D.public_id, WebhookAttempt.worker)
                .join(WebhookAttempt, WebhookAttempt.delivery_id == D.id)
                .order_by(WebhookAttempt.id)
            )
            found: dict[str, Counter[int]] = {}
            for public_id, worker in rows.all():
                found.setdefault(public_id, Counter())[worker_pid(worker)] += 1
            return found


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    await require_postgres(POSTGRES_ADMIN_URL)
    async with postgres_database(prefix="coverline_durability") as url:
        await upgrade(url)
        settings = Settings(
            database_url=url,
            data_dir=tmp_path,
            master_key=MASTER_KEY,
            rate_limit="100000/second",
            webhooks_allow_private_networks=True,
            run_worker=False,
        )
        services = Services.build(settings)
        try:
            async with services.database.transaction() as session:
                await load_catalog(session, load_catalog_file(DEMO_CATALOG), services.clock.now())
            transport = httpx.ASGITransport(app=create_app(settings, services))
            async with (
                running_receiver() as receiver,
                httpx.AsyncClient(transport=transport, base_url="https://cover.test") as http,
            ):
                receiver.default = Answer(delay=RECEIVER_DELAY)
                partner = await make_partner(services, http)
                # Customer messages are not under test: bookings become webhooks only.
                muted = await partner.sandbox.call(
                    "PATCH", "messaging/settings", {"enabled": False}
                )
                assert muted.status_code == 200, muted.text
                created = await partner.sandbox.call(
                    "POST",
                    "webhooks/",
                    {"url": receiver.url, "format": "xcover", "retry_schedule": [0.5, 0.5, 0.5]},
                )
                assert created.status_code == 201, created.text
                built = World(tmp_path, url, services, partner, receiver)
                try:
                    yield built
                finally:
                    built.stop_workers()
        finally:
            await services.close()


def _report(capsys: pytest.CaptureFixture[str], title: str, rows: dict[str, object]) -> None:
    """A small table in the test output, past pytest's capture."""
    width = max(len(label) for label in rows)
    lines = [f"\n{title}"] + [f"  {label:<{width}}  {value}" for label, value in rows.items()]
    with capsys.disabled():
        print("\n".join(lines))


def _booking_ids(receiver: Receiver) -> list[str]:
    return [str(request.json()["payload"]["id"]) for request in receiver.received]


def _webhook_ids(receiver: Receiver, upto: int | None = None) -> list[str]:
    return [request.headers["webhook-id"] for request in receiver.received[:upto]]


async def test_two_workers_share_the_work_with_no_double_claims(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The workers start while the bookings are made: claims race with the inserts.
    workers = [world.start_worker(), world.start_worker()]
    started = time.monotonic()
    bookings = await world.book(BOOKINGS)
    produced = time.monotonic()
    await world.wait_until_delivered(BOOKINGS)
    delivered = time.monotonic()
    world.stop_workers()  # SIGTERM: whatever is under way is finished and recorded first
    assert [worker.returncode for worker in workers] == [0, 0], world.logs()

    received = Counter(_webhook_ids(world.receiver))
    attempts = await world.attempts_by_worker()
    shares = Counter(pid for per_worker in attempts.values() for pid in per_worker.elements())
    _report(
        capsys,
        "two workers, no crash",
        {
            "bookings (events) produced": len(bookings),
            "deliveries received": len(received),
            "requests received": received.total(),
            "received twice or more": sum(1 for count in received.values() if count > 1),
            "lost": len(set(bookings) - set(_booking_ids(world.receiver))),
            "attempts per worker": dict(shares),
            "seconds producing / delivering the rest": (
                f"{produced - started:.1f} / {delivered - produced:.1f}"
            ),
        },
    )
    assert sorted(_booking_ids(world.receiver)) == sorted(bookings)
    assert len(received) == BOOKINGS
    assert set(received.values()) == {1}
    assert await world.statuses() == Counter(succeeded=BOOKINGS)
    # One attempt per delivery, recorded by the one worker that claimed it; both did work.
    assert len(attempts) == BOOKINGS
    assert all(per_worker.total() == 1 for per_worker in attempts.values())
    assert set(shares) == {worker.pid for worker in workers}


async def test_kill_9_of_a_worker_mid_batch_loses_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    bookings = await world.book(BOOKINGS)
    # Held until both workers run, then due at once: both claim from one backlog.
    await world.due_in(timedelta(days=1))
    workers = [world.start_worker(), world.start_worker()]
    for worker in workers:
        await worker.ready()
    await world.due_in(timedelta(0))

    victim, received_at_kill = await kill_mid_batch(
        workers,
        world.leases,
        lambda: _webhook_ids(world.receiver),
        after=BOOKINGS // 5,
        timeout=DELIVERY_TIMEOUT,
    )
    killed_at = time.monotonic()
    # The victim is gone: what it holds stays held until its lease runs out.
    orphaned = (await world.leases()).get(victim.pid, set())
    in_flight = orphaned & set(_webhook_ids(world.receiver, received_at_kill))
    assert in_flight, "the worker was not killed with requests in flight"
    assert received_at_kill < BOOKINGS * 3 // 4, "too little was left to deliver after the kill"

    replacement = world.start_worker()
    await world.wait_until_delivered(BOOKINGS)
    recovered_in = time.monotonic() - killed_at
    await replacement.ready()
    world.stop_workers()
    survivors = [worker for worker in workers if worker is not victim] + [replacement]
    assert [worker.returncode for worker in survivors] == [0, 0], world.logs()

    received = Counter(_webhook_ids(world.receiver))
    duplicated = {webhook_id for webhook_id, count in received.items() if count > 1}
    lost = set(bookings) - set(_booking_ids(world.receiver))
    attempts = await world.attempts_by_worker()
    shares = Counter(pid for per_worker in attempts.values() for pid in per_worker.elements())
    _report(
        capsys,
        "two workers, one killed with SIGKILL mid-batch, one replacement",
        {
            "bookings (events) produced": len(bookings),
            "requests received at the kill": received_at_kill,
            "leased by the killed worker": len(orphaned),
            "of which had reached the receiver": len(in_flight),
            "deliveries received": len(received),
            "requests received": received.total(),
            "duplicated": len(duplicated),
            "lost": len(lost),
            "attempts recorded per worker": dict(shares),
            "seconds from the kill to all delivered": f"{recovered_in:.1f}",
        },
    )
    assert not lost
    assert len(received) == BOOKINGS
    # Redelivered are exactly what the victim held unrecorded: at least what had reached the
    # receiver, at most everything it held, each a second time only, with the same body.
    assert in_flight <= duplicated <= orphaned
    assert max(received.values()) == 2
    bodies: dict[str, set[bytes]] = {}
    for request in world.receiver.received:
        bodies.setdefault(request.headers["webhook-id"], set()).add(request.body)
    assert all(len(variants) == 1 for variants in bodies.values())
    assert await world.statuses() == Counter(succeeded=BOOKINGS)
    # The victim recorded nothing of what it held; a surviving worker sent each again once.
    assert len(attempts) == BOOKINGS
    assert all(per_worker.total() == 1 for per_worker in attempts.values())
    assert all(victim.pid not in attempts[public_id] for public_id in orphaned)


async def test_a_commit_in_another_process_wakes_an_idle_worker(world: World) -> None:
    """The worker looks for due work once a minute only: deliveries that reach the receiver
    well within that minute were announced by the committing process (PostgreSQL NOTIFY)."""
    worker = world.start_worker(
        COVERLINE_WEBHOOK_POLL_SECONDS="60", COVERLINE_WEBHOOK_IDLE_POLL_SECONDS="60"
    )
    await worker.ready()
    # Past its first look at start-up, the worker waits for a wake-up or its next minute.
    await asyncio.sleep(1.0)
    bookings = await world.book(3)
    # Within DELIVERY_TIMEOUT (45 s), before the worker's next look (60 s).
    await world.wait_until_delivered(3)
    assert sorted(_booking_ids(world.receiver)) == sorted(bookings)
