"""The desk's history as files: tickets as CSV, transcripts as JSON Lines.

- `tickets.csv`: one row per ticket (RFC 4180, UTF-8, a header row): its number,
  status, priority, customer and assignee, subject and intake answers, its times and
  timings, its rating and how many messages went each way.
- `transcripts.jsonl`: one JSON object per line for every relayed message and internal
  note, ticket by ticket, each ticket's in time order. A note has the direction
  `internal` and the kind `note`: it was never sent to the customer.

Which tickets: those received (`created_at`, Telegram's date on the customer's first
message) in [start, end), days in UTC; either bound may be left open. Tickets come in
the order of their numbers.

Both files are written in one pass, from one snapshot of the database (a read
transaction), so they agree with each other while the daemon goes on writing: WAL lets
the export read beside it without holding it back. Rows are streamed, one ticket at a
time, so a desk of 100,000 tickets and a million messages is never in memory at once.
The range is read through the index `tickets_by_created`, and each ticket's messages
and notes through theirs (tests/unit/test_query_plans.py checks the plans).

The export uses its own connection (`snapshot()`), not the daemon's reader: it is
synchronous, for `topicdesk export` as it is, and for the daemon in a worker thread,
where it holds up neither the event loop nor the desk's other reads.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from storage.db import BUSY_TIMEOUT_MS, create_private_file, to_iso

TICKETS_FILE = "tickets.csv"
TRANSCRIPTS_FILE = "transcripts.jsonl"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

# The CSV's columns, in order: the header row.
COLUMNS = (
    "ticket_id",
    "status",
    "priority",
    "customer_id",
    "customer_name",
    "customer_username",
    "customer_language",
    "assignee_id",
    "assignee_name",
    "subject",
    "answers",  # JSON: {question id: answer}
    "created_at",  # received: Telegram's date on the customer's first message (UTC)
    "first_response_at",
    "resolved_at",
    "closed_at",
    "first_response_seconds",  # first_response_at - created_at, whole seconds
    "resolution_seconds",  # resolved_at - created_at, whole seconds
    "first_response_sla",  # the escalation stage reached: warning, breach or empty
    "resolution_sla",
    "rating",  # 1 to 5, empty if not rated
    "rating_comment",
    "messages_from_customer",
    "messages_to_customer",
    "notes",
    "previous_ticket_id",  # the closed ticket this one follows
)

# The escalation policy's stage columns (migration 0007) by the CSV column they fill.
_SLA_COLUMNS = {
    "first_response_sla": "sla_response_stage",
    "resolution_sla": "sla_resolution_stage",
}

_TICKETS = """
    SELECT t.*, c.full_name AS customer_name, c.username AS customer_username,
           c.language_code AS customer_language, a.full_name AS assignee_name,
           r.score AS rating, r.comment AS rating_comment
    FROM tickets t
    LEFT JOIN customers c ON c.user_id = t.customer_id
    LEFT JOIN agents a ON a.user_id = t.assignee_id
    LEFT JOIN ratings r ON r.ticket_id = t.id
"""
# The fields of a transcript line, in order. Both queries give them in this order, then
# what orders a ticket's lines: the time, then (messages before notes) the order written.
LINE_FIELDS = ("ticket_id", "direction", "sender_id", "kind", "text", "sent_at", "delivered_at")
_MESSAGES = """
    SELECT ticket_id, direction, sender_id, kind, text, sent_at, delivered_at, 0, id
    FROM messages WHERE ticket_id = ? ORDER BY sent_at, id
"""
_NOTES = """
    SELECT ticket_id, 'internal', author_id, 'note', text, created_at, NULL, 1, id
    FROM notes WHERE ticket_id = ? ORDER BY created_at, id
