"""Webhook deliveries per second and commit-to-receipt latency, against a bare aiohttp floor.

    uv run python bench/webhooks.py [--events 50000] [--backend sqlite|postgresql|both]
        [--latency 500x1,500x10] [--latency-seconds 20] [--pg-events 10000] [--rounds 1]
        [--profile DIR]

In one run, on this machine, against one receiver process (aiohttp on uvloop, answering 200 at
once and noting the arrival time of every `webhook-id`):

1. the outbox is filled through the real code path: `events.service.record` of
   BOOKING_CREATED events (the rendering of a real instant booking, with fresh ids), 500 to a
   transaction, each fanned out to one XCover-format endpoint (XCover signatures, default
   concurrency: 16 per endpoint). The partner's customer messages are switched off: only
   webhooks are measured;
2. floor: a bare aiohttp loop in its own process posts the same bodies with the same headers,
   rendered and signed beforehand, 16 at a time (the dispatcher's per-endpoint limit), on one
   keep-alive connector;
3. throughput: one `python -m coverline worker` process delivers them all; deliveries per second
   from the first arrival to the last, as for the floor, and the ratio to the floor (how long
   the worker took to find the deliveries once due, its poll, is printed apart);
   with `--rounds N`, steps 2 and 3 alternate N times on the same deliveries (reset between
   rounds), and the median ratio of the rounds is the result;
4. latency: a producer commits events at each load of `--latency` for `--latency-seconds`:
   500 events/s one per transaction (the aim's load as specified; one producer process
   cannot commit that many transactions here, so the run also reports what it reached), and
   500 events/s ten to a transaction (the same event rate, which it does reach). An open loop,
   up to 16 transactions at once; the worker runs in the producer's process as
   `coverline serve` runs it (SQLite has one writing process). Commit-to-receipt latency
   p50/p99 (one clock: `time.time()` of the same machine), the first second left out;
5. on PostgreSQL (`--pg-events` events): throughput of one worker process, then of two, on the
   same deliveries (reset between the runs): the scale-out ratio; then the latency of step 4
   with one worker process beside the producer.

Before each throughput run the deliveries are held (due in a day) while the workers start, then
made due at once. Every run checks that each delivery arrived, and how many arrived twice.
`--profile DIR` samples the worker processes with py-spy (`uv run --with py-spy ...` puts it
on the PATH) during the throughput runs and prints the functions where they spent their time.
The script reports; it exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    percentile,
    wait_for_quiet,
)

PARTNER_CODE = "BENCH"
INSERT_BATCH = 500
FLOOR_CONCURRENCY = 16  # DispatchSettings.per_endpoint, the limit for one endpoint
PRODUCERS = 16  # transactions of the latency phase's producer under way at once
HOLD = timedelta(days=1)
AIM_FLOOR_RATIO = 0.6
AIM_P99_MS = 50.0
AIM_SCALE_OUT = 1.6
POSTGRES_ADMIN_URL = os.environ.get(
    "COVERLINE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# ---------------------------------------------------------------------- the receiver process
def receiver_main(port: int) -> None:
    import uvloop
    from aiohttp import web

    ids: list[str] = []
    arrived: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrived.append(time.time())
        ids.append(request.headers.get("webhook-id", ""))
        return web.Response(text="ok")

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"count": len(ids)})

    async def dump(_request: web.Request) -> web.Response:
        return web.json_response({"ids": ids, "at": arrived})

    async def reset(_request: web.Request) -> web.Response:
        ids.clear()
        arrived.clear()
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hooks", hook)
        app.router.add_get("/stats", stats)
        app.router.add_get("/dump", dump)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()

    uvloop.run(serve())


class ReceiverClient:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hooks"

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if path != "/reset" else None

    def count(self) -> int:
        return int(self._call("GET", "/stats")["count"])

    def dump(self) -> tuple[list[str], list[float]]:
        document = self._call("GET", "/dump")
        return document["ids"], document["at"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (seen := self.count()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


# ---------------------------------------------------------------------- the floor process
def floor_main(url: str, bodies: Path, concurrency: int, result: Path) -> None:
    import aiohttp
    import uvloop

    with bodies.open("rb") as handle:
        requests: list[tuple[bytes, dict[str, str]]] = pickle.load(handle)

    async def run() -> dict[str, Any]:
        errors: Counter[str] = Counter()
        queue = iter(requests)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        ) as session:

            async def sender() -> None:
                for body, headers in queue:
                    try:
                        async with session.post(
                            url, data=body, headers=headers, allow_redirects=False
                        ) as response:
                            await response.read()
                            if response.status != 200:
                                errors[str(response.status)] += 1
                    except aiohttp.ClientError as exc:
                        errors[type(exc).__name__] += 1

            cpu = time.process_time()
            started = time.time()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            finished = time.time()
        return {
            "started": started,
            "finished": finished,
            "sent": len(requests),
            "errors": dict(errors),
            "cpu": time.process_time() - cpu,
        }

    result.write_text(json.dumps(uvloop.run(run())))


# ---------------------------------------------------------------------- Coverline, in process
def booking_request() -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=2)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "request": [
            {
                "policy_type": "event_ticket_protection",
                "policy_type_version": 1,
                "policy_start_date": start.strftime(stamp),
                "event_datetime": (start + timedelta(days=10)).strftime(stamp),
                "event_name": "Ariana Grande",
                "event_location": "The O2",
                "number_of_tickets": 2,
                "tickets": [{"price": 100}],
                "resale_ticket": False,
                "event_country": "GB",
            }
        ],
        "currency": "GBP",
        "policyholder": {
            "first_name": "Mark",
            "last_name": "Mcintosh",
            "age": 30,
            "email": "mark.mcintosh@example.com",
            "country": "GB",
            "region": None,
            "company": "Barrera Ltd",
        },
    }


@dataclass
class Outbox:
    """A database with the demo catalogue, one partner, one endpoint at the receiver, and the
    rendering of one real booking to copy."""

    database_url: str
    data_dir: Path
    master_key: str
    services: Any
    partner_id: int
    endpoint_id: int
    template: dict[str, Any]

    @classmethod
    async def create(cls, database_url: str, data_dir: Path, receiver_url: str) -> Outbox:
        import httpx
        from cryptography.fernet import Fernet
        from sqlalchemy import select

        from coverline.app import create_app
        from coverline.catalog.definition import load_catalog_file
        from coverline.catalog.service import load_catalog
        from coverline.cli import DEMO_CATALOG
        from coverline.config import Settings
        from coverline.db.migrate import upgrade
        from coverline.events.models import Event
        from coverline.messaging.schemas import SettingsPatch
        from coverline.messaging.service import patch_settings
        from coverline.partners.service import create_partner
        from coverline.runtime import Services
        from coverline.webhooks.schemas import EndpointIn
        from coverline.webhooks.service import EndpointScope, create_endpoint

        await upgrade(database_url)
        master_key = Fernet.generate_key().decode()
        settings = Settings(
            database_url=database_url,
            data_dir=data_dir,
            master_key=master_key,
            rate_limit="100000/second",
            webhooks_allow_private_networks=True,
            run_worker=False,
        )
        services = Services.build(settings)
        now = services.clock.now()
        async with services.database.transaction() as session:
            await load_catalog(session, load_catalog_file(DEMO_CATALOG), now)
            partner, issued = await create_partner(
                session, services.box, name="Bench partner", code=PARTNER_CODE, now=now
            )
            # Customer messages are not what is measured here: each event becomes webhooks only.
            await patch_settings(session, partner.id, "sandbox", SettingsPatch(enabled=False), now)
        # One real instant booking, made before the endpoint exists: its event is the template.
        transport = httpx.ASGITransport(app=create_app(settings, services))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            response = await http.post(
                f"/api/partners/{PARTNER_CODE}/instant_booking/",
                json=booking_request(),
                headers={"Authorization": f"Bearer {issued['sandbox'].api_secret}"},
            )
        if response.status_code != 200:
            raise RuntimeError(f"instant booking failed: {response.status_code} {response.text}")
        async with services.database.transaction() as session:
            template = await session.scalar(
                select(Event.payload).where(Event.resource_id == response.json()["id"])
            )
            endpoint = await create_endpoint(
                session,
                services.box,
                EndpointScope(partner.id, "sandbox", now),
                EndpointIn.model_validate({"url": receiver_url, "format": "xcover"}),
                allow_private=True,
            )
        assert template is not None
        return cls(database_url, data_dir, master_key, services, partner.id, endpoint.id, template)

    def worker_env(self) -> dict[str, str]:
        env = {
            name: value for name, value in os.environ.items() if not name.startswith("COVERLINE_")
        }
        env.update(
            COVERLINE_DATABASE_URL=self.database_url,
            COVERLINE_DATA_DIR=str(self.data_dir),
            COVERLINE_MASTER_KEY=self.master_key,
            COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
            COVERLINE_LOG_LEVEL="warning",
            PYTHONUNBUFFERED="1",
        )
        return env

    def _payload(self) -> dict[str, Any]:
        from coverline.kit import ids

        payload = json.loads(json.dumps(self.template))
        payload["id"] = ids.package_id()
        for quote in payload["quotes"]:
            quote["id"] = str(uuid.uuid4())
        return payload

    async def commit(self, count: int) -> tuple[list[Any], float]:
        """`count` events through the outbox in one transaction: the events, and the moment
        the commit returned."""
        from sqlalchemy import event as orm_event

        from coverline.events.service import EventType, record

        committed: list[float] = []
        async with self.services.database.transaction() as session:
            orm_event.listen(
                session.sync_session, "after_commit", lambda _: committed.append(time.time())
            )
            # Rows are flushed once, at commit, as a request would write them.
            events = []
            with session.no_autoflush:
                for _ in range(count):
                    payload = self._payload()
                    events.append(
                        await record(
                            session,
                            partner_id=self.partner_id,
                            mode="sandbox",
                            type=EventType.BOOKING_CREATED,
                            resource_type="booking",
                            resource_id=payload["id"],
                            payload=payload,
                            at=self.services.clock.now(),
                        )
                    )
        return events, committed[0]

    async def fill(self, count: int) -> float:
        """`count` events through the outbox, `INSERT_BATCH` to a transaction; events/s."""
        started = time.perf_counter()
        done = 0
        while done < count:
            events, _ = await self.commit(min(INSERT_BATCH, count - done))
            done += len(events)
            if done % 10_000 == 0 or done == count:
                print(f"    {done} events recorded", flush=True)
        return count / (time.perf_counter() - started)

    async def _set_due(self, moment: datetime) -> None:
        from sqlalchemy import update

        from coverline.webhooks.models import WebhookDelivery as D

        async with self.services.database.transaction() as session:
            await session.execute(
                update(D).where(D.status == "pending").values(next_attempt_at=moment)
            )

    async def hold(self) -> None:
        await self._set_due(self.services.clock.now() + HOLD)

    async def release(self) -> float:
        await self._set_due(self.services.clock.now())
        return time.time()

    async def reset(self) -> None:
        """Every delivery back to pending with no attempts, held."""
        from sqlalchemy import delete, update

        from coverline.webhooks.models import WebhookAttempt
        from coverline.webhooks.models import WebhookDelivery as D

        async with self.services.database.transaction() as session:
            await session.execute(delete(WebhookAttempt))
            await session.execute(
                update(D).values(
                    status="pending",
                    attempts=0,
                    failures=0,
                    last_status_code=None,
                    last_error=None,
                    lease_expires_at=None,
                    leased_by=None,
                    completed_at=None,
                    next_attempt_at=self.services.clock.now() + HOLD,
                )
            )

    async def statuses(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from coverline.webhooks.models import WebhookDelivery as D

        async with self.services.database.reading() as session:
            rows = await session.execute(select(D.status, func.count()).group_by(D.status))
            return {status: count for status, count in rows.all()}

    async def wait_settled(self, timeout: float = 30.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            statuses = await self.statuses()
            if set(statuses) <= {"succeeded", "failed"} or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.1)

    async def signed_requests(self) -> list[tuple[bytes, dict[str, str]]]:
        """Every delivery's body and headers, rendered and signed as the dispatcher does."""
        from sqlalchemy import select

        from coverline.events.models import Event
        from coverline.webhooks import formats, signing
        from coverline.webhooks.dispatcher import USER_AGENT
        from coverline.webhooks.models import WebhookDelivery as D
        from coverline.webhooks.models import WebhookEndpoint

        async with self.services.database.reading() as session:
            endpoint = await session.get(WebhookEndpoint, self.endpoint_id)
            assert endpoint is not None
            secret = self.services.box.decrypt(endpoint.secret_ciphertext)
            rows = await session.execute(
                select(D.public_id, D.event_type, D.part, Event.type, Event.payload)
                .join(Event, Event.id == D.event_id)
                .order_by(D.id)
            )
            requests = []
            for public_id, name, part, event_type, payload in rows.all():
                body = formats.body_for(endpoint.format, name, part, event_type, payload)
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    **signing.sign_headers(
                        endpoint.signature,
                        body=body,
                        message_id=public_id,
                        timestamp=time.time(),
                        key=endpoint.key,
                        secrets_in_use=[secret],
                    ),
                }
                requests.append((body, headers))
            return requests

    async def delivery_events(self) -> dict[str, int]:
        """webhook-id → event id."""
        from sqlalchemy import select

        from coverline.webhooks.models import WebhookDelivery as D

        async with self.services.database.reading() as session:
            rows = await session.execute(select(D.public_id, D.event_id))
            return {public_id: event_id for public_id, event_id in rows.all()}

    async def vacuum(self) -> None:
        if self.services.database.is_sqlite:
            return
        import asyncpg

        plain = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(plain)
        try:
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()

    async def close(self) -> None:
        await self.services.close()


