"""The escalation policy and business hours, end to end: a ticket waits, the desk warns,
then escalates in the topic and in General; an answer in time calls it off; a restart
fires nothing twice; a priority change counts from the receipt; a ticket that opens
while the desk is closed tells the customer when it opens again.

The daemon's escalation clock is injected (`Daemon(clock=...)`) and moved by the tests;
the receipt times are Telegram's dates on the customers' first messages.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.daemon import Daemon
from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services import escalation
from bot.services.hours import BusinessHours
from storage.db import Database, to_iso
from tests import conftest
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_agent_rights import press
from tests.e2e.test_assignment import card_posted, count, in_general, in_topic, meet, mentions
from tests.e2e.test_card_buttons import card_of
from tests.e2e.test_conversation import ALICE, bot_texts, open_ticket, wait_for_bot_text

pytestmark = pytest.mark.usefixtures("desk_env")

BOB = 900  # an admin, so an agent (and, with no sla.leads, the one told of a breach)
DANA = 901  # the lead on duty
BRUNO, CARLA = 1002, 1003
BERLIN = "Europe/Berlin"
WEEKDAYS = '["mon", "tue", "wed", "thu", "fri"]'


class MovableClock:
    """The daemon's escalation clock: the real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    """Every daemon of the test runs on this clock, and looks for due events often."""
    moving = MovableClock()
    monkeypatch.setattr(conftest, "Daemon", functools.partial(Daemon, clock=moving))
    monkeypatch.setattr(escalation, "POLL_INTERVAL", 0.05)
    return moving


@asynccontextmanager
async def a_desk(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, **changes: str
) -> AsyncIterator[RunningDesk]:
    """The desk with the escalation policy on (the default targets: high 15m / 4h, a
    warning at 80%, a grace of 2m), room in the budgets, and its people."""
    for user_id, first, last in (
        (ALICE, "Alice", "Smith"),
        (BRUNO, "Bruno", "Costa"),
        (CARLA, "Carla", "Diaz"),
        (BOB, "Bob", "Agent"),
        (DANA, "Dana", "Lee"),
    ):
        if user_id not in telegram.users:
            telegram.add_user(user_id, first, last)
    settings = {
        "DELIVERY__GROUP_PER_WINDOW": "1000",
        "DELIVERY__PRIVATE_PER_SECOND": "100",
        "DELIVERY__PRIVATE_BURST": "100",
        "SLA__ENABLED": "true",
        **changes,
    }
    async with desk_with(telegram, monkeypatch, **settings) as running:
        yield running


def ago(clock: MovableClock, **delta: float) -> int:
    """A Telegram date (Unix seconds) that long before the clock's now."""
    return int((clock() - timedelta(**delta)).timestamp())


async def set_priority(telegram: FakeTelegram, ticket: int, thread: int, priority: str) -> None:
    await card_posted(telegram, thread)
    answer = await press(
        telegram, BOB, card_of(telegram, thread)["message_id"], f"t:{ticket}:priority:{priority}"
    )
    assert answer == f"Priority: {priority}."


async def read(desk: RunningDesk, sql: str, *params: Any) -> list[Any]:
    database = await Database.open(desk.settings.storage.path)
    try:
        async with database.reader() as db:
            return list(await db.fetchall(sql, params))
    finally:
        await database.close()


