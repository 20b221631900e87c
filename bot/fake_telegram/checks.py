"""The checks that the Bot API methods share, each answering Telegram's own error.

The chat (an id, or a @username of a known user) must exist and let the bot write; the topic
must exist and be open; the user must not have blocked the bot; a reply target must be there
(in the same topic); callback data in an inline keyboard must be 1-64 bytes.
"""

from __future__ import annotations

import contextlib

from bot.fake_telegram.params import bool_param, int_param, json_param
from bot.fake_telegram.records import (
    GENERAL_TOPIC_ID,
    JSON,
    MAX_CALLBACK_DATA_BYTES,
    TelegramError,
    bad_request,
)
from bot.fake_telegram.state import FakeState


class Checks(FakeState):
    """Chat, topic, block, reply and markup checks for the Bot API methods."""

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
        reply_parameters = json_param(params, "reply_parameters")
        message_id: int | None = None
        allow_without = bool_param(params, "allow_sending_without_reply")
        if isinstance(reply_parameters, dict):
            message_id = int_param(reply_parameters, "message_id")
            allow_without = bool(reply_parameters.get("allow_sending_without_reply"))
            other_chat = reply_parameters.get("chat_id")
            if other_chat not in (None, "") and str(other_chat) != str(chat_id):
                raise bad_request("message to be replied not found")
        else:
            message_id = int_param(params, "reply_to_message_id")
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
        thread_id = int_param(params, "message_thread_id") or None
        if thread_id is not None:
            self._check_thread(chat_id, thread_id)
        reply, thread_id = self._resolve_reply(chat_id, params, thread_id)
        thread_id = self._check_thread(chat_id, thread_id)
        self._check_blocked(chat_id)
        return chat_id, thread_id, reply

    def _reply_markup(self, params: JSON) -> JSON | None:
        markup = json_param(params, "reply_markup")
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
