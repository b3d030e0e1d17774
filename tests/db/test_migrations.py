"""The migrations build the schema the models describe, and 0007 goes down and up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
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
