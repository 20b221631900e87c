"""Delivery stories: budgets, retries, dead letters, recovery, restarts, end to end.

The real daemon long-polls the fake Bot API over HTTP and keeps its state in a real
SQLite file. Each test chooses the fake's limits (`limits`) and the daemon's delivery
settings (`extra_env`) by parametrizing those two module fixtures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from bot.config import Settings, load_settings
from bot.fake_telegram import CONTENT_KEYS, GROUP_ID, Call, FakeTelegram, Limits, TelegramError
from storage import deadletters, outbox
from storage.db import Conn, Database
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, buttons, open_ticket, wait_for_bot_text

BOB = 1002
CAROL = 1003
DAVE = 1004
CUSTOMERS = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol", DAVE: "Dave"}

# Retries fast enough for a test: the stories inject failures, not real outages.
FAST = {
    "TOPICDESK_DELIVERY__BASE_DELAY": "0.05",
    "TOPICDESK_DELIVERY__MAX_DELAY": "0.5",
    "TOPICDESK_DELIVERY__PROBE_INTERVAL": "0.5",
}

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Fixtures: the fake with optional limits, settings with extra environment
# --------------------------------------------------------------------------------------------


@pytest.fixture
def limits() -> Limits | None:
    """The fake's rate limits; None (no limits) unless a test parametrizes it."""
    return None


@pytest.fixture
def extra_env() -> dict[str, str]:
    """Environment added to desk_env's before the settings are loaded."""
    return {}


