"""What a visitor may do in the playground, each checked before it reaches the embedded
Telegram: a customer writes, presses a button or sends a burst; an agent writes in a topic
(or replies to a message there) or presses a card's button.

Each action takes the request's JSON object and returns the answer's; a wrong request
raises `ActionError` with a sentence the page shows as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.fake_telegram import BOT_ID, GENERAL_TOPIC_ID, GROUP_ID, MAX_TEXT_LENGTH, FakeTelegram
from bot.sandbox import AGENTS, CUSTOMERS, Person

JSONDict = dict[str, Any]

#: A burst's size when the request names none, and the most one may ask for.
BURST_DEFAULT = 30
BURST_MAX = 100


class ActionError(ValueError):
    """The request cannot be done as asked; the message says why, in one sentence."""


def _integer(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ActionError(f'"{key}" must be a whole number')
    return value


def _optional_integer(body: Mapping[str, Any], key: str) -> int | None:
    return None if body.get(key) is None else _integer(body, key)


def _text(body: Mapping[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ActionError('"text" must be a non-empty string')
    if len(text) > MAX_TEXT_LENGTH:
        raise ActionError(f'"text" is longer than Telegram\'s {MAX_TEXT_LENGTH} characters')
    return text


def _data(body: Mapping[str, Any]) -> str:
    data = body.get("data")
    if not isinstance(data, str) or not data:
        raise ActionError('"data" must be the button\'s callback data')
    return data


def _person(body: Mapping[str, Any], key: str, cast: tuple[Person, ...]) -> Person:
    user_id = _integer(body, key)
    for person in cast:
        if person.user_id == user_id:
            return person
    known = ", ".join(str(person.user_id) for person in cast)
    raise ActionError(f"unknown {key} {user_id} (the {key}s are {known})")


def customer(body: Mapping[str, Any]) -> Person:
    """The customer a request names (one of the sandbox's cast)."""
    return _person(body, "customer", CUSTOMERS)


def agent(body: Mapping[str, Any]) -> Person:
    """The agent a request names (one of the sandbox's cast)."""
    return _person(body, "agent", AGENTS)


def _message_in(
    telegram: FakeTelegram, chat_id: int, message_id: int, thread_id: int | None = None
) -> Mapping[str, Any]:
    """A message of that chat (and, with `thread_id`, of that topic), or ActionError."""
    for message in telegram.chat_messages(chat_id, thread_id):
        if message["message_id"] == message_id:
            return message
    where = "this chat" if thread_id is None else f"topic {thread_id}"
    raise ActionError(f"there is no message {message_id} in {where}")


def _check_button(message: Mapping[str, Any], data: str) -> None:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    if not any(button.get("callback_data") == data for row in rows for button in row):
        raise ActionError(f"message {message['message_id']} has no button with that data")


def customer_sends(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
    """The customer writes to the bot, as a reply if `reply_to` names a message."""
    person, text = customer(body), _text(body)
    reply_to = _optional_integer(body, "reply_to")
    if reply_to is not None:
        _message_in(telegram, person.user_id, reply_to)
    message = telegram.send_private(person.user_id, text, reply_to=reply_to)
    return {"ok": True, "message_id": message["message_id"]}


def customer_presses(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
    """The customer presses a button of one of the bot's messages in their chat."""
    person, data = customer(body), _data(body)
    message = _message_in(telegram, person.user_id, _integer(body, "message_id"))
    _check_button(message, data)
    query = telegram.press_button(person.user_id, person.user_id, message["message_id"], data)
    return {"ok": True, "query_id": query["id"]}


def customer_bursts(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
    """The customer sends `count` messages at once (30 unless said): the group's budget
    and the desk's pacing show in the counters."""
    person = customer(body)
    count = BURST_DEFAULT if body.get("count") is None else _integer(body, "count")
    if not 1 <= count <= BURST_MAX:
        raise ActionError(f'"count" must be from 1 to {BURST_MAX}')
    for number in range(1, count + 1):
        telegram.send_private(person.user_id, f"Burst message {number} of {count}")
    return {"ok": True, "sent": count}


def _topic(telegram: FakeTelegram, body: Mapping[str, Any]) -> int:
    """The topic a request names: General (1) or an open topic of the agents' group."""
    thread_id = _integer(body, "topic")
    if thread_id == GENERAL_TOPIC_ID:
        return thread_id
    topic = telegram.topics.get(GROUP_ID, {}).get(thread_id)
    if topic is None or topic.deleted:
        raise ActionError(f"unknown topic {thread_id}")
    if topic.closed:
        # As in Telegram, where only the group's admins may write in a closed topic.
        raise ActionError(f'topic {thread_id} ("{topic.name}") is closed')
    return thread_id


def agent_sends(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
    """An agent writes in a topic, as a reply if `reply_to` names a message there."""
    person, text = agent(body), _text(body)
    thread_id = _topic(telegram, body)
    reply_to = _optional_integer(body, "reply_to")
    if reply_to is not None:
        _message_in(telegram, GROUP_ID, reply_to, thread_id)
    message = telegram.send_group(
        person.user_id,
        text,
        thread_id=None if thread_id == GENERAL_TOPIC_ID else thread_id,
        reply_to=reply_to,
    )
    return {"ok": True, "message_id": message["message_id"]}


def agent_presses(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
    """An agent presses a button of one of the bot's messages in the group (a card's)."""
    person, data = agent(body), _data(body)
    message = _message_in(telegram, GROUP_ID, _integer(body, "message_id"))
    if (message.get("from") or {}).get("id") != BOT_ID:
        raise ActionError(f"message {message['message_id']} is not the bot's")
    _check_button(message, data)
    query = telegram.press_button(person.user_id, GROUP_ID, message["message_id"], data)
    return {"ok": True, "query_id": query["id"]}
