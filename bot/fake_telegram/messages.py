"""Bot API methods that send, copy, edit and delete messages, and getFile.

sendMessage, copyMessage, copyMessages, send<Media> (photo, document, video, audio, voice,
animation, sticker, video_note: a file_id, an upload or a URL), sendMediaGroup,
editMessageText, editMessageCaption, editMessageReplyMarkup, pinChatMessage, unpinChatMessage,
setMessageReaction and deleteMessage; every send and edit is admitted against the budgets
first. Edits apply to the bot's own messages, its copies (copyMessage) included. getFile hands
out a path the fake then serves.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

from bot.fake_telegram.checks import Checks
from bot.fake_telegram.html import format_text
from bot.fake_telegram.limits import Budgets
from bot.fake_telegram.params import (
    bool_param,
    entities_param,
    json_param,
    required_int,
    str_param,
)
from bot.fake_telegram.records import (
    BOT_ID,
    CAPTION_KINDS,
    CONTENT_KEYS,
    JSON,
    MAX_CAPTION_LENGTH,
    MAX_DOWNLOAD_SIZE,
    MAX_TEXT_LENGTH,
    REACTION_EMOJI,
    Handler,
    bad_request,
    is_content,
    type_name,
)

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


class MessageMethods(Checks, Budgets):
    """Sending, copying, editing and deleting messages, and getFile."""

    # ----------------------------------------------------------------------------- content

    def _text_content(self, params: JSON) -> JSON:
        text = str_param(params, "text") or ""
        if not text:
            raise bad_request("message text is empty")
        plain, entities = format_text(
            text, str_param(params, "parse_mode"), entities_param(params, "entities")
        )
        if not plain:
            raise bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        content: JSON = {"text": plain}
        if entities:
            content["entities"] = entities
        preview = json_param(params, "link_preview_options")
        if isinstance(preview, dict) and preview:
            content["link_preview_options"] = preview
        return content

    def _caption(self, params: JSON, *, prefix: str = "") -> tuple[str, list[JSON]] | None:
        caption = str_param(params, f"{prefix}caption")
        if not caption:
            return None
        plain, entities = format_text(
            caption,
            str_param(params, f"{prefix}parse_mode"),
            entities_param(params, f"{prefix}caption_entities"),
        )
        if len(plain) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        return plain, entities

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

    # ----------------------------------------------------------------------------- send and copy

    def _send_message(self, params: JSON) -> JSON:
        content = self._text_content(params)
        markup = self._reply_markup(params)
        chat_id, thread_id, reply = self._prepare_send(params)
        self._admit("sendMessage", chat_id)
        return self._bot_message(chat_id, thread_id, reply, content, markup)

    def _copy_message(self, params: JSON) -> JSON:
        from_chat_id = self._chat_id(params, "from_chat_id")
        message_id = required_int(params, "message_id")
        caption = self._caption(params)
        markup = self._reply_markup(params)
        chat_id, thread_id, reply = self._prepare_send(params)
        self._check_chat(from_chat_id, write=False)
        source = self._messages.get(from_chat_id, {}).get(message_id)
        if source is None:
            raise bad_request("message to copy not found")
        if not is_content(source):
            raise bad_request("message can't be copied")
        content = self._copied_content(source, caption, bool_param(params, "remove_caption"))
        self._admit("copyMessage", chat_id)
        message = self._bot_message(chat_id, thread_id, reply, content, markup)
        return {"message_id": message["message_id"]}

    def _copy_messages(self, params: JSON) -> list[JSON]:
        from_chat_id = self._chat_id(params, "from_chat_id")
        message_ids = json_param(params, "message_ids")
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
        sources = [stored[m] for m in ids if m in stored and is_content(stored[m])]
        if not sources:
            raise bad_request("there are no messages to forward")
        self._admit("copyMessages", chat_id, len(sources))
        remove_caption = bool_param(params, "remove_caption")
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

    # ----------------------------------------------------------------------------- media

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
                f"can't use file of type {type_name(stored.kind)} as {type_name(kind)}"
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
            self._admit(f"send{type_name(kind)}", chat_id)
            return self._bot_message(chat_id, thread_id, reply, content, markup)

        return send

    def _send_media_group(self, params: JSON) -> list[JSON]:
        media = json_param(params, "media")
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

    def _get_file(self, params: JSON) -> JSON:
        file_id = str_param(params, "file_id")
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

    # ----------------------------------------------------------------------------- edit and delete

    def _editable(self, params: JSON) -> tuple[int, JSON]:
        if params.get("inline_message_id"):
            raise bad_request("message to edit not found")
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = required_int(params, "message_id")
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
            raise bad_request(_NOT_MODIFIED)
        self._check_blocked(chat_id)
        self._admit("editMessageText", chat_id)
        message["text"] = content["text"]
        message.pop("entities", None)
        if "entities" in content:
            message["entities"] = content["entities"]
        self._set_markup(chat_id, message, new_inline)
        message["edit_date"] = int(time.time())
        return message

    def _edit_message_caption(self, params: JSON) -> JSON:
        """A new caption (none removes it) on a media message; Telegram's errors otherwise."""
        chat_id, message = self._editable(params)
        if not any(kind in message for kind in CAPTION_KINDS):
            raise bad_request("there is no caption in the message to edit")
        caption, entities = self._caption(params) or ("", [])
        markup = self._reply_markup(params)
        new_inline = markup if markup is not None and "inline_keyboard" in markup else None
        if (
            caption == message.get("caption", "")
            and entities == message.get("caption_entities", [])
            and new_inline == message.get("reply_markup")
        ):
            raise bad_request(_NOT_MODIFIED)
        self._check_blocked(chat_id)
        self._admit("editMessageCaption", chat_id)
        message.pop("caption", None)
        message.pop("caption_entities", None)
        if caption:
            message["caption"] = caption
        if entities:
            message["caption_entities"] = entities
        self._set_markup(chat_id, message, new_inline)
        message["edit_date"] = int(time.time())
        return message

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        chat_id, message = self._editable(params)
        markup = self._reply_markup(params)
        new_inline = markup if markup is not None and "inline_keyboard" in markup else None
        if new_inline == message.get("reply_markup"):
            raise bad_request(_NOT_MODIFIED)
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

    def _pin_chat_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = required_int(params, "message_id")
        if message_id not in self._messages.get(chat_id, {}):
            raise bad_request("message to pin not found")
        if chat_id < 0 and self.groups[chat_id].bot_status != "administrator":
            raise bad_request("not enough rights to manage pinned messages in the chat")
        self.pinned.add((chat_id, message_id))
        return True

    def _unpin_chat_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = required_int(params, "message_id")
        if (chat_id, message_id) not in self.pinned:
            raise bad_request("message to unpin not found")
        self.pinned.discard((chat_id, message_id))
        return True

    def _set_message_reaction(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = required_int(params, "message_id")
        if message_id not in self._messages.get(chat_id, {}):
            raise bad_request("message to react not found")
        reaction = json_param(params, "reaction") or []
        if not isinstance(reaction, list):
            raise bad_request("can't parse reaction types JSON object")
        for item in reaction:
            if not isinstance(item, dict) or item.get("type") not in {"emoji", "custom_emoji"}:
                raise bad_request("can't parse reaction types JSON object")
            if item["type"] == "emoji" and item.get("emoji") not in REACTION_EMOJI:
                raise bad_request("REACTION_INVALID")
        if len(reaction) > 1:
            raise bad_request("REACTIONS_TOO_MANY")
        if reaction:
            self.bot_reactions[(chat_id, message_id)] = reaction
        else:
            self.bot_reactions.pop((chat_id, message_id), None)
        return True

    def _delete_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_chat(chat_id)
        message_id = required_int(params, "message_id")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise bad_request("message to delete not found")
        own = message.get("from", {}).get("id") == BOT_ID
        if chat_id < 0 and not own and not self.groups[chat_id].can_delete_messages:
            raise bad_request("message can't be deleted")
        del self._messages[chat_id][message_id]
        return True
