"""The deployment for scale, with real processes: PostgreSQL, two `coverline serve
--no-worker` API processes (the first with two uvicorn workers; the second reaches the
database through a TCP proxy that a test can cut), two `coverline worker` processes, Redis for
the rate limits, webhook receivers in processes of their own.

One deployment serves the whole module (starting it is most of the time); every test has a
partner of its own, so that what one test counts is never another's. The tests that stop a
process come last, in the order of the file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.fixtures.database import POSTGRES_ADMIN_URL
from tests.fixtures.deployment import (
    ApiProcess,
    Deployment,
    ReceiverProcess,
    TcpProxy,
    WorkerProcess,
    book_many,
    deployment,
    worker_pid,
)
from tests.fixtures.payloads import instant_booking_request

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

REDIS_URL = os.environ.get("COVERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Short, so that nothing a test leaves behind holds deliveries for long.
LEASE_SECONDS = "10"
SLOW_RECEIVER_DELAY = 1.5


@dataclass
class Deployed:
    deployment: Deployment
    apis: list[ApiProcess]
    proxy: TcpProxy
    workers: list[WorkerProcess]
    receiver: ReceiverProcess
    slow_receiver: ReceiverProcess


@pytest.fixture(scope="module")
async def deployed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployed]:
    async with deployment(
        tmp_path_factory.mktemp("deployment"),
        admin_url=POSTGRES_ADMIN_URL,
        redis_url=REDIS_URL,
        env={"COVERLINE_WEBHOOK_LEASE_SECONDS": LEASE_SECONDS},
    ) as running:
        target = urlsplit(running.database_url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        await proxy.start()
        proxied_url = running.database_url.replace(
            f"@{target.hostname}:{target.port}/", f"@127.0.0.1:{proxy.port}/"
        )
        apis = [running.api(workers=2), running.api(env={"COVERLINE_DATABASE_URL": proxied_url})]
        workers = [running.worker(), running.worker()]
        receiver = running.receiver(delay=0.05)
        slow_receiver = running.receiver(delay=SLOW_RECEIVER_DELAY)
        await running.ready(*apis, *workers, receiver, slow_receiver)
        try:
            yield Deployed(running, apis, proxy, workers, receiver, slow_receiver)
        finally:
            await proxy.cut()


def _error_body(body: dict[str, object], kind: str) -> None:
    assert set(body) == {"type", "message", "errors"}, body
    assert body["type"] == kind
    assert isinstance(body["message"], str) and body["message"]


async def test_bookings_over_two_api_processes_are_delivered_once_by_two_workers(
    deployed: Deployed,
) -> None:
    running = deployed.deployment
    partner = await running.partner()
    await partner.endpoint(deployed.apis[0], deployed.receiver.url, retry_schedule=[0.5, 1])

    booked = await book_many(partner, deployed.apis, 160, concurrency=8)

    assert booked.statuses == Counter({200: 160}), (booked.bodies, booked.errors)
    assert await running.bookings(partner) == set(booked.ok)
    await running.wait_delivered(partner, [deployed.receiver], expected=160)
    rows = await running.deliveries(partner)
    assert {row.booking for row in rows} == set(booked.ok)
    received = Counter(
        entry["id"] for entry in deployed.receiver.records() if entry["booking"] in booked.ok
    )
    assert set(received) == {row.public_id for row in rows}
    assert set(received.values()) == {1}
    # One attempt per delivery, by the one worker that claimed it; both workers took part.
    attempts = await running.attempts(partner)
    assert {public_id: counts.total() for public_id, counts in attempts.items()} == {
        row.public_id: 1 for row in rows
    }
    pids = {worker_pid(worker) for counts in attempts.values() for worker in counts}
    assert pids == {worker.pid for worker in deployed.workers}


async def test_the_rate_limit_budget_is_shared_by_every_api_process(deployed: Deployed) -> None:
    running = deployed.deployment
    # An hour-long window: the whole test falls in it, so exactly 10 requests pass.
    partner = await running.partner(rate_limit="10/hour")

    booked = await book_many(partner, deployed.apis, 30, concurrency=3)

    assert booked.statuses == Counter({200: 10, 429: 20}), booked.bodies
    assert not booked.errors
    _error_body(booked.bodies[429], "rate_limit_error")
    refused = await partner.book(deployed.apis[1])
    assert refused.status_code == 429
    assert refused.headers["X-Ratelimit-Limit"] == "10"
    assert refused.headers["X-Ratelimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1
    # The refused requests wrote nothing: only the ten answered bookings exist.
    assert await running.bookings(partner) == set(booked.ok)
    assert await running.statuses(partner) == Counter()


async def test_readyz_answers_503_while_the_database_is_unreachable(deployed: Deployed) -> None:
    running = deployed.deployment
    api = deployed.apis[1]
    partner = await running.partner()
    for each in deployed.apis:
        ready = await running.http.get(each.url("/readyz"))
        # The deployment shares its rate limits through Redis: readiness reports it too.
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ok", "database": "ok", "redis": "ok"},
        )

    await deployed.proxy.cut()
    try:
        unready = await running.http.get(api.url("/readyz"))
        assert unready.status_code == 503
        assert unready.json()["status"] == "unavailable"
        # The process itself is alive: a load balancer takes it out, a supervisor leaves it.
        assert (await running.http.get(api.url("/healthz"))).status_code == 200
        # The other process has its own way to the database.
        assert (await running.http.get(deployed.apis[0].url("/readyz"))).status_code == 200
        refused = await partner.book(api)
        assert refused.status_code == 503, refused.text
        _error_body(refused.json(), "service_unavailable")
        assert refused.headers["Retry-After"] == "1"
    finally:
        await deployed.proxy.restore()

    recovered = await running.http.get(api.url("/readyz"))
    assert recovered.status_code == 200
    booking = await partner.book(api)
    assert booking.status_code == 200, booking.text
    # Only the booking made after the database came back exists.
    assert await running.bookings(partner) == {booking.json()["id"]}


async def test_sigterm_to_a_worker_finishes_or_releases_every_delivery_it_holds(
    deployed: Deployed,
) -> None:
    running = deployed.deployment
    partner = await running.partner()
    await partner.endpoint(deployed.apis[1], deployed.slow_receiver.url, retry_schedule=[0.5])
    victim, other = deployed.workers

    booked = await book_many(partner, deployed.apis, 48, concurrency=8)
    assert booked.statuses == Counter({200: 48}), booked.bodies

    # Once the victim has requests at the receiver that it has not answered yet.
    held: set[str] = set()
    leased_by: set[str] = set()
    for _ in range(200):
        mine = [
            row
            for row in await running.deliveries(partner)
            if row.status == "delivering"
            and row.leased_by
            and worker_pid(row.leased_by) == victim.pid
        ]
        held = {row.public_id for row in mine}
        leased_by = {str(row.leased_by) for row in mine}
        if held & set(deployed.slow_receiver.ids()):
            break
        await asyncio.sleep(0.05)
    assert held & set(deployed.slow_receiver.ids()), running.describe()

    assert await victim.terminate() == 0, victim.describe()

    rows = {row.public_id: row for row in await running.deliveries(partner)}
    assert not [row for row in rows.values() if row.leased_by in leased_by]
    attempts = await running.attempts(partner)
    reached = set(deployed.slow_receiver.ids())
    for public_id in held:
        by_victim = sum(attempts.get(public_id, Counter())[worker] for worker in leased_by)
        if public_id in reached:
            # What it sent, it recorded before it exited.
            assert by_victim >= 1, (public_id, rows[public_id])
            assert rows[public_id].status in {"succeeded", "pending"}, rows[public_id]
        else:
            assert rows[public_id].status == "pending", rows[public_id]

    victim.spawn()
    await victim.ready()
    await running.wait_delivered(partner, [deployed.slow_receiver], expected=48)
    received = Counter(
        entry["id"]
        for entry in deployed.slow_receiver.records()
        if entry["booking"] in set(booked.ok)
    )
    assert len(received) == 48
    assert set(received.values()) == {1}
    assert other.running


async def test_sigterm_to_an_api_process_finishes_the_requests_under_way(
    deployed: Deployed,
) -> None:
    running = deployed.deployment
    api = deployed.apis[0]  # two uvicorn worker processes under one supervisor
    partner = await running.partner()
    sending = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        body = json.dumps(instant_booking_request()).encode()
        yield body[:100]
        sending.set()
        await asyncio.sleep(2.0)
        yield body[100:]

    async def book_slowly() -> int:
        response = await partner.call(api, "POST", "instant_booking/", content=slow_body())
        assert response.status_code == 200, response.text
        return 1

    under_way = [asyncio.create_task(book_slowly()) for _ in range(6)]
    await sending.wait()
    await asyncio.sleep(0.5)  # the servers have read the headers of every request

    stopping = asyncio.create_task(api.terminate())
    assert sum(await asyncio.gather(*under_way)) == 6
    assert await stopping == 0, api.describe()
    assert len(await running.bookings(partner)) == 6
