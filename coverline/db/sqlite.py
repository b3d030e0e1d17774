"""SQLite for the asyncio engine, without a driver thread.

aiosqlite runs every cursor call on a thread of its own: each `execute`, `fetch` and `commit`
is a hand-off to that thread and back through the event loop, and the two threads take turns
on the GIL. A SQLite statement on a local file in WAL mode takes microseconds, less than the
hand-off, so this dialect runs the standard `sqlite3` module in the event loop's thread and
lets SQLAlchemy's asyncio layer treat it as a driver whose operations complete at once.

The price: a statement blocks the event loop while it runs. Coverline's statements are
indexed and small; the writers of one process queue in the event loop
(`Database.transaction`), so SQLite's busy handler only ever waits for another process (a CLI
command, say).

A database file that does not exist yet is created readable and writable by its owner alone
(0600, whatever a umask of the usual kind, 022 or 002, would allow): it holds customers'
personal data. SQLite gives its WAL and shared-memory files the database file's permissions.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, cast

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool
from sqlalchemy.util import await_


async def _completed() -> None:
    return None


class _Cursor:
    """A `sqlite3` cursor whose executions count as awaited, as SQLAlchemy's asyncio layer
    requires of a statement; the await completes without a trip through the event loop."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, *args: Any) -> _Cursor:
        await_(_completed())
        self._cursor.execute(*args)
        return self

    def executemany(self, *args: Any) -> _Cursor:
        await_(_completed())
        self._cursor.executemany(*args)
        return self

    def __iter__(self) -> Any:
        return iter(self._cursor)

    async def _async_soft_close(self) -> None:
        """Results are fetched whole already: nothing to release early."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _Connection:
    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        object.__setattr__(self, "_connection", connection)

    def cursor(self) -> _Cursor:
        return _Cursor(self._connection.cursor())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)

    @property
    def sqlite(self) -> sqlite3.Connection:
        return cast(sqlite3.Connection, self._connection)


def driver_connection(connection: AsyncConnection) -> sqlite3.Connection | None:
    """The `sqlite3` connection under `connection`, in its transaction, when it is one of
    this dialect's; None for any other driver (whose statements must be awaited)."""
    sync = connection.sync_connection
    if sync is None or sync.dialect.driver != SQLiteDialectInline.driver:
        return None
    dbapi = sync.connection.dbapi_connection
    return dbapi.sqlite if isinstance(dbapi, _Connection) else None


class SQLiteDialectInline(SQLiteDialect_pysqlite):
    driver = "coverline"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[Pool]:
        return AsyncAdaptedQueuePool

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        database = args[0] if args else kwargs.get("database")
        if isinstance(database, str) and not kwargs.get("uri"):
            _create_private(database)
        return _Connection(cast(sqlite3.Connection, super().connect(*args, **kwargs)))

    def get_driver_connection(self, connection: Any) -> Any:
        return connection


def _create_private(database: str) -> None:
    """Create the file of a new database with mode 0600 (an existing one is left as it is)."""
    if database in ("", ":memory:"):
        return
    try:
        descriptor = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        # It exists, or cannot be made here: SQLite opens it, or says why not, as before.
        return
    os.close(descriptor)


dialect = SQLiteDialectInline
