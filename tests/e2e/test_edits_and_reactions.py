"""Edits and reactions cross to the other side through the message mapping, end to end."""

from __future__ import annotations

from typing import Any

from bot.fake_telegram import GROUP_ID, REACTION_EMOJI, FakeTelegram
from bot.services import mirror
from storage.db import Database
from tests.conftest import RunningDesk
from tests.e2e.test_card_buttons import card_of
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket, wait_for_bot_text

OUTSIDER = 951
BOLD_4711 = [{"type": "bold", "offset": 6, "length": 4}]


def processed(desk: RunningDesk) -> int:
    """How many updates the daemon has handled and committed."""
    assert desk.daemon is not None
    assert desk.daemon.poller is not None
    return desk.daemon.poller.processed


async def settle(telegram: FakeTelegram, desk: RunningDesk, since: int, count: int) -> None:
    await telegram.wait_until(
        lambda: processed(desk) >= since + count, what=f"{count} more updates handled"
    )


async def stored(desk: RunningDesk, sql: str, *params: Any) -> Any:
    """One value read from the daemon's database."""
    database = await Database.open(desk.settings.storage.path)
    try:
        async with database.reader() as db:
            return await db.fetchval(sql, params)
    finally:
        await database.close()


def edits_of(telegram: FakeTelegram, method: str, chat_id: int, message_id: int) -> list[Any]:
    return [
        call
        for call in telegram.calls_to(method)
        if call.params.get("chat_id") == chat_id and call.params.get("message_id") == message_id
    ]


async def ticket_with_people(telegram: FakeTelegram) -> int:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    return await open_ticket(telegram, ALICE)


