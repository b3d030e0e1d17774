"""The claim on SQLite walks the pending deliveries of one endpoint in order and checks each
against the order index: no scan of the table, whatever it holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from coverline.db.sqlite import driver_connection
from coverline.runtime import Services
from coverline.webhooks.dispatcher.statements import RUN

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
