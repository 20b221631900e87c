"""The ticket card's buttons: Take, Assign…, Priority, Resolve, Close, Reopen.

A press is honoured only when the button's ticket is the ticket of the topic it was
pressed in, and the presser is an agent (checked with Telegram, not assumed: a button
can be pressed by someone who has since left the group). Anything else is refused,
answered, logged with the presser's id, and changes nothing. Every press is answered
with a short result; a second press of the same button changes nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiogram import Bot, F, Router
from aiogram.types import CallbackQuery

from bot.config import Settings
from bot.handlers.common import OnLoop, after_commit
from bot.metrics import Metrics
from bot.services import cards, workflow
from bot.services.agents import Actor, AgentDirectory
from storage import agents, keys, tickets
from storage.db import Conn
from storage.tickets import Priority, Status, Ticket

log = structlog.stdlib.get_logger(__name__)

CARD_BUTTON = re.compile(r"^t:(\d{1,18}):([a-z]{1,16})(?::([a-z0-9_]{1,32}))?$")
LEGACY_CLOSE = re.compile(r"^ticket:(\d{1,18}):close$")  # cards posted before 0.2


@dataclass(frozen=True, slots=True)
class Press:
    """A card button pressed by an agent in its ticket's topic."""

    query: CallbackQuery
    db: Conn
    settings: Settings
    ticket: Ticket
    actor: Actor
    argument: str
    metrics: Metrics | None = None  # times a resolution


Action = Callable[[Press], Awaitable[str]]


def create_router(settings: Settings) -> Router:
    router = Router(name="card")
    group_id = settings.support.group_id
    router.callback_query.filter(OnLoop(F.message.chat.id == group_id))
    router.callback_query.register(on_card_button, OnLoop(F.data.regexp(CARD_BUTTON)))
    router.callback_query.register(on_card_button, OnLoop(F.data.regexp(LEGACY_CLOSE)))
    return router


def create_fallback_router() -> Router:
    """Last in line: a button press nothing else took (forged, or from an old version)
    is answered, so the presser's client stops spinning, and logged."""
    router = Router(name="unknown buttons")
    router.callback_query.register(on_unknown_button)
    return router


async def on_unknown_button(query: CallbackQuery, bot: Bot, db: Conn) -> None:
    log.warning(
        "button refused: nothing handles it", data=query.data, presser_id=query.from_user.id
    )
    text = "This button is not known here."
    after_commit(
        db, lambda: bot.answer_callback_query(query.id, text=text), "answer unknown button"
    )


def parse(data: str) -> tuple[int, str, str] | None:
    """(ticket id, action, argument) of a card button's data, or None."""
    match = CARD_BUTTON.match(data)
    if match:
        return int(match[1]), match[2], match[3] or ""
    legacy = LEGACY_CLOSE.match(data)
    if legacy:
        return int(legacy[1]), "close", ""
    return None


async def on_card_button(
    query: CallbackQuery,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    metrics: Metrics,
    ticket: Ticket | None,
) -> None:
    def answer(text: str) -> None:
        after_commit(
            db, lambda: bot.answer_callback_query(query.id, text=text), "answer card button"
        )

    parsed = parse(query.data or "")
    assert parsed is not None  # the router's filter matched
    ticket_id, name, argument = parsed
    presser = query.from_user
    if ticket is None or ticket.id != ticket_id:
        # The button names another ticket than the topic it is in: forged, or stale.
        log.warning(
            "button refused: it names another ticket than its topic's",
            data=query.data,
            presser_id=presser.id,
        )
        answer("This button does not belong to this topic.")
        return
    actor = await directory.actor(bot, db, presser)
    if not actor.is_agent:
        log.warning("button refused: the presser is not an agent", presser_id=presser.id)
        answer("Only the desk's agents can do this.")
        return
    if not actor.checked:
        log.warning("button refused: membership could not be checked", presser_id=presser.id)
        answer("Could not check your rights with Telegram; please try again.")
        return
    action = ACTIONS.get(name)
    if action is None:
        log.warning("button refused: unknown action", data=query.data, presser_id=presser.id)
        answer("This button is not known here.")
        return
    answer(await action(Press(query, db, settings, ticket, actor, argument, metrics)))


