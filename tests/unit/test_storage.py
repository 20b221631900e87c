"""The desk's memory: tickets, relayed messages, the outbox and the form, in real SQLite."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from storage import messages, outbox, tickets, updates
from storage.db import Conn, Database, from_iso, to_iso, utcnow
from storage.fsm import SQLiteStorage
from storage.migrations import migrate
from storage.outbox import Outgoing, Purpose
from storage.tickets import Answer, Ticket

GROUP = -1001234567890
ALICE = 111
BOB = 222


class Boom(Exception):
    """Something going wrong half-way through handling an update."""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "desk.db"
    migrate(path)
    return path


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path)
    yield database
    await database.close()


def seen_from_outside(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """What another process reading the file would see: committed data only."""
    with closing(sqlite3.connect(path)) as other:
        return other.execute(sql, params).fetchall()


async def a_customer(conn: Conn, user_id: int = ALICE, name: str = "Alice Smith") -> None:
    await tickets.save_customer(conn, user_id, name, "alice", "en")


async def a_ticket(conn: Conn, customer_id: int = ALICE) -> Ticket:
    await a_customer(conn, customer_id)
    return await tickets.open_ticket(
        conn,
        customer_id,
        "Billing",
        [Answer("category", "Category", "Billing")],
        GROUP,
        utcnow(),
    )


async def count(db: Database, table: str) -> int:
    async with db.reader() as conn:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))


# --- the database file and its transactions ---------------------------------------


async def test_a_new_database_file_is_private_and_in_wal_mode_with_foreign_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "desk.db"

    database = await Database.open(path)
    try:
        async with database.reader() as conn:
            journal = await conn.fetchval("PRAGMA journal_mode")
            foreign_keys = await conn.fetchval("PRAGMA foreign_keys")
            busy_timeout = await conn.fetchval("PRAGMA busy_timeout")
    finally:
        await database.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert journal == "wal"
    assert foreign_keys == 1
    assert busy_timeout == 5000


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as conn:
            await tickets.open_ticket(conn, 999, "Billing", [], GROUP, utcnow())


async def test_a_transaction_commits_what_it_wrote(db: Database, db_path: Path) -> None:
    async with db.transaction() as conn:
        await a_customer(conn)

    assert seen_from_outside(db_path, "SELECT full_name FROM customers") == [("Alice Smith",)]


async def test_an_error_inside_a_transaction_rolls_back_everything(db: Database) -> None:
    async def open_a_ticket_then_fail() -> None:
        async with db.transaction() as conn:
            await a_ticket(conn)
            raise Boom

    with pytest.raises(Boom):
        await open_a_ticket_then_fail()

    assert await count(db, "customers") == 0
    assert await count(db, "tickets") == 0
    assert await count(db, "ticket_events") == 0


async def test_a_nested_transaction_joins_the_outer_one(db: Database, db_path: Path) -> None:
    async def handle_an_update_that_fails_at_the_end() -> None:
        async with db.transaction() as outer:
            await a_customer(outer, ALICE)
            async with db.transaction() as inner:
                assert inner is outer
                await a_customer(inner, BOB, "Bob")
            # The inner block has ended, yet nothing is committed until the outer one ends.
            assert seen_from_outside(db_path, "SELECT * FROM customers") == []
            raise Boom

    with pytest.raises(Boom):
        await handle_an_update_that_fails_at_the_end()

    assert await count(db, "customers") == 0


async def test_after_commit_actions_run_once_the_data_is_committed(
    db: Database, db_path: Path
) -> None:
    seen: list[list[tuple]] = []

    async def announce() -> None:
        seen.append(seen_from_outside(db_path, "SELECT user_id FROM customers"))

    async with db.transaction() as conn:
        await a_customer(conn)
        conn.after_commit(announce)
        assert seen == []

    assert seen == [[(ALICE,)]]


async def test_after_commit_actions_registered_in_a_joined_transaction_wait_for_the_outer(
    db: Database,
) -> None:
    ran: list[str] = []

    async def action() -> None:
        ran.append("ran")

    async with db.transaction():
        async with db.transaction() as inner:
            inner.after_commit(action)
        assert ran == []

    assert ran == ["ran"]


async def test_after_commit_actions_never_run_after_a_rollback(db: Database) -> None:
    ran: list[str] = []

    async def action() -> None:
        ran.append("ran")

    async def register_then_fail() -> None:
        async with db.transaction() as conn:
            await a_customer(conn)
            conn.after_commit(action)
            raise Boom

    with pytest.raises(Boom):
        await register_then_fail()

    assert ran == []


def test_times_are_stored_as_utc_iso_strings() -> None:
    moment = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)

    assert to_iso(moment) == "2025-03-01T12:30:00.000000+00:00"
    assert to_iso(moment.replace(tzinfo=None)) == to_iso(moment)
    assert from_iso(to_iso(moment)) == moment


# --- customers and tickets ---------------------------------------------------------


async def test_a_returning_customer_is_updated_not_duplicated(db: Database) -> None:
    async with db.transaction() as conn:
        await tickets.save_customer(conn, ALICE, "Alice", "alice", "en")
        await tickets.save_customer(conn, ALICE, "Alice Smith", None, "de")
        customer = await tickets.get_customer(conn, ALICE)

    assert customer == tickets.Customer(ALICE, "Alice Smith", None, "de", None)
    assert await count(db, "customers") == 1


async def test_tickets_are_numbered_in_sequence(db: Database) -> None:
    async with db.transaction() as conn:
        first = await a_ticket(conn, ALICE)
        second = await a_ticket(conn, BOB)
        await tickets.set_status(conn, first.id, "closed", actor_id=None)
        third = await a_ticket(conn, ALICE)

    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert first.is_open
    assert first.answers == (Answer("category", "Category", "Billing"),)


async def test_a_customers_current_ticket_is_their_newest_active_one(db: Database) -> None:
    # One active ticket per customer is the desk's rule (the form starts only without
    # one); with tickets.new_closes_current off, /new keeps the old one active as well.
    async with db.transaction() as conn:
        first = await a_ticket(conn, ALICE)
        second = await a_ticket(conn, ALICE)
        current = await tickets.open_ticket_of(conn, ALICE)
        await tickets.set_status(conn, second.id, tickets.Status.CLOSED, actor_id=None)
        after_close = await tickets.open_ticket_of(conn, ALICE)
        await tickets.set_status(conn, first.id, tickets.Status.RESOLVED, actor_id=None)
        resolved = await tickets.open_ticket_of(conn, ALICE)
        await tickets.set_status(conn, first.id, tickets.Status.CLOSED, actor_id=None)
        none_left = await tickets.open_ticket_of(conn, ALICE)

    assert current is not None
    assert current.id == second.id
    assert after_close is not None
    assert after_close.id == first.id
    assert resolved is not None
    assert resolved.id == first.id  # resolved is still active
    assert none_left is None


async def test_an_agent_message_finds_its_ticket_by_topic(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        await tickets.set_topic(conn, ticket.id, GROUP, thread_id=77)

        found = await tickets.ticket_by_topic(conn, GROUP, 77)
        elsewhere = await tickets.ticket_by_topic(conn, GROUP, 78)

    assert found is not None
    assert (found.id, found.thread_id) == (ticket.id, 77)
    assert elsewhere is None


async def test_closing_a_ticket_stamps_closed_at_and_reopening_clears_it(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        await tickets.set_status(conn, ticket.id, "closed", actor_id=900)
        closed = await tickets.get_ticket(conn, ticket.id)
        no_open_ticket = await tickets.open_ticket_of(conn, ALICE)
        await tickets.set_status(conn, ticket.id, "open", actor_id=900)
        reopened = await tickets.get_ticket(conn, ticket.id)
        events = await conn.fetchall(
            "SELECT kind, actor_id FROM ticket_events WHERE ticket_id = ? ORDER BY id",
            (ticket.id,),
        )

    assert closed is not None
    assert closed.status == "closed"
    assert closed.closed_at is not None
    assert no_open_ticket is None
    assert reopened is not None
    assert reopened.is_open
    assert reopened.closed_at is None
    assert [tuple(event) for event in events] == [
        ("opened", ALICE),
        ("closed", 900),
        ("open", 900),
    ]


# --- relayed messages --------------------------------------------------------------


async def relay_record(
    conn: Conn,
    ticket: Ticket,
    source_message_id: int,
    *,
    chat_id: int = ALICE,
    media_group_id: str | None = None,
) -> int | None:
    return await messages.add_message(
        conn,
        ticket_id=ticket.id,
        direction="to_agents",
        source_chat_id=chat_id,
        source_message_id=source_message_id,
        sender_id=ALICE,
        kind="photo" if media_group_id else "text",
        text="hello",
        media_group_id=media_group_id,
        sent_at=utcnow(),
    )


async def test_a_message_is_recorded_once_however_often_telegram_delivers_it(
    db: Database,
) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        first = await relay_record(conn, ticket, source_message_id=5)
        again = await relay_record(conn, ticket, source_message_id=5)

    assert first is not None
    assert await count(db, "messages") == 1
    assert again is None


async def test_a_message_and_its_copy_are_each_others_counterpart(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        link = await relay_record(conn, ticket, source_message_id=5)
        assert link is not None
        undelivered = await relay_record(conn, ticket, source_message_id=6)
        assert undelivered is not None
        await messages.mark_delivered(conn, link, GROUP, 900)

        from_customer_side = await messages.counterpart(conn, ALICE, 5)
        from_agent_side = await messages.counterpart(conn, GROUP, 900)
        not_yet_copied = await messages.counterpart(conn, ALICE, 6)
        unknown = await messages.counterpart(conn, ALICE, 7)
        delivered = await messages.get_message(conn, link)

    assert from_customer_side == (GROUP, 900)
    assert from_agent_side == (ALICE, 5)
    assert not_yet_copied is None
    assert unknown is None
    assert delivered is not None
    assert (delivered.target_chat_id, delivered.target_message_id) == (GROUP, 900)


async def test_album_parts_come_back_in_message_order(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        for message_id in (12, 10, 11):
            await relay_record(conn, ticket, message_id, media_group_id="album-1")
        await relay_record(conn, ticket, 13, media_group_id="album-2")

        parts = await messages.album_parts(conn, ALICE, "album-1")

    assert [part.source_message_id for part in parts] == [10, 11, 12]


# --- the outbox --------------------------------------------------------------------


def a_message_to(chat_id: int, key: str, priority: int = outbox.PRIORITY_CUSTOMER) -> Outgoing:
    return Outgoing(
        key=key,
        purpose=Purpose.NOTICE,
        method="sendMessage",
        params={"chat_id": chat_id, "text": "Привет"},
        chat_id=chat_id,
        priority=priority,
    )


async def test_the_same_change_is_queued_only_once(db: Database) -> None:
    async with db.transaction() as conn:
        first = await outbox.enqueue(conn, a_message_to(ALICE, "ticket:1:created"))
        again = await outbox.enqueue(conn, a_message_to(ALICE, "ticket:1:created"))
        item = await outbox.get_item(conn, first or 0)

    assert first is not None
    assert await count(db, "outbox") == 1
    assert item is not None
    assert item.params == {"chat_id": ALICE, "text": "Привет"}
    assert (item.state, item.attempts) == ("pending", 0)
    assert again is None


async def test_each_chat_is_served_in_order_and_finished_rows_leave_the_queue(
    db: Database,
) -> None:
    async with db.transaction() as conn:
        alice_1 = await outbox.enqueue(conn, a_message_to(ALICE, "a1"))
        await outbox.enqueue(conn, a_message_to(ALICE, "a2"))
        group_1 = await outbox.enqueue(conn, a_message_to(GROUP, "g1"))
        group_2 = await outbox.enqueue(conn, a_message_to(GROUP, "g2"))
        bob_1 = await outbox.enqueue(conn, a_message_to(BOB, "b1"))
        assert None not in (alice_1, group_1, group_2, bob_1)
        await outbox.mark_sent(conn, group_1 or 0, {"message_id": 1})
        await outbox.mark_dead(conn, bob_1 or 0, "Forbidden: bot was blocked by the user")

        queue = await outbox.heads(conn)
        waiting = await outbox.depth(conn)

    assert [(item.chat_id, item.key) for item in queue] == [(ALICE, "a1"), (GROUP, "g2")]
    assert waiting == 3


async def test_a_failed_send_waits_its_turn_again_with_the_reason(db: Database) -> None:
    async with db.transaction() as conn:
        item_id = await outbox.enqueue(conn, a_message_to(ALICE, "a1"))
        assert item_id is not None
        await outbox.mark_sending(conn, item_id)
        await outbox.retry_later(conn, item_id, 30, "Too Many Requests: retry after 30")
        item = await outbox.get_item(conn, item_id)

    assert item is not None
    assert (item.state, item.attempts) == ("pending", 1)
    assert item.last_error == "Too Many Requests: retry after 30"
    assert from_iso(item.not_before) > datetime.now(UTC) + timedelta(seconds=25)


async def test_a_sent_row_keeps_telegrams_answer_and_a_dead_one_its_reason(
    db: Database,
) -> None:
    async with db.transaction() as conn:
        sent_id = await outbox.enqueue(conn, a_message_to(ALICE, "a1"))
        dead_id = await outbox.enqueue(conn, a_message_to(BOB, "b1"))
        assert sent_id is not None
        assert dead_id is not None
        await outbox.mark_sending(conn, sent_id)
        await outbox.retry_later(conn, sent_id, 0, "Bad Gateway")
        await outbox.mark_sending(conn, sent_id)
        await outbox.mark_sent(conn, sent_id, {"message_id": 42})
        await outbox.mark_dead(conn, dead_id, "Bad Request: chat not found")

        sent = await outbox.get_item(conn, sent_id)
        dead = await outbox.get_item(conn, dead_id)
        result = await conn.fetchval("SELECT result FROM outbox WHERE id = ?", (sent_id,))

    assert sent is not None
    assert (sent.state, sent.attempts, sent.last_error) == ("sent", 2, None)
    assert result == '{"message_id": 42}'
    assert dead is not None
    assert (dead.state, dead.last_error) == ("dead", "Bad Request: chat not found")


async def test_rows_left_sending_by_a_stopped_process_are_resumed(db: Database) -> None:
    async with db.transaction() as conn:
        ids = [await outbox.enqueue(conn, a_message_to(ALICE, key)) for key in ("a", "b", "c")]
        await outbox.mark_sending(conn, ids[0] or 0)
        await outbox.mark_sending(conn, ids[1] or 0)

    async with db.transaction() as conn:
        resumed = await outbox.resume_interrupted(conn)
        states = [(await outbox.get_item(conn, item_id or 0)) for item_id in ids]

    assert resumed == 2
    assert [item.state for item in states if item] == ["pending", "pending", "pending"]


# --- processed updates -------------------------------------------------------------


async def test_a_processed_update_is_remembered_until_pruned(db: Database) -> None:
    async with db.transaction() as conn:
        assert not await updates.is_processed(conn, 1001)
        await updates.record(conn, 1001, "handled")
        await updates.record(conn, 1002, "ignored")
        await updates.record(conn, 1002, "failed")  # recording again is harmless
        await conn.execute(
            "UPDATE processed_updates SET processed_at = ? WHERE update_id = 1001",
            (to_iso(datetime.now(UTC) - timedelta(days=3)),),
        )

        pruned = await updates.prune(conn)
        old_remembered = await updates.is_processed(conn, 1001)
        recent_remembered = await updates.is_processed(conn, 1002)

    assert pruned == 1
    assert not old_remembered
    assert recent_remembered


# --- the intake form's FSM storage -------------------------------------------------


class IntakeForm(StatesGroup):
    answering = State()


KEY = StorageKey(bot_id=42, chat_id=ALICE, user_id=ALICE)


async def test_the_form_state_and_answers_are_stored(db: Database) -> None:
    fsm = SQLiteStorage(db)

    await fsm.set_state(KEY, IntakeForm.answering)
    await fsm.set_data(KEY, {"step": 1, "answers": [["category", "Category", "Billing"]]})

    assert await fsm.get_state(KEY) == "IntakeForm:answering"
    assert await fsm.get_data(KEY) == {"step": 1, "answers": [["category", "Category", "Billing"]]}
    other = StorageKey(bot_id=42, chat_id=BOB, user_id=BOB)
    assert await fsm.get_state(other) is None
    assert await fsm.get_data(other) == {}


async def test_a_half_filled_form_survives_a_restart(db_path: Path) -> None:
    before = await Database.open(db_path)
    try:
        fsm = SQLiteStorage(before)
        await fsm.set_state(KEY, "IntakeForm:answering")
        await fsm.set_data(KEY, {"step": 1, "note": "ünïcødé"})
    finally:
        await before.close()

    after = await Database.open(db_path)
    try:
        fsm = SQLiteStorage(after)
        state = await fsm.get_state(KEY)
        data = await fsm.get_data(KEY)
    finally:
        await after.close()

    assert state == "IntakeForm:answering"
    assert data == {"step": 1, "note": "ünïcødé"}


async def test_a_finished_form_leaves_no_row_behind(db: Database) -> None:
    fsm = SQLiteStorage(db)
    await fsm.set_state(KEY, "IntakeForm:answering")
    await fsm.set_data(KEY, {"step": 1})

    await fsm.set_state(KEY, None)
    assert await count(db, "fsm_state") == 1  # the answers are still there

    await fsm.set_data(KEY, {})
    assert await count(db, "fsm_state") == 0


async def test_form_changes_roll_back_with_the_update_that_made_them(db: Database) -> None:
    fsm = SQLiteStorage(db)

    async def start_the_form_then_fail() -> None:
        async with db.transaction():
            await fsm.set_state(KEY, IntakeForm.answering)
            await fsm.set_data(KEY, {"step": 1})
            assert await fsm.get_state(KEY) == "IntakeForm:answering"
            raise Boom

    with pytest.raises(Boom):
        await start_the_form_then_fail()

    assert await fsm.get_state(KEY) is None
    assert await fsm.get_data(KEY) == {}


async def test_a_newer_card_edit_replaces_an_unsent_older_one(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)

        def edit(n: int) -> Outgoing:
            return Outgoing(
                key=f"card-edit-{n}",
                purpose=Purpose.CARD_EDIT,
                method="editMessageText",
                params={"text": f"state {n}"},
                chat_id=GROUP,
                ticket_id=ticket.id,
                priority=outbox.PRIORITY_CARD,
            )

        await outbox.enqueue(conn, edit(1))
        assert await outbox.supersede(conn, ticket.id, Purpose.CARD_EDIT) == 1
        await outbox.enqueue(conn, edit(2))
        sending = await outbox.enqueue(conn, edit(3))
        await outbox.mark_sending(conn, sending or 0)
        # Only rows nobody has tried yet are replaced; one in flight stays.
        assert await outbox.supersede(conn, ticket.id, Purpose.CARD_EDIT) == 1
        left = await conn.fetchall("SELECT idempotency_key FROM outbox ORDER BY id")
    assert [row[0] for row in left] == ["card-edit-3"]


async def test_heads_serve_a_chat_by_priority_then_in_order(db: Database) -> None:
    async with db.transaction() as conn:
        for key, priority in (("notice", 5), ("words-1", 0), ("card", 9), ("words-2", 0)):
            await outbox.enqueue(
                conn,
                Outgoing(
                    key=key,
                    purpose=Purpose.NOTICE,
                    method="sendMessage",
                    params={},
                    chat_id=GROUP,
                    priority=priority,
                ),
            )
        order = []
        while heads := await outbox.heads(conn):
            (head,) = heads
            order.append(head.key)
            await outbox.mark_sent(conn, head.id, None)
    assert order == ["words-1", "words-2", "notice", "card"]
