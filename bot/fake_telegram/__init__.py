"""A fake Telegram Bot API server that the real aiogram ``Bot`` and ``Dispatcher`` talk to.

It is an aiohttp application on ``127.0.0.1`` with a random free port. aiogram is pointed at
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
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

JSON = dict[str, Any]

BOT_TOKEN = "123456789:AAF-topicdesk-test-token-0123456789ab"
BOT_ID = 123456789
GROUP_ID = -1001000000001
#: The human administrator who creates, closes and reopens topics by hand.
ADMIN_ID = 1000000001

GENERAL_TOPIC_ID = 1
ICON_COLORS: tuple[int, ...] = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_TOPIC_NAME_LENGTH = 128
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
LONG_POLL_MAX_TIMEOUT = 50

#: Every call that draws from the send budgets when ``Limits`` are given.
SENDING_METHODS: frozenset[str] = frozenset(
    {
        "sendMessage",
        "copyMessage",
        "copyMessages",
        "sendMediaGroup",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendVideoNote",
        "editMessageText",
        "editMessageReplyMarkup",
        "createForumTopic",
        "editForumTopic",
        "closeForumTopic",
        "reopenForumTopic",
    }
)

MESSAGE_KINDS: tuple[str, ...] = (
    "text",
    "photo",
    "video",
    "document",
    "audio",
    "voice",
    "video_note",
    "sticker",
    "animation",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
)
_CAPTIONED_KINDS = frozenset({"photo", "video", "document", "audio", "voice", "animation"})
#: The keys of a Message that make up its content; a message with none of them is a service one.
CONTENT_KEYS: tuple[str, ...] = (
    "text",
    "entities",
    "link_preview_options",
    "caption",
    "caption_entities",
    "show_caption_above_media",
    "has_media_spoiler",
    *MESSAGE_KINDS[1:],
)
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_FILE_PREFIX = {
    "photo": "AgACAgIAAxkBAAI",
    "video": "BAACAgIAAxkBAAI",
    "document": "BQACAgIAAxkBAAI",
    "audio": "CQACAgIAAxkBAAI",
    "voice": "AwACAgIAAxkBAAI",
    "video_note": "DQACAgIAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
    "animation": "CgACAgIAAxkBAAI",
}

_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {text}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)

# Parameters whose form values are plain strings and must never be JSON-decoded.
_TEXT_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "name",
        "title",
        "description",
        "short_description",
        "question",
        "emoji",
        "url",
        "secret_token",
        "ip_address",
        "language_code",
        "callback_query_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "icon_custom_emoji_id",
        "custom_title",
        "file_id",
        "photo",
        "document",
        "video",
        "audio",
        "voice",
        "animation",
        "sticker",
        "video_note",
        "thumbnail",
        "action",
    }
)


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass
class Limits:
    """Telegram's send budgets. ``time_scale`` divides every period (10 means 20 per 6 s)."""

    global_per_second: float = 30
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: int = 20
    group_mode: Literal["window", "bucket"] = "window"
    time_scale: float = 1.0
    #: sendMediaGroup / copyMessages count one per call by default; True counts each message.
    album_counts_each: bool = False


@dataclass
class Call:
    """One HTTP call the fake answered."""

    method: str
    params: JSON
    status: int
    response: JSON
    at: float


@dataclass
class Topic:
    """A forum topic; ``thread_id`` is the message id of its forum_topic_created message."""

    thread_id: int
    name: str
    icon_color: int
    closed: bool = False
    deleted: bool = False
    icon_custom_emoji_id: str | None = None
    created_by: int = ADMIN_ID


class TelegramError(Exception):
    """An error answer: ``{"ok": false, "error_code": N, "description": ..., "parameters"?}``."""

    def __init__(self, error_code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(text: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {text}")


# --------------------------------------------------------------------------------------------
# Internal records
# --------------------------------------------------------------------------------------------


@dataclass
class _Group:
    chat_id: int
    title: str
    is_forum: bool
    bot_status: str
    can_manage_topics: bool
    can_delete_messages: bool
    members: dict[int, str] = field(default_factory=dict)


@dataclass
class _Queued:
    update: JSON
    forced: bool = False
    handed_out: bool = False
    at: float = 0.0  # the fake's clock when it was enqueued (available to getUpdates)
    unfiltered: bool = False  # handed out whatever allowed_updates says

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])

    @property
    def kind(self) -> str:
        return next((key for key in self.update if key != "update_id"), "")


@dataclass
class _Fault:
    method: str
    error_code: int
    description: str
    parameters: JSON
    times: int
    chat_id: int | None
    html: bool


@dataclass
class _Bucket:
    capacity: float
    rate: float  # tokens per real second
    tokens: float
    stamp: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float, need: float = 1.0) -> float:
        self._refill(now)
        need = min(need, self.capacity)
        if self.tokens >= need - 1e-9:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, now: float, need: float = 1.0) -> None:
        self._refill(now)
        self.tokens -= min(need, self.capacity)


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    kind: str
    file_size: int
    content: JSON | list[JSON]  # what a message carries under ``kind``
    data: bytes | None = None
    file_path: str | None = None


# --------------------------------------------------------------------------------------------
# Text formatting: a small HTML parser with Telegram's rules and error strings
# --------------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-emoji": "custom_emoji",
    "blockquote": "blockquote",
    "tg-time": "date_time",
}
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_CHARS = re.compile(r"[^\s>/]*")
_ATTR_NAME = re.compile(r"[A-Za-z0-9_-]+")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entities(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body in _NAMED_ENTITIES:
            return _NAMED_ENTITIES[body]
        code = int(body[2:], 16) if body[1] in "xX" else int(body[1:])
        return chr(code) if 0 < code <= 0x10FFFF else match.group(0)

    return _HTML_ENTITY.sub(replace, text)


def _parse_error(text: str) -> TelegramError:
    return bad_request(f"can't parse entities: {text}")


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Parse Telegram HTML into (plain text, entities); raise Telegram's 400 on bad markup."""
    out: list[str] = []
    out16 = 0
    # (tag, start offset in UTF-16 units, attributes, byte offset of '<')
    stack: list[tuple[str, int, dict[str, str], int]] = []
    entities: list[JSON] = []
    pre_language: dict[int, str] = {}
    size = len(source)
    i = 0

    def byte_offset(pos: int) -> int:
        return len(source[:pos].encode("utf-8"))

    while i < size:
        char = source[i]
        if char == "&":
            match = _HTML_ENTITY.match(source, i)
            piece = _decode_entities(match.group(0)) if match else "&"
            out.append(piece)
            out16 += utf16_len(piece)
            i = match.end() if match else i + 1
            continue
        if char != "<":
            out.append(char)
            out16 += utf16_len(char)
            i += 1
            continue
        begin = i
        if i + 1 < size and source[i + 1] == "/":
            # an end tag
            match = _TAG_NAME_CHARS.match(source, i + 2)
            assert match is not None
            name = match.group(0).lower()
            j = match.end()
            while j < size and source[j].isspace():
                j += 1
            if j >= size or source[j] != ">":
                raise _parse_error(f"Unclosed end tag at byte offset {byte_offset(begin)}")
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {byte_offset(begin)}")
            open_tag, start16, attrs, _ = stack[-1]
            if open_tag != name:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {byte_offset(begin)}, "
                    f'expected "</{open_tag}>", found "</{name}>"'
                )
            stack.pop()
            i = j + 1
            length = out16 - start16
            if open_tag == "code" and stack and stack[-1][0] == "pre":
                # <pre><code class="language-x"> is one pre entity with a language
                language = attrs.get("class", "")
                if language.startswith("language-") and len(language) > len("language-"):
                    pre_language[stack[-1][1]] = language[len("language-") :]
                continue
            if length <= 0:
                continue
            entity: JSON = {"type": _HTML_TAGS[open_tag], "offset": start16, "length": length}
            if open_tag == "a":
                href = attrs.get("href", "")
                if not href:
                    continue
                entity["url"] = href
            elif open_tag == "pre" and start16 in pre_language:
                entity["language"] = pre_language.pop(start16)
            elif open_tag == "tg-emoji":
                entity["custom_emoji_id"] = attrs["emoji-id"]
            elif open_tag == "blockquote" and "expandable" in attrs:
                entity["type"] = "expandable_blockquote"
            elif open_tag == "tg-time":
                entity["unix_time"] = int(attrs.get("unix", "0") or 0)
                if attrs.get("format"):
                    entity["date_time_format"] = attrs["format"]
            entities.append(entity)
            continue

        # a start tag
        match = _TAG_NAME_CHARS.match(source, i + 1)
        assert match is not None
        name = match.group(0).lower()
        j = match.end()
        if j >= size:
            raise _parse_error(f"Unclosed start tag at byte offset {byte_offset(begin)}")
        if name not in _HTML_TAGS:
            raise _parse_error(
                f'Unsupported start tag "{match.group(0)}" at byte offset {byte_offset(begin)}'
            )
        tag_attrs: dict[str, str] = {}
        while True:
            while j < size and source[j].isspace():
                j += 1
            if j >= size:
                raise _parse_error(f"Unclosed start tag at byte offset {byte_offset(begin)}")
            if source[j] == ">":
                j += 1
                break
            attr = _ATTR_NAME.match(source, j)
            if attr is None:
                raise _parse_error(
                    f'Empty attribute name in the tag "{name}" at byte offset {byte_offset(begin)}'
                )
            attr_name = attr.group(0).lower()
            j = attr.end()
            while j < size and source[j].isspace():
                j += 1
            if j < size and source[j] == "=":
                j += 1
                while j < size and source[j].isspace():
                    j += 1
                if j >= size:
                    raise _parse_error(f"Unclosed start tag at byte offset {byte_offset(begin)}")
                if source[j] in "\"'":
                    quote = source[j]
                    end = source.find(quote, j + 1)
                    if end < 0:
                        raise _parse_error(
                            f"Unclosed start tag at byte offset {byte_offset(begin)}"
                        )
                    value = source[j + 1 : end]
                    j = end + 1
                else:
                    value_start = j
                    while j < size and not source[j].isspace() and source[j] != ">":
                        j += 1
                    value = source[value_start:j]
                tag_attrs[attr_name] = _decode_entities(value)
            else:
                tag_attrs[attr_name] = ""
        if name == "span" and tag_attrs.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(begin)}'
            )
        if name == "tg-emoji" and not tag_attrs.get("emoji-id"):
            raise _parse_error(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {byte_offset(begin)}'
            )
        stack.append((name, out16, tag_attrs, byte_offset(begin)))
        i = j

    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _strip_text(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Trim surrounding whitespace as Telegram does and move the entities along."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead16 = utf16_len(text[: len(text) - len(text.lstrip())])
    total16 = utf16_len(stripped)
    kept: list[JSON] = []
    for entity in entities:
        start = max(0, int(entity["offset"]) - lead16)
        end = min(total16, int(entity["offset"]) + int(entity["length"]) - lead16)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def format_text(
    text: str, parse_mode: str | None, entities: list[JSON] | None
) -> tuple[str, list[JSON]]:
    """Apply parse_mode (HTML is parsed; Markdown modes are stored as sent) or explicit entities."""
    mode = (parse_mode or "").lower()
    if entities:
        plain, found = text, [dict(e) for e in entities]
    elif mode in {"", "none"}:
        plain, found = text, []
    elif mode == "html":
        plain, found = parse_html(text)
    elif mode in {"markdown", "markdownv2"}:
        plain, found = text, []
    else:
        raise bad_request("unsupported parse_mode")
    return _strip_text(plain, found)


def _command_entities(text: str) -> list[JSON]:
    match = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text)
    if not match:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))}]


