"""A customer asks to be forgotten: their personal data and words leave the database, to
the last byte of the file, and the desk's figures stay.

Two customers, Alice and Bob, are served the way the desk serves them (through the
storage functions, with the rows the services write): a form, a ticket with its topic and
card, messages both ways, an edit, an internal note, a notice, a reply that died, a
rating with a comment, a quarantined update. Alice is forgotten while the daemon's
connections are open; Bob must not notice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiogram.fsm.storage.base import StorageKey

from storage import agents, deadletters, keys, messages, notes, outbox, quarantine, ratings, tickets
from storage import forget as forget_module
from storage.db import Conn, Database, utcnow
from storage.files import companions
from storage.forget import (
    FORGOTTEN,
    SCHEMA,
    ActiveTicketError,
    ForgetError,
    ForgetReport,
    Topic,
    forget,
    look_up,
)
from storage.fsm import SQLiteStorage
from storage.migrations import migrate
from storage.outbox import Outgoing, Purpose
from storage.tickets import Answer, Status

GROUP = -1001234567890
AGENT = 500
ALICE, BOB = 5512345678, 6612345678


class Person:
    """A customer and the words only they (and their agents) ever wrote."""

    def __init__(self, user_id: int, word: str, first: str, thread: int) -> None:
        self.user_id = user_id
        self.thread = thread
        self.name = f"{first} {word}son"
        self.username = f"{first.lower()}_{word.lower()}"
        self.words = {
            "name": self.name,
            "username": self.username,
            "answer": f"{word} parcel lost in Zanzibar",
            "message": f"My card ends 4242, {word} speaking",
            "reply": f"Dear {first}, the {word} refund is on its way",
            "edit": f"Edited: {word} card ends 9999",
            "note": f"She lives at {word} Street 7",
            "comment": f"Slow but friendly, {word}",
            "form": f"Half-typed {word} draft",
            "quarantined": f"{word} glitch text",
            "dead letter": f"{word} reply that never arrived",
            "history": f"asked by {word} herself",
            "cancelled": f"Thanks for your feedback, {word}",
        }


ALICE_ = Person(ALICE, "Quokka", "Alice", thread=70)
BOB_ = Person(BOB, "Bramble", "Bob", thread=80)


async def sent(db: Conn, item: Outgoing, result: Any) -> int:
    row = await outbox.enqueue(db, item)
    assert row is not None
    await outbox.mark_sending(db, row)
    await outbox.mark_sent(db, row, result)
    return row


def private_chat(person: Person) -> dict[str, Any]:
    return {"id": person.user_id, "type": "private", "first_name": person.name.split()[0],
            "username": person.username}  # fmt: skip


async def serve(db: Conn, person: Person) -> int:
    """One ticket, served and closed, with every kind of row the desk writes for it."""
    user, words = person.user_id, person.words
    seen = person.thread * 100  # message ids in the group: each topic's own
    await tickets.save_customer(db, user, person.name, person.username, "de")
    ticket = await tickets.open_ticket(
        db, user, words["answer"],
        [Answer("details", "Details", words["answer"]), Answer("plan", "Plan", "Pro")],
        GROUP, utcnow(),
    )  # fmt: skip
    topic_name = f"#{ticket.id} · {person.name} · {words['answer']}"
    await tickets.set_topic_name(db, ticket.id, topic_name)
    await sent(
        db,
        Outgoing(keys.ticket_topic(ticket.id), Purpose.TOPIC, "createForumTopic",
                 {"name": topic_name}, GROUP, ticket.id),
        {"message_thread_id": person.thread, "name": topic_name, "icon_color": 7322096},
    )  # fmt: skip
    await tickets.set_topic(db, ticket.id, GROUP, person.thread)
    card = f"<b>{person.name}</b> @{person.username}\nDetails: {words['answer']}"
    await sent(
        db,
        Outgoing(keys.ticket_card(ticket.id), Purpose.CARD, "sendMessage",
                 {"text": card, "parse_mode": "HTML"}, GROUP, ticket.id, in_topic=True),
        {"message_id": person.thread + 1, "text": card, "chat": {"id": GROUP}},
    )  # fmt: skip
    await tickets.set_card(db, ticket.id, person.thread + 1)

    said = await messages.add_message(
        db, ticket_id=ticket.id, direction="to_agents", source_chat_id=user,
        source_message_id=10, sender_id=user, kind="text", text=words["message"],
        media_group_id=None, sent_at=utcnow(),
    )  # fmt: skip
    await sent(
        db,
        Outgoing(keys.relay(user, 10), Purpose.RELAY, "copyMessage",
                 {"from_chat_id": user, "message_id": 10}, GROUP, ticket.id, said, in_topic=True),
        {"message_id": seen},
    )  # fmt: skip
    await messages.mark_delivered(db, said or 0, GROUP, seen)
    await messages.set_text(db, said or 0, words["edit"])
    await sent(
        db,
        Outgoing(keys.edit(user, 10, 1, "v1"), Purpose.EDIT, "editMessageText",
                 {"text": words["edit"], "entities": []}, GROUP, ticket.id, said),
        {"message_id": seen, "text": words["edit"], "chat": {"id": GROUP}},
    )  # fmt: skip

    replied = await messages.add_message(
        db, ticket_id=ticket.id, direction="to_customer", source_chat_id=GROUP,
        source_message_id=seen + 1, sender_id=AGENT, kind="text", text=words["reply"],
        media_group_id=None, sent_at=utcnow(),
    )  # fmt: skip
    await sent(
        db,
        Outgoing(keys.relay(GROUP, seen + 1), Purpose.RELAY, "copyMessage",
                 {"from_chat_id": GROUP, "message_id": seen + 1}, user, ticket.id, replied),
        {"message_id": 11},
    )  # fmt: skip
    await messages.mark_delivered(db, replied or 0, user, 11)
    await tickets.record_first_response(db, ticket.id, utcnow())
    await notes.add(db, ticket.id, AGENT, GROUP, seen + 2, words["note"])
    await sent(
        db,
        Outgoing(keys.reply_to("msg", user, 10), Purpose.NOTICE, "sendMessage",
                 {"chat_id": user, "text": f"Your ticket #{ticket.id} is open"}, user, ticket.id),
        {"message_id": 12, "chat": private_chat(person), "text": "Your ticket is open"},
    )  # fmt: skip
    dying = await outbox.enqueue(
        db,
        Outgoing(keys.ticket_change(ticket.id, 1, "customer"), Purpose.NOTICE, "sendMessage",
                 {"chat_id": user, "text": words["dead letter"]}, user, ticket.id),
    )  # fmt: skip
    item = await outbox.get_item(db, dying or 0)
    assert item is not None
    await deadletters.bury(db, item, "Forbidden: bot was blocked by the user", 1)

    await tickets.set_status(db, ticket.id, Status.RESOLVED, AGENT)
    await tickets.set_status(db, ticket.id, Status.CLOSED, AGENT)
    await ratings.rate(db, ticket.id, user, 4)
    await ratings.set_comment(db, ticket.id, words["comment"])
    await tickets.add_event(
        db, ticket.id, "escalated", user, {"reason": words["history"], "to": "high", "by": user}
    )
    await outbox.enqueue(
        db,
        Outgoing(keys.csat(ticket.id, "c1", "thanks"), Purpose.NOTICE, "sendMessage",
                 {"text": words["cancelled"]}, user, ticket.id),
    )  # fmt: skip

    raw = {
        "update_id": 900 + ticket.id,
        "message": {"message_id": 13, "from": {"id": user, "first_name": person.name},
                    "chat": private_chat(person), "text": words["quarantined"]},
    }  # fmt: skip
    await quarantine.put(db, 900 + ticket.id, raw, "handler", "ValueError: boom", "ValueError")
    await sent(
        db,
        Outgoing(keys.quarantined(900 + ticket.id, "note"), Purpose.NOTICE, "sendMessage",
                 {"chat_id": GROUP, "text": f"⚠ This message from {person.name} could not"},
                 GROUP),
        {"message_id": seen + 3, "text": f"⚠ This message from {person.name} could not"},
    )  # fmt: skip
    return ticket.id


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "desk.db"
    migrate(path)
    return path


class Daemon:
    """The daemon's hold on the database: its connections stay open until it stops."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.running = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.database.close()


