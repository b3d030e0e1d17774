"""Statements run on the driver's own connection, for the loops where SQLAlchemy's execution
machinery costs more than the statement does (the webhook dispatcher's turns, the outbox).

On SQLite (the inline driver of `coverline.db.sqlite`), a `Prepared` statement is compiled once
for the engine's dialect. Running it binds the values with the column types' own processors,
so the text and numbers stored are those SQLAlchemy would store, and executes it on the
`sqlite3` connection of the caller's transaction: no execution context, no result object, no
switch of greenlet (in the dispatcher's profile, that machinery took more of the worker's
time than SQLite spent on the statements).

On PostgreSQL (asyncpg), the statement compiled for that dialect runs on the asyncpg connection
of the caller's transaction, with the values bound the same way: asyncpg prepares it once per
connection and each run is one round trip, as through SQLAlchemy, without the execution
machinery around it (130 -> 53 us of CPU per statement). The transaction is SQLAlchemy's: if
the adapter has not sent its BEGIN yet (it waits for the first statement), it is sent first.
An `execute_each` of several rows goes through SQLAlchemy, which sends them in one statement.

Rows come back as tuples of processed values (aware datetimes, decoded JSON), in the order of
the statement's columns. A driver error is raised as SQLAlchemy's `DBAPIError`, as it would be
through SQLAlchemy, with the parameters left out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from coverline.db.sqlite import driver_connection

ASYNCPG = "asyncpg"

Processor = Callable[[Any], Any] | None


class _Compiled:
    """A statement's SQL text for one dialect, with what turns a row of named values into the
    driver's positional parameters and the driver's rows into processed values."""

    __slots__ = ("_results", "_slots", "sql")

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name} does not take positional parameters")
        self.sql: str = compiled.string
        # Per positional parameter: its name (None when the statement fixes the value), the
        # fixed value, and the type's processor.
        slots: list[tuple[str | None, Any, Processor]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            if bind.expanding or bind.literal_execute or bind.callable is not None:
                raise TypeError(f"parameter {name!r} cannot be prepared once")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                slots.append((name, None, processor))
            else:
                fixed = bind.value if processor is None else processor(bind.value)
                slots.append((None, fixed, None))
        self._slots = tuple(slots)
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "exported_columns", ())
        )
        # None when the driver's values are the values already (or there are no rows).
        self._results: tuple[Processor, ...] | None = processors if any(processors) else None

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        bound = []
        for name, fixed, processor in self._slots:
            if name is None:
                bound.append(fixed)
            elif processor is None:
                bound.append(values[name])
            else:
                bound.append(processor(values[name]))
        return bound

    def rows(self, raw: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        processors = self._results
        if processors is None:
            return raw
        return [
            tuple(
                value if processor is None else processor(value)
                for processor, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]


class Prepared:
    """One statement, compiled once per dialect and run on the driver's connection of the
    caller's transaction (sqlite3, asyncpg), through SQLAlchemy for any other driver.

    `keys` names the values of each row of an INSERT (`execute`, `executemany`,
    `execute_each`): every column it sets, for SQLAlchemy's column defaults are not applied
    here. A row whose names are not exactly those is refused (`TypeError`) before anything
    runs: a value left out of `keys` would otherwise be dropped without a word."""

    __slots__ = ("_compiled", "_keys", "_names", "statement")

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._keys = tuple(keys) if keys is not None else None
        self._names = frozenset(keys) if keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _check(self, rows: Sequence[Mapping[str, Any]]) -> None:
        names = self._names
        if names is None:
            return
        for row in rows:
            if row.keys() != names:
                extra = sorted(row.keys() - names)
                missing = sorted(names - row.keys())
                raise TypeError(
                    f"a row's values are not the statement's keys: "
                    f"not among them {extra}, missing {missing}"
                )

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = _Compiled(self.statement, dialect, self._keys)
            self._compiled[dialect.name] = compiled
        return compiled

    async def execute(
        self, connection: AsyncConnection, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run the statement once; its rows, if it returns any."""
        self._check((values,))
        raw, adapted = _drivers(connection)
        if raw is None and adapted is None:
            result = await connection.execute(self.statement, values)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
        compiled = self._for(connection.dialect)
        return compiled.rows(await _run(raw, adapted, compiled.sql, compiled.bind(values)))

    async def execute_each(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Run a statement that returns one row (an INSERT … RETURNING) once per row of values;
        the rows it returned, in the order of the values. Elsewhere than SQLite the statement
        runs once for all of them, so its RETURNING must keep their order
        (`sort_by_parameter_order=True`)."""
        if not rows:
            return []
        self._check(rows)
        raw, adapted = _drivers(connection)
        if raw is None and (adapted is None or len(rows) > 1):
            # SQLAlchemy sends several rows in one statement.
            result = await connection.execute(self.statement, list(rows))
            return [tuple(row) for row in result.all()]
        compiled = self._for(connection.dialect)
        returned: list[tuple[Any, ...]] = []
        for row in rows:
            returned.extend(await _run(raw, adapted, compiled.sql, compiled.bind(row)))
        return compiled.rows(returned)

    async def executemany(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run the statement once per row of values (no rows returned)."""
        if not rows:
            return
        self._check(rows)
        raw, adapted = _drivers(connection)
        if raw is None and adapted is None:
            await connection.execute(self.statement, list(rows))
            return
        compiled = self._for(connection.dialect)
        parameters = [compiled.bind(row) for row in rows]
        await _run(raw, adapted, compiled.sql, parameters, many=True)


def _drivers(connection: AsyncConnection) -> tuple[Any | None, Any | None]:
    """The `sqlite3` connection of `connection`'s transaction, or SQLAlchemy's adapter of its
    asyncpg one; (None, None) for any other driver."""
    raw = driver_connection(connection)
    return (raw, None) if raw is not None else (None, _asyncpg(connection))


async def _run(
    raw: Any | None, adapted: Any | None, sql: str, parameters: Any, *, many: bool = False
) -> list[tuple[Any, ...]]:
    """Run `sql` on the `sqlite3` connection `raw`, or else on the asyncpg connection of
    `adapted`; its rows (none when `many`)."""
    if raw is None:
        return await _fetch(adapted, sql, parameters, many=many)
    try:
        if many:
            raw.executemany(sql, parameters)
            return []
        rows: list[tuple[Any, ...]] = raw.execute(sql, parameters).fetchall()
    except sqlite3.Error as exc:
        raise _wrapped(sql, parameters, exc) from exc
    return rows


def _asyncpg(connection: AsyncConnection) -> Any | None:
    """SQLAlchemy's adapter of the asyncpg connection under `connection`, when it has one
    and is in a transaction; None otherwise."""
    sync = connection.sync_connection
    if sync is None or sync.dialect.driver != ASYNCPG or not sync.in_transaction():
        return None
    return sync.connection.dbapi_connection


async def _fetch(
    adapted: Any, sql: str, parameters: list[Any], *, many: bool = False
) -> list[tuple[Any, ...]]:
    """Run `sql` on the asyncpg connection of `adapted`, in the transaction SQLAlchemy began
    (sending its BEGIN if no statement has yet); the rows as tuples. An error is raised as
    SQLAlchemy would raise it (the adapter's translation, wrapped in `DBAPIError`)."""
    async with adapted._execute_mutex:
        try:
            if adapted._transaction is None:
                await adapted._start_transaction()
            driver = adapted.driver_connection
            if many:
                await driver.executemany(sql, parameters)
                return []
            return [tuple(record) for record in await driver.fetch(sql, *parameters)]
        except adapted.dbapi.Error as exc:
            raise _lost(adapted, sql, parameters, exc) from exc
        except Exception as exc:
            try:
                adapted._handle_exception(exc)
            except adapted.dbapi.Error as translated:
                raise _lost(adapted, sql, parameters, translated) from exc
            raise


def _lost(adapted: Any, sql: str, parameters: Any, exc: Exception) -> StatementError:
    """The error as SQLAlchemy raises it, saying whether the connection was lost with it (a
    closed connection is replaced when it is next taken from the pool)."""
    return _wrapped(
        sql,
        parameters,
        exc,
        adapted.dbapi.Error,
        invalidated=adapted.driver_connection.is_closed(),
    )


def _wrapped(
    sql: str,
    parameters: Any,
    exc: Exception,
    dbapi_error: type[Exception] = sqlite3.Error,
    *,
    invalidated: bool = False,
) -> StatementError:
    return DBAPIError.instance(
        sql,
        parameters,
        exc,
        dbapi_error,
        hide_parameters=True,
        connection_invalidated=invalidated,
    )
