"""Only agents work tickets: outsiders, leavers, bots and forged buttons change nothing."""

from __future__ import annotations

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_card_buttons import card_of, has_card
from tests.e2e.test_conversation import (
    AGENT,
    ALICE,
    bot_texts,
    buttons,
    open_ticket,
    wait_for_bot_text,
)

LEAVER = 950
STRANGER = 951
OTHER_BOT = 952


async def press(telegram: FakeTelegram, user_id: int, message_id: int, data: str) -> str:
    """Press a button in the group and return the bot's answer to the press."""
    query = telegram.press_button(user_id, GROUP_ID, message_id, data)
    await telegram.wait_until(
        lambda: query["id"] in telegram.callback_answers, what=f"the answer to {data}"
    )
    return str(telegram.callback_answers[query["id"]].get("text", ""))


async def ticket_with_card(telegram: FakeTelegram) -> tuple[int, dict]:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)
    await telegram.wait_until(lambda: has_card(telegram, thread), what="the card")
    return thread, card_of(telegram, thread)


async def test_someone_who_left_the_group_cannot_press_the_cards_buttons(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread, card = await ticket_with_card(telegram)
    telegram.add_user(LEAVER, "Lee", "Former")
    telegram.set_member(GROUP_ID, LEAVER, "left")

    for data in buttons(card).values():
        answer = await press(telegram, LEAVER, card["message_id"], data)
        assert answer == "Only the desk's agents can do this.", data

    # Nothing changed: the ticket is open, unassigned, and the customer heard nothing.
    telegram.send_private(ALICE, "Anyone?")
    await wait_for_bot_text(telegram, GROUP_ID, "Anyone?", thread_id=thread)
    assert telegram.calls_to("closeForumTopic") == []
    assert not any("closed" in text or "resolved" in text for text in bot_texts(telegram, ALICE))
    assert "nobody" in card_of(telegram, thread)["text"]


async def test_a_bot_pressing_a_button_is_refused(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    _, card = await ticket_with_card(telegram)
    telegram.add_user(OTHER_BOT, "Spam", "Bot")
    telegram.users[OTHER_BOT]["is_bot"] = True

    answer = await press(telegram, OTHER_BOT, card["message_id"], buttons(card)["🔒 Close"])

    assert answer == "Only the desk's agents can do this."
    assert telegram.calls_to("closeForumTopic") == []


async def test_a_forged_button_for_a_ticket_that_does_not_exist_changes_nothing(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    _, card = await ticket_with_card(telegram)

    for data in ("t:99:close", "t:1:close:extra!", "t:1:explode", "ticket:99:close"):
        answer = await press(telegram, AGENT, card["message_id"], data)
        assert answer in {
            "This button does not belong to this topic.",
            "This button is not known here.",
        }, data
    assert telegram.calls_to("closeForumTopic") == []


async def test_a_non_agent_writing_in_a_topic_reaches_nobody_and_closes_nothing(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread, _ = await ticket_with_card(telegram)
    telegram.add_user(LEAVER, "Lee", "Former")
    telegram.set_member(GROUP_ID, LEAVER, "left")

    telegram.send_group(LEAVER, "psst, customer: here is my phishing link", thread_id=thread)
    telegram.send_group(LEAVER, "/close", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "only the desk's agents", thread_id=thread)

    # An agent's words after them still go through; the outsider's never did.
    telegram.send_group(AGENT, "Hello Alice, Bob here.", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "Bob here")
    assert not any("phishing" in text for text in bot_texts(telegram, ALICE))
    assert telegram.calls_to("closeForumTopic") == []
    # Told once per ticket, not once per message.
    notes = [t for t in bot_texts(telegram, GROUP_ID, thread) if "only the desk's agents" in t]
    assert len(notes) == 1


@pytest.mark.usefixtures("desk_env")
async def test_with_a_list_of_agents_a_group_member_not_on_it_is_not_an_agent(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk_with(telegram, monkeypatch, AGENTS__IDS=f"[{AGENT}]"):
        thread, card = await ticket_with_card(telegram)
        telegram.add_user(STRANGER, "Sam", "Member")  # a member of the group, not listed

        answer = await press(telegram, STRANGER, card["message_id"], buttons(card)["🔒 Close"])
        telegram.send_group(STRANGER, "Hi Alice from Sam", thread_id=thread)
        await wait_for_bot_text(telegram, GROUP_ID, "only the desk's agents", thread_id=thread)
        telegram.send_group(AGENT, "Hi Alice from Bob", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "from Bob")

    assert answer == "Only the desk's agents can do this."
    assert not any("from Sam" in text for text in bot_texts(telegram, ALICE))


async def test_a_double_tapped_close_closes_once_and_tells_the_customer_once(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread, card = await ticket_with_card(telegram)
    close = buttons(card)["🔒 Close"]

    first = telegram.press_button(AGENT, GROUP_ID, card["message_id"], close)
    second = telegram.press_button(AGENT, GROUP_ID, card["message_id"], close)
    await telegram.wait_until(
        lambda: {first["id"], second["id"]} <= telegram.callback_answers.keys(),
        what="both presses answered",
    )
    await wait_for_bot_text(telegram, ALICE, "is closed")
    await telegram.wait_until(lambda: telegram.calls_to("closeForumTopic"), what="topic closed")

    answers = sorted(
        str(telegram.callback_answers[q["id"]].get("text", "")) for q in (first, second)
    )
    assert answers == ["Closed.", "This ticket is already closed."]
    assert len(telegram.calls_to("closeForumTopic")) == 1
    assert sum("is closed" in text for text in bot_texts(telegram, ALICE)) == 1
    assert thread in telegram.topics[GROUP_ID]


async def test_a_mistyped_command_or_one_for_another_bot_never_reaches_the_customer(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread, _ = await ticket_with_card(telegram)

    telegram.send_group(AGENT, "/hisotry", thread_id=thread)
    telegram.send_group(AGENT, "/close@someotherbot", thread_id=thread)
    telegram.send_group(AGENT, "Right, Alice: one moment.", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "one moment")

    notes = [t for t in bot_texts(telegram, GROUP_ID, thread) if "is not a command here" in t]
    assert len(notes) == 2
    assert not any("hisotry" in t or "someotherbot" in t for t in bot_texts(telegram, ALICE))
    assert telegram.calls_to("closeForumTopic") == []
