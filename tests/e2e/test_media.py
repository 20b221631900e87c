"""Media and albums travel both ways, and what can't travel gets a polite note."""

from __future__ import annotations

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services.incoming import RELAYABLE
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket, wait_for_bot_text

KINDS = sorted(RELAYABLE - {"text"})  # every kind the desk relays besides text


def copies_of_kind(
    telegram: FakeTelegram, chat_id: int, kind: str, thread_id: int | None = None
) -> int:
    return sum(1 for m in telegram.bot_messages(chat_id, thread_id) if kind in m)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_of_message_reaches_the_other_side(
    telegram: FakeTelegram, desk: RunningDesk, kind: str
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)
    caption = (
        f"customer {kind}"
        if kind in {"photo", "video", "document", "audio", "voice", "animation"}
        else None
    )

    telegram.send_private(ALICE, kind=kind, caption=caption)
    await telegram.wait_until(
        lambda: copies_of_kind(telegram, GROUP_ID, kind, thread) == 1,
        what=f"the customer's {kind} in the topic",
    )
    telegram.send_group(AGENT, kind=kind, thread_id=thread)
    await telegram.wait_until(
        lambda: copies_of_kind(telegram, ALICE, kind) == 1, what=f"the agent's {kind}"
    )
    if caption:
        copy = next(m for m in telegram.bot_messages(GROUP_ID, thread) if kind in m)
        assert copy["caption"] == caption


async def test_formatting_survives_the_relay(telegram: FakeTelegram, desk: RunningDesk) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)
    entities = [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "italic", "offset": 5, "length": 6},
    ]
    telegram.send_private(ALICE, "Very urgent please", entities=entities)
    copy = await wait_for_bot_text(telegram, GROUP_ID, "Very urgent please", thread_id=thread)
    assert copy["entities"] == entities


async def test_albums_travel_as_albums_both_ways(telegram: FakeTelegram, desk: RunningDesk) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)

    for n in range(3):
        telegram.send_private(
            ALICE, kind="photo", media_group_id="album-1", caption=f"shot {n}" if n == 0 else None
        )
    await telegram.wait_until(
        lambda: copies_of_kind(telegram, GROUP_ID, "photo", thread) == 3,
        what="the album in the topic",
    )
    copied = [m for m in telegram.bot_messages(GROUP_ID, thread) if "photo" in m]
    assert len({m.get("media_group_id") for m in copied}) == 1
    assert copied[0].get("media_group_id")
    assert len(telegram.calls_to("copyMessages")) == 1

    for _ in range(2):
        telegram.send_group(AGENT, kind="document", media_group_id="album-2", thread_id=thread)
    await telegram.wait_until(
        lambda: copies_of_kind(telegram, ALICE, "document") == 2, what="the agent's album"
    )
    received = [m for m in telegram.bot_messages(ALICE) if "document" in m]
    assert received[0].get("media_group_id") == received[1].get("media_group_id") is not None


async def test_media_sent_during_the_form_follows_the_card(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.send_private(ALICE, "Hello")
    await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.send_private(ALICE, kind="photo", caption="the error screen")
    await wait_for_bot_text(telegram, ALICE, "we'll pass that on")
    thread = await open_ticket(telegram, ALICE, first_words="still me")
    await telegram.wait_until(
        lambda: copies_of_kind(telegram, GROUP_ID, "photo", thread) == 1, what="the kept photo"
    )
    topic = telegram.bot_messages(GROUP_ID, thread)
    kinds = [
        "card"
        if "Ticket #" in (m.get("text") or "")
        else ("photo" if "photo" in m else m.get("text"))
        for m in topic
    ]
    assert kinds.index("card") < kinds.index("photo")


async def test_an_unsupported_message_gets_a_polite_note(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)
    telegram.send_private(ALICE, kind="poll")
    await wait_for_bot_text(telegram, ALICE, "we can't pass this kind of message on")
    telegram.send_group(AGENT, kind="dice", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "can't be sent to a customer", thread_id=thread)
    assert not any("poll" in m for m in telegram.bot_messages(GROUP_ID))
    assert not any("dice" in m for m in telegram.bot_messages(ALICE))