"""
_SENT_AT = LINE_FIELDS.index("sent_at")
_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps(...) builds one a call


class ExportError(Exception):
    """The export cannot be made as asked; one sentence saying why."""


def parse_day(value: str, option: str) -> date:
    """A day written YYYY-MM-DD; ExportError naming `option` otherwise."""
    problem = ExportError(f"{option} {value!r} is not a date: write it as YYYY-MM-DD")
    if not _DAY.fullmatch(value):  # fromisoformat takes 20260501 too, which is not asked for
        raise problem
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise problem from None


@dataclass(frozen=True, slots=True)
class DateRange:
    """Tickets received from `start` (included) to `end` (excluded), days in UTC; None
    leaves that side open."""

    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ExportError(
                f"the range's start ({self.start}) is not before its end ({self.end}), "
                "which is the first day left out"
            )

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> DateRange:
        """From the command line's --from and --to (YYYY-MM-DD, either may be None)."""
        return cls(
            None if start is None else parse_day(start, "--from"),
            None if end is None else parse_day(end, "--to"),
        )

    def where(self) -> tuple[str, tuple[str, ...]]:
        """The SQL condition on `t.created_at` (no condition: "1") and its parameters.

        A range open on one side is closed with the first or last day there is, so that
        SQLite reads it through the index on created_at: with one bound only, it guesses
        that most tickets are in the range and reads them all instead."""
        if self.start is None and self.end is None:
            return "1", ()
        bounds = (
            date.min if self.start is None else self.start,
            date.max if self.end is None else self.end,
        )
        start, end = (to_iso(datetime(day.year, day.month, day.day, tzinfo=UTC)) for day in bounds)
        return "t.created_at >= ? AND t.created_at < ?", (start, end)

    def describe(self) -> str:
        """The range in words, for people: "tickets received from 2026-05-01 through
        2026-05-31 (UTC)"."""
        if self.start is None and self.end is None:
            return "all tickets"
        if self.end is None:
            return f"tickets received on {self.start} or later (UTC)"
        if self.start is None:
            return f"tickets received before {self.end} (UTC)"
        last = self.end - timedelta(days=1)
        if last == self.start:
            return f"tickets received on {self.start} (UTC)"
        return f"tickets received from {self.start} through {last} (UTC)"


@dataclass(frozen=True, slots=True)
class ExportCounts:
    """What an export holds."""

    tickets: int
    messages: int
    notes: int