@pytest.fixture
async def daemon(path: Path) -> AsyncIterator[Daemon]:
    """The desk as the daemon holds it: both customers served, both forms in progress."""
    running = Daemon(await Database.open(path))
    try:
        async with running.database.transaction() as db:
            await agents.remember(db, AGENT, "Dana Agent", "dana")
            for person in (ALICE_, BOB_):
                await serve(db, person)
        forms = SQLiteStorage(running.database)
        for person in (ALICE_, BOB_):
            key = StorageKey(bot_id=1, chat_id=person.user_id, user_id=person.user_id)
            await forms.set_state(key, "IntakeForm:answering")
            await forms.set_data(key, {"step": 1, "answers": [person.words["form"]]})
        yield running
    finally:
        await running.stop()


def file_bytes(path: Path) -> bytes:
    wal, _ = companions(path)
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def figures(path: Path) -> dict[str, Any]:
    """What the desk's statistics read, with Alice's id replaced by whatever stands in."""
    with sqlite3.connect(path) as conn:
        return {
            "tickets": conn.execute(
                "SELECT id, status, priority, assignee_id, created_at, first_response_at,"
                " resolved_at, closed_at, group_chat_id, thread_id FROM tickets ORDER BY id"
            ).fetchall(),
            "scores": conn.execute("SELECT ticket_id, score FROM ratings ORDER BY 1").fetchall(),
            "messages": conn.execute(
                "SELECT ticket_id, direction, kind, sent_at, delivered_at FROM messages ORDER BY id"
            ).fetchall(),
            "notes": conn.execute("SELECT ticket_id, author_id, created_at FROM notes").fetchall(),
            "history": conn.execute(
                "SELECT ticket_id, kind, created_at FROM ticket_events ORDER BY id"
            ).fetchall(),
        }


