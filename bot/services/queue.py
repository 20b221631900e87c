"""What agents read in the group: the queue of unanswered tickets (/queue) and their own
tickets (/mine), each with a link to its topic. Telegram HTML, every value escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.services import cards
from storage import tickets
from storage.db import Conn, from_iso
from storage.tickets import Ticket

LIST_LIMIT = 20  # tickets shown in one answer; the rest are counted
LABEL_LIMIT = 64  # characters of a topic's name shown as its link


def waited(since: str, now: datetime) -> str:
    """How long since `since`, roughly: `45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`."""
    seconds = max(0, int((now - from_iso(since)).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def linked(ticket: Ticket) -> str:
    """The ticket as its topic is named, linked to the topic once it exists."""
    label = ticket.topic_name or f"#{ticket.id}"
    if len(label) > LABEL_LIMIT:
        label = label[: LABEL_LIMIT - 1].rstrip() + "…"
    if ticket.thread_id is None:
        return escape(label)
    link = cards.topic_link(ticket.group_chat_id, ticket.thread_id)
    return f'<a href="{escape(link)}">{escape(label)}</a>'


def _more(total: int, shown: int) -> list[str]:
    return [f"…and {total - shown} more."] if total > shown else []


async def queue_text(db: Conn, now: datetime) -> str:
    """/queue: active tickets nobody has answered yet, the longest waiting first."""
    total = await tickets.count_unanswered(db)
    if total == 0:
        return "✅ No ticket is waiting for a first answer."
    waiting = await tickets.unanswered(db, LIST_LIMIT)
    lines = [f"<b>Waiting for a first answer: {total}</b>, the longest first"]
    for number, ticket in enumerate(waiting, 1):
        lines.append(f"{number}. {linked(ticket)} · {waited(ticket.created_at, now)}")
    return "\n".join(lines + _more(total, len(waiting)))


async def mine_text(db: Conn, agent_id: int, name: str) -> str:
    """/mine: the active tickets assigned to an agent, oldest first, with their status."""
    held = await tickets.assigned_to(db, agent_id)
    if not held:
        return f"{escape(name)}, no active ticket is assigned to you."
    lines = [f"<b>{escape(name)}, your active tickets: {len(held)}</b>"]
    for ticket in held[:LIST_LIMIT]:
        unanswered = "" if ticket.first_response_at else " · not answered yet"
        lines.append(f"• {linked(ticket)} · {ticket.status.value}{unanswered}")
    return "\n".join(lines + _more(len(held), LIST_LIMIT))
