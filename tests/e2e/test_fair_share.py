"""The group's budget is shared between tickets: a noisy customer never starves a quiet one."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_conversation import open_ticket, wait_for_bot_text

NOISY, QUIET = 3001, 3002
FLOOD = 300


@pytest.fixture
async def paced_desk(
    telegram: FakeTelegram, desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningDesk]:
    """The daemon with a small group budget (4 sends a second), so a queue builds up."""
    async with desk_with(
        telegram,
        monkeypatch,
        DELIVERY__GROUP_PER_WINDOW="4",
        DELIVERY__GROUP_WINDOW="1",
        DELIVERY__PRIVATE_PER_SECOND="100",
        DELIVERY__PRIVATE_BURST="100",
    ) as running:
        yield running


def stored(database: Path, update_id: int) -> bool:
    conn = sqlite3.connect(database)
    try:
        found = conn.execute(
            "SELECT 1 FROM processed_updates WHERE update_id = ?", (update_id,)
        ).fetchone()
    finally:
        conn.close()
    return found is not None


def group_sends(telegram: FakeTelegram) -> int:
    return sum(1 for _, _, chat in telegram.sent_log if chat == GROUP_ID)


async def test_a_quiet_tickets_message_waits_its_turn_not_behind_a_flood(
    telegram: FakeTelegram, paced_desk: RunningDesk
) -> None:
    telegram.add_user(NOISY, "Noisy", "Customer")
    telegram.add_user(QUIET, "Quiet", "Customer")
    noisy_topic = await open_ticket(telegram, NOISY)
    quiet_topic = await open_ticket(telegram, QUIET)

    for n in range(FLOOD):
        telegram.send_private(NOISY, f"flood {n}")
    await wait_for_bot_text(telegram, GROUP_ID, "flood 0", thread_id=noisy_topic)

    telegram.send_private(QUIET, "Is anyone there?")
    update_id = telegram.pending_updates[-1]["update_id"]
    # Counted from the moment the message is stored (a busy machine may take a while).
    await telegram.wait_until(
        lambda: stored(paced_desk.settings.storage.path, update_id), what="the message stored"
    )
    before = group_sends(telegram)
    await wait_for_bot_text(telegram, GROUP_ID, "Is anyone there?", thread_id=quiet_topic)
    waited = group_sends(telegram) - before - 1

    relayed = [
        m for m in telegram.bot_messages(GROUP_ID, noisy_topic) if "flood" in (m.get("text") or "")
    ]
    assert len(relayed) < FLOOD - 200, "the flood was not queued, so it proves nothing"
    # Round-robin: the flood's send in hand, perhaps one more, then the quiet ticket.
    assert waited <= 2, f"the quiet ticket waited behind {waited} sends"