@pytest.fixture
async def telegram(limits: Limits | None) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(limits=limits)
    await fake.start()
    fake.add_group(GROUP_ID)
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def settings(
    desk_env: dict[str, str], extra_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in {**FAST, **extra_env}.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def sent(
    telegram: FakeTelegram, chat_id: int, thread_id: int | None = None
) -> list[dict[str, Any]]:
    """The bot's messages in a chat (or one topic), in order, without service messages."""
    return [
        m
        for m in telegram.bot_messages(chat_id, thread_id)
        if any(key in m for key in CONTENT_KEYS)
    ]


def texts(telegram: FakeTelegram, chat_id: int, thread_id: int | None = None) -> list[str]:
    """The texts of the bot's messages in a chat (or one topic), in order."""
    return [m.get("text") or "" for m in sent(telegram, chat_id, thread_id)]


def starting(
    telegram: FakeTelegram, chat_id: int, prefix: str, thread: int | None = None
) -> list[str]:
    return [t for t in texts(telegram, chat_id, thread) if t.startswith(prefix)]


def count(telegram: FakeTelegram, chat_id: int, text: str, thread: int | None = None) -> int:
    return texts(telegram, chat_id, thread).count(text)


def calls(telegram: FakeTelegram, method: str, chat_id: int | None = None) -> list[Call]:
    return [
        c
        for c in telegram.calls_to(method)
        if chat_id is None or c.params.get("chat_id") == chat_id
    ]


def live_topics(telegram: FakeTelegram, number: int) -> list[int]:
    """The threads of ticket #number's topics that were not deleted."""
    return [
        thread_id
        for thread_id, topic in telegram.topics[GROUP_ID].items()
        if topic.name.startswith(f"#{number} ·") and not topic.deleted
    ]


async def with_db(settings: Settings, read: Callable[[Conn], Awaitable[T]]) -> T:
    database = await Database.open(settings.storage.path)
    try:
        async with database.reader() as db:
            return await read(db)
    finally:
        await database.close()


async def wait_for_count(
    telegram: FakeTelegram,
    chat_id: int,
    text: str,
    thread: int | None = None,
    *,
    at_least: int = 1,
    timeout: float = 10.0,
) -> None:
    await telegram.wait_until(
        lambda: count(telegram, chat_id, text, thread) >= at_least,
        timeout=timeout,
        what=f"{text!r} in {chat_id}/{thread}",
    )


async def updates_handled(telegram: FakeTelegram) -> None:
    """Every update enqueued so far was committed (its offset confirmed)."""
    await telegram.wait_until(
        lambda: not telegram.pending_updates, what="the updates to be handled"
    )


# --------------------------------------------------------------------------------------------
# 1. A burst within the budgets
# --------------------------------------------------------------------------------------------

SCALE = 20  # the fake's periods are divided by this: 20 sends per 3 s per group


@pytest.mark.parametrize(
    ("limits", "extra_env"),
    [
        (
            Limits(time_scale=SCALE),
            {
                # The same budgets, scaled alike: 20 per 60/20 s in a group, 1*20/s in a
                # private chat (burst 3). The fake's bot-wide bucket holds 30 and refills
                # 30*20/s; the daemon's global window is 1 s and not configurable, so 30 per
                # second is the scaled budget's safe equivalent.
                "TOPICDESK_DELIVERY__GROUP_PER_WINDOW": "20",
                "TOPICDESK_DELIVERY__GROUP_WINDOW": str(60 / SCALE),
                "TOPICDESK_DELIVERY__PRIVATE_PER_SECOND": str(1.0 * SCALE),
                "TOPICDESK_DELIVERY__PRIVATE_BURST": "3",
                "TOPICDESK_DELIVERY__GLOBAL_PER_SECOND": "30",
            },
        )
    ],
    ids=["scaled-20x"],
)
async def test_a_burst_across_tickets_arrives_complete_in_order_without_a_429(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    threads: dict[int, int] = {}
    for user_id, name in CUSTOMERS.items():
        telegram.add_user(user_id, name, "Customer")
        threads[user_id] = await open_ticket(telegram, user_id)

    per_customer, per_agent = 12, 4  # 48 relays into one group: 2.4x its 20 per window
    group_sends_before = len(telegram.sent_per_chat.get(GROUP_ID, []))
    started = telegram.clock()
    for index in range(per_customer):
        for user_id, name in CUSTOMERS.items():
            telegram.send_private(user_id, f"{name} says #{index}")
            if index < per_agent:
                telegram.send_group(AGENT, f"To {name} #{index}", thread_id=threads[user_id])

    def complete() -> bool:
        return all(
            len(starting(telegram, GROUP_ID, f"{name} says #", threads[user_id])) >= per_customer
            and len(starting(telegram, user_id, f"To {name} #")) >= per_agent
            for user_id, name in CUSTOMERS.items()
        )

    await telegram.wait_until(complete, timeout=60, what="every message of the burst")
    took = telegram.clock() - started
    await asyncio.sleep(0.3)  # nothing more (no duplicate) arrives afterwards

    for user_id, name in CUSTOMERS.items():
        assert starting(telegram, GROUP_ID, f"{name} says #", threads[user_id]) == [
            f"{name} says #{i}" for i in range(per_customer)
        ]
        assert starting(telegram, user_id, f"To {name} #") == [
            f"To {name} #{i}" for i in range(per_agent)
        ]
    assert telegram.too_many_requests == 0
    # The burst really was over the group's budget, so the pacing was what kept it clean.
    group_sends = len(telegram.sent_per_chat[GROUP_ID]) - group_sends_before
    assert group_sends >= 2 * 20
    assert took >= 60 / SCALE
    assert telegram.max_sends_in_window(GROUP_ID, 60 / SCALE) <= 20


# --------------------------------------------------------------------------------------------
# 2. A 429 pauses only its chat
# --------------------------------------------------------------------------------------------


async def test_a_429_pauses_only_that_chat_for_retry_after(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(BOB, "Bob", "Jones")
    alice_thread = await open_ticket(telegram, ALICE)
    bob_thread = await open_ticket(telegram, BOB)

    telegram.fail(
        "copyMessage",
        error_code=429,
        description="Too Many Requests: retry after 3",
        retry_after=3,
        chat_id=ALICE,
    )
    telegram.send_group(AGENT, "For Alice", thread_id=alice_thread)
    telegram.send_group(AGENT, "For Bob", thread_id=bob_thread)
    telegram.send_private(ALICE, "Alice meanwhile")  # her words to the topic are not paused

    await wait_for_count(telegram, BOB, "For Bob")
    await wait_for_count(telegram, GROUP_ID, "Alice meanwhile", alice_thread)
    await wait_for_count(telegram, ALICE, "For Alice", timeout=10)

    to_alice = calls(telegram, "copyMessage", ALICE)
    refused = [c for c in to_alice if c.status == 429]
    delivered = [c for c in to_alice if c.status == 200]
    assert len(refused) == 1
    assert len(delivered) == 1
    bob_done = next(c for c in calls(telegram, "copyMessage", BOB) if c.status == 200)
    topic_done = next(
        c
        for c in calls(telegram, "copyMessage", GROUP_ID)
        if c.status == 200 and c.at > refused[0].at
    )
    assert bob_done.at - refused[0].at < 1.5, "Bob waited for Alice's pause"
    assert topic_done.at - refused[0].at < 1.5, "the group waited for Alice's pause"
    assert delivered[0].at - refused[0].at >= 3.0, "Alice's copy did not wait retry_after"
    assert delivered[0].at - refused[0].at < 5.0, "Alice's copy waited far beyond retry_after"
    await asyncio.sleep(0.3)
    assert count(telegram, ALICE, "For Alice") == 1
    assert count(telegram, BOB, "For Bob") == 1


# --------------------------------------------------------------------------------------------
# 3. A 5xx storm
# --------------------------------------------------------------------------------------------


async def test_a_5xx_storm_is_retried_until_the_message_arrives_once(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)

    for code, description, html in [
        (502, "Bad Gateway", False),
        (500, "Internal Server Error: restart", False),
        (502, "Bad Gateway", True),
        (504, "Gateway Timeout", False),
    ]:
        telegram.fail("copyMessage", error_code=code, description=description, html=html)
    original = telegram.send_private(ALICE, "Is anyone there?")

    await wait_for_count(telegram, GROUP_ID, "Is anyone there?", thread)
    await asyncio.sleep(0.3)
    assert count(telegram, GROUP_ID, "Is anyone there?") == 1
    attempts = [
        c.status
        for c in calls(telegram, "copyMessage", GROUP_ID)
        if c.params.get("message_id") == original["message_id"]
    ]
    assert attempts == [502, 500, 502, 504, 200]
    letters = await with_db(desk.settings, deadletters.list_letters)
    assert letters == []


# --------------------------------------------------------------------------------------------
# 4. The circuit breaker
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra_env",
    [{"TOPICDESK_DELIVERY__BREAKER_THRESHOLD": "3", "TOPICDESK_DELIVERY__PROBE_INTERVAL": "0.5"}],
    ids=["threshold-3"],
)
async def test_the_breaker_stops_sending_while_telegram_fails_then_reports_the_outage(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")  # also the admin (900) in desk_env
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)

    telegram.fail("copyMessage", error_code=502, description="Bad Gateway", times=3)
    telegram.fail("getMe", error_code=502, description="Bad Gateway", times=10_000)
    telegram.send_private(ALICE, "first, into the outage")
    await telegram.wait_until(
        lambda: any(c.status == 502 for c in telegram.calls_to("getMe")),
        what="the breaker to open and probe",
    )
    opened_at = max(c.at for c in telegram.calls_to("copyMessage") if c.status == 502)
    assert len([c for c in telegram.calls_to("copyMessage") if c.status == 502]) == 3

    # Queued while Telegram is down: nothing is attempted.
    for index in range(3):
        telegram.send_private(ALICE, f"queued #{index}")
    for index in range(2):
        telegram.send_group(AGENT, f"answer #{index}", thread_id=thread)
    await updates_handled(telegram)
    await asyncio.sleep(1.2)  # a few probe intervals
    sends_while_down = [
        c
        for c in telegram.calls
        if c.at > opened_at and c.method in {"copyMessage", "sendMessage", "createForumTopic"}
    ]
    assert sends_while_down == []
    probes = [c for c in telegram.calls_to("getMe") if c.at > opened_at]
    assert 2 <= len(probes) <= 12, f"{len(probes)} probes in ~1.5 s at a 0.5 s interval"

    telegram.clear_faults()
    notice = await wait_for_bot_text(telegram, AGENT, "Sending to Telegram was down for")
    await telegram.wait_until(
        lambda: (
            len(starting(telegram, GROUP_ID, "queued #", thread)) >= 3
            and len(starting(telegram, ALICE, "answer #")) >= 2
            and count(telegram, GROUP_ID, "first, into the outage", thread) >= 1
        ),
        what="everything queued during the outage",
    )
    await asyncio.sleep(0.3)
    assert count(telegram, GROUP_ID, "first, into the outage") == 1
    assert starting(telegram, GROUP_ID, "queued #", thread) == [f"queued #{i}" for i in range(3)]
    assert starting(telegram, ALICE, "answer #") == ["answer #0", "answer #1"]
    queued = int(notice["text"].split("s; ", 1)[1].split(" ", 1)[0])
    assert queued >= 6, notice["text"]
    assert len(starting(telegram, AGENT, "✅ Sending to Telegram was down")) == 1


@pytest.mark.parametrize(
    "extra_env",
    [{"TOPICDESK_DELIVERY__BREAKER_THRESHOLD": "3", "TOPICDESK_DELIVERY__PROBE_INTERVAL": "0.5"}],
    ids=["threshold-3"],
)
async def test_while_the_breaker_is_open_new_messages_do_not_make_it_probe_faster(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)
    telegram.fail("copyMessage", error_code=502, description="Bad Gateway", times=3)
    telegram.fail("getMe", error_code=502, description="Bad Gateway", times=10_000)
    telegram.send_private(ALICE, "into the outage")
    await telegram.wait_until(
        lambda: any(c.status == 502 for c in telegram.calls_to("getMe")),
        what="the breaker to open and probe",
    )

    for index in range(10):  # busy customers while Telegram is down
        telegram.send_private(ALICE, f"still waiting #{index}")
    await updates_handled(telegram)
    await asyncio.sleep(1.0)
    probes = [c.at for c in telegram.calls_to("getMe") if c.status == 502]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(probes)]
    assert min(gaps) >= 0.4, f"getMe probes {gaps} s apart; probe_interval is 0.5 s"

    telegram.clear_faults()
    await telegram.wait_until(
        lambda: len(starting(telegram, GROUP_ID, "still waiting #", thread)) >= 10,
        what="the queued messages",
    )


# --------------------------------------------------------------------------------------------
# 5. A customer who blocked the bot
# --------------------------------------------------------------------------------------------

BLOCKED_NOTE = "⚠ not delivered to the customer: bot was blocked by the user"


async def test_a_blocked_customer_gets_dead_letters_not_a_retry_storm(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)

    telegram.block_bot(ALICE)
    telegram.send_group(AGENT, "Your refund is ready.", thread_id=thread)
    await wait_for_count(telegram, GROUP_ID, BLOCKED_NOTE, thread)
    await asyncio.sleep(0.5)  # no retries come after the 403
    assert len(calls(telegram, "copyMessage", ALICE)) == 1

    telegram.send_group(AGENT, "Hello? Anyone?", thread_id=thread)
    await wait_for_count(telegram, GROUP_ID, BLOCKED_NOTE, thread, at_least=2)
    assert len(calls(telegram, "copyMessage", ALICE)) == 1, "Telegram was asked again"

    letters = await with_db(desk.settings, deadletters.list_letters)
    assert [(letter.purpose, letter.chat_id) for letter in letters] == [
        ("relay", ALICE),
        ("relay", ALICE),
    ]
    assert all("blocked by the user" in letter.error for letter in letters)

    telegram.block_bot(ALICE, blocked=False)
    telegram.send_private(ALICE, "Sorry, I had blocked you by mistake.")
    await wait_for_count(telegram, GROUP_ID, "Sorry, I had blocked you by mistake.", thread)
    telegram.send_group(AGENT, "No problem, the refund is ready.", thread_id=thread)
    await wait_for_count(telegram, ALICE, "No problem, the refund is ready.")
    assert count(telegram, ALICE, "Your refund is ready.") == 0
    assert len(await with_db(desk.settings, deadletters.list_letters)) == 2
    assert count(telegram, GROUP_ID, BLOCKED_NOTE) == 2


# --------------------------------------------------------------------------------------------
# 6. A deleted or closed topic
# --------------------------------------------------------------------------------------------


async def test_a_deleted_topic_is_recreated_and_the_message_arrives_there(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    old = await open_ticket(telegram, ALICE)

    telegram.delete_topic(GROUP_ID, old)
    words = ["Did you see my order?", "It is #4711.", "It has not arrived."]
    for text in words:
        telegram.send_private(ALICE, text)
    await telegram.wait_until(
        lambda: any(count(telegram, GROUP_ID, words[-1], t) for t in live_topics(telegram, 1)),
        what="the messages in a new topic",
    )
    (new,) = live_topics(telegram, 1)
    assert new != old
    assert telegram.topics[GROUP_ID][new].name == telegram.topics[GROUP_ID][old].name
    in_topic = texts(telegram, GROUP_ID, new)
    assert "replaces one that was deleted" in in_topic[0]
    assert "Ticket #1" in in_topic[0]
    assert buttons(sent(telegram, GROUP_ID, new)[0])["🔒 Close"] == "t:1:close"
    assert in_topic[1:] == words
    await asyncio.sleep(0.3)
    assert all(count(telegram, GROUP_ID, text) == 1 for text in words)
    assert len(calls(telegram, "createForumTopic")) == 2

    # The ticket now lives in the new topic, both ways.
    telegram.send_group(AGENT, "Yes, it ships today.", thread_id=new)
    await wait_for_count(telegram, ALICE, "Yes, it ships today.")
    telegram.send_private(ALICE, "Thanks!")
    await wait_for_count(telegram, GROUP_ID, "Thanks!", new)


async def test_a_closed_topic_is_reopened_and_the_message_arrives_there(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)

    telegram.close_topic(GROUP_ID, thread)
    telegram.send_private(ALICE, "One more thing.")
    await wait_for_count(telegram, GROUP_ID, "One more thing.", thread)
    await asyncio.sleep(0.3)
    assert not telegram.topics[GROUP_ID][thread].closed
    assert count(telegram, GROUP_ID, "One more thing.") == 1
    assert [c.status for c in calls(telegram, "reopenForumTopic")] == [200]
    assert len(calls(telegram, "createForumTopic")) == 1


# --------------------------------------------------------------------------------------------
# 7. Markup Telegram cannot parse
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra_env",
    [{"TOPICDESK_TEXTS__TICKET_CREATED": "<b>Thank you!</b> Your ticket #{ticket} is open."}],
    ids=["bold-confirmation"],
)
async def test_markup_telegram_cannot_parse_is_sent_as_plain_text(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.send_private(ALICE, "Hello")
    question = await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Billing"])
    await wait_for_bot_text(telegram, ALICE, "describe the problem")

    telegram.fail(
        "sendMessage",
        error_code=400,
        description=(
            'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 3'
        ),
        chat_id=ALICE,
    )
    telegram.send_private(ALICE, "I was charged twice for my plan this month.")
    confirmation = await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
    await asyncio.sleep(0.3)

    assert confirmation["text"] == "Thank you! Your ticket #1 is open."
    assert "entities" not in confirmation
    assert len([t for t in texts(telegram, ALICE) if "Your ticket #1" in t]) == 1
    tries = [c for c in calls(telegram, "sendMessage", ALICE) if "Your ticket" in c.params["text"]]
    assert [c.status for c in tries] == [400, 200]
    assert tries[0].params.get("parse_mode") == "HTML"
    assert "parse_mode" not in tries[1].params
    assert "<b>" not in tries[1].params["text"]


# --------------------------------------------------------------------------------------------
# 8. A restart with a full outbox
# --------------------------------------------------------------------------------------------


async def test_a_restart_with_a_full_outbox_loses_nothing_and_sends_nothing_twice(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    threads = {}
    for user_id in (ALICE, BOB):
        telegram.add_user(user_id, CUSTOMERS[user_id], "Customer")
        threads[user_id] = await open_ticket(telegram, user_id)

    # Telegram goes down: every copy fails and the breaker's probes too.
    telegram.fail("copyMessage", error_code=502, description="Bad Gateway", times=10_000)
    telegram.fail("getMe", error_code=502, description="Bad Gateway", times=10_000)
    for index in range(4):
        for user_id, name in ((ALICE, "Alice"), (BOB, "Bob")):
            telegram.send_private(user_id, f"{name} waits #{index}")
            if index < 3:
                telegram.send_group(AGENT, f"To {name} #{index}", thread_id=threads[user_id])
    await updates_handled(telegram)
    await telegram.wait_until(
        lambda: any(c.status == 502 for c in telegram.calls_to("getMe")),
        what="the breaker to open",
    )
    await desk.stop()
    pending = await with_db(desk.settings, outbox.depth)
    assert pending == 8 + 6

    telegram.clear_faults()
    await desk.start()

    def complete() -> bool:
        return all(
            len(starting(telegram, GROUP_ID, f"{name} waits #", threads[user_id])) >= 4
            and len(starting(telegram, user_id, f"To {name} #")) >= 3
            for user_id, name in ((ALICE, "Alice"), (BOB, "Bob"))
        )

    await telegram.wait_until(complete, timeout=20, what="the queued messages after the restart")
    await asyncio.sleep(0.5)
    for user_id, name in ((ALICE, "Alice"), (BOB, "Bob")):
        assert starting(telegram, GROUP_ID, f"{name} waits #") == [
            f"{name} waits #{i}" for i in range(4)
        ]
        assert starting(telegram, user_id, f"To {name} #") == [f"To {name} #{i}" for i in range(3)]
    assert await with_db(desk.settings, outbox.depth) == 0
    assert await with_db(desk.settings, deadletters.list_letters) == []


@pytest.mark.parametrize(
    "extra_env",
    [{"TOPICDESK_DELIVERY__PRIVATE_PER_SECOND": "2", "TOPICDESK_DELIVERY__PRIVATE_BURST": "1"}],
    ids=["slow-private"],
)
async def test_a_restart_in_the_middle_of_a_paced_burst_sends_each_message_once(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)
    await asyncio.sleep(0.6)  # Alice's budget is full again after the form's messages

    answers = [f"Step {index} of the fix" for index in range(8)]
    for text in answers:
        telegram.send_group(AGENT, text, thread_id=thread)
    await telegram.wait_until(
        lambda: len(starting(telegram, ALICE, "Step ")) >= 2, what="the first answers"
    )
    await desk.stop()  # one answer is waiting for its budget: it finishes or stays queued
    stopped_with = len(starting(telegram, ALICE, "Step "))
    assert stopped_with < len(answers)
    assert await with_db(desk.settings, outbox.depth) == len(answers) - stopped_with

    await desk.start()
    await telegram.wait_until(
        lambda: len(starting(telegram, ALICE, "Step ")) >= len(answers),
        timeout=15,
        what="every answer after the restart",
    )
    await asyncio.sleep(0.6)
    assert starting(telegram, ALICE, "Step ") == answers


# --------------------------------------------------------------------------------------------
# 9. A card longer than one message
# --------------------------------------------------------------------------------------------

LONG_FORM = json.dumps(
    [
        {"id": "summary", "label": "Summary", "prompt": "Sum it up, please.", "max_length": 3000},
        {"id": "details", "label": "Details", "prompt": "Any details?", "max_length": 3000},
    ]
)


SUMMARY = " ".join(f"summary{i:04d}" for i in range(240))  # 2879 characters
DETAILS = " ".join(f"details{i:04d}" for i in range(240))


async def open_long_ticket(telegram: FakeTelegram) -> int:
    """Alice answers the long form with ~2900 characters twice; return the topic."""
    telegram.send_private(ALICE, "Hello")
    await wait_for_bot_text(telegram, ALICE, "Sum it up, please.")
    telegram.send_private(ALICE, SUMMARY)
    await wait_for_bot_text(telegram, ALICE, "Any details?")
    telegram.send_private(ALICE, DETAILS)
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
    await telegram.wait_until(lambda: bool(live_topics(telegram, 1)), what="the topic")
    (thread,) = live_topics(telegram, 1)
    await wait_for_count(telegram, GROUP_ID, "Hello", thread)
    return thread


@pytest.mark.parametrize("extra_env", [{"TOPICDESK_INTAKE__QUESTIONS": LONG_FORM}], ids=["long"])
async def test_answers_too_long_for_the_card_follow_it_in_marked_parts(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    assert 2800 < len(SUMMARY) <= 3000
    thread = await open_long_ticket(telegram)

    in_topic = texts(telegram, GROUP_ID, thread)
    card, first, second, hello = in_topic[:4]
    # The card stays one message, so it can be edited; it shortens the long answers.
    assert "Ticket #1" in card
    assert card.count("… (in full below)") == 2
    assert len(card) <= 4096
    assert buttons(sent(telegram, GROUP_ID, thread)[0])["🔒 Close"] == "t:1:close"
    # The answers in full follow, split at word boundaries into marked parts.
    assert first.endswith("\n(1/2)")
    assert second.endswith("\n(2/2)")
    assert hello == "Hello"
    assert all(len(part) <= 4096 for part in (first, second))
    whole = first + second
    assert SUMMARY in whole
    assert DETAILS in whole

    telegram.send_group(AGENT, "Thanks, reading it now.", thread_id=thread)
    await wait_for_count(telegram, ALICE, "Thanks, reading it now.")
    telegram.send_private(ALICE, "Great.")
    await wait_for_count(telegram, GROUP_ID, "Great.", thread)
    await asyncio.sleep(0.3)
    assert count(telegram, GROUP_ID, "Hello") == 1
    assert len([t for t in texts(telegram, GROUP_ID, thread) if t.endswith("(1/2)")]) == 1


@pytest.mark.parametrize("extra_env", [{"TOPICDESK_INTAKE__QUESTIONS": LONG_FORM}], ids=["long"])
async def test_closing_a_ticket_with_long_answers_updates_its_card(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_long_ticket(telegram)
    card = sent(telegram, GROUP_ID, thread)[0]

    telegram.press_button(AGENT, GROUP_ID, card["message_id"], buttons(card)["🔒 Close"])
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is closed")
    await telegram.wait_until(
        lambda: telegram.topics[GROUP_ID][thread].closed, what="the topic to be closed"
    )
    await telegram.wait_until(
        lambda: any(c.status for c in telegram.calls_to("editMessageText")),
        what="the card's edit",
    )
    await asyncio.sleep(0.3)

    edits = [
        (c.status, c.response.get("description")) for c in telegram.calls_to("editMessageText")
    ]
    assert all(status == 200 for status, _ in edits), edits
    letters = await with_db(desk.settings, deadletters.list_letters)
    assert [(letter.method, letter.error) for letter in letters] == []
    card = sent(telegram, GROUP_ID, thread)[0]
    assert "🔒 closed" in card["text"]
    assert buttons(card) == {"↩️ Reopen": "t:1:reopen"}, "only Reopen makes sense now"


def fail_matching(
    telegram: FakeTelegram,
    method: str,
    matches: Callable[[dict[str, Any]], bool],
    *,
    error_code: int,
    description: str,
    times: int,
) -> None:
    """Like telegram.fail(), but only for the calls `matches` picks out.

    fail() answers the next calls of a method in order, so it cannot single out the
    second part of a split message; this wraps the fake's handler for that method.
    """
    name, handler = telegram._methods[method.lower()]
    left = [times]

    def maybe_fail(params: dict[str, Any]) -> Any:
        if left[0] > 0 and matches(params):
            left[0] -= 1
            raise TelegramError(error_code, description)
        return handler(params)

    telegram._methods[method.lower()] = (name, maybe_fail)


@pytest.mark.parametrize("extra_env", [{"TOPICDESK_INTAKE__QUESTIONS": LONG_FORM}], ids=["long"])
async def test_a_failure_of_a_later_part_does_not_send_the_earlier_parts_again(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    # Telegram fails five times in a row (the breaker's default threshold) just as the
    # second part of the card goes out; the first part has already been delivered.
    fail_matching(
        telegram,
        "sendMessage",
        lambda params: str(params.get("text", "")).endswith("(2/2)"),
        error_code=502,
        description="Bad Gateway",
        times=5,
    )
    thread = await open_long_ticket(telegram)
    await asyncio.sleep(0.3)

    parts = [t[-6:] for t in texts(telegram, GROUP_ID, thread) if t.endswith("/2)")]
    assert parts == ["\n(1/2)", "\n(2/2)"], "a card part was sent twice"
