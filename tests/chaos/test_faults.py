"""The fault suite: faults injected into a running deployment, every event counted.

Run alone, on PostgreSQL (a private cluster of the suite's own; see conftest.py):

    uv run pytest -m chaos tests/chaos

Each scenario books through the two API processes, lets the two workers deliver to
receivers in processes of their own, injects its fault, and counts the events produced
(deliveries in the database), delivered (received at least once), duplicated (received
again) and lost (never received). Lost must be 0; each duplicate must have a cause that the
scenario names. The scenarios run in the order of this file and share the deployment.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from tests.chaos.conftest import LEASE_SECONDS, RESULTS, Chaos
from tests.fixtures.deployment import (
    ApiProcess,
    DeployedPartner,
    Tally,
    book_many,
    kill_mid_batch,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

HANG_TIMEOUT = 4.0  # the hanging endpoint's timeout; below LEASE_SECONDS
assert HANG_TIMEOUT < LEASE_SECONDS
OUTAGE_SECONDS = 5.0  # how long the receiver stays down
DATABASE_DOWN_SECONDS = 1.0
# A send that ended this long before the database went away may not have been recorded yet.
RECORDING_MARGIN = 2.0


@dataclass
class Paced:
    """Bookings sent at a steady rate: what each got, and when each 200 came back."""

    answered: dict[str, float] = field(default_factory=dict)  # booking id → its 200 at
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, object]] = field(default_factory=list)  # every non-200 body


async def paced_bookings(
    partner: DeployedPartner,
    apis: list[ApiProcess],
    *,
    rate: float,
    count: int | None = None,
    until: asyncio.Event | None = None,
) -> Paced:
    """Bookings at `rate` per second, round-robin over `apis`, each sent at its time
    whatever the earlier ones are doing: `count` of them, or until `until` is set."""
    paced = Paced()
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int) -> None:
        try:
            response = await partner.book(apis[index % len(apis)])
        except httpx.TransportError as exc:
            paced.errors[type(exc).__name__] += 1
            return
        paced.statuses[response.status_code] += 1
        if response.status_code == 200:
            paced.answered[str(response.json()["id"])] = time.time()
        else:
            paced.bodies.append(response.json())

    begin = time.monotonic()
    index = 0
    while (count is None or index < count) and not (until is not None and until.is_set()):
        tasks.append(asyncio.create_task(one(index)))
        index += 1
        await asyncio.sleep(max(0.0, begin + index / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return paced


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def record(tally: Tally) -> Tally:
    RESULTS.append(tally)
    return tally


async def test_kill_9_of_a_worker_mid_batch(chaos: Chaos) -> None:
    running = chaos.deployment
    partner = await running.partner()
    # Each request waits a quarter of a second at the receiver: every worker always has
    # requests in flight, for longer than it takes to look at the leases and kill one.
    receiver = running.receiver(delay=0.25)
    await receiver.ready()
    await partner.endpoint(chaos.apis[0], receiver.url, retry_schedule=[0.5, 0.5, 0.5])

    booking = asyncio.create_task(book_many(partner, chaos.apis, 300, concurrency=8))
    victim, arrived_at_kill = await kill_mid_batch(
        chaos.workers, lambda: running.held_by(partner), receiver.ids, after=40
    )
    # Dead, the victim holds what it held until its lease runs out.
    orphaned = (await running.held_by(partner)).get(victim.pid, set())
    in_flight = orphaned & set(receiver.ids()[:arrived_at_kill])
    replacement = running.worker()
    booked = await booking
    await replacement.ready()
    chaos.workers[:] = [worker for worker in chaos.workers if worker is not victim]
    chaos.workers.append(replacement)
    await running.wait_delivered(partner, [receiver], expected=len(booked.ok))

    tally = record(
        Tally.count(
            "kill -9 of a worker mid-batch (two workers)",
            await running.deliveries(partner),
            [receiver],
            note=(
                f"deliveries held by the killed worker: {len(orphaned)}, of which "
                f"{len(in_flight)} had reached the receiver; sent again once its lease ran out"
            ),
            detail={"held_by_killed_worker": len(orphaned), "in_flight_at_kill": len(in_flight)},
        )
    )
    assert booked.statuses == Counter({200: 300}), booked.bodies
    assert in_flight, "the worker was not killed with requests in flight"
    assert tally.lost == 0
    assert tally.produced == tally.delivered == 300
    # Sent twice are exactly the deliveries the victim held unrecorded: at least those that
    # had reached the receiver, at most all it held, and each at most twice.
    received = Counter(receiver.ids())
    duplicated = {webhook_id for webhook_id, times in received.items() if times > 1}
    assert in_flight <= duplicated <= orphaned
    assert max(received.values()) <= 2
    assert all(worker.running for worker in chaos.workers)


async def test_receiver_down_for_a_while_then_back(chaos: Chaos) -> None:
    running = chaos.deployment
    partner = await running.partner()
    receiver = running.receiver()
    await receiver.ready()
    # Retries for about 18 s in all: far longer than the outage.
    schedule = [0.5, 1, 2, 3, 3, 3, 3, 3]
    await partner.endpoint(chaos.apis[0], receiver.url, retry_schedule=schedule)

    before = await book_many(partner, chaos.apis, 40, concurrency=8)
    await running.wait_delivered(partner, [receiver], expected=40)
    assert await receiver.terminate() == 0
    down_at = time.monotonic()
    # Bookings go on while it is down and after it is back; the outage lasts a fixed time,
    # well within the retry schedule, however fast the bookings go.
    booking = asyncio.create_task(book_many(partner, chaos.apis, 80, concurrency=4))
    await asyncio.sleep(OUTAGE_SECONDS)
    failed_meanwhile = [
        row for row in await running.deliveries(partner) if row.status == "pending" and row.attempts
    ]
    receiver.spawn()
    await receiver.ready()
    outage = time.monotonic() - down_at
    during = await booking
    await running.wait_delivered(partner, [receiver], expected=120)

    tally = record(
        Tally.count(
            "webhook receiver down, then back",
            await running.deliveries(partner),
            [receiver],
            note=(
                f"down {outage:.0f} s; {len(failed_meanwhile)} deliveries had failed and were "
                "waiting to be retried when it came back"
            ),
            detail={
                "outage_seconds": round(outage, 1),
                "retrying_at_restart": len(failed_meanwhile),
            },
        )
    )
    assert before.statuses == Counter({200: 40}), before.bodies
    assert during.statuses == Counter({200: 80}), during.bodies
    assert failed_meanwhile, "no delivery was attempted while the receiver was down"
    assert tally.lost == 0
    assert tally.produced == tally.delivered == 120
    # A refused connection never reached the receiver: nothing arrives twice.
    assert tally.duplicated == 0


async def test_postgresql_restarted_while_api_and_workers_run(chaos: Chaos) -> None:
    running = chaos.deployment
    partner = await running.partner()
    receiver = running.receiver(delay=0.02)
    await receiver.ready()
    await partner.endpoint(chaos.apis[0], receiver.url, retry_schedule=[0.5, 1, 2, 3, 3])

    stop = asyncio.Event()
    load = asyncio.create_task(paced_bookings(partner, chaos.apis, rate=20, until=stop))
    await asyncio.sleep(2.0)
    outage_began = time.time()
    # Stopped for a fixed time rather than restarted at once, so that the outage is always
    # long enough for requests to meet it.
    await asyncio.to_thread(chaos.cluster.stop)
    await asyncio.sleep(DATABASE_DOWN_SECONDS)
    await asyncio.to_thread(chaos.cluster.start)
    outage_ended = time.time()
    await asyncio.sleep(3.0)
    stop.set()
    paced = await load
    # It recovered by itself: every process answers again, nothing was restarted but the
    # database.
    after = await book_many(partner, chaos.apis, 10, concurrency=2)
    ready = [(await running.http.get(api.url("/readyz"))).status_code for api in chaos.apis]
    await running.wait_delivered(partner, [receiver])

    rows = await running.deliveries(partner)
    answered = set(paced.answered) | set(after.ok)
    received_at: dict[str, float] = {}
    for entry in receiver.records():
        received_at.setdefault(entry["id"], entry["at"])
    tally = Tally.count(
        "PostgreSQL restarted under load (fast shutdown, 1 s down)",
        rows,
        [receiver],
        note=(
            f"{paced.statuses[200]} bookings answered 200 and {paced.statuses[503]} answered "
            f"503 during the {outage_ended - outage_began:.1f} s from stop to started; "
            f"{len({row.booking for row in rows}) - len(answered)} written but not answered 200"
        ),
        detail={
            "answers": {str(code): count for code, count in sorted(paced.statuses.items())},
            "restart_seconds": round(outage_ended - outage_began, 1),
        },
    )
    record(tally)
    assert set(paced.statuses) <= {200, 503}, paced.bodies
    assert not paced.errors
    assert paced.statuses[503] >= 1, "no request met the outage"
    assert all(set(body) == {"type", "message", "errors"} for body in paced.bodies)
    assert {body["type"] for body in paced.bodies} == {"service_unavailable"}
    assert after.statuses == Counter({200: 10}), after.bodies
    assert ready == [200, 200]
    assert all(api.running for api in chaos.apis)
    assert all(worker.running for worker in chaos.workers)
    # Every booking answered 200 was written, with its event, and delivered.
    assert answered <= {row.booking for row in rows}
    assert answered <= await running.bookings(partner)
    assert tally.lost == 0
    # A duplicate is a send whose result could not be recorded while the database was down.
    duplicated = tally.duplicates([receiver])
    assert all(
        outage_began - RECORDING_MARGIN <= received_at[webhook_id] <= outage_ended
        for webhook_id in duplicated
    ), (duplicated, outage_began, outage_ended)


async def test_a_hanging_receiver_beside_a_healthy_one(chaos: Chaos) -> None:
    running = chaos.deployment
    partner = await running.partner()
    healthy = running.receiver()
    hanging = running.receiver(hang=True)
    await running.ready(healthy, hanging)
    endpoint = await partner.endpoint(chaos.apis[0], healthy.url, retry_schedule=[0.5, 1])

    def latencies(paced: Paced) -> list[float]:
        arrived: dict[str, float] = {}
        for entry in healthy.records():
            arrived.setdefault(entry["booking"], entry["at"])
        # From the 200 (the booking and its event are committed by then) to the webhook.
        return [arrived[booking] - at for booking, at in paced.answered.items()]

    def workers_cpu() -> tuple[float, float]:
        return sum(worker.cpu_seconds() for worker in chaos.workers), time.monotonic()

    def cores(since: tuple[float, float]) -> float:
        now = workers_cpu()
        return (now[0] - since[0]) / (now[1] - since[1])

    started = workers_cpu()
    alone = await paced_bookings(partner, chaos.apis, rate=15, count=60)
    assert alone.statuses == Counter({200: 60}), (alone.bodies, alone.errors)
    await running.wait_delivered(partner, [healthy], expected=60, endpoint=endpoint["id"])
    cores_alone = cores(started)
    stuck = await partner.endpoint(
        chaos.apis[0], hanging.url, timeout_seconds=HANG_TIMEOUT, retry_schedule=[1, 1]
    )
    started = workers_cpu()
    beside = await paced_bookings(partner, chaos.apis, rate=15, count=60)
    assert beside.statuses == Counter({200: 60}), (beside.bodies, beside.errors)
    await running.wait_delivered(partner, [healthy], expected=120, endpoint=endpoint["id"])
    cores_beside = cores(started)
    hung_requests = len(hanging.ids())
    removed = await partner.call(chaos.apis[0], "DELETE", f"webhooks/{stuck['id']}")
    assert removed.status_code == 204, removed.text
    await hanging.terminate()

    without, with_hanging = latencies(alone), latencies(beside)
    p50, p99 = percentile(without, 0.5), percentile(without, 0.99)
    hung_p50, hung_p99 = percentile(with_hanging, 0.5), percentile(with_hanging, 0.99)
    tally = record(
        Tally.count(
            f"a receiver that never answers (timeout {HANG_TIMEOUT:g} s) beside a healthy one",
            await running.deliveries(partner, endpoint["id"]),
            [healthy],
            note=(
                f"healthy endpoint, booking's 200 to webhook received: p50 "
                f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms alone; "
                f"p50 {hung_p50 * 1000:.0f} ms, p99 "
                f"{hung_p99 * 1000:.0f} ms beside the hanging one ({hung_requests} requests "
                f"held there); both workers busy {cores_alone:.2f} then {cores_beside:.2f} "
                "CPU cores"
            ),
            detail={
                "healthy_alone_ms": {"p50": round(p50 * 1000), "p99": round(p99 * 1000)},
                "healthy_beside_hanging_ms": {
                    "p50": round(hung_p50 * 1000),
                    "p99": round(hung_p99 * 1000),
                },
                "requests_held_by_hanging_receiver": hung_requests,
                "worker_cpu_cores_alone": round(cores_alone, 2),
                "worker_cpu_cores_beside_hanging": round(cores_beside, 2),
            },
        )
    )
    assert hung_requests >= 1
    assert tally.lost == 0 and tally.duplicated == 0
    assert tally.produced == tally.delivered == 120
    # Not queued behind the hanging endpoint's timeouts: those take HANG_TIMEOUT each.
    assert hung_p99 < HANG_TIMEOUT


async def test_api_overload_answers_429_and_loses_no_write(chaos: Chaos) -> None:
    running = chaos.deployment
    partner = await running.partner(rate_limit="5/second")
    receiver = running.receiver()
    await receiver.ready()
    await partner.endpoint(chaos.apis[0], receiver.url, retry_schedule=[0.5, 1])

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(4.0, stop.set)

    async def client() -> list[httpx.Response]:
        answers = []
        index = 0
        while not stop.is_set():
            answers.append(await partner.book(chaos.apis[index % 2]))
            index += 1
        return answers

    answers = [
        answer for batch in await asyncio.gather(*(client() for _ in range(32))) for answer in batch
    ]
    statuses = Counter(answer.status_code for answer in answers)
    ok = {str(answer.json()["id"]) for answer in answers if answer.status_code == 200}
    await running.wait_delivered(partner, [receiver], expected=len(ok))

    tally = record(
        Tally.count(
            "API overload: 32 clients without pause against a limit of 5/s",
            await running.deliveries(partner),
            [receiver],
            note=f"{statuses[200]} answered 200, {statuses[429]} answered 429, nothing else",
            detail={"answers": {str(code): count for code, count in sorted(statuses.items())}},
        )
    )
    assert set(statuses) == {200, 429}, statuses
    refused = [answer for answer in answers if answer.status_code == 429]
    assert {answer.json()["type"] for answer in refused} == {"rate_limit_error"}
    assert all("Retry-After" in answer.headers for answer in refused)
    # Every 200 is a booking with its event delivered; no 429 wrote anything.
    assert await running.bookings(partner) == ok
    assert tally.lost == 0 and tally.duplicated == 0
    assert tally.produced == tally.delivered == len(ok)
