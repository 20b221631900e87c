"""Decoding a Bot API call's parameters.

Query strings and form fields carry strings, and aiogram JSON-encodes every value that is not
one; a JSON body carries values as they are. ``decode_form_value`` undoes the encoding, and the
typed getters read one parameter and answer Telegram's 400 when it has the wrong type.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from bot.fake_telegram.records import JSON, bad_request

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


def decode_form_value(key: str, value: str) -> Any:
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


def int_param(params: JSON, name: str, *, required: bool = False) -> int | None:
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


def required_int(params: JSON, name: str) -> int:
    value = int_param(params, name, required=True)
    assert value is not None
    return value


def str_param(params: JSON, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def bool_param(params: JSON, name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1"}
    return bool(value)


def json_param(params: JSON, name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"can't parse {name} JSON object") from exc
    return value


def entities_param(params: JSON, name: str) -> list[JSON] | None:
    value = json_param(params, name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(e, dict) and {"type", "offset", "length"} <= e.keys() for e in value
    ):
        raise bad_request(f"can't parse {name} JSON object")
    return [dict(e) for e in value]
