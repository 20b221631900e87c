"""The fake Bot API server, checked with the real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    RestartingTelegram,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberMember,
    ForumTopic,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    MessageId,
    ReplyParameters,
    Update,
    WebhookInfo,
)

from bot.fake_telegram import (
    BOT_ID,
    BOT_TOKEN,
    GROUP_ID,
    MESSAGE_KINDS,
    FakeTelegram,
    Limits,
    TelegramError,
    parse_html,
)

ALICE = 1001
BOB = 1002
PLAIN_GROUP = -1001000000002


def make_bot(fake: FakeTelegram, token: str = BOT_TOKEN) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    return Bot(token, session=session)


async def close_bot(bot: Bot) -> None:
    # AiohttpSession.close() waits 250 ms for SSL transports to close; there are none on
    # 127.0.0.1, so close the underlying client session directly to keep the suite fast.
    session = bot.session
    if isinstance(session, AiohttpSession) and session._session is not None:
        await session._session.close()
    await session.close()


async def start_fake(limits: Limits | None = None) -> FakeTelegram:
    fake = FakeTelegram(limits=limits)
    fake.add_group()
    fake.add_group(PLAIN_GROUP, "Plain group", is_forum=False)
    fake.add_user(ALICE, "Alice", "Liddell", "alice")
    fake.add_user(BOB, "Bob")
    await fake.start()
    return fake


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = await start_fake()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = make_bot(fake)
    yield client
    await close_bot(client)


# --------------------------------------------------------------------------------- basics


async def test_get_me_parses(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()
    assert me.id == BOT_ID
    assert me.is_bot
    assert me.username == "topicdesk_test_bot"
    assert fake.calls_to("getMe")[0].status == 200
    assert fake.base_url.startswith("http://127.0.0.1:")


async def test_long_poll_gets_an_update_enqueued_while_waiting(
    bot: Bot, fake: FakeTelegram
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.polling, what="the long poll to arrive")
    sent = fake.send_private(ALICE, "hello there")
    updates = await poll
    assert time.monotonic() - started < 2
    assert len(updates) == 1
    assert isinstance(updates[0], Update)
    assert updates[0].message is not None
    assert updates[0].message.text == "hello there"
    assert updates[0].message.message_id == sent["message_id"]
    assert updates[0].message.chat.type == "private"

    # not confirmed yet: it comes again
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    # confirming with a higher offset drops it
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []
    assert fake.pending_updates == []
    assert len(fake.updates_sent) == 2


async def test_an_empty_long_poll_waits_its_timeout(bot: Bot, fake: FakeTelegram) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 < time.monotonic() - started < 2


async def test_a_second_get_updates_terminates_the_first(bot: Bot, fake: FakeTelegram) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.polling, what="the first poll")
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first


async def test_a_webhook_blocks_get_updates(bot: Bot, fake: FakeTelegram) -> None:
    fake.set_webhook("https://example.com/hook", pending_update_count=3)
    info = await bot.get_webhook_info()
    assert isinstance(info, WebhookInfo)
    assert info.url == "https://example.com/hook"
    assert info.pending_update_count == 3
    with pytest.raises(TelegramConflictError, match="while webhook is active"):
        await bot.get_updates(timeout=0)
    fake.send_private(ALICE, "lost")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == []
    assert (await bot.get_webhook_info()).url == ""


async def test_keep_id_redelivers_an_update_with_its_original_id(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.send_private(ALICE, "once")
    [update] = await bot.get_updates(timeout=0)
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []
    raw = fake.updates_sent[-1]
    assert fake.enqueue_update(raw, keep_id=True) == update.update_id
    [again] = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    assert again.update_id == update.update_id
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []
    assert [u["update_id"] for u in fake.updates_sent] == [update.update_id] * 2


async def test_dispatcher_long_polls_and_answers_in_the_topic(bot: Bot, fake: FakeTelegram) -> None:
    dp = Dispatcher()
    seen: list[Message] = []

    @dp.message(F.text)
    async def echo(message: Message) -> None:
        seen.append(message)
        await message.answer(f"got: {message.text}")

    thread = fake.create_topic(GROUP_ID, "Ticket 1")
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=2)
    )
    try:
        await fake.wait_until(lambda: fake.polling, what="the dispatcher to poll")
        fake.send_group(BOB, "ping", thread_id=thread)
        await fake.wait_until(
            lambda: len(fake.bot_messages(GROUP_ID, thread)) == 1, what="the echo"
        )
    finally:
        await dp.stop_polling()
        await polling
    assert [m.text for m in seen] == ["ping"]
    assert seen[0].is_topic_message
    reply = fake.bot_messages(GROUP_ID, thread)[0]
    assert reply["text"] == "got: ping"
    assert reply["message_thread_id"] == thread
    assert reply["is_topic_message"] is True
    # the human's topic creation reached the bot as a service message too
    assert fake.updates_sent[0]["message"]["forum_topic_created"]["name"] == "Ticket 1"


# --------------------------------------------------------------------------------- sending


async def test_send_message_into_a_topic(bot: Bot, fake: FakeTelegram) -> None:
    thread = fake.create_topic(GROUP_ID, "Ticket 2")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Close", callback_data="close:1")]]
    )
    sent = await bot.send_message(
        GROUP_ID,
        "<b>New</b> ticket from 👩 <i>Alice</i> &amp; co",
        parse_mode="HTML",
        message_thread_id=thread,
        reply_markup=markup,
    )
    assert isinstance(sent, Message)
    assert sent.text == "New ticket from 👩 Alice & co"
    assert sent.is_topic_message
    assert sent.message_thread_id == thread
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.forum_topic_created is not None
    assert sent.reply_to_message.message_id == thread
    assert sent.entities is not None
    # offsets are UTF-16 code units: the emoji counts two
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 3),
        ("italic", 19, 5),
    ]
    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump() == markup.model_dump()
    assert fake.bot_messages(GROUP_ID, thread)[-1]["message_id"] == sent.message_id

    explicit = await bot.send_message(
        GROUP_ID, "re", reply_parameters=ReplyParameters(message_id=sent.message_id)
    )
    assert explicit.message_thread_id == thread  # the reply's topic is inherited
    assert explicit.reply_to_message is not None
    assert explicit.reply_to_message.message_id == sent.message_id
    assert explicit.reply_to_message.reply_to_message is None

    general = await bot.send_message(GROUP_ID, "in General")
    assert general.message_thread_id is None
    assert not general.is_topic_message
    assert general.reply_to_message is None
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(GROUP_ID, "x", message_thread_id=1)


async def test_copy_message_into_a_topic(bot: Bot, fake: FakeTelegram) -> None:
    thread = fake.create_topic(GROUP_ID, "Ticket 3")
    photo = fake.send_private(
        ALICE,
        kind="photo",
        caption="my screen",
        caption_entities=[{"type": "bold", "offset": 3, "length": 6}],
        file_size=4321,
    )
    copied = await bot.copy_message(GROUP_ID, ALICE, photo["message_id"], message_thread_id=thread)
    assert isinstance(copied, MessageId)
    stored = fake.bot_messages(GROUP_ID, thread)[-1]
    assert stored["message_id"] == copied.message_id
    assert stored["photo"] == photo["photo"]
    assert stored["caption"] == "my screen"
    assert stored["caption_entities"] == [{"type": "bold", "offset": 3, "length": 6}]
    assert stored["from"]["id"] == BOT_ID

    recaptioned = await bot.copy_message(
        GROUP_ID,
        ALICE,
        photo["message_id"],
        message_thread_id=thread,
        caption="<b>hi</b>",
        parse_mode="HTML",
    )
    again = fake.chat_messages(GROUP_ID, thread)[-1]
    assert again["message_id"] == recaptioned.message_id
    assert again["caption"] == "hi"
    assert again["caption_entities"] == [{"type": "bold", "offset": 0, "length": 2}]

    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(GROUP_ID, ALICE, 999, message_thread_id=thread)
    joined = fake.send_service(GROUP_ID, ALICE)
    with pytest.raises(TelegramBadRequest, match="can't be copied"):
        await bot.copy_message(ALICE, GROUP_ID, joined["message_id"])


async def test_copy_messages_keeps_an_album_together(bot: Bot, fake: FakeTelegram) -> None:
    thread = fake.create_topic(GROUP_ID, "Ticket 4")
    first = fake.send_private(ALICE, kind="photo", media_group_id="album-1", caption="two shots")
    second = fake.send_private(ALICE, kind="photo", media_group_id="album-1")
    note = fake.send_private(ALICE, "and a note")
    ids = [first["message_id"], second["message_id"], note["message_id"]]
    copies = await bot.copy_messages(GROUP_ID, ALICE, ids, message_thread_id=thread)
    assert all(isinstance(c, MessageId) for c in copies)
    stored = fake.bot_messages(GROUP_ID, thread)
    assert [m["message_id"] for m in stored] == [c.message_id for c in copies]
    assert stored[0]["media_group_id"] == stored[1]["media_group_id"] != "album-1"
    assert "media_group_id" not in stored[2]
    assert stored[2]["text"] == "and a note"
    with pytest.raises(TelegramBadRequest, match="strictly increasing order"):
        await bot.copy_messages(GROUP_ID, ALICE, list(reversed(ids)), message_thread_id=thread)


async def test_uploads_and_media_groups(bot: Bot, fake: FakeTelegram) -> None:
    data = b"\x89PNG fake image bytes"
    sent = await bot.send_photo(ALICE, BufferedInputFile(data, filename="shot.png"), caption="here")
    assert sent.photo is not None
    assert sent.photo[-1].file_size == len(data)
    assert fake.calls_to("sendPhoto")[0].params["photo"].startswith("attach://")
    album = await bot.send_media_group(
        ALICE,
        [
            InputMediaPhoto(media=sent.photo[-1].file_id),
            InputMediaPhoto(media=sent.photo[0].file_id),
        ],
    )
    assert len(album) == 2
    assert album[0].media_group_id == album[1].media_group_id is not None
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_document(ALICE, "no-such-file")
    file = await bot.get_file(sent.photo[-1].file_id)
    assert file.file_path is not None
    assert file.file_size == len(data)


async def test_create_forum_topic_and_topic_states(bot: Bot, fake: FakeTelegram) -> None:
    topic = await bot.create_forum_topic(GROUP_ID, "Ticket #5 · Alice")
    assert isinstance(topic, ForumTopic)
    thread = topic.message_thread_id
    created = fake.chat_messages(GROUP_ID)[-1]
    assert created["message_id"] == thread
    assert created["forum_topic_created"] == {"name": "Ticket #5 · Alice", "icon_color": 7322096}
    assert fake.topics[GROUP_ID][thread].name == "Ticket #5 · Alice"
    assert fake.pending_updates == []  # the bot is not told about its own topic

    long = await bot.create_forum_topic(GROUP_ID, "x" * 200)
    assert long.name == "x" * 128

    assert await bot.edit_forum_topic(GROUP_ID, thread, name="Ticket #5 · closed")
    assert fake.topics[GROUP_ID][thread].name == "Ticket #5 · closed"
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.edit_forum_topic(GROUP_ID, thread, name="Ticket #5 · closed")
    assert await bot.close_forum_topic(GROUP_ID, thread)
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.close_forum_topic(GROUP_ID, thread)
    with pytest.raises(TelegramBadRequest, match="TOPIC_CLOSED"):
        await bot.send_message(GROUP_ID, "late", message_thread_id=thread)
    assert await bot.reopen_forum_topic(GROUP_ID, thread)
    await bot.send_message(GROUP_ID, "back", message_thread_id=thread)

    fake.delete_topic(GROUP_ID, thread)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(GROUP_ID, "gone", message_thread_id=thread)

    other = fake.create_topic(GROUP_ID, "By a human")
    fake.close_topic(GROUP_ID, other)
    assert fake.topics[GROUP_ID][other].closed
    with pytest.raises(TelegramBadRequest, match="TOPIC_CLOSED"):
        await bot.copy_message(GROUP_ID, ALICE, 1, message_thread_id=other)

    with pytest.raises(TelegramBadRequest, match="the chat is not a forum"):
        await bot.create_forum_topic(PLAIN_GROUP, "nope")
    fake.add_group(-1001000000003, "No rights", can_manage_topics=False)
    with pytest.raises(TelegramBadRequest, match="not enough rights to create a topic"):
        await bot.create_forum_topic(-1001000000003, "nope")


async def test_get_chat_and_get_chat_member_parse(bot: Bot, fake: FakeTelegram) -> None:
    group = await bot.get_chat(GROUP_ID)
    assert isinstance(group, ChatFullInfo)
    assert group.type == "supergroup"
    assert group.is_forum
    assert group.title == "Support desk"
    private = await bot.get_chat(ALICE)
    assert private.type == "private"
    assert private.username == "alice"
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(-1009999)

    me = await bot.get_chat_member(GROUP_ID, BOT_ID)
    assert isinstance(me, ChatMemberAdministrator)
    assert me.can_manage_topics
    assert me.can_delete_messages
    member = await bot.get_chat_member(GROUP_ID, ALICE)
    assert isinstance(member, ChatMemberMember)
    assert member.user.id == ALICE
    fake.set_member(GROUP_ID, BOB, "administrator")
    assert isinstance(await bot.get_chat_member(GROUP_ID, BOB), ChatMemberAdministrator)


async def test_every_incoming_kind_parses(bot: Bot, fake: FakeTelegram) -> None:
    for kind in MESSAGE_KINDS:
        fake.send_private(ALICE, kind=kind, caption="c" if kind == "photo" else None, file_size=77)
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == len(MESSAGE_KINDS)
    for kind, update in zip(MESSAGE_KINDS, updates, strict=True):
        assert update.message is not None, kind
        assert update.message.content_type == kind
        assert getattr(update.message, kind) is not None
        assert update.message.from_user is not None
        assert update.message.from_user.id == ALICE
    animation = updates[MESSAGE_KINDS.index("animation")].message
    assert animation is not None
    assert animation.document is not None
    assert animation.animation is not None
    assert animation.animation.file_size == 77

    command = fake.send_private(ALICE, "/start hello")
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]


async def test_group_messages_services_and_buttons_parse(bot: Bot, fake: FakeTelegram) -> None:
    thread = fake.create_topic(GROUP_ID, "Parse me")
    in_topic = fake.send_group(ALICE, "in a topic", thread_id=thread)
    reply = fake.send_group(BOB, kind="document", reply_to=in_topic["message_id"])
    general = fake.send_group(BOB, "general")
    fake.send_service(GROUP_ID, BOB)
    fake.send_service(
        GROUP_ID,
        ALICE,
        thread_id=thread,
        service="forum_topic_edited",
        service_data={"name": "Renamed"},
    )
    fake.send_service(GROUP_ID, ALICE, thread_id=thread, service="pinned_message")
    fake.send_service(GROUP_ID, ALICE, thread_id=thread, service="forum_topic_closed")
    query = fake.press_button(ALICE, GROUP_ID, general["message_id"], "take:1")
    updates = await bot.get_updates(timeout=0)
    messages = [u.message for u in updates if u.message is not None]

    topic_message = next(m for m in messages if m.message_id == in_topic["message_id"])
    assert topic_message.is_topic_message
    assert topic_message.message_thread_id == thread
    assert topic_message.reply_to_message is not None
    assert topic_message.reply_to_message.forum_topic_created is not None
    replied = next(m for m in messages if m.message_id == reply["message_id"])
    assert replied.message_thread_id == thread
    assert replied.reply_to_message is not None
    assert replied.reply_to_message.message_id == in_topic["message_id"]
    in_general = next(m for m in messages if m.message_id == general["message_id"])
    assert in_general.message_thread_id is None
    assert not in_general.is_topic_message
    assert any(m.new_chat_members for m in messages)
    assert any(m.forum_topic_edited for m in messages)
    assert any(m.pinned_message for m in messages)
    assert any(m.forum_topic_closed for m in messages)
    assert fake.topics[GROUP_ID][thread].name == "Renamed"
    assert fake.topics[GROUP_ID][thread].closed

    callback = updates[-1].callback_query
    assert callback is not None
    assert callback.data == "take:1"
    assert callback.id == query["id"]
    assert await bot.answer_callback_query(callback.id, text="Taken")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(callback.id)


async def test_edit_message_text(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(ALICE, "status: open")
    edited = await bot.edit_message_text(
        "status: closed", chat_id=ALICE, message_id=sent.message_id
    )
    assert isinstance(edited, Message)
    assert edited.text == "status: closed"
    assert edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message"):
        await bot.edit_message_text("status: closed", chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=9999)
    theirs = fake.send_private(ALICE, "mine")
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=theirs["message_id"])


async def test_edits_apply_to_the_bots_copies(bot: Bot, fake: FakeTelegram) -> None:
    thread = fake.create_topic(GROUP_ID, "Ticket 5")
    words = fake.send_private(
        ALICE, "order 4711", entities=[{"type": "bold", "offset": 6, "length": 4}]
    )
    photo = fake.send_private(ALICE, kind="photo", caption="my screen")
    sticker = fake.send_private(ALICE, kind="sticker")
    text_copy = await bot.copy_message(
        GROUP_ID, ALICE, words["message_id"], message_thread_id=thread
    )
    photo_copy = await bot.copy_message(
        GROUP_ID, ALICE, photo["message_id"], message_thread_id=thread
    )
    sticker_copy = await bot.copy_message(GROUP_ID, ALICE, sticker["message_id"])

    edited = await bot.edit_message_text(
        "order 4712",
        chat_id=GROUP_ID,
        message_id=text_copy.message_id,
        entities=[{"type": "italic", "offset": 0, "length": 5}],
    )
    assert isinstance(edited, Message)
    assert edited.edit_date is not None
    stored = fake.message(GROUP_ID, text_copy.message_id)
    assert stored["text"] == "order 4712"
    assert stored["entities"] == [{"type": "italic", "offset": 0, "length": 5}]

    recaptioned = await bot.edit_message_caption(
        chat_id=GROUP_ID,
        message_id=photo_copy.message_id,
        caption="my new screen",
        caption_entities=[{"type": "bold", "offset": 3, "length": 3}],
    )
    assert isinstance(recaptioned, Message)
    assert recaptioned.caption == "my new screen"
    assert recaptioned.edit_date is not None
    stored = fake.message(GROUP_ID, photo_copy.message_id)
    assert stored["caption_entities"] == [{"type": "bold", "offset": 3, "length": 3}]
    assert len(fake.sent_log) == 5  # three copies, two edits: edits spend the budget too

    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new"):
        await bot.edit_message_caption(
            chat_id=GROUP_ID,
            message_id=photo_copy.message_id,
            caption="my new screen",
            caption_entities=[{"type": "bold", "offset": 3, "length": 3}],
        )
    await bot.edit_message_caption(chat_id=GROUP_ID, message_id=photo_copy.message_id)
    assert "caption" not in fake.message(GROUP_ID, photo_copy.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_caption(chat_id=GROUP_ID, message_id=photo_copy.message_id)

    with pytest.raises(TelegramBadRequest, match="there is no caption in the message to edit"):
        await bot.edit_message_caption(
            chat_id=GROUP_ID, message_id=text_copy.message_id, caption="x"
        )
    with pytest.raises(TelegramBadRequest, match="there is no caption in the message to edit"):
        await bot.edit_message_caption(
            chat_id=GROUP_ID, message_id=sticker_copy.message_id, caption="x"
        )
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=GROUP_ID, message_id=photo_copy.message_id)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_caption(chat_id=ALICE, message_id=photo["message_id"], caption="x")
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_caption(chat_id=ALICE, message_id=9999, caption="x")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.edit_message_caption(
            chat_id=GROUP_ID, message_id=photo_copy.message_id, caption="x" * 1025
        )


async def test_a_user_edits_a_message_and_the_bot_gets_the_whole_of_it(
    bot: Bot, fake: FakeTelegram
) -> None:
    thread = fake.create_topic(GROUP_ID, "Ticket 6", notify=False)
    words = fake.send_private(ALICE, "helo")
    photo = fake.send_group(BOB, kind="photo", caption="a screen", thread_id=thread)
    first = await bot.get_updates(timeout=0)

    fake.edit_message(ALICE, words["message_id"], "hello", entities=[], date=1_700_000_100)
    fake.edit_message(
        GROUP_ID,
        photo["message_id"],
        caption="the screen",
        caption_entities=[{"type": "bold", "offset": 4, "length": 6}],
    )
    fake.edit_message(GROUP_ID, photo["message_id"], caption="")
    updates = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)

    assert [u.event_type for u in updates] == ["edited_message"] * 3
    private, in_topic, uncaptioned = (u.edited_message for u in updates)
    assert private is not None
    assert in_topic is not None
    assert uncaptioned is not None
    assert private.text == "hello"
    assert private.message_id == words["message_id"]
    assert private.edit_date == 1_700_000_100
    assert in_topic.caption == "the screen"
    assert in_topic.caption_entities is not None
    assert in_topic.caption_entities[0].type == "bold"
    assert in_topic.is_topic_message
    assert in_topic.message_thread_id == thread
    assert in_topic.photo is not None  # the whole message, not just what changed
    assert uncaptioned.caption is None
    assert fake.message(ALICE, words["message_id"])["text"] == "hello"

    sticker = fake.send_private(ALICE, kind="sticker")
    with pytest.raises(ValueError, match="has no text or caption"):
        fake.edit_message(ALICE, sticker["message_id"], "x")
    mine = await bot.send_message(ALICE, "from the bot")
    with pytest.raises(ValueError, match="through the Bot API"):
        fake.edit_message(ALICE, mine.message_id, "x")


async def test_reactions_reach_the_bot_only_where_telegram_sends_them(
    bot: Bot, fake: FakeTelegram
) -> None:
    words = fake.send_private(ALICE, "thanks!")
    in_group = fake.send_group(BOB, "hi all")
    confirmed = (await bot.get_updates(timeout=0))[-1].update_id + 1

    # Not asked for (message_reaction is off by default): Telegram makes no update at all.
    assert fake.react(ALICE, ALICE, words["message_id"], "👍") is None
    assert await bot.get_updates(offset=confirmed, timeout=0) == []

    await bot.get_updates(offset=confirmed, timeout=0, allowed_updates=["message_reaction"])
    changed = fake.react(ALICE, ALICE, words["message_id"], "❤", date=1_700_000_200)
    removed = fake.react(ALICE, ALICE, words["message_id"])
    custom = fake.react(
        BOB, GROUP_ID, in_group["message_id"], {"type": "custom_emoji", "custom_emoji_id": "5"}
    )
    updates = await bot.get_updates(offset=confirmed, timeout=0)

    assert changed is not None
    assert removed is not None
    assert custom is not None
    assert [u.event_type for u in updates] == ["message_reaction"] * 3
    first = updates[0].message_reaction
    assert first is not None
    assert first.user is not None
    assert first.user.id == ALICE
    assert first.chat.id == ALICE
    assert first.message_id == words["message_id"]
    assert int(first.date.timestamp()) == 1_700_000_200
    assert [r.model_dump()["emoji"] for r in first.old_reaction] == ["👍"]
    assert [r.model_dump()["emoji"] for r in first.new_reaction] == ["❤"]
    assert removed["old_reaction"] == [{"type": "emoji", "emoji": "❤"}]
    assert removed["new_reaction"] == []
    assert custom["new_reaction"] == [{"type": "custom_emoji", "custom_emoji_id": "5"}]
    assert fake.user_reactions[(GROUP_ID, in_group["message_id"])] == {
        BOB: [{"type": "custom_emoji", "custom_emoji_id": "5"}]
    }

    # A bot's reactions make no update, nor do reactions in a group where the bot is not
    # an administrator.
    assert fake.react(BOT_ID, ALICE, words["message_id"], "👍") is None
    fake.groups[GROUP_ID].bot_status = "member"
    assert fake.react(BOB, GROUP_ID, in_group["message_id"], "👍") is None
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == []


# --------------------------------------------------------------------------------- errors


async def test_error_shapes_map_to_aiogram_exceptions(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail(
        "sendMessage", error_code=429, description="Too Many Requests: retry after 7", retry_after=7
    )
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(ALICE, "x")
    assert retry.value.retry_after == 7
    assert fake.calls_to("sendMessage")[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert fake.too_many_requests == 0  # injected, not earned

    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(ALICE, "x" * 4097)
    await bot.send_message(ALICE, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(ALICE, "")
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Unsupported start tag"):
        await bot.send_message(ALICE, "a <ticket> b", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(4242, "x")

    fake.block_bot(ALICE)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(ALICE, "x")
    fake.block_bot(ALICE, blocked=False)

    fake.fail("sendMessage", error_code=502, description="Bad Gateway", chat_id=BOB)
    await bot.send_message(ALICE, "other chats are unaffected")
    with pytest.raises(TelegramServerError):
        await bot.send_message(BOB, "x")
    fake.fail("sendMessage", error_code=500, description="Internal Server Error: restart")
    with pytest.raises(RestartingTelegram):
        await bot.send_message(BOB, "x")
    fake.fail(
        "sendMessage",
        error_code=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=-1001234,
    )
    with pytest.raises(TelegramMigrateToChat) as migrate:
        await bot.send_message(GROUP_ID, "x")
    assert migrate.value.migrate_to_chat_id == -1001234

    fake.fail("getMe", error_code=502, description="Bad Gateway", html=True, times=2)
    with pytest.raises(ClientDecodeError):
        await bot.get_me()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/bot{BOT_TOKEN}/getMe") as response,
    ):
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "502 Bad Gateway" in await response.text()

    wrong = make_bot(fake, "123456789:AAF-wrong-token")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await wrong.get_me()
    finally:
        await close_bot(wrong)
    assert fake.calls[-1].response == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }


async def test_raw_http_shapes(fake: FakeTelegram) -> None:
    base = f"{fake.base_url}/bot{BOT_TOKEN}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/noSuchMethod") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        payload = {"chat_id": ALICE, "text": "json body", "reply_markup": {"inline_keyboard": []}}
        async with http.post(f"{base}/sendMessage", json=payload) as response:
            body = await response.json()
            assert response.status == 200
            assert body["ok"] is True
            assert body["result"]["text"] == "json body"
        async with http.get(f"{base}/sendmessage", params={"chat_id": ALICE, "text": "q"}) as r:
            assert (await r.json())["result"]["chat"]["id"] == ALICE
        async with http.post(f"{base}/getChat", data={"chat_id": str(GROUP_ID)}) as response:
            assert (await response.json())["result"]["is_forum"] is True


async def test_unknown_methods_raise_not_found(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(TelegramNotFound):
        await bot.get_forum_topic_icon_stickers()
    assert fake.calls[-1].status == 404


def test_html_checker() -> None:
    assert parse_html("<b>bold <i>both</i></b> &lt;tag&gt;") == (
        "bold both <tag>",
        [
            {"type": "bold", "offset": 0, "length": 9},
            {"type": "italic", "offset": 5, "length": 4},
        ],
    )
    text, entities = parse_html(
        '<a href="https://t.me/x">link</a><pre><code class="language-py">x = 1</code></pre>'
    )
    assert text == "linkx = 1"
    assert entities == [
        {"type": "text_link", "offset": 0, "length": 4, "url": "https://t.me/x"},
        {"type": "pre", "offset": 4, "length": 5, "language": "py"},
    ]
    assert parse_html("Tom & Jerry")[0] == "Tom & Jerry"
    assert parse_html("<pre><code>x</code></pre>")[1] == [{"type": "pre", "offset": 0, "length": 1}]
    cases = {
        "<foo>x</foo>": 'Unsupported start tag "foo" at byte offset 0',
        "é<b>x": 'Can\'t find end tag corresponding to start tag "b"',
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        "x</b>": "Unexpected end tag at byte offset 1",
        "<b": "Unclosed start tag at byte offset 0",
        '<span class="x">s</span>': 'Tag "span" must have class "tg-spoiler"',
    }
    for source, error in cases.items():
        with pytest.raises(TelegramError) as raised:
            parse_html(source)
        assert raised.value.description.startswith("Bad Request: can't parse entities: ")
        assert error in raised.value.description


# --------------------------------------------------------------------------------- limits


async def test_a_burst_to_one_group_meets_a_real_429() -> None:
    fake = await start_fake(Limits(group_per_minute=20, time_scale=10))  # 20 per 6 s
    bot = make_bot(fake)
    try:
        thread = (await bot.create_forum_topic(GROUP_ID, "Busy")).message_thread_id
        for n in range(19):
            await bot.send_message(GROUP_ID, f"m{n}", message_thread_id=thread)
        with pytest.raises(TelegramRetryAfter) as raised:
            await bot.send_message(GROUP_ID, "one too many")
        assert 1 <= raised.value.retry_after <= 6
        retry_after = raised.value.retry_after
        assert fake.calls_to("sendMessage")[-1].response == {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        }
        assert fake.too_many_requests == 1
        assert len(fake.sent_per_chat[GROUP_ID]) == 20  # the rejected call is not counted
        assert fake.max_sends_in_window(GROUP_ID, 6.0) == 20
        # other chats keep their own budgets
        await bot.send_message(ALICE, "still fine")
    finally:
        await close_bot(bot)
        await fake.stop()


async def test_bucket_mode_refills_one_send_at_a_time() -> None:
    now = [1000.0]
    fake = FakeTelegram(
        limits=Limits(group_per_minute=20, group_mode="bucket", time_scale=10),
        clock=lambda: now[0],
    )  # a bucket of 20 that refills one send every 0.3 s of the manual clock
    fake.add_group()
    await fake.start()
    bot = make_bot(fake)
    try:
        for n in range(20):
            await bot.send_message(GROUP_ID, f"m{n}")
        with pytest.raises(TelegramRetryAfter) as raised:
            await bot.send_message(GROUP_ID, "empty bucket")
        assert raised.value.retry_after == 1  # 0.3 s, rounded up to a whole second
        now[0] += 0.31
        await bot.send_message(GROUP_ID, "refilled")
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(GROUP_ID, "empty again")
        assert fake.too_many_requests == 2
        assert fake.sent_per_chat[GROUP_ID][-1] == 1000.31
    finally:
        await close_bot(bot)
        await fake.stop()


async def test_a_private_chat_allows_a_short_burst() -> None:
    fake = await start_fake(Limits(private_per_second=1, private_burst=3))
    bot = make_bot(fake)
    try:
        for n in range(3):
            await bot.send_message(ALICE, f"p{n}")
        with pytest.raises(TelegramRetryAfter) as raised:
            await bot.send_message(ALICE, "fourth")
        assert raised.value.retry_after == 1
        await bot.send_message(BOB, "another chat has its own budget")
        assert fake.too_many_requests == 1
        assert fake.sends_in_window(ALICE, 5.0) == 3
    finally:
        await close_bot(bot)
        await fake.stop()


async def test_wait_until_names_what_it_waited_for(fake: FakeTelegram) -> None:
    with pytest.raises(AssertionError, match="the impossible"):
        await fake.wait_until(lambda: False, timeout=0.05, what="the impossible")


# --------------------------------------------------------------------------------- host and port


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "::ffff:10.0.0.1", "example.com", ""]
)
def test_a_host_that_is_not_loopback_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        FakeTelegram(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost"])
def test_a_loopback_host_is_accepted(host: str) -> None:
    assert FakeTelegram(host=host).host == host


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        FakeTelegram(port=port)


async def test_a_given_free_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTelegram(host="127.0.0.1", port=port)
    await fake.start()
    bot = make_bot(fake)
    try:
        assert fake.base_url == f"http://127.0.0.1:{port}"
        assert (await bot.get_me()).id == BOT_ID
    finally:
        await close_bot(bot)
        await fake.stop()


async def test_ipv6_loopback_gets_a_bracketed_url() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with FakeTelegram(host="::1") as fake:
        assert fake.base_url.startswith("http://[::1]:")
        bot = make_bot(fake)
        try:
            assert (await bot.get_me()).id == BOT_ID
        finally:
            await close_bot(bot)
