"""The one SQLite connection TopicDesk writes through.

Every write happens inside `Database.transaction()`: an asyncio lock, then
`BEGIN IMMEDIATE`, so a transaction never interleaves with another and never meets
SQLITE_BUSY half-way. Code running inside a transaction (an update's handlers, the
FSM storage they call) joins it through a context variable instead of opening its own,
which is how one update's effects and its `update_id` commit together.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 5000

Params = tuple[Any, ...] | dict[str, Any]
Row = sqlite3.Row
AfterCommit = Callable[[], Awaitable[None]]


def utcnow() -> str:
    """The current time as stored: ISO 8601 in UTC, to the microsecond."""
    return to_iso(datetime.now(UTC))


def to_iso(moment: datetime) -> str:
    """A datetime as stored: ISO 8601 in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(value: str) -> datetime:
    """Parse a stored time."""
    return datetime.fromisoformat(value)


def create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only, if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class Conn:
    """A connection lent out for one transaction or one read; SQL goes through here."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._after_commit: list[AfterCommit] = []

    async def execute(self, sql: str, params: Params = ()) -> None:
        """Run a statement."""
        cursor = await self._conn.execute(sql, params)
        await cursor.close()

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        """Run an INSERT; return the new row's id, or None if it inserted nothing."""
        cursor = await self._conn.execute(sql, params)
        # lastrowid keeps the previous insert's id after ON CONFLICT DO NOTHING.
        rowid = cursor.lastrowid if cursor.rowcount > 0 else None
        await cursor.close()
        return rowid

    async def execute_count(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return how many rows it changed."""
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    def committed_actions(self) -> list[AfterCommit]:
        """The actions registered with after_commit, for the transaction's owner to run."""
        return self._after_commit

    def after_commit(self, action: AfterCommit) -> None:
        """Run `action` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(action)


_current: contextvars.ContextVar[tuple[Database, Conn] | None] = contextvars.ContextVar(
    "topicdesk_transaction", default=None
)


class Database:
    """Owns the SQLite connection: WAL, foreign keys, busy timeout, serialised writes."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating with mode 0600 if needed) the database at `path`."""
        create_private_file(path)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA foreign_keys = ON",
            f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
            # FULL: a committed update must survive a power cut, since its offset is
            # confirmed to Telegram right after the commit.
            "PRAGMA synchronous = FULL",
        ):
            await conn.execute(pragma)
        return cls(conn, path)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    def current(self) -> Conn | None:
        """The transaction this task is inside, if any."""
        found = _current.get()
        if found is not None and found[0] is self:
            return found[1]
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A write transaction (BEGIN IMMEDIATE); joins the enclosing one if there is one."""
        joined = self.current()
        if joined is not None:
            yield joined
            return
        conn = Conn(self._conn)
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            token = _current.set((self, conn))
            try:
                yield conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")
            finally:
                _current.reset(token)
        for action in conn.committed_actions():
            await action()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Conn]:
        """A connection for reads: the current transaction, or the idle connection."""
        joined = self.current()
        if joined is not None:
            yield joined
            return
        async with self._lock:
            yield Conn(self._conn)
