"""The migrations build the schema the models describe; 0007, 0011 and 0012 go down and up
again; 0013 fails the deliveries left pending for deleted endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from coverline.db.engine import normalise_url
from coverline.db.migrate import alembic_config, upgrade
from coverline.db.models import metadata
from tests.fixtures.database import fresh_database


async def _on(url: str, work: Any) -> Any:
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _request_id_columns(connection: Connection) -> dict[str, bool]:
    found = inspect(connection)
    return {
        table: "request_id" in {column["name"] for column in found.get_columns(table)}
        for table in ("events", "webhook_attempts")
    }


async def test_the_migrated_schema_is_the_models(database_url: str) -> None:
    assert await _on(database_url, _differences) == []


async def test_the_request_id_columns_go_down_and_up_again(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as url:
        await upgrade(url)
        assert await _on(url, _request_id_columns) == {"events": True, "webhook_attempts": True}

        def downgrade(connection: Connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")

        await _on(url, downgrade)
        assert await _on(url, _request_id_columns) == {"events": False, "webhook_attempts": False}
        await upgrade(url)
        assert await _on(url, _request_id_columns) == {"events": True, "webhook_attempts": True}
        assert await _on(url, _differences) == []


async def test_delivery_bodies_move_to_their_table_and_back(tmp_path: Path) -> None:
    """0011 moves the stored bodies out of the delivery rows; going down puts them back."""
    async with fresh_database(tmp_path) as url:
        await upgrade(url, "0010")

        def seed(connection: Connection) -> None:
            # Deliveries alone: no endpoint, event or partner rows behind them.
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET session_replication_role = replica")
            for number, body in ((1, b'{"a": 1}'), (2, None)):
                connection.execute(
                    text(
                        "INSERT INTO webhook_deliveries (id, public_id, endpoint_id, event_id,"
                        " part, event_type, partner_id, mode, ordering_key, body, status,"
                        " attempts, failures, next_attempt_at, created_at) VALUES (:id, :pid,"
                        " 1, :id, 0, 'BOOKING_CREATED', 1, 'live', 'ins_1', :body, 'succeeded',"
                        " 1, 0, :at, :at)"
                    ),
                    {"id": number, "pid": f"wd_{number}", "body": body, "at": datetime.now(UTC)},
                )

        def bodies(connection: Connection) -> list[tuple[str, bytes]]:
            rows = connection.execute(
                text("SELECT delivery_public_id, body FROM webhook_delivery_bodies ORDER BY 1")
            )
            return [(public_id, bytes(body)) for public_id, body in rows]

        def inline(connection: Connection) -> list[tuple[str, bytes | None]]:
            rows = connection.execute(
                text("SELECT public_id, body FROM webhook_deliveries ORDER BY id")
            )
            return [(public_id, None if body is None else bytes(body)) for public_id, body in rows]

        def downgrade(connection: Connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0010")

        await _on(url, seed)
        await upgrade(url)
        assert await _on(url, bodies) == [("wd_1", b'{"a": 1}')]
        await _on(url, downgrade)
        assert await _on(url, inline) == [("wd_1", b'{"a": 1}'), ("wd_2", None)]
        await upgrade(url)
        assert await _on(url, bodies) == [("wd_1", b'{"a": 1}')]
        assert await _on(url, _differences) == []


def _order_index(connection: Connection) -> str:
    """The definition of the claim's order-check index, as the database holds it."""
    if connection.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = 'ix_webhook_deliveries_order'"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_webhook_deliveries_order'"
    return str(connection.execute(text(query)).scalar_one())


async def test_the_order_index_is_whole_on_sqlite_and_partial_on_postgresql(
    tmp_path: Path,
) -> None:
    """0012: on SQLite the index's columns never change after the insert, so claims and results
    never write it; PostgreSQL keeps 0010's partial index (going down leaves it as it is)."""
    async with fresh_database(tmp_path) as url:
        await upgrade(url)
        sqlite = url.startswith("sqlite")
        columns = "(endpoint_id, ordering_key, id)"
        partial_sqlite = f"{columns} WHERE status IN ('pending', 'delivering')"
        current = await _on(url, _order_index)
        if sqlite:
            assert current.endswith(f"ON webhook_deliveries {columns}"), current
        else:
            assert "WHERE" in current and "'pending'" in current and "'delivering'" in current

        def downgrade(connection: Connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0011")

        await _on(url, downgrade)
        before = await _on(url, _order_index)
        if sqlite:
            assert before.endswith(partial_sqlite), before
        else:
            assert before == current
        await upgrade(url)
        assert await _on(url, _order_index) == current
        assert await _on(url, _differences) == []


async def test_deliveries_left_for_deleted_endpoints_are_failed(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as url:
        await upgrade(url, "0012")
        at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

        def seed(connection: Connection) -> None:
            # Rows alone: no partner or event behind them.
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET session_replication_role = replica")
            for number, deleted in ((1, at), (2, None)):
                connection.execute(
                    text(
                        "INSERT INTO webhook_endpoints (id, public_id, partner_id, mode, url,"
                        " enabled, format, signature, key, secret_ciphertext, created_at,"
                        " updated_at, deleted_at) VALUES (:id, :pid, 1, 'live',"
                        " 'https://hooks.example.com/', :enabled, 'xcover', 'xcover', 'k',"
                        " 's', :at, :at, :deleted)"
                    ),
                    {
                        "id": number,
                        "pid": f"we_{number}",
                        "enabled": deleted is None,
                        "at": at,
                        "deleted": deleted,
                    },
                )
            rows = [
                (1, 1, "pending", None),
                (2, 1, "delivering", "worker-a"),
                (3, 1, "succeeded", None),
                (4, 2, "pending", None),
                (5, 2, "delivering", "worker-a"),
            ]
            for number, endpoint, status, worker in rows:
                connection.execute(
                    text(
                        "INSERT INTO webhook_deliveries (id, public_id, endpoint_id, event_id,"
                        " part, event_type, partner_id, mode, ordering_key, status, attempts,"
                        " failures, next_attempt_at, created_at, leased_by, lease_expires_at)"
                        " VALUES (:id, :pid, :endpoint, :id, 0, 'BOOKING_CREATED', 1, 'live',"
                        " 'ins_1', :status, 0, 0, :at, :at, :worker, :lease)"
                    ),
                    {
                        "id": number,
                        "pid": f"wd_{number}",
                        "endpoint": endpoint,
                        "status": status,
                        "at": at,
                        "worker": worker,
                        "lease": at if worker else None,
                    },
                )

        def states(connection: Connection) -> list[tuple[Any, ...]]:
            rows = connection.execute(
                text(
                    "SELECT id, status, last_error, leased_by, completed_at IS NOT NULL"
                    " FROM webhook_deliveries ORDER BY id"
                )
            )
            return [tuple(row) for row in rows]

        await _on(url, seed)
        await upgrade(url)
        assert await _on(url, states) == [
            (1, "failed", "The endpoint was deleted.", None, True),
            (2, "failed", "The endpoint was deleted.", None, True),
            (3, "succeeded", None, None, False),
            (4, "pending", None, None, False),
            (5, "delivering", None, "worker-a", False),
        ]
