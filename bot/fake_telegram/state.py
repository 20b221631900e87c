"""The state that every part of the fake shares, and the store of messages.

``FakeState`` declares all of it in one place: the world (users, groups, topics, messages,
files, callback queries), the updates queue and the budgets' bookkeeping. The other modules are
mixins over it. It also holds what builds and finds messages: lookups that raise a test
writer's ValueError, per-chat message ids, messages and topics as Telegram shapes them, and the
files that media messages carry.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.fake_telegram.records import (
    BOT_ID,
    JSON,
    Call,
    Group,
    Queued,
    StoredFile,
    Topic,
    without_reply,
)

if TYPE_CHECKING:
    from bot.fake_telegram.records import Bucket, Fault, Limits

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


class FakeState:
    """Everything the fake knows, and the message store the Bot API methods and the world share."""

    def __init__(self, token: str, *, limits: Limits | None, clock: Callable[[], float]) -> None:
        self.token = token
        self.limits = limits
        self.clock = clock
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
        self.groups: dict[int, Group] = {}
        self.blocked: set[int] = set()
        self.topics: dict[int, dict[int, Topic]] = {}
        self.reply_markups: dict[tuple[int, int], JSON] = {}
        #: (chat id, message id) of every pinned message
        self.pinned: set[tuple[int, int]] = set()
        #: (chat id, message id) -> the bot's reaction on it (setMessageReaction)
        self.bot_reactions: dict[tuple[int, int], list[JSON]] = {}
        #: (chat id, message id) -> user id -> that user's reactions on it (``react``)
        self.user_reactions: dict[tuple[int, int], dict[int, list[JSON]]] = {}
        self.callback_answers: dict[str, JSON] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook_url: str | None = None
        self._webhook_pending = 0
        self._messages: dict[int, dict[int, JSON]] = {}
        self._last_message_id: dict[int, int] = {}
        self._callbacks: dict[str, JSON] = {}
        self._files: dict[str, StoredFile] = {}
        self._file_paths: dict[str, str] = {}
        self._file_seq = itertools.count(1)
        self._poll_seq = itertools.count(5000000000000000001)
        self._callback_seq = itertools.count(4400000000000000001)
        self._album_seq = itertools.count(13000000000000001)

        # updates
        self.updates_sent: list[JSON] = []
        #: update_id -> the fake's clock when it was enqueued (became available to getUpdates)
        self.enqueued_at: dict[int, float] = {}
        self._queue: list[Queued] = []
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
        self._faults: list[Fault] = []
        self._global_bucket: Bucket | None = None
        self._chat_buckets: dict[int, Bucket] = {}

    # ----------------------------------------------------------------------------- lookups

    def _user(self, user_id: int) -> JSON:
        if user_id == BOT_ID:
            return self._sender_object(self.bot_user)
        try:
            return self.users[user_id]
        except KeyError:
            raise ValueError(f"unknown user {user_id}: call add_user() first") from None

    def _group(self, chat_id: int) -> Group:
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
            message["reply_to_message"] = without_reply(reply)
        elif in_topic and not service:
            assert thread_id is not None
            root = self._messages[chat_id].get(thread_id)
            if root is not None:
                message["reply_to_message"] = without_reply(root)
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

    # ----------------------------------------------------------------------------- files

    def _new_file(
        self,
        kind: str,
        size: int,
        content: JSON | list[JSON] | None = None,
        data: bytes | None = None,
    ) -> StoredFile:
        number = next(self._file_seq)
        stored = StoredFile(
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
