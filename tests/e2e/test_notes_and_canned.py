"""Agents keep notes inside the topic, answer with canned responses, and read the history."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.fake_telegram.records import REACTION_EMOJI
from bot.services.canned import SENT_MARK
from bot.services.notes import NOTE_MARK
from storage import notes
from storage.db import Database
from storage.tickets import Status, Ticket, get_ticket
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_agent_rights import LEAVER, press
from tests.e2e.test_card_buttons import card_of
from tests.e2e.test_conversation import AGENT, ALICE, bot_texts, open_ticket, wait_for_bot_text

CAROL = 1003  # an agent (a member of the group), not an admin
GUIDE = "Step {n} of the long guide: do this, then that.\n"
GUIDE_LINES = 130  # about 6,000 characters: two messages

CANNED = {
    "greeting": "Hello <b>{customer_name}</b>, ticket #{ticket_id} is with {agent_name} now.",
    "guide": "".join(GUIDE.format(n=n) for n in range(1, GUIDE_LINES + 1)),
}


def canned_env() -> dict[str, str]:
    return {"CANNED": json.dumps(CANNED)}


async def read_db(desk: RunningDesk, ticket_id: int) -> tuple[Ticket, list[notes.Note]]:
    database = await Database.open(desk.settings.storage.path)
    try:
        async with database.reader() as db:
            ticket = await get_ticket(db, ticket_id)
            kept = await notes.of_ticket(db, ticket_id)
    finally:
        await database.close()
    assert ticket is not None
    return ticket, kept


async def wait_for_reaction(telegram: FakeTelegram, message: dict[str, Any], emoji: str) -> None:
    where = (GROUP_ID, message["message_id"])
    await telegram.wait_until(
        lambda: telegram.bot_reactions.get(where) == [{"type": "emoji", "emoji": emoji}],
        what=f"the bot's {emoji} on message {message['message_id']}",
    )


async def test_notes_stay_in_the_topic_and_are_marked(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    assert {NOTE_MARK, SENT_MARK} <= REACTION_EMOJI
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)
    before = len(telegram.bot_messages(ALICE))

    slashes = telegram.send_group(
        AGENT, "// she was charged twice, refund pending", thread_id=thread
    )
    command = telegram.send_group(AGENT, "/note check with billing first", thread_id=thread)
    screenshot = telegram.send_group(
        AGENT, kind="photo", caption="//the admin panel", thread_id=thread, media_group_id="p1"
    )
    album_rest = telegram.send_group(AGENT, kind="photo", thread_id=thread, media_group_id="p1")
    telegram.add_user(LEAVER, "Lee", "Former")
    telegram.set_member(GROUP_ID, LEAVER, "left")
    outsider = telegram.send_group(LEAVER, "// let me in on it", thread_id=thread)
    for message in (slashes, command, screenshot, album_rest):
        await wait_for_reaction(telegram, message, NOTE_MARK)
    await wait_for_bot_text(telegram, GROUP_ID, "only the desk's agents", thread_id=thread)

    # Stored on the ticket, and no answer to the customer: the ticket still waits for one.
    ticket, kept = await read_db(desk, 1)
    assert [(n.author_id, n.message_id, n.text) for n in kept] == [
        (AGENT, slashes["message_id"], "she was charged twice, refund pending"),
        (AGENT, command["message_id"], "check with billing first"),
        (AGENT, screenshot["message_id"], "the admin panel"),
        (AGENT, album_rest["message_id"], ""),
    ]
    assert ticket.status is Status.OPEN
    assert ticket.first_response_at is None
    assert (GROUP_ID, outsider["message_id"]) not in telegram.bot_reactions

    # The agent's next real reply reaches the customer; none of the notes ever did.
    telegram.send_group(AGENT, "Hello Alice, the refund is on its way.", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "refund is on its way")
    seen = telegram.bot_messages(ALICE)[before:]
    assert [m.get("text") for m in seen] == ["Hello Alice, the refund is on its way."]


@pytest.mark.usefixtures("desk_env")
async def test_a_canned_response_reaches_the_customer_as_the_agents_reply(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk_with(telegram, monkeypatch, **canned_env()) as desk:
        telegram.add_user(ALICE, "<b>Eve", "& Co</b>")
        telegram.add_user(AGENT, "Bob", "Agent")
        thread = await open_ticket(telegram, ALICE)

        telegram.send_group(AGENT, "/canned", thread_id=thread)
        listed = await wait_for_bot_text(telegram, GROUP_ID, "Canned responses", thread_id=thread)
        assert "greeting · Hello {customer_name}, ticket #{ticket_id} is with" in listed["text"]
        assert "guide · Step 1 of the long guide" in listed["text"]

        telegram.send_group(AGENT, "/canned greting", thread_id=thread)
        await wait_for_bot_text(telegram, GROUP_ID, "Did you mean greeting?", thread_id=thread)

        command = telegram.send_group(AGENT, "/canned greeting", thread_id=thread)
        reply = await wait_for_bot_text(telegram, ALICE, "ticket #1 is with")
        assert reply["text"] == "Hello <b>Eve & Co</b>, ticket #1 is with Bob Agent now."
        bold = [e for e in reply.get("entities", []) if e["type"] == "bold"]
        assert [reply["text"][e["offset"] : e["offset"] + e["length"]] for e in bold] == [
            "<b>Eve & Co</b>"
        ]
        await wait_for_reaction(telegram, command, SENT_MARK)
        # Its delivery answered the ticket: pending, first response timed, card updated.
        await telegram.wait_until(
            lambda: "pending" in card_of(telegram, thread)["text"], what="the card: pending"
        )
        ticket, _ = await read_db(desk, 1)
        assert ticket.status is Status.PENDING
        assert ticket.first_response_at is not None

        before = len(telegram.bot_messages(ALICE))
        telegram.send_group(AGENT, "/canned guide", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "(2/2)")
        parts = [m["text"] for m in telegram.bot_messages(ALICE)[before:]]
        assert len(parts) == 2
        assert parts[0].endswith("(1/2)")
        assert parts[1].endswith("(2/2)")
        assert all(len(part) <= 4096 for part in parts)
        # Every step, once, in order, across the two messages.
        lines = "\n".join(parts).splitlines()
        steps = [int(line.split()[1]) for line in lines if line.startswith("Step ")]
        assert steps == list(range(1, GUIDE_LINES + 1))


@pytest.mark.usefixtures("desk_env")
async def test_admins_manage_canned_responses_and_the_config_does_not_undo_them(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk_with(telegram, monkeypatch, **canned_env()) as desk:
        telegram.add_user(ALICE, "Alice", "Smith")
        telegram.add_user(AGENT, "Bob", "Agent")  # an admin (support.admin_ids)
        telegram.add_user(CAROL, "Carol", "Agent")  # a member of the group: an agent
        thread = await open_ticket(telegram, ALICE)

        # In the General topic: an admin adds one, an agent who is not an admin cannot.
        telegram.send_group(AGENT, "/canned_add thanks Thank you, <i>{customer_name}</i>!")
        await wait_for_bot_text(telegram, GROUP_ID, "Added thanks")
        telegram.send_group(CAROL, "/canned_add thanks Gotcha")
        telegram.send_group(CAROL, "/canned_del greeting")
        await telegram.wait_until(
            lambda: sum("Only the desk's admins" in t for t in bot_texts(telegram, GROUP_ID)) == 2,
            what="both refusals",
        )
        telegram.add_user(LEAVER, "Lee", "Former")
        telegram.set_member(GROUP_ID, LEAVER, "left")
        telegram.send_group(LEAVER, "/canned_add thanks Pwned")
        await wait_for_bot_text(telegram, GROUP_ID, "Lee Former, only the desk's agents")
        telegram.send_group(AGENT, "/canned_add bad Hello <b>unclosed")
        await wait_for_bot_text(telegram, GROUP_ID, "not valid Telegram HTML")

        # Any agent uses it; the admin's text stands, Carol's changed nothing.
        telegram.send_group(CAROL, "/canned thanks", thread_id=thread)
        thanks = await wait_for_bot_text(telegram, ALICE, "Thank you, Alice Smith!")
        assert thanks["text"] == "Thank you, Alice Smith!"
        assert [e["type"] for e in thanks.get("entities", [])] == ["italic"]

        # A deleted response is gone, and stays gone after a restart re-reads the config.
        telegram.send_group(AGENT, "/canned_del greeting", thread_id=thread)
        await wait_for_bot_text(telegram, GROUP_ID, "Deleted greeting", thread_id=thread)
        await desk.restart()
        telegram.send_group(CAROL, "/canned greeting", thread_id=thread)
        await wait_for_bot_text(telegram, GROUP_ID, "No canned response greeting", thread_id=thread)
        telegram.send_group(CAROL, "/canned", thread_id=thread)
        listed = await wait_for_bot_text(telegram, GROUP_ID, "Canned responses", thread_id=thread)
        names = [line.split(" · ")[0] for line in listed["text"].splitlines()[1:]]
        assert names == ["guide", "thanks"]
    assert not any("ticket #1 is with" in text for text in bot_texts(telegram, ALICE))


async def test_history_shows_who_changed_what_and_when(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(CAROL, "Carol", "Agent")
    thread = await open_ticket(telegram, ALICE)
    await telegram.wait_until(lambda: card_of(telegram, thread), what="the card")
    card = card_of(telegram, thread)["message_id"]

    assert await press(telegram, CAROL, card, "t:1:take") != ""
    assert await press(telegram, AGENT, card, "t:1:resolve") != ""
    telegram.send_group(CAROL, "/history", thread_id=thread)
    history = await wait_for_bot_text(telegram, GROUP_ID, "History of ticket #1", thread_id=thread)

    lines = history["text"].splitlines()
    assert "UTC" in lines[0]
    events = [line.split(" ", 2)[2] for line in lines[1:]]  # without the date and time
    assert events == [
        "opened · customer",
        "assignee: nobody → Carol Agent · Carol Agent",
        "status: open → resolved · Bob Agent",
    ]
