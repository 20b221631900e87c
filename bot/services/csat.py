"""CSAT: the customer rates a resolved or closed ticket from 1 to 5, then may comment.

When a ticket is asked: once per resolution. The prompt goes out when a ticket leaves
work (open or pending) for resolved or closed, whoever did it (a card button, an agent's
/close, the customer's /close). A resolved ticket that is then closed is not asked again,
so the customer is never nagged twice for one piece of work; a ticket reopened and
resolved again is asked again, and that second rating replaces the first.

A press of a rating button is honoured only for the presser's own ticket, and only while
it is resolved or closed, with a score from 1 to 5; anything else changes nothing, is
answered and logged. The rating and its comment are shown to the agents on the card
(which can be edited even when the topic is closed) and, while the topic is open (a
resolved ticket), as a note in it.

The comment is the customer's next text, taken only when it is clearly one (see
`is_comment`): within COMMENT_WAIT of the rating, while the rated ticket is still the one
they are on, and not a command. Anything else goes the usual way (relayed, or a new
ticket), so a customer who moves on to a new question does not lose their words. A text
taken as a comment reaches the agents in full all the same, and the customer is told it
was taken as feedback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import structlog

from bot.config import Settings
from bot.services.incoming import Incoming
from bot.services.tickets import notify_agents, render
from storage import keys, outbox, ratings, tickets
from storage.db import Conn, from_iso
from storage.outbox import PRIORITY_NOTICE, Outgoing, Purpose
from storage.tickets import Status, Ticket

log = structlog.stdlib.get_logger(__name__)

ACTIVE = frozenset({Status.OPEN, Status.PENDING})
DONE = frozenset({Status.RESOLVED, Status.CLOSED})
SCORES = range(1, 6)
SKIP = "skip"
# `rate:<ticket>:<1-5|skip>`, well under Telegram's 64 bytes. Looser than what is valid,
# so that a forged score is refused here (answered, logged), not left unanswered.
BUTTON = re.compile(r"^rate:(\d{1,18}):([a-z0-9]{1,8})$")
COMMENT_WAIT = timedelta(minutes=15)
NOTE_ROOM = 3500  # a comment in the topic note; longer ones are shortened

Keyboard = list[list[dict[str, str]]]


def finished(before: Status, after: Status) -> bool:
    """Whether this change ends a piece of work: asked to rate, timed as a resolution."""
    return before in ACTIVE and after in DONE


def button_data(ticket_id: int, choice: int | str) -> str:
    return f"rate:{ticket_id}:{choice}"


def parse(data: str) -> tuple[int, str] | None:
    """(ticket id, `1`..`5` or `skip` or anything else short) of a rating button, or None."""
    match = BUTTON.match(data)
    return None if match is None else (int(match[1]), match[2])


def skip_of(data: str) -> int | None:
    """The ticket whose comment a Skip button passes on, or None if it is not one."""
    parsed = parse(data)
    return parsed[0] if parsed is not None and parsed[1] == SKIP else None


def score_of(choice: str) -> int | None:
    """The score a button's choice stands for; None if it is not 1 to 5."""
    if not choice.isdigit() or len(choice) > 1:
        return None
    score = int(choice)
    return score if score in SCORES else None


def keyboard(ticket_id: int, chosen: int | None = None) -> Keyboard:
    """One row of five buttons; the chosen score marked, so it can still be changed."""
    return [
        [
            {
                "text": ("• " if score == chosen else "") + f"{score} ⭐",
                "callback_data": button_data(ticket_id, score),
            }
            for score in SCORES
        ]
    ]


