"""The SQLite connections TopicDesk reads and writes through.

Writes go through one connection, inside `Database.transaction()`: an asyncio lock,
then `BEGIN IMMEDIATE`, so a transaction never interleaves with another and never meets
SQLITE_BUSY half-way. Code running inside a transaction (an update's handlers, the FSM
storage they call) joins it through a context variable instead of opening its own,
which is how one update's effects and its `update_id` commit together. Savepoints
(`Database.savepoint()`) let a batch of updates share one transaction while each can
still be rolled back alone.

Why the writer runs its statements on the event loop's thread: an aiosqlite call is a
round trip to its worker thread (about 80 µs here), and an update costs a dozen
statements, each a few microseconds of SQLite work. Inside a transaction we already
hold the write lock, so in WAL mode no statement waits for another process; only the
steps that can block (`BEGIN IMMEDIATE`, which may wait out another process's write
lock, and `COMMIT`, which syncs to disk) run in a worker thread. Reads outside a
transaction use a second connection through aiosqlite: WAL lets them run beside the
writer, so the sender's and the housekeeper's reads never wait for the poller.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage import files

BUSY_TIMEOUT_MS = 5000

Params = tuple[Any, ...] | dict[str, Any]
Row = sqlite3.Row
AfterCommit = Callable[[], Awaitable[None]]
OutboxListener = Callable[[set[int]], None]
T = TypeVar("T")

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    # FULL: a committed update must survive a power cut, since its offset is
    # confirmed to Telegram right after the commit.
    "PRAGMA synchronous = FULL",
)


def utcnow() -> str:
    """The current time as stored: ISO 8601 in UTC, to the microsecond."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_iso(moment: datetime) -> str:
    """A datetime as stored: ISO 8601 in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def from_iso(value: str) -> datetime:
    """Parse a stored time."""
    return datetime.fromisoformat(value)


def is_store_fault(exc: BaseException) -> bool:
    """Whether an error is the database's trouble (busy, locked, read-only, full, gone,
    damaged), not the fault of what was being written: retry later, never give up on it."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.DataError):
        return False
    return isinstance(exc, sqlite3.DatabaseError)


