"""The fake's constants and records.

Constants: the ids a test uses (``BOT_TOKEN``, ``BOT_ID``, ``GROUP_ID``, ``ADMIN_ID``), Telegram's
figures (text and caption lengths, topic names, callback data, downloads, long polls) and the
kinds of message content. Public records: ``Call``, ``Topic`` and ``TelegramError``. Internal
records the other modules share (not re-exported): a group, a queued update and a stored file.
Last, small helpers about message dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
#: A Bot API method: its decoded parameters in, the answer's ``result`` out (or TelegramError).
Handler = Callable[[JSON], Any]

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
#: The kinds of content that carry a caption (and so can have it edited).
CAPTION_KINDS: frozenset[str] = frozenset(
    {"photo", "video", "document", "audio", "voice", "animation"}
)
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


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


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
class Group:
    """A supergroup (a forum or not), the bot's status and rights there, and its members."""

    chat_id: int
    title: str
    is_forum: bool
    bot_status: str
    can_manage_topics: bool
    can_delete_messages: bool
    members: dict[int, str] = field(default_factory=dict)


@dataclass
class Queued:
    """An update in the queue; ``forced`` is a replay (``keep_id``), handed out once."""

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
class StoredFile:
    """A file the fake knows by file_id, with its bytes if it was uploaded."""

    file_id: str
    file_unique_id: str
    kind: str
    file_size: int
    content: JSON | list[JSON]  # what a message carries under ``kind``
    data: bytes | None = None
    file_path: str | None = None


# --------------------------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------------------------


def without_reply(message: JSON) -> JSON:
    """The message as a reply_to_message carries it (without its own reply)."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def is_content(message: JSON) -> bool:
    """True for a message with content, False for a service message."""
    return any(key in message for key in CONTENT_KEYS)


def type_name(kind: str) -> str:
    """The Bot API's name of a content kind: "video_note" is "VideoNote"."""
    return "".join(part.title() for part in kind.split("_"))


_REACTIONS = (
    "👍 👎 ❤ 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌"
    " 🏆 💔 🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒"
    " 💘 🙉 🦄 😘 💊 🙊 😎 👾 🤷‍♂ 🤷 🤷‍♀ 😡"
)
#: The emoji Telegram accepts as a reaction (ReactionTypeEmoji); others are REACTION_INVALID.
REACTION_EMOJI: frozenset[str] = frozenset(_REACTIONS.split())


# Budgets and injected faults: plain records (bot.fake_telegram.limits applies them).


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
class Fault:
    """An error that the next ``times`` calls of ``method`` (to ``chat_id``) answer."""

    method: str
    error_code: int
    description: str
    parameters: JSON
    times: int
    chat_id: int | None
    html: bool


@dataclass
class Bucket:
    """A token bucket of ``capacity`` tokens, refilled at ``rate`` tokens a second."""

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
