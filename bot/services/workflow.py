"""A ticket's life in the desk: status, priority, assignee, and how the topic shows them.

Every change is an event in the ticket's history (storage.tickets.add_event: who, when,
from, to); the rows it causes are keyed by that event, so a change never enqueues twice.
The card and the topic's name follow with one coalesced edit each: a newer state drops
an older one still waiting, and both go after customers' words in the group's budget
(PRIORITY_CARD), so a burst of status changes never holds back a relay.
"""

from __future__ import annotations

from html import escape

import structlog

from bot.config import Settings
from bot.metrics import Metrics
from bot.services import cards, csat, deadlines
from bot.services.agents import Actor
from bot.services.tickets import notify_agents, notify_customer, render, topic_action
from storage import agents, keys, outbox, ratings, tickets
from storage.agents import Agent
from storage.db import Conn, from_iso
from storage.outbox import PRIORITY_CARD, PRIORITY_RECOVERY, Outgoing, Purpose
from storage.tickets import Priority, Status, Ticket

log = structlog.stdlib.get_logger(__name__)


async def reload(db: Conn, ticket_id: int) -> Ticket:
    ticket = await tickets.get_ticket(db, ticket_id)
    assert ticket is not None
    return ticket


async def show(
    db: Conn,
    ticket: Ticket,
    stamp: str,
    *,
    keyboard: cards.Keyboard | None = None,
) -> None:
    """Queue the card's current state (and the topic's name, if it changed) after the
    change `stamp` (an event id, or a button press). Coalesced: an older edit still
    waiting is dropped."""
    customer = await tickets.get_customer(db, ticket.customer_id)
    if customer is None:
        return
    assignee = await agents.get(db, ticket.assignee_id) if ticket.assignee_id else None
    previous = (
        await tickets.get_ticket(db, ticket.previous_ticket_id)
        if ticket.previous_ticket_id
        else None
    )
    rating = await ratings.get(db, ticket.id)
    await outbox.supersede(db, ticket.id, Purpose.CARD_EDIT)
    await outbox.enqueue(
        db,
        Outgoing(
            key=f"{stamp}:card",
            purpose=Purpose.CARD_EDIT,
            method="editMessageText",
            params={
                "text": cards.card_text(ticket, customer, assignee, previous, rating),
                "parse_mode": "HTML",
                "reply_markup": {
                    "inline_keyboard": cards.card_buttons(ticket) if keyboard is None else keyboard
                },
            },
            edits_card=True,
            chat_id=ticket.group_chat_id,
            ticket_id=ticket.id,
            priority=PRIORITY_CARD,
        ),
    )
    name = cards.topic_name(
        ticket.id,
        customer.full_name,
        ticket.subject,
        ticket.status,
        assignee.full_name if assignee else None,
    )
    if ticket.topic_name is not None and await tickets.set_topic_name(db, ticket.id, name):
        await outbox.supersede(db, ticket.id, Purpose.TOPIC_EDIT)
        await outbox.enqueue(
            db,
            Outgoing(
                key=f"{stamp}:topic",
                purpose=Purpose.TOPIC_EDIT,
                method="editForumTopic",
                params={"name": name},
                in_topic=True,
                chat_id=ticket.group_chat_id,
                ticket_id=ticket.id,
                priority=PRIORITY_CARD,
            ),
        )


def _actor_id(actor: Actor | None) -> int | None:
    return actor.user_id if actor is not None else None


