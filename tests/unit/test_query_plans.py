"""The housekeeper's queries read what they need, not the desk's whole history.

A small desk is written through the storage functions: open and closed tickets with
their topics and cards, messages relayed both ways and an album, the outbox rows they
leave, replies that died (with the sender's note sent, on its way, and dead too), a row
stuck in 'sending', an old and a recent ledger. The housekeeper then runs its passes
(tidy twice, so the pending-updates alert fires; reconcile; the sender's queue for the
group delivered; reconcile again, which now queues the topic probes) and the
sender reads the outbox as it does on every wake, and the agents' /queue, /mine and the
desk's pick of an assignee read theirs, /stats its 30 days of figures, and the
escalation scheduler its due tickets and what it stores on them, with SQLite's trace on
(tests/query_plans.py).
Every SELECT, UPDATE and DELETE that ran is explained.

No step of a plan may read a whole table: no `SCAN t`, no `SEARCH t` without an index (a
walk along the table until a row matches), no scan of a whole index that is not partial.
A partial index holds only the rows its WHERE describes (open tickets, unsent outbox rows,
open dead letters), which do not grow with the history, so `SCAN t USING [COVERING] INDEX`
of a partial index is accepted. One walk is accepted by name (BOUNDED), and a test below
shows that it reads the same whatever the history's length; the agents table, which holds
the desk's people and not its history, may be read whole (SMALL).

Plans are checked twice. Without statistics: as the daemon runs, since it never runs
ANALYZE. And after ANALYZE, with the statistics of a large desk put in place of this
small one's: on tables of a few rows SQLite rightly finds a scan cheapest, which says
nothing about a desk with a long history; SQLite reads sqlite_stat1 as the truth, so a
large desk's numbers make it plan as it would there. No timings.
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.housekeeping import Housekeeper
from bot.metrics import Metrics
from storage import deadletters, messages, notes, outbox, quarantine, ratings, tickets, updates
from storage import housekeeping as store
from storage.db import Database, to_iso, utcnow
from storage.export import DateRange, snapshot, write_export
from storage.forget import forget, look_up
from storage.migrations import migrate
from storage.tickets import Answer, Ticket
from tests.query_plans import (
    Statement,
    StatementLog,
    TracedConnections,
    desk_reads,
    explain,
    full_scans,
    outgoing,
    partial_indexes,
    sender_reads,
    sla_reads,
    sla_writes,
    stats_reads,
)

GROUP = -1001
ADMIN = 900
AGENT = 500

# Statements every pass must have run, or the test would prove nothing about them.
EXPECTED = {
    "outbox.depth",
    "outbox.heads",
    "deadletters.count_open",
    "housekeeping.count_open_tickets",
    "updates.prune",
    "housekeeping.outbox_outcomes",
    "kv.get",
    "housekeeping.sending_since",
    "outbox.get_item",
    "housekeeping.resume",
    "housekeeping.undelivered_replies",
    "housekeeping.state_of",
    "tickets.get_ticket",
    "housekeeping.open_tickets_with_topic",
    "housekeeping.waiting_in_chat",
    "tickets.count_unanswered",
    "tickets.unanswered",
    "tickets.assigned_to",
    "agents.on_duty",
    "agents.active_counts",
    "stats.report",
    "stats._agents",
    "sla.due",
    "sla.facts",
    "sla.with_clocks",
    "sla.set_due",
    "sla.set_stage",
    "sla.recheck",
    "sla.clear_all",
}

# Walks along a table that stop early, by (storage function, table): why it is bounded.
BOUNDED = {
    ("housekeeping.outbox_outcomes", "outbox"): (
        "finds where the last 24 hours begin by walking back from the newest row "
        "(ORDER BY id DESC LIMIT 1): it reads the window's rows, never the older ones; "
        "see test_the_failure_window_reads_the_last_day_not_the_history"
    ),
}

# Tables read whole because they hold the desk's people, not its history: why that stays small.
SMALL = {
    "agents": "one row per agent the desk has met (a few dozen); it does not grow with tickets",
}

# sqlite_stat1 after ANALYZE of the desk benchmarks/bigdb.py builds (100,000 tickets,
# 1,000,000 messages, 1.6 million outbox rows, 7 of them unsent; migrations 0001-0004).
BIG_DESK = [
    ("agents", None, "40"),
    ("customers", None, "60000"),
    ("dead_letters", "dead_letters_by_outbox", "393 1"),
    ("dead_letters", "dead_letters_by_time", "393 1"),
    ("dead_letters", "dead_letters_open", "278 1"),
    ("messages", "messages_by_album", "13570 6 3"),
    ("messages", "messages_by_target", "1000010 18 1"),
    ("messages", "messages_by_ticket", "1000010 11 1"),
    ("messages", "sqlite_autoindex_messages_1", "1000010 17 1"),
    ("outbox", "outbox_lanes", "7 1 1 1 1"),
    ("outbox", "outbox_pending", "7 1 1"),
    ("outbox", "outbox_unsent_by_ticket", "7 1 1"),
    ("outbox", "sqlite_autoindex_outbox_1", "1582609 1"),
    ("processed_updates", "processed_updates_by_time", "39981 2"),
    ("ticket_events", "ticket_events_by_ticket", "197389 2 1"),
    ("tickets", None, "100000"),
    ("tickets", "tickets_by_topic", "100000 100000 1"),
    ("tickets", "tickets_active_by_customer", "3000 1 1"),
    ("tickets", "tickets_active_with_topic", "3000 1"),
    ("tickets", "tickets_unanswered", "300 1"),
    ("tickets", "tickets_by_assignee", "3000 300 1"),
    ("tickets", "tickets_by_customer", "100000 2 1"),
    # Migration 0007: received times are all but unique; few tickets have an SLA event due.
    ("tickets", "tickets_by_created", "100000 1"),
    ("tickets", "tickets_sla_due", "3000 1"),
]


def as_a_big_desk(conn: sqlite3.Connection) -> None:
    """ANALYZE, then a large desk's statistics instead of this one's (an index they do
    not name is left without statistics: SQLite's defaults)."""
    conn.execute("ANALYZE")
    indexes = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    conn.execute("DELETE FROM sqlite_stat1")
    conn.executemany(
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
        [row for row in BIG_DESK if row[1] is None or row[1] in indexes],
    )
    conn.commit()


class Telegram:
    """getWebhookInfo, the housekeeper's one Bot API call: updates piling up."""

    async def get_webhook_info(self) -> Any:
        return SimpleNamespace(pending_update_count=5000)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", "123:abc")
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))
    monkeypatch.setenv("TOPICDESK_SUPPORT__ADMIN_IDS", f"[{ADMIN}]")
    return load_settings()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    yield database
    await database.close()


