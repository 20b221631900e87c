"""Admin commands: /help for everyone; /ban, /unban, /agents, /dlq for admins only."""

from __future__ import annotations

import asyncio

from bot.fake_telegram import GROUP_ID, FakeTelegram
from storage import bans, deadletters
from tests.conftest import RunningDesk
from tests.e2e.test_agent_rights import press
from tests.e2e.test_conversation import (
    AGENT,
    ALICE,
    bot_texts,
    buttons,
    open_ticket,
    wait_for_bot_text,
)
from tests.e2e.test_delivery import with_db

ADMIN = AGENT  # 900, in support.admin_ids
CAROL = 1003  # a member of the group: an agent, not an admin
REFUSED = "Only the desk's admins can use"
BANNED_NOTE = "this support desk cannot take your messages"


def people(telegram: FakeTelegram) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(ADMIN, "Bob", "Agent")
    telegram.add_user(CAROL, "Carol", "Agent")
    telegram.set_member(GROUP_ID, ALICE, "left")  # a customer, not a member of the group


def count(telegram: FakeTelegram, chat_id: int, fragment: str, thread: int | None = None) -> int:
    return sum(fragment in text for text in bot_texts(telegram, chat_id, thread))


async def test_help_lists_what_the_asker_may_use(telegram: FakeTelegram, desk: RunningDesk) -> None:
    people(telegram)
    telegram.send_private(ALICE, "/help")
    customer = await wait_for_bot_text(telegram, ALICE, "/status")
    assert "/ban" not in customer["text"]
    assert "/assign" not in customer["text"]
    assert telegram.bot_messages(GROUP_ID) == []  # not relayed, no form started

    telegram.send_private(ADMIN, "/help")
    own = await wait_for_bot_text(telegram, ADMIN, "/dlq")
    assert "/new" in own["text"]
    assert "/assign" in own["text"]

    telegram.send_group(CAROL, "/help")
    agent = await wait_for_bot_text(telegram, GROUP_ID, "/assign")
    assert "/ban" not in agent["text"]
    assert "/new" not in agent["text"]
    telegram.send_group(ADMIN, "/help")
    await wait_for_bot_text(telegram, GROUP_ID, "/unban")


async def test_every_admin_command_is_refused_for_an_agent_and_a_customer(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    commands = ["/ban 1001 spam", "/unban 1001", "/agents", "/dlq"]
    for command in commands:
        telegram.send_group(CAROL, command)
        telegram.send_private(ALICE, command)
    await telegram.wait_until(
        lambda: count(telegram, GROUP_ID, REFUSED) == 4 and count(telegram, ALICE, REFUSED) == 4,
        what="every refusal",
    )
    for command in commands:
        word = command.split()[0]
        assert count(telegram, GROUP_ID, f"{REFUSED} {word}.") == 1
        assert count(telegram, ALICE, f"{REFUSED} {word}.") == 1
    assert await with_db(desk.settings, lambda db: bans.get(db, ALICE)) is None
    assert not any("Agents" in text or "dead letter" in text for text in bot_texts(telegram, ALICE))
    assert "What is your question about?" not in bot_texts(telegram, ALICE)  # no form either


async def test_a_banned_customer_is_kept_not_relayed_told_once_and_unban_restores(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)

    telegram.send_group(ADMIN, "/ban keeps sending spam", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "Alice Smith (1001) is banned", thread_id=thread)
    for n in range(3):
        telegram.send_private(ALICE, f"spam number {n}")

    async def kept() -> list[tuple[int, str, str | None]]:
        return await with_db(desk.settings, lambda db: bans.kept_messages(db, ALICE))

    await wait_for_bot_text(telegram, ALICE, BANNED_NOTE)
    for _ in range(50):
        if len(await kept()) == 3:
            break
        await asyncio.sleep(0.05)  # a database read: wait_until takes a plain predicate
    assert [text for _, _, text in await kept()] == [f"spam number {n}" for n in range(3)]
    assert count(telegram, ALICE, BANNED_NOTE) == 1
    assert count(telegram, GROUP_ID, "spam number") == 0

    # Lifted from the admin's private chat: announced in the ticket's topic.
    telegram.send_private(ADMIN, "/unban 1001")
    await wait_for_bot_text(telegram, ADMIN, "no longer banned")
    await wait_for_bot_text(telegram, GROUP_ID, "no longer banned", thread_id=thread)
    telegram.send_private(ALICE, "Sorry, I am back.")
    await wait_for_bot_text(telegram, GROUP_ID, "Sorry, I am back.", thread_id=thread)
    assert count(telegram, GROUP_ID, "spam number") == 0
    assert count(telegram, ALICE, BANNED_NOTE) == 1


async def test_a_banned_newcomer_starts_no_form(telegram: FakeTelegram, desk: RunningDesk) -> None:
    people(telegram)
    telegram.send_group(ADMIN, "/ban 1001")
    await wait_for_bot_text(telegram, GROUP_ID, "user 1001 is banned")
    telegram.send_private(ALICE, "/start")
    telegram.send_private(ALICE, "Hello")
    await wait_for_bot_text(telegram, ALICE, BANNED_NOTE)
    telegram.send_group(ADMIN, "/ban 1001")
    await wait_for_bot_text(telegram, GROUP_ID, "already banned")
    assert bot_texts(telegram, ALICE) == [desk.settings.texts.banned]
    assert telegram.topics[GROUP_ID] == {}


async def test_agents_lists_the_desk_s_agents(telegram: FakeTelegram, desk: RunningDesk) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)
    telegram.send_group(CAROL, "/assign @me", thread_id=thread)
    telegram.send_group(CAROL, "/help")
    await wait_for_bot_text(telegram, GROUP_ID, "/assign")
    telegram.send_private(ADMIN, "/agents")
    listing = await wait_for_bot_text(telegram, ADMIN, "Agents")
    assert "Carol Agent (1003) · on duty" in listing["text"]
    telegram.send_private(ADMIN, "/agents add 1234")
    await wait_for_bot_text(telegram, ADMIN, "add or remove them there")