def column(path: Path, sql: str, *params: Any) -> list[Any]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute(sql, params)]


async def test_alice_is_forgotten_to_the_last_byte_and_bob_is_not(
    path: Path, daemon: Daemon
) -> None:
    before = figures(path)
    everything = file_bytes(path)
    for person in (ALICE_, BOB_):  # the check below can see them while they are there
        for name, word in person.words.items():
            # The first text of the edited message was overwritten by the edit, and this
            # SQLite zeroes what it overwrites (see the last test for one that does not).
            assert (word.encode() in everything) == (name != "message"), name

    report = await asyncio.to_thread(forget, path, ALICE)

    stand_in = FORGOTTEN + 1
    assert report == ForgetReport(
        user_id=ALICE,
        stand_in=stand_in,
        tickets=(1,),
        removed={
            "profile": 1,
            "subjects": 1,
            "message_texts": 2,
            "notes": 1,
            "rating_comments": 1,
            "history": 1,
            "forms": 1,
            "quarantined": 1,
            # topic, card, relay, edit, reply, notice, dead, cancelled, quarantine note
            "outbox": 9,
            "cancelled": 1,
            "dead_letters": 1,
        },
        topics=(Topic(1, GROUP, ALICE_.thread),),
        wal_emptied=True,
        stale_copies_possible=False,
    )
    # While the daemon still has the database open: the file and the WAL are clean.
    wal, _ = companions(path)
    assert wal.stat().st_size == 0
    await daemon.stop()
    left = file_bytes(path)
    for name, word in ALICE_.words.items():
        assert word.encode() not in left, f"Alice's {name} is still in the file"
    assert str(ALICE).encode() not in left, "Alice's Telegram id is still in the file"
    for name, word in BOB_.words.items():
        if name != "message":  # overwritten by his edit, as above
            assert word.encode() in left, f"Bob's {name} is gone"

    after = figures(path)
    assert after == before  # counts, statuses, times, scores, history
    assert column(path, "SELECT customer_id FROM tickets ORDER BY id") == [stand_in, BOB]
    assert column(path, "SELECT user_id FROM customers ORDER BY user_id") == [BOB, stand_in]
    assert column(path, "SELECT full_name FROM customers WHERE user_id = ?", stand_in) == [
        "forgotten customer #1"
    ]


