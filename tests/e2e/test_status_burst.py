"""A burst of status changes never holds back a customer's words, and costs little."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_card_buttons import card_of
from tests.e2e.test_conversation import AGENT, ALICE, buttons, open_ticket, wait_for_bot_text

BRUNO = 1002
SLOW_WINDOW = 3  # seconds for 2 group sends: a queue builds up at once


@pytest.fixture
async def slow_group(
    telegram: FakeTelegram, desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningDesk]:
    async with desk_with(
        telegram,
        monkeypatch,
        DELIVERY__GROUP_PER_WINDOW="2",
        DELIVERY__GROUP_WINDOW=str(SLOW_WINDOW),
        DELIVERY__PRIVATE_PER_SECOND="100",
        DELIVERY__PRIVATE_BURST="100",
    ) as running:
        yield running


def group_calls(telegram: FakeTelegram) -> list[tuple[str, dict]]:
    return [
        (call.method, call.params)
        for call in telegram.calls
        if call.status == 200
        and str(call.params.get("chat_id")) == str(GROUP_ID)
        and not call.method.startswith("get")  # the start-up checks spend no budget
    ]


async def test_status_changes_queue_behind_the_customers_words_and_coalesce(
    telegram: FakeTelegram, slow_group: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(BRUNO, "Bruno", "Costa")
    telegram.add_user(AGENT, "Bob", "Agent")
    alices = await open_ticket(telegram, ALICE)
    brunos = await open_ticket(telegram, BRUNO)
    await telegram.wait_until(
        lambda: len(telegram.calls_to("pinChatMessage")) == 2, what="both cards pinned", timeout=30
    )
    card = card_of(telegram, alices)

    # While the desk is down, an agent changes Alice's ticket five times, then Bruno
    # writes: at the restart they are one batch, one commit, all queued at once.
    await slow_group.stop()
    for data in (
        "t:1:priority:high",
        "t:1:priority:urgent",
        "t:1:resolve",
        "t:1:reopen",
        "t:1:priority:low",
    ):
        telegram.press_button(AGENT, GROUP_ID, card["message_id"], data)
    telegram.send_private(BRUNO, "Sorry, one more question!")
    sent_before = len(group_calls(telegram))
    await slow_group.start()

    await wait_for_bot_text(
        telegram, GROUP_ID, "Sorry, one more question!", thread_id=brunos, timeout=30
    )
    burst = [method for method, _ in group_calls(telegram)[sent_before:]]
    # The customer's words go first, although they were queued last.
    assert burst[0] == "copyMessage", burst

    # Then Alice's card and topic name catch up, with one edit each, not five.
    def final_card() -> str:
        return str(card_of(telegram, alices).get("text") or "")

    await telegram.wait_until(
        lambda: "Priority: low" in final_card(), what="the card's final state", timeout=30
    )
    final = card_of(telegram, alices)
    assert "🟢 open" in final["text"]
    assert buttons(final)["✅ Resolve"] == "t:1:resolve"
    later = [method for method, _ in group_calls(telegram)[sent_before:]]
    assert later.count("editMessageText") == 1, later
    # Resolved then reopened: the name is back where it was, so it is not renamed at all.
    assert later.count("editForumTopic") <= 1, later
