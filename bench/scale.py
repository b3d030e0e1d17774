"""Scale-out on PostgreSQL: API requests/s with one and with two API processes, webhook
deliveries/s with one and with two `coverline worker` processes, each printed as a ratio.

    uv run python bench/scale.py [--duration 10] [--warmup 3] [--concurrency 32]
        [--events 5000] [--only api|webhooks]

In one run, on this machine, on a database of its own on the PostgreSQL server at
`COVERLINE_BENCH_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/postgres`),
dropped afterwards:

1. API: `coverline serve --no-worker --workers 1`, then `--workers 2` (uvicorn's processes
   sharing one listening socket), with the rate limits in Redis at `COVERLINE_BENCH_REDIS_URL`
   (default `redis://127.0.0.1:6379/0`; in memory when it does not answer) as a deployment
   for scale runs them. The load is bench/api.py's: signed `event_ticket_protection` instant
   bookings with their own idempotency keys, a closed loop of `--concurrency` clients in a
   process of its own. Every answer must be 200 and every 200 a booking in the database.
2. Webhooks: bench/webhooks.py's PostgreSQL throughput phase: `--events` outbox events held
   while the workers start, then made due at once; deliveries/s with one worker process,
   then with two on the same deliveries (reset in between).

The CPU of the server processes (each of uvicorn's), of the load generator, of PostgreSQL and
Redis (the machine's servers: other people's queries included) and of the rest of the machine
(`other`, other people's work on a shared machine) is printed for every API phase:
on 2 cores, a second process only helps when a core is free. The script reports; it exits 0
whatever the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    CLOCK_TICKS,
    LoadResult,
    RequestSpec,
    Server,
    Signer,
    closed_loop,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    wait_for_quiet,
)
from api import DEMO_CATALOG, PARTNER_CODE, PATH, booking_body, coverline
from webhooks import POSTGRES_ADMIN_URL, Outbox, ReceiverClient, Throughput, run_dispatch

REDIS_URL = os.environ.get("COVERLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a process and of each of its children (uvicorn's worker processes)."""
    found = {pid: cpu_seconds(pid)}
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        try:
            found.update(process_tree_cpu(int(child)))
        except OSError:
            continue
    return found


