"""SQLite's WAL is checkpointed on a thread after a commit, not by the commits in the event
loop's thread: the WAL file stays as small as what is written between two checkpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from coverline.db import engine as db_engine
from coverline.db.engine import Database

ROW = b"x" * 60_000
TRANSACTIONS = 150  # about 9 MB written, twice the WAL the ticks below allow


async def _write_and_measure(database: Database, wal: Path, *, pause: float) -> int:
    """Write TRANSACTIONS rows of ROW, one transaction each; the largest the WAL file grew."""
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    largest = 0
    for number in range(TRANSACTIONS):
        async with database.transaction() as session:
            await session.execute(
                text("INSERT INTO blobs (id, data) VALUES (:id, :data)"),
                {"id": number, "data": ROW},
            )
        largest = max(largest, wal.stat().st_size)
        await asyncio.sleep(pause)
    return largest


@pytest.mark.sqlite
async def test_checkpoints_keep_the_wal_small(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    database = Database(f"sqlite:///{path}", checkpoint_seconds=0.2)
    try:
        async with database.reading() as session:
            # The engines' connections leave checkpoints to the `Checkpointer`.
            assert (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        # 0.2 s between checkpoints, 20 ms between transactions: about ten transactions
        # (600 kB) between two checkpoints.
        largest = await _write_and_measure(database, Path(f"{path}-wal"), pause=0.02)
    finally:
        await database.dispose()
    assert largest < 3_000_000, largest


@pytest.mark.sqlite
async def test_without_checkpoints_the_same_writes_grow_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measure of the test above can fail: with no checkpoints, the WAL holds it all."""

    monkeypatch.setattr(db_engine.Checkpointer, "run", lambda _self: None)
    path = tmp_path / "no-checkpoints.db"
    database = Database(f"sqlite:///{path}", checkpoint_seconds=0.2)
    try:
        largest = await _write_and_measure(database, Path(f"{path}-wal"), pause=0.02)
    finally:
        await database.dispose()
    assert largest > TRANSACTIONS * len(ROW), largest
