"""`Prepared` statements store and return exactly what SQLAlchemy's own execution does, in the
caller's transaction, on both backends, where they run on the driver's connection (sqlite3,
asyncpg)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from coverline.db.base import UTCDateTime
from coverline.db.engine import Database
from coverline.db.prepared import Prepared
from coverline.db.sqlite import driver_connection
from coverline.runtime import Services

AT = datetime(2026, 12, 2, 10, 30, 15, 123456, tzinfo=UTC)
KEYS = ("id", "name", "at", "document")


@pytest.fixture
async def probe(services: Services) -> AsyncIterator[Table]:
    """A table of its own in the suite's database, dropped afterwards."""
    table = Table(
        f"prepared_probe_{secrets.token_hex(4)}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(20), nullable=False, unique=True),
        Column("at", UTCDateTime()),
        Column("document", JSON),
        Column("state", String(12), nullable=False, server_default="new"),
    )
    async with services.database.engine.begin() as connection:
        await connection.run_sync(table.create)
    yield table
    async with services.database.engine.begin() as connection:
        await connection.run_sync(table.drop)


def _rows() -> list[dict[str, object]]:
    return [
        {"id": 1, "name": "one", "at": AT, "document": {"a": [1, "é"], "b": None}},
        {"id": 2, "name": "two", "at": AT + timedelta(hours=5), "document": None},
        {"id": 3, "name": "three", "at": None, "document": {"nested": {"x": 1.5}}},
    ]


async def _stored(database: Database, table: Table) -> list[tuple[object, ...]]:
    """The rows as the database holds them, read as text where SQLite stores text."""
    c = table.c
    async with database.reading() as session:
        result = await session.execute(
            text(
                f"SELECT id, name, CAST(at AS TEXT), CAST(document AS TEXT), state "
                f"FROM {table.name} ORDER BY id"
            )
        )
        raw = [tuple(row) for row in result.all()]
        typed = (await session.execute(select(c.id, c.at, c.document).order_by(c.id))).all()
    return raw + [tuple(row) for row in typed]


async def test_stores_what_sqlalchemy_stores(services: Services, probe: Table) -> None:
    database = services.database
    async with database.transaction() as session:
        await session.execute(insert(probe), _rows())
    through_sqlalchemy = await _stored(database, probe)
    async with database.transaction() as session:
        await session.execute(probe.delete())

    prepared = Prepared(insert(probe), keys=KEYS)
    # Neither backend runs it through SQLAlchemy's execution: no cursor event.
    executed: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        executed.append(statement)

    engine = database.engine.sync_engine
    async with database.transaction() as session:
        connection = await session.connection()
        assert (driver_connection(connection) is not None) == database.is_sqlite
        event.listen(engine, "before_cursor_execute", seen)
        try:
            await prepared.executemany(connection, _rows())
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert executed == []
    assert await _stored(database, probe) == through_sqlalchemy
    # The typed reads at the end: aware UTC datetimes and decoded JSON.
    assert through_sqlalchemy[-3:] == [
        (1, AT, {"a": [1, "é"], "b": None}),
        (2, AT + timedelta(hours=5), None),
        (3, None, {"nested": {"x": 1.5}}),
    ]


async def test_returning_rows_come_back_processed(services: Services, probe: Table) -> None:
    database = services.database
    async with database.transaction() as session:
        await Prepared(insert(probe), keys=KEYS).executemany(await session.connection(), _rows())
    c = probe.c
    # A value fixed by the statement ('moved') and bound ones, one of them a datetime.
    statement = (
        update(probe)
        .where(c.at < bindparam("before", type_=UTCDateTime()))
        .values(state="moved", name=c.name + bindparam("suffix"))
        .returning(c.id, c.name, c.at, c.document, c.state)
    )
    async with database.transaction() as session:
        rows = await Prepared(statement).execute(
            await session.connection(), {"before": AT + timedelta(hours=1), "suffix": "!"}
        )
    assert rows == [(1, "one!", AT, {"a": [1, "é"], "b": None}, "moved")]
    async with database.reading() as session:
        states = (await session.execute(select(c.id, c.state).order_by(c.id))).all()
    assert [tuple(row) for row in states] == [(1, "moved"), (2, "new"), (3, "new")]


