"""An admin exports the desk's history: tickets as CSV, transcripts as JSON Lines.

A small desk is written through the storage functions with a clock the test sets: four
tickets, one in each status, received just before, on, and just after the edges of May
2026; a customer's text with commas, quotes, line breaks and emoji; an agent's reply, a
photo, an internal note between them; a rating with a comment. The files are parsed back
and compared with what a person would write down for that desk.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import agents, messages, notes, ratings, tickets
from storage.db import Database, to_iso
from storage.export import (
    COLUMNS,
    DateRange,
    ExportCounts,
    ExportError,
    export,
    snapshot,
    write_export,
)
from storage.migrations import migrate
from storage.tickets import Answer, Priority, Status

GROUP = -1001234567890
ALICE, BOB, CAROL = 5512345678, 6612345678, 7712345678
AGENT = 500

TRICKY = 'Hello, "desk"\nmy order, 42, never came\r\nand — naïve café 🚀'
COMMENT = 'Fast, "kind"\nthanks ✓'


def at(year: int, month: int, day: int, *time: int) -> str:
    return to_iso(datetime(year, month, day, *time, tzinfo=UTC))


def later(moment: str, seconds: float) -> str:
    return to_iso(datetime.fromisoformat(moment) + timedelta(seconds=seconds))


class Clock:
    """What the storage functions read as "now"."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = at(2026, 1, 1)
        for module in (tickets, messages, notes, ratings, agents):
            monkeypatch.setattr(module, "utcnow", lambda: self.now)


# The four tickets' receipt times: the edges of [2026-05-01, 2026-06-01).
BEFORE_MAY = at(2026, 4, 30, 23, 59, 59, 999999)
MAY_FIRST = at(2026, 5, 1)
MAY_LAST = at(2026, 5, 31, 23, 59, 59)
JUNE_FIRST = at(2026, 6, 1)


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    clock = Clock(monkeypatch)
    try:
        async with database.transaction() as db:
            await tickets.save_customer(db, ALICE, "Alice Smith", "alice", "de")
            await tickets.save_customer(db, BOB, 'Bob "B" Jones, Jr.', None, "en")
            await tickets.save_customer(db, CAROL, "Carol", None, None)
            await agents.remember(db, AGENT, "Dana Agent", "dana")

            # #1: Alice, closed, received a microsecond before May.
            clock.now = BEFORE_MAY
            first = await tickets.open_ticket(
                db, ALICE, "Billing", [Answer("category", "Category", "Billing")], GROUP,
                BEFORE_MAY,
            )  # fmt: skip
            clock.now = later(BEFORE_MAY, 600)
            await tickets.set_status(db, first.id, Status.CLOSED, AGENT)

            # #2: Alice again, resolved, received on the first instant of May.
            clock.now = MAY_FIRST
            second = await tickets.open_ticket(
                db, ALICE, "Delivery",
                [Answer("category", "Category", "Delivery"), Answer("details", "Details", TRICKY)],
                GROUP, MAY_FIRST, previous_ticket_id=first.id,
            )  # fmt: skip
            said = await messages.add_message(
                db, ticket_id=second.id, direction="to_agents", source_chat_id=ALICE,
                source_message_id=10, sender_id=ALICE, kind="text", text=TRICKY,
                media_group_id=None, sent_at=MAY_FIRST,
            )  # fmt: skip
            clock.now = later(MAY_FIRST, 1)
            await messages.mark_delivered(db, said or 0, GROUP, 1000)
            clock.now = later(MAY_FIRST, 30)
            await notes.add(db, second.id, AGENT, GROUP, 1001, "She wrote twice; check the courier")
            replied = await messages.add_message(
                db, ticket_id=second.id, direction="to_customer", source_chat_id=GROUP,
                source_message_id=1002, sender_id=AGENT, kind="text", text="On its way, sorry!",
                media_group_id=None, sent_at=later(MAY_FIRST, 89),
            )  # fmt: skip
            clock.now = later(MAY_FIRST, 90)
            await messages.mark_delivered(db, replied or 0, ALICE, 11)
            await tickets.record_first_response(db, second.id, clock.now)
            await messages.add_message(
                db, ticket_id=second.id, direction="to_agents", source_chat_id=ALICE,
                source_message_id=12, sender_id=ALICE, kind="photo", text=None,
                media_group_id=None, sent_at=later(MAY_FIRST, 120),
            )  # fmt: skip
            clock.now = later(MAY_FIRST, 3600)
            await tickets.set_status(db, second.id, Status.RESOLVED, AGENT)
            clock.now = later(MAY_FIRST, 3700)
            await ratings.rate(db, second.id, ALICE, 5)
            await ratings.set_comment(db, second.id, COMMENT)

            # #3: Bob, pending on him, high priority and assigned, received at May's last second.
            clock.now = MAY_LAST
            third = await tickets.open_ticket(
                db, BOB, "Account", [Answer("category", "Category", "Account")], GROUP, MAY_LAST
            )
            await tickets.set_priority(db, third.id, Priority.HIGH, AGENT)
            await tickets.set_assignee(db, third.id, AGENT, AGENT)
            clock.now = later(MAY_LAST, 45.4)
            await tickets.record_first_response(db, third.id, clock.now)
            await tickets.set_status(db, third.id, Status.PENDING, AGENT)

            # #4: Carol, open, received on the first instant of June.
            clock.now = JUNE_FIRST
            await tickets.open_ticket(db, CAROL, "", [], GROUP, JUNE_FIRST)
    finally:
        await database.close()
    return path


