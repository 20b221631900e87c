"""Stories of a customer and an agent talking through TopicDesk, end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.config import Settings
from bot.fake_telegram import GROUP_ID, FakeTelegram
from storage.db import Database
from storage.tickets import get_ticket
from tests.conftest import RunningDesk

ALICE = 1001
AGENT = 900


def last_bot_message(telegram: FakeTelegram, chat_id: int) -> dict[str, Any]:
    return telegram.bot_messages(chat_id)[-1]


def bot_texts(telegram: FakeTelegram, chat_id: int, thread_id: int | None = None) -> list[str]:
    return [m.get("text") or "" for m in telegram.bot_messages(chat_id, thread_id)]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Button label -> callback data of a message's inline keyboard."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {button["text"]: button["callback_data"] for row in rows for button in row}


def ticket_topic(telegram: FakeTelegram, number: int) -> int:
    for thread_id, topic in telegram.topics[GROUP_ID].items():
        if topic.name.startswith(f"#{number} ·"):
            return thread_id
    raise AssertionError(f"no topic for ticket #{number}: {telegram.topics[GROUP_ID]}")


async def wait_for_bot_text(
    telegram: FakeTelegram,
    chat_id: int,
    fragment: str,
    thread_id: int | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    def found() -> bool:
        return any(fragment in text for text in bot_texts(telegram, chat_id, thread_id))

    await telegram.wait_until(
        found, timeout=timeout, what=f"a bot message containing {fragment!r} in {chat_id}"
    )
    return next(
        m for m in telegram.bot_messages(chat_id, thread_id) if fragment in (m.get("text") or "")
    )


async def open_ticket(
    telegram: FakeTelegram, user_id: int, first_words: str = "Hello", date: int | None = None
) -> int:
    """Take a customer through the default form; return the ticket's topic id. `date` is
    Telegram's date on the first words (the ticket's receipt time)."""
    telegram.send_private(user_id, first_words, date=date)
    question = await wait_for_bot_text(telegram, user_id, "What is your question about?")
    telegram.press_button(user_id, user_id, question["message_id"], buttons(question)["Billing"])
    await wait_for_bot_text(telegram, user_id, "describe the problem")
    telegram.send_private(user_id, "I was charged twice for my plan this month.")
    confirmation = await wait_for_bot_text(telegram, user_id, "Your ticket #")
    number = int(confirmation["text"].split("#", 1)[1].split(" ", 1)[0])
    await telegram.wait_until(
        lambda: any(t.name.startswith(f"#{number} ·") for t in telegram.topics[GROUP_ID].values()),
        what="the ticket's topic",
    )
    return ticket_topic(telegram, number)


async def test_a_customer_fills_the_form_and_an_agent_answers_in_the_topic(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith", username="alice")
    telegram.add_user(AGENT, "Bob", "Agent")
    stamped = 1_700_000_000
    telegram.send_private(ALICE, "Hi, my invoice looks wrong", date=stamped)

    question = await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    assert set(buttons(question)) == {"Billing", "Technical problem", "Account", "Other"}

    telegram.send_private(ALICE, "Spaceships")  # not one of the options
    await wait_for_bot_text(telegram, ALICE, "Please choose one of the buttons")
    telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Billing"])
    await wait_for_bot_text(telegram, ALICE, "describe the problem")

    telegram.send_private(ALICE, "help")  # shorter than min_length
    await wait_for_bot_text(telegram, ALICE, "at least 10 characters")
    telegram.send_private(ALICE, "I was charged twice for my plan this month.")

    confirmation = await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
    assert confirmation["chat"]["id"] == ALICE
    thread = ticket_topic(telegram, 1)
    assert telegram.topics[GROUP_ID][thread].name == "#1 · Alice Smith · Billing"

    await telegram.wait_until(
        lambda: len(telegram.chat_messages(GROUP_ID, thread)) >= 3,
        what="the card and the first message in the topic",
    )
    in_topic = [
        m for m in telegram.chat_messages(GROUP_ID, thread) if "forum_topic_created" not in m
    ]
    card, first_words = in_topic[0], in_topic[1]
    assert "Ticket #1" in card["text"]
    assert "Billing" in card["text"]
    assert "I was charged twice" in card["text"]
    assert "Alice Smith" in card["text"]
    assert first_words["text"] == "Hi, my invoice looks wrong"

    # The ticket's clock starts when Telegram stamped the first message.
    database = await Database.open(desk.settings.storage.path)
    try:
        async with database.reader() as db:
            ticket = await get_ticket(db, 1)
    finally:
        await database.close()
    assert ticket is not None
    assert datetime.fromisoformat(ticket.created_at) == datetime.fromtimestamp(stamped, UTC)

    # Both ways, after the ticket is open.
    telegram.send_private(ALICE, "Order number is 4711.")
    await wait_for_bot_text(telegram, GROUP_ID, "Order number is 4711.", thread_id=thread)
    telegram.send_group(AGENT, "Refund is on its way.", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "Refund is on its way.")


async def test_a_customer_can_cancel_the_form(telegram: FakeTelegram, desk: RunningDesk) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.send_private(ALICE, "/cancel")
    await wait_for_bot_text(telegram, ALICE, "There is nothing to cancel")
    telegram.send_private(ALICE, "/start")
    await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.send_private(ALICE, "/cancel")
    await wait_for_bot_text(telegram, ALICE, "the form is cancelled")
    asked = len([t for t in bot_texts(telegram, ALICE) if "What is your question" in t])
    telegram.send_private(ALICE, "Hello again")
    await telegram.wait_until(
        lambda: (
            len([t for t in bot_texts(telegram, ALICE) if "What is your question" in t])
            == asked + 1
        ),
        what="the form to start afresh",
    )
    assert GROUP_ID not in telegram.topics or not telegram.topics[GROUP_ID]


async def test_a_half_filled_form_survives_a_restart(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.send_private(ALICE, "Hello")
    question = await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Account"])
    await wait_for_bot_text(telegram, ALICE, "describe the problem")

    await desk.restart()

    telegram.send_private(ALICE, "I cannot log in since yesterday.")
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
    assert telegram.topics[GROUP_ID][ticket_topic(telegram, 1)].name == "#1 · Alice Smith · Account"


async def test_a_reply_is_relayed_as_a_reply_to_its_counterpart(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)

    original = telegram.send_private(ALICE, "Which plan am I on?")
    copy = await wait_for_bot_text(telegram, GROUP_ID, "Which plan am I on?", thread_id=thread)
    telegram.send_group(AGENT, "You are on Pro.", thread_id=thread, reply_to=copy["message_id"])
    answer = await wait_for_bot_text(telegram, ALICE, "You are on Pro.")
    assert answer["reply_to_message"]["message_id"] == original["message_id"]

    telegram.send_private(ALICE, "Thanks!", reply_to=answer["message_id"])
    thanks = await wait_for_bot_text(telegram, GROUP_ID, "Thanks!", thread_id=thread)
    agent_original = next(
        m for m in telegram.chat_messages(GROUP_ID, thread) if m.get("text") == "You are on Pro."
    )
    assert thanks["reply_to_message"]["message_id"] == agent_original["message_id"]

    # A message that replies to nothing is not made a reply to anything.
    telegram.send_group(AGENT, "Anything else?", thread_id=thread)
    plain = await wait_for_bot_text(telegram, ALICE, "Anything else?")
    assert "reply_to_message" not in plain


async def test_a_webhook_left_behind_is_removed_and_its_updates_kept(
    telegram: FakeTelegram, settings: Settings
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.set_webhook("https://old-host.example/hook", pending_update_count=3)
    telegram.send_private(ALICE, "Written while the webhook was set")
    running = RunningDesk(settings, telegram)
    await running.start()
    try:
        (removal,) = telegram.calls_to("deleteWebhook")
        assert removal.params.get("drop_pending_updates") in (None, False)
        await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    finally:
        await running.stop()