async def ask(db: Conn, settings: Settings, ticket: Ticket, event_id: int) -> None:
    """Queue the rating prompt for the change `event_id` that finished `ticket`."""
    if not settings.tickets.csat:
        return
    await _send(
        db,
        ticket,
        render(settings.texts.csat_prompt, ticket=ticket.id),
        keys.ticket_change(ticket.id, event_id, "csat"),
        keyboard(ticket.id),
    )
    log.info("rating asked", ticket_id=ticket.id)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a rating press changed nothing (for the log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Rateable:
    """A rating press to honour: the ticket and the score."""

    ticket: Ticket
    score: int


async def rateable(db: Conn, customer_id: int, data: str) -> Rateable | Refusal:
    """What a rating button's `data` may rate, or why not: only the presser's own,
    resolved or closed ticket, with a score from 1 to 5."""
    parsed = parse(data)
    if parsed is None:
        return Refusal("not a rating button")
    score = score_of(parsed[1])
    if score is None:
        return Refusal("the score is not 1 to 5")
    ticket = await tickets.get_ticket(db, parsed[0])
    if ticket is None:
        return Refusal("no such ticket")
    if ticket.customer_id != customer_id:
        return Refusal("the ticket is another customer's")
    if ticket.status not in DONE:
        return Refusal(f"the ticket is {ticket.status.value}, not resolved or closed")
    return Rateable(ticket, score)


async def rate(
    db: Conn, settings: Settings, ticket: Ticket, score: int, cause: str, prompt_id: int | None
) -> bool:
    """Store the customer's score (replacing an earlier one), show it on the prompt they
    pressed and, while the topic is open, to the agents. False if it was that already."""
    before = await ratings.get(db, ticket.id)
    if not await ratings.rate(db, ticket.id, ticket.customer_id, score):
        return False
    await tickets.add_event(
        db,
        ticket.id,
        "rated",
        ticket.customer_id,
        {"from": before.score if before else "none", "to": score},
    )
    if prompt_id is not None:
        await _edit(
            db,
            ticket,
            prompt_id,
            render(settings.texts.csat_rated, ticket=ticket.id, score=score),
            keys.csat(ticket.id, cause, "prompt"),
            keyboard(ticket.id, score),
        )
    if ticket.status is not Status.CLOSED:
        again = f" (it was {before.score}/5)" if before else ""
        note = f"⭐ The customer rated this ticket {score}/5{again}."
        await notify_agents(db, ticket, note, keys.csat(ticket.id, cause, "note"))
    log.info("ticket rated", ticket_id=ticket.id, score=score)
    return True


async def ask_comment(db: Conn, settings: Settings, ticket: Ticket, cause: str) -> None:
    """Invite a comment on the rating just given, with a Skip button."""
    skip = [[{"text": settings.texts.skip_button, "callback_data": button_data(ticket.id, SKIP)}]]
    await _send(
        db,
        ticket,
        settings.texts.csat_comment_prompt,
        keys.csat(ticket.id, cause, "ask"),
        skip,
    )


async def skipped(db: Conn, settings: Settings, ticket_id: int, cause: str, prompt_id: int) -> None:
    """The customer pressed Skip: the comment prompt says thank you instead."""
    ticket = await tickets.get_ticket(db, ticket_id)
    if ticket is not None:
        key = keys.csat(ticket_id, cause, "skip")
        await _edit(db, ticket, prompt_id, settings.texts.csat_thanks, key, None)


async def is_comment(
    db: Conn, rated_id: int, asked_at: str, message: Incoming, current: Ticket | None
) -> bool:
    """Whether `message`, the customer's next one after a rating, is its comment.

    Only a text, not a command, within COMMENT_WAIT of the rating, while the rated ticket
    is still resolved or closed and no other ticket is where their words go (`current`).
    """
    text = (message.text or "").strip()
    if message.kind != "text" or not text or text.startswith("/"):
        return False
    if from_iso(message.date) - from_iso(asked_at) > COMMENT_WAIT:
        return False
    if current is not None and current.id != rated_id:
        return False
    rated = await tickets.get_ticket(db, rated_id)
    return rated is not None and rated.status in DONE


async def take_comment(
    db: Conn, settings: Settings, ticket_id: int, message: Incoming, key: str
) -> Ticket | None:
    """Store the comment on the ticket's rating, pass it to the agents while the topic is
    open, thank the customer. None if the ticket has no rating to comment on."""
    ticket = await tickets.get_ticket(db, ticket_id)
    comment = (message.text or "").strip()
    if ticket is None or not await ratings.set_comment(db, ticket.id, comment):
        return None
    await tickets.add_event(db, ticket.id, "rating_comment", ticket.customer_id)
    if ticket.status is not Status.CLOSED:
        shown = comment if len(comment) <= NOTE_ROOM else comment[: NOTE_ROOM - 1] + "…"
        note = render("💬 The customer's comment on their rating: {comment}", comment=shown)
        await notify_agents(db, ticket, note, keys.part(key, "note"))
    await _send(db, ticket, settings.texts.csat_thanks, keys.part(key, "thanks"), None)
    log.info("rating commented", ticket_id=ticket.id)
    return ticket


async def _send(db: Conn, ticket: Ticket, text: str, key: str, markup: Keyboard | None) -> None:
    params: dict[str, object] = {"text": text, "parse_mode": "HTML"}
    if markup is not None:
        params["reply_markup"] = {"inline_keyboard": markup}
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.NOTICE,
            method="sendMessage",
            params=params,
            chat_id=ticket.customer_id,
            ticket_id=ticket.id,
            priority=PRIORITY_NOTICE,
        ),
    )


async def _edit(
    db: Conn, ticket: Ticket, message_id: int, text: str, key: str, markup: Keyboard | None
) -> None:
    """Edit one of the desk's messages in the customer's chat (a prompt they pressed)."""
    params: dict[str, object] = {"message_id": message_id, "text": text, "parse_mode": "HTML"}
    if markup is not None:
        params["reply_markup"] = {"inline_keyboard": markup}
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.NOTICE,
            method="editMessageText",
            params=params,
            chat_id=ticket.customer_id,
            ticket_id=ticket.id,
            priority=PRIORITY_NOTICE,
        ),
    )