def row(**values: Any) -> dict[str, str]:
    """A CSV row as a person would write it down: every column, empty where not given."""
    unknown = set(values) - set(COLUMNS)
    assert not unknown, unknown
    return {column: str(values.get(column, "")) for column in COLUMNS}


TICKET_1 = row(
    ticket_id=1, status="closed", priority="normal", customer_id=ALICE,
    customer_name="Alice Smith", customer_username="alice", customer_language="de",
    subject="Billing", answers='{"category": "Billing"}', created_at=BEFORE_MAY,
    resolved_at=later(BEFORE_MAY, 600), closed_at=later(BEFORE_MAY, 600),
    resolution_seconds=600, messages_from_customer=0, messages_to_customer=0, notes=0,
)  # fmt: skip
TICKET_2 = row(
    ticket_id=2, status="resolved", priority="normal", customer_id=ALICE,
    customer_name="Alice Smith", customer_username="alice", customer_language="de",
    subject="Delivery", answers=json.dumps({"category": "Delivery", "details": TRICKY},
                                           ensure_ascii=False),
    created_at=MAY_FIRST, first_response_at=later(MAY_FIRST, 90),
    resolved_at=later(MAY_FIRST, 3600), first_response_seconds=90, resolution_seconds=3600,
    rating=5, rating_comment=COMMENT, messages_from_customer=2, messages_to_customer=1,
    notes=1, previous_ticket_id=1,
)  # fmt: skip
TICKET_3 = row(
    ticket_id=3, status="pending", priority="high", customer_id=BOB,
    customer_name='Bob "B" Jones, Jr.', customer_language="en", assignee_id=AGENT,
    assignee_name="Dana Agent", subject="Account", answers='{"category": "Account"}',
    created_at=MAY_LAST, first_response_at=later(MAY_LAST, 45.4), first_response_seconds=45,
    messages_from_customer=0, messages_to_customer=0, notes=0,
)  # fmt: skip
TICKET_4 = row(
    ticket_id=4, status="open", priority="normal", customer_id=CAROL, customer_name="Carol",
    created_at=JUNE_FIRST, messages_from_customer=0, messages_to_customer=0, notes=0,
)  # fmt: skip

# Ticket 2's transcript, in time order: the note sits between the message and the reply.
TRANSCRIPT_2 = [
    {"ticket_id": 2, "direction": "to_agents", "sender_id": ALICE, "kind": "text",
     "text": TRICKY, "sent_at": MAY_FIRST, "delivered_at": later(MAY_FIRST, 1)},
    {"ticket_id": 2, "direction": "internal", "sender_id": AGENT, "kind": "note",
     "text": "She wrote twice; check the courier", "sent_at": later(MAY_FIRST, 30),
     "delivered_at": None},
    {"ticket_id": 2, "direction": "to_customer", "sender_id": AGENT, "kind": "text",
     "text": "On its way, sorry!", "sent_at": later(MAY_FIRST, 89),
     "delivered_at": later(MAY_FIRST, 90)},
    {"ticket_id": 2, "direction": "to_agents", "sender_id": ALICE, "kind": "photo",
     "text": None, "sent_at": later(MAY_FIRST, 120), "delivered_at": None},
]  # fmt: skip


def exported(path: Path, span: DateRange) -> tuple[str, str, ExportCounts]:
    tickets_csv, transcripts = io.StringIO(newline=""), io.StringIO()
    with snapshot(path) as conn:
        counts = write_export(conn, span, tickets_csv, transcripts)
    return tickets_csv.getvalue(), transcripts.getvalue(), counts


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header, *rows = list(reader)
    return header, [dict(zip(header, values, strict=True)) for values in rows]


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_may_is_the_two_tickets_received_in_may_with_their_transcripts(
    desk: Path,
) -> None:
    table, transcript, counts = exported(desk, DateRange(date(2026, 5, 1), date(2026, 6, 1)))

    header, rows = parse_csv(table)
    assert header == list(COLUMNS)
    assert rows == [TICKET_2, TICKET_3]
    assert parse_jsonl(transcript) == TRANSCRIPT_2
    assert counts == ExportCounts(tickets=2, messages=3, notes=1)


