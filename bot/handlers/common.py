"""Where Telegram's types end: lifting messages into the desk's own terms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram.enums import ContentType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.types import Message, TelegramObject
from aiogram.utils.magic_filter import MagicFilter

from bot.services.incoming import RELAYABLE, Incoming
from storage.db import Conn, to_iso

log = structlog.stdlib.get_logger(__name__)

# Content a person sent that we cannot relay: they get a polite note. Other
# non-relayable content types are service messages and are ignored silently.
UNSUPPORTED = frozenset(
    {
        "poll",
        "dice",
        "game",
        "story",
        "checklist",
        "paid_media",
        "live_photo",
        "giveaway",
        "unknown",
    }
)


class OnLoop(Filter):
    """A magic filter (`F.chat.type == "private"`) checked on the event loop.

    aiogram runs a filter that is a plain callable, F's included, in a worker thread
    (asyncio.to_thread): a thread round trip for each update and filter, which costs more
    than the rest of a relay's handling. Wrapped in this, the check runs where it is.
    """

    def __init__(self, magic: MagicFilter) -> None:
        self._magic = magic

    async def __call__(self, event: TelegramObject) -> bool:
        return bool(self._magic.resolve(event))


def kind_of(message: Message) -> str:
    """text, photo, ... as aiogram names the content type."""
    return ContentType(message.content_type).value


def is_service(message: Message) -> bool:
    """A service message (member joined, topic created, ...), never relayed or answered."""
    kind = kind_of(message)
    return kind not in UNSUPPORTED and kind not in RELAYABLE


def explicit_reply_id(message: Message) -> int | None:
    """The message this one answers, if the sender chose one.

    In a forum topic Telegram marks every message as a reply to the topic's creation
    message; that is not a reply anyone chose.
    """
    reply = message.reply_to_message
    if reply is None:
        return None
    if message.is_topic_message and (
        reply.message_id == message.message_thread_id or reply.forum_topic_created is not None
    ):
        return None
    return reply.message_id


def to_incoming(message: Message) -> Incoming:
    """The desk's view of a Telegram message."""
    user = message.from_user
    assert user is not None
    return Incoming(
        chat_id=message.chat.id,
        message_id=message.message_id,
        sender_id=user.id,
        sender_name=user.full_name,
        sender_username=user.username,
        language_code=user.language_code,
        kind=kind_of(message),
        text=message.text or message.caption,
        date=to_iso(message.date),
        media_group_id=message.media_group_id,
        reply_to_message_id=explicit_reply_id(message),
        thread_id=message.message_thread_id if message.is_topic_message else None,
        file_size=file_size(message),
    )


def file_size(message: Message) -> int | None:
    """The size in bytes of the file a message carries (the largest photo size)."""
    media = (
        message.document
        or message.video
        or message.audio
        or message.voice
        or message.video_note
        or message.animation
        or message.sticker
    )
    if media is not None:
        return media.file_size
    if message.photo:
        return max((size.file_size or 0) for size in message.photo) or None
    return None


def after_commit(db: Conn, call: Callable[[], Awaitable[Any]], what: str) -> None:
    """Make a courtesy call (answer a button, say "typing") once the update has committed.

    Such calls are allowed to fail: nothing depends on them.
    """

    async def run() -> None:
        try:
            await call()
        except TelegramAPIError as exc:
            log.warning("courtesy call failed", what=what, error=exc.message)

    db.after_commit(run)
