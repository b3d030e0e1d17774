"""Signed instant bookings per second and their latency, against a bare FastAPI floor.

    uv run python bench/api.py [--duration 10] [--warmup 3] [--concurrency 32]

In one run, on this machine, each server a single uvicorn process (uvloop, httptools):

1. floor: a bare FastAPI endpoint that parses the same instant-booking body into a pydantic
   model and answers a small JSON;
2. Coverline (`python -m coverline serve`) on a fresh SQLite database, answering signed
   (draft-cavage hmac-sha512, as xcover-python signs) `event_ticket_protection` instant
   bookings, each with its own `x-idempotency-key`.

Both get the same bytes: the same path, headers and body. A closed loop at fixed concurrency
measures peak throughput; then an open loop at half Coverline's peak measures latency from
each request's scheduled send time. The load generator is a separate process. The script
prints the ratio Coverline/floor and whether the aims (ratio >= 0.35, p99 <= 50 ms at half
the peak rate) are met, checks that every booking answered 200 and is in the database, and
exits 0: it reports, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    LoadResult,
    RequestSpec,
    Server,
    Signer,
    closed_loop,
    free_port,
    open_loop,
    run,
    sqlite_scalar,
    wait_for_quiet,
)
from pydantic import BaseModel, ConfigDict

PARTNER_CODE = "BENCH"
PATH = f"/api/partners/{PARTNER_CODE}/instant_booking/"
DEMO_CATALOG = REPO / "coverline" / "catalog" / "demo" / "catalog.yaml"
AIM_RATIO = 0.35
AIM_P99_MS = 50.0


def booking_body(now: datetime) -> bytes:
    """The recorded xcover-python instant booking, moved into the future."""
    start = (now + timedelta(days=1)).replace(microsecond=0)
    event = start + timedelta(days=24, hours=22, minutes=14)
    body = {
        "request": [
            {
                "policy_type": "event_ticket_protection",
                "policy_type_version": 1,
                "policy_start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "event_datetime": event.strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            "first_name": "Melanie",
            "last_name": "Martinez",
            "age": 30,
            "email": "melanie.martinez@test-xcover.com",
            "country": "GB",
            "region": None,
            "company": "Smith, Sandoval and Decker",
        },
    }
    # xcover-python sends json.dumps' default separators.
    return json.dumps(body).encode()


class FloorItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    policy_type: str
    policy_type_version: int = 1
    policy_start_date: str
    insured: list[dict[str, Any]] | None = None


class FloorPolicyholder(BaseModel):
    first_name: str
    last_name: str
    email: str
    age: int | None = None
    country: str | None = None
    region: str | None = None
    company: str | None = None


class FloorBooking(BaseModel):
    request: list[FloorItem]
    currency: str
    policyholder: FloorPolicyholder


def floor_app() -> Any:
    """The floor: FastAPI parsing the same body into pydantic models, nothing else."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post(PATH)
    async def instant_booking(data: FloorBooking) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex[:15], "status": "CONFIRMED", "currency": data.currency}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_floor(port: int) -> None:
    import uvicorn

    # The settings `coverline serve` uses; uvicorn[standard] brings uvloop and httptools.
    uvicorn.run(floor_app(), host="127.0.0.1", port=port, log_level="info", proxy_headers=True)


def coverline(*args: str, env: dict[str, str]) -> str:
    return run([sys.executable, "-m", "coverline", *args], env=env)


