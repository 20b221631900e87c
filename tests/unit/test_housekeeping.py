"""The housekeeper keeps the store honest: stuck rows, lost replies, lost topics, alerts.

Real SQLite; Telegram is a small stand-in with just the two calls housekeeping makes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramServerError
from aiogram.methods import ReopenForumTopic

from bot.config import Settings
from bot.delivery.sender import Sender
from bot.housekeeping import EXCERPT, PROBES_PER_PASS, Housekeeper, undelivered_note
from bot.metrics import Metrics
from bot.services.outcomes import DeskOutcomes
from storage import deadletters, messages, outbox, tickets, updates
from storage.db import Conn, Database, to_iso, utcnow
from storage.housekeeping import UndeliveredReply
from storage.migrations import migrate
from storage.outbox import PRIORITY_PROBE, PRIORITY_RECOVERY, OutboxItem, Outgoing, Purpose
from storage.tickets import Answer, Ticket
from tests.unit.conftest import GROUP, TOKEN

ADMINS = [900, 901]
AGENT = 500


class Telegram:
    """getWebhookInfo and reopenForumTopic, answering as the test's forum would."""

    def __init__(self) -> None:
        self.pending_update_count = 0
        self.topics: dict[int, str] = {}  # thread id -> "open", "closed"; absent: deleted
        self.probed: list[int] = []
        self.failing = False

    async def get_webhook_info(self) -> Any:
        return SimpleNamespace(pending_update_count=self.pending_update_count)

    async def reopen_forum_topic(self, *, chat_id: int, message_thread_id: int) -> Any:
        self.probed.append(message_thread_id)
        method = ReopenForumTopic(chat_id=chat_id, message_thread_id=message_thread_id)
        if self.failing:
            raise TelegramServerError(method=method, message="Bad Gateway")
        state = self.topics.get(message_thread_id)
        if state is None:
            raise TelegramBadRequest(method=method, message="Bad Request: message thread not found")
        if state == "open":
            raise TelegramBadRequest(method=method, message="Bad Request: TOPIC_NOT_MODIFIED")
        self.topics[message_thread_id] = "open"
        return True


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    return Settings(
        telegram={"token": TOKEN},  # type: ignore[arg-type]
        support={"group_id": GROUP, "admin_ids": ADMINS},  # type: ignore[arg-type]
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    yield database
    await database.close()


@pytest.fixture
def telegram() -> Telegram:
    return Telegram()


class Desk:
    """The housekeeper under test, with what it told the sender."""

    def __init__(self, db: Database, settings: Settings, telegram: Telegram) -> None:
        self.metrics = Metrics()
        self.delivering: set[int] = set()
        self.breaker_open = False
        self.wakes = 0
        self.housekeeper = Housekeeper(
            telegram,
            db,
            settings,
            self.metrics,
            is_delivering=self.delivering.__contains__,
            breaker_open=lambda: self.breaker_open,
            wake=self._wake,
        )

    def _wake(self) -> None:
        self.wakes += 1

    def findings(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "topicdesk_reconciliation_findings_total", {"kind": kind}
        )
        return value or 0.0

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)


@pytest.fixture
def desk(db: Database, settings: Settings, telegram: Telegram) -> Desk:
    return Desk(db, settings, telegram)


# --- a small world --------------------------------------------------------------------


async def a_ticket(conn: Conn, customer_id: int = 111, thread_id: int | None = 77) -> Ticket:
    await tickets.save_customer(conn, customer_id, "Alice Smith", "alice", "en")
    ticket = await tickets.open_ticket(
        conn, customer_id, "Billing", [Answer("category", "Category", "Billing")], GROUP, utcnow()
    )
    if thread_id is not None:
        await tickets.set_topic(conn, ticket.id, GROUP, thread_id)
    found = await tickets.get_ticket(conn, ticket.id)
    assert found is not None
    return found


