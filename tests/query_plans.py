"""Every statement a piece of TopicDesk runs, and how SQLite plans it.

`StatementLog`, attached to a `Database`, records what runs on it two ways:

- SQLite's trace callback on each of the database's connections: every statement that
  executes, whatever code issued it, with its parameters inlined;
- the storage layer's `Conn` methods: the statement as the code wrote it (parameters as
  `?`), its parameters, and the storage function that ran it (`health.sending_since`).

`statements()` gives the distinct SELECT, UPDATE and DELETE statements as written, each
checked against the trace; a traced statement that did not go through `Conn` is still
listed, as executed. `explain()` gives a statement's EXPLAIN QUERY PLAN (with its own
parameters bound, so partial indexes are judged as the code's statement would be), and
`full_scans()` the plan lines that read a whole table or a whole index.

`sender_reads()` runs the reads the sender makes on every wake, `desk_reads()` the
agents' queue and the desk's pick of an assignee, `stats_reads()` the figures of /stats,
`sla_reads()` and `sla_writes()` the escalation scheduler's.

`outgoing()` makes outbox rows from plain values.

Used by tests/unit/test_query_plans.py and benchmarks/bigdb.py.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any

import aiosqlite

from storage import agents, outbox, sla, stats, tickets
from storage import db as storage_db
from storage.db import Database

KINDS = ("SELECT", "UPDATE", "DELETE", "WITH")
SQL_METHODS = ("execute", "insert", "execute_count", "executemany", "fetchone", "fetchall")
TRACE_ONLY = "(trace only)"


def normalize(sql: str) -> str:
    """A statement on one line, runs of white space as one space."""
    return " ".join(sql.split())


def kind_of(sql: str) -> str:
    words = normalize(sql).split(" ", 1)
    return words[0].upper() if words else ""


@dataclass
class Statement:
    """One distinct statement: as written (or as executed, for a trace-only one)."""

    sql: str
    params: Any  # the parameters of its first run
    origin: str  # the storage function that ran it, e.g. "health.sending_since"
    via: str  # the first caller outside storage, e.g. "Housekeeper.resume_stuck_sends"
    calls: int = 0  # runs seen by SQLite's trace
    pattern: re.Pattern[str] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return kind_of(self.sql)


def _pattern(sql: str) -> re.Pattern[str]:
    """Matches the statement as SQLite's trace shows it: each `?` replaced by a value."""
    return re.compile(".+?".join(re.escape(part) for part in sql.split("?")), re.DOTALL)


_OWN = {"recorded", "_write", "_callers"}  # this module's frames around a statement


def _callers() -> tuple[str, str]:
    """(storage function, first caller outside storage) of the statement being run."""
    origin = via = ""
    frame = sys._getframe(1)
    while frame is not None and not (origin and via):
        module = frame.f_globals.get("__name__", "")
        name = frame.f_code.co_name
        if module == __name__ and name in _OWN:
            pass
        elif not origin and module.startswith("storage.") and module != "storage.db":
            origin = f"{module.removeprefix('storage.')}.{name}"
        elif origin and not module.startswith("storage."):
            via = frame.f_code.co_qualname
        frame = frame.f_back  # type: ignore[assignment]
    return origin or "?", via


def _conn_classes() -> list[type]:
    """storage.db.Conn and its subclasses (the old single Conn, or WriteConn/ReadConn)."""
    found: list[type] = []
    todo: list[type] = [storage_db.Conn]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