async def test_dlq_retry_requeues_a_dead_letter_and_it_is_delivered(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)
    telegram.block_bot(ALICE)
    telegram.send_group(ADMIN, "Your refund is ready.", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "not delivered to the customer", thread_id=thread)
    letters = await with_db(desk.settings, deadletters.list_letters)
    assert len(letters) == 1
    letter = letters[0].id
    telegram.block_bot(ALICE, blocked=False)

    telegram.send_group(ADMIN, "/dlq")
    listing = await wait_for_bot_text(telegram, GROUP_ID, "Dead letters: 1")
    assert "blocked by the user" in listing["text"]
    keys = buttons(listing)
    assert keys == {
        f"↻ Retry {letter}": f"dlq:{letter}:retry",
        f"✖ Drop {letter}": f"dlq:{letter}:drop",
    }

    # An agent who is not an admin, and forged buttons, change nothing.
    message_id = listing["message_id"]
    assert await press(telegram, CAROL, message_id, f"dlq:{letter}:drop") == (
        "Only the desk's admins can do this."
    )
    assert "does not exist" in await press(telegram, ADMIN, message_id, "dlq:99:retry")
    assert await press(telegram, ADMIN, message_id, "dlq:1:explode") == (
        "This button is not known here."
    )
    assert len(await with_db(desk.settings, deadletters.list_letters)) == 1

    answer = await press(telegram, ADMIN, message_id, f"dlq:{letter}:retry")
    assert answer == f"Dead letter {letter} queued again."
    await wait_for_bot_text(telegram, ALICE, "Your refund is ready.")
    assert "is resolved" in await press(telegram, ADMIN, message_id, f"dlq:{letter}:drop")
    assert await with_db(desk.settings, deadletters.list_letters) == []
    telegram.send_private(ADMIN, "/dlq")
    await wait_for_bot_text(telegram, ADMIN, "No dead letters.")


async def test_a_customer_banned_during_the_form_opens_no_ticket(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    telegram.send_private(ALICE, "Hello")
    question = await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    telegram.send_private(ADMIN, "/ban 1001 abusive")
    await wait_for_bot_text(telegram, ADMIN, "Alice Smith (1001) is banned")
    pressed = telegram.press_button(
        ALICE, ALICE, question["message_id"], buttons(question)["Billing"]
    )
    await telegram.wait_until(lambda: pressed["id"] in telegram.callback_answers, what="answer")
    telegram.send_private(ALICE, "I was charged twice.")
    await wait_for_bot_text(telegram, ALICE, BANNED_NOTE)
    assert not any("describe the problem" in text for text in bot_texts(telegram, ALICE))
    assert telegram.topics[GROUP_ID] == {}
