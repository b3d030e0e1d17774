"""On PostgreSQL, a pooled connection that the server has closed is replaced as it is taken
from the pool (no `pool_pre_ping`, which asks the server in three round trips before every
transaction): the transaction that takes it runs on a new connection and succeeds."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from coverline.runtime import Services
from tests.fixtures.database import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.postgresql


async def _backend_pid(services: Services) -> int:
    async with services.database.transaction() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_the_server_closed_is_replaced_at_checkout(services: Services) -> None:
    engine = services.database.engine
    await engine.dispose()
    pid = await _backend_pid(services)
    # That connection is back in the pool, the only one there: the next transaction takes it.
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        for _ in range(100):
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                break
            await asyncio.sleep(0.02)
    finally:
        await admin.close()
    # The end of its socket reaches the event loop.
    await asyncio.sleep(0.1)

    replacement = await _backend_pid(services)
    assert replacement != pid
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