def database_cpu() -> float:
    """CPU seconds of every PostgreSQL and Redis server process on the machine (the shared
    servers: other people's queries count too)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name == "postgres" or name.startswith("redis-server"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@dataclass
class ApiRun:
    processes: int
    load: LoadResult
    per_process_cores: list[float]  # the supervisor's and each uvicorn process's, busiest first
    database_cores: float
    machine_cores: float

    @property
    def server_cores(self) -> float:
        return sum(self.per_process_cores)

    @property
    def other_cores(self) -> float:
        return max(
            0.0,
            self.machine_cores - self.server_cores - self.database_cores - self.load.client_cpu,
        )

    def line(self) -> str:
        statuses = ", ".join(
            f"{code}: {count}" for code, count in sorted(self.load.statuses.items())
        )
        errors = f"; errors {self.load.errors}" if self.load.errors else ""
        return (
            f"  {self.processes} API process(es): {self.load.throughput:6.0f} req/s, p50 "
            f"{self.load.p50_ms:.0f} ms, p99 {self.load.p99_ms:.0f} ms (answers {statuses}"
            f"{errors})\n    CPU cores busy: servers {self.server_cores:.2f}, load generator "
            f"{self.load.client_cpu:.2f}, PostgreSQL and Redis {self.database_cores:.2f}, other "
            f"{self.other_cores:.2f}; server CPU per request {self.cpu_ms_per_request:.1f} ms\n"
            f"    CPU of "
            f"each server process: {', '.join(f'{cores:.2f}' for cores in self.per_process_cores)}"
        )

    @property
    def cpu_ms_per_request(self) -> float:
        """Less disturbed by other work on the machine than the requests per second."""
        return 1000 * self.server_cores / self.load.throughput if self.load.throughput else 0.0


async def _database(name: str, create: bool) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _bookings(url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM quote_packages WHERE is_booking")
        )
    finally:
        await connection.close()


async def _redis_answers() -> bool:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except (OSError, redis.RedisError):
        return False
    finally:
        await client.aclose()


def api_phases(args: argparse.Namespace, directory: Path, server: str) -> list[ApiRun]:
    from cryptography.fernet import Fernet

    name = f"coverline_scale_{secrets.token_hex(4)}"
    asyncio.run(_database(name, create=True))
    plain_url = f"postgresql://{server}/{name}"
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COVERLINE_")}
        env.update(
            COVERLINE_DATABASE_URL=plain_url,
            COVERLINE_DATA_DIR=str(directory),
            COVERLINE_MASTER_KEY=Fernet.generate_key().decode(),
            COVERLINE_RATE_LIMIT="1000000/second",
        )
        redis = asyncio.run(_redis_answers())
        if redis:
            env["COVERLINE_REDIS_URL"] = REDIS_URL
        print(f"  rate limits: {'Redis at ' + REDIS_URL if redis else 'in memory (no Redis)'}")
        credentials = json.loads(
            coverline(
                *("partner", "create", "--name", "Bench", "--code", PARTNER_CODE, "--json"), env=env
            )
        )
        coverline("catalog", "load", str(DEMO_CATALOG), env=env)
        sandbox = credentials["sandbox"]
        signer = Signer(sandbox["api_key"], sandbox["api_secret"], "POST", PATH)
        body = booking_body(datetime.now(UTC))
        runs = []
        answered = 0
        for processes in (1, 2):
            port = free_port()
            serve = Server(
                f"coverline serve --workers {processes}",
                [
                    *(sys.executable, "-m", "coverline", "serve", "--no-worker"),
                    *("--workers", str(processes), "--port", str(port)),
                ],
                health_url=f"http://127.0.0.1:{port}/healthz",
                env=env,
                log_path=directory / f"serve-{processes}.log",
            )
            spec = RequestSpec(url=f"http://127.0.0.1:{port}{PATH}", body=body, signer=signer)
            with serve:
                wait_for_quiet(args.settle)
                server_cpu, database, machine, wall = (
                    process_tree_cpu(serve.pid),
                    database_cpu(),
                    machine_busy_seconds(),
                    time.perf_counter(),
                )
                load = closed_loop(
                    spec, concurrency=args.concurrency, warmup=args.warmup, duration=args.duration
                )
                wall = time.perf_counter() - wall
                after = process_tree_cpu(serve.pid)
                run = ApiRun(
                    processes,
                    load,
                    sorted(
                        (
                            (seconds - server_cpu.get(pid, 0.0)) / wall
                            for pid, seconds in after.items()
                        ),
                        reverse=True,
                    ),
                    (database_cpu() - database) / wall,
                    (machine_busy_seconds() - machine) / wall,
                )
            answered += load.count(200)
            print(run.line())
            runs.append(run)
        bookings = asyncio.run(_bookings(plain_url))
        sent = sum(run.load.total for run in runs)
        verdict = "OK" if bookings == answered == sent else "MISMATCH"
        print(
            f"  correctness: {answered}/{sent} answered 200, {bookings} bookings in the "
            f"database: {verdict}"
        )
        ratio = runs[1].load.throughput / runs[0].load.throughput
        print(f"  ratio two API processes/one: {ratio:.2f}")
        return runs
    finally:
        asyncio.run(_database(name, create=False))


async def webhook_phases(
    args: argparse.Namespace, directory: Path, server: str, receiver: ReceiverClient, pid: int
) -> list[Throughput]:
    name = f"coverline_scale_{secrets.token_hex(4)}"
    await _database(name, create=True)
    try:
        outbox = await Outbox.create(
            f"postgresql+asyncpg://{server}/{name}", directory, receiver.url
        )
        try:
            rate = await outbox.fill(args.events)
            print(f"  outbox filled: {rate:.0f} events/s through events.service.record")
            runs: list[Throughput] = []
            for workers in (1, 2):
                if runs:
                    await outbox.reset()
                busy = wait_for_quiet(args.settle)
                measured = await run_dispatch(
                    outbox,
                    receiver,
                    pid,
                    workers=workers,
                    label=f"{workers} worker process(es)",
                    logs=directory,
                    profile=None,
                )
                print(f"{measured.line()}\n    other work before the phase: {busy:.2f} cores")
                runs.append(measured)
            ratio = runs[1].rate / runs[0].rate
            print(f"  ratio two workers/one: {ratio:.2f}")
            return runs
        finally:
            await outbox.close()
    finally:
        await _database(name, create=False)


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="s measured per API phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="s before each API phase")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--events", type=int, default=5000, help="outbox events delivered")
    parser.add_argument("--settle", type=float, default=3.0, help="s to wait for a quiet machine")
    parser.add_argument("--only", choices=["api", "webhooks"], default=None)
    args = parser.parse_args()

    server = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    print(
        f"bench/scale.py: {os.cpu_count()} CPUs, PostgreSQL at {server}; API phases "
        f"{args.duration:g} s after {args.warmup:g} s warm-up, {args.concurrency} clients; "
        f"{args.events} webhook deliveries per worker phase"
    )
    started = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="coverline-scale-"))
    try:
        if args.only in (None, "api"):
            print("\n== API: signed instant bookings")
            api_phases(args, directory, server)
        if args.only in (None, "webhooks"):
            print("\n== webhooks: deliveries to one receiver")
            port = free_port()
            receiver_process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("webhooks.py")),
                    "_receiver",
                    str(port),
                ]
            )
            receiver = ReceiverClient(port)
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
                uvloop.run(webhook_phases(args, directory, server, receiver, receiver_process.pid))
            finally:
                receiver_process.send_signal(signal.SIGINT)
                receiver_process.wait(10)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
