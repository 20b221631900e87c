"""Bot API methods about chats and the bot itself.

getChat and getChatMember (the bot's own rights come from ``add_group``), the command lists
(setMyCommands, getMyCommands, deleteMyCommands, per scope and language), answerCallbackQuery
(once per query) and sendChatAction.
"""

from __future__ import annotations

import json
import re

from bot.fake_telegram.checks import Checks
from bot.fake_telegram.params import int_param, json_param, required_int, str_param
from bot.fake_telegram.records import BOT_ID, JSON, bad_request


class ChatMethods(Checks):
    """getChat, getChatMember, the command lists, answerCallbackQuery and sendChatAction."""

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
        user_id = required_int(params, "user_id")
        if chat_id > 0 and user_id not in {chat_id, BOT_ID}:
            raise bad_request("user not found")
        return self._member(chat_id, user_id)

    def _scope_key(self, params: JSON) -> tuple[str, str]:
        scope = json_param(params, "scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str_param(params, "language_code") or ""

    def _set_my_commands(self, params: JSON) -> bool:
        commands = json_param(params, "commands")
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
        query_id = str_param(params, "callback_query_id")
        if not query_id:
            raise bad_request('parameter "callback_query_id" is required')
        if query_id not in self._callbacks or query_id in self.callback_answers:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = str_param(params, "text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = {k: v for k, v in params.items() if k != "_files"}
        return True

    def _send_chat_action(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        self._check_thread(chat_id, int_param(params, "message_thread_id"))
        if not str_param(params, "action"):
            raise bad_request('parameter "action" is required')
        self._check_blocked(chat_id)
        return True
