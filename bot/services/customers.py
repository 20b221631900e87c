"""What a customer can do from the private chat besides talking: list their tickets,
close one, start a new one, come back after a closing.

A customer only ever reaches their own tickets: every function here starts from the
customer's id, never from a ticket number they typed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

import structlog

from bot.config import Settings
from bot.metrics import Metrics
from bot.services import workflow
from bot.services.agents import Actor
from bot.services.tickets import notify_agents, render
from storage import keys, tickets
from storage.db import Conn, from_iso
from storage.tickets import Status, Ticket

log = structlog.stdlib.get_logger(__name__)

STATUS_LIMIT = 10  # tickets listed by /status, newest first
SUBJECT_ROOM = 60


def _date(iso: str | None) -> str:
    return from_iso(iso).strftime("%Y-%m-%d %H:%M UTC") if iso else "?"


def _status_words(settings: Settings, ticket: Ticket) -> str:
    texts = settings.texts
    if ticket.status is Status.OPEN:
        return render(texts.status_open, when=_date(ticket.created_at))
    if ticket.status is Status.PENDING:
        return render(texts.status_pending, when=_date(ticket.first_response_at))
    if ticket.status is Status.RESOLVED:
        return render(texts.status_resolved, when=_date(ticket.resolved_at))
    return render(texts.status_closed, when=_date(ticket.closed_at))


async def status_text(db: Conn, settings: Settings, customer_id: int) -> str:
    """/status: the customer's latest tickets, each with where it stands (theirs only)."""
    found = await tickets.tickets_of_customer(db, customer_id, limit=STATUS_LIMIT)
    if not found:
        return settings.texts.no_tickets
    lines = [settings.texts.status_header]
    for ticket in found:
        subject = " ".join(ticket.subject.split()) or "…"
        if len(subject) > SUBJECT_ROOM:
            subject = subject[: SUBJECT_ROOM - 1].rstrip() + "…"
        # The status words are rendered (and escaped) already: format, not render.
        lines.append(
            settings.texts.status_line.format(
                ticket=ticket.id, subject=escape(subject), status=_status_words(settings, ticket)
            )
        )
    return "\n".join(lines)


async def close_by_customer(
    db: Conn,
    settings: Settings,
    ticket: Ticket,
    customer: Actor,
    metrics: Metrics | None,
    *,
    starting_over: bool = False,
) -> Ticket | None:
    """The customer closes their ticket: card and topic follow, the agents get a note
    saying who closed it. /close tells the customer (and asks for a rating) the usual
    way; `starting_over` (/new) does not, the customer is told by the caller in one line.
    None if it was closed already."""
    closed = await workflow.change_status(
        db,
        settings,
        ticket,
        Status.CLOSED,
        customer,
        tell_customer=not starting_over,
        metrics=metrics,
    )
    if closed is None:
        return None
    why = " to open a new one (/new)" if starting_over else " (/close)"
    # Keyed by the closing itself, which happens once.
    key = keys.ticket_closed(ticket.id, closed.closed_at, "by_customer")
    await notify_agents(db, closed, f"🔒 The customer closed this ticket{why}.", key)
    log.info("ticket closed by its customer", ticket_id=ticket.id, starting_over=starting_over)
    return closed


async def reopen_recent(
    db: Conn, settings: Settings, customer: Actor, metrics: Metrics | None
) -> Ticket | None:
    """`tickets.after_closed = "reopen"`: reopen the customer's last closed ticket if it
    was closed within `tickets.reopen_within_days` (0: whatever its age). None if there
    is none to reopen (a new ticket starts instead)."""
    if customer.user_id is None:
        return None
    last = await tickets.last_closed_ticket_of(db, customer.user_id)
    if last is None or not _recent(settings, last):
        return None
    return await workflow.change_status(db, settings, last, Status.OPEN, customer, metrics=metrics)


def _recent(settings: Settings, ticket: Ticket) -> bool:
    days = settings.tickets.reopen_within_days
    if days == 0:
        return True
    closed = from_iso(ticket.closed_at) if ticket.closed_at else None
    return closed is not None and datetime.now(UTC) - closed <= timedelta(days=days)


async def follows(db: Conn, customer_id: int) -> int | None:
    """The ticket a new one follows: the customer's last closed ticket, when they have no
    other active one (with one active, the new ticket stands beside it, it follows nothing)."""
    if await tickets.open_ticket_of(db, customer_id) is not None:
        return None
    last = await tickets.last_closed_ticket_of(db, customer_id)
    return last.id if last is not None else None