def post_once(url: str, body: bytes, signer: Signer) -> tuple[int, dict[str, Any]]:
    from coverline.partners.signatures import authorization_header

    date = formatdate(usegmt=True)
    headers = {
        "Content-Type": "application/json",
        "Date": date,
        "Authorization": authorization_header(
            signer.api_key, signer.api_secret, method="POST", path=PATH, date=date
        ),
        "x-idempotency-key": str(uuid.uuid4()),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def cpu_ms_per_request(result: LoadResult) -> float:
    return 1000 * result.server_cpu / result.throughput if result.throughput else math.nan


def describe(label: str, result: LoadResult) -> None:
    how = (
        f"concurrency {result.concurrency}"
        if result.mode == "closed"
        else f"target {result.target_rate:.0f}/s"
    )
    print(
        f"  {label:<28} {result.throughput:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p90 {result.p90_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  max {result.max_ms:7.1f} ms  "
        f"({how}; CPU cores: server {result.server_cpu:.2f}, client {result.client_cpu:.2f}, "
        f"other {result.other_cpu:.2f})"
    )
    if result.dispatch_lag_p99_ms is not None and result.dispatch_lag_p99_ms > 5:
        print(f"    client dispatch lag p99 {result.dispatch_lag_p99_ms:.1f} ms (late sends)")
    if set(result.statuses) - {"200"} or result.errors:
        print(f"    statuses {result.statuses}  errors {result.errors}")
        if result.sample_body:
            print(f"    sample non-200 body: {result.sample_body}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each phase")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--rate", type=float, help="open-loop rate (default: half the peak)")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds to wait at most, before each phase, for other work on the machine to end",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="coverline-bench-"))
    try:
        report = bench(args, data_dir)
    finally:
        if args.keep:
            print(f"data and server logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


def bench(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "COVERLINE_DATA_DIR": str(data_dir),
        "COVERLINE_RATE_LIMIT": "1000000/second",
    }
    for inherited in ("COVERLINE_DATABASE_URL", "COVERLINE_REDIS_URL"):
        env.pop(inherited, None)
    credentials = json.loads(
        coverline("partner", "create", "--name", "Bench", "--code", PARTNER_CODE, "--json", env=env)
    )
    coverline("catalog", "load", str(DEMO_CATALOG), env=env)
    signer = Signer(
        credentials["sandbox"]["api_key"], credentials["sandbox"]["api_secret"], "POST", PATH
    )
    body = booking_body(datetime.now(UTC))

    def measure(label: str, load: Any, spec: RequestSpec, server: Server, **how: Any) -> LoadResult:
        wait_for_quiet(args.settle)
        result: LoadResult = load(
            spec, warmup=args.warmup, duration=args.duration, server_pid=server.pid, **how
        )
        describe(label, result)
        return result

    versions = ", ".join(f"{name} {version(name)}" for name in ("fastapi", "uvicorn", "aiohttp"))
    print(
        f"bench/api.py: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {versions}; "
        f"body {len(body)} bytes; {args.duration:g} s per phase after {args.warmup:g} s warm-up"
    )

    floor_port = free_port()
    floor = Server(
        "floor",
        [sys.executable, __file__, "--serve-floor", str(floor_port)],
        health_url=f"http://127.0.0.1:{floor_port}/healthz",
        log_path=data_dir / "floor.log",
    )
    floor_spec = RequestSpec(url=f"http://127.0.0.1:{floor_port}{PATH}", body=body, signer=signer)
    with floor:
        floor_peak = measure(
            "floor, closed loop", closed_loop, floor_spec, floor, concurrency=args.concurrency
        )

    port = free_port()
    server = Server(
        "coverline",
        [sys.executable, "-m", "coverline", "serve", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/healthz",
        env=env,
        log_path=data_dir / "coverline.log",
    )
    url = f"http://127.0.0.1:{port}{PATH}"
    spec = RequestSpec(url=url, body=body, signer=signer)
    with server:
        status, sample = post_once(url, body, signer)
        response_bytes = len(json.dumps(sample))
        if status != 200 or sample.get("status") != "CONFIRMED":
            raise SystemExit(f"the first booking failed, nothing to measure: {status} {sample}")
        peak = measure(
            "coverline, closed loop", closed_loop, spec, server, concurrency=args.concurrency
        )
        rate = args.rate or peak.throughput / 2
        half = measure("coverline, open loop", open_loop, spec, server, rate=rate)
    bookings = sqlite_scalar(
        data_dir / "coverline.db", "SELECT count(*) FROM quote_packages WHERE is_booking = 1"
    )

    with floor:
        floor_half = measure("floor, open loop", open_loop, floor_spec, floor, rate=rate)

    coverline_results = (peak, half)
    answered_200 = 1 + sum(result.count(200) for result in coverline_results)
    sent = 1 + sum(result.total for result in coverline_results)
    ratio = peak.throughput / floor_peak.throughput
    ratio_met = ratio >= AIM_RATIO
    p99_met = half.p99_ms <= AIM_P99_MS
    correct = answered_200 == sent and bookings == answered_200

    print()
    print(f"  floor peak             {floor_peak.throughput:8.0f} req/s")
    print(f"  coverline peak         {peak.throughput:8.0f} req/s")
    floor_cost, cost = cpu_ms_per_request(floor_peak), cpu_ms_per_request(peak)
    print(
        f"  server CPU per request {cost:8.2f} ms (floor {floor_cost:.2f} ms; "
        f"floor/coverline {floor_cost / cost:.3f}, less sensitive to other load than req/s)"
    )
    print(
        f"  ratio coverline/floor  {ratio:8.3f}   aim >= {AIM_RATIO}: "
        f"{'met' if ratio_met else 'NOT met'}"
    )
    print(
        f"  p99 at {rate:.0f}/s (half peak) {half.p99_ms:.1f} ms (floor at that rate "
        f"{floor_half.p99_ms:.1f} ms)   aim <= {AIM_P99_MS:g} ms: "
        f"{'met' if p99_met else 'NOT met'}"
    )
    print(
        f"  correctness: {answered_200}/{sent} Coverline requests answered 200, "
        f"{bookings} bookings in the database: {'OK' if correct else 'MISMATCH'}"
    )
    print(f"  Coverline response {response_bytes} bytes of JSON per booking")
    busiest = max(floor_peak.other_cpu, peak.other_cpu, half.other_cpu, floor_half.other_cpu)
    if busiest > 0.25:
        print(
            f"  note: other processes kept up to {busiest:.2f} cores busy during a phase; "
            "on a 2-core machine that lowers the numbers, rerun on a quiet machine"
        )
    if floor_peak.client_cpu > 0.9:
        print(
            f"  note: the client used {floor_peak.client_cpu:.2f} cores against the floor, "
            "so the floor may be client-bound and the ratio overstated"
        )
    return {
        "cpus": os.cpu_count(),
        "body_bytes": len(body),
        "response_bytes": response_bytes,
        "duration": args.duration,
        "warmup": args.warmup,
        "floor_peak": vars(floor_peak),
        "coverline_peak": vars(peak),
        "coverline_half_peak": vars(half),
        "floor_half_peak": vars(floor_half),
        "ratio": ratio,
        "server_cpu_ms_per_request": {"floor": floor_cost, "coverline": cost},
        "ratio_met": ratio_met,
        "p99_met": p99_met,
        "requests_sent": sent,
        "answered_200": answered_200,
        "bookings": bookings,
        "correct": correct,
    }


if __name__ == "__main__":
    main()
