"""Each ticket's next SLA event, kept current in SQLite by the changes it depends on.

`reschedule()` runs in the transaction that changed what a ticket's deadlines depend on
(it opened, its first response was recorded, its status changed); `recheck_soon()` asks
the scheduler (bot.services.escalation) to do it at its next pass; `out_of_office()` is the
note a ticket received while the desk is closed gets. The scheduler itself builds on the
workflow (a breach may raise a priority), which builds on this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import structlog

from bot.config import Settings
from bot.services import sla
from bot.services.hours import BusinessHours
from bot.services.sla import SlaEvent, SlaPolicy, TicketFacts
from bot.services.tickets import notify_customer, render
from storage import keys
from storage import sla as store
from storage.db import Conn, to_iso
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _facts(found: store.SlaFacts) -> TicketFacts:
    return TicketFacts.parse(
        found.created_at,
        found.priority,
        found.first_response_at,
        found.resolved_at,
        found.response_stage,
        found.resolution_stage,
    )


class Schedule:
    """The policy and the opening hours of a desk, built once from its settings."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.sla.enabled
        self.policy: SlaPolicy = settings.sla.policy()
        self.hours: BusinessHours = settings.hours.business_hours()

    def next_event(self, found: store.SlaFacts, now: datetime | None = None) -> SlaEvent | None:
        """The ticket's next warning or breach, or None (also when the policy is off).

        Without `now`, the earliest event that can fire, whatever the time: a warning is
        never passed over for its breach. That is the instant to store: the scheduler,
        when it comes, decides by its own clock which of the two fires.
        """
        if not self.enabled:
            return None
        facts = _facts(found)
        at = facts.created_at if now is None else now
        return sla.next_event(facts, self.policy, self.hours, now=at)

    async def store_next(
        self, db: Conn, ticket_id: int, now: datetime | None = None
    ) -> SlaEvent | None:
        """Recompute the ticket's next event and store when it is due; return it."""
        found = await store.facts(db, ticket_id)
        if found is None:
            return None
        event = self.next_event(found, now)
        await store.set_due(db, ticket_id, None if event is None else to_iso(event.due_at))
        return event


async def reschedule(db: Conn, settings: Settings, ticket_id: int) -> SlaEvent | None:
    """Recompute when the ticket's next warning or breach can fire and store it (NULL
    when nothing more can, or the policy is off); return that event."""
    return await Schedule(settings).store_next(db, ticket_id)


async def recheck_soon(db: Conn, ticket_id: int) -> None:
    """Have the scheduler recompute the ticket's schedule at its next pass (for a change
    made without the settings at hand, such as a priority set from the card)."""
    await store.recheck(db, ticket_id)


async def out_of_office(db: Conn, settings: Settings, ticket: Ticket) -> bool:
    """If the desk was closed when the ticket's customer wrote (its receipt time), queue
    one note saying when it opens again, in the desk's time zone; whether it did."""
    hours = settings.hours.business_hours()
    received = TicketFacts.parse(ticket.created_at, ticket.priority).created_at
    if hours.is_open(received):
        return False
    text = render(settings.texts.out_of_office, when=hours.format_next_open(received))
    await notify_customer(db, ticket, text, keys.out_of_office(ticket.id))
    return True


def mention(user_id: int, name: str) -> str:
    """A Telegram-HTML link that names a person and notifies them."""
    return f'<a href="tg://user?id={user_id}">{escape(name)}</a>'


def summary_text(breaches: int, warnings: int) -> str:
    """The line in General for the alerts the flood cap kept from being posted."""
    parts = []
    if breaches:
        parts.append(f"{breaches} more {'ticket is' if breaches == 1 else 'tickets are'} past")
    if warnings:
        parts.append(f"{warnings} more {'is' if warnings == 1 else 'are'} close to")
    return f"🚨 …and {' and '.join(parts)} their targets: /queue"
