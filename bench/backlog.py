"""What a scrape of the backlog gauges costs when the outbox holds a million deliveries.

For each backend it times `read_backlog` (every gauge of /metrics that is read from the
database) with one million pending webhook deliveries, and, as the floor measured in the same
run, with a tenth as many. Each count stops at `DEPTH_CAP` (100,000) rows, so the ratio should
be about 1 (the cost is bounded), not 10 (the cost follows the rows). For comparison it also
times the plain `count(*)` of the due deliveries that an uncapped gauge would run.

    uv run python bench/backlog.py [--deliveries 1000000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from renewals import drop_postgres, postgres_url, sqlite_url
from sqlalchemy import func, select, text

from coverline.config import Settings
from coverline.db.migrate import upgrade
from coverline.observability.backlog import DEPTH_CAP, read_backlog
from coverline.runtime import Services
from coverline.webhooks.models import WebhookDelivery

SCRAPES = 7


def _stamp(services: Services, moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if services.database.is_sqlite else moment


async def seed(services: Services, deliveries: int, now: datetime) -> None:
    """One partner, endpoint and event; `deliveries` rows of which 1 % are being sent, 10 %
    wait for a retry and 89 % are due. `part` keeps the rows distinct."""
    stamp = _stamp(services, now)
    async with services.database.transaction() as session:
        connection = await session.connection()
        await connection.execute(
            text(
                "INSERT INTO partners (code, name, status, bearer_enabled, allow_hmac_sha1, "
                "created_at) VALUES ('BENCH', 'Bench', 'active', true, false, :now)"
            ),
            {"now": stamp},
        )
        partner_id = (
            await connection.execute(text("SELECT id FROM partners WHERE code = 'BENCH'"))
        ).scalar_one()
        await connection.execute(
            text(
                "INSERT INTO webhook_endpoints (public_id, partner_id, mode, url, enabled, "
                "format, signature, key, secret_ciphertext, created_at, updated_at) VALUES "
                "('we_bench', :partner, 'live', 'https://hooks.example.com/', true, 'xcover', "
                "'xcover', 'key', 'secret', :now, :now)"
            ),
            {"partner": partner_id, "now": stamp},
        )
        await connection.execute(
            text(
                "INSERT INTO events (public_id, partner_id, mode, type, resource_type, "
                "resource_id, payload, occurred_at) VALUES ('evt_bench', :partner, 'live', "
                "'BOOKING_CREATED', 'booking', 'BENCH-BENCH-INS', '{}', :now)"
            ),
            {"partner": partner_id, "now": stamp},
        )
    sqlite = services.database.is_sqlite
    if sqlite:
        numbers = (
            "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq "
            "WHERE n + 1 < :count) "
        )
        source, ident = "seq", "printf('wd_%010d', n)"
    else:
        numbers, source, ident = "", "generate_series(0, :count - 1) AS seq(n)", "'wd_' || n"
    cast_open, cast_close = ("", "") if sqlite else ("CAST(", " AS timestamptz)")
    status = "CASE WHEN n % 100 = 1 THEN 'delivering' ELSE 'pending' END"
    due = (
        f"CASE WHEN n % 10 = 0 THEN {cast_open}:later{cast_close} "
        f"ELSE {cast_open}:earlier{cast_close} END"
    )
    async with services.database.transaction() as session:
        await session.execute(
            text(
                f"{numbers}INSERT INTO webhook_deliveries (public_id, endpoint_id, event_id, "
                "part, event_type, partner_id, mode, ordering_key, status, attempts, failures, "
                "next_attempt_at, created_at) "
                f"SELECT {ident}, (SELECT id FROM webhook_endpoints), (SELECT id FROM events), "
                f"n, 'BOOKING_CREATED', :partner, 'live', 'BENCH-' || n, {status}, 0, 0, "
                f"{due}, :now FROM {source}"
            ),
            {
                "count": deliveries,
                "partner": partner_id,
                "now": stamp,
                "earlier": _stamp(services, now - timedelta(minutes=5)),
                "later": _stamp(services, now + timedelta(minutes=5)),
            },
        )
    if not sqlite:
        # The visibility map lets the counts read the index alone, as autovacuum would.
        async with services.database.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE webhook_deliveries"))


async def timed(work: Callable[[], Awaitable[None]]) -> float:
    """The median of SCRAPES runs, after one that warms the caches."""
    await work()
    runs = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        await work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


async def measure(url: str, deliveries: int, data_dir: Path) -> tuple[float, float, float]:
    await upgrade(url)
    settings = Settings(
        database_url=url, data_dir=data_dir, master_key=Fernet.generate_key().decode()
    )
    services = Services.build(settings)
    now = datetime.now(UTC)
    try:
        started = time.perf_counter()
        await seed(services, deliveries, now)
        print(
            f"    seeded {deliveries:,} deliveries in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        families = await read_backlog(services.database, now)
        depth = {
            sample.labels["state"]: sample.value
            for sample in families[0].samples
            if sample.labels["queue"] == "webhooks"
        }

        async def scrape() -> None:
            await read_backlog(services.database, now)

        async def naive() -> None:
            async with services.database.reading() as session:
                await session.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(
                        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now
                    )
                )

        print(f"    gauges: {depth}", flush=True)
        return await timed(scrape), await timed(naive), depth["due"]
    finally:
        await services.close()


async def run_backend(backend: str, deliveries: int) -> None:
    print(f"== {backend}: {deliveries:,} deliveries (counts stop at {DEPTH_CAP:,})", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, count in (("floor", deliveries // 10), ("full", deliveries)):
            if backend == "sqlite":
                url = await sqlite_url(Path(tmp), label)
            else:
                url = await postgres_url(label)
            try:
                scrape, naive, due = await measure(url, count, Path(tmp))
            finally:
                if backend != "sqlite":
                    await drop_postgres(url)
            assert due == min(count * 89 // 100, DEPTH_CAP), due
            results[label] = scrape
            print(
                f"  {label:5s} {count:>9,} deliveries: scrape {scrape * 1000:.1f} ms; "
                f"uncapped count(*) of the due ones {naive * 1000:.1f} ms",
                flush=True,
            )
    ratio = results["full"] / results["floor"]
    print(f"  ratio full/floor = {ratio:.2f} (1: bounded; 10: grows with the rows)", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    arguments = parser.parse_args()
    backends = ("sqlite", "postgresql") if arguments.backend == "both" else (arguments.backend,)
    for backend in backends:
        await run_backend(backend, arguments.deliveries)


if __name__ == "__main__":
    asyncio.run(main())