async def an_agents_reply(
    conn: Conn, ticket: Ticket, source_id: int, text: str | None
) -> OutboxItem:
    """An agent's message recorded and queued for the customer, as the handler does it."""
    link = await messages.add_message(
        conn,
        ticket_id=ticket.id,
        direction="to_customer",
        source_chat_id=GROUP,
        source_message_id=source_id,
        sender_id=AGENT,
        kind="text" if text else "photo",
        text=text,
        media_group_id=None,
        sent_at=utcnow(),
    )
    row = await outbox.enqueue(
        conn,
        Outgoing(
            key=f"relay:{GROUP}:{source_id}",
            purpose=Purpose.RELAY,
            method="copyMessage",
            params={"from_chat_id": GROUP, "message_id": source_id},
            chat_id=ticket.customer_id,
            ticket_id=ticket.id,
            message_id=link,
        ),
    )
    item = await outbox.get_item(conn, row or 0)
    assert item is not None
    return item


def a_notice(key: str, chat_id: int = 111) -> Outgoing:
    return Outgoing(
        key=key, purpose=Purpose.NOTICE, method="sendMessage", params={"text": key}, chat_id=chat_id
    )


async def rows(db: Database, where: str = "1", params: tuple[object, ...] = ()) -> list[Any]:
    async with db.reader() as conn:
        return await conn.fetchall(f"SELECT * FROM outbox WHERE {where} ORDER BY id", params)


async def backdate(db: Database, item_id: int, minutes: float) -> None:
    async with db.transaction() as conn:
        when = to_iso(datetime.now(UTC) - timedelta(minutes=minutes))
        await conn.execute(
            "UPDATE outbox SET updated_at = ?, created_at = ? WHERE id = ?", (when, when, item_id)
        )


# --- rows stuck in 'sending' ------------------------------------------------------------


async def test_a_row_left_sending_with_no_delivery_under_way_goes_back_to_its_queue(
    db: Database, desk: Desk
) -> None:
    async with db.transaction() as conn:
        stuck = await outbox.enqueue(conn, a_notice("stuck", 111))
        in_flight = await outbox.enqueue(conn, a_notice("in flight", 222))
        recent = await outbox.enqueue(conn, a_notice("recent", 333))
        for row in (stuck, in_flight, recent):
            await outbox.mark_sending(conn, row or 0)
    await backdate(db, stuck or 0, minutes=10)
    await backdate(db, in_flight or 0, minutes=10)  # a long retry_after, still in hand
    desk.delivering.add(in_flight or 0)

    assert await desk.housekeeper.reconcile() == 1

    states = {row["idempotency_key"]: row["state"] for row in await rows(db)}
    assert states == {"stuck": "pending", "in flight": "sending", "recent": "sending"}
    assert desk.findings("stuck_sending") == 1
    assert desk.wakes == 1

    assert await desk.housekeeper.reconcile() == 0
    assert desk.findings("stuck_sending") == 1


# --- replies that never reached the customer -------------------------------------------


async def test_an_undelivered_reply_is_noted_in_its_topic_once(
    db: Database, desk: Desk, telegram: Telegram
) -> None:
    telegram.topics = {77: "open"}
    long_text = "Your refund of 42 EUR was approved and will arrive in three to five working days."
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        delivered = await an_agents_reply(conn, ticket, 10, "Hello, looking into it")
        await outbox.mark_sent(conn, delivered.id, {"message_id": 5})
        await messages.mark_delivered(conn, delivered.message_id or 0, ticket.customer_id, 5)
        lost = await an_agents_reply(conn, ticket, 11, long_text)
        await deadletters.bury(conn, lost, "chat not found", 1)  # no note from the sender

    assert await desk.housekeeper.reconcile() == 1

    notes = await rows(db, "purpose = 'notice' AND ticket_id = ?", (ticket.id,))
    assert len(notes) == 1
    text = notes[0]["params"]
    excerpt = long_text[: EXCERPT - 1] + "…"
    assert f"⚠ an earlier reply never reached the customer: {excerpt}" in text
    assert notes[0]["in_topic"] == 1
    assert desk.findings("undelivered_reply") == 1

    # Flagged: the next pass finds nothing new.
    assert await desk.housekeeper.reconcile() == 0
    assert len(await rows(db, "purpose = 'notice' AND ticket_id = ?", (ticket.id,))) == 1
    assert desk.findings("undelivered_reply") == 1
    async with db.reader() as conn:
        flagged = await conn.fetchall(
            "SELECT detail FROM ticket_events WHERE kind = 'undelivered_flagged'"
        )
    assert len(flagged) == 1
    assert f'"message_id": {lost.message_id}' in flagged[0]["detail"]


