"""A fake Telegram Bot API server that the real aiogram ``Bot`` and ``Dispatcher`` talk to.

It is an aiohttp application on ``127.0.0.1`` with a random free port (``host=`` may name
another loopback address, never anything else; ``port=`` a fixed port). aiogram is pointed at
it with ``AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))`` and then long-polls
it over real HTTP, exactly as it polls ``api.telegram.org``.

The fake keeps a small world (users, forum supergroups, topics, every message in every chat),
answers with Telegram's exact shapes and error strings (see ``/work/shared/TELEGRAM.md``),
enforces the documented rate limits with real 429s when ``Limits`` are given, and injects any
error on demand with ``fail()``.

Conventions a test writer must know:

* Message ids are per chat and increasing. In a supergroup the first id handed out is 2:
  id 1 is the chat's creation, and thread id 1 is the General topic.
* Incoming traffic (``send_private``, ``send_group``, ``send_service``, ``press_button``,
  ``create_topic``, ``close_topic``...) is stored and enqueued as an ``Update`` at once; the
  bot never receives updates for messages it sent itself (``user_id == BOT_ID``).
* Message dicts returned by the inspection helpers are the live stored objects; updates carry
  deep copies taken when they were enqueued.
* ``create_topic``, ``close_topic`` and ``reopen_topic`` act as a human admin would, so the bot
  receives the service message (forum_topic_created / _closed / _reopened) as an update; pass
  ``notify=False`` to skip it. Topics the bot creates or closes through the API send nothing.
* ``edit_message`` stores the new text or caption with ``edit_date`` and enqueues an
  ``edited_message`` update; ``react`` enqueues a ``message_reaction`` update only as Telegram
  would: when the bot listed it in ``allowed_updates``, in a group only while the bot is an
  administrator, and never for a bot's reaction (``setMessageReaction`` sends none).
* ``retry_after`` is in real seconds (ceil, at least 1), also under ``Limits.time_scale``.
* A getUpdates call is in ``calls`` from its arrival, with ``status == 0`` while it waits.
* ``Call.at`` is the fake's clock when a call arrived; ``enqueued_at[update_id]`` is the clock
  when that update was enqueued (became available to getUpdates; a replay sets it again).
* ``enqueue_update(..., keep_id=True)`` is handed out once by the next getUpdates whatever the
  offset (a replay), then dropped by the next offset above it.
* Like TDLib, createForumTopic/editForumTopic truncate names to 128 characters rather than
  refusing them; an empty name answers "Bad Request: title must be non-empty".
* parse_mode HTML is parsed (tags, entities, UTF-16 offsets, Telegram's error strings);
  Markdown modes are accepted and stored unparsed.

The package, one concern a module (``FakeTelegram`` is mixins over ``FakeState``):

* ``records``: the ids and Telegram's figures, ``Call``, ``Topic``, ``TelegramError``;
* ``html``: ``parse_html``, ``format_text`` and ``utf16_len``;
* ``params``: decoding a call's parameters;
* ``state``: ``FakeState``, all the state, and the message store;
* ``limits``: ``Limits``, the budgets and their 429s, ``fail()``;
* ``updates``: the updates queue, getUpdates and the webhook methods;
* ``world``: users, groups, topics, incoming traffic and the inspection helpers;
* ``checks``, ``chats``, ``messages``, ``forum``: the Bot API methods;
* ``server``: the aiohttp application and ``FakeTelegram``.
"""

from bot.fake_telegram.html import format_text, parse_html, utf16_len
from bot.fake_telegram.limits import SENDING_METHODS
from bot.fake_telegram.records import (
    ADMIN_ID,
    BOT_ID,
    BOT_TOKEN,
    CAPTION_KINDS,
    CONTENT_KEYS,
    GENERAL_TOPIC_ID,
    GROUP_ID,
    ICON_COLORS,
    JSON,
    LONG_POLL_MAX_TIMEOUT,
    MAX_CALLBACK_DATA_BYTES,
    MAX_CAPTION_LENGTH,
    MAX_DOWNLOAD_SIZE,
    MAX_TEXT_LENGTH,
    MAX_TOPIC_NAME_LENGTH,
    MESSAGE_KINDS,
    REACTION_EMOJI,
    Call,
    Handler,
    Limits,
    TelegramError,
    Topic,
    bad_request,
)
from bot.fake_telegram.server import FakeTelegram

__all__ = [
    "ADMIN_ID",
    "BOT_ID",
    "BOT_TOKEN",
    "CAPTION_KINDS",
    "CONTENT_KEYS",
    "GENERAL_TOPIC_ID",
    "GROUP_ID",
    "ICON_COLORS",
    "JSON",
    "LONG_POLL_MAX_TIMEOUT",
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_CAPTION_LENGTH",
    "MAX_DOWNLOAD_SIZE",
    "MAX_TEXT_LENGTH",
    "MAX_TOPIC_NAME_LENGTH",
    "MESSAGE_KINDS",
    "REACTION_EMOJI",
    "SENDING_METHODS",
    "Call",
    "FakeTelegram",
    "Handler",
    "Limits",
    "TelegramError",
    "Topic",
    "bad_request",
    "format_text",
    "parse_html",
    "utf16_len",
]
