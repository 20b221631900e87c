"""The escalation scheduler against a real database, without Telegram: what it stores,
what it queues, and what it keeps back, with the clock in the test's hands."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.metrics import Metrics
from bot.services import escalation
from bot.services.deadlines import reschedule, summary_text
from bot.services.escalation import Escalator
from storage import sla as store
from storage import tickets
from storage.db import Conn, Database, to_iso
from storage.migrations import migrate
from storage.tickets import Answer, Priority, Status

GROUP = -1001234567890
ADMIN = 900
START = datetime(2025, 1, 8, 10, 0, tzinfo=UTC)  # a Wednesday


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def desk_settings(monkeypatch: pytest.MonkeyPatch, **sla: Any) -> Settings:
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    return Settings(
        telegram={"token": "123:abc"},
        support={"group_id": GROUP, "admin_ids": [ADMIN]},
        sla={"enabled": True, **sla},
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    yield database
    await database.close()


async def a_ticket(
    conn: Conn, customer_id: int, received: datetime, priority: Priority = Priority.NORMAL
) -> int:
    await tickets.save_customer(conn, customer_id, f"Customer {customer_id}", None, "en")
    ticket = await tickets.open_ticket(
        conn,
        customer_id,
        "Billing",
        [Answer("category", "Category", "Billing")],
        GROUP,
        to_iso(received),
    )
    await tickets.set_topic(conn, ticket.id, GROUP, 100 + ticket.id)
    if priority is not Priority.NORMAL:
        await tickets.set_priority(conn, ticket.id, priority, None)
    return ticket.id


async def due_at(database: Database, ticket_id: int) -> str | None:
    async with database.reader() as conn:
        found = await store.facts(conn, ticket_id)
    assert found is not None
    return found.due_at


async def rows(database: Database, sql: str, *params: Any) -> list[Any]:
    async with database.reader() as conn:
        return list(await conn.fetchall(sql, params))


async def test_the_stored_instant_follows_the_ticket_through_its_life(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = desk_settings(monkeypatch)
    async with db.transaction() as conn:
        ticket = await a_ticket(conn, 1, START, Priority.HIGH)
        # High: warned at 12 minutes, whatever the time now (the scheduler decides).
        await reschedule(conn, settings, ticket)
    assert await due_at(db, ticket) == to_iso(START + timedelta(minutes=12))

    async with db.transaction() as conn:
        await tickets.record_first_response(conn, ticket, to_iso(START + timedelta(minutes=5)))
        await reschedule(conn, settings, ticket)  # the resolution's warning: 80% of 4h
    assert await due_at(db, ticket) == to_iso(START + timedelta(hours=3, minutes=12))

    monkeypatch.setattr(tickets, "utcnow", lambda: to_iso(START + timedelta(hours=1)))
    async with db.transaction() as conn:  # closed in time: nothing more can fire
        await tickets.set_status(conn, ticket, Status.CLOSED, None)
        await reschedule(conn, settings, ticket)
    assert await due_at(db, ticket) is None

    async with db.transaction() as conn:  # reopened: the resolution clock runs again
        await tickets.set_status(conn, ticket, Status.OPEN, None)
        await reschedule(conn, settings, ticket)
    assert await due_at(db, ticket) == to_iso(START + timedelta(hours=3, minutes=12))

    monkeypatch.setattr(tickets, "utcnow", lambda: to_iso(START + timedelta(hours=5)))
    async with db.transaction() as conn:  # closed after the breach time: a late breach
        await tickets.set_status(conn, ticket, Status.CLOSED, None)
        event = await reschedule(conn, settings, ticket)
    assert event is not None
    assert event.late
    assert await due_at(db, ticket) == to_iso(START + timedelta(hours=4, minutes=2))

    async with db.transaction() as conn:  # the policy turned off
        await reschedule(conn, desk_settings(monkeypatch, enabled=False), ticket)
    assert await due_at(db, ticket) is None


async def test_a_stage_is_stored_once(db: Database) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn, 1, START)
        assert await store.set_stage(conn, ticket, "first_response", "warning")
        assert not await store.set_stage(conn, ticket, "first_response", "warning")
        assert await store.set_stage(conn, ticket, "first_response", "breach")
        assert not await store.set_stage(conn, ticket, "first_response", "warning")
        assert not await store.set_stage(conn, ticket, "first_response", "breach")
        assert await store.set_stage(conn, ticket, "resolution", "breach")


def sla_counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    found = {}
    for metric in metrics.sla_events.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found[(sample.labels["clock"], sample.labels["stage"])] = sample.value
    return found


async def test_a_reply_after_the_breach_time_is_recorded_late_and_not_posted(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = desk_settings(monkeypatch)
    clock = Clock(START + timedelta(minutes=30))
    metrics = Metrics()
    async with db.transaction() as conn:
        ticket = await a_ticket(conn, 1, START, Priority.HIGH)
        # Answered at 20 minutes: after the breach (17), before any pass saw it.
        await tickets.record_first_response(conn, ticket, to_iso(START + timedelta(minutes=20)))
        await reschedule(conn, settings, ticket)
    escalator = Escalator(db, settings, metrics, clock=clock)
    assert await escalator.tick() == 1

    (event,) = await rows(db, "SELECT kind, detail FROM ticket_events WHERE kind LIKE 'sla_%'")
    assert event["kind"] == "sla_breach"
    assert json.loads(event["detail"])["late"] is True
    assert await rows(db, "SELECT * FROM outbox WHERE idempotency_key LIKE '%:sla:%'") == []
    assert sla_counts(metrics) == {("first_response", "breach"): 1.0}
    assert await due_at(db, ticket) == to_iso(START + timedelta(hours=3, minutes=12))
    assert await escalator.tick() == 0  # never again


async def posts(db: Database) -> list[str]:
    found = await rows(db, "SELECT idempotency_key, params FROM outbox ORDER BY id")
    return [row[0] for row in found if ":sla:" in row[0] or row[0].startswith("sla:")]


async def test_a_backlog_is_posted_a_few_a_minute_and_the_rest_summed_up(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = desk_settings(monkeypatch)
    clock = Clock(START + timedelta(hours=2))
    async with db.transaction() as conn:  # two hours unanswered: past normal's 1h
        for customer in range(1, 6):
            await a_ticket(conn, customer, START)
    escalator = Escalator(db, settings, Metrics(), clock=clock)
    await escalator.recompute_all()
    assert await escalator.tick() == 5

    queued = await posts(db)
    alerts = [key for key in queued if key.startswith("ticket:")]
    assert len(alerts) == 2 * escalation.ALERTS_PER_MINUTE  # in the topic and in General
    assert queued[-1] == f"sla:summary:{to_iso(clock.now)}"
    (summary,) = await rows(db, "SELECT params FROM outbox WHERE idempotency_key LIKE 'sla:%'")
    assert json.loads(summary[0])["text"] == summary_text(2, 0)

    # Half a minute later a new breach: the minute's posts are spent, and one summary a
    # minute at most.
    async with db.transaction() as conn:
        late_comer = await a_ticket(conn, 9, START + timedelta(minutes=31))
        await reschedule(conn, settings, late_comer)
    clock.advance(seconds=30)
    assert await escalator.tick() == 1
    assert len(await posts(db)) == len(queued)
    clock.advance(seconds=31)
    assert await escalator.tick() == 0
    assert (await posts(db))[-1] == f"sla:summary:{to_iso(clock.now)}"

    # A minute on, there is room again.
    async with db.transaction() as conn:
        newest = await a_ticket(conn, 10, START + timedelta(hours=1))
        await reschedule(conn, settings, newest)
    clock.advance(minutes=2)
    assert await escalator.tick() == 1
    assert (await posts(db))[-2:] == [
        f"ticket:{newest}:sla:{key}" for key in await event_keys(db, newest)
    ]


async def event_keys(db: Database, ticket_id: int) -> list[str]:
    (row,) = await rows(
        db,
        "SELECT id FROM ticket_events WHERE ticket_id = ? AND kind = 'sla_breach'",
        ticket_id,
    )
    return [f"{row[0]}:topic", f"{row[0]}:general"]


@pytest.mark.parametrize(
    ("breaches", "warnings", "text"),
    [
        (37, 0, "🚨 …and 37 more tickets are past their targets: /queue"),
        (1, 0, "🚨 …and 1 more ticket is past their targets: /queue"),
        (2, 3, "🚨 …and 2 more tickets are past and 3 more are close to their targets: /queue"),
        (0, 1, "🚨 …and 1 more is close to their targets: /queue"),
    ],
)
def test_the_summary_line(breaches: int, warnings: int, text: str) -> None:
    assert summary_text(breaches, warnings) == text


async def test_with_the_policy_off_the_start_clears_every_due_instant(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.transaction() as conn:
        ticket = await a_ticket(conn, 1, START)
        await reschedule(conn, desk_settings(monkeypatch), ticket)
    assert await due_at(db, ticket) is not None
    off = desk_settings(monkeypatch, enabled=False)
    escalator = Escalator(db, off, Metrics(), clock=Clock(START + timedelta(days=3)))
    assert await escalator.recompute_all() == 1
    assert await due_at(db, ticket) is None
    assert await escalator.tick() == 0