async def test_a_reply_the_sender_already_reported_gets_no_second_note(
    db: Database, desk: Desk, telegram: Telegram
) -> None:
    telegram.topics = {77: "open"}
    async with db.transaction() as conn:
        ticket = await a_ticket(conn)
        lost = await an_agents_reply(conn, ticket, 11, "Refund approved")
        letter = await deadletters.bury(conn, lost, "bot was blocked by the user", 1)
        note = await outbox.enqueue(conn, a_notice(f"dead:{letter}:note", GROUP))

    # While the sender's own note is on its way, wait for it.
    assert await desk.housekeeper.reconcile() == 0
    async with db.transaction() as conn:
        await outbox.mark_sent(conn, note or 0, {"message_id": 9})

    assert await desk.housekeeper.reconcile() == 0

    assert await rows(db, "purpose = 'notice' AND ticket_id = ?", (ticket.id,)) == []
    assert desk.findings("undelivered_reply") == 0
    async with db.reader() as conn:
        told = await conn.fetchval(
            "SELECT json_extract(detail, '$.told_by') FROM ticket_events"
            " WHERE kind = 'undelivered_flagged'"
        )
    assert told == "sender"


def test_a_reply_without_text_is_named_by_its_kind_and_html_is_escaped() -> None:
    photo = UndeliveredReply(1, 1, "photo", None, 1, None)
    code = UndeliveredReply(2, 1, "text", "use <b>x</b> & y", 2, None)
    assert undelivered_note(photo).endswith(": (photo)")
    assert undelivered_note(code).endswith(": use &lt;b&gt;x&lt;/b&gt; &amp; y")


# --- topics that no longer exist -------------------------------------------------------


class ProbingBot:
    """What the sender needs of a Bot to deliver probes: calls go to the test's forum."""

    def __init__(self, telegram: Telegram) -> None:
        self.telegram = telegram

    async def __call__(self, request: Any) -> Any:
        assert isinstance(request, ReopenForumTopic), request
        return await self.telegram.reopen_forum_topic(
            chat_id=int(request.chat_id), message_thread_id=request.message_thread_id
        )


async def deliver_probes(db: Database, settings: Settings, desk: Desk, telegram: Telegram) -> None:
    """Let the real sender deliver the queued probes, with the desk's rules for outcomes."""
    sender = Sender(
        ProbingBot(telegram),  # type: ignore[arg-type]
        db,
        settings,
        DeskOutcomes(settings, desk.metrics),
        metrics=desk.metrics,
    )
    running = asyncio.create_task(sender.run())
    try:
        for _ in range(200):
            if not await rows(db, "purpose = 'topic_probe' AND state IN ('pending', 'sending')"):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the probes were not delivered")
    finally:
        await sender.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_deleted_topic_gets_a_new_one_queued_ahead_of_everything(
    db: Database, settings: Settings, desk: Desk, telegram: Telegram
) -> None:
    async with db.transaction() as conn:
        fine = await a_ticket(conn, 111, thread_id=70)
        await a_ticket(conn, 222, thread_id=71)
        gone = await a_ticket(conn, 333, thread_id=72)
    telegram.topics = {70: "open", 71: "closed"}

    assert await desk.housekeeper.reconcile() == 0  # the probes' answers come later
    assert desk.wakes == 1
    probes = await rows(db, "purpose = 'topic_probe'")
    assert [(r["method"], r["priority"]) for r in probes] == [
        ("reopenForumTopic", PRIORITY_PROBE)
    ] * 3
    await deliver_probes(db, settings, desk, telegram)

    assert telegram.probed == [70, 71, 72]
    async with db.reader() as conn:
        assert (await tickets.get_ticket(conn, gone.id)).thread_id is None  # type: ignore[union-attr]
        assert (await tickets.get_ticket(conn, fine.id)).thread_id == 70  # type: ignore[union-attr]
    recovery = await rows(db, "ticket_id = ? AND purpose != 'topic_probe'", (gone.id,))
    assert [(r["method"], r["purpose"], r["priority"]) for r in recovery] == [
        ("createForumTopic", "topic", PRIORITY_RECOVERY),
        ("sendMessage", "card", PRIORITY_RECOVERY),
    ]
    assert "#3 · Alice Smith · Billing" in recovery[0]["params"]
    assert "replaces one that was deleted" in recovery[1]["params"]
    assert desk.findings("topic_missing") == 1
    assert desk.findings("topic_closed") == 1  # reopened by the probe
    assert telegram.topics[71] == "open"
    assert {r["state"] for r in await rows(db, "purpose = 'topic_probe'")} == {"sent"}