def ago(**delta: float) -> str:
    return to_iso(datetime.now(UTC) - timedelta(**delta))


# --- a small desk, written as the handlers and the sender write it ---------------------


async def a_ticket(db: Any, customer_id: int, thread_id: int, *, closed: bool = False) -> Ticket:
    await tickets.save_customer(db, customer_id, "Alice Smith", "alice", "en")
    ticket = await tickets.open_ticket(
        db, customer_id, "Billing", [Answer("category", "Category", "Billing")], GROUP, utcnow()
    )
    topic = await outbox.enqueue(
        db,
        outgoing(f"ticket:{ticket.id}:topic", "topic", "createForumTopic", {"name": "#1"}, GROUP,
                 ticket.id),
    )  # fmt: skip
    card = await outbox.enqueue(
        db,
        outgoing(f"ticket:{ticket.id}:card", "card", "sendMessage", {"text": "card"}, GROUP,
                 ticket.id, in_topic=True),
    )  # fmt: skip
    await tickets.set_topic(db, ticket.id, GROUP, thread_id)
    await outbox.mark_sent(db, topic or 0, {"message_thread_id": thread_id})
    await tickets.set_card(db, ticket.id, thread_id + 1)
    await outbox.mark_sent(db, card or 0, {"message_id": thread_id + 1})
    if closed:
        await tickets.set_status(db, ticket.id, tickets.Status.CLOSED, AGENT)
    found = await tickets.get_ticket(db, ticket.id)
    assert found is not None
    return found


@dataclass
class Relayed:
    links: list[int]
    row: int
    target: int


