"""Internal notes, and the ticket's history as agents read it with /history.

A note is an agent's topic message that starts with `agents.note_prefix` (or is a
/note command): it is stored on the ticket and never reaches the customer. The bot marks
it with a reaction, so the agent sees it stayed inside. A reaction puts no message into
the group: the rate limiter does not count it (bot.delivery.ratelimit) and Telegram does
not document it as a send; it still goes after the customers' words (PRIORITY_CARD).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from html import escape

import structlog

from bot.services.tickets import notify_agents
from storage import agents, keys, notes, outbox, tickets
from storage.db import Conn
from storage.outbox import PRIORITY_CARD, Outgoing, Purpose
from storage.tickets import Event, Ticket

log = structlog.stdlib.get_logger(__name__)

# From Telegram's list of reaction emoji (ReactionTypeEmoji): "written down".
NOTE_MARK = "✍"

# A /command at the start of a text is a command, whatever the note prefix is.
_COMMAND = re.compile(r"^/[A-Za-z0-9_]")


def note_text(text: str | None, prefix: str) -> str | None:
    """What a note says without its prefix, if `text` (a text or a caption) is a note.

    The prefix alone is a note too, with nothing to say: whatever an agent marked as
    internal never goes to the customer, even by mistake.
    """
    if text is None or not text.startswith(prefix) or _COMMAND.match(text):
        return None
    return text.removeprefix(prefix).strip()


async def react(db: Conn, chat_id: int, message_id: int, emoji: str, key: str) -> None:
    """Queue the bot's reaction on a message in the support group.

    It is not a ticket's row (no ticket_id): a failure to react must not send the sender
    to recover the ticket's topic, nor can a newer reaction of the ticket supersede it.
    """
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.REACTION,
            method="setMessageReaction",
            params={"message_id": message_id, "reaction": [{"type": "emoji", "emoji": emoji}]},
            chat_id=chat_id,
            priority=PRIORITY_CARD,
        ),
    )


async def keep_note(
    db: Conn,
    ticket: Ticket,
    author_id: int,
    chat_id: int,
    message_id: int,
    text: str,
    media_group_id: str | None = None,
) -> bool:
    """Store a note on the ticket and mark its message; False if it was stored already."""
    if media_group_id is not None:
        await notes.mark_album(db, chat_id, media_group_id)
    note_id = await notes.add(db, ticket.id, author_id, chat_id, message_id, text)
    if note_id is None:
        return False
    await react(db, chat_id, message_id, NOTE_MARK, keys.note(chat_id, message_id, "mark"))
    log.info("internal note kept", note_id=note_id, author_id=author_id)
    return True


async def is_note_album(db: Conn, chat_id: int, media_group_id: str | None) -> bool:
    """Whether an album part belongs to an album whose caption made it a note."""
    return media_group_id is not None and await notes.is_note_album(db, chat_id, media_group_id)


# --- /history -------------------------------------------------------------------------

HISTORY_LIMIT = 50


def _when(stamp: str) -> str:
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M")


async def _names(db: Conn, ticket: Ticket, events: list[Event]) -> Mapping[int | None, str]:
    """How each person named in the events is called: agents by name, the ticket's
    customer as "customer", nobody (an automatic change) as "the desk"."""
    ids: set[int] = set()
    for event in events:
        if event.actor_id is not None:
            ids.add(event.actor_id)
        if event.kind in {"assigned", "unassigned"}:
            ids.update(
                v for v in (event.detail.get("from"), event.detail.get("to")) if isinstance(v, int)
            )
    names: dict[int | None, str] = {None: "the desk"}
    for user_id in ids:
        if user_id == ticket.customer_id:
            names[user_id] = "customer"
            continue
        agent = await agents.get(db, user_id)
        names[user_id] = agent.full_name if agent is not None else f"user {user_id}"
    return names


def _change(event: Event, names: Mapping[int | None, str]) -> str:
    """What an event changed, in a few words."""
    before, after = event.detail.get("from"), event.detail.get("to")
    if event.kind in {"assigned", "unassigned"}:
        old = names.get(before, "nobody") if isinstance(before, int) else "nobody"
        new = names.get(after, "nobody") if isinstance(after, int) else "nobody"
        return f"assignee: {old} → {new}"
    if event.kind == "priority":
        return f"priority: {before} → {after}"
    if "from" in event.detail and "to" in event.detail:
        if event.kind == after:  # a status change records its new status as its kind
            return f"status: {before} → {after}"
        return f"{event.kind}: {before} → {after}"
    return event.kind.replace("_", " ")


async def history_text(db: Conn, ticket: Ticket) -> str:
    """The ticket's history as one compact Telegram-HTML message, times in UTC."""
    events = await tickets.history(db, ticket.id, HISTORY_LIMIT)
    names = await _names(db, ticket, events)
    scope = "UTC" if len(events) < HISTORY_LIMIT else f"UTC, the latest {HISTORY_LIMIT} changes"
    lines = [f"📜 <b>History of ticket #{ticket.id}</b> ({scope})"]
    for event in events:
        who = names.get(event.actor_id, "the desk")
        lines.append(
            f"<code>{_when(event.created_at)}</code> {escape(_change(event, names))}"
            f" · {escape(who)}"
        )
    if not events:
        lines.append("Nothing has happened yet.")
    return "\n".join(lines)


async def show_history(db: Conn, ticket: Ticket, key: str) -> None:
    """Post the ticket's history in its topic."""
    await notify_agents(db, ticket, await history_text(db, ticket), key)