async def test_topics_are_probed_a_few_at_a_time_least_recently_probed_first(
    db: Database, settings: Settings, desk: Desk, telegram: Telegram
) -> None:
    threads = list(range(80, 80 + PROBES_PER_PASS + 2))
    async with db.transaction() as conn:
        for number, thread in enumerate(threads):
            await a_ticket(conn, 1000 + number, thread_id=thread)
    telegram.topics = dict.fromkeys(threads, "open")

    await desk.housekeeper.reconcile()
    await deliver_probes(db, settings, desk, telegram)
    await desk.housekeeper.reconcile()
    await deliver_probes(db, settings, desk, telegram)

    assert telegram.probed[:PROBES_PER_PASS] == threads[:PROBES_PER_PASS]
    assert telegram.probed[PROBES_PER_PASS:][:2] == threads[PROBES_PER_PASS:]
    assert desk.findings("topic_missing") == desk.findings("topic_closed") == 0


async def test_no_probe_while_the_group_has_messages_waiting_or_telegram_fails(
    db: Database, desk: Desk
) -> None:
    async with db.transaction() as conn:
        await a_ticket(conn, 111, thread_id=70)
        await a_ticket(conn, 222, thread_id=71)
        waiting = await outbox.enqueue(conn, a_notice("for the agents", GROUP))

    await desk.housekeeper.reconcile()
    assert await rows(db, "purpose = 'topic_probe'") == []

    async with db.transaction() as conn:
        await outbox.mark_sent(conn, waiting or 0, None)
    desk.breaker_open = True
    await desk.housekeeper.reconcile()
    assert await rows(db, "purpose = 'topic_probe'") == []

    desk.breaker_open = False
    await desk.housekeeper.reconcile()
    assert len(await rows(db, "purpose = 'topic_probe'")) == 2


async def test_a_probe_of_a_ticket_closed_meanwhile_is_not_sent(
    db: Database, settings: Settings, desk: Desk, telegram: Telegram
) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn, 111, thread_id=70)
    telegram.topics = {70: "closed"}
    await desk.housekeeper.reconcile()
    async with db.transaction() as conn:
        await tickets.set_status(conn, ticket.id, "closed", AGENT)

    await deliver_probes(db, settings, desk, telegram)

    assert telegram.probed == []  # a closed ticket's topic stays closed
    assert desk.findings("topic_closed") == 0


# --- housekeeping: gauges, ledger, alerts ----------------------------------------------


