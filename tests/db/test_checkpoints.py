"""SQLite's WAL is checkpointed on a thread after a commit, not by the commits in the event
loop's thread: the WAL file stays as small as what is written between two checkpoints."""

from __future__ import annotations

import asyncio
import threading
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


async def _write_without_pause(path: Path, seconds: float = 2.0) -> tuple[int, int]:
    """Write rows of ROW back to back for `seconds` into a new database at `path`, checkpointed
    every 0.1 s, so that checkpoints run while the writers go on: the rows written, and the
    largest the WAL file grew."""
    database = Database(f"sqlite:///{path}", checkpoint_seconds=0.1)
    try:
        largest = await _write_back_to_back(database, Path(f"{path}-wal"), seconds)
        async with database.reading() as session:
            written = (await session.execute(text("SELECT count(*) FROM blobs"))).scalar_one()
    finally:
        await database.dispose()
    return written, largest


async def _write_back_to_back(database: Database, wal: Path, seconds: float) -> int:
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    largest = 0
    number = 0
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        async with database.transaction() as session:
            await session.execute(
                text("INSERT INTO blobs (id, data) VALUES (:id, :data)"),
                {"id": number, "data": ROW},
            )
        number += 1
        largest = max(largest, wal.stat().st_size)
        # Let the checkpoint's task start and wait on its thread: the writes go on meanwhile.
        await asyncio.sleep(0)
    return largest


@pytest.mark.sqlite
async def test_writers_go_on_during_a_checkpoint_yet_the_wal_starts_again(
    tmp_path: Path,
) -> None:
    """The first pass copies the WAL while the writers go on, so it rarely copies it whole; the
    second, holding the write lock, copies the rest, and the next writer starts the WAL again
    from its beginning."""
    written, largest = await _write_without_pause(tmp_path / "busy.db")
    # Far more written than the WAL ever held.
    assert written * len(ROW) > 3 * largest, (written, largest)


@pytest.mark.sqlite
async def test_without_the_second_pass_busy_writers_grow_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measure of the test above can fail: with the first pass alone, the WAL is never
    copied whole between two writers and grows with everything written."""

    original = db_engine.Checkpointer.run
    passes = 0

    def first_pass_only(self: db_engine.Checkpointer) -> None:
        nonlocal passes
        passes += 1
        if passes % 2:
            original(self)

    monkeypatch.setattr(db_engine.Checkpointer, "run", first_pass_only)
    written, largest = await _write_without_pause(tmp_path / "busy-first-pass.db")
    assert written * len(ROW) < 2 * largest, (written, largest)


@pytest.mark.sqlite
async def test_a_writer_commits_while_the_first_pass_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copying = threading.Event()
    go_on = threading.Event()
    original = db_engine.Checkpointer.run
    passes = 0

    def slow_first_pass(self: db_engine.Checkpointer) -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            copying.set()
            # A long copy: the test writes meanwhile.
            go_on.wait(10)
        original(self)

    monkeypatch.setattr(db_engine.Checkpointer, "run", slow_first_pass)
    path = tmp_path / "first-pass.db"
    database = Database(f"sqlite:///{path}", checkpoint_seconds=0.0)
    try:
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
        assert await asyncio.to_thread(copying.wait, 10)
        # The checkpoint is under way on its thread; the write lock is free.
        async with asyncio.timeout(5):
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO notes (id) VALUES (1)"))
        go_on.set()
    finally:
        go_on.set()
        await database.dispose()
    assert passes == 2
    database = Database(f"sqlite:///{path}")
    try:
        async with database.reading() as session:
            assert (await session.execute(text("SELECT id FROM notes"))).scalars().all() == [1]
    finally:
        await database.dispose()
