"""Who works a ticket: the desk's pick as a ticket opens, and agents going on and off duty.

`agents.assignment` chooses among the agents on duty: nobody (`off`), the one who has
waited longest for a ticket (`round_robin`: never assigned first, ties by user id), or
the one holding the fewest active tickets (`least_open`, ties in round-robin order). The
strategies are plain functions of the agents and their loads, testable without a
database. An agent the desk has never met (`storage.agents`: filled when an agent acts)
cannot be picked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from bot.config import Settings
from bot.services import workflow
from bot.services.agents import Actor
from storage import agents, outbox, tickets
from storage.agents import Agent
from storage.db import Conn
from storage.outbox import Purpose
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)


def _turn(agent: Agent) -> tuple[bool, str, int]:
    """Round-robin order: never assigned first, then the longest wait, then the lower id.
    (Stored times are ISO 8601 in UTC with microseconds, so they sort as text.)"""
    return (agent.last_assigned_at is not None, agent.last_assigned_at or "", agent.user_id)


def round_robin(candidates: Iterable[Agent]) -> Agent | None:
    """The agent on duty whose last assignment is the oldest (or who never had one)."""
    return min((agent for agent in candidates if agent.on_duty), key=_turn, default=None)


def least_open(candidates: Iterable[Agent], active: Mapping[int, int]) -> Agent | None:
    """The agent on duty holding the fewest active tickets (`active`: user id -> count),
    ties in round-robin order."""
    return min(
        (agent for agent in candidates if agent.on_duty),
        key=lambda agent: (active.get(agent.user_id, 0), *_turn(agent)),
        default=None,
    )


def choose(strategy: str, candidates: Iterable[Agent], active: Mapping[int, int]) -> Agent | None:
    """The agent `strategy` gives the next ticket to; None when it is off or nobody is on
    duty."""
    if strategy == "round_robin":
        return round_robin(candidates)
    if strategy == "least_open":
        return least_open(candidates, active)
    return None


async def pick(db: Conn, strategy: str) -> Agent | None:
    """The agent on duty the next ticket goes to, by `strategy`; None for nobody."""
    if strategy not in {"round_robin", "least_open"}:
        return None
    on_duty = await agents.on_duty(db)
    if not on_duty:
        return None
    active = await agents.active_counts(db) if strategy == "least_open" else {}
    return choose(strategy, on_duty, active)


async def assign_new(db: Conn, settings: Settings, ticket: Ticket) -> Ticket:
    """Give a ticket being opened to the agent the strategy picks, before its topic and
    card are queued (so both show the assignee from the start); the ticket as it is now.
    The announcement in the topic follows the card."""
    agent = await pick(db, settings.agents.assignment)
    if agent is None:
        return ticket
    changed = await workflow.assign(db, ticket, agent, None)
    # The card is not posted yet and will show the assignee: refreshing it is moot.
    await outbox.supersede(db, ticket.id, Purpose.CARD_EDIT)
    log.info(
        "ticket assigned on opening", strategy=settings.agents.assignment, agent_id=agent.user_id
    )
    return changed or ticket


@dataclass(frozen=True, slots=True)
class OffDuty:
    """What going off duty did: whether the agent was on duty, and their active tickets,
    kept or handed on (each with its new assignee, None for nobody)."""

    changed: bool
    kept: tuple[Ticket, ...]
    handed_on: tuple[tuple[Ticket, Agent | None], ...]


async def go_on_duty(db: Conn, agent_id: int) -> bool:
    """Put an agent on duty; False if they were already."""
    return await agents.set_duty(db, agent_id, True)


async def go_off_duty(db: Conn, settings: Settings, actor: Actor, agent_id: int) -> OffDuty:
    """Take an agent off duty. Their active tickets stay theirs, unless
    `agents.hand_on_when_off_duty`: then each goes to the agent the strategy picks among
    those still on duty (or to nobody), announced in its topic."""
    changed = await agents.set_duty(db, agent_id, False)
    held = await tickets.assigned_to(db, agent_id)
    if not settings.agents.hand_on_when_off_duty:
        return OffDuty(changed, tuple(held), ())
    handed: list[tuple[Ticket, Agent | None]] = []
    for ticket in held:
        # Picked again for each ticket: the previous one moved the round-robin turn and
        # the loads.
        successor = await pick(db, settings.agents.assignment)
        await workflow.assign(db, ticket, successor, actor)
        handed.append((ticket, successor))
    log.info("tickets handed on", agent_id=agent_id, count=len(handed))
    return OffDuty(changed, (), tuple(handed))
