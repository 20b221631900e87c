"""Shaping a row's request to Telegram's size rules, and back again.

A text over 4096 characters becomes several messages; a caption over 1024 keeps what
fits and the rest follows as messages. Markup Telegram cannot parse is dropped for a
plain-text retry. Nothing here knows about tickets.
"""

from __future__ import annotations

from typing import Any

from aiogram import methods
from aiogram.methods.base import TelegramMethod
from pydantic import BaseModel

from bot import telegram_text

Call = tuple[str, dict[str, Any]]  # a Bot API method and its parameters


class UnknownMethodError(Exception):
    """The row names a Bot API method aiogram does not know."""


def fit(method: str, params: dict[str, Any]) -> list[Call]:
    """Split what is over Telegram's size limits into several calls, in order."""
    if method == "sendMessage" and isinstance(params.get("text"), str):
        text, entities = _visible(params["text"], params.get("parse_mode"), params.get("entities"))
        if len(text) <= telegram_text.TEXT_LIMIT:
            return [(method, params)]
        base = {k: v for k, v in params.items() if k not in {"text", "parse_mode", "entities"}}
        chunks = telegram_text.split_text(text, entities)
        calls: list[Call] = []
        for index, (chunk, chunk_entities) in enumerate(chunks):
            call = {**base, "text": chunk, "entities": chunk_entities}
            if index < len(chunks) - 1:
                call.pop("reply_markup", None)  # buttons belong under the last part
            calls.append((method, call))
        return calls
    if isinstance(params.get("caption"), str):
        caption, entities = _visible(
            params["caption"], params.get("parse_mode"), params.get("caption_entities")
        )
        if len(caption) <= telegram_text.CAPTION_LIMIT:
            return [(method, params)]
        (first, first_entities), rest = telegram_text.split_caption(caption, entities)
        head = {k: v for k, v in params.items() if k not in {"parse_mode", "caption_entities"}}
        head.update(caption=first, caption_entities=first_entities)
        tail_base = {k: params[k] for k in ("chat_id", "message_thread_id") if k in params}
        return [(method, head)] + [
            ("sendMessage", {**tail_base, "text": chunk, "entities": chunk_entities})
            for chunk, chunk_entities in rest
        ]
    return [(method, params)]


def _visible(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    """The text as Telegram will count it, with its entities."""
    if parse_mode == "HTML":
        try:
            return telegram_text.html_to_entities(text)
        except ValueError:
            return telegram_text.strip_html(text), []
    return text, list(entities or [])


def plain(params: dict[str, Any]) -> dict[str, Any]:
    """The same parameters without markup, for when Telegram cannot parse it."""
    result = {k: v for k, v in params.items() if k != "parse_mode"}
    for name in ("text", "caption"):
        if isinstance(result.get(name), str):
            result[name] = telegram_text.strip_html(result[name])
    return result


def build(call: Call) -> TelegramMethod[Any]:
    """aiogram's request object for a call."""
    method, params = call
    cls = getattr(methods, method[0].upper() + method[1:], None)
    if cls is None:
        raise UnknownMethodError(f"unknown Bot API method {method!r}")
    request: TelegramMethod[Any] = cls.model_validate(params)
    return request


def dump(result: Any) -> Any:
    """Telegram's answer as JSON, to store."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_none=True)
    if isinstance(result, list):
        return [dump(item) for item in result]
    return result
