"""The embedded Telegram's world as the playground page sees it: plain JSON.

Messages keep Telegram's text and entities (UTF-16 offsets, which is what JavaScript
strings count in), so the page can render bold, code and links the way Telegram would.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.fake_telegram import BOT_ID, GROUP_ID, MESSAGE_KINDS, FakeTelegram
from bot.sandbox import AGENTS, CUSTOMERS, Person, Sandbox
from storage import deadletters, tickets

JSONDict = dict[str, Any]

#: The most messages of one chat (or topic) the page is sent: the latest ones.
MESSAGES_SHOWN = 300
#: How many of the latest Bot API calls the page's wire strip shows.
WIRE_SHOWN = 14
#: Telegram's group budget, per window (the window is 60 s divided by the sandbox's scale).
GROUP_BUDGET = 20
# Methods that say nothing about the conversation: the long poll itself.
_UNSHOWN_METHODS = frozenset({"getupdates"})
_MEDIA_KINDS = tuple(kind for kind in MESSAGE_KINDS if kind != "text")
_SERVICE_TEXT = {
    "forum_topic_closed": "topic closed",
    "forum_topic_reopened": "topic reopened",
    "new_chat_members": "joined the group",
    "left_chat_member": "left the group",
    "pinned_message": "pinned a message",
    "general_forum_topic_hidden": "General topic hidden",
    "general_forum_topic_unhidden": "General topic shown",
}


def person_view(person: Person) -> JSONDict:
    return {"id": person.user_id, "name": person.name, "username": person.username}


def user_name(user: Mapping[str, Any]) -> str:
    """A Telegram user's display name, as a client shows it."""
    if user.get("id") == BOT_ID:
        return "TopicDesk"
    parts = [str(user.get("first_name") or ""), str(user.get("last_name") or "")]
    return " ".join(part for part in parts if part) or "Deleted account"


def _service_text(message: Mapping[str, Any]) -> str | None:
    """A service message's line ("topic created: …"), None for an ordinary message."""
    created = message.get("forum_topic_created")
    if isinstance(created, dict):
        return f"topic created: {created.get('name', '')}"
    edited = message.get("forum_topic_edited")
    if isinstance(edited, dict):
        return f"topic renamed: {edited.get('name', '')}"
    return next((text for key, text in _SERVICE_TEXT.items() if key in message), None)


def _buttons(message: Mapping[str, Any]) -> list[list[JSONDict]]:
    """The inline keyboard: rows of {text, data}; data is None for a button of another kind."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [
        [
            {"text": str(button.get("text", "")), "data": button.get("callback_data")}
            for button in row
        ]
        for row in rows
    ]


def _quoted(reply: Mapping[str, Any]) -> JSONDict | None:
    """The quoted line of a reply; None for the topic's root, which every topic message
    answers implicitly in Telegram's shapes."""
    if "forum_topic_created" in reply:
        return None
    text = reply.get("text") or reply.get("caption") or _media_kind(reply) or ""
    return {
        "id": reply.get("message_id"),
        "from": user_name(reply.get("from") or {}),
        "text": str(text)[:120],
    }


def _media_kind(message: Mapping[str, Any]) -> str | None:
    return next((kind for kind in _MEDIA_KINDS if kind in message), None)


def message_view(message: Mapping[str, Any]) -> JSONDict:
    """One stored message, for the page."""
    sender = message.get("from") or {}
    reply = message.get("reply_to_message")
    return {
        "id": message["message_id"],
        "from": {
            "id": sender.get("id"),
            "name": user_name(sender),
            "bot": bool(sender.get("is_bot")),
        },
        "date": message.get("date"),
        "text": message.get("text") or message.get("caption") or "",
        "entities": message.get("entities") or message.get("caption_entities") or [],
        "media": _media_kind(message),
        "service": _service_text(message),
        "reply_to": _quoted(reply) if isinstance(reply, dict) else None,
        "buttons": _buttons(message),
        "edited": "edit_date" in message,
    }


def _latest(messages: Sequence[Mapping[str, Any]]) -> list[JSONDict]:
    return [message_view(message) for message in messages[-MESSAGES_SHOWN:]]


