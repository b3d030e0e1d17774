"""Engines and sessions.

SQLite runs in WAL mode with `synchronous=NORMAL` and a busy timeout; writing transactions
start with `BEGIN IMMEDIATE` so that a read-then-write never fails half-way on a lock upgrade.
Reads use a second engine whose transactions begin deferred, so they never queue behind writers.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# SQLSTATEs of a server that is not there to answer: connection exceptions (class 08),
# administrator or crash shutdown, and "cannot connect now" (starting up, shutting down).
UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


NETWORK_ERRNOS = frozenset(
    (
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    )
)


def _network_error(exc: OSError) -> bool:
    # asyncio joins the failures of a host with several addresses (localhost: ::1 and
    # 127.0.0.1) into a plain OSError without an errno; a missing file and the like are
    # subclasses with theirs, and stay bugs.
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return exc.errno in NETWORK_ERRNOS or (type(exc) is OSError and exc.errno is None)


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says that the database could not be reached (refused, reset, restarting,
    no free connection in the pool), rather than that a statement was wrong: the first is
    worth a retry a moment later, the second is a bug."""
    if isinstance(exc, PoolTimeout | InterfaceError):
        return True
    if isinstance(exc, OSError):
        return _network_error(exc)
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNREACHABLE_SQLSTATES)


def normalise_url(url: str) -> str:
    """Accept the plain URLs operators write and pick the async drivers."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver in {"sqlite", "sqlite+pysqlite"}:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        connect_args={"timeout": 30},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """The writing engine and the reading engine of one database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, "BEGIN IMMEDIATE", pool_size=4)
            self.read_engine = _sqlite_engine(self.url, "BEGIN", pool_size=pool_size)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.read_engine = self.engine
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing writers of this process in the event
        # loop beats letting them poll inside SQLite's busy handler (sleeps of up to 100 ms);
        # other processes still wait on BEGIN IMMEDIATE.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One writing unit of work: committed on success, rolled back on any error."""
        if self._write_lock is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