# ---------------------------------------------------------------------- worker processes
class Workers:
    """`python -m coverline worker` processes, optionally sampled by py-spy."""

    def __init__(self, outbox: Outbox, count: int, logs: Path, label: str) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = [logs / f"{label}-worker-{index}.log" for index in range(count)]
        self.label = label
        self.outbox = outbox
        self.spies: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self) -> None:
        for log in self.logs:
            with log.open("wb") as output:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "coverline", "worker"],
                        env=self.outbox.worker_env(),
                        cwd=REPO,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 60
        while not all("Worker started" in log.read_text() for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a worker did not start; see {self.logs}")
            time.sleep(0.05)
        time.sleep(1.5)  # the imports after the banner, and the first idle polls

    def cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def profile(self, directory: Path | None) -> None:
        spy = shutil.which("py-spy")
        if directory is None or spy is None:
            return
        for index, process in enumerate(self.processes):
            raw = directory / f"{self.label}-worker-{index}.txt"
            self.spies.append(
                (
                    subprocess.Popen(
                        [
                            spy,
                            "record",
                            *("--pid", str(process.pid), "--format", "raw", "--rate", "100"),
                            *("--output", str(raw)),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    ),
                    raw,
                )
            )

    def stop_profiles(self) -> list[Path]:
        done = []
        for spy, raw in self.spies:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(20)
            except subprocess.TimeoutExpired:
                spy.kill()
            done.append(raw)
        self.spies.clear()
        return done

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Profile:
    """What py-spy saw, in % of the samples. Threads are sampled only while they run, so
    waiting is left out."""

    samples: int
    own: list[tuple[str, float]]  # the function running, busiest first
    coverline: list[tuple[str, float]]  # Coverline functions on the stack, inclusive


ENTRY_POINTS = (
    "<module> (coverline/__main__.py)",
    "main (coverline/cli.py)",
    "worker (coverline/cli.py)",
)


def read_profile(raw_files: list[Path], count: int = 12) -> Profile | None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for raw in raw_files:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, weight = line.rpartition(" ")
            if not stack or not weight.isdigit():
                continue
            frames = [_frame_name(frame) for frame in stack.split(";")]
            hits = int(weight)
            samples += hits
            own[frames[-1]] += hits
            for name in set(frames):
                if "(coverline/" in name and name not in ENTRY_POINTS:
                    inclusive[name] += hits
    if not samples:
        return None
    return Profile(
        samples,
        [(name, 100 * hits / samples) for name, hits in own.most_common(count)],
        [(name, 100 * hits / samples) for name, hits in inclusive.most_common(count)],
    )


def _frame_name(frame: str) -> str:
    """`send (aiohttp/client.py:123)` → `send (aiohttp/client.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


# ---------------------------------------------------------------------- measurements
@dataclass
class Throughput:
    label: str
    deliveries: int
    received: int
    unique: int
    seconds: float
    worker_cpu: float = float("nan")
    receiver_cpu: float = float("nan")
    machine_cpu: float = float("nan")
    profile: Profile | None = None
    # CPU seconds of the sending process (or processes) per delivery.
    cpu_per_delivery: float = float("nan")
    # Seconds from the deliveries becoming due to the first arrival (workers only).
    found_after: float = float("nan")

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    def line(self) -> str:
        twice = self.received - self.unique
        return (
            f"  {self.label:<30} {self.rate:6.0f} deliveries/s ({self.deliveries} in "
            f"{self.seconds:.1f} s; {self.unique} arrived, {twice} twice)\n"
            + (
                f"    first arrival {self.found_after * 1000:.0f} ms after the deliveries became "
                "due (not counted above)\n"
                if not math.isnan(self.found_after)
                else ""
            )
            + f"    CPU cores busy: sender {self.worker_cpu:.2f}, receiver "
            f"{self.receiver_cpu:.2f}, whole machine {self.machine_cpu:.2f}; sender CPU per "
            f"delivery {self.cpu_per_delivery * 1e6:.0f} µs"
        )


def run_floor(
    receiver: ReceiverClient, receiver_pid: int, requests: list[tuple[bytes, dict[str, str]]]
) -> Throughput:
    receiver.reset()
    with tempfile.TemporaryDirectory() as scratch:
        bodies = Path(scratch) / "bodies.pickle"
        result = Path(scratch) / "floor.json"
        with bodies.open("wb") as handle:
            pickle.dump(requests, handle)
        receiver_cpu, machine = cpu_seconds(receiver_pid), machine_busy_seconds()
        wall = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, __file__, "_floor", receiver.url, str(bodies)),
                *(str(FLOOR_CONCURRENCY), str(result)),
            ],
            check=True,
        )
        wall = time.perf_counter() - wall
        receiver_cpu, machine = (
            cpu_seconds(receiver_pid) - receiver_cpu,
            machine_busy_seconds() - machine,
        )
        floor = json.loads(result.read_text())
    ids, arrived = receiver.dump()
    seconds = max(arrived) - min(arrived)
    if floor["errors"]:
        print(f"    floor errors: {floor['errors']}")
    return Throughput(
        "floor: bare aiohttp loop",
        len(requests),
        len(ids),
        len(set(ids)),
        seconds,
        worker_cpu=floor["cpu"] / (floor["finished"] - floor["started"]),
        receiver_cpu=receiver_cpu / wall,
        machine_cpu=machine / wall,
        cpu_per_delivery=floor["cpu"] / len(requests),
    )


async def run_dispatch(
    outbox: Outbox,
    receiver: ReceiverClient,
    receiver_pid: int,
    *,
    workers: int,
    label: str,
    logs: Path,
    profile: Path | None,
) -> Throughput:
    """Hold every delivery, start the workers, make the deliveries due, wait for them all."""
    deliveries = sum((await outbox.statuses()).values())
    await outbox.hold()
    await outbox.vacuum()
    receiver.reset()
    running = Workers(outbox, workers, logs, label.split(":")[0].replace(" ", "-"))
    running.start()
    running.profile(profile)
    worker_cpu, receiver_cpu, machine = (
        running.cpu(),
        cpu_seconds(receiver_pid),
        machine_busy_seconds(),
    )
    wall = time.perf_counter()
    released = await outbox.release()
    seen = await asyncio.to_thread(receiver.wait_for, deliveries, max(120.0, deliveries / 100))
    wall = time.perf_counter() - wall
    worker_cpu, receiver_cpu, machine = (
        running.cpu() - worker_cpu,
        cpu_seconds(receiver_pid) - receiver_cpu,
        machine_busy_seconds() - machine,
    )
    raw = running.stop_profiles()
    ids, arrived = receiver.dump()
    # From the first arrival to the last, as for the floor; how long the worker took to find
    # the deliveries due (its poll: SQLite has no wake-up across processes) is printed apart.
    seconds = max(arrived) - min(arrived) if arrived else float("nan")
    found_after = min(arrived) - released if arrived else float("nan")
    if seen < deliveries:
        print(f"    only {seen} of {deliveries} arrived in time; see {running.logs}")
    statuses = await outbox.wait_settled()
    if statuses != {"succeeded": deliveries}:
        print(f"    delivery states after the run: {statuses}")
    running.stop()
    return Throughput(
        label,
        deliveries,
        len(ids),
        len(set(ids)),
        seconds,
        worker_cpu=worker_cpu / wall,
        receiver_cpu=receiver_cpu / wall,
        machine_cpu=machine / wall,
        profile=read_profile(raw),
        cpu_per_delivery=worker_cpu / deliveries,
        found_after=found_after,
    )


@dataclass
class Latency:
    load: Load
    achieved: float
    commit_lag_p99_ms: float
    events: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cpu: float


@dataclass(frozen=True)
class Load:
    """`rate` events per second, `per_commit` of them to a transaction (`500x10`)."""

    rate: float
    per_commit: int

    @classmethod
    def parse(cls, text: str) -> Load:
        rate, _, per_commit = text.partition("x")
        return cls(float(rate), int(per_commit or 1))

    def __str__(self) -> str:
        unit = "event" if self.per_commit == 1 else "events"
        return f"{self.rate:g} events/s offered, {self.per_commit} {unit} per transaction"


async def run_latency(
    outbox: Outbox,
    receiver: ReceiverClient,
    dispatcher_cpu: Callable[[], float],
    *,
    load: Load,
    seconds: float,
    warmup: float = 1.0,
) -> Latency:
    """Events committed at `load`, commit time noted; receipt time at the receiver.

    An open loop: each transaction is started at its scheduled time whether or not the earlier
    ones have committed (up to `PRODUCERS` at once, as many API requests would be); what has
    not started by the end of the window is dropped."""
    receiver.reset()
    committed: dict[int, float] = {}
    lags: list[float] = []
    transactions = int(load.rate * seconds / load.per_commit)
    worker_cpu = dispatcher_cpu()
    gate = asyncio.Semaphore(PRODUCERS)
    begin = time.perf_counter() + 0.1
    wall_begin = time.time() + 0.1
    end = begin + seconds

    async def produce(scheduled: float) -> None:
        async with gate:
            if time.perf_counter() > end:
                return  # offered but not started within the window: dropped, as a timeout
            events, at = await outbox.commit(load.per_commit)
        committed.update((event.id, at) for event in events)
        lags.append(time.perf_counter() - scheduled)

    tasks = []
    for index in range(transactions):
        scheduled = begin + index * load.per_commit / load.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(produce(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - begin
    total = len(committed)
    seen = await asyncio.to_thread(receiver.wait_for, total, 60.0)
    worker_cpu = (dispatcher_cpu() - worker_cpu) / (time.perf_counter() - begin)
    ids, arrived = receiver.dump()
    events_of = await outbox.delivery_events()
    first: dict[int, float] = {}
    for webhook_id, at in zip(ids, arrived, strict=True):
        event_id = events_of.get(webhook_id)
        if event_id in committed and event_id not in first:
            first[event_id] = at
    latencies = sorted(
        (first[event_id] - at) * 1000
        for event_id, at in committed.items()
        if event_id in first and at >= wall_begin + warmup
    )
    lags.sort()
    return Latency(
        load=load,
        achieved=total / elapsed,
        commit_lag_p99_ms=percentile(lags, 0.99) * 1000,
        events=total,
        received=seen,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else float("nan"),
        worker_cpu=worker_cpu,
    )


# ---------------------------------------------------------------------- the phases
def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_profile(measured: Throughput) -> None:
    profile = measured.profile
    if profile is None:
        return
    print(f"    py-spy, {measured.label}: {profile.samples} samples; running, % of samples:")
    for name, share in profile.own:
        print(f"      {share:5.1f}  {name}")
    print("    Coverline functions on the stack (inclusive), % of samples:")
    for name, share in profile.coverline:
        print(f"      {share:5.1f}  {name}")


def print_latency(label: str, latency: Latency) -> None:
    received = "all" if latency.received >= latency.events else str(latency.received)
    aim = "n/a"
    if latency.load.rate >= 500:
        aim = verdict(latency.p99_ms <= AIM_P99_MS and latency.achieved >= 0.95 * 500)
    print(
        f"  latency, {label}, {latency.load}: {latency.events} events committed "
        f"({latency.achieved:.0f}/s; schedule to commit p99 {latency.commit_lag_p99_ms:.0f} ms), "
        f"{received} received; dispatching process CPU {latency.worker_cpu:.2f} cores\n"
        f"    commit-to-receipt p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, "
        f"max {latency.max_ms:.1f} ms (aim p99 <= {AIM_P99_MS:g} ms at 500 events/s: {aim})"
    )


def print_quiet() -> None:
    busy = wait_for_quiet(20)
    print(f"  other work on the machine before the phase: {busy:.2f} cores busy")


async def sqlite_phases(args: argparse.Namespace, receiver: ReceiverClient, pid: int) -> None:
    print(f"\n== SQLite: {args.events} events")
    print_quiet()
    with tempfile.TemporaryDirectory(prefix="coverline-bench-") as scratch:
        directory = Path(scratch)
        outbox = await Outbox.create(
            f"sqlite:///{directory / 'coverline.db'}", directory, receiver.url
        )
        try:
            rate = await outbox.fill(args.events)
            print(f"  outbox filled: {rate:.0f} events/s through events.service.record")
            requests = await outbox.signed_requests()
            ratios = []
            for round_ in range(args.rounds):
                if round_:
                    await outbox.reset()
                    print(f"  round {round_ + 1} of {args.rounds}")
                floor = await asyncio.to_thread(run_floor, receiver, pid, requests)
                print(floor.line())
                measured = await run_dispatch(
                    outbox,
                    receiver,
                    pid,
                    workers=1,
                    label="coverline worker: 1 process",
                    logs=directory,
                    profile=args.profile,
                )
                print(measured.line())
                print_profile(measured)
                ratios.append(measured.rate / floor.rate)
                print(f"  ratio worker/floor: {ratios[-1]:.2f}")
            del requests
            ratio = percentile(sorted(ratios), 0.5)
            print(
                f"  ratio worker/floor, median of {len(ratios)} round(s): {ratio:.2f} "
                f"(aim >= {AIM_FLOOR_RATIO}: {verdict(ratio >= AIM_FLOOR_RATIO)})"
            )
            # SQLite has one writing process: the producer and the worker share one process
            # and its write lock, as `coverline serve` runs them (embedded mode).
            from coverline.kit.heap import freeze_startup
            from coverline.worker import BackgroundWorker

            embedded = BackgroundWorker(outbox.services)
            embedded.start()
            # As `coverline serve` does once started: full collections skip what start-up made.
            freeze_startup()
            try:
                await asyncio.sleep(1.0)
                for load in args.latency:
                    latency = await run_latency(
                        outbox,
                        receiver,
                        time.process_time,
                        load=load,
                        seconds=args.latency_seconds,
                    )
                    print_latency("embedded worker", latency)
            finally:
                await embedded.stop()
        finally:
            await outbox.close()


async def postgresql_phases(args: argparse.Namespace, receiver: ReceiverClient, pid: int) -> None:
    import asyncpg

    print(f"\n== PostgreSQL: {args.pg_events} events")
    print_quiet()
    name = f"coverline_bench_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"  skipped: PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    server = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        with tempfile.TemporaryDirectory(prefix="coverline-bench-") as scratch:
            directory = Path(scratch)
            outbox = await Outbox.create(
                f"postgresql+asyncpg://{server}/{name}", directory, receiver.url
            )
            try:
                rate = await outbox.fill(args.pg_events)
                print(f"  outbox filled: {rate:.0f} events/s through events.service.record")
                runs = []
                for workers in (1, 2):
                    if runs:
                        await outbox.reset()
                    measured = await run_dispatch(
                        outbox,
                        receiver,
                        pid,
                        workers=workers,
                        label=f"pg {workers} worker: {workers} process(es)",
                        logs=directory,
                        profile=args.profile,
                    )
                    print(measured.line())
                    print_profile(measured)
                    runs.append(measured)
                ratio = runs[1].rate / runs[0].rate
                print(
                    f"  ratio two workers/one: {ratio:.2f} (aim >= {AIM_SCALE_OUT}: "
                    f"{verdict(ratio >= AIM_SCALE_OUT)})"
                )
                running = Workers(outbox, 1, directory, "pg-latency")
                running.start()
                try:
                    for load in args.latency:
                        latency = await run_latency(
                            outbox,
                            receiver,
                            running.cpu,
                            load=load,
                            seconds=args.latency_seconds,
                        )
                        print_latency("one worker process", latency)
                finally:
                    running.stop()
            finally:
                await outbox.close()
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    import uvloop

    if len(sys.argv) > 1 and sys.argv[1] == "_receiver":
        receiver_main(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_floor":
        url, bodies, concurrency, result = sys.argv[2:6]
        floor_main(url, Path(bodies), int(concurrency), Path(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--latency",
        type=lambda text: [Load.parse(item) for item in text.split(",")],
        default=[Load(500, 1), Load(500, 10)],
        help="loads of the latency phases: RATE[xEVENTS_PER_TRANSACTION],… (500x1,500x10)",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--pg-events", type=int, default=10_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="SQLite floor/worker rounds (median ratio)"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        if shutil.which("py-spy") is None:
            print("--profile: py-spy is not on the PATH (uv run --with py-spy ...)")
    print(
        f"Webhook delivery benchmark: {os.cpu_count()} cores, one XCover-format endpoint "
        f"(XCover signatures), floor and dispatcher at {FLOOR_CONCURRENCY} concurrent requests"
    )
    port = free_port()
    receiver_process = subprocess.Popen([sys.executable, __file__, "_receiver", str(port)])
    receiver = ReceiverClient(port)
    started = time.perf_counter()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                receiver.count()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # uvloop, as `coverline serve` runs (the embedded worker of the SQLite latency phase).
        if args.backend in ("sqlite", "both"):
            uvloop.run(sqlite_phases(args, receiver, receiver_process.pid))
        if args.backend in ("postgresql", "both"):
            uvloop.run(postgresql_phases(args, receiver, receiver_process.pid))
    finally:
        receiver_process.send_signal(signal.SIGINT)
        receiver_process.wait(10)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
