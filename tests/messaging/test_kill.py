"""A `coverline worker` killed with SIGKILL while it sends e-mails, then started again.

The bookings are made through the HTTP app in this process on a database of their own (the
backend under test: a SQLite file, or PostgreSQL); the worker is a `python -m coverline
worker` subprocess on that database; the SMTP server is aiosmtpd in this process, slow to
answer DATA, so that the worker always has messages in flight.

The server behaves like a mail server: once it has the whole message (the end of DATA) it
keeps it, whether or not its `250` still reaches the client. That is the at-least-once window
of docs/messaging.md: a message the server kept whose `250` the worker had not yet recorded
is sent again after the restart. The test accounts for every message exactly:
- recorded `sent` before the kill: received exactly once;
- kept by the server but not recorded before the kill (the window): received exactly twice;
- every other message: received exactly once, after the restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlalchemy import select

from coverline.app import create_app
from coverline.catalog.definition import load_catalog_file
from coverline.catalog.service import load_catalog
from coverline.cli import DEMO_CATALOG
from coverline.config import Settings
from coverline.db.migrate import upgrade
from coverline.messaging.models import Message
from coverline.runtime import Services
from tests.conftest import PartnerFixture, make_partner
from tests.fixtures.database import fresh_database
from tests.fixtures.server import free_port
from tests.messaging.conftest import EMAIL_FROM, configure, gadget_request, sell

pytestmark = pytest.mark.slow

MASTER_KEY = Fernet.generate_key().decode()
BOOKINGS = 24
SMTP_DELAY = 0.3
# The worker is killed when the server has received this many messages, with more in flight.
KILL_AFTER = 10
LEASE_SECONDS = 2
STOP_TIMEOUT = 10.0


@dataclass
class KeepingServer:
    """Keeps every message whose DATA it received in full, then answers after a delay."""

    delay: float
    kill_after: int
    kept: list[str] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content or envelope.content)
        message_id = next(
            line.split(b":", 1)[1].strip().decode()
            for line in content.splitlines()
            if line.lower().startswith(b"message-id:")
        )
        with self._lock:
            self.kept.append(message_id.strip("<>").split("@", 1)[0])
            if len(self.kept) >= self.kill_after:
                self.reached.set()
        await asyncio.sleep(self.delay)
        return "250 2.0.0 Ok: queued"

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.kept)


@dataclass
class World:
    tmp: Path
    database_url: str
    services: Services
    partner: PartnerFixture
    smtp_port: int
    server: KeepingServer
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERLINE_")}
        env.update(
            COVERLINE_DATABASE_URL=self.database_url,
            COVERLINE_MASTER_KEY=MASTER_KEY,
            COVERLINE_DATA_DIR=str(self.tmp),
            COVERLINE_SMTP_HOST="127.0.0.1",
            COVERLINE_SMTP_PORT=str(self.smtp_port),
            COVERLINE_SMTP_TLS="none",
            COVERLINE_EMAIL_FROM=EMAIL_FROM,
            COVERLINE_MESSAGE_LEASE_SECONDS=str(LEASE_SECONDS),
            COVERLINE_MESSAGE_MAX_IN_FLIGHT="4",
            COVERLINE_MESSAGE_POLL_SECONDS="0.05",
            COVERLINE_LOG_LEVEL="warning",
            PYTHONUNBUFFERED="1",
        )
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "coverline", "worker"],
            env=env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:] for path in sorted(self.tmp.glob("*.log"))
        )

    async def statuses(self) -> dict[str, str]:
        async with self.services.database.reading() as session:
            rows = await session.execute(
                select(Message.public_id, Message.status).where(
                    Message.partner_id == self.partner.id
                )
            )
            return {public_id: status for public_id, status in rows.all()}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    server = KeepingServer(SMTP_DELAY, KILL_AFTER)
    controller = Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        async with fresh_database(tmp_path) as url:
            await upgrade(url)
            settings = Settings(
                database_url=url,
                data_dir=tmp_path,
                master_key=MASTER_KEY,
                rate_limit="100000/second",
                public_url="https://cover.test",
                run_worker=False,
            )
            services = Services.build(settings)
            try:
                async with services.database.transaction() as session:
                    await load_catalog(
                        session, load_catalog_file(DEMO_CATALOG), services.clock.now()
                    )
                transport = httpx.ASGITransport(app=create_app(settings, services))
                async with httpx.AsyncClient(
                    transport=transport, base_url="https://cover.test"
                ) as http:
                    partner = await make_partner(services, http)
                    built = World(tmp_path, url, services, partner, controller.port, server)
                    try:
                        yield built
                    finally:
                        for process in built.workers:
                            if process.poll() is None:
                                process.kill()
                                process.wait(STOP_TIMEOUT)
            finally:
                await services.close()
    finally:
        controller.stop()


async def wait_for(world: World, check: Any, what: str, timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = await world.statuses()
        if check(statuses):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {Counter(statuses.values())}\n{world.logs()}")
        await asyncio.sleep(0.02)


async def test_a_worker_killed_mid_send_loses_nothing_and_repeats_only_the_window(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    await configure(world.partner.live, events=["purchase"])
    for n in range(BOOKINGS):
        await sell(world.partner.live, gadget_request(f"customer{n}@example.ng"))
    statuses = await world.statuses()
    assert Counter(statuses.values()) == Counter(queued=BOOKINGS)

    victim = world.start_worker()
    reached = await asyncio.to_thread(world.server.reached.wait, 90)
    assert reached, f"the worker sent too little\n{world.logs()}"
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.wait, STOP_TIMEOUT)
    at_kill = await world.statuses()
    # The server finishes the exchanges it was in: it keeps those messages (the window).
    await asyncio.sleep(SMTP_DELAY + 0.5)
    kept_at_kill = set(world.server.counts())
    sent_at_kill = {m for m, status in at_kill.items() if status == "sent"}
    sending_at_kill = {m for m, status in at_kill.items() if status == "sending"}
    window = kept_at_kill - sent_at_kill
    assert sent_at_kill <= kept_at_kill
    assert window <= sending_at_kill, "only a claimed message can have reached the server"
    assert sending_at_kill, "the worker was not killed with messages in flight"
    assert sent_at_kill, "the worker had recorded nothing before the kill"

    replacement = world.start_worker()
    done = await wait_for(
        world, lambda s: Counter(s.values()) == Counter(sent=BOOKINGS), "not all sent"
    )
    await asyncio.sleep(0.5)
    replacement.send_signal(signal.SIGTERM)
    await asyncio.to_thread(replacement.wait, STOP_TIMEOUT)

    received = world.server.counts()
    expected = {message: 2 if message in window else 1 for message in done}
    with capsys.disabled():
        print(
            f"\nmessaging worker killed mid-send: {len(done)} messages, "
            f"{len(sent_at_kill)} recorded sent before the kill, {len(sending_at_kill)} in "
            f"flight, {len(window)} kept by the server but not recorded (sent twice), "
            f"{received.total()} received in all"
        )
    assert dict(received) == expected
    async with world.services.database.reading() as session:
        rows = list(
            await session.scalars(select(Message).where(Message.partner_id == world.partner.id))
        )
    for row in rows:
        assert row.status == "sent" and row.sent_at is not None and row.leased_by is None
        assert row.attempts == (2 if row.public_id in sending_at_kill else 1)