class StatementLog:
    """What ran on a database while attached; see the module's docstring."""

    def __init__(self) -> None:
        self.traced: list[str] = []
        self._written: dict[str, Statement] = {}
        self._patched: list[tuple[type, str, Any]] = []
        self._connections: list[Any] = []

    # Attaching.

    async def attach(self, database: Database) -> None:
        for name in ("_conn", "_writer", "_reader"):
            conn = getattr(database, name, None)
            if isinstance(conn, sqlite3.Connection):
                conn.set_trace_callback(self.traced.append)
            elif isinstance(conn, aiosqlite.Connection):
                await conn.set_trace_callback(self.traced.append)
            else:
                continue
            self._connections.append(conn)
        if not self._connections:
            raise RuntimeError("found no SQLite connection on the Database to trace")
        for cls in _conn_classes():
            for method in SQL_METHODS:
                original = cls.__dict__.get(method)
                if original is not None:
                    self._patched.append((cls, method, original))
                    setattr(cls, method, self._recording(original))

    async def detach(self) -> None:
        for cls, method, original in reversed(self._patched):
            setattr(cls, method, original)
        self._patched.clear()
        for conn in self._connections:
            if isinstance(conn, sqlite3.Connection):
                conn.set_trace_callback(None)
            else:
                await conn.set_trace_callback(None)
        self._connections.clear()

    def _recording(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        log = self

        @wraps(method)
        async def recorded(conn: Any, sql: str, params: Any = (), *args: Any) -> Any:
            if method.__name__ == "executemany":
                params = list(params)
                log._write(sql, params[0] if params else ())
            else:
                log._write(sql, params)
            return await method(conn, sql, params, *args)

        return recorded

    def _write(self, sql: str, params: Any) -> None:
        key = normalize(sql)
        if key not in self._written and kind_of(sql) in KINDS:
            origin, via = _callers()
            self._written[key] = Statement(sql, params, origin, via, pattern=_pattern(sql))

    # Reading.

    def statements(self) -> list[Statement]:
        """The distinct SELECT/UPDATE/DELETE statements that ran, in order of first run."""
        found = dict(self._written)
        for stmt in found.values():
            stmt.calls = 0
        for executed in self.traced:
            if kind_of(executed) not in KINDS:
                continue
            for stmt in found.values():
                if stmt.pattern is not None and stmt.pattern.fullmatch(executed):
                    stmt.calls += 1
                    break
            else:
                key = normalize(executed)
                if key not in found:
                    found[key] = Statement(executed, (), TRACE_ONLY, "")
                found[key].calls += 1
        return [stmt for stmt in found.values() if stmt.calls]


# Outbox rows.


def outgoing(
    key: str,
    purpose: str,
    method: str,
    params: dict[str, Any],
    chat_id: int,
    ticket_id: int | None = None,
    message_id: int | None = None,
    priority: int = 0,
    **typed: Any,
) -> outbox.Outgoing:
    """An outbox row to enqueue; `typed` are the typed references (in_topic, album...)."""
    return outbox.Outgoing(
        key=key,
        purpose=outbox.Purpose(purpose),
        method=method,
        params=dict(params),
        chat_id=chat_id,
        ticket_id=ticket_id,
        message_id=message_id,
        priority=priority,
        **typed,
    )


async def sender_reads(db: Any, group_id: int) -> None:
    """The sender's reads on every wake: the chats with rows to send, the queue's depth,
    the next row of every (private) chat, and a group's next row of the first ticket,
    urgent rows and the others."""
    chats = await outbox.unsent_chats(db)
    await outbox.depth(db)
    await outbox.heads(db)
    private = [chat for chat in chats if chat > 0]
    if private:
        await outbox.heads(db, private)
    for after in (None, 0):
        for urgent in (True, False):
            await outbox.lane_head(db, group_id, after, urgent=urgent)


async def desk_reads(db: Any, agent_id: int) -> None:
    """The agents' reads: /queue (how many wait, the longest waiting), /mine (an agent's
    active tickets, also read to hand them on), and the desk picking an assignee (the
    agents on duty and the tickets each holds)."""
    await tickets.count_unanswered(db)
    await tickets.unanswered(db, 20)
    await tickets.assigned_to(db, agent_id)
    await agents.on_duty(db)
    await agents.active_counts(db)


async def stats_reads(db: Any, now: datetime) -> None:
    """/stats 30d: the tickets received in the last 30 days, and the agents' names."""
    await stats.report(db, stats.period("30d", now, "Europe/Berlin"))


async def sla_reads(db: Any, now: str) -> None:
    """The escalation scheduler's reads: the tickets with an event due (tickets_sla_due),
    a ticket's facts, and at start the tickets whose schedule it recomputes."""
    await sla.due(db, now, 50)
    await sla.facts(db, 1)
    await sla.with_clocks(db)


async def sla_writes(db: Any, ticket_id: int, now: str) -> None:
    """What the escalation writes on a ticket: its next due instant, a stage, a recheck
    (a priority change), and with the policy off, every due instant cleared."""
    await sla.set_due(db, ticket_id, now)
    await sla.set_stage(db, ticket_id, "first_response", "warning")
    await sla.recheck(db, ticket_id)
    await sla.clear_all(db)


# Plans.


def explain(conn: sqlite3.Connection, stmt: Statement) -> list[str]:
    """EXPLAIN QUERY PLAN, one line per step, indented under its parent step."""
    rows = conn.execute(f"EXPLAIN QUERY PLAN {stmt.sql}", stmt.params).fetchall()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


_FROM = re.compile(
    r"\b(?:FROM|JOIN|UPDATE)\s+(\w+)(?:\s+(?:AS\s+)?(?!(?:ON|WHERE|JOIN|LEFT|INNER|CROSS|"
    r"GROUP|ORDER|LIMIT|SET|USING|NATURAL|UNION|WINDOW)\b)(\w+))?",
    re.IGNORECASE,
)
_SCAN = re.compile(r"^\s*SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")
# MAX(id) or ORDER BY id ... LIMIT 1 without an index: a walk along the table until a row
# matches, shown as a SEARCH with no index; an automatic index is built by a full scan.
_WALK = re.compile(r"^\s*SEARCH (\w+)(?:\s*$| USING AUTOMATIC )")


def tables_by_alias(sql: str) -> dict[str, str]:
    """Each name a statement gives a table (the table's own name, or its alias)."""
    names: dict[str, str] = {}
    for table, alias in _FROM.findall(sql):
        names[table.lower()] = table.lower()
        if alias:
            names[alias.lower()] = table.lower()
    return names


def partial_indexes(conn: sqlite3.Connection) -> set[str]:
    """Indexes with a WHERE clause: scanning one reads only the rows it describes."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    found = set()
    for table in tables:
        for row in conn.execute(f"PRAGMA index_list('{table}')"):
            if row[4]:  # partial
                found.add(row[1])
    return found


@dataclass(frozen=True)
class Scan:
    table: str
    line: str


def full_scans(plan: Iterable[str], sql: str, partial: set[str]) -> list[Scan]:
    """Plan lines that read a whole table, or a whole index that is not partial.

    `SCAN t USING [COVERING] INDEX i` on a partial index reads only the rows the index
    holds (open tickets, unsent outbox rows, open dead letters): not a full scan. A
    `SEARCH t` with no index is one: a walk along the table until a row matches.
    """
    names = tables_by_alias(sql)
    found = []
    for line in plan:
        scan, walk = _SCAN.match(line), _WALK.match(line)
        match = scan or walk
        if match is None or match[1].lower() not in names:
            continue  # not a table: a subquery, a CTE, a constant row
        if scan is not None and scan[2] is not None and scan[2] in partial:
            continue
        found.append(Scan(names[match[1].lower()], line.strip()))
    return found


# Connections of their own (storage.export, storage.forget).


class TracedConnections:
    """While entered, every sqlite3 connection opened records what it executes (with its
    parameters inlined) in `statements`: storage.export and storage.forget open their own
    connections, which StatementLog does not see."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._original: Any = None

    def __enter__(self) -> TracedConnections:
        self._original = original = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = original(*args, **kwargs)
            conn.set_trace_callback(self.statements.append)
            return conn

        sqlite3.connect = connect
        return self

    def __exit__(self, *exc: object) -> None:
        sqlite3.connect = self._original

    def distinct(self) -> list[str]:
        """The distinct SELECT, UPDATE and DELETE statements, in order of first run."""
        return list(dict.fromkeys(sql for sql in self.statements if kind_of(sql) in KINDS))
