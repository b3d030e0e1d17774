"""Engines, sessions and wake-ups.

SQLite runs in WAL mode with `synchronous=NORMAL` and a busy timeout; writing transactions
start with `BEGIN IMMEDIATE` so that a read-then-write never fails half-way on a lock upgrade.
Reads use a second engine whose transactions begin deferred, so they never queue behind writers.
The WAL is checkpointed on a thread (`Checkpointer`), not by whichever commit finds it long:
statements run in the event loop's thread, and a checkpoint there stopped the loop.

A transaction that creates work for a worker (a webhook delivery, say) asks to `wake` its
channel. Once it commits, the subscribers of this process are called at once; on PostgreSQL the
transaction also sends a NOTIFY, so that the workers of other processes and machines, which
`listen`, wake too. Nothing is lost when a wake-up is: workers also poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event, func, select
from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger("coverline.db")
registry.register("sqlite.coverline", "coverline.db.sqlite", "SQLiteDialectInline")

Subscriber = Callable[[set[str]], None]
WAKE_INFO = "wake"
BEFORE_COMMIT_INFO = "before_commit"
BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


def before_commit(session: AsyncSession, work: BeforeCommit) -> None:
    """Run `work` in the transaction, just before it commits (once, however often asked)."""
    hooks: list[BeforeCommit] = session.info.setdefault(BEFORE_COMMIT_INFO, [])
    if work not in hooks:
        hooks.append(work)


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


JSON_OPTIONS: dict[str, Any] = {
    "json_serializer": _json_serializer,
    "json_deserializer": orjson.loads,
}


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
    elif driver in {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}:
        parsed = parsed.set(drivername="sqlite+coverline")
    return parsed.render_as_string(hide_password=False)


CHECKPOINT_SECONDS = 1.0


class WriteLock:
    """The write lock of one process on a SQLite database: waiters are served in the order
    they came, except that those that ask `first` go before every other.

    The dispatcher's turn asks `first`. Every delivery committed meanwhile waits for its next
    claim, and the turn holds the lock for a few milliseconds; behind a queue of requests'
    transactions (each of tens of events, say) it waited up to tens of milliseconds. A request
    waits at most one turn longer, since a turn is never due again at once.

    The lock is handed over: a release gives it to the next waiter directly, so that no
    newcomer takes it in between."""

    def __init__(self) -> None:
        self._locked = False
        self._first: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @property
    def locked(self) -> bool:
        return self._locked

    @asynccontextmanager
    async def held(self, *, first: bool = False) -> AsyncIterator[None]:
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if not self._locked:
            self._locked = True
            return
        queue = self._first if first else self._others
        future = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Handed the lock as this waiter was cancelled: hand it on.
                self._release()
            raise
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(future)

    def _release(self) -> None:
        for queue in (self._first, self._others):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._locked = False


class Checkpointer:
    """Checkpoints a SQLite database's WAL on a connection of its own, off the event loop.

    The engines' connections never checkpoint as they commit (SQLite's default would, in the
    event loop's thread, every thousand pages). Instead, at most every `CHECKPOINT_SECONDS`,
    the write transaction that has just committed starts a checkpoint in two passive passes on
    a thread (`sqlite3` lets go of the GIL while SQLite copies the pages and syncs the file):
    the first while the writers go on, which copies the pages of the whole interval (25-35 ms
    at 500 events a second); then a second one holding the process's write lock, which copies
    only the pages written meanwhile. The next writer then finds the WAL
    checkpointed whole, so SQLite starts it again from its beginning and the file stays as
    small as the writes of one interval. Holding the lock through the whole checkpoint stopped
    every writer, the dispatcher's turns too, once a second for its full length. A checkpoint
    that fails (another process holds the file, say) is tried again after the next commit."""

    def __init__(self, path: str, seconds: float = CHECKPOINT_SECONDS) -> None:
        self._path = path
        self._seconds = seconds
        self._last = time.monotonic()
        self._connection: sqlite3.Connection | None = None
        self._guard = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._seconds

    def run(self) -> None:
        """One passive checkpoint (blocking: run it on a thread)."""
        self._last = time.monotonic()
        with self._guard:
            try:
                if self._connection is None:
                    self._connection = sqlite3.connect(
                        self._path, timeout=0, isolation_level=None, check_same_thread=False
                    )
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.debug("SQLite checkpoint deferred: %s", exc)

    def close(self) -> None:
        with self._guard:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _sqlite_engine(
    url: str, begin: str, pool_size: int, *, checkpoints: bool = True
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        # The connection used last first: SQLite empties a connection's page cache when
        # another connection has written since its last transaction, so rotating through
        # the pool would read every page again after each commit.
        pool_use_lifo=True,
        connect_args={"timeout": 30},
        hide_parameters=True,
        **JSON_OPTIONS,
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
        if not checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _postgresql_engine(url: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        hide_parameters=True,
        **JSON_OPTIONS,
    )

    # A connection the server has closed (a restart, an idle timeout, a terminated backend)
    # is known to asyncpg as soon as the event loop has read the end of its socket: one taken
    # from the pool in that state is replaced before it is used. SQLAlchemy's `pool_pre_ping`
    # would ask the server instead, in three round trips (BEGIN, ";", ROLLBACK) before every
    # transaction. A connection that dies unnoticed fails the statement that finds it dead
    # (an error `database_unreachable` calls an outage: a 503), and is replaced when it is
    # next taken from the pool.
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this connection")

    return engine


class Database:
    """The writing engine and the reading engine of one database.

    The engines leave the parameters out of their errors: an unexpected database error is
    logged with its message, and the parameters are customers' data.
    """

    def __init__(
        self, url: str, *, pool_size: int = 10, checkpoint_seconds: float = CHECKPOINT_SECONDS
    ) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self._checkpointer: Checkpointer | None = None
        if self.dialect == "sqlite":
            path = _sqlite_file(self.url)
            if path is not None:
                self._checkpointer = Checkpointer(path, checkpoint_seconds)
            checkpoints = self._checkpointer is None
            self.engine = _sqlite_engine(
                self.url, "BEGIN IMMEDIATE", pool_size=4, checkpoints=checkpoints
            )
            self.read_engine = _sqlite_engine(
                self.url, "BEGIN", pool_size=pool_size, checkpoints=checkpoints
            )
        else:
            self.engine = _postgresql_engine(self.url, pool_size)
            self.read_engine = self.engine
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing writers of this process in the event
        # loop beats letting them poll inside SQLite's busy handler (sleeps of up to 100 ms);
        # other processes still wait on BEGIN IMMEDIATE.
        self._write_lock = WriteLock() if self.dialect == "sqlite" else None
        self._checkpointing: asyncio.Task[None] | None = None
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self, *, first: bool = False) -> AsyncIterator[AsyncSession]:
        """One writing unit of work: committed on success, rolled back on any error. On SQLite
        it waits for the process's write lock; `first` goes ahead of the other waiters (the
        dispatcher's turn: see `WriteLock`)."""
        lock = (
            self._write_lock.held(first=first)
            if self._write_lock is not None
            else contextlib.nullcontext()
        )
        async with lock, self._writer() as session:
            async with session.begin():
                yield session
                for work in session.info.get(BEFORE_COMMIT_INFO, ()):
                    await work(session)
                wakes: dict[str, set[str]] = session.info.get(WAKE_INFO, {})
                if wakes and not self.is_sqlite:
                    await self._notify(session, wakes)
            if wakes:
                self._wake_here(wakes)
            if self._checkpointer is not None and self._checkpointer.due():
                self._start_checkpoint(self._checkpointer)

    def _start_checkpoint(self, checkpointer: Checkpointer) -> None:
        if self._checkpointing is not None:
            return
        self._checkpointing = asyncio.create_task(self._checkpoint(checkpointer))

    async def _checkpoint(self, checkpointer: Checkpointer) -> None:
        """The two passes of `Checkpointer`, the second with the write lock."""
        assert self._write_lock is not None
        try:
            await asyncio.to_thread(checkpointer.run)
            async with self._write_lock.held():
                await asyncio.to_thread(checkpointer.run)
        except Exception:
            log.exception("SQLite checkpoint failed")
        finally:
            self._checkpointing = None

    # ------------------------------------------------------------------ wake-ups
    @staticmethod
    def wake(session: AsyncSession, channel: str, payloads: Iterable[str]) -> None:
        """Ask that the workers listening on `channel` be woken once this transaction commits;
        `payloads` tell them where the work is (e.g. endpoint ids)."""
        wakes: dict[str, set[str]] = session.info.setdefault(WAKE_INFO, {})
        wakes.setdefault(channel, set()).update(payloads)

    async def _notify(self, session: AsyncSession, wakes: dict[str, set[str]]) -> None:
        for channel, payloads in wakes.items():
            # NOTIFY payloads are limited to 8000 bytes; a wake-up without payload means
            # "look everywhere".
            text = ",".join(sorted(payloads))
            await session.execute(select(func.pg_notify(channel, text if len(text) < 7000 else "")))

    def _wake_here(self, wakes: dict[str, set[str]]) -> None:
        for channel, payloads in wakes.items():
            for subscriber in self._subscribers.get(channel, ()):
                subscriber(payloads)

    @asynccontextmanager
    async def subscribed(self, channel: str, subscriber: Subscriber) -> AsyncIterator[None]:
        """Call `subscriber` with the payloads of every wake-up of `channel`: those committed
        in this process and, on PostgreSQL, those of every other process."""
        self._subscribers[channel].append(subscriber)
        listener = None
        if not self.is_sqlite:
            listener = asyncio.create_task(self._listen(channel, subscriber))
        try:
            yield
        finally:
            self._subscribers[channel].remove(subscriber)
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self, channel: str, subscriber: Subscriber) -> None:
        """LISTEN on a connection of its own, reconnecting after the server went away."""
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(False)
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())

                def received(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
                    subscriber(set(payload.split(",")) if payload else set())

                await connection.add_listener(channel, received)
                # Whatever was notified while this connection was away is looked for now.
                subscriber(set())
                await lost.wait()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("listening on %s failed, retrying: %s", channel, exc)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(OSError, asyncpg.PostgresError):
                        await connection.close(timeout=2)
            await asyncio.sleep(1.0)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self._checkpointer is not None:
            self._checkpointer.close()