async def test_what_is_kept_of_alice_carries_no_words(path: Path, daemon: Daemon) -> None:
    await asyncio.to_thread(forget, path, ALICE)
    stand_in = FORGOTTEN + 1

    with sqlite3.connect(path) as conn:
        ticket = conn.execute("SELECT subject, topic_name, answers FROM tickets WHERE id = 1")
        assert ticket.fetchone() == ("", None, "[]")
        assert conn.execute("SELECT text FROM messages WHERE ticket_id = 1").fetchall() == [
            (None,),
            (None,),
        ]
        links = conn.execute(
            "SELECT source_chat_id, target_chat_id, sender_id FROM messages WHERE ticket_id = 1"
            " ORDER BY id"
        ).fetchall()
        assert links == [(stand_in, GROUP, stand_in), (GROUP, stand_in, AGENT)]
        assert conn.execute("SELECT text FROM notes WHERE ticket_id = 1").fetchall() == [("",)]
        rating = conn.execute("SELECT customer_id, score, comment FROM ratings WHERE ticket_id = 1")
        assert rating.fetchall() == [(stand_in, 4, None)]
        escalated = conn.execute(
            "SELECT actor_id, detail FROM ticket_events WHERE ticket_id = 1 AND kind = 'escalated'"
        ).fetchone()
        assert escalated[0] == stand_in
        assert json.loads(escalated[1]) == {"reason": None, "to": "high", "by": stand_in}
        rows = conn.execute(
            "SELECT idempotency_key, params, result, state, chat_id FROM outbox"
            " WHERE ticket_id = 1 OR chat_id = ? OR idempotency_key LIKE 'quarantine:901:%'"
            " ORDER BY id",
            (stand_in,),
        ).fetchall()
        plain = {"chat_id", "from_chat_id", "message_id", "message_thread_id", "parse_mode"}
        for key, params, result, _state, _chat in rows:
            assert set(json.loads(params)) <= plain
            answer = json.loads(result) if result else None
            assert not isinstance(answer, dict) or set(answer) <= plain
            assert str(ALICE) not in key
        states = [(key, state) for key, _, _, state, _ in rows]
        assert (f"relay:{stand_in}:10", "sent") in states
        assert ("ticket:1:csat:c1:thanks", "dead") in states  # cancelled, never sent
        letter = conn.execute("SELECT params, chat_id, resolution FROM dead_letters"
                              " WHERE ticket_id = 1").fetchone()  # fmt: skip
        assert (json.loads(letter[0]), letter[1], letter[2]) == (
            {"chat_id": stand_in},
            stand_in,
            "dropped",
        )
        assert conn.execute("SELECT update_id FROM quarantined_updates").fetchall() == [(902,)]
        assert conn.execute("SELECT key FROM fsm_state").fetchall() == [
            (f"fsm:{BOB}:{BOB}:default",)
        ]


async def test_forgetting_twice_finds_nothing_the_second_time(path: Path, daemon: Daemon) -> None:
    await asyncio.to_thread(forget, path, ALICE)

    again = await asyncio.to_thread(forget, path, ALICE)

    assert not again.found
    assert again.describe() == f"nothing is stored about user {ALICE}"
    assert not look_up(path, ALICE).found


async def test_two_forgotten_customers_stay_two(path: Path, daemon: Daemon) -> None:
    first = await asyncio.to_thread(forget, path, ALICE)
    second = await asyncio.to_thread(forget, path, BOB)

    assert (first.stand_in, second.stand_in) == (FORGOTTEN + 1, FORGOTTEN + 2)
    assert column(path, "SELECT customer_id FROM tickets ORDER BY id") == [
        FORGOTTEN + 1,
        FORGOTTEN + 2,
    ]
    assert column(path, "SELECT COUNT(*) FROM customers") == [2]


async def test_a_customer_with_an_active_ticket_is_not_forgotten(
    path: Path, daemon: Daemon
) -> None:
    async with daemon.database.transaction() as db:
        ticket = await tickets.open_ticket(db, ALICE, "Again", [], GROUP, utcnow())
    before = file_bytes(path)

    with pytest.raises(ActiveTicketError) as refused:
        await asyncio.to_thread(forget, path, ALICE)

    assert str(refused.value) == (
        f"customer {ALICE} has 1 active ticket (#{ticket.id} (open)): close it first, then "
        "forget the customer"
    )
    assert look_up(path, ALICE).name == ALICE_.name
    assert ALICE_.words["note"].encode() in file_bytes(path)
    assert len(file_bytes(path)) >= len(before) // 2


def test_the_stand_ins_are_not_user_ids(path: Path) -> None:
    with pytest.raises(ForgetError, match="is not a customer's user id"):
        forget(path, 0)
    with pytest.raises(ForgetError, match="stand-in of a customer forgotten already"):
        forget(path, FORGOTTEN + 1)
    with pytest.raises(ForgetError, match="no database here"):
        forget(path.with_name("missing.db"), ALICE)


async def test_the_report_says_what_went_what_stays_and_what_is_in_telegram(
    path: Path, daemon: Daemon
) -> None:
    report = await asyncio.to_thread(forget, path, ALICE)

    assert report.describe() == "\n".join(
        [
            f"Forgot customer {ALICE}. Removed:",
            "  profile (name, username, language): 1",
            "  tickets' subjects, topic names and intake answers: 1",
            "  message texts: 2",
            "  internal notes' texts: 1",
            "  rating comments: 1",
            "  ticket history entries' details: 1",
            "  forms in progress: 1",
            "  quarantined updates: 1",
            "  queued or sent calls (texts, names, Telegram's answers): 9",
            "  unsent messages cancelled: 1",
            "  dead letters' texts: 1",
            "Kept, with no name or words: 1 ticket(s) (#1): statuses, priorities, times, "
            "message counts and rating scores, filed under forgotten customer #1 "
            f"(id {FORGOTTEN + 1}).",
            "Not deleted: the topics of tickets #1 in the agents' group still hold the "
            "conversation and the customer's name; delete them in Telegram.",
            "Backups made before now still hold everything.",
        ]
    )


