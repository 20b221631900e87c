"""Ticket rules: open a ticket with its topic and card, relay both ways.

Every function runs inside the update's transaction and says what Telegram must be
told by writing outbox rows; the sender delivers them after the commit.
"""

from __future__ import annotations

from html import escape

import structlog

from bot.config import Settings
from bot.services import cards
from bot.services.incoming import Incoming
from storage import agents, keys, messages, outbox, ratings, tickets
from storage.db import Conn, from_iso
from storage.messages import Direction
from storage.outbox import (
    PRIORITY_CUSTOMER,
    PRIORITY_NOTICE,
    PRIORITY_RECOVERY,
    Outgoing,
    Purpose,
)
from storage.tickets import Customer, Ticket

log = structlog.stdlib.get_logger(__name__)


def render(template: str, **values: object) -> str:
    """Fill a Telegram-HTML template; the values are escaped, the template is not."""
    return template.format(**{name: escape(str(value)) for name, value in values.items()})


async def remember_customer(db: Conn, message: Incoming) -> Customer:
    """Save the customer's profile as Telegram shows it now.

    A customer we could not write to (blocked bot) wrote to us, so they can be written
    to again.
    """
    customer = await tickets.save_customer(
        db, message.sender_id, message.sender_name, message.sender_username, message.language_code
    )
    if customer.unreachable:
        await tickets.set_unreachable(db, customer.user_id, None)
    return customer


async def find_customer(db: Conn, user_id: int) -> Customer | None:
    return await tickets.get_customer(db, user_id)


async def open_ticket_of(db: Conn, customer_id: int) -> Ticket | None:
    """The customer's open ticket, if they have one."""
    return await tickets.open_ticket_of(db, customer_id)


async def ticket_of_topic(db: Conn, group_chat_id: int, thread_id: int) -> Ticket | None:
    """The ticket whose forum topic this is, if any."""
    return await tickets.ticket_by_topic(db, group_chat_id, thread_id)


async def answer_customer(
    db: Conn, settings: Settings, ticket: Ticket, message: Incoming
) -> float | None:
    """Relay an agent's message to the customer; return the first response time in
    seconds if this is the ticket's first answer."""
    first = not await messages.has_reply_to_customer(db, ticket.id)
    await relay(db, settings, ticket, message, "to_customer")
    if not first:
        return None
    return max(0.0, (from_iso(message.date) - from_iso(ticket.created_at)).total_seconds())


async def create_topic(
    db: Conn,
    settings: Settings,
    ticket: Ticket,
    customer: Customer,
    key: str,
    priority: int = PRIORITY_CUSTOMER,
) -> str:
    """Queue the creation of the ticket's forum topic; return the topic's name."""
    assignee = await agents.get(db, ticket.assignee_id) if ticket.assignee_id else None
    name = cards.topic_name(
        ticket.id,
        customer.full_name,
        ticket.subject,
        ticket.status,
        assignee.full_name if assignee else None,
    )
    await tickets.set_topic_name(db, ticket.id, name)
    topic: dict[str, object] = {"name": name}
    if settings.support.topic_icon_color:
        topic["icon_color"] = settings.support.topic_icon_color
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.TOPIC,
            method="createForumTopic",
            params=topic,
            chat_id=ticket.group_chat_id,
            ticket_id=ticket.id,
            priority=priority,
        ),
    )
    return str(topic["name"])


async def post_card(
    db: Conn,
    ticket: Ticket,
    customer: Customer,
    key: str,
    *,
    postscript: str = "",
    priority: int = PRIORITY_CUSTOMER,
) -> None:
    """Queue the ticket card into its topic, and the answers in full if the card shortened them."""
    assignee = await agents.get(db, ticket.assignee_id) if ticket.assignee_id else None
    previous = (
        await tickets.get_ticket(db, ticket.previous_ticket_id)
        if ticket.previous_ticket_id
        else None
    )
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.CARD,
            method="sendMessage",
            params={
                "text": cards.card_text(
                    ticket, customer, assignee, previous, await ratings.get(db, ticket.id)
                )
                + postscript,
                "parse_mode": "HTML",
                "reply_markup": {"inline_keyboard": cards.card_buttons(ticket)},
            },
            in_topic=True,
            chat_id=ticket.group_chat_id,
            ticket_id=ticket.id,
            priority=priority,
        ),
    )
    in_full = cards.full_answers(ticket, customer)
    if in_full:
        await notify_agents(db, ticket, in_full, keys.card_answers(key), priority=priority)


