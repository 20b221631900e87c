"""Nothing a customer or an agent writes is lost: not to redelivery, SIGTERM or SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, buttons, open_ticket, wait_for_bot_text
from tests.e2e.test_daemon_process import child_env

CUSTOMERS = [ALICE, 1002, 1003]
# This fake enforces no rate limits; the daemon's own pacing (20 per minute into the
# group) would only make these stories slow, so it is opened up here.
UNHURRIED = {
    "TOPICDESK_DELIVERY__GROUP_PER_WINDOW": "1000",
    "TOPICDESK_DELIVERY__PRIVATE_PER_SECOND": "100",
    "TOPICDESK_DELIVERY__PRIVATE_BURST": "100",
}


async def test_a_redelivered_update_changes_nothing(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)
    telegram.send_private(ALICE, "Only once, please")
    await wait_for_bot_text(telegram, GROUP_ID, "Only once, please", thread_id=thread)
    original = next(
        u
        for u in telegram.updates_sent
        if (u.get("message") or {}).get("text") == "Only once, please"
    )
    assert desk.daemon is not None
    assert desk.daemon.poller is not None
    poller = desk.daemon.poller
    before = poller.processed

    # Telegram replays the update (its offset was never confirmed): same update_id.
    telegram.enqueue_update(original, keep_id=True)
    await telegram.wait_until(lambda: poller.processed == before + 1, what="the replay")
    telegram.send_private(ALICE, "And this is new")
    await wait_for_bot_text(telegram, GROUP_ID, "And this is new", thread_id=thread)

    copies = [
        m for m in telegram.bot_messages(GROUP_ID, thread) if m.get("text") == "Only once, please"
    ]
    assert len(copies) == 1
    assert poller.metrics.updates.labels("duplicate")._value.get() == 1


def _in_flight(database: Path) -> int:
    """Outbox rows a killed daemon left mid-send: each may have reached Telegram."""
    conn = sqlite3.connect(database)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'sending'").fetchone()[0]
        )
    finally:
        conn.close()


class DaemonProcess:
    """`python -m bot run` as a child process, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, telegram: FakeTelegram) -> None:
        polls = len(telegram.calls_to("getUpdates"))
        with self.log.open("a") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=self.env, stdout=out, stderr=out
            )
        self.starts += 1
        # The child imports aiogram first, which takes seconds on a busy machine.
        await telegram.wait_until(
            lambda: len(telegram.calls_to("getUpdates")) > polls,
            timeout=90,
            what="the daemon polling",
        )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 40)

    async def close(self) -> None:
        """Leave no daemon behind, whatever the test did."""
        if self.process is not None and self.process.returncode is None:
            await self.kill()


