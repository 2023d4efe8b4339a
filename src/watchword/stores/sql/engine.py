"""Engines for SQLite and PostgreSQL, and how driver failures become ``StoreUnavailable``."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from watchword.domain.errors import StoreUnavailable
from watchword.stores.sql.sqlite_one_trip import one_trip_creator

UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "55", "57"})

P = ParamSpec("P")
T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10, timeout: float = 5.0) -> AsyncEngine:
    if url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"timeout": timeout}}
        database = make_url(url).database
        if database not in (None, "", ":memory:"):
            # Connections are kept, as on PostgreSQL: the default pool (5, and up to 10
            # more opened and closed again under load) made every burst of sign-ins start
            # and stop aiosqlite threads, and the event loop waits for each thread to start.
            options = {
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "pool_timeout": timeout,
                # The arguments SQLAlchemy's dialect gives aiosqlite for a file, one trip a
                # statement to the connection's thread (sqlite_one_trip.py).
                "async_creator": one_trip_creator(
                    str(database), timeout=timeout, check_same_thread=False
                ),
            }
        engine = create_async_engine(url, **options)
        _configure_sqlite(engine, busy_timeout_ms=int(timeout * 1000))
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": timeout, "command_timeout": timeout * 2},
    )


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the driver so writers can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writer takes the write lock up front: read-then-write steps (the session limit)
        # cannot interleave, and no deadlock-prone lock upgrade happens later.
        immediate = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# Callbacks a step inside a write transaction asked for once it commits (``after_commit``).
_AFTER_COMMIT = "watchword.after_commit"


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        conn = await conn.execution_options(write=True)
        try:
            async with conn.begin():
                yield conn
        except BaseException:
            conn.info.pop(_AFTER_COMMIT, None)  # the info outlives the transaction (pooled)
            raise
        for callback in conn.info.pop(_AFTER_COMMIT, ()):
            callback()


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the ``write_transaction`` of ``conn`` has committed, so that what
    it announces is there to be read; never if the transaction rolls back."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    # asyncpg's errors reach SQLAlchemy as plain DBAPIError: tell the server-side states that
    # mean "cannot serve now" by SQLSTATE class (connection exception, insufficient resources,
    # operator intervention such as a shutdown, a database not accepting connections).
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return exc.connection_invalidated or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES


def guarded(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A store call that cannot reach its database raises ``StoreUnavailable``."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable() from exc
            raise

    return wrapper