@dataclass
class Wire:
    """What went over the wire to the embedded Telegram: the latest calls and the relays,
    counted once per call as the fake's call log grows."""

    recent: deque[JSONDict] = field(default_factory=lambda: deque(maxlen=WIRE_SHOWN))
    to_agents: int = 0
    to_customers: int = 0
    _seen: int = 0

    def catch_up(self, telegram: FakeTelegram) -> None:
        """Look at the calls answered since the last look."""
        calls = telegram.calls
        if len(calls) < self._seen:  # a new log: start over
            self._seen = 0
        names = {person.user_id: person.first_name for person in (*CUSTOMERS, *AGENTS)}
        now_wall, now_fake = time.time(), telegram.clock()
        for call in calls[self._seen :]:
            if call.method.lower() in _UNSHOWN_METHODS:
                continue
            chat_id = call.params.get("chat_id")
            if call.status == 200 and call.method in {"copyMessage", "copyMessages"}:
                self._count_relay(call.params, chat_id)
            self.recent.appendleft(
                {
                    "method": call.method,
                    "chat": _chat_label(chat_id, call.params, names),
                    "status": call.status,
                    "retry_after": (call.response.get("parameters") or {}).get("retry_after"),
                    # The wall clock, fixed once, so an unchanged wire hashes the same.
                    "at": round((now_wall - (now_fake - call.at)) * 1000),
                }
            )
        self._seen = len(calls)

    def _count_relay(self, params: Mapping[str, Any], chat_id: object) -> None:
        ids = params.get("message_ids")
        count = len(ids) if isinstance(ids, list) else 1
        from_chat = params.get("from_chat_id")
        if chat_id == GROUP_ID and from_chat != GROUP_ID:
            self.to_agents += count
        elif chat_id != GROUP_ID and from_chat == GROUP_ID:
            self.to_customers += count


def _chat_label(chat_id: object, params: Mapping[str, Any], names: Mapping[int, str]) -> str:
    if chat_id == GROUP_ID:
        thread = params.get("message_thread_id")
        return f"group · topic {thread}" if thread else "group"
    if isinstance(chat_id, int) and chat_id in names:
        return names[chat_id]
    return "" if chat_id is None else str(chat_id)


def _topic_of(message: Mapping[str, Any]) -> int | None:
    """The topic a group message belongs to; None for the General topic."""
    if message.get("is_topic_message"):
        return int(message["message_thread_id"])
    return None


async def snapshot(
    sandbox: Sandbox, wire: Wire, customer_id: int, notices: Iterable[JSONDict]
) -> JSONDict:
    """Everything the page shows, with `customer_id`'s private chat."""
    telegram = sandbox.telegram
    daemon = sandbox.daemon
    database = daemon.database if daemon is not None else None
    wire.catch_up(telegram)

    by_topic: dict[int | None, list[Mapping[str, Any]]] = {}
    for message in telegram.chat_messages(GROUP_ID):
        by_topic.setdefault(_topic_of(message), []).append(message)

    open_tickets: dict[int, int] = {}
    topic_tickets: dict[int, tickets.Ticket] = {}
    dead_letters = 0
    if database is not None:
        async with database.reader() as db:
            for person in CUSTOMERS:
                ticket = await tickets.open_ticket_of(db, person.user_id)
                if ticket is not None:
                    open_tickets[person.user_id] = ticket.id
            for thread_id in telegram.topics.get(GROUP_ID, {}):
                found = await tickets.ticket_by_topic(db, GROUP_ID, thread_id)
                if found is not None:
                    topic_tickets[thread_id] = found
            dead_letters = await deadletters.count_open(db)

    topics = [
        {
            "thread_id": 1,
            "name": "General",
            "closed": False,
            "general": True,
            "ticket": None,
            "card": None,
            "messages": _latest(by_topic.get(None, [])),
        }
    ]
    for thread_id, topic in telegram.topics.get(GROUP_ID, {}).items():
        if topic.deleted:
            continue
        messages = by_topic.get(thread_id, [])
        ticket = topic_tickets.get(thread_id)
        card = next(
            (
                m
                for m in messages
                if ticket is not None and m["message_id"] == ticket.card_message_id
            ),
            None,
        )
        topics.append(
            {
                "thread_id": thread_id,
                "name": topic.name,
                "closed": topic.closed,
                "general": False,
                "icon_color": topic.icon_color,
                "ticket": None
                if ticket is None
                else {"id": ticket.id, "status": ticket.status, "customer": ticket.customer_id},
                "card": None if card is None else message_view(card),
                "messages": _latest(messages),
            }
        )

    window = 60.0 / sandbox.scale
    return {
        "scale": sandbox.scale,
        "customers": [
            {**person_view(person), "ticket": open_tickets.get(person.user_id)}
            for person in CUSTOMERS
        ],
        "agents": [person_view(person) for person in AGENTS],
        "customer": customer_id,
        "chat": _latest(telegram.chat_messages(customer_id)),
        "group": {"id": GROUP_ID, "title": "Support desk"},
        "topics": topics,
        "counters": {
            "outbox_depth": await sandbox.outbox_depth(),
            "too_many_requests": telegram.too_many_requests,
            "relayed_to_agents": wire.to_agents,
            "relayed_to_customers": wire.to_customers,
            "dead_letters": dead_letters,
            "updates_pending": len(telegram.pending_updates),
            "group_sends": telegram.sends_in_window(GROUP_ID, window),
            "group_budget": GROUP_BUDGET,
            "group_window": window,
        },
        "wire": list(wire.recent),
        "notices": list(notices),
    }