async def a_relay(
    db: Any, ticket: Ticket, source_ids: list[int], *, to_agents: bool, album: str | None = None
) -> Relayed:
    """A message (or an album's parts) recorded and queued for the other side."""
    chat, target = (ticket.customer_id, GROUP) if to_agents else (GROUP, ticket.customer_id)
    links = []
    for source_id in source_ids:
        link = await messages.add_message(
            db,
            ticket_id=ticket.id,
            direction="to_agents" if to_agents else "to_customer",
            source_chat_id=chat,
            source_message_id=source_id,
            sender_id=ticket.customer_id if to_agents else AGENT,
            kind="photo" if album else "text",
            text=None if album else "Hello",
            media_group_id=album,
            sent_at=utcnow(),
        )
        assert link is not None
        links.append(link)
    if album:
        item = outgoing(f"album:{chat}:{album}", "album", "copyMessages", {"from_chat_id": chat},
                        target, ticket.id, in_topic=to_agents, album=album)  # fmt: skip
    else:
        params = {"from_chat_id": chat, "message_id": source_ids[0]}
        item = outgoing(f"relay:{chat}:{source_ids[0]}", "relay", "copyMessage", params, target,
                        ticket.id, links[0], in_topic=to_agents)  # fmt: skip
    row = await outbox.enqueue(db, item)
    assert row is not None
    return Relayed(links, row, target)


async def delivered(db: Any, relayed: Relayed, first_copy: int) -> None:
    copies = []
    for number, link in enumerate(relayed.links):
        await messages.mark_delivered(db, link, relayed.target, first_copy + number)
        copies.append({"message_id": first_copy + number})
    await outbox.mark_sent(db, relayed.row, copies if len(copies) > 1 else copies[0])


async def died(db: Any, ticket: Ticket, relayed: Relayed, note: str) -> None:
    """The row became a dead letter; the sender's note to the agents is `note`:
    'sent', 'queued' or 'dead'."""
    item = await outbox.get_item(db, relayed.row)
    assert item is not None
    letter = await deadletters.bury(db, item, "Forbidden: bot was blocked by the user", 1)
    told = await outbox.enqueue(
        db,
        outgoing(f"dead:{letter}:note", "notice", "sendMessage", {"text": "not delivered"},
                 GROUP, ticket.id, priority=5, in_topic=True),
    )  # fmt: skip
    if note == "sent":
        await outbox.mark_sent(db, told or 0, {"message_id": 1})
    elif note == "dead":
        told_item = await outbox.get_item(db, told or 0)
        assert told_item is not None
        await deadletters.bury(db, told_item, "Bad Request: message thread not found", 1)