async def test_runs_in_the_callers_transaction(services: Services, probe: Table) -> None:
    database = services.database
    prepared = Prepared(insert(probe), keys=KEYS)
    with pytest.raises(RuntimeError, match="abandoned"):
        async with database.transaction() as session:
            await prepared.executemany(await session.connection(), _rows()[:1])
            raise RuntimeError("abandoned")
    async with database.reading() as session:
        count = (await session.execute(text(f"SELECT count(*) FROM {probe.name}"))).scalar()
    assert count == 0


async def test_driver_errors_are_sqlalchemys_without_parameters(
    services: Services, probe: Table
) -> None:
    database = services.database
    prepared = Prepared(insert(probe), keys=KEYS)
    async with database.transaction() as session:
        await prepared.executemany(await session.connection(), _rows()[:1])
    duplicate = {**_rows()[1], "name": "one"}  # the unique name again
    with pytest.raises(IntegrityError) as raised:
        async with database.transaction() as session:
            await prepared.executemany(await session.connection(), [duplicate])
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(raised.value)
    async with database.reading() as session:
        names = (await session.execute(select(probe.c.name))).scalars().all()
    assert names == ["one"]


@pytest.mark.sqlite
async def test_an_expanding_parameter_is_refused(services: Services, probe: Table) -> None:
    statement = select(probe.c.id).where(probe.c.id.in_(bindparam("ids", expanding=True)))
    async with services.database.transaction() as session:
        with pytest.raises(TypeError, match="'ids' cannot be prepared once"):
            await Prepared(statement).execute(await session.connection(), {"ids": [1]})


async def test_execute_each_returns_each_rows_id_in_order(services: Services, probe: Table) -> None:
    database = services.database
    c = probe.c
    statement = insert(probe).returning(c.id, c.state, sort_by_parameter_order=True)
    # Ids out of their natural order: the answer follows the values, not the table.
    rows = [{**row, "id": 10 - int(str(row["id"]))} for row in _rows()]
    async with database.transaction() as session:
        returned = await Prepared(statement, keys=KEYS).execute_each(
            await session.connection(), rows
        )
        assert (
            await Prepared(statement, keys=KEYS).execute_each(await session.connection(), []) == []
        )
        # One row: on PostgreSQL too, on the driver's connection.
        alone = await Prepared(statement, keys=KEYS).execute_each(
            await session.connection(), [{**_rows()[0], "id": 4, "name": "four"}]
        )
    assert returned == [(9, "new"), (8, "new"), (7, "new")]
    assert alone == [(4, "new")]
    assert (await _stored(database, probe))[-4:] == [
        (4, AT, {"a": [1, "é"], "b": None}),
        (7, None, {"nested": {"x": 1.5}}),
        (8, AT + timedelta(hours=5), None),
        (9, AT, {"a": [1, "é"], "b": None}),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "moved"}, r"not among them \['state'\], missing \[\]"),
        ({"document": None, "at": None, "extra": 1}, r"not among them \['extra'\], missing \[\]"),
    ],
)
async def test_a_row_with_values_outside_the_keys_is_refused(
    services: Services, probe: Table, change: dict[str, object], message: str
) -> None:
    database = services.database
    prepared = Prepared(insert(probe).returning(probe.c.id), keys=KEYS)
    # The second row carries a value the statement was not compiled for: SQLite would drop it.
    rows = [_rows()[0], {**_rows()[1], **change}]
    async with database.transaction() as session:
        connection = await session.connection()
        with pytest.raises(TypeError, match=message):
            await prepared.executemany(connection, rows)
        with pytest.raises(TypeError, match=message):
            await prepared.execute_each(connection, rows)
        with pytest.raises(TypeError, match=message):
            await prepared.execute(connection, rows[1])
    assert await _stored(database, probe) == []


async def test_a_row_missing_one_of_the_keys_is_refused(services: Services, probe: Table) -> None:
    database = services.database
    row = {key: value for key, value in _rows()[0].items() if key != "document"}
    async with database.transaction() as session:
        with pytest.raises(TypeError, match=r"not among them \[\], missing \['document'\]"):
            await Prepared(insert(probe), keys=KEYS).executemany(await session.connection(), [row])
    assert await _stored(database, probe) == []
