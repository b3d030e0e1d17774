"""The claim walks the pending deliveries of one endpoint in order and checks each against
the order index: no scan of the table, whatever it holds. On SQLite, from the plan of the
statement; on PostgreSQL, also when the table's statistics were taken before the deliveries
were brought forward (where a plan from them would read every due delivery and sort them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from coverline.db.sqlite import driver_connection
from coverline.runtime import Services
from coverline.webhooks.dispatcher.statements import RUN, SQL
from tests.conftest import PartnerFixture
from tests.fixtures.webhooks import add_endpoint

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.mark.sqlite
async def test_the_claim_uses_the_endpoint_and_order_indexes(services: Services) -> None:
    claim = RUN["claim"]
    async with services.database.transaction() as session:
        connection = await session.connection()
        raw = driver_connection(connection)
        assert raw is not None
        compiled = claim._for(connection.dialect)
        parameters = compiled.bind(
            {"endpoint": 1, "now": NOW, "limit": 10, "lease": NOW, "worker": "plan"}
        )
        plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", parameters)]
        definition = (
            await session.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_webhook_deliveries_order'")
            )
        ).scalar_one()
    assert plan == [
        "SEARCH webhook_deliveries USING INTEGER PRIMARY KEY (rowid=?)",
        "LIST SUBQUERY 2",
        "SEARCH candidate USING INDEX ix_webhook_deliveries_endpoint_due "
        "(endpoint_id=? AND next_attempt_at<?)",
        "CORRELATED SCALAR SUBQUERY 1",
        "SEARCH earlier USING INDEX ix_webhook_deliveries_order "
        "(endpoint_id=? AND ordering_key=? AND id<?)",
    ], plan
    # Whole: its columns never change, so claims and results never write it.
    assert "WHERE" not in definition


WAITING = 3000


@pytest.mark.postgresql
async def test_the_postgresql_claim_walks_the_endpoint_index_after_stale_statistics(
    services: Services, partner: PartnerFixture
) -> None:
    endpoint = await add_endpoint(partner.live, "https://hooks.example.com/plan")
    later = datetime.now(UTC) + timedelta(days=1)
    async with services.database.transaction() as session:
        endpoint_id = (
            await session.execute(
                text("SELECT id FROM webhook_endpoints WHERE public_id = :id"),
                {"id": endpoint["id"]},
            )
        ).scalar_one()
        event_id = (
            await session.execute(
                text(
                    "INSERT INTO events (public_id, partner_id, mode, type, resource_type, "
                    "resource_id, payload, occurred_at) VALUES (:public_id, :partner, 'live', "
                    "'BOOKING_CREATED', 'booking', 'PLAN-PLAN-INS', '{}', now()) RETURNING id"
                ),
                {"public_id": f"evt_plan_{partner.code}", "partner": partner.id},
            )
        ).scalar_one()
        # Deliveries waiting for a retry a day from now, one booking each.
        await session.execute(
            text(
                "INSERT INTO webhook_deliveries (public_id, endpoint_id, event_id, part, "
                "event_type, partner_id, mode, ordering_key, status, attempts, failures, "
                "next_attempt_at, created_at) SELECT :prefix || n, :endpoint, :event, n, "
                "'BOOKING_CREATED', :partner, 'live', 'PLAN-' || n, 'pending', 1, 1, :later, "
                "now() FROM generate_series(1, :count) AS n"
            ),
            {
                "prefix": f"wd_plan_{partner.code}_",
                "endpoint": endpoint_id,
                "event": event_id,
                "partner": partner.id,
                "later": later,
                "count": WAITING,
            },
        )
    async with services.database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        # What autovacuum would record while they wait: none of them due.
        await autocommit.execute(text("ANALYZE webhook_deliveries"))
        # Then brought forward to now, as a recovery of failed deliveries or a redelivery
        # does, before the statistics are taken again.
        now = datetime.now(UTC)
        await autocommit.execute(
            text("UPDATE webhook_deliveries SET next_attempt_at = :now WHERE endpoint_id = :e"),
            {"now": now, "e": endpoint_id},
        )
        compiled = SQL["due_locking"].compile(dialect=connection.dialect)
        values = {"endpoint": endpoint_id, "now": now, "limit": 32}
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        arguments = [values[name] for name in compiled.positiontup or ()]
        rows = await raw.fetch(f"EXPLAIN (ANALYZE, FORMAT TEXT) {compiled.string}", *arguments)
        await autocommit.execute(
            text("DELETE FROM webhook_deliveries WHERE endpoint_id = :endpoint"),
            {"endpoint": endpoint_id},
        )
    plan = "\n".join(row[0] for row in rows)
    assert "Index Scan using ix_webhook_deliveries_endpoint_due" in plan, plan
    assert "Sort" not in plan, plan
    # It stopped at the limit instead of reading every due delivery.
    assert "rows=32 loops=1" in plan.splitlines()[0], plan
