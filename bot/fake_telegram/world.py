"""The world a test builds and acts in, and what it inspects afterwards.

Building: ``add_user``, ``add_group``, ``set_member``, ``create_topic``, ``close_topic``,
``reopen_topic``, ``delete_topic``, ``block_bot``. Acting, each enqueued as an update at once:
``send_private``, ``send_group``, ``send_service``, ``press_button``, ``edit_message``
(edited_message) and ``react`` (message_reaction, only where Telegram sends it). Inspecting:
``calls_to``, ``chat_messages``, ``bot_messages``, ``message`` and ``wait_until``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any

from bot.fake_telegram.html import command_entities
from bot.fake_telegram.records import (
    ADMIN_ID,
    BOT_ID,
    CAPTION_KINDS,
    GENERAL_TOPIC_ID,
    GROUP_ID,
    ICON_COLORS,
    JSON,
    MESSAGE_KINDS,
    Call,
    Group,
    is_content,
    without_reply,
)
from bot.fake_telegram.updates import Updates


class World(Updates):
    """Users, groups and topics; incoming messages, services and button presses; inspection."""

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
        self.groups[chat_id] = Group(
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

    def edit_message(
        self,
        chat_id: int,
        message_id: int,
        text: str | None = None,
        *,
        caption: str | None = None,
        entities: list[JSON] | None = None,
        caption_entities: list[JSON] | None = None,
        date: int | None = None,
    ) -> JSON:
        """The user who sent a message (in private, or in a group or topic) edits it.

        A text message gets ``text`` with ``entities`` (a /command gets its bot_command entity
        unless ``entities`` are given); a media message gets ``caption`` (or ``text``) with
        ``caption_entities``, and an empty one loses its caption. ``edit_date`` is ``date`` or
        now. The edited_message update carries the whole message, as Telegram sends it."""
        message = self._message(chat_id, message_id)
        if message.get("from", {}).get("id") == BOT_ID:
            raise ValueError("the bot edits its messages through the Bot API")
        if "text" in message:
            body = text if text is not None else caption
            if not body:
                raise ValueError("a text message can't be edited to nothing")
            found = entities if entities is not None else command_entities(body)
            message["text"] = body
            message.pop("entities", None)
            if found:
                message["entities"] = [dict(e) for e in found]
        elif any(kind in message for kind in CAPTION_KINDS):
            shown = caption if caption is not None else text
            message.pop("caption", None)
            message.pop("caption_entities", None)
            if shown:
                message["caption"] = shown
                if caption_entities:
                    message["caption_entities"] = [dict(e) for e in caption_entities]
        else:
            raise ValueError(f"message {message_id} in chat {chat_id} has no text or caption")
        message["edit_date"] = int(time.time()) if date is None else date
        if chat_id > 0 or self.groups[chat_id].bot_status not in {"left", "kicked"}:
            self.enqueue_update({"edited_message": message})
        return message

    def react(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        *reaction: str | JSON,
        date: int | None = None,
    ) -> JSON | None:
        """The user's reactions on a message become ``reaction`` (none: they removed theirs).

        A str is an emoji (ReactionTypeEmoji, not checked against Telegram's list: clients
        may offer newer ones); a dict is a ReactionType as it is (``{"type": "custom_emoji",
        "custom_emoji_id": ...}``, ``{"type": "paid"}``). Enqueues a message_reaction update
        with the old and new reactions, and returns it, only where Telegram sends one: the bot
        listed message_reaction in allowed_updates, is an administrator of the group (any
        private chat will do), and the reaction is not a bot's. Otherwise returns None."""
        self._message(chat_id, message_id)
        user = self._user(user_id)
        new = [{"type": "emoji", "emoji": r} if isinstance(r, str) else dict(r) for r in reaction]
        reactions = self.user_reactions.setdefault((chat_id, message_id), {})
        old = reactions.pop(user_id, [])
        if new:
            reactions[user_id] = new
        if user_id == BOT_ID or user.get("is_bot") or not self._allowed("message_reaction"):
            return None
        if chat_id < 0 and self._group(chat_id).bot_status != "administrator":
            return None
        payload: JSON = {
            "chat": self._chat_object(chat_id),
            "message_id": message_id,
            "user": self._sender_object(user),
            "date": int(time.time()) if date is None else date,
            "old_reaction": old,
            "new_reaction": new,
        }
        self.enqueue_update({"message_reaction": payload})
        return payload

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
            found = entities if entities is not None else command_entities(body)
            content: JSON = {"text": body}
            if found:
                content["entities"] = [dict(e) for e in found]
            return content
        if kind in CAPTION_KINDS:
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

    def _incoming_reply(self, chat_id: int, reply_to: int | None) -> JSON | None:
        if reply_to is None:
            return None
        return self._message(chat_id, reply_to)

    def _pinned_target(self, chat_id: int, thread_id: int | None, data: Any) -> JSON:
        if isinstance(data, int):
            return without_reply(self._message(chat_id, data))
        for message in reversed(self.chat_messages(chat_id, thread_id)):
            if is_content(message):
                return without_reply(message)
        raise ValueError("nothing to pin")

    @staticmethod
    def _need_thread(thread_id: int | None) -> int:
        if thread_id is None:
            raise ValueError("this service message needs thread_id")
        return thread_id

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
