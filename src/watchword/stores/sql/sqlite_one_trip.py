"""SQLite statements in one trip to the connection's thread.

aiosqlite runs every sqlite3 call on a thread of the connection's own, and SQLAlchemy's
adapter makes up to four calls a statement: open a cursor, execute, fetch the rows, close it.
Each call hands the work to that thread and the answer back to the event loop, which wakes a
sleeping thread twice; on these virtual machines a hand-over costs about 0.1 ms, more than the
statement. This cursor makes the four one call: on the connection's thread the statement runs,
its rows are read and the sqlite3 cursor is closed, and the answer (rows, description, row
count, last row id) comes back at once. Connections, transactions, commits and rollbacks stay
aiosqlite's; the engine gets the connection through SQLAlchemy's ``async_creator``.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiosqlite

# What one trip brings back: description, rowcount, lastrowid and the rows.
Answer = tuple[Any, int, int | None, list[Any]]


class OneTripCursor:
    """The part of aiosqlite's cursor that SQLAlchemy's adapter uses, one trip a statement."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self  # nothing to open yet: the statement's trip opens the sqlite3 cursor

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> OneTripCursor:
        params = () if parameters is None else parameters
        self._take(await self._connection.run_statement(sql, params, many=False))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        self._take(await self._connection.run_statement(sql, parameters, many=True))
        return self

    def _take(self, answer: Answer) -> None:
        self.description, self.rowcount, self.lastrowid, rows = answer
        self._rows = deque(rows)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()  # the sqlite3 cursor was closed on its thread already

    async def __aiter__(self) -> AsyncIterator[Any]:
        while self._rows:
            yield self._rows.popleft()


def _one_statement(connection: OneTripConnection, sql: str, parameters: Any, many: bool) -> Answer:
    """On the connection's thread (the only one that may touch its sqlite3 connection): run,
    read every row, close."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # Read after the rows: an UPDATE ... RETURNING counts its rows as they are stepped.
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors make one trip a statement."""

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def run_statement(self, sql: str, parameters: Any, *, many: bool) -> Answer:
        # aiosqlite's queue to its thread, as SQLAlchemy's own adapter reaches it.
        answer: Answer = await self._execute(  # type: ignore[no-untyped-call]
            _one_statement, self, sql, parameters, many
        )
        return answer


def one_trip_creator(database: str, **connect_args: Any) -> Callable[[], Awaitable[Any]]:
    """An ``async_creator`` for ``create_async_engine``: what ``aiosqlite.connect`` would
    open, with one-trip cursors (``connect_args`` go to ``sqlite3.connect``)."""

    async def connect() -> OneTripConnection:
        def connector() -> sqlite3.Connection:
            db: sqlite3.Connection = sqlite3.connect(database, **connect_args)
            return db

        connection = OneTripConnection(connector, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy's dialect does for aiosqlite's
        await connection  # starts the thread and connects on it
        return connection

    return connect