# --------------------------------------------------------------------------------------------
# Parameter decoding
# --------------------------------------------------------------------------------------------


def _decode_form_value(key: str, value: str) -> Any:
    """Form values are strings; aiogram JSON-encodes everything that is not a string."""
    if key in _TEXT_PARAMS:
        return value
    if key in {"chat_id", "from_chat_id"}:
        try:
            return int(value)
        except ValueError:
            return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if isinstance(decoded, float) and not math.isfinite(decoded):
        return value
    return decoded


def _int_param(params: JSON, name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise bad_request(f'parameter "{name}" is required')
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    raise bad_request(f'field "{name}" must be of type Integer')


def _required_int(params: JSON, name: str) -> int:
    value = _int_param(params, name, required=True)
    assert value is not None
    return value


def _str_param(params: JSON, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _bool_param(params: JSON, name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1"}
    return bool(value)


def _json_param(params: JSON, name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"can't parse {name} JSON object") from exc
    return value


def _entities_param(params: JSON, name: str) -> list[JSON] | None:
    value = _json_param(params, name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(e, dict) and {"type", "offset", "length"} <= e.keys() for e in value
    ):
        raise bad_request(f"can't parse {name} JSON object")
    return [dict(e) for e in value]


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

Handler = Callable[[JSON], Any]


class FakeTelegram:
    """A fake Bot API server with a small world of users, forum groups, topics and messages."""

    def __init__(
        self,
        token: str = BOT_TOKEN,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` stamps calls and sends and drives the budgets; tests of the limits may
        pass a manual one."""
        self.token = token
        self.limits = limits
        self.clock = clock
        self.base_url = ""
        self.bot_user: JSON = {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "TopicDesk",
            "username": "topicdesk_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

        # the world
        self.users: dict[int, JSON] = {}
        self.groups: dict[int, _Group] = {}
        self.blocked: set[int] = set()
        self.topics: dict[int, dict[int, Topic]] = {}
        self.reply_markups: dict[tuple[int, int], JSON] = {}
        self.callback_answers: dict[str, JSON] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook_url: str | None = None
        self._webhook_pending = 0
        self._messages: dict[int, dict[int, JSON]] = {}
        self._last_message_id: dict[int, int] = {}
        self._callbacks: dict[str, JSON] = {}
        self._files: dict[str, _File] = {}
        self._file_paths: dict[str, str] = {}
        self._file_seq = itertools.count(1)
        self._poll_seq = itertools.count(5000000000000000001)
        self._callback_seq = itertools.count(4400000000000000001)
        self._album_seq = itertools.count(13000000000000001)
        self.add_user(ADMIN_ID, "Desk", "Admin", username="desk_admin")

        # updates
        self.updates_sent: list[JSON] = []
        #: update_id -> the fake's clock when it was enqueued (became available to getUpdates)
        self.enqueued_at: dict[int, float] = {}
        self._queue: list[_Queued] = []
        self._next_update_id = 1
        self._allowed_updates: list[str] | None = None
        self._wakeup = asyncio.Event()
        self._active_poll: int | None = None
        self._poll_counter = itertools.count(1)
        self._superseded: set[int] = set()
        self._stopping = False

        # inspection, faults and budgets
        self.calls: list[Call] = []
        self.too_many_requests = 0
        self.sent_times: list[float] = []
        self.sent_per_chat: dict[int, list[float]] = {}
        self.sent_log: list[tuple[float, str, int]] = []
        self._faults: list[_Fault] = []
        self._global_bucket: _Bucket | None = None
        self._chat_buckets: dict[int, _Bucket] = {}

        self._runner: web.AppRunner | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in self._method_table().items():
            self._methods[name.lower()] = (name, handler)

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------- the world

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str = "en",
    ) -> JSON:
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self.users[user_id] = user
        return user

    def add_group(
        self,
        chat_id: int = GROUP_ID,
        title: str = "Support desk",
        *,
        is_forum: bool = True,
        bot_status: str = "administrator",
        can_manage_topics: bool = True,
        can_delete_messages: bool = True,
    ) -> JSON:
        if chat_id >= 0:
            raise ValueError("a group's chat id is negative")
        if bot_status not in {"administrator", "member", "left", "kicked"}:
            raise ValueError(f"unsupported bot_status {bot_status!r}")
        self.groups[chat_id] = _Group(
            chat_id, title, is_forum, bot_status, can_manage_topics, can_delete_messages
        )
        self.topics.setdefault(chat_id, {})
        self._messages.setdefault(chat_id, {})
        self._last_message_id.setdefault(chat_id, 1)
        return self._chat_object(chat_id)

    def set_member(self, chat_id: int, user_id: int, status: str = "administrator") -> None:
        """Set a user's status in a group: creator, administrator, member, left or kicked."""
        if status not in {"creator", "administrator", "member", "left", "kicked"}:
            raise ValueError(f"unsupported status {status!r}")
        self._group(chat_id).members[user_id] = status

    def create_topic(
        self,
        chat_id: int,
        name: str,
        *,
        icon_color: int = ICON_COLORS[0],
        by: int = ADMIN_ID,
        notify: bool = True,
    ) -> int:
        """Create a topic as a human admin would; the bot gets the service message's update."""
        group = self._group(chat_id)
        if not group.is_forum:
            raise ValueError(f"chat {chat_id} is not a forum")
        message = self._create_topic(chat_id, name, icon_color, None, self._user(by))
        if notify:
            self._enqueue_message(chat_id, message)
        return int(message["message_id"])

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Delete a topic; later sends there fail "Bad Request: message thread not found"."""
        self._topic(chat_id, thread_id).deleted = True

    def close_topic(
        self, chat_id: int, thread_id: int, *, by: int = ADMIN_ID, notify: bool = True
    ) -> None:
        """Close a topic by hand (later sends fail "TOPIC_CLOSED"); enqueues forum_topic_closed."""
        topic = self._topic(chat_id, thread_id)
        topic.closed = True
        message = self._service_message(
            chat_id, self._user(by), {"forum_topic_closed": {}}, thread_id
        )
        if notify:
            self._enqueue_message(chat_id, message)

    def reopen_topic(
        self, chat_id: int, thread_id: int, *, by: int = ADMIN_ID, notify: bool = True
    ) -> None:
        topic = self._topic(chat_id, thread_id)
        topic.closed = False
        message = self._service_message(
            chat_id, self._user(by), {"forum_topic_reopened": {}}, thread_id
        )
        if notify:
            self._enqueue_message(chat_id, message)

    def block_bot(self, user_id: int, blocked: bool = True) -> None:
        """Sends to that user answer 403 "Forbidden: bot was blocked by the user"."""
        if blocked:
            self.blocked.add(user_id)
        else:
            self.blocked.discard(user_id)

    def set_webhook(self, url: str, pending_update_count: int = 0) -> None:
        """With a webhook set, getUpdates answers 409."""
        self.webhook_url = url or None
        self._webhook_pending = pending_update_count

    # ----------------------------------------------------------------------------- incoming

    def send_private(
        self,
        user_id: int,
        text: str | None = None,
        *,
        kind: str = "text",
        caption: str | None = None,
        entities: list[JSON] | None = None,
        caption_entities: list[JSON] | None = None,
        media_group_id: str | None = None,
        reply_to: int | None = None,
        date: int | None = None,
        file_size: int | None = None,
    ) -> JSON:
        """A user writes to the bot in private and the update is enqueued.

        ``kind`` is one of MESSAGE_KINDS. For media kinds ``text`` is used as the caption when
        ``caption`` is None; for a poll it is the question, for a venue its title. A text that
        starts with a /command gets its bot_command entity unless ``entities`` are given."""
        sender = self._user(user_id)
        self._messages.setdefault(user_id, {})
        content = self._incoming_content(
            kind, text, caption, entities, caption_entities, file_size, sender
        )
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        reply = self._incoming_reply(user_id, reply_to)
        message = self._new_message(user_id, sender, content, reply=reply, date=date)
        if user_id != BOT_ID:
            self._enqueue_message(user_id, message)
        return message

    def send_group(
        self,
        user_id: int,
        text: str | None = None,
        *,
        chat_id: int = GROUP_ID,
        thread_id: int | None = None,
        kind: str = "text",
        caption: str | None = None,
        entities: list[JSON] | None = None,
        caption_entities: list[JSON] | None = None,
        media_group_id: str | None = None,
        reply_to: int | None = None,
        date: int | None = None,
        file_size: int | None = None,
        from_bot: bool = False,
    ) -> JSON:
        """Someone writes in a group (in a topic with ``thread_id``, else in General).

        ``from_bot=True`` marks the sender ``is_bot`` (another bot, e.g. an anonymous admin's
        GroupAnonymousBot); the update is still delivered. ``user_id == BOT_ID`` stores a
        message as if the bot sent it, without an update.
        """
        group = self._group(chat_id)
        sender = dict(self.bot_user) if user_id == BOT_ID else dict(self._user(user_id))
        if from_bot:
            sender["is_bot"] = True
            sender.pop("language_code", None)
        content = self._incoming_content(
            kind, text, caption, entities, caption_entities, file_size, sender
        )
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        reply = self._incoming_reply(chat_id, reply_to)
        if thread_id is None and reply is not None and reply.get("is_topic_message"):
            thread_id = int(reply["message_thread_id"])
        if thread_id is not None and group.is_forum:
            topic = self._topic(chat_id, thread_id)
            if topic.deleted:
                raise ValueError(f"topic {thread_id} was deleted")
        message = self._new_message(
            chat_id,
            self._sender_object(sender),
            content,
            thread_id=thread_id,
            reply=reply,
            date=date,
        )
        if user_id != BOT_ID:
            self._enqueue_message(chat_id, message)
        return message

    def send_service(
        self,
        chat_id: int,
        user_id: int,
        *,
        thread_id: int | None = None,
        service: str = "new_chat_members",
        service_data: Any = None,
    ) -> JSON:
        """A service message: new_chat_members, left_chat_member, new_chat_title,
        forum_topic_created (creates a topic; ``service_data={"name": ...}``),
        forum_topic_edited (``service_data={"name": ...}``), forum_topic_closed,
        forum_topic_reopened, pinned_message (the last content message there, or
        ``service_data=message_id``), general_forum_topic_hidden/unhidden; any other
        ``service`` is stored as ``{service: service_data}``."""
        user = self._user(user_id)
        if service == "forum_topic_created":
            data = service_data or {}
            number = len(self.topics.get(chat_id, {})) + 1
            message = self._create_topic(
                chat_id,
                str(data.get("name", f"Topic {number}")),
                int(data.get("icon_color", ICON_COLORS[0])),
                data.get("icon_custom_emoji_id"),
                user,
            )
            self._enqueue_message(chat_id, message)
            return message
        payload: Any
        if service == "new_chat_members":
            payload = [user]
        elif service == "left_chat_member":
            payload = user
        elif service == "new_chat_title":
            payload = service_data or self._group(chat_id).title
            self._group(chat_id).title = str(payload)
        elif service == "forum_topic_edited":
            topic = self._topic(chat_id, self._need_thread(thread_id))
            payload = dict(service_data or {"name": topic.name})
            topic.name = str(payload.get("name", topic.name))
            if "icon_custom_emoji_id" in payload:
                topic.icon_custom_emoji_id = payload["icon_custom_emoji_id"] or None
        elif service in {"forum_topic_closed", "forum_topic_reopened"}:
            topic = self._topic(chat_id, self._need_thread(thread_id))
            topic.closed = service == "forum_topic_closed"
            payload = {}
        elif service in {"general_forum_topic_hidden", "general_forum_topic_unhidden"}:
            payload = {}
        elif service == "pinned_message":
            payload = self._pinned_target(chat_id, thread_id, service_data)
        else:
            if service_data is None:
                raise ValueError(f"unknown service {service!r}: pass service_data")
            payload = service_data
        message = self._service_message(chat_id, user, {service: payload}, thread_id)
        if user_id != BOT_ID:
            self._enqueue_message(chat_id, message)
        return message

    def press_button(self, user_id: int, chat_id: int, message_id: int, data: str) -> JSON:
        """The user presses an inline button; enqueues a callback_query update."""
        message = self._message(chat_id, message_id)
        query: JSON = {
            "id": str(next(self._callback_seq)),
            "from": self._user(user_id),
            "message": copy.deepcopy(message),
            "chat_instance": str(abs(chat_id) * 7919 % 10**18 + 1),
            "data": data,
        }
        self._callbacks[query["id"]] = query
        self.enqueue_update({"callback_query": copy.deepcopy(query)})
        return query

    def enqueue_update(
        self, update: JSON, *, keep_id: bool = False, queued_before_filter: bool = False
    ) -> int:
        """Enqueue a raw update. ``keep_id=True`` redelivers an update with its original
        update_id: it is handed out once by the next getUpdates whatever the offset, as
        Telegram does when it replays unconfirmed updates. ``queued_before_filter=True``
        hands it out whatever ``allowed_updates`` says, as Telegram does with an update
        queued before the bot changed them (a kind the bot may not even know)."""
        update = copy.deepcopy(update)
        if keep_id:
            update_id = int(update["update_id"])
        else:
            update_id = self._next_update_id
            update = {
                "update_id": update_id,
                **{k: v for k, v in update.items() if k != "update_id"},
            }
        self._next_update_id = max(self._next_update_id, update_id + 1)
        at = self.clock()
        self.enqueued_at[update_id] = at
        # Kept sorted by update_id; an insort, not a sort per call, so a backlog of tens of
        # thousands of updates builds in linear time (ties keep their order, as before).
        queued = _Queued(update, forced=keep_id, at=at, unfiltered=queued_before_filter)
        bisect.insort_right(self._queue, queued, key=lambda q: q.update_id)
        self._notify()
        return update_id

    @property
    def polling(self) -> bool:
        """True while a getUpdates call is waiting."""
        return self._active_poll is not None

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates still queued (not yet confirmed by an offset)."""
        return [q.update for q in self._queue]

    # ----------------------------------------------------------------------------- inspection

    def calls_to(self, method: str) -> list[Call]:
        wanted = method.lower()
        return [c for c in self.calls if c.method.lower() == wanted]

    def chat_messages(self, chat_id: int, thread_id: int | None = None) -> list[JSON]:
        """Every message in the chat in order; with ``thread_id`` only that topic's
        (``thread_id=1`` means the General topic)."""
        messages = list(self._messages.get(chat_id, {}).values())
        if thread_id is None:
            return messages
        if thread_id == GENERAL_TOPIC_ID:
            return [m for m in messages if not m.get("is_topic_message")]
        return [m for m in messages if m.get("message_thread_id") == thread_id]

    def bot_messages(self, chat_id: int, thread_id: int | None = None) -> list[JSON]:
        return [
            m
            for m in self.chat_messages(chat_id, thread_id)
            if m.get("from", {}).get("id") == BOT_ID
        ]

    def message(self, chat_id: int, message_id: int) -> JSON:
        """The stored message (KeyError if there is none)."""
        return self._message(chat_id, message_id)

    def sends_in_window(
        self, chat_id: int | None, window: float, *, at: float | None = None
    ) -> int:
        """Accepted sends (to ``chat_id``, or to all chats with None) in the ``window`` real
        seconds up to ``at`` (default now)."""
        times = self.sent_times if chat_id is None else self.sent_per_chat.get(chat_id, [])
        end = self.clock() if at is None else at
        return bisect.bisect_right(times, end) - bisect.bisect_right(times, end - window)

    def max_sends_in_window(self, chat_id: int | None, window: float) -> int:
        """The most accepted sends that any sliding ``window`` (real seconds) held."""
        times = self.sent_times if chat_id is None else self.sent_per_chat.get(chat_id, [])
        best = 0
        for index, start in enumerate(times):
            best = max(best, bisect.bisect_left(times, start + window) - index)
        return best

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,
        what: str = "",
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if predicate():
                return
            if loop.time() >= deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'it'}")
            await asyncio.sleep(0.01)

    # ----------------------------------------------------------------------------- faults

    def fail(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
        html: bool = False,
    ) -> None:
        """The next ``times`` calls of ``method`` (to ``chat_id`` if given) answer this error.
        ``html=True`` answers an nginx-style HTML page with status ``error_code``."""
        parameters: JSON = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        self._faults.append(
            _Fault(method.lower(), error_code, description, parameters, times, chat_id, html)
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    # ----------------------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        at = self.clock()
        raw_method = request.match_info["method"]
        try:
            params, files = await self._read_params(request)
        except TelegramError as exc:
            return self._answer(raw_method, {}, exc.error_code, exc.body(), at)
        params["_files"] = files
        logged = {k: v for k, v in params.items() if k != "_files"}
        for key, data in files.items():
            logged[key] = {"upload": True, "size": len(data)}

        if request.match_info["token"] != self.token:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return self._answer(raw_method, logged, 401, body, at)
        known = self._methods.get(raw_method.lower())
        if known is None:
            body = {"ok": False, "error_code": 404, "description": "Not Found"}
            return self._answer(raw_method, logged, 404, body, at)
        method, handler = known

        fault = self._take_fault(method, params)
        if fault is not None:
            if fault.html:
                page = _BAD_GATEWAY_PAGE.format(code=fault.error_code, text=fault.description)
                record: JSON = {
                    "ok": False,
                    "error_code": fault.error_code,
                    "description": fault.description,
                    "html": page,
                }
                self.calls.append(Call(method, logged, fault.error_code, record, at))
                return web.Response(status=fault.error_code, text=page, content_type="text/html")
            error = TelegramError(fault.error_code, fault.description, fault.parameters or None)
            return self._answer(method, logged, fault.error_code, error.body(), at)

        pending: Call | None = None
        try:
            if method == "getUpdates":
                # A long poll is in ``calls`` from its arrival, with status 0 while it waits.
                pending = Call(method, logged, 0, {}, at)
                self.calls.append(pending)
                result = await self._get_updates(params, request)
            else:
                result = handler(params)
            body = {"ok": True, "result": result}
            status = 200
        except TelegramError as exc:
            body, status = exc.body(), exc.error_code
        return self._answer(method, logged, status, body, at, pending)

    def _answer(
        self,
        method: str,
        params: JSON,
        status: int,
        body: JSON,
        at: float,
        pending: Call | None = None,
    ) -> web.Response:
        text = json.dumps(body, ensure_ascii=False)
        if pending is None:
            self.calls.append(Call(method, params, status, json.loads(text), at))
        else:
            pending.status, pending.response = status, json.loads(text)
        return web.Response(status=status, text=text, content_type="application/json")

    async def _read_params(self, request: web.Request) -> tuple[JSON, dict[str, bytes]]:
        params: JSON = {}
        files: dict[str, bytes] = {}
        for key, value in request.query.items():
            params[key] = _decode_form_value(key, value)
        if request.method not in {"POST", "PUT"} or not request.can_read_body:
            return params, files
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise bad_request("can't parse JSON encoded request") from exc
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            for key, value in body.items():
                params[key] = _decode_form_value(key, value) if isinstance(value, str) else value
            return params, files
        form = await request.post()
        for key, field_value in form.items():
            if isinstance(field_value, web.FileField):
                files[key] = field_value.file.read()
            else:
                params[key] = _decode_form_value(key, str(field_value))
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        file_id = self._file_paths.get(request.match_info["path"])
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        stored = self._files[file_id]
        data = stored.data if stored.data is not None else bytes(min(stored.file_size, 1 << 20))
        return web.Response(body=data, content_type="application/octet-stream")

    def _take_fault(self, method: str, params: JSON) -> _Fault | None:
        for fault in self._faults:
            if fault.method != method.lower():
                continue
            if fault.chat_id is not None:
                try:
                    target = int(params.get("chat_id"))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if target != fault.chat_id:
                    continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _method_table(self) -> dict[str, Handler]:
        media = {
            f"send{_type_name(kind)}": self._media_sender(kind)
            for kind in (
                "photo",
                "document",
                "video",
                "audio",
                "voice",
                "animation",
                "sticker",
                "video_note",
            )
        }
        return {
            "getMe": lambda _p: self.bot_user,
            "getUpdates": lambda _p: None,  # served asynchronously by _get_updates
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "sendMessage": self._send_message,
            "copyMessage": self._copy_message,
            "copyMessages": self._copy_messages,
            "sendMediaGroup": self._send_media_group,
            **media,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "createForumTopic": self._create_forum_topic,
            "editForumTopic": self._edit_forum_topic,
            "closeForumTopic": self._close_forum_topic,
            "reopenForumTopic": self._reopen_forum_topic,
            "deleteForumTopic": self._delete_forum_topic,
            "getFile": self._get_file,
        }

    # ----------------------------------------------------------------------------- updates

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _allowed(self, kind: str) -> bool:
        if not self._allowed_updates:
            return kind not in _DEFAULT_EXCLUDED_UPDATES
        return kind in self._allowed_updates

    async def _get_updates(self, params: JSON, request: web.Request) -> list[JSON]:
        if self.webhook_url:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset") or 0
        limit = min(100, max(1, _int_param(params, "limit") or 100))
        timeout = min(LONG_POLL_MAX_TIMEOUT, max(0, _int_param(params, "timeout") or 0))
        allowed = _json_param(params, "allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]

        poll = next(self._poll_counter)
        if self._active_poll is not None:
            self._superseded.add(self._active_poll)
            self._notify()
        self._active_poll = poll
        try:
            self._confirm(offset)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                if poll in self._superseded:
                    raise TelegramError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                transport = request.transport
                if self._stopping or transport is None or transport.is_closing():
                    return []
                batch = self._select(offset, limit)
                remaining = deadline - loop.time()
                if batch or remaining <= 0:
                    return self._hand_out(batch)
                event = self._wakeup
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, 0.5))
        finally:
            self._superseded.discard(poll)
            if self._active_poll == poll:
                self._active_poll = None

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            self._queue = self._queue[offset:]
            return
        if offset > 0:
            # The queue is sorted by update_id: only its head can fall below the offset.
            cut = bisect.bisect_left(self._queue, offset, key=lambda q: q.update_id)
            if cut:
                kept = [q for q in self._queue[:cut] if q.forced and not q.handed_out]
                self._queue = kept + self._queue[cut:]

    def _select(self, offset: int, limit: int) -> list[_Queued]:
        chosen: list[_Queued] = []
        for queued in self._queue:
            if not (queued.update_id >= offset or (queued.forced and not queued.handed_out)):
                continue
            if not queued.unfiltered and not self._allowed(queued.kind):
                continue
            chosen.append(queued)
            if len(chosen) >= limit:
                break
        return chosen

    def _hand_out(self, batch: list[_Queued]) -> list[JSON]:
        updates = []
        for queued in batch:
            queued.handed_out = True
            self.updates_sent.append(queued.update)
            updates.append(queued.update)
        return updates

    def _enqueue_message(self, chat_id: int, message: JSON) -> None:
        if chat_id < 0 and self.groups[chat_id].bot_status in {"left", "kicked"}:
            return
        self.enqueue_update({"message": message})

    # ----------------------------------------------------------------------------- budgets

    def _admit(self, method: str, chat_id: int, count: int = 1) -> None:
        """Count an accepted send, or answer 429 if a limit would be exceeded."""
        now = self.clock()
        limits = self.limits
        if limits is not None:
            need = count if limits.album_counts_each else 1
            scale = limits.time_scale
            if self._global_bucket is None:
                capacity = max(1.0, float(limits.global_per_second))
                self._global_bucket = _Bucket(
                    capacity, limits.global_per_second * scale, capacity, now
                )
            waits = [self._global_bucket.wait(now, need)]
            chat_bucket = self._chat_budget(chat_id, now)
            if chat_bucket is not None:
                waits.append(chat_bucket.wait(now, need))
            else:
                waits.append(
                    _window_wait(
                        self.sent_per_chat.get(chat_id, []),
                        now,
                        60.0 / scale,
                        limits.group_per_minute,
                        need,
                    )
                )
            wait = max(waits)
            if wait > 0:
                self.too_many_requests += 1
                retry_after = max(1, math.ceil(wait))
                raise TelegramError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            self._global_bucket.take(now, need)
            if chat_bucket is not None:
                chat_bucket.take(now, need)
        self.sent_times.append(now)
        self.sent_per_chat.setdefault(chat_id, []).append(now)
        self.sent_log.append((now, method, chat_id))

    def _chat_budget(self, chat_id: int, now: float) -> _Bucket | None:
        """The token bucket for a private chat, or for a group in "bucket" mode."""
        limits = self.limits
        assert limits is not None
        bucket = self._chat_buckets.get(chat_id)
        if bucket is not None:
            return bucket
        if chat_id > 0:
            capacity = float(max(1, limits.private_burst))
            rate = limits.private_per_second * limits.time_scale
        elif limits.group_mode == "bucket":
            capacity = float(limits.group_per_minute)
            rate = limits.group_per_minute / 60.0 * limits.time_scale
        else:
            return None
        bucket = _Bucket(capacity, rate, capacity, now)
        self._chat_buckets[chat_id] = bucket
        return bucket

    # ----------------------------------------------------------------------------- lookups

    def _user(self, user_id: int) -> JSON:
        if user_id == BOT_ID:
            return self._sender_object(self.bot_user)
        try:
            return self.users[user_id]
        except KeyError:
            raise ValueError(f"unknown user {user_id}: call add_user() first") from None

    def _group(self, chat_id: int) -> _Group:
        try:
            return self.groups[chat_id]
        except KeyError:
            raise ValueError(f"unknown group {chat_id}: call add_group() first") from None

    def _topic(self, chat_id: int, thread_id: int) -> Topic:
        try:
            return self.topics[chat_id][thread_id]
        except KeyError:
            raise ValueError(f"no topic {thread_id} in chat {chat_id}") from None

    def _message(self, chat_id: int, message_id: int) -> JSON:
        try:
            return self._messages[chat_id][message_id]
        except KeyError:
            raise KeyError(f"no message {message_id} in chat {chat_id}") from None

    @staticmethod
    def _need_thread(thread_id: int | None) -> int:
        if thread_id is None:
            raise ValueError("this service message needs thread_id")
        return thread_id

    @staticmethod
    def _sender_object(user: JSON) -> JSON:
        keys: tuple[str, ...] = ("id", "is_bot", "first_name", "last_name", "username")
        if not user.get("is_bot"):
            keys = (*keys, "language_code")
        return {k: user[k] for k in keys if k in user}

    def _chat_object(self, chat_id: int) -> JSON:
        if chat_id > 0:
            user = self.bot_user if chat_id == BOT_ID else self._user(chat_id)
            chat: JSON = {"id": chat_id}
            for key in ("first_name", "last_name", "username"):
                if key in user:
                    chat[key] = user[key]
            chat["type"] = "private"
            return chat
        group = self._group(chat_id)
        chat = {"id": chat_id, "title": group.title, "type": "supergroup"}
        if group.is_forum:
            chat["is_forum"] = True
        return chat

    def _pinned_target(self, chat_id: int, thread_id: int | None, data: Any) -> JSON:
        if isinstance(data, int):
            return _without_reply(self._message(chat_id, data))
        for message in reversed(self.chat_messages(chat_id, thread_id)):
            if _is_content(message):
                return _without_reply(message)
        raise ValueError("nothing to pin")

    # ----------------------------------------------------------------------------- messages

    def _alloc_message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def _new_message(
        self,
        chat_id: int,
        sender: JSON,
        content: JSON,
        *,
        thread_id: int | None = None,
        reply: JSON | None = None,
        date: int | None = None,
        service: bool = False,
    ) -> JSON:
        """Build and store a message. In a forum topic it carries message_thread_id and
        is_topic_message, and (unless an explicit reply or a service message) replies to the
        topic's forum_topic_created message, as Telegram does."""
        message_id = self._alloc_message_id(chat_id)
        message: JSON = {
            "message_id": message_id,
            "from": sender,
            "chat": self._chat_object(chat_id),
            "date": int(time.time()) if date is None else date,
        }
        in_topic = (
            thread_id is not None
            and chat_id < 0
            and self.groups[chat_id].is_forum
            and thread_id in self.topics.get(chat_id, {})
        )
        if in_topic:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply is not None:
            message["reply_to_message"] = _without_reply(reply)
        elif in_topic and not service:
            assert thread_id is not None
            root = self._messages[chat_id].get(thread_id)
            if root is not None:
                message["reply_to_message"] = _without_reply(root)
        message.update(content)
        self._messages.setdefault(chat_id, {})[message_id] = message
        return message

    def _service_message(
        self, chat_id: int, sender: JSON, content: JSON, thread_id: int | None
    ) -> JSON:
        return self._new_message(
            chat_id, self._sender_object(sender), content, thread_id=thread_id, service=True
        )

    def _create_topic(
        self,
        chat_id: int,
        name: str,
        icon_color: int,
        icon_custom_emoji_id: str | None,
        creator: JSON,
    ) -> JSON:
        message_id = self._alloc_message_id(chat_id)
        self.topics.setdefault(chat_id, {})[message_id] = Topic(
            message_id,
            name,
            icon_color,
            icon_custom_emoji_id=icon_custom_emoji_id,
            created_by=int(creator["id"]),
        )
        created: JSON = {"name": name, "icon_color": icon_color}
        if icon_custom_emoji_id:
            created["icon_custom_emoji_id"] = icon_custom_emoji_id
        message: JSON = {
            "message_id": message_id,
            "from": self._sender_object(creator),
            "chat": self._chat_object(chat_id),
            "date": int(time.time()),
            "message_thread_id": message_id,
            "forum_topic_created": created,
            "is_topic_message": True,
        }
        self._messages.setdefault(chat_id, {})[message_id] = message
        return message

    def _incoming_reply(self, chat_id: int, reply_to: int | None) -> JSON | None:
        if reply_to is None:
            return None
        return self._message(chat_id, reply_to)

    def _new_file(
        self,
        kind: str,
        size: int,
        content: JSON | list[JSON] | None = None,
        data: bytes | None = None,
    ) -> _File:
        number = next(self._file_seq)
        stored = _File(
            file_id=f"{_FILE_PREFIX.get(kind, 'BQACAgIAAxkBAAI')}{number:08d}fk",
            file_unique_id=f"AgAD{number:08d}",
            kind=kind,
            file_size=size,
            content=content or {},
            data=data,
        )
        self._files[stored.file_id] = stored
        return stored

    def _media_object(self, kind: str, size: int | None, data: bytes | None = None) -> Any:
        """A fresh file of ``kind`` as a message carries it (PhotoSize list for photos)."""
        if kind == "photo":
            biggest = size if size is not None else 120_000
            sizes: list[JSON] = []
            files = []
            for width, height, bytes_ in (
                (90, 67, max(1, biggest // 60)),
                (320, 240, max(1, biggest // 8)),
                (1280, 960, biggest),
            ):
                stored = self._new_file("photo", bytes_, data=data if width == 1280 else None)
                files.append(stored)
                sizes.append(
                    {
                        "file_id": stored.file_id,
                        "file_unique_id": stored.file_unique_id,
                        "file_size": bytes_,
                        "width": width,
                        "height": height,
                    }
                )
            for stored in files:
                stored.content = sizes
            return sizes
        defaults: dict[str, tuple[int, JSON]] = {
            "video": (
                2_500_000,
                {
                    "width": 1280,
                    "height": 720,
                    "duration": 5,
                    "file_name": "video.mp4",
                    "mime_type": "video/mp4",
                },
            ),
            "document": (48_000, {"file_name": "document.pdf", "mime_type": "application/pdf"}),
            "audio": (
                900_000,
                {
                    "duration": 30,
                    "performer": "Artist",
                    "title": "Song",
                    "file_name": "audio.mp3",
                    "mime_type": "audio/mpeg",
                },
            ),
            "voice": (24_000, {"duration": 3, "mime_type": "audio/ogg"}),
            "video_note": (300_000, {"length": 240, "duration": 4}),
            "sticker": (
                20_000,
                {
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                    "emoji": "🙂",
                },
            ),
            "animation": (
                400_000,
                {
                    "width": 320,
                    "height": 240,
                    "duration": 2,
                    "file_name": "animation.mp4",
                    "mime_type": "video/mp4",
                },
            ),
        }
        default_size, fields = defaults[kind]
        real_size = size if size is not None else default_size
        stored = self._new_file(kind, real_size, data=data)
        obj: JSON = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, **fields}
        obj["file_size"] = real_size
        stored.content = obj
        return obj

    def _incoming_content(
        self,
        kind: str,
        text: str | None,
        caption: str | None,
        entities: list[JSON] | None,
        caption_entities: list[JSON] | None,
        file_size: int | None,
        sender: JSON,
    ) -> JSON:
        if kind not in MESSAGE_KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(MESSAGE_KINDS)}")
        if kind == "text":
            body = "Hello" if text is None else text
            found = entities if entities is not None else _command_entities(body)
            content: JSON = {"text": body}
            if found:
                content["entities"] = [dict(e) for e in found]
            return content
        if kind in _CAPTIONED_KINDS:
            content = {kind: self._media_object(kind, file_size)}
            if kind == "animation":
                animation = content["animation"]
                content["document"] = {
                    k: animation[k]
                    for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
                }
            shown = caption if caption is not None else text
            if shown:
                content["caption"] = shown
                if caption_entities:
                    content["caption_entities"] = [dict(e) for e in caption_entities]
            return content
        if kind in {"sticker", "video_note"}:
            return {kind: self._media_object(kind, file_size)}
        location = {"latitude": 52.520008, "longitude": 13.404954}
        if kind == "location":
            return {"location": location}
        if kind == "venue":
            venue = {"location": location, "title": text or "Alexanderplatz", "address": "Berlin"}
            return {"venue": venue, "location": location}
        if kind == "contact":
            contact: JSON = {"phone_number": "+4915112345678", "first_name": sender["first_name"]}
            if "last_name" in sender:
                contact["last_name"] = sender["last_name"]
            contact["user_id"] = sender["id"]
            return {"contact": contact}
        if kind == "poll":
            return {"poll": self._poll(text or "Did this help?", ["Yes", "No"])}
        return {"dice": {"emoji": "🎲", "value": 4}}

    def _poll(self, question: str, options: list[str]) -> JSON:
        return {
            "id": str(next(self._poll_seq)),
            "question": question,
            "options": [
                {"persistent_id": str(n), "text": option, "voter_count": 0}
                for n, option in enumerate(options)
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": False,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        }

    # ----------------------------------------------------------------------------- checks

    def _chat_id(self, params: JSON, name: str = "chat_id") -> int:
        value = params.get(name)
        if value is None or value == "":
            raise bad_request(f"{name} is empty")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value)
            wanted = value.lstrip("@").lower()
            for user_id, user in self.users.items():
                if str(user.get("username", "")).lower() == wanted:
                    return user_id
        raise bad_request("chat not found")

    def _check_chat(self, chat_id: int, *, write: bool = True) -> None:
        if chat_id > 0:
            if chat_id not in self.users:
                raise bad_request("chat not found")
            return
        group = self.groups.get(chat_id)
        if group is None:
            raise bad_request("chat not found")
        if write and group.bot_status == "kicked":
            raise TelegramError(403, "Forbidden: bot was kicked from the supergroup chat")
        if write and group.bot_status == "left":
            raise TelegramError(403, "Forbidden: bot is not a member of the supergroup chat")

    def _check_thread(self, chat_id: int, thread_id: int | None) -> int | None:
        if not thread_id:
            return None
        if chat_id > 0:
            raise bad_request("message thread not found")
        group = self.groups[chat_id]
        if not group.is_forum:
            if thread_id not in self._messages.get(chat_id, {}):
                raise bad_request("message thread not found")
            return None
        topic = self.topics.get(chat_id, {}).get(thread_id)
        if thread_id == GENERAL_TOPIC_ID or topic is None or topic.deleted:
            raise bad_request("message thread not found")
        if topic.closed:
            raise bad_request("TOPIC_CLOSED")
        return thread_id

    def _check_blocked(self, chat_id: int) -> None:
        if chat_id in self.blocked:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")

    def _resolve_reply(
        self, chat_id: int, params: JSON, thread_id: int | None
    ) -> tuple[JSON | None, int | None]:
        reply_parameters = _json_param(params, "reply_parameters")
        message_id: int | None = None
        allow_without = _bool_param(params, "allow_sending_without_reply")
        if isinstance(reply_parameters, dict):
            message_id = _int_param(reply_parameters, "message_id")
            allow_without = bool(reply_parameters.get("allow_sending_without_reply"))
            other_chat = reply_parameters.get("chat_id")
            if other_chat not in (None, "") and str(other_chat) != str(chat_id):
                raise bad_request("message to be replied not found")
        else:
            message_id = _int_param(params, "reply_to_message_id")
        if not message_id:
            return None, thread_id
        target = self._messages.get(chat_id, {}).get(message_id)
        target_thread = (
            int(target["message_thread_id"])
            if target is not None and target.get("is_topic_message")
            else None
        )
        if target is None or (thread_id and target_thread != thread_id):
            if allow_without:
                return None, thread_id
            raise bad_request("message to be replied not found")
        return target, thread_id or target_thread

    def _prepare_send(self, params: JSON) -> tuple[int, int | None, JSON | None]:
        """Chat, topic and reply checks shared by every sending method."""
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        thread_id = _int_param(params, "message_thread_id") or None
        if thread_id is not None:
            self._check_thread(chat_id, thread_id)
        reply, thread_id = self._resolve_reply(chat_id, params, thread_id)
        thread_id = self._check_thread(chat_id, thread_id)
        self._check_blocked(chat_id)
        return chat_id, thread_id, reply

    def _reply_markup(self, params: JSON) -> JSON | None:
        markup = _json_param(params, "reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise bad_request("BUTTON_DATA_INVALID")
        return markup

    def _bot_message(
        self,
        chat_id: int,
        thread_id: int | None,
        reply: JSON | None,
        content: JSON,
        markup: JSON | None,
    ) -> JSON:
        message = self._new_message(
            chat_id, self._sender_object(self.bot_user), content, thread_id=thread_id, reply=reply
        )
        if markup is not None:
            self.reply_markups[(chat_id, int(message["message_id"]))] = markup
            if "inline_keyboard" in markup:
                message["reply_markup"] = markup
        return message

    # ----------------------------------------------------------------------------- methods

    def _set_webhook(self, params: JSON) -> bool:
        url = _str_param(params, "url") or ""
        self.webhook_url = url or None
        if _bool_param(params, "drop_pending_updates"):
            self._queue.clear()
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        self.webhook_url = None
        self._webhook_pending = 0
        if _bool_param(params, "drop_pending_updates"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, _params: JSON) -> JSON:
        pending = len(self._queue)
        if self.webhook_url and self._webhook_pending:
            pending = self._webhook_pending
        info: JSON = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    def _get_chat(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id, write=False)
        info = self._chat_object(chat_id)
        info.update(
            accent_color_id=chat_id % 7,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": chat_id > 0,
                "limited_gifts": chat_id > 0,
                "unique_gifts": chat_id > 0,
                "premium_subscription": chat_id > 0,
                "gifts_from_channels": chat_id > 0,
            },
        )
        if chat_id < 0:
            info["permissions"] = {
                "can_send_messages": True,
                "can_send_photos": True,
                "can_send_documents": True,
                "can_manage_topics": False,
            }
        return info

    def _member(self, chat_id: int, user_id: int) -> JSON:
        if user_id == BOT_ID:
            group = self.groups.get(chat_id)
            user = self._sender_object(self.bot_user)
            if group is None:
                return {"status": "member", "user": user}
            status = group.bot_status
            manage, delete = group.can_manage_topics, group.can_delete_messages
        else:
            if user_id not in self.users:
                raise bad_request("user not found")
            user = self.users[user_id]
            group = self.groups.get(chat_id)
            status = "member" if group is None else group.members.get(user_id, "member")
            manage, delete = True, True
        if status == "administrator":
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": delete,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_send_welcome_messages": False,
                "can_pin_messages": True,
                "can_manage_topics": manage,
            }
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        return {"status": status, "user": user}

    def _get_chat_member(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id, write=False)
        user_id = _required_int(params, "user_id")
        if chat_id > 0 and user_id not in {chat_id, BOT_ID}:
            raise bad_request("user not found")
        return self._member(chat_id, user_id)

    def _scope_key(self, params: JSON) -> tuple[str, str]:
        scope = _json_param(params, "scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), _str_param(params, "language_code") or ""

    def _set_my_commands(self, params: JSON) -> bool:
        commands = _json_param(params, "commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        for command in commands:
            name = str(command.get("command", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name.lstrip("/")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._scope_key(params)] = [
            {"command": str(c["command"]).lstrip("/"), "description": str(c["description"])}
            for c in commands
        ]
        return True

    def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands.get(self._scope_key(params), [])

    def _delete_my_commands(self, params: JSON) -> bool:
        self.commands.pop(self._scope_key(params), None)
        return True

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = _str_param(params, "callback_query_id")
        if not query_id:
            raise bad_request('parameter "callback_query_id" is required')
        if query_id not in self._callbacks or query_id in self.callback_answers:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = _str_param(params, "text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = {k: v for k, v in params.items() if k != "_files"}
        return True

    def _send_chat_action(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        self._check_thread(chat_id, _int_param(params, "message_thread_id"))
        if not _str_param(params, "action"):
            raise bad_request('parameter "action" is required')
        self._check_blocked(chat_id)
        return True

    def _text_content(self, params: JSON) -> JSON:
        text = _str_param(params, "text") or ""
        if not text:
            raise bad_request("message text is empty")
        plain, entities = format_text(
            text, _str_param(params, "parse_mode"), _entities_param(params, "entities")
        )
        if not plain:
            raise bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        content: JSON = {"text": plain}
        if entities:
            content["entities"] = entities
        preview = _json_param(params, "link_preview_options")
        if isinstance(preview, dict) and preview:
            content["link_preview_options"] = preview
        return content

    def _caption(self, params: JSON, *, prefix: str = "") -> tuple[str, list[JSON]] | None:
        caption = _str_param(params, f"{prefix}caption")
        if not caption:
            return None
        plain, entities = format_text(
            caption,
            _str_param(params, f"{prefix}parse_mode"),
            _entities_param(params, f"{prefix}caption_entities"),
        )
        if len(plain) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        return plain, entities

    def _send_message(self, params: JSON) -> JSON:
        content = self._text_content(params)
        markup = self._reply_markup(params)
        chat_id, thread_id, reply = self._prepare_send(params)
        self._admit("sendMessage", chat_id)
        return self._bot_message(chat_id, thread_id, reply, content, markup)

    def _copied_content(
        self, source: JSON, caption: tuple[str, list[JSON]] | None, remove_caption: bool
    ) -> JSON:
        content = {k: copy.deepcopy(source[k]) for k in CONTENT_KEYS if k in source}
        if "poll" in content:
            content["poll"]["id"] = str(next(self._poll_seq))
        if "text" not in content:
            if remove_caption:
                content.pop("caption", None)
                content.pop("caption_entities", None)
            if caption is not None:
                content.pop("caption_entities", None)
                content["caption"] = caption[0]
                if caption[1]:
                    content["caption_entities"] = caption[1]
        return content

    def _copy_message(self, params: JSON) -> JSON:
        from_chat_id = self._chat_id(params, "from_chat_id")
        message_id = _required_int(params, "message_id")
        caption = self._caption(params)
        markup = self._reply_markup(params)
        chat_id, thread_id, reply = self._prepare_send(params)
        self._check_chat(from_chat_id, write=False)
        source = self._messages.get(from_chat_id, {}).get(message_id)
        if source is None:
            raise bad_request("message to copy not found")
        if not _is_content(source):
            raise bad_request("message can't be copied")
        content = self._copied_content(source, caption, _bool_param(params, "remove_caption"))
        self._admit("copyMessage", chat_id)
        message = self._bot_message(chat_id, thread_id, reply, content, markup)
        return {"message_id": message["message_id"]}

    def _copy_messages(self, params: JSON) -> list[JSON]:
        from_chat_id = self._chat_id(params, "from_chat_id")
        message_ids = _json_param(params, "message_ids")
        if not message_ids:
            raise bad_request("message identifiers are not specified")
        if not isinstance(message_ids, list):
            raise bad_request("expected an Array of message identifiers")
        if len(message_ids) > 100:
            raise bad_request("too many message identifiers specified")
        ids = [int(m) for m in message_ids]
        if any(b <= a for a, b in itertools.pairwise(ids)):
            raise bad_request("message identifiers must be in a strictly increasing order")
        chat_id, thread_id, _ = self._prepare_send(params)
        self._check_chat(from_chat_id, write=False)
        stored = self._messages.get(from_chat_id, {})
        sources = [stored[m] for m in ids if m in stored and _is_content(stored[m])]
        if not sources:
            raise bad_request("there are no messages to forward")
        self._admit("copyMessages", chat_id, len(sources))
        remove_caption = _bool_param(params, "remove_caption")
        albums: dict[str, str] = {}
        result = []
        for source in sources:
            content = self._copied_content(source, None, remove_caption)
            group_id = source.get("media_group_id")
            if group_id is not None:
                if group_id not in albums:
                    albums[group_id] = str(next(self._album_seq))
                content["media_group_id"] = albums[group_id]
            message = self._bot_message(chat_id, thread_id, None, content, None)
            result.append({"message_id": message["message_id"]})
        return result

    def _resolve_file(self, kind: str, ref: Any, files: dict[str, bytes]) -> Any:
        """A file_id, an attach://name upload or an http(s) URL, as a message carries it."""
        if not isinstance(ref, str) or not ref:
            raise bad_request(f'parameter "{kind}" is required')
        if ref.startswith("attach://"):
            data = files.get(ref[len("attach://") :])
            if data is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return self._media_object(kind, len(data), data)
        if ref.startswith(("http://", "https://")):
            return self._media_object(kind, None)
        stored = self._files.get(ref)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind and not (stored.kind == "animation" and kind == "document"):
            raise bad_request(
                f"can't use file of type {_type_name(stored.kind)} as {_type_name(kind)}"
            )
        return copy.deepcopy(stored.content)

    def _media_sender(self, kind: str) -> Handler:
        def send(params: JSON) -> JSON:
            caption = None if kind in {"sticker", "video_note"} else self._caption(params)
            markup = self._reply_markup(params)
            files: dict[str, bytes] = params.get("_files", {})
            ref: Any = params.get(kind)
            if kind in files:  # a direct multipart upload under the field's own name
                ref = f"attach://{kind}"
            media = self._resolve_file(kind, ref, files)
            chat_id, thread_id, reply = self._prepare_send(params)
            content: JSON = {kind: media}
            if kind == "animation":
                content["document"] = {
                    k: media[k]
                    for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
                    if k in media
                }
            if caption is not None:
                content["caption"] = caption[0]
                if caption[1]:
                    content["caption_entities"] = caption[1]
            self._admit(f"send{_type_name(kind)}", chat_id)
            return self._bot_message(chat_id, thread_id, reply, content, markup)

        return send

    def _send_media_group(self, params: JSON) -> list[JSON]:
        media = _json_param(params, "media")
        if not isinstance(media, list) or not media:
            raise bad_request('parameter "media" is required')
        if len(media) > 10:
            raise bad_request("too many messages to send as an album")
        if len(media) < 2:
            raise bad_request("there must be at least 2 media in the album")
        kinds = {str(item.get("type")) for item in media}
        if not kinds <= {"photo", "video", "document", "audio"}:
            raise bad_request("can't use the media of the specified type in the album")
        if ("document" in kinds or "audio" in kinds) and len(kinds) > 1:
            raise bad_request("can't use the media of the specified type in the album")
        files: dict[str, bytes] = params.get("_files", {})
        contents = []
        for item in media:
            kind = str(item["type"])
            content: JSON = {kind: self._resolve_file(kind, item.get("media"), files)}
            caption = self._caption(item)
            if caption is not None:
                content["caption"] = caption[0]
                if caption[1]:
                    content["caption_entities"] = caption[1]
            if item.get("has_spoiler"):
                content["has_media_spoiler"] = True
            contents.append(content)
        chat_id, thread_id, reply = self._prepare_send(params)
        self._admit("sendMediaGroup", chat_id, len(contents))
        group_id = str(next(self._album_seq))
        result = []
        for content in contents:
            content["media_group_id"] = group_id
            result.append(self._bot_message(chat_id, thread_id, reply, content, None))
        return result

    def _editable(self, params: JSON) -> tuple[int, JSON]:
        if params.get("inline_message_id"):
            raise bad_request("message to edit not found")
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = _required_int(params, "message_id")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != BOT_ID:
            raise bad_request("message can't be edited")
        return chat_id, message

    def _edit_message_text(self, params: JSON) -> JSON:
        chat_id, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        content = self._text_content(params)
        markup = self._reply_markup(params)
        new_inline = markup if markup is not None and "inline_keyboard" in markup else None
        if (
            content["text"] == message["text"]
            and content.get("entities", []) == message.get("entities", [])
            and new_inline == message.get("reply_markup")
        ):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._check_blocked(chat_id)
        self._admit("editMessageText", chat_id)
        message["text"] = content["text"]
        message.pop("entities", None)
        if "entities" in content:
            message["entities"] = content["entities"]
        self._set_markup(chat_id, message, new_inline)
        message["edit_date"] = int(time.time())
        return message

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        chat_id, message = self._editable(params)
        markup = self._reply_markup(params)
        new_inline = markup if markup is not None and "inline_keyboard" in markup else None
        if new_inline == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._check_blocked(chat_id)
        self._admit("editMessageReplyMarkup", chat_id)
        self._set_markup(chat_id, message, new_inline)
        message["edit_date"] = int(time.time())
        return message

    def _set_markup(self, chat_id: int, message: JSON, markup: JSON | None) -> None:
        key = (chat_id, int(message["message_id"]))
        if markup is None:
            message.pop("reply_markup", None)
            self.reply_markups.pop(key, None)
        else:
            message["reply_markup"] = markup
            self.reply_markups[key] = markup

    def _delete_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = _required_int(params, "message_id")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise bad_request("message to delete not found")
        own = message.get("from", {}).get("id") == BOT_ID
        if chat_id < 0 and not own and not self.groups[chat_id].can_delete_messages:
            raise bad_request("message can't be deleted")
        del self._messages[chat_id][message_id]
        return True

    def _forum(self, params: JSON) -> tuple[int, _Group]:
        chat_id = self._chat_id(params)
        if chat_id > 0:
            if chat_id not in self.users:
                raise bad_request("chat not found")
            raise bad_request("the chat is not a forum")
        self._check_chat(chat_id)
        group = self.groups[chat_id]
        if not group.is_forum:
            raise bad_request("the chat is not a forum")
        return chat_id, group

    def _managed_topic(self, params: JSON, rights_error: str) -> tuple[int, _Group, Topic]:
        chat_id, group = self._forum(params)
        thread_id = _int_param(params, "message_thread_id")
        topic = self.topics.get(chat_id, {}).get(thread_id or 0)
        if topic is None:
            raise bad_request("TOPIC_ID_INVALID")
        if topic.deleted:
            raise bad_request("TOPIC_DELETED")
        manages = group.bot_status == "administrator" and group.can_manage_topics
        if not manages and topic.created_by != BOT_ID:
            raise bad_request(rights_error)
        return chat_id, group, topic

    def _create_forum_topic(self, params: JSON) -> JSON:
        chat_id, group = self._forum(params)
        if group.bot_status != "administrator" or not group.can_manage_topics:
            raise bad_request("not enough rights to create a topic")
        name = (_str_param(params, "name") or "").strip()[:MAX_TOPIC_NAME_LENGTH].strip()
        if not name:
            raise bad_request("title must be non-empty")
        icon_color = _int_param(params, "icon_color") or ICON_COLORS[0]
        if icon_color not in ICON_COLORS:
            raise bad_request("invalid icon color specified")
        emoji = _str_param(params, "icon_custom_emoji_id") or None
        self._admit("createForumTopic", chat_id)
        message = self._create_topic(chat_id, name, icon_color, emoji, self.bot_user)
        topic: JSON = {
            "message_thread_id": message["message_id"],
            "name": name,
            "icon_color": icon_color,
        }
        if emoji:
            topic["icon_custom_emoji_id"] = emoji
        return topic

    def _edit_forum_topic(self, params: JSON) -> bool:
        chat_id, _, topic = self._managed_topic(params, "not enough rights to edit the topic")
        name_given = _str_param(params, "name")
        emoji_given = "icon_custom_emoji_id" in params
        if not name_given and not emoji_given:
            return True
        name = topic.name
        if name_given:
            name = name_given.strip()[:MAX_TOPIC_NAME_LENGTH].strip()
            if not name:
                raise bad_request("title must be non-empty")
        emoji = topic.icon_custom_emoji_id
        if emoji_given:
            emoji = _str_param(params, "icon_custom_emoji_id") or None
        if name == topic.name and emoji == topic.icon_custom_emoji_id:
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._admit("editForumTopic", chat_id)
        edited: JSON = {}
        if name != topic.name:
            edited["name"] = name
        if emoji != topic.icon_custom_emoji_id:
            edited["icon_custom_emoji_id"] = emoji or ""
        topic.name, topic.icon_custom_emoji_id = name, emoji
        self._service_message(
            chat_id, self.bot_user, {"forum_topic_edited": edited}, topic.thread_id
        )
        return True

    def _toggle_topic(self, params: JSON, *, close: bool) -> bool:
        chat_id, _, topic = self._managed_topic(
            params, "not enough rights to close or open the topic"
        )
        if topic.closed == close:
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._admit("closeForumTopic" if close else "reopenForumTopic", chat_id)
        topic.closed = close
        key = "forum_topic_closed" if close else "forum_topic_reopened"
        self._service_message(chat_id, self.bot_user, {key: {}}, topic.thread_id)
        return True

    def _close_forum_topic(self, params: JSON) -> bool:
        return self._toggle_topic(params, close=True)

    def _reopen_forum_topic(self, params: JSON) -> bool:
        return self._toggle_topic(params, close=False)

    def _delete_forum_topic(self, params: JSON) -> bool:
        chat_id, group = self._forum(params)
        thread_id = _int_param(params, "message_thread_id")
        topic = self.topics.get(chat_id, {}).get(thread_id or 0)
        if topic is None:
            raise bad_request("TOPIC_ID_INVALID")
        if topic.deleted:
            raise bad_request("TOPIC_DELETED")
        deletes = group.bot_status == "administrator" and group.can_delete_messages
        if not deletes and topic.created_by != BOT_ID:
            raise bad_request("not enough rights to delete the topic")
        topic.deleted = True
        return True

    def _get_file(self, params: JSON) -> JSON:
        file_id = _str_param(params, "file_id")
        if not file_id:
            raise bad_request('parameter "file_id" is required')
        stored = self._files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        if stored.file_path is None:
            stored.file_path = f"{stored.kind}s/file_{len(self._file_paths)}"
            self._file_paths[stored.file_path] = file_id
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _window_wait(times: list[float], now: float, window: float, cap: int, need: int) -> float:
    """Seconds until a sliding window of ``window`` s holding at most ``cap`` admits ``need``."""
    need = min(need, cap)
    start = bisect.bisect_right(times, now - window)
    excess = len(times) - start + need - cap
    if excess <= 0:
        return 0.0
    return times[start + excess - 1] + window - now


def _without_reply(message: JSON) -> JSON:
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def _is_content(message: JSON) -> bool:
    return any(key in message for key in CONTENT_KEYS)


def _type_name(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_"))


__all__ = [
    "ADMIN_ID",
    "BOT_ID",
    "BOT_TOKEN",
    "GROUP_ID",
    "ICON_COLORS",
    "MESSAGE_KINDS",
    "SENDING_METHODS",
    "Call",
    "FakeTelegram",
    "Limits",
    "TelegramError",
    "Topic",
    "format_text",
    "parse_html",
    "utf16_len",
]
