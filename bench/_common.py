"""Shared pieces of the benchmarks: server processes, a load generator, signed headers.

The load generator runs in its own process (spawned, so it shares nothing with the parent),
on uvloop with one aiohttp connector and keep-alive connections. It measures its own CPU
time and the server's over the measured window, so a report can tell whether the client or
the server was the limit.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet(max_wait: float, busy_below: float = 0.25) -> float:
    """Wait up to `max_wait` s for a second in which the machine is (nearly) idle.

    Returns the cores that were busy in the last second looked at, so a caller can say that
    the measurement shares the machine with other work.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        busy = machine_busy_seconds() - before
        if busy < busy_below or time.monotonic() >= deadline:
            return busy


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list; NaN when it is empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Server:
    """A server subprocess, ready once `health_url` answers 200; stopped with SIGINT."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        health_url: str,
        env: dict[str, str] | None = None,
        log_path: Path,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.command = command
        self.health_url = health_url
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.health_url} in {timeout} s")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> str:
    """Run a command to completion; its standard output, or an error with its output."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Signer:
    """Signs like xcover-python: HMAC over `(request-target) date`, one signature per Date."""

    api_key: str
    api_secret: str
    method: str
    path: str
    algorithm: str = "hmac-sha512"


@dataclass(frozen=True)
class RequestSpec:
    """One request, repeated: a unique `x-idempotency-key` on each, a fresh Date each second."""

    url: str
    body: bytes
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    signer: Signer | None = None
    idempotency_keys: bool = True


class _Headers:
    def __init__(self, spec: RequestSpec) -> None:
        self._spec = spec
        self._second = -1
        self._base: dict[str, str] = dict(spec.headers)

    def __call__(self) -> dict[str, str]:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._base = dict(self._spec.headers)
            signer = self._spec.signer
            if signer is not None:
                from coverline.partners.signatures import authorization_header

                date = formatdate(second, usegmt=True)
                self._base["Date"] = date
                self._base["Authorization"] = authorization_header(
                    signer.api_key,
                    signer.api_secret,
                    method=signer.method,
                    path=signer.path,
                    date=date,
                    algorithm=signer.algorithm,
                )
        headers = dict(self._base)
        if self._spec.idempotency_keys:
            headers["x-idempotency-key"] = str(uuid.uuid4())
        return headers


@dataclass
class LoadResult:
    """What one load phase measured. Latencies in milliseconds; CPU in cores busy, `other`
    being the rest of the machine (near 0 when nothing else runs)."""

    mode: str
    measured_seconds: float
    requests: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    client_cpu: float
    server_cpu: float
    other_cpu: float
    concurrency: int | None = None
    target_rate: float | None = None
    dispatch_lag_p99_ms: float | None = None
    sample_body: str = ""

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    def count(self, status: int) -> int:
        return self.statuses.get(str(status), 0)


class _Window:
    """The measured window, with the CPU time the client and the server spent in it."""

    def __init__(self, start: float, end: float, server_pid: int | None) -> None:
        self.start = start
        self.end = end
        self._server_pid = server_pid
        self.client_cpu = math.nan
        self.server_cpu = math.nan
        self.other_cpu = math.nan

    async def watch(self) -> None:
        await asyncio.sleep(max(0.0, self.start - time.perf_counter()))
        client0, server0 = time.process_time(), self._server_cpu()
        machine0, wall0 = machine_busy_seconds(), time.perf_counter()
        await asyncio.sleep(max(0.0, self.end - time.perf_counter()))
        wall = time.perf_counter() - wall0
        self.client_cpu = (time.process_time() - client0) / wall
        self.server_cpu = (self._server_cpu() - server0) / wall
        machine = (machine_busy_seconds() - machine0) / wall
        self.other_cpu = max(0.0, machine - self.client_cpu - self.server_cpu)

    def _server_cpu(self) -> float:
        return cpu_seconds(self._server_pid) if self._server_pid else math.nan


class _Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sample_body = ""