async def test_everything_is_every_ticket_in_number_order(desk: Path) -> None:
    table, transcript, counts = exported(desk, DateRange())

    assert parse_csv(table)[1] == [TICKET_1, TICKET_2, TICKET_3, TICKET_4]
    assert parse_jsonl(transcript) == TRANSCRIPT_2
    assert counts == ExportCounts(tickets=4, messages=3, notes=1)


@pytest.mark.parametrize(
    ("start", "end", "numbers"),
    [
        (date(2026, 5, 1), None, [2, 3, 4]),  # from the first instant of the day on
        (None, date(2026, 5, 1), [1]),  # a microsecond before May is April's
        (date(2026, 5, 31), date(2026, 6, 1), [3]),  # the day's last second is in it
        (date(2026, 6, 1), date(2026, 6, 2), [4]),
        (date(2026, 6, 2), None, []),
    ],
)
async def test_a_range_takes_its_first_day_and_leaves_out_its_end(
    desk: Path, start: date | None, end: date | None, numbers: list[int]
) -> None:
    table, _, counts = exported(desk, DateRange(start, end))

    assert [int(r["ticket_id"]) for r in parse_csv(table)[1]] == numbers
    assert counts.tickets == len(numbers)


async def test_the_csv_is_rfc_4180_in_utf_8(desk: Path, tmp_path: Path) -> None:
    report = export(desk, tmp_path / "out", DateRange(date(2026, 5, 1), date(2026, 5, 2)))

    raw = report.tickets_path.read_bytes()
    text = raw.decode("utf-8")
    assert not raw.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    assert text.endswith("\r\n")
    # The field with quotes, commas and line breaks is quoted whole, its quotes doubled.
    assert '"Fast, ""kind""\nthanks ✓"' in text
    with report.tickets_path.open(encoding="utf-8", newline="") as again:
        assert list(csv.DictReader(again)) == [TICKET_2]
    lines = report.transcripts_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == TRANSCRIPT_2
    assert "🚀" in lines[0]  # UTF-8, not \\u escapes


async def test_the_files_are_private_whole_and_not_overwritten(desk: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exports" / "may"

    report = export(desk, folder, DateRange())

    for written in (report.tickets_path, report.transcripts_path):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["tickets.csv", "transcripts.jsonl"]
    with pytest.raises(ExportError, match="exists already"):
        export(desk, folder, DateRange())
    again = export(desk, folder, DateRange(date(2026, 6, 1)), overwrite=True)
    assert again.counts.tickets == 1
    assert sorted(p.name for p in folder.iterdir()) == ["tickets.csv", "transcripts.jsonl"]


async def test_an_export_is_one_moment_of_the_desk(desk: Path) -> None:
    """The daemon writes on while an export runs: the files agree with each other."""
    database = await Database.open(desk)
    try:
        with snapshot(desk) as conn:
            async with database.transaction() as db:
                await tickets.open_ticket(db, CAROL, "Later", [], GROUP, JUNE_FIRST)
                await messages.add_message(
                    db, ticket_id=2, direction="to_agents", source_chat_id=ALICE,
                    source_message_id=99, sender_id=ALICE, kind="text", text="late",
                    media_group_id=None, sent_at=later(MAY_FIRST, 200),
                )  # fmt: skip
            counts = write_export(conn, DateRange(), io.StringIO(), io.StringIO())
    finally:
        await database.close()

    assert counts == ExportCounts(tickets=4, messages=3, notes=1)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-13-01", None, "--from '2026-13-01' is not a date: write it as YYYY-MM-DD"),
        ("20260501", None, "--from '20260501' is not a date: write it as YYYY-MM-DD"),
        (None, "May 1", "--to 'May 1' is not a date: write it as YYYY-MM-DD"),
        (
            "2026-05-02",
            "2026-05-01",
            "the range's start (2026-05-02) is not before its end (2026-05-01), which is "
            "the first day left out",
        ),
    ],
)
def test_a_range_is_two_days_in_order(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(ExportError) as caught:
        DateRange.parse(start, end)
    assert str(caught.value) == message


def test_a_range_says_what_it_holds() -> None:
    assert DateRange().describe() == "all tickets"
    assert (
        DateRange(date(2026, 5, 1), date(2026, 6, 1)).describe()
        == "tickets received from 2026-05-01 through 2026-05-31 (UTC)"
    )
    assert DateRange(date(2026, 5, 1), date(2026, 5, 2)).describe() == (
        "tickets received on 2026-05-01 (UTC)"
    )
    assert (
        DateRange(None, date(2026, 5, 1)).describe() == "tickets received before 2026-05-01 (UTC)"
    )