async def test_a_customers_edit_updates_the_copy_in_the_topic_with_its_entities(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    words = telegram.send_private(ALICE, "Order 4711 is late", entities=BOLD_4711)
    copy = await wait_for_bot_text(telegram, GROUP_ID, "Order 4711", thread_id=thread)
    answer = next(
        m for m in telegram.chat_messages(ALICE) if m.get("text", "").startswith("I was charged")
    )

    # A form answer was never relayed: its edit changes nothing.
    telegram.edit_message(ALICE, answer["message_id"], "I was charged three times.")
    entities = [*BOLD_4711, {"type": "italic", "offset": 14, "length": 4}]
    telegram.edit_message(ALICE, words["message_id"], "Order 4712 is very late", entities=entities)

    await telegram.wait_until(
        lambda: copy["text"] == "Order 4712 is very late", what="the copy to show the edit"
    )
    assert copy["entities"] == entities
    assert "edit_date" in copy
    (call,) = edits_of(telegram, "editMessageText", GROUP_ID, copy["message_id"])
    assert call.params["entities"] == entities
    assert "parse_mode" not in call.params  # Telegram's entities as they are, never re-parsed
    assert "I was charged three" not in card_of(telegram, thread)["text"]
    assert not any(
        "three times" in (m.get("text") or "") for m in telegram.bot_messages(GROUP_ID, thread)
    )
    latest = await stored(
        desk,
        "SELECT text FROM messages WHERE source_chat_id = ? AND source_message_id = ?",
        ALICE,
        words["message_id"],
    )
    assert latest == "Order 4712 is very late"


async def test_an_agents_edit_and_caption_edits_update_the_other_sides_copy(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    reply = telegram.send_group(AGENT, "Refund is on its way", thread_id=thread)
    copy = await wait_for_bot_text(telegram, ALICE, "Refund is on its way")
    shot = telegram.send_private(ALICE, kind="photo", caption="my screen")
    await telegram.wait_until(
        lambda: any(m.get("caption") == "my screen" for m in telegram.bot_messages(GROUP_ID)),
        what="the photo's copy in the topic",
    )
    shot_copy = next(
        m for m in telegram.bot_messages(GROUP_ID, thread) if m.get("caption") == "my screen"
    )

    code = [{"type": "code", "offset": 22, "length": 6}]
    telegram.edit_message(
        GROUP_ID, reply["message_id"], "Refund is on its way: 12 EUR", entities=code
    )
    bold = [{"type": "bold", "offset": 3, "length": 6}]
    telegram.edit_message(
        ALICE, shot["message_id"], caption="my screen, cropped", caption_entities=bold
    )

    await telegram.wait_until(
        lambda: copy["text"] == "Refund is on its way: 12 EUR", what="the customer's copy"
    )
    assert copy["entities"] == code
    await telegram.wait_until(
        lambda: shot_copy.get("caption") == "my screen, cropped", what="the caption's copy"
    )
    assert shot_copy["caption_entities"] == bold
    (call,) = edits_of(telegram, "editMessageCaption", GROUP_ID, shot_copy["message_id"])
    assert call.params["caption_entities"] == bold
    assert "parse_mode" not in call.params

    # Taking the caption away takes it off the copy too.
    telegram.edit_message(ALICE, shot["message_id"], caption="")
    await telegram.wait_until(lambda: "caption" not in shot_copy, what="the caption removed")


async def test_three_quick_edits_while_the_topic_waits_send_one_edit(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    words = telegram.send_private(ALICE, "Version 1")
    copy = await wait_for_bot_text(telegram, GROUP_ID, "Version 1", thread_id=thread)

    # The group's budget is spent: the next copy waits out a 429, and so does everything
    # queued for the group behind it.
    telegram.fail(
        "copyMessage",
        error_code=429,
        description="Too Many Requests: retry after 2",
        retry_after=2,
        chat_id=GROUP_ID,
    )
    telegram.send_private(ALICE, "held back")
    await telegram.wait_until(
        lambda: any(c.status == 429 for c in telegram.calls_to("copyMessage")), what="the 429"
    )
    typo = telegram.send_private(ALICE, "Typo hree")
    for version in (2, 3, 4):
        before = processed(desk)
        telegram.edit_message(ALICE, words["message_id"], f"Version {version}")
        await settle(telegram, desk, before, 1)  # each edit in a batch of its own
    telegram.edit_message(ALICE, typo["message_id"], "Typo here")
    telegram.send_private(ALICE, "last words")  # queued after anything the edits queued

    await wait_for_bot_text(telegram, GROUP_ID, "last words", thread_id=thread, timeout=15)
    typo_copy = await wait_for_bot_text(telegram, GROUP_ID, "Typo", thread_id=thread)
    assert copy["text"] == "Version 4"
    assert len(edits_of(telegram, "editMessageText", GROUP_ID, copy["message_id"])) == 1
    # Edited before its copy went out: the copy shows the edit, no edit call needed.
    assert typo_copy["text"] == "Typo here"
    assert edits_of(telegram, "editMessageText", GROUP_ID, typo_copy["message_id"]) == []


async def test_an_edit_the_copy_cannot_take_is_reposted_as_a_marked_reply(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    reply = telegram.send_group(AGENT, "See you at 5 pm", thread_id=thread)
    copy = await wait_for_bot_text(telegram, ALICE, "See you at 5 pm")
    telegram.fail(
        "editMessageText",
        error_code=400,
        description="Bad Request: message can't be edited",
        chat_id=ALICE,
    )

    bold = [{"type": "bold", "offset": 11, "length": 4}]
    telegram.edit_message(GROUP_ID, reply["message_id"], "See you at 6 pm", entities=bold)

    repost = await wait_for_bot_text(telegram, ALICE, "✎ edited:")
    assert repost["text"] == "✎ edited:\nSee you at 6 pm"
    assert repost["reply_to_message"]["message_id"] == copy["message_id"]
    assert repost["entities"] == [
        {"type": "italic", "offset": 0, "length": 9},
        {"type": "bold", "offset": 21, "length": 4},
    ]
    assert copy["text"] == "See you at 5 pm"
    assert len(edits_of(telegram, "editMessageText", ALICE, copy["message_id"])) == 1


async def test_reactions_cross_both_ways_and_their_removal_too(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    words = telegram.send_private(ALICE, "Is it fixed?")
    words_copy = await wait_for_bot_text(telegram, GROUP_ID, "Is it fixed?", thread_id=thread)
    reply = telegram.send_group(AGENT, "Yes, fixed", thread_id=thread)
    reply_copy = await wait_for_bot_text(telegram, ALICE, "Yes, fixed")
    on_words, on_reply = (ALICE, words["message_id"]), (GROUP_ID, reply["message_id"])

    # Telegram sends them: the desk asked for message_reaction in allowed_updates.
    assert telegram.react(AGENT, GROUP_ID, words_copy["message_id"], "👍") is not None
    await telegram.wait_until(
        lambda: telegram.bot_reactions.get(on_words) == [{"type": "emoji", "emoji": "👍"}],
        what="the agent's 👍 on Alice's original",
    )
    # An emoji a bot may not set is skipped for the next one it may.
    assert "🦖" not in REACTION_EMOJI
    telegram.react(ALICE, ALICE, reply_copy["message_id"], "🦖", "🔥")
    await telegram.wait_until(
        lambda: telegram.bot_reactions.get(on_reply) == [{"type": "emoji", "emoji": "🔥"}],
        what="Alice's 🔥 on the agent's original",
    )

    telegram.react(ALICE, ALICE, reply_copy["message_id"])
    telegram.react(AGENT, GROUP_ID, words_copy["message_id"], "🎉")
    await telegram.wait_until(lambda: on_reply not in telegram.bot_reactions, what="removed")
    await telegram.wait_until(
        lambda: telegram.bot_reactions.get(on_words) == [{"type": "emoji", "emoji": "🎉"}],
        what="the latest reaction wins",
    )

    # The bot's own reactions come back as no update: nothing loops.
    reacted = [u for u in telegram.updates_sent if "message_reaction" in u]
    assert len(reacted) == 4
    assert len(telegram.calls_to("setMessageReaction")) == 4


async def test_outsiders_unrelayed_messages_and_custom_emoji_change_nothing(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    telegram.add_user(OUTSIDER, "Olga", "Outsider")
    telegram.set_member(GROUP_ID, OUTSIDER, "left")
    telegram.send_private(ALICE, "Any news?")
    words_copy = await wait_for_bot_text(telegram, GROUP_ID, "Any news?", thread_id=thread)
    own = telegram.send_group(AGENT, "an agent's own words", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "an agent's own words")
    confirmation = await wait_for_bot_text(telegram, ALICE, "Your ticket #")
    before = processed(desk)

    updates = [
        telegram.react(OUTSIDER, GROUP_ID, words_copy["message_id"], "👎"),
        telegram.react(AGENT, GROUP_ID, card_of(telegram, thread)["message_id"], "👍"),
        telegram.react(AGENT, GROUP_ID, own["message_id"], "👍"),
        telegram.react(ALICE, ALICE, confirmation["message_id"], "❤"),
        telegram.react(
            AGENT,
            GROUP_ID,
            words_copy["message_id"],
            {"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"},
        ),
        telegram.react(AGENT, GROUP_ID, words_copy["message_id"], {"type": "paid"}),
    ]
    assert None not in updates
    await settle(telegram, desk, before, len(updates))

    assert await stored(desk, "SELECT COUNT(*) FROM outbox WHERE purpose = 'reaction'") == 0
    assert telegram.calls_to("setMessageReaction") == []


async def test_nothing_crosses_once_the_ticket_is_closed(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    thread = await ticket_with_people(telegram)
    words = telegram.send_private(ALICE, "Still broken")
    copy = await wait_for_bot_text(telegram, GROUP_ID, "Still broken", thread_id=thread)
    telegram.send_group(AGENT, "Try again now", thread_id=thread)
    reply_copy = await wait_for_bot_text(telegram, ALICE, "Try again now")
    telegram.send_group(AGENT, "/close", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "is closed")
    before = processed(desk)

    telegram.edit_message(ALICE, words["message_id"], "Still broken, and worse")
    telegram.react(ALICE, ALICE, reply_copy["message_id"], "👍")
    await settle(telegram, desk, before, 2)

    found = "SELECT COUNT(*) FROM outbox WHERE purpose IN ('edit', 'reaction')"
    assert await stored(desk, found) == 0
    assert copy["text"] == "Still broken"


def test_the_desk_reacts_only_with_what_telegram_accepts() -> None:
    assert mirror.REACTION_EMOJI == REACTION_EMOJI
    assert mirror.mirrorable(("🦖", "👌", "🔥")) == "👌"
    assert mirror.mirrorable(()) is None
    text, entities = mirror.marked(None, [])
    assert text == "✎ edited:\n(the caption was removed)"
    assert entities == [{"type": "italic", "offset": 0, "length": 9}]