async def _send(
    session: Any, spec: RequestSpec, headers: _Headers, recorder: _Recorder
) -> int | None:
    import aiohttp

    try:
        async with session.request(
            spec.method, spec.url, data=spec.body, headers=headers()
        ) as response:
            payload = await response.read()
            recorder.statuses[str(response.status)] += 1
            if response.status != 200 and not recorder.sample_body:
                recorder.sample_body = payload[:500].decode(errors="replace")
            return int(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        recorder.errors[type(exc).__name__] += 1
        return None


def _result(
    mode: str, recorder: _Recorder, window: _Window, completed: int, **extra: Any
) -> LoadResult:
    ordered = sorted(recorder.latencies)
    seconds = window.end - window.start
    return LoadResult(
        mode=mode,
        measured_seconds=seconds,
        requests=completed,
        throughput=completed / seconds,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p90_ms=percentile(ordered, 0.90) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        statuses=dict(recorder.statuses),
        errors=dict(recorder.errors),
        client_cpu=window.client_cpu,
        server_cpu=window.server_cpu,
        other_cpu=window.other_cpu,
        sample_body=recorder.sample_body,
        **extra,
    )


def _session(connections: int) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60),
        skip_auto_headers=("User-Agent",),
    )


async def _closed_loop(
    spec: RequestSpec, concurrency: int, warmup: float, duration: float, server_pid: int | None
) -> LoadResult:
    start = time.perf_counter() + warmup
    window = _Window(start, start + duration, server_pid)
    recorder = _Recorder()
    headers = _Headers(spec)
    completed = 0

    async def worker(session: Any) -> None:
        nonlocal completed
        while (sent := time.perf_counter()) < window.end:
            status = await _send(session, spec, headers, recorder)
            done = time.perf_counter()
            if status is not None and sent >= window.start and done <= window.end:
                recorder.latencies.append(done - sent)
            if status == 200 and window.start <= done <= window.end:
                completed += 1

    async with _session(concurrency) as session:
        watcher = asyncio.ensure_future(window.watch())
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        await watcher
    return _result("closed", recorder, window, completed, concurrency=concurrency)


async def _open_loop(
    spec: RequestSpec, rate: float, warmup: float, duration: float, server_pid: int | None
) -> LoadResult:
    """Constant arrival rate; latency counts from the scheduled send time."""
    begin = time.perf_counter() + 0.05
    window = _Window(begin + warmup, begin + warmup + duration, server_pid)
    recorder = _Recorder()
    headers = _Headers(spec)
    lags: list[float] = []
    completed = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(session: Any, scheduled: float) -> None:
        nonlocal completed
        status = await _send(session, spec, headers, recorder)
        done = time.perf_counter()
        if status is not None and window.start <= scheduled < window.end:
            recorder.latencies.append(done - scheduled)
        if status == 200 and window.start <= scheduled < window.end:
            completed += 1

    async with _session(1024) as session:
        watcher = asyncio.ensure_future(window.watch())
        index = 0
        while (scheduled := begin + index / rate) < window.end:
            now = time.perf_counter()
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
                now = time.perf_counter()
            if scheduled >= window.start:
                lags.append(now - scheduled)
            task = asyncio.ensure_future(one(session, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        await watcher
    lags.sort()
    # An open loop's throughput: requests scheduled in the window and answered 200, per second.
    return _result(
        "open",
        recorder,
        window,
        completed,
        target_rate=rate,
        dispatch_lag_p99_ms=percentile(lags, 0.99) * 1000,
    )


def _load_in_child(
    mode: str,
    spec: RequestSpec,
    arg: float,
    warmup: float,
    duration: float,
    server_pid: int | None,
) -> LoadResult:
    import uvloop

    if mode == "closed":
        return uvloop.run(_closed_loop(spec, int(arg), warmup, duration, server_pid))
    return uvloop.run(_open_loop(spec, arg, warmup, duration, server_pid))


def _in_child(*args: Any) -> LoadResult:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_load_in_child, *args).result()


def closed_loop(
    spec: RequestSpec,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
) -> LoadResult:
    """Peak throughput: `concurrency` clients, each sending its next request on an answer."""
    return _in_child("closed", spec, concurrency, warmup, duration, server_pid)


def open_loop(
    spec: RequestSpec,
    *,
    rate: float,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
) -> LoadResult:
    """Latency at a fixed arrival rate, free of coordinated omission."""
    return _in_child("open", spec, rate, warmup, duration, server_pid)


def sqlite_scalar(database: Path, query: str) -> Any:
    import sqlite3

    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute(query).fetchone()[0]