async def test_gauges_describe_the_store_and_the_old_ledger_is_pruned(
    db: Database, desk: Desk, telegram: Telegram
) -> None:
    telegram.pending_update_count = 7
    async with db.transaction() as conn:
        await a_ticket(conn, 111)
        await outbox.enqueue(conn, a_notice("waiting"))
        dead = await outbox.enqueue(conn, a_notice("dead", 222))
        item = await outbox.get_item(conn, dead or 0)
        assert item is not None
        await deadletters.bury(conn, item, "chat not found", 1)
        await updates.record(conn, 1, "handled")
        await updates.record(conn, 2, "handled")
        old = to_iso(datetime.now(UTC) - timedelta(hours=49))
        await conn.execute(
            "UPDATE processed_updates SET processed_at = ? WHERE update_id = 1", (old,)
        )

    await desk.housekeeper.tidy()

    assert desk.gauge("topicdesk_outbox_depth") == 1
    assert desk.gauge("topicdesk_dead_letters") == 1
    assert desk.gauge("topicdesk_open_tickets") == 1
    assert desk.gauge("topicdesk_pending_update_count") == 7
    async with db.reader() as conn:
        assert not await updates.is_processed(conn, 1)
        assert await updates.is_processed(conn, 2)


async def enqueue_operations(db: Database, total: int, dead: int) -> None:
    async with db.transaction() as conn:
        for number in range(total):
            row = await outbox.enqueue(conn, a_notice(f"op {number}", 5000 + number))
            item = await outbox.get_item(conn, row or 0)
            assert item is not None
            if number < dead:
                await deadletters.bury(conn, item, "chat not found", 1)
            else:
                await outbox.mark_sent(conn, item.id, None)


async def alerts(db: Database) -> list[tuple[int, str]]:
    found = await rows(db, "idempotency_key LIKE 'alert:%'")
    return [(row["chat_id"], row["idempotency_key"]) for row in found]


async def test_too_many_failures_alert_each_admin_once_a_day(db: Database, desk: Desk) -> None:
    await enqueue_operations(db, total=30, dead=2)  # 6.7 % > 5 %

    await desk.housekeeper.tidy()
    await desk.housekeeper.tidy()

    day = datetime.now(UTC).date().isoformat()
    assert await alerts(db) == [(admin, f"alert:failures:{day}:{admin}") for admin in ADMINS]
    text = (await rows(db, "chat_id = ?", (ADMINS[0],)))[0]["params"]
    assert "2 of the 30 sends to Telegram in the last 24 hours failed for good" in text
    assert desk.wakes == 1


@pytest.mark.parametrize(
    ("total", "dead"),
    [
        pytest.param(40, 2, id="5-percent-is-not-more-than-5"),
        pytest.param(10, 5, id="too-few-operations-to-judge"),
    ],
)
async def test_no_failure_alert_at_or_below_the_threshold_or_with_few_operations(
    db: Database, desk: Desk, total: int, dead: int
) -> None:
    await enqueue_operations(db, total=total, dead=dead)

    await desk.housekeeper.tidy()

    assert await alerts(db) == []


async def test_failures_older_than_a_day_do_not_count(db: Database, desk: Desk) -> None:
    await enqueue_operations(db, total=30, dead=10)
    for row in await rows(db):
        await backdate(db, row["id"], minutes=25 * 60)

    await desk.housekeeper.tidy()

    assert await alerts(db) == []


async def test_updates_piling_up_at_telegram_alert_once_sustained(
    db: Database, desk: Desk, telegram: Telegram
) -> None:
    telegram.pending_update_count = 1500

    await desk.housekeeper.tidy()
    assert await alerts(db) == []  # one reading could be a burst

    await desk.housekeeper.tidy()
    await desk.housekeeper.tidy()

    day = datetime.now(UTC).date().isoformat()
    assert await alerts(db) == [(admin, f"alert:pending_updates:{day}:{admin}") for admin in ADMINS]
    assert "1500 updates are waiting at Telegram" in (await rows(db))[0]["params"]


async def test_the_housekeeper_stops_promptly(db: Database, desk: Desk) -> None:
    desk.housekeeper.start()
    task = desk.housekeeper._task
    await asyncio.sleep(0.05)  # both loops are in their first step or waiting after it
    await desk.housekeeper.stop()
    # It ended by itself: a loop that ignored stop() would have been cancelled after
    # STOP_GRACE instead.
    assert task is not None
    assert task.done()
    assert not task.cancelled()
    assert task.exception() is None