async def until(desk: RunningDesk, sql: str, *params: Any, timeout: float = 10.0) -> None:
    """Wait until a query's first value is true (the daemon commits a moment after
    Telegram has seen its call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (rows := await read(desk, sql, *params)) or not rows[0][0]:
        assert loop.time() < deadline, f"timed out waiting for: {sql} {params}"
        await asyncio.sleep(0.05)


async def history(desk: RunningDesk, ticket: int) -> list[tuple[str, dict[str, Any]]]:
    rows = await read(
        desk, "SELECT kind, detail FROM ticket_events WHERE ticket_id = ? ORDER BY id", ticket
    )
    return [(row["kind"], json.loads(row["detail"]) if row["detail"] else {}) for row in rows]


def sla_events(desk: RunningDesk, clock: str, stage: str) -> float:
    assert desk.daemon is not None
    value = desk.daemon.metrics.registry.get_sample_value(
        "topicdesk_sla_events_total", {"clock": clock, "stage": stage}
    )
    return value or 0.0


def general_texts(telegram: FakeTelegram) -> list[str]:
    return [
        m.get("text") or ""
        for m in telegram.bot_messages(GROUP_ID)
        if m.get("message_thread_id") is None
    ]


async def test_a_waiting_high_priority_ticket_is_warned_about_then_escalated(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    async with a_desk(
        telegram,
        monkeypatch,
        SLA__LEADS=f"[{DANA}]",
        SLA__RAISE_PRIORITY="true",
        HOURS__TIME_ZONE=BERLIN,
    ) as desk:
        await meet(telegram, DANA)  # on duty
        received = ago(clock, minutes=11)
        thread = await open_ticket(telegram, ALICE, date=received)
        # Normal: the first response is due in an hour; nothing is near yet.
        await set_priority(telegram, 1, thread, "high")

        # High: warned at 12 minutes (80% of 15), escalated at 17 (15 and a grace of 2).
        deadline = datetime.fromtimestamp(received, UTC) + timedelta(minutes=15)
        shown = BusinessHours.always_open(BERLIN).format(deadline)
        clock.advance(minutes=2)
        warning = await in_topic(telegram, thread, "SLA warning")
        assert warning["text"] == (
            f"⏳ SLA warning: the first response is due by {shown} (target 15m)."
        )
        assert shown.endswith(("CET", "CEST"))
        assert not any("SLA" in text for text in general_texts(telegram))

        clock.advance(minutes=5)
        breach = await in_topic(telegram, thread, "SLA breach")
        assert (
            breach["text"] == f"🚨 SLA breach: the first response was due by {shown} (target 15m)."
        )
        told = await in_general(telegram, "SLA breach in")
        assert "#1 · Alice Smith" in told["text"]
        assert f"due by {shown} (target 15m). Dana Lee" in told["text"]
        assert mentions(told, DANA)
        assert not mentions(told, BOB)  # a lead is on duty: the admins are not called

        # Recorded in the ticket's history, counted, and the priority raised.
        events = await history(desk, 1)
        recorded = [(kind, detail) for kind, detail in events if kind.startswith("sla_")]
        assert recorded == [
            (
                stage,
                {
                    "clock": "first_response",
                    "deadline": deadline.isoformat(timespec="microseconds"),
                    "due_at": (
                        deadline + timedelta(minutes=2 if stage == "sla_breach" else -3)
                    ).isoformat(timespec="microseconds"),
                },
            )
            for stage in ("sla_warning", "sla_breach")
        ]
        assert ("priority", {"from": "high", "to": "urgent"}) in events
        assert sla_events(desk, "first_response", "warning") == 1
        assert sla_events(desk, "first_response", "breach") == 1
        await telegram.wait_until(
            lambda: "Priority: 🔥 urgent" in str(card_of(telegram, thread)["reply_markup"]),
            what="the card showing the raised priority",
        )
        (row,) = await read(
            desk, "SELECT sla_response_stage, sla_resolution_stage FROM tickets WHERE id = 1"
        )
        assert (row[0], row[1]) == ("breach", None)
    # Alice was never told of any of it.
    assert not any("SLA" in text for text in bot_texts(telegram, ALICE))


async def test_an_answer_before_the_warning_calls_off_the_first_response_alerts(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    async with a_desk(telegram, monkeypatch) as desk:
        thread = await open_ticket(telegram, ALICE, date=ago(clock, minutes=1))
        await set_priority(telegram, 1, thread, "high")
        telegram.send_group(BOB, "Hello Alice, looking into it.", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "looking into it")
        await until(desk, "SELECT first_response_at IS NOT NULL FROM tickets WHERE id = 1")

        # Long past the first response's breach, and past the resolution's warning
        # (80% of 4 hours): that one still comes, the first response's never.
        clock.advance(hours=3, minutes=15)
        warning = await in_topic(telegram, thread, "SLA warning")
        assert "the resolution is due by" in warning["text"]
        assert count(telegram, thread, "SLA") == 1
        assert sla_events(desk, "first_response", "warning") == 0
        assert sla_events(desk, "first_response", "breach") == 0
        kinds = [(kind, detail.get("clock")) for kind, detail in await history(desk, 1)]
        assert ("sla_warning", "resolution") in kinds
        assert not any(clock_ == "first_response" for _, clock_ in kinds)


async def test_an_escalation_never_fires_twice_across_restarts(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    async with a_desk(telegram, monkeypatch) as desk:
        thread = await open_ticket(telegram, ALICE, date=ago(clock, minutes=13))
        await card_posted(telegram, thread)
        assert await press(telegram, BOB, card_of(telegram, thread)["message_id"], "t:1:take") == (
            "It is yours now."
        )
        await set_priority(telegram, 1, thread, "high")
        warning = await in_topic(telegram, thread, "SLA warning")
        assert mentions(warning, BOB)  # the assignee is named

        await desk.restart()
        clock.advance(minutes=5)
        told = await in_general(telegram, "SLA breach in")
        assert mentions(told, BOB)  # the assignee, not a lead

        await desk.restart()
        await desk.restart()
        # Well past the resolution's warning: it fires, and nothing else again.
        clock.advance(hours=3, minutes=15)
        await in_topic(telegram, thread, "the resolution is due by")
        assert count(telegram, thread, "SLA warning: the first response") == 1
        assert count(telegram, thread, "SLA breach: the first response") == 1
        assert sum("SLA breach in" in text for text in general_texts(telegram)) == 1
        kinds = [kind for kind, _ in await history(desk, 1) if kind.startswith("sla_")]
        assert kinds == ["sla_warning", "sla_breach", "sla_warning"]


async def test_a_priority_raised_to_urgent_counts_from_the_receipt_and_fires_at_once(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    async with a_desk(telegram, monkeypatch) as desk:
        # Received 30 minutes ago: normal's first response (1h, warned at 48m) is not near.
        thread = await open_ticket(telegram, ALICE, date=ago(clock, minutes=30))
        await card_posted(telegram, thread)
        (row,) = await read(desk, "SELECT sla_due_at FROM tickets WHERE id = 1")
        assert row[0] is not None

        # Urgent: 5 minutes from the receipt, long gone. The breach at once, no warning.
        await set_priority(telegram, 1, thread, "urgent")
        breach = await in_topic(telegram, thread, "SLA breach")
        assert "the first response was due by" in breach["text"]
        assert "(target 5m)" in breach["text"]
        told = await in_general(telegram, "SLA breach in")
        assert mentions(told, BOB)  # nobody assigned, no leads: the admins
        assert count(telegram, thread, "SLA warning") == 0
        kinds = [kind for kind, _ in await history(desk, 1) if kind.startswith("sla_")]
        assert kinds == ["sla_breach"]


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> int:
    """A Telegram date for a wall-clock time in Berlin."""
    local = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(BERLIN))
    return int(local.timestamp())


async def test_a_ticket_opened_while_the_desk_is_closed_says_when_it_opens(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    async with a_desk(
        telegram,
        monkeypatch,
        SLA__ENABLED="false",
        HOURS__TIME_ZONE=BERLIN,
        HOURS__WEEKDAYS=WEEKDAYS,
        HOURS__OPEN="09:00-18:00",
        # Closed from Christmas Eve to New Year's Day.
        HOURS__HOLIDAYS=json.dumps([f"2025-12-{day}" for day in range(24, 32)] + ["2026-01-01"]),
    ) as desk:
        # A Saturday morning: Monday's opening.
        await open_ticket(telegram, ALICE, date=berlin(2025, 1, 4, 10, 0))
        away = await wait_for_bot_text(telegram, ALICE, "We are away right now")
        assert away["text"] == (
            "We are away right now. We open again on Mon 09:00 CET, "
            "and an agent will answer you then."
        )
        confirmation = await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
        assert confirmation["message_id"] < away["message_id"]

        # After hours on the 23rd of December: the holidays follow, so the date is named.
        await open_ticket(telegram, BRUNO, date=berlin(2025, 12, 23, 18, 30))
        away = await wait_for_bot_text(telegram, BRUNO, "We are away right now")
        assert "We open again on Fri 2 Jan 09:00 CET," in away["text"]

        # A Wednesday morning: open, no note.
        await open_ticket(telegram, CARLA, date=berlin(2025, 1, 8, 10, 0))
        await wait_for_bot_text(telegram, CARLA, "Your ticket #3 is open")
        notes = await read(desk, "SELECT idempotency_key FROM outbox WHERE idempotency_key LIKE ?",
                           "%:away")  # fmt: skip
        assert sorted(row[0] for row in notes) == ["ticket:1:away", "ticket:2:away"]
        assert not any("away" in text for text in bot_texts(telegram, CARLA))


async def test_targets_in_business_hours_only_skip_the_closed_time(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    friday = berlin(2025, 1, 10, 17, 50)  # ten minutes before the weekend
    clock.set(datetime.fromtimestamp(friday, UTC) + timedelta(minutes=1))
    async with a_desk(
        telegram,
        monkeypatch,
        SLA__BUSINESS_HOURS_ONLY="true",
        HOURS__TIME_ZONE=BERLIN,
        HOURS__WEEKDAYS=WEEKDAYS,
        HOURS__OPEN="09:00-18:00",
    ) as desk:
        thread = await open_ticket(telegram, ALICE, date=friday)
        await set_priority(telegram, 1, thread, "high")
        # 15 minutes of opening hours: 10 on Friday, 5 on Monday. Warned at 12 (Monday
        # 09:02), escalated with the grace (clock time) at Monday 09:07.
        monday = datetime.fromtimestamp(berlin(2025, 1, 13, 9, 0), UTC)

        warned_at = to_iso(monday + timedelta(minutes=2))
        await until(desk, "SELECT sla_due_at = ? FROM tickets WHERE id = 1", warned_at)

        clock.set(monday - timedelta(hours=1))  # the weekend passes: nothing
        clock.set(monday + timedelta(minutes=3))
        warning = await in_topic(telegram, thread, "SLA warning")
        assert warning["text"] == (
            "⏳ SLA warning: the first response is due by Mon 09:05 CET (target 15m)."
        )
        clock.set(monday + timedelta(minutes=8))
        breach = await in_topic(telegram, thread, "SLA breach")
        assert "was due by Mon 09:05 CET" in breach["text"]
        # It opened within hours: no out-of-office note.
        assert not any("We are away" in text for text in bot_texts(telegram, ALICE))


async def test_turning_the_policy_on_over_a_backlog_posts_a_few_and_sums_up_the_rest(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    customers = list(range(2001, 2008))
    for number, customer in enumerate(customers):
        telegram.add_user(customer, "Customer", str(number))
    async with a_desk(telegram, monkeypatch, SLA__ENABLED="false"):
        for customer in customers:  # two hours unanswered: past normal's first response
            await card_posted(
                telegram, await open_ticket(telegram, customer, date=ago(clock, hours=2))
            )

    async with a_desk(telegram, monkeypatch) as desk:
        summary = await in_general(telegram, "more tickets are past their targets")
        assert summary["text"] == "🚨 …and 4 more tickets are past their targets: /queue"

        def posted() -> list[str]:
            return [text for text in general_texts(telegram) if "SLA breach in" in text]

        await telegram.wait_until(lambda: len(posted()) == 3, what="three breaches in General")
        assert escalation.ALERTS_PER_MINUTE == 3
        assert all(text.endswith(". admin") for text in posted())  # Bob, not met yet
        await until(desk, "SELECT COUNT(*) = 7 FROM tickets WHERE sla_response_stage = 'breach'")
        assert sla_events(desk, "first_response", "breach") == len(customers)
        rows = await read(desk, "SELECT COUNT(*) FROM ticket_events WHERE kind = 'sla_breach'")
        assert rows[0][0] == len(customers)
        quiet = await read(
            desk,
            "SELECT COUNT(*) FROM ticket_events WHERE kind = 'sla_breach'"
            " AND json_extract(detail, '$.posted') = 0",
        )
        assert quiet[0][0] == 4