async def seed(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with db.transaction() as conn:
        first = await a_ticket(conn, 111, thread_id=70)
        await delivered(conn, await a_relay(conn, first, [1], to_agents=True), 100)
        await delivered(conn, await a_relay(conn, first, [101], to_agents=False), 2)
        await delivered(conn, await a_relay(conn, first, [3, 4], to_agents=True, album="7"), 102)
        closed = await a_ticket(conn, 222, thread_id=80, closed=True)
        await delivered(conn, await a_relay(conn, closed, [1], to_agents=True), 110)
        await delivered(conn, await a_relay(conn, closed, [111], to_agents=False), 2)
        third = await a_ticket(conn, 333, thread_id=90)
        await died(conn, third, await a_relay(conn, third, [121], to_agents=False), "sent")
        await died(conn, third, await a_relay(conn, third, [122], to_agents=False), "dead")
        album = await a_relay(conn, third, [123, 124], to_agents=False, album="8")
        await died(conn, third, album, "queued")
        await updates.record(conn, 1, "handled")
        await updates.record(conn, 2, "ignored")
        with monkeypatch.context() as past:
            past.setattr(outbox, "utcnow", lambda: ago(minutes=10))
            stuck = await outbox.enqueue(
                conn, outgoing("reminder:444", "notice", "sendMessage", {"text": "?"}, 444)
            )
            await outbox.mark_sending(conn, stuck or 0)
            past.setattr(updates, "utcnow", lambda: ago(hours=49))
            await updates.record(conn, 0, "handled")


async def deliver_the_groups_queue(db: Any) -> None:
    """What the sender does meanwhile: every row for the group goes out."""
    while due := [item for item in await outbox.heads(db) if item.chat_id == GROUP]:
        for item in due:
            await outbox.mark_sent(db, item.id, None)


async def run_passes(db: Database, settings: Settings) -> list[Statement]:
    housekeeper = Housekeeper(Telegram(), db, settings, Metrics())
    log = StatementLog()
    await log.attach(db)
    try:
        await housekeeper.tidy()
        await housekeeper.tidy()  # updates still piling up: the alert
        await housekeeper.reconcile()  # the new note for the agents holds the probes back
        async with db.transaction() as conn:
            await deliver_the_groups_queue(conn)
        await housekeeper.reconcile()  # now the topic probes are queued
        async with db.reader() as conn:
            await sender_reads(conn, GROUP)
            await desk_reads(conn, AGENT)
            await stats_reads(conn, datetime.now(UTC))
        async with db.transaction() as conn:
            await sla_writes(conn, 1, utcnow())
        async with db.reader() as conn:
            await sla_reads(conn, utcnow())
    finally:
        await log.detach()
    async with db.reader() as conn:
        probes = await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE purpose = 'topic_probe'")
    assert probes == 2, "the topic probes were not queued"
    return log.statements()


@pytest.fixture(params=[False, True], ids=["no-statistics", "big-desk-statistics"])
async def plans(
    request: pytest.FixtureRequest,
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[Statement, list[str], list[tuple[str, str]]]]:
    """Each statement the passes ran, its plan, and its plan's (table, line) full scans."""
    await seed(db, monkeypatch)
    statements = await run_passes(db, settings)
    missing = EXPECTED - {stmt.origin for stmt in statements}
    assert not missing, f"the passes no longer run {sorted(missing)}"
    if request.param:
        analyzed = sqlite3.connect(db.path)
        try:
            as_a_big_desk(analyzed)
        finally:
            analyzed.close()
    conn = sqlite3.connect(db.path)  # a new connection reads the statistics
    try:
        partial = partial_indexes(conn)
        found = []
        for stmt in statements:
            plan = explain(conn, stmt)
            scans = [(s.table, s.line) for s in full_scans(plan, stmt.sql, partial)]
            found.append((stmt, plan, scans))
        return found
    finally:
        conn.close()


def whole_reads(
    plans: list[tuple[Statement, list[str], list[tuple[str, str]]]], *, outbox_table: bool
) -> list[str]:
    problems = []
    for stmt, plan, scans in plans:
        for table, line in scans:
            if (table == "outbox") != outbox_table or (stmt.origin, table) in BOUNDED:
                continue
            if table in SMALL:
                continue
            problems.append(
                f"{stmt.origin} (from {stmt.via}) reads all of {table}: {line}\n"
                f"    {' '.join(stmt.sql.split())}\n    plan: {' | '.join(plan)}"
            )
    return problems


async def test_housekeeping_reads_no_table_whole(
    plans: list[tuple[Statement, list[str], list[tuple[str, str]]]],
) -> None:
    problems = whole_reads(plans, outbox_table=False)
    assert not problems, "\n".join(problems)


async def test_housekeeping_and_the_sender_read_the_outbox_through_an_index(
    plans: list[tuple[Statement, list[str], list[tuple[str, str]]]],
) -> None:
    problems = whole_reads(plans, outbox_table=True)
    assert not problems, "\n".join(problems)


# --- the one walk accepted ---------------------------------------------------------------


def vm_steps(path: Path, stmt: Statement) -> int:
    """How many virtual-machine instructions SQLite runs for a statement."""
    conn = sqlite3.connect(path)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    try:
        conn.set_progress_handler(count, 1)
        conn.execute(stmt.sql, stmt.params).fetchall()
    finally:
        conn.close()
    return steps


async def test_the_failure_window_reads_the_last_day_not_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {}
    for history in (10, 400):
        path = tmp_path / f"{history}.db"
        migrate(path)
        database = await Database.open(path)
        try:
            async with database.transaction() as conn:
                for when, count in ((ago(days=3), history), (utcnow(), 20)):
                    with monkeypatch.context() as clock:
                        clock.setattr(outbox, "utcnow", lambda when=when: when)
                        for number in range(count):
                            key = f"notice:{when}:{number}"
                            note = outgoing(key, "notice", "sendMessage", {"text": key}, 1000)
                            await outbox.mark_sent(conn, await outbox.enqueue(conn, note) or 0, 1)
            log = StatementLog()
            await log.attach(database)
            try:
                async with database.reader() as conn:
                    assert await store.outbox_outcomes(conn, ago(hours=24)) == (20, 0)
            finally:
                await log.detach()
        finally:
            await database.close()
        (window,) = [s for s in log.statements() if s.origin == "housekeeping.outbox_outcomes"]
        everything = Statement(
            "SELECT COUNT(*) FROM outbox WHERE created_at >= ?", window.params, "", ""
        )
        steps[history] = (vm_steps(path, window), vm_steps(path, everything))

    assert steps[400][0] == steps[10][0]
    # The measure does see a whole-table read: counting the window without the walk
    # costs at least one more step per row of history.
    assert steps[400][1] - steps[10][1] >= 390


# --- export and forget, on connections of their own --------------------------------------

# The indexes `topicdesk export` (a date range) and `topicdesk forget` must read through.
EXPORT_AND_FORGET_INDEXES = {
    "tickets_by_created": "export: the tickets received in the range",
    "messages_by_ticket": "export: a ticket's messages; forget: their texts and ids",
    "notes_by_ticket": "export: a ticket's notes; forget: their texts",
    "tickets_by_customer": "forget: the customer's tickets",
    "ticket_events_by_ticket": "forget: their tickets' history",
    "dead_letters_by_outbox": "forget: the dead letters of their outbox rows",
    "sqlite_autoindex_outbox_1": "forget: the outbox rows of their quarantined updates",
    "sqlite_autoindex_fsm_state_1": "forget: their form in progress, by its key's prefix",
}
# Shown as a SEARCH with no index, and yet one seek: SQLite finds the largest row id at
# the end of the table (checked below: the same steps however long the table).
ONE_SEEK = {"SELECT MAX(id) FROM outbox": "forget: where its first look at the outbox ended"}


@pytest.mark.parametrize("big_desk", [False, True], ids=["no-statistics", "big-desk-statistics"])
async def test_export_and_forget_read_through_indexes(
    db: Database, monkeypatch: pytest.MonkeyPatch, big_desk: bool
) -> None:
    """An export of a date range and forgetting customer 222 (whose ticket is closed),
    traced on their own connections. Two reads are whole by design, and shown by their
    plans as a range of row ids from the start: forgetting's first look at the outbox
    (sent rows have no index by chat or ticket; it holds no lock), and at the quarantined
    updates (who sent one is inside its JSON)."""
    await seed(db, monkeypatch)
    async with db.transaction() as conn:
        await notes.add(conn, 2, AGENT, GROUP, 5000, "a note")
        await ratings.rate(conn, 2, 222, 4)
        await ratings.set_comment(conn, 2, "thanks")
        await quarantine.put(conn, 77, {"message": {"from": {"id": 222}}}, "handler", "x", "x")
        await conn.execute(
            "INSERT INTO fsm_state (key, state, updated_at) VALUES ('fsm:222:222:default', 's', ?)",
            (utcnow(),),
        )
    if big_desk:
        analyzed = sqlite3.connect(db.path)
        try:
            as_a_big_desk(analyzed)
        finally:
            analyzed.close()
    today = datetime.now(UTC).date()
    with TracedConnections() as traced:
        with snapshot(db.path) as conn:
            span = DateRange(today - timedelta(days=1), today + timedelta(days=1))
            counts = write_export(conn, span, io.StringIO(), io.StringIO())
        assert counts.tickets == 3
        assert look_up(db.path, 222).tickets == ((2, "closed"),)
        assert forget(db.path, 222).removed["notes"] == 1

    conn = sqlite3.connect(db.path)
    try:
        partial = partial_indexes(conn)
        problems, used = [], set()
        for sql in traced.distinct():
            plan = explain(conn, Statement(sql, (), "export/forget", ""))
            used |= {
                word for line in plan for word in line.split() if word in EXPORT_AND_FORGET_INDEXES
            }
            for scan in full_scans(plan, sql, partial):
                if sql not in ONE_SEEK:
                    problems.append(f"reads all of {scan.table}: {scan.line}\n    {sql}")
    finally:
        conn.close()
    assert not problems, "\n".join(problems)
    assert set(EXPORT_AND_FORGET_INDEXES) <= used, set(EXPORT_AND_FORGET_INDEXES) - used

    seeks = [Statement(sql, (), "forget", "") for sql in ONE_SEEK]
    before = [vm_steps(db.path, stmt) for stmt in seeks]
    async with db.transaction() as tx:
        for number in range(300):
            await outbox.enqueue(tx, outgoing(f"more:{number}", "notice", "sendMessage", {}, 1))
    assert [vm_steps(db.path, stmt) for stmt in seeks] == before
