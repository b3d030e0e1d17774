"""Instructions per signed instant booking, against the bare FastAPI floor, counted by Valgrind.

    uv run python bench/instructions.py [--requests 100] [--json FILE]

`bench/api.py` measures time, and on a shared virtual machine the time a request takes moves
by 10 to 40 % from one minute to the next with the same code (the host's other guests). The
number of instructions the CPU executes for a request does not: this script counts them with
Valgrind's cachegrind (`--cache-sim=no`: the instruction count alone), so that two commits
compare to within about 1 % on any machine and at any hour.

Each of the two apps, the floor of `bench/api.py` (FastAPI parsing the same body into pydantic
models) and Coverline's (`coverline.app:create_app` on a fresh SQLite database, the demo
catalogue, a partner, without the embedded worker), runs in a process of its own under
Valgrind, called as an ASGI app directly (no HTTP server: uvicorn's cost is the same for both
and is left out, so the ratio is lower than `bench/api.py`'s). Each request is the recorded
xcover-python instant booking of `bench/api.py`, signed the same way, with its own
`x-idempotency-key`. A process answers 50 requests to warm up, then `--requests` more; it runs
twice, with and without those, and the difference of the two counts divided by `--requests`
is the cost of one request, start-up and warm-up cancelled out. Every Coverline answer must be
200 and every booking in the database. Takes about 3 minutes (Valgrind runs Python about 15
times slower); it reports, it never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

from _common import REPO, sqlite_scalar
from api import DEMO_CATALOG, PARTNER_CODE, PATH, booking_body, coverline, floor_app

WARMUP = 50
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _environment(data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "COVERLINE_DATA_DIR": str(data_dir),
        "COVERLINE_RATE_LIMIT": "1000000/second",
        "COVERLINE_RUN_WORKER": "false",
        "PYTHONHASHSEED": "0",
    }
    for inherited in ("COVERLINE_DATABASE_URL", "COVERLINE_REDIS_URL"):
        env.pop(inherited, None)
    return env


async def _drive(app: Any, requests: int, sign: Any) -> list[int]:
    """Start `app`'s lifespan, send it `requests` bookings one after another, stop it."""
    body = booking_body(datetime.now(UTC))
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def receive_lifespan() -> dict[str, Any]:
        return await lifespan.get()

    async def send_lifespan(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            if message["type"] != "lifespan.startup.complete":
                raise SystemExit(f"the app did not start: {message}")
            started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.create_task(app(scope, receive_lifespan, send_lifespan))
    await lifespan.put({"type": "lifespan.startup"})
    await started.wait()

    statuses: list[int] = []
    for _ in range(requests):
        headers = [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-idempotency-key", str(uuid.uuid4()).encode()),
            *sign(formatdate(time.time(), usegmt=True)),
        ]
        request = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        statuses.append(await _call(app, request, body))
    await lifespan.put({"type": "lifespan.shutdown"})
    await running
    return statuses


async def _call(app: Any, request: dict[str, Any], body: bytes) -> int:
    """One request to the ASGI app; the status it answered."""
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError

    answer: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answer.append(message)

    await app(request, receive, send)
    status: int = answer[0]["status"]
    return status


def child(target: str, requests: int, data_dir: Path) -> None:
    """Run in the process Valgrind watches: build the app, answer the requests."""
    if target == "floor":
        app = floor_app()

        def sign(date: str) -> list[tuple[bytes, bytes]]:
            return [(b"date", date.encode())]
    else:
        from coverline.app import create_app
        from coverline.partners.signatures import authorization_header

        credentials = json.loads((data_dir / "credentials.json").read_text())["sandbox"]
        app = create_app()

        def sign(date: str) -> list[tuple[bytes, bytes]]:
            header = authorization_header(
                credentials["api_key"],
                credentials["api_secret"],
                method="POST",
                path=PATH,
                date=date,
            )
            return [(b"date", date.encode()), (b"authorization", header.encode())]

    statuses = asyncio.run(_drive(app, requests, sign))
    print(json.dumps({"statuses": statuses}))


def _count(target: str, requests: int, data_dir: Path, env: dict[str, str]) -> tuple[int, Any]:
    """Instructions of one child process answering `requests` requests, and its report."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        target,
        "--requests",
        str(requests),
        "--data-dir",
        str(data_dir),
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    found = REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{target} under valgrind failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return int(found.group(1).replace(",", "")), report


def measure(target: str, requests: int, data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    base, base_report = _count(target, WARMUP, data_dir, env)
    total, report = _count(target, WARMUP + requests, data_dir, env)
    statuses = base_report["statuses"] + report["statuses"]
    per_request = (total - base) / requests
    print(f"  {target:<9} {per_request / 1e6:8.2f} M instructions per request")
    return {"per_request": per_request, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=100, help="requests counted per app")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--child", choices=("floor", "coverline"), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.data_dir)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install -y valgrind)")

    data_dir = Path(tempfile.mkdtemp(prefix="coverline-instructions-"))
    try:
        env = _environment(data_dir)
        credentials = coverline(
            "partner", "create", "--name", "Bench", "--code", PARTNER_CODE, "--json", env=env
        )
        (data_dir / "credentials.json").write_text(credentials)
        coverline("catalog", "load", str(DEMO_CATALOG), env=env)
        print(
            f"bench/instructions.py: Python {sys.version.split()[0]}, {args.requests} requests "
            f"counted per app after {WARMUP}, under valgrind (cachegrind)"
        )
        floor = measure("floor", args.requests, data_dir, env)
        ours = measure("coverline", args.requests, data_dir, env)
        bookings = sqlite_scalar(
            data_dir / "coverline.db", "SELECT count(*) FROM quote_packages WHERE is_booking = 1"
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    answered = ours["statuses"]
    correct = all(status == 200 for status in answered) and bookings == len(answered)
    ratio = floor["per_request"] / ours["per_request"]
    print(f"  ratio floor/coverline {ratio:8.3f}  (instructions; no HTTP server in either)")
    print(
        f"  correctness: {answered.count(200)}/{len(answered)} Coverline requests answered "
        f"200, {bookings} bookings in the database: {'OK' if correct else 'MISMATCH'}"
    )
    if args.json:
        results = {
            "requests": args.requests,
            "floor_instructions": floor["per_request"],
            "coverline_instructions": ours["per_request"],
            "ratio": ratio,
            "correct": correct,
        }
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