async def relay(
    db: Conn, settings: Settings, ticket: Ticket, message: Incoming, direction: Direction
) -> None:
    """Record `message` and queue its copy to the other side of the ticket.

    Album parts arrive as separate updates a moment apart; they share one outbox row,
    held back until no new part has come for `delivery.album_wait` seconds.
    """
    link = await messages.add_message(
        db,
        ticket_id=ticket.id,
        direction=direction,
        source_chat_id=message.chat_id,
        source_message_id=message.message_id,
        sender_id=message.sender_id,
        kind=message.kind,
        text=message.text,
        media_group_id=message.media_group_id,
        sent_at=message.date,
    )
    if link is None:
        log.info("message already relayed", message_id=message.message_id)
        return
    to_agents = direction == "to_agents"
    target = ticket.group_chat_id if to_agents else ticket.customer_id
    params: dict[str, object] = {"from_chat_id": message.chat_id}
    if message.media_group_id:
        key = keys.album(message.chat_id, message.media_group_id)
        created = await outbox.enqueue(
            db,
            Outgoing(
                key=key,
                purpose=Purpose.ALBUM,
                method="copyMessages",
                params=params,
                chat_id=target,
                ticket_id=ticket.id,
                delay=settings.delivery.album_wait,
                in_topic=to_agents,
                reply_to=message.reply_to_message_id,
                album=message.media_group_id,
            ),
        )
        if created is None:
            await outbox.hold_back(db, key, settings.delivery.album_wait)
        return
    params["message_id"] = message.message_id
    await outbox.enqueue(
        db,
        Outgoing(
            key=keys.relay(message.chat_id, message.message_id),
            purpose=Purpose.RELAY,
            method="copyMessage",
            params=params,
            chat_id=target,
            ticket_id=ticket.id,
            message_id=link,
            priority=PRIORITY_CUSTOMER,
            in_topic=to_agents,
            reply_to=message.reply_to_message_id,
        ),
    )


async def replace_topic(db: Conn, settings: Settings, ticket: Ticket, tag: str) -> bool:
    """The ticket's topic is gone: forget it, queue a new one and its card first in line.

    `tag` makes the rows' keys unique to this recovery. False (nothing queued) if the
    ticket's customer is unknown.
    """
    customer = await tickets.get_customer(db, ticket.customer_id)
    if customer is None:
        return False
    log.warning(
        "the ticket's topic was deleted; creating a new one",
        ticket_id=ticket.id,
        thread_id=ticket.thread_id,
    )
    await tickets.clear_topic(db, ticket.id)
    history = await tickets.count_messages(db, ticket.id)
    await create_topic(db, settings, ticket, customer, keys.part(tag, "topic"), PRIORITY_RECOVERY)
    summary = (
        f"\n\n<i>This topic replaces one that was deleted. The ticket has {history} "
        "relayed messages so far; new ones continue here.</i>"
    )
    await post_card(
        db, ticket, customer, keys.part(tag, "card"), postscript=summary, priority=PRIORITY_RECOVERY
    )
    return True


async def notify_customer(db: Conn, ticket: Ticket, text: str, key: str) -> None:
    """Queue a message from the desk to the ticket's customer."""
    await say(db, ticket.customer_id, text, key, ticket_id=ticket.id)


Buttons = tuple[tuple[str, str], ...]  # (label, callback data), one a row


def _message(text: str, buttons: Buttons) -> dict[str, object]:
    """sendMessage's parameters for a Telegram-HTML text with optional callback buttons."""
    params: dict[str, object] = {"text": text, "parse_mode": "HTML"}
    if buttons:
        params["reply_markup"] = {
            "inline_keyboard": [[{"text": label, "callback_data": data}] for label, data in buttons]
        }
    return params


async def notify_agents(
    db: Conn,
    ticket: Ticket,
    text: str,
    key: str,
    *,
    priority: int = PRIORITY_NOTICE,
    buttons: Buttons = (),
) -> None:
    """Queue a Telegram-HTML note for the agents in the ticket's topic."""
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.NOTICE,
            method="sendMessage",
            params=_message(text, buttons),
            in_topic=True,
            chat_id=ticket.group_chat_id,
            ticket_id=ticket.id,
            priority=priority,
        ),
    )


async def say(
    db: Conn,
    chat_id: int,
    text: str,
    key: str,
    *,
    buttons: Buttons = (),
    ticket_id: int | None = None,
) -> None:
    """Queue a Telegram-HTML message to a chat, with optional callback buttons."""
    params = {"chat_id": chat_id, **_message(text, buttons)}
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.NOTICE,
            method="sendMessage",
            params=params,
            chat_id=chat_id,
            ticket_id=ticket_id,
            priority=PRIORITY_NOTICE,
        ),
    )


# The Bot API call of each action on a ticket's topic.
TOPIC_ACTIONS = {
    Purpose.TOPIC_CLOSE: "closeForumTopic",
    Purpose.TOPIC_REOPEN: "reopenForumTopic",
    Purpose.TOPIC_PROBE: "reopenForumTopic",  # see bot.housekeeping.reconcile
}


async def topic_action(db: Conn, ticket: Ticket, purpose: Purpose, key: str, priority: int) -> None:
    """Queue a call on the ticket's topic (close, reopen, probe), aimed at it at send time."""
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=purpose,
            method=TOPIC_ACTIONS[purpose],
            params={},
            chat_id=ticket.group_chat_id,
            ticket_id=ticket.id,
            priority=priority,
            in_topic=True,
        ),
    )


PHOTO_LIMIT_MB = 10
FILE_LIMIT_MB = 50
LOCAL_FILE_LIMIT_MB = 2000


def oversize_note(settings: Settings, message: Incoming) -> str | None:
    """The note to send instead of relaying a file over the Bot API's limits, if it is one."""
    if message.file_size is None:
        return None
    if settings.telegram.local_api:
        limit = LOCAL_FILE_LIMIT_MB
    else:
        limit = PHOTO_LIMIT_MB if message.kind == "photo" else FILE_LIMIT_MB
    size = message.file_size / 1_000_000
    if size <= limit:
        return None
    return render(settings.texts.file_too_large, size=f"{size:.0f}", limit=limit)