@pytest.fixture
async def daemon(desk_env: dict[str, str], tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    process = DaemonProcess(child_env(desk_env, **UNHURRIED), tmp_path / "daemon.log")
    try:
        yield process
    finally:
        await process.close()


async def _converse(
    telegram: FakeTelegram, threads: dict[int, int], count: int, rng: random.Random
) -> list[tuple[str, int, int | None]]:
    """Customers and agents write `count` numbered messages; return where each must arrive."""
    expected = []
    for n in range(count):
        customer = rng.choice(CUSTOMERS)
        if rng.random() < 0.5:
            text = f"customer {customer} says {n}"
            telegram.send_private(customer, text)
            expected.append((text, GROUP_ID, threads[customer]))
        else:
            text = f"agent answers {customer}: {n}"
            telegram.send_group(AGENT, text, thread_id=threads[customer])
            expected.append((text, customer, None))
        await asyncio.sleep(rng.uniform(0.02, 0.12))
    return expected


def _arrivals(telegram: FakeTelegram, expected: list[tuple[str, int, int | None]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for chat in {chat for _, chat, _ in expected}:
        for message in telegram.bot_messages(chat):
            found[message.get("text") or ""] += 1
    return found


async def _open_tickets(telegram: FakeTelegram) -> dict[int, int]:
    telegram.add_user(AGENT, "Bob", "Agent")
    threads = {}
    for customer in CUSTOMERS:
        telegram.add_user(customer, f"Customer {customer}")
        threads[customer] = await open_ticket(telegram, customer)
    return threads


async def test_sigkill_at_random_moments_loses_nothing(
    telegram: FakeTelegram, desk_env: dict[str, str], daemon: DaemonProcess
) -> None:
    seed = int(os.environ.get("TOPICDESK_CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    database = Path(desk_env["TOPICDESK_STORAGE__PATH"])
    await daemon.start(telegram)
    threads = await _open_tickets(telegram)

    conversation = asyncio.create_task(_converse(telegram, threads, 120, rng))
    kills, in_flight_at_kills = 0, 0
    while kills < 3:
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        await daemon.kill()
        kills += 1
        in_flight_at_kills += _in_flight(database)
        await daemon.start(telegram)
    expected = await conversation

    try:
        await telegram.wait_until(
            lambda: all(_arrivals(telegram, expected)[text] >= 1 for text, _, _ in expected),
            timeout=120,
            what="every message to arrive after the kills",
        )
    except AssertionError:
        arrivals = _arrivals(telegram, expected)
        missing = [text for text, _, _ in expected if arrivals[text] == 0]
        raise AssertionError(
            f"seed {seed}: lost {missing}; log tail:\n"
            + "\n".join(daemon.log.read_text().splitlines()[-40:])
        ) from None
    assert await daemon.terminate() == 0
    arrivals = _arrivals(telegram, expected)
    lost = [text for text, _, _ in expected if arrivals[text] == 0]
    duplicates = sum(arrivals[text] - 1 for text, _, _ in expected)
    print(
        f"\nchaos (seed {seed}): {len(expected)} messages, {kills} SIGKILLs, "
        f"{in_flight_at_kills} sends in flight at the kills, lost {len(lost)}, "
        f"duplicated {duplicates}"
    )
    assert kills == 3
    assert lost == []
    # A send that reached Telegram just before the kill is sent again: at most one per
    # chat in flight at each kill, which the outbox's 'sending' rows count exactly.
    assert duplicates <= in_flight_at_kills
    for text, chat, thread in expected:
        where = [m for m in telegram.bot_messages(chat, thread) if m.get("text") == text]
        assert where, f"{text!r} arrived in the wrong place"


async def test_sigterm_under_load_loses_nothing_and_duplicates_nothing(
    telegram: FakeTelegram, daemon: DaemonProcess
) -> None:
    rng = random.Random(7)
    await daemon.start(telegram)
    threads = await _open_tickets(telegram)
    conversation = asyncio.create_task(_converse(telegram, threads, 40, rng))
    await asyncio.sleep(1.0)
    assert await daemon.terminate() == 0
    await daemon.start(telegram)
    expected = await conversation
    await telegram.wait_until(
        lambda: all(_arrivals(telegram, expected)[text] >= 1 for text, _, _ in expected),
        timeout=60,
        what="every message after the restart",
    )
    assert await daemon.terminate() == 0
    arrivals = _arrivals(telegram, expected)
    assert {text: arrivals[text] for text, _, _ in expected} == {text: 1 for text, _, _ in expected}


async def test_two_messages_racing_to_open_a_ticket_open_one(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.send_private(ALICE, "Hello")
    question = await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Billing"])
    await wait_for_bot_text(telegram, ALICE, "describe the problem")

    # Both answers arrive in one getUpdates batch, as a double send would.
    telegram.send_private(ALICE, "The invoice is wrong, please check.")
    telegram.send_private(ALICE, "The invoice is wrong, please check!!")
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
    await wait_for_bot_text(telegram, GROUP_ID, "The invoice is wrong, please check!!")
    # ...and a double tap on a button that was answered already changes nothing.
    telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Billing"])
    telegram.send_private(ALICE, "One more thing")
    await wait_for_bot_text(telegram, GROUP_ID, "One more thing")

    tickets = [t.name for t in telegram.topics[GROUP_ID].values() if t.name.startswith("#")]
    assert tickets == ["#1 · Alice Smith · Billing"]
    assert len(telegram.calls_to("createForumTopic")) == 1


# Enough for nine getUpdates batches, so the kill falls inside the backlog; under
# UNHURRIED's 1,000 group sends a minute, so relaying it is not paced.
BACKLOG = 900


def _ledger(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM processed_updates").fetchone()[0])
    finally:
        conn.close()


async def test_sigkill_in_the_middle_of_a_batch_loses_and_duplicates_nothing(
    telegram: FakeTelegram, desk_env: dict[str, str], daemon: DaemonProcess
) -> None:
    """A backlog is stored a batch (one transaction) at a time; a kill inside one loses
    the batch's work, never its updates: they come again and are stored once."""
    database = Path(desk_env["TOPICDESK_STORAGE__PATH"])
    await daemon.start(telegram)
    threads = await _open_tickets(telegram)
    await daemon.terminate()

    # A backlog waits while the daemon is down: more than one getUpdates batch.
    expected = []
    for n in range(BACKLOG):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        text = f"backlog {customer} #{n}"
        telegram.send_private(customer, text)
        expected.append((text, GROUP_ID, threads[customer]))
    stored_before = _ledger(database)

    await daemon.start(telegram)
    # Kill as soon as the first batches have committed, while later ones are under way.
    await telegram.wait_until(
        lambda: _ledger(database) > stored_before, timeout=30, what="a first batch committed"
    )
    await daemon.kill()
    stored_at_kill = _ledger(database) - stored_before
    in_flight = _in_flight(database)
    await daemon.start(telegram)

    await telegram.wait_until(
        lambda: _ledger(database) - stored_before >= len(expected),
        timeout=60,
        what="the whole backlog stored",
    )
    await telegram.wait_until(
        lambda: all(_arrivals(telegram, expected)[text] >= 1 for text, _, _ in expected),
        timeout=90,
        what="every backlog message relayed",
    )
    assert await daemon.terminate() == 0
    assert 0 < stored_at_kill < len(expected), "the kill did not fall inside the backlog"
    conn = sqlite3.connect(database)
    try:
        stored = Counter(
            text
            for (text,) in conn.execute(
                "SELECT text FROM messages WHERE text LIKE 'backlog %'"
            ).fetchall()
        )
    finally:
        conn.close()
    assert stored == Counter(text for text, _, _ in expected)  # each stored exactly once
    arrivals = _arrivals(telegram, expected)
    duplicates = sum(arrivals[text] - 1 for text, _, _ in expected)
    assert duplicates <= in_flight
