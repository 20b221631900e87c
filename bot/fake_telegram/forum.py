"""Bot API methods for forum topics.

createForumTopic, editForumTopic, closeForumTopic, reopenForumTopic and deleteForumTopic, with
Telegram's rights rules: managing topics needs an administrator with can_manage_topics, unless
the bot created the topic itself. Names are truncated to 128 characters, as TDLib does.
Topics the bot creates or changes send no update.
"""

from __future__ import annotations

from bot.fake_telegram.checks import Checks
from bot.fake_telegram.limits import Budgets
from bot.fake_telegram.params import int_param, str_param
from bot.fake_telegram.records import (
    BOT_ID,
    ICON_COLORS,
    JSON,
    MAX_TOPIC_NAME_LENGTH,
    Group,
    Topic,
    bad_request,
)


class ForumMethods(Checks, Budgets):
    """The forum topic methods."""

    def _forum(self, params: JSON) -> tuple[int, Group]:
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

    def _managed_topic(self, params: JSON, rights_error: str) -> tuple[int, Group, Topic]:
        chat_id, group = self._forum(params)
        thread_id = int_param(params, "message_thread_id")
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
        name = (str_param(params, "name") or "").strip()[:MAX_TOPIC_NAME_LENGTH].strip()
        if not name:
            raise bad_request("title must be non-empty")
        icon_color = int_param(params, "icon_color") or ICON_COLORS[0]
        if icon_color not in ICON_COLORS:
            raise bad_request("invalid icon color specified")
        emoji = str_param(params, "icon_custom_emoji_id") or None
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
        name_given = str_param(params, "name")
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
            emoji = str_param(params, "icon_custom_emoji_id") or None
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
        thread_id = int_param(params, "message_thread_id")
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
