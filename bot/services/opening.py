"""Opening a ticket: the one step that brings the desk's rules together.

It sits above the ticket rules (bot.services.tickets), assignment and escalation, which
all build on those rules, so that none of them has to import another's caller.
"""

from __future__ import annotations

import structlog

from bot.config import Settings
from bot.services import assignment, deadlines
from bot.services import tickets as desk
from bot.services.incoming import Incoming
from storage import keys, tickets
from storage.db import Conn
from storage.tickets import Answer, Customer, Ticket

log = structlog.stdlib.get_logger(__name__)


async def open_ticket(
    db: Conn,
    settings: Settings,
    customer: Customer,
    answers: list[Answer],
    started_at: str,
    kept: list[Incoming],
    *,
    previous_ticket_id: int | None = None,
) -> Ticket:
    """Open a ticket: its topic, its card, what the customer sent meanwhile, a confirmation.
    `previous_ticket_id`: the closed ticket it follows (its card links that topic)."""
    subject = next((a.value for a in answers if a.value), "")
    ticket = await tickets.open_ticket(
        db,
        customer.user_id,
        subject=subject,
        answers=answers,
        group_chat_id=settings.support.group_id,
        created_at=started_at,
        previous_ticket_id=previous_ticket_id,
    )
    structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
    ticket = await assignment.assign_new(db, settings, ticket)  # before the topic and card
    name = await desk.create_topic(db, settings, ticket, customer, keys.ticket_topic(ticket.id))
    await desk.post_card(db, ticket, customer, keys.ticket_card(ticket.id))
    for message in kept:
        await desk.relay(db, settings, ticket, message, "to_agents")
    await desk.notify_customer(
        db,
        ticket,
        desk.render(settings.texts.ticket_created, ticket=ticket.id),
        key=keys.ticket_created(ticket.id),
    )
    await deadlines.out_of_office(db, settings, ticket)  # after the confirmation
    await deadlines.reschedule(db, settings, ticket.id)  # the SLA clocks start
    log.info("ticket opened", customer_id=customer.user_id, topic=name)
    return ticket