@contextmanager
def snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the database at `path`, inside one read transaction:
    everything read through it is one moment of the database. Rows are plain tuples."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN")
        conn.execute("PRAGMA schema_version").fetchone()  # a first read: the snapshot starts here
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _seconds(later: str | None, earlier: str) -> int | None:
    """Whole seconds from `earlier` to `later` (never below 0, as /stats counts them)."""
    if later is None:
        return None
    delta = (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    return round(max(0.0, delta))


def _answers(stored: str) -> str:
    """The intake answers ([[question id, label, answer], ...]) as {question id: answer}."""
    answers = {question: value for question, _label, value in json.loads(stored)}
    return json.dumps(answers, ensure_ascii=False) if answers else ""


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _ticket_row(ticket: sqlite3.Row, from_customer: int, to_customer: int, notes: int) -> list[Any]:
    keys = ticket.keys()
    values: dict[str, Any] = {
        "ticket_id": ticket["id"],
        "status": ticket["status"],
        "priority": ticket["priority"],
        "customer_id": ticket["customer_id"],
        "customer_name": ticket["customer_name"],
        "customer_username": ticket["customer_username"],
        "customer_language": ticket["customer_language"],
        "assignee_id": ticket["assignee_id"],
        "assignee_name": ticket["assignee_name"],
        "subject": ticket["subject"],
        "answers": _answers(ticket["answers"]),
        "created_at": ticket["created_at"],
        "first_response_at": ticket["first_response_at"],
        "resolved_at": ticket["resolved_at"],
        "closed_at": ticket["closed_at"],
        "first_response_seconds": _seconds(ticket["first_response_at"], ticket["created_at"]),
        "resolution_seconds": _seconds(ticket["resolved_at"], ticket["created_at"]),
        "rating": ticket["rating"],
        "rating_comment": ticket["rating_comment"],
        "messages_from_customer": from_customer,
        "messages_to_customer": to_customer,
        "notes": notes,
        "previous_ticket_id": ticket["previous_ticket_id"],
    }
    for column, stored in _SLA_COLUMNS.items():
        values[column] = ticket[stored] if stored in keys else None
    return [_cell(values[column]) for column in COLUMNS]


def _order(line: tuple[Any, ...]) -> tuple[Any, ...]:
    return line[_SENT_AT], line[-2], line[-1]


def _transcript(conn: sqlite3.Connection, ticket_id: int) -> Iterator[tuple[Any, ...]]:
    """The ticket's messages and notes (LINE_FIELDS, then their order), in time order.

    The messages are streamed; the notes, a handful, are read at once."""
    messages = conn.execute(_MESSAGES, (ticket_id,))
    notes = conn.execute(_NOTES, (ticket_id,)).fetchall()
    if not notes:
        return messages
    return heapq.merge(messages, notes, key=_order)


def write_export(
    conn: sqlite3.Connection, span: DateRange, tickets_csv: TextIO, transcripts_jsonl: TextIO
) -> ExportCounts:
    """Write the tickets received in `span` to `tickets_csv` and their messages and notes
    to `transcripts_jsonl`, in one pass. Open both files with encoding="utf-8" and the
    CSV's with newline="" (the csv module ends its lines with CRLF itself)."""
    table = csv.writer(tickets_csv)  # RFC 4180: CRLF, fields quoted when they must be
    table.writerow(COLUMNS)
    where, params = span.where()
    found = conn.cursor()
    found.row_factory = sqlite3.Row
    tickets = messages = notes = 0
    for ticket in found.execute(f"{_TICKETS} WHERE {where} ORDER BY t.id", params):
        counts = {"to_agents": 0, "to_customer": 0, "internal": 0}
        for line in _transcript(conn, ticket["id"]):
            counts[line[1]] += 1
            transcripts_jsonl.write(_JSON.encode(dict(zip(LINE_FIELDS, line, strict=False))))
            transcripts_jsonl.write("\n")
        table.writerow(
            _ticket_row(ticket, counts["to_agents"], counts["to_customer"], counts["internal"])
        )
        tickets += 1
        messages += counts["to_agents"] + counts["to_customer"]
        notes += counts["internal"]
    return ExportCounts(tickets, messages, notes)


@dataclass(frozen=True, slots=True)
class ExportReport:
    """Where an export was written, and what it holds."""

    tickets_path: Path
    transcripts_path: Path
    counts: ExportCounts


def export(
    database: Path, folder: Path, span: DateRange, *, overwrite: bool = False
) -> ExportReport:
    """Write tickets.csv and transcripts.jsonl for `span` into `folder` (created if
    missing), owner-only (mode 0600: they hold personal data). Each file appears whole
    or not at all; an existing one is replaced only with `overwrite`."""
    targets = folder / TICKETS_FILE, folder / TRANSCRIPTS_FILE
    if not overwrite:
        for target in targets:
            if target.exists():
                raise ExportError(
                    f"{target} exists already; choose another folder with --out, or pass --force"
                )
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is not a folder; name a folder with --out")
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    partials = tuple(target.with_name(f".{target.name}.partial") for target in targets)
    try:
        for partial in partials:
            partial.unlink(missing_ok=True)
            create_private_file(partial)
        with (
            snapshot(database) as conn,
            partials[0].open("w", encoding="utf-8", newline="") as tickets_csv,
            partials[1].open("w", encoding="utf-8") as transcripts_jsonl,
        ):
            counts = write_export(conn, span, tickets_csv, transcripts_jsonl)
        for partial, target in zip(partials, targets, strict=True):
            os.replace(partial, target)
    except sqlite3.Error as exc:
        raise ExportError(f"{database}: cannot read the desk ({exc})") from None
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write the export ({exc.strerror or exc})") from None
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
    return ExportReport(targets[0], targets[1], counts)