async def take(press: Press) -> str:
    if not press.ticket.is_open:
        return "This ticket is closed."
    agent = await agents.get(press.db, press.actor.user_id or 0)
    if agent is None:
        return "Only a named agent can take a ticket."
    if press.ticket.assignee_id == agent.user_id:
        return "It is already yours."
    await workflow.assign(press.db, press.ticket, agent, press.actor)
    return "It is yours now."


async def assign(press: Press) -> str:
    if not press.ticket.is_open:
        return "This ticket is closed."
    if not press.argument.isdigit():
        return "This button is not known here."
    user_id = int(press.argument)
    agent = await agents.get(press.db, user_id) if user_id else None
    if user_id and agent is None:
        return "That agent is not known to the desk."
    if await workflow.assign(press.db, press.ticket, agent, press.actor) is None:
        await _back(press)
        return "No change."
    return f"Assigned to {agent.full_name}." if agent else "Nobody is assigned now."


async def menu(press: Press) -> str:
    ticket = press.ticket
    if not ticket.is_open:
        return "This ticket is closed."
    stamp = keys.card_menu(ticket.id, press.query.id)
    if press.argument == "assign":
        everyone = await agents.all_agents(press.db)
        everyone.sort(key=lambda agent: not agent.on_duty)
        await workflow.show(press.db, ticket, stamp, keyboard=cards.assign_menu(ticket, everyone))
        return "Pick an agent."
    if press.argument == "priority":
        await workflow.show(press.db, ticket, stamp, keyboard=cards.priority_menu(ticket))
        return "Pick a priority."
    return "This button is not known here."


async def _back(press: Press) -> None:
    await workflow.show(press.db, press.ticket, keys.card_menu(press.ticket.id, press.query.id))


async def back(press: Press) -> str:
    await _back(press)
    return "Back."


async def priority(press: Press) -> str:
    if not press.ticket.is_open:
        return "This ticket is closed."
    try:
        chosen = Priority(press.argument)
    except ValueError:
        return "This button is not known here."
    if await workflow.set_priority(press.db, press.ticket, chosen, press.actor) is None:
        await _back(press)
        return f"The priority is {chosen.value} already."
    return f"Priority: {chosen.value}."


def _to(status: Status, done: str, already: str, allowed: frozenset[Status]) -> Action:
    async def act(press: Press) -> str:
        ticket = press.ticket
        if ticket.status is status:
            return already
        if ticket.status not in allowed:
            return f"A {ticket.status.value} ticket cannot be {done.lower().rstrip('.')}."
        if status is Status.OPEN and ticket.status is Status.CLOSED:
            current = await tickets.open_ticket_of(press.db, ticket.customer_id)
            if current is not None:
                return f"The customer has another open ticket, #{current.id}."
        await workflow.change_status(
            press.db, press.settings, ticket, status, press.actor, metrics=press.metrics
        )
        return done

    return act


ACTIVE = frozenset({Status.OPEN, Status.PENDING})
ACTIONS: dict[str, Action] = {
    "take": take,
    "assign": assign,
    "menu": menu,
    "back": back,
    "priority": priority,
    "resolve": _to(Status.RESOLVED, "Resolved.", "It is resolved already.", ACTIVE),
    "close": _to(
        Status.CLOSED, "Closed.", "This ticket is already closed.", ACTIVE | {Status.RESOLVED}
    ),
    "reopen": _to(
        Status.OPEN,
        "Reopened.",
        "It is open already.",
        frozenset({Status.RESOLVED, Status.CLOSED}),
    ),
}