async def change_status(
    db: Conn,
    settings: Settings,
    ticket: Ticket,
    status: Status,
    actor: Actor | None,
    *,
    tell_customer: bool = True,
    metrics: Metrics | None = None,
) -> Ticket | None:
    """Move a ticket to `status`: the topic is closed or reopened with it, the customer
    is told of a resolution or a closing (and asked to rate it), the card and topic name
    follow; a resolution is timed in `metrics`. None if the ticket had that status
    already."""
    event_id = await tickets.set_status(db, ticket.id, status, _actor_id(actor))
    if event_id is None:
        return None
    await deadlines.reschedule(db, settings, ticket.id)  # the clocks stop or start again
    changed = await reload(db, ticket.id)
    stamp = keys.ticket_change(ticket.id, event_id, "view")
    if status is Status.CLOSED:
        await topic_action(
            db,
            changed,
            Purpose.TOPIC_CLOSE,
            keys.ticket_change(ticket.id, event_id, "close"),
            PRIORITY_CARD,
        )
    elif ticket.status is Status.CLOSED:
        await topic_action(
            db,
            changed,
            Purpose.TOPIC_REOPEN,
            keys.ticket_change(ticket.id, event_id, "reopen"),
            # Before the ticket's other rows: the customer's words that reopened it
            # cannot go into a closed topic.
            PRIORITY_RECOVERY,
        )
    if tell_customer and status in {Status.RESOLVED, Status.CLOSED}:
        texts = settings.texts
        template = texts.ticket_closed if status is Status.CLOSED else texts.ticket_resolved
        await notify_customer(
            db,
            changed,
            render(template, ticket=changed.id),
            keys.ticket_change(ticket.id, event_id, "customer"),
        )
    if csat.finished(ticket.status, status):
        if tell_customer:
            await csat.ask(db, settings, changed, event_id)
        _time_resolution(db, changed, metrics)
    await show(db, changed, stamp)
    log.info(
        "ticket status changed",
        ticket_id=ticket.id,
        status_from=ticket.status.value,
        status_to=status.value,
        actor_id=_actor_id(actor),
    )
    return changed


def _time_resolution(db: Conn, ticket: Ticket, metrics: Metrics | None) -> None:
    """Observe the resolution time (from Telegram's date on the customer's first message)
    once the change has committed."""
    done = ticket.resolved_at or ticket.closed_at
    if metrics is None or done is None:
        return
    seconds = max(0.0, (from_iso(done) - from_iso(ticket.created_at)).total_seconds())
    histogram = metrics.resolution

    async def observe() -> None:
        histogram.observe(seconds)

    db.after_commit(observe)


async def close_ticket(
    db: Conn,
    settings: Settings,
    ticket: Ticket,
    actor: Actor | None,
    metrics: Metrics | None = None,
) -> Ticket | None:
    """Close a ticket: card, topic and customer are told. None if it was closed already."""
    return await change_status(db, settings, ticket, Status.CLOSED, actor, metrics=metrics)


async def set_priority(
    db: Conn, ticket: Ticket, priority: Priority, actor: Actor | None
) -> Ticket | None:
    """Change a ticket's priority; None if it had it already."""
    event_id = await tickets.set_priority(db, ticket.id, priority, _actor_id(actor))
    if event_id is None:
        return None
    await deadlines.recheck_soon(db, ticket.id)  # the new targets count from the receipt
    changed = await reload(db, ticket.id)
    await show(db, changed, keys.ticket_change(ticket.id, event_id, "view"))
    return changed


async def assign(
    db: Conn, ticket: Ticket, agent: Agent | None, actor: Actor | None
) -> Ticket | None:
    """Assign a ticket to `agent` (None: to nobody) and announce it in the topic with a
    mention of the agent. None if nothing changed."""
    assignee_id = agent.user_id if agent is not None else None
    event_id = await tickets.set_assignee(db, ticket.id, assignee_id, _actor_id(actor))
    if event_id is None:
        return None
    if agent is not None:
        await agents.mark_assigned(db, agent.user_id)
    changed = await reload(db, ticket.id)
    if agent is not None:
        mention = f'<a href="tg://user?id={agent.user_id}">{escape(agent.full_name)}</a>'
        by = ""
        if actor is not None and actor.user_id != agent.user_id:
            by = f" by {escape(actor.name)}"
        text = f"👤 Assigned to {mention}{by}."
    else:
        text = "👤 Nobody is assigned now" + (f" ({escape(actor.name)})." if actor else ".")
    await notify_agents(db, changed, text, keys.ticket_change(ticket.id, event_id, "announce"))
    await show(db, changed, keys.ticket_change(ticket.id, event_id, "view"))
    log.info("ticket assigned", ticket_id=ticket.id, assignee_id=assignee_id)
    return changed