def create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only, if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class Conn:
    """A connection lent out for one transaction or one read; SQL goes through here."""

    async def execute(self, sql: str, params: Params = ()) -> None:
        """Run a statement."""
        raise NotImplementedError

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        """Run an INSERT; return the new row's id, or None if it inserted nothing."""
        raise NotImplementedError

    async def execute_count(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return how many rows it changed."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        raise NotImplementedError

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        raise NotImplementedError

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        raise NotImplementedError

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    def after_commit(self, action: AfterCommit) -> None:
        """Run `action` once this transaction has committed (never if it rolls back)."""
        raise RuntimeError("after_commit needs a write transaction, not a read")

    def outbox_changed(self, chat_id: int) -> None:
        """Note that this transaction queued work for `chat_id` (the sender looks there)."""
        raise RuntimeError("the outbox is written only inside a write transaction")


class WriteConn(Conn):
    """The writer inside a transaction: statements run at once on the loop's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._after_commit: list[AfterCommit] = []
        self.outbox_chats: set[int] = set()

    async def execute(self, sql: str, params: Params = ()) -> None:
        self._conn.execute(sql, params)

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        cursor = self._conn.execute(sql, params)
        # lastrowid keeps the previous insert's id after ON CONFLICT DO NOTHING.
        return cursor.lastrowid if cursor.rowcount > 0 else None

    async def execute_count(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def after_commit(self, action: AfterCommit) -> None:
        self._after_commit.append(action)

    def outbox_changed(self, chat_id: int) -> None:
        self.outbox_chats.add(chat_id)

    def committed_actions(self) -> list[AfterCommit]:
        """The actions registered with after_commit, for the transaction's owner to run."""
        return self._after_commit

    def mark(self) -> int:
        """Where the after-commit actions stand, to forget those of a rolled-back savepoint."""
        return len(self._after_commit)

    def forget_since(self, mark: int) -> None:
        del self._after_commit[mark:]


def _read_only() -> RuntimeError:
    return RuntimeError("writes go through Database.transaction(), not a reader")


class ReadConn(Conn):
    """The read connection, through aiosqlite's thread: never waits for the writer."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> None:
        raise _read_only()

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        raise _read_only()

    async def execute_count(self, sql: str, params: Params = ()) -> int:
        raise _read_only()

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        raise _read_only()


_current: contextvars.ContextVar[tuple[Database, WriteConn] | None] = contextvars.ContextVar(
    "topicdesk_transaction", default=None
)


class Database:
    """Owns the SQLite connections: WAL, foreign keys, busy timeout, serialised writes."""

    def __init__(
        self, writer: sqlite3.Connection, reader: aiosqlite.Connection, path: Path
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.path = path
        self._lock = asyncio.Lock()
        # One thread for the writer's blocking steps, so they stay in order.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="topicdesk-db")
        self._savepoints = 0
        self._outbox_listeners: list[OutboxListener] = []
        # The file opened, to notice it removed or replaced (file_is_gone).
        self._file_id = files.file_id(path)

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating with mode 0600 if needed) the database at `path`.

        The file is checked first (storage.files.prepare): a missing database whose
        marker says it existed is not re-created, an existing one loses the group's and
        others' permissions, and a file that cannot be used raises DatabaseFileError
        with one sentence naming it. Nothing opened here stays open when it raises.
        """
        files.prepare(path)
        writer: sqlite3.Connection | None = None
        reader: aiosqlite.Connection | None = None
        try:
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            writer.row_factory = sqlite3.Row
            for pragma in _PRAGMAS:
                writer.execute(pragma)
            reader = await aiosqlite.connect(path, isolation_level=None)
            reader.row_factory = sqlite3.Row
            for pragma in (*_PRAGMAS, "PRAGMA query_only = ON"):
                await reader.execute(pragma)
            database = cls(writer, reader, path)
        except BaseException as exc:
            # aiosqlite's thread is not a daemon: a reader left open keeps the process alive.
            if reader is not None:
                await reader.close()
            if writer is not None:
                writer.close()
            if isinstance(exc, sqlite3.Error):
                raise files.explain(path, exc) from None
            raise
        return database

    def file_is_gone(self) -> str | None:
        """Whether the database file was removed or replaced since it was opened.

        None while storage.path is still the file this Database opened (same device and
        inode); otherwise one sentence saying what happened and what to do. A removed
        or replaced file means what TopicDesk writes goes to a file nobody can find again
        (it is lost at the next restart). Cheap (one stat): for housekeeping and /healthz.
        """
        try:
            now = files.file_id(self.path)
        except FileNotFoundError:
            return (
                f"the database file {self.path} was removed while TopicDesk runs: what it "
                "writes now is lost when it stops; stop TopicDesk and restore the backup"
            )
        except OSError as exc:
            return f"the database file {self.path} cannot be checked ({exc.strerror or exc})"
        if now != self._file_id:
            return (
                f"the database file {self.path} was replaced by another file while TopicDesk "
                "runs: TopicDesk still writes to the old one; stop TopicDesk and check which "
                "file is the right database"
            )
        return None

    async def close(self) -> None:
        async with self._lock:
            await self._reader.close()
            await self._blocking(self._writer.close)
        self._thread.shutdown(wait=True)

    def on_outbox_commit(self, listener: OutboxListener) -> None:
        """Call `listener` with the chats whose outbox rows a commit wrote or changed."""
        self._outbox_listeners.append(listener)

    def current(self) -> WriteConn | None:
        """The transaction this task is inside, if any."""
        found = _current.get()
        if found is not None and found[0] is self:
            return found[1]
        return None

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteConn]:
        """A write transaction (BEGIN IMMEDIATE); joins the enclosing one if there is one."""
        joined = self.current()
        if joined is not None:
            yield joined
            return
        conn = WriteConn(self._writer)
        async with self._lock:
            await self._blocking(self._writer.execute, "BEGIN IMMEDIATE")
            token = _current.set((self, conn))
            try:
                yield conn
            except BaseException:
                await self._rollback()
                raise
            else:
                try:
                    await self._blocking(self._writer.execute, "COMMIT")
                except BaseException:
                    await self._rollback()
                    raise
            finally:
                _current.reset(token)
        if conn.outbox_chats:
            for listener in self._outbox_listeners:
                listener(conn.outbox_chats)
        for action in conn.committed_actions():
            await action()

    async def _rollback(self) -> None:
        if self._writer.in_transaction:
            await asyncio.shield(self._blocking(self._writer.execute, "ROLLBACK"))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[WriteConn]:
        """A part of the current transaction that rolls back alone if it raises."""
        conn = self.current()
        if conn is None:
            raise RuntimeError("a savepoint lives inside Database.transaction()")
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        mark = conn.mark()
        self._writer.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            self._writer.execute(f"ROLLBACK TO {name}")
            self._writer.execute(f"RELEASE {name}")
            conn.forget_since(mark)
            raise
        else:
            self._writer.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Conn]:
        """A connection for reads: the current transaction, or the read connection."""
        joined = self.current()
        if joined is not None:
            yield joined
            return
        yield ReadConn(self._reader)