async def test_the_look_before_forgetting(path: Path, daemon: Daemon) -> None:
    stored = look_up(path, ALICE)

    assert stored.describe() == (
        f"customer {ALICE}: Alice Quokkason (@alice_quokka); 1 ticket(s) (#1 closed), 2 message(s)"
    )
    assert stored.active == ()


async def test_forgetting_zeroes_what_it_removes_on_an_sqlite_that_would_not(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an SQLite built without SECURE_DELETE, the daemon's deletions leave their bytes
    behind; forgetting does not. (The desk is written without overwriting any of Alice's
    words, so that what the check finds is forgetting's doing.)"""
    monkeypatch.setattr("storage.db._PRAGMAS", (*__import__("storage.db").db._PRAGMAS,
                                                "PRAGMA secure_delete = OFF"))  # fmt: skip
    database = await Database.open(path)
    try:
        async with database.transaction() as db:
            for person in (ALICE_, BOB_):
                await tickets.save_customer(db, person.user_id, person.name, None, None)
                ticket = await tickets.open_ticket(
                    db, person.user_id, person.words["answer"],
                    [Answer("details", "Details", person.words["answer"])], GROUP, utcnow(),
                )  # fmt: skip
                await messages.add_message(
                    db, ticket_id=ticket.id, direction="to_agents",
                    source_chat_id=person.user_id, source_message_id=1,
                    sender_id=person.user_id, kind="text", text=person.words["message"],
                    media_group_id=None, sent_at=utcnow(),
                )  # fmt: skip
                await notes.add(db, ticket.id, AGENT, GROUP, ticket.id, person.words["note"])
                await tickets.set_status(db, ticket.id, Status.CLOSED, AGENT)
        assert database._writer.execute("PRAGMA secure_delete").fetchone()[0] == 0
        await asyncio.to_thread(forget, path, ALICE)
    finally:
        await database.close()

    left = file_bytes(path)
    for name in ("name", "answer", "message", "note"):
        assert ALICE_.words[name].encode() not in left, name
        assert BOB_.words[name].encode() in left, name


def test_every_column_of_the_schema_is_accounted_for(path: Path) -> None:
    """A migration that adds a table or a column must say, in storage.forget.SCHEMA,
    whether it can hold a customer's personal data and what forgetting does with it."""
    with sqlite3.connect(path) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        schema = {
            table: {row[1] for row in conn.execute(f"PRAGMA table_info('{table}')")}
            for table in tables
        }
    known = {table: set(columns.split()) for table, (columns, _) in SCHEMA.items()}
    new = {
        table: sorted(columns - known.get(table, set()))
        for table, columns in schema.items()
        if columns - known.get(table, set())
    }
    assert not new, (
        f"not in storage.forget.SCHEMA: {new}; say whether each can hold a customer's "
        "personal data, and make forget() remove it if so"
    )
    assert not set(known) - set(schema), "SCHEMA names tables the schema no longer has"


async def test_a_ticket_that_arrives_while_forgetting_is_forgotten_too(
    path: Path, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forgetting looks first without a lock; a ticket closed meanwhile is not missed."""
    real_look = forget_module._look
    looks = []

    def look_then_the_daemon_writes(conn: sqlite3.Connection, user_id: int) -> Any:
        found = real_look(conn, user_id)
        looks.append(found.ticket_ids)
        if len(looks) == 1:
            with sqlite3.connect(path) as other:
                other.execute(
                    "INSERT INTO tickets (customer_id, status, subject, answers, group_chat_id,"
                    " created_at, updated_at, closed_at) VALUES (?, 'closed', ?, '[]', ?, ?, ?, ?)",
                    (ALICE, "Another Quokka matter", GROUP, utcnow(), utcnow(), utcnow()),
                )
        return found

    monkeypatch.setattr(forget_module, "_look", look_then_the_daemon_writes)

    report = await asyncio.to_thread(forget, path, ALICE)

    assert looks == [[1], [1, 3]]
    assert report.tickets == (1, 3)
    assert column(path, "SELECT subject FROM tickets WHERE id = 3") == [""]


async def test_a_database_locked_too_long_changes_nothing(
    path: Path, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forget_module, "BUSY_TIMEOUT_MS", 50)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the daemon in the middle of a long write
        with pytest.raises(ForgetError, match="database is locked; nothing was changed"):
            await asyncio.to_thread(forget, path, ALICE)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert look_up(path, ALICE).name == ALICE_.name
