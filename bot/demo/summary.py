"""The demo's figures, from real state: the embedded Telegram's records and the desk's
database, checked against what the story sent."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.demo.ledger import Ledger
from bot.demo.script import Rating, Relay, Story
from bot.demo.transcript import Style
from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services.notes import NOTE_MARK
from bot.services.tickets import render
from bot.telegram_text import strip_html
from storage import deadletters, notes, ratings, tickets
from storage.db import Conn
from storage.tickets import Status, Ticket

# The desk's own count of the 429s it met (a prometheus counter).
DESK_429_METRIC = "topicdesk_telegram_429_total"


@dataclass(frozen=True, slots=True)
class FirstResponse:
    """From the customer's first message to the first agent answer reaching them."""

    ticket: int
    customer: str
    seconds: float | None  # None: no answer reached them


@dataclass(frozen=True, slots=True)
class Rated:
    """A rating the desk's database holds."""

    ticket: int
    customer: str
    score: int
    comment: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    """What happened in the demo, in figures."""

    scale: float
    group_limit: int  # Telegram's sends per window in a group
    group_window: float  # that window, in seconds, at the demo's scale
    tickets_opened: int
    tickets_assigned: int
    tickets_resolved: int  # resolved now (a closed ticket does not count)
    tickets_closed: int
    closed_and_told: int  # resolved or closed tickets whose customer got the message saying so
    customer_messages: int  # the story's messages the desk must pass to a topic
    reached_topics: int  # of those, the ones whose copy is in the customer's topic
    copies_in_topics: int  # every copy of a private chat's message in the group
    agent_messages: int
    reached_customers: int
    copies_to_customers: int  # every copy of a group message in a private chat
    canned_replies: int  # of the agent messages, /canned commands
    canned_arrived: int  # of those, the ones whose text reached the customer
    notes: int  # the story's notes, which must stay in their topic
    notes_kept: int  # notes the desk's database holds
    notes_marked: int  # the story's notes the bot marked ✍
    notes_leaked: int  # the story's notes whose words reached a customer's chat
    ratings: tuple[Rated, ...]
    ratings_given: tuple[Rating, ...]  # what the customers pressed (and wrote)
    too_many_requests: int  # 429s Telegram answered
    counted_by_desk: int  # 429s the desk's metrics counted
    absorbed: int  # 429s whose call was sent again and accepted
    retry_after: tuple[int, ...]
    waited: tuple[float, ...]
    dead_letters: int
    dead_letter_reasons: tuple[str, ...]  # "method: Telegram's reason", one per kind
    first_responses: tuple[FirstResponse, ...]
    wall_time: float
    paused: float
    failure: str | None  # why the demo failed, in one sentence; None if it did not

    @property
    def ok(self) -> bool:
        return self.failure is None


async def summarise(
    story: Story, *, wall_time: float, counted_by_desk: int, stalled: str | None
) -> Summary:
    """The figures of a finished story; call it while the desk's database is open."""
    telegram, ledger = story.telegram, story.ledger
    ledger.refresh()
    daemon = story.sandbox.daemon
    assert daemon is not None
    assert daemon.database is not None
    async with daemon.database.reader() as db:
        opened = await _all_tickets(db)
        letters = await deadletters.list_letters(db, include_resolved=True)
        kept = [note for t in opened for note in await notes.of_ticket(db, t.id)]
        rated = [r for t in opened if (r := await ratings.get(db, t.id)) is not None]
    thread_of = {t.customer_id: t.thread_id for t in opened}  # the latest ticket wins
    reached_topics = sum(1 for r in story.to_topics if _in_topic(ledger, telegram, r, thread_of))
    arrived = [r for r in story.to_customers if _with_customer(ledger, r)]
    closed = [t for t in opened if t.status is Status.CLOSED]
    resolved = [t for t in opened if t.status is Status.RESOLVED]
    told = [t for t in closed + resolved if _told_of_outcome(story, t)]
    refusals = ledger.refusals
    limits = telegram.limits
    summary = Summary(
        scale=story.sandbox.scale,
        group_limit=limits.group_per_minute if limits else 0,
        group_window=60 / limits.time_scale if limits else 60.0,
        tickets_opened=len(opened),
        tickets_assigned=sum(1 for t in opened if t.assignee_id is not None),
        tickets_resolved=len(resolved),
        tickets_closed=len(closed),
        closed_and_told=len(told),
        customer_messages=len(story.to_topics),
        reached_topics=reached_topics,
        copies_in_topics=_copies(ledger, lambda to, origin: to < 0 < origin),
        agent_messages=len(story.to_customers),
        reached_customers=len(arrived),
        copies_to_customers=_copies(ledger, lambda to, origin: origin < 0 < to),
        canned_replies=sum(1 for r in story.to_customers if r.canned is not None),
        canned_arrived=sum(1 for r in arrived if r.canned is not None),
        notes=len(story.notes),
        notes_kept=len(kept),
        notes_marked=sum(1 for note in story.notes if _marked(telegram, note, NOTE_MARK)),
        notes_leaked=sum(1 for note in story.notes if _leaked(story, note)),
        ratings=tuple(
            Rated(r.ticket_id, _first_name(telegram, r.customer_id), r.score, r.comment)
            for r in rated
        ),
        ratings_given=tuple(story.ratings),
        too_many_requests=len(refusals),
        counted_by_desk=counted_by_desk,
        absorbed=sum(1 for r in refusals if r.resent is not None),
        retry_after=tuple(r.retry_after for r in refusals),
        waited=tuple(r.waited for r in refusals if r.waited is not None),
        dead_letters=len(letters),
        dead_letter_reasons=_reasons(letters),
        first_responses=tuple(_first_response(ledger, telegram, t) for t in opened),
        wall_time=wall_time,
        paused=story.pacing.paused,
        failure=None,
    )
    return replace(summary, failure=verdict(summary, stalled))


def _reasons(letters: Sequence[deadletters.DeadLetter]) -> tuple[str, ...]:
    """Each kind of dead letter once, with how many: `pinChatMessage: Not Found ×3`."""
    counts = Counter(f"{letter.method}: {letter.error}" for letter in letters)
    return tuple(f"{kind} ×{n}" if n > 1 else kind for kind, n in counts.items())


async def _all_tickets(db: Conn) -> list[Ticket]:
    """Every ticket, by number (numbers run from 1 without gaps)."""
    found: list[Ticket] = []
    while (ticket := await tickets.get_ticket(db, len(found) + 1)) is not None:
        found.append(ticket)
    return found


def _in_topic(
    ledger: Ledger, telegram: FakeTelegram, relay: Relay, thread_of: dict[int, int | None]
) -> bool:
    """The customer's message has a copy in their ticket's topic."""
    thread_id = thread_of.get(relay.customer.user_id)
    for chat_id, message_id in ledger.copied_to.get(relay.source, []):
        if chat_id != GROUP_ID:
            continue
        if telegram.message(chat_id, message_id).get("message_thread_id") == thread_id:
            return True
    return False


def _copies(ledger: Ledger, direction: Callable[[int, int], bool]) -> int:
    """How many copies arrived from one side to the other: `direction(to, origin)`, chat
    ids (a group's is negative)."""
    return sum(1 for (to, _), (origin, _) in ledger.copies.items() if direction(to, origin))


def _with_customer(ledger: Ledger, relay: Relay) -> bool:
    """The agent's message has a copy in the customer's private chat."""
    chat = relay.customer.user_id
    return any(key[0] == chat for key in ledger.copied_to.get(relay.source, []))


def _told_of_outcome(story: Story, ticket: Ticket) -> bool:
    """The customer got the message saying their ticket is closed (or resolved)."""
    texts = story.settings.texts
    template = texts.ticket_closed if ticket.status is Status.CLOSED else texts.ticket_resolved
    text = strip_html(render(template, ticket=ticket.id))
    messages = story.telegram.bot_messages(ticket.customer_id)
    return any(text in str(m.get("text", "")) for m in messages)


def _marked(telegram: FakeTelegram, note: Relay, emoji: str) -> bool:
    """The bot reacted with `emoji` on the note's message."""
    reactions = telegram.bot_reactions.get(note.source, [])
    return any(r.get("emoji") == emoji for r in reactions)


def _leaked(story: Story, note: Relay) -> bool:
    """A note's words reached a private chat: a copy of its message, or any message of the
    bot's there that has its words (a note passed on by other means)."""
    telegram = story.telegram
    if any(chat > 0 for chat, _ in story.ledger.copied_to.get(note.source, [])):
        return True
    text = str(telegram.message(*note.source).get("text") or "").strip()
    words = text.removeprefix(story.settings.agents.note_prefix).strip()
    if not words:
        return False
    chats = {user_id for user_id in telegram.users if user_id > 0}
    return any(
        words in str(m.get("text") or m.get("caption") or "")
        for chat in chats
        for m in telegram.bot_messages(chat)
    )


def _first_name(telegram: FakeTelegram, user_id: int) -> str:
    return str(telegram.users.get(user_id, {}).get("first_name", user_id))


def _first_response(ledger: Ledger, telegram: FakeTelegram, ticket: Ticket) -> FirstResponse:
    """From the customer's first message in their chat to the first copy of an agent's
    message from the ticket's topic arriving there."""
    chat = ticket.customer_id
    name = _first_name(telegram, chat)
    written: list[float] = []
    answered: list[float] = []
    for message in telegram.chat_messages(chat):
        key = (chat, int(message["message_id"]))
        if (message.get("from") or {}).get("id") == chat and key in ledger.written_at:
            written.append(ledger.written_at[key])
        elif _is_answer_from_topic(ledger, telegram, key, ticket):
            answered.append(ledger.sent_at[key])
    if not written or not answered:
        return FirstResponse(ticket.id, name, None)
    return FirstResponse(ticket.id, name, max(0.0, min(answered) - min(written)))


def _is_answer_from_topic(
    ledger: Ledger, telegram: FakeTelegram, key: tuple[int, int], ticket: Ticket
) -> bool:
    origin = ledger.origin(*key)
    if origin is None or origin[0] != GROUP_ID or key not in ledger.sent_at:
        return False
    return telegram.message(*origin).get("message_thread_id") == ticket.thread_id


def verdict(summary: Summary, stalled: str | None = None) -> str | None:
    """Why the demo failed, in one sentence, or None: every message arrived, no note left
    its topic, every rating was kept, the 429 was absorbed and nothing became a dead
    letter."""
    if stalled:
        return f"The story stalled: {stalled}."
    total = summary.customer_messages
    if missing := total - summary.reached_topics:
        return f"{missing} of {total} customer messages never reached their topic."
    total = summary.agent_messages
    if missing := total - summary.reached_customers:
        return f"{missing} of {total} agent messages never reached their customer."
    if summary.notes_leaked:
        return f"{summary.notes_leaked} of {summary.notes} internal notes reached a customer."
    if wrong := _ratings_not_kept(summary):
        return wrong
    if not summary.too_many_requests:
        return "The burst met no 429 from Telegram, so the demo could not show one absorbed."
    lost = summary.too_many_requests - summary.absorbed
    if lost:
        return f"{lost} call(s) refused with a 429 were never sent again."
    if summary.dead_letters:
        reasons = "; ".join(summary.dead_letter_reasons)
        return f"{summary.dead_letters} call(s) became dead letters ({reasons})."
    return None


def _ratings_not_kept(summary: Summary) -> str | None:
    """Why a rating a customer gave is not what the desk's database holds, or None."""
    held = {r.ticket: r for r in summary.ratings}
    for given in summary.ratings_given:
        found = held.get(given.ticket)
        if found is None or (found.score, found.comment) != (given.score, given.comment):
            shown = "none" if found is None else _rating(found)
            return (
                f"{given.customer.first_name}'s rating of ticket #{given.ticket} was not kept: "
                f"gave {given.score}/5"
                + (f" ‘{given.comment}’" if given.comment else "")
                + f", the database holds {shown}."
            )
    return None


def render_summary(summary: Summary, style: Style) -> list[str]:
    """The summary as lines for the terminal."""
    rows: list[tuple[str, str | list[str]]] = [
        ("Tickets", _tickets(summary)),
        (
            "Customer → topic",
            f"{summary.reached_topics} of {summary.customer_messages} messages reached their topic"
            + _extra(summary.copies_in_topics - summary.reached_topics),
        ),
        (
            "Agent → customer",
            f"{summary.reached_customers} of {summary.agent_messages} messages reached their "
            "customer"
            + _extra(summary.copies_to_customers - summary.reached_customers)
            + _canned(summary),
        ),
        ("Notes", _notes(summary)),
        ("Ratings", _ratings(summary.ratings)),
        ("429s", _too_many_requests(summary)),
        ("Dead letters", _dead_letters(summary)),
        ("First response", _first_responses(summary.first_responses)),
        (
            "Wall time",
            f"{summary.wall_time:.1f} s, {summary.paused:.1f} s of it the story's pauses",
        ),
    ]
    lines = ["", style("── Summary " + "─" * 64, Style.BOLD)]
    for name, value in rows:
        first, *rest = [value] if isinstance(value, str) else value
        lines.append(f"{style(name.ljust(17), Style.BOLD)}{first}")
        lines += [" " * 17 + line for line in rest]
    lines.append(
        style(
            f"Telegram's limits ran on a clock {summary.scale:g}× faster for the demo: "
            f"a group's {summary.group_limit} messages a minute were {summary.group_limit} "
            f"per {summary.group_window:g} s.",
            Style.DIM,
        )
    )
    lines.append("")
    if summary.failure is None:
        lines.append(
            style(
                "✔ Every message reached the other side, no note left its topic, the 429 was "
                "absorbed, and nothing became a dead letter.",
                Style.BOLD,
                Style.GREEN,
            )
        )
    else:
        lines.append(style(f"✘ {summary.failure}", Style.BOLD, Style.RED))
    return lines


def _tickets(summary: Summary) -> str:
    done = summary.tickets_resolved + summary.tickets_closed
    return (
        f"{summary.tickets_opened} opened, {summary.tickets_assigned} assigned, "
        f"{summary.tickets_resolved} resolved, {summary.tickets_closed} closed "
        f"(the customer told: {summary.closed_and_told} of {done})"
    )


def _canned(summary: Summary) -> str:
    if not summary.canned_replies:
        return ""
    arrived = summary.canned_arrived
    if arrived == summary.canned_replies:
        return f", {arrived} of them canned replies" if arrived > 1 else ", one a canned reply"
    return f" (of the canned replies, {arrived} of {summary.canned_replies})"


def _notes(summary: Summary) -> str:
    if not summary.notes:
        return "none written"
    leaked = "none" if not summary.notes_leaked else str(summary.notes_leaked)
    return (
        f"{summary.notes}, {leaked} reached a customer (✍ on {summary.notes_marked} of "
        f"{summary.notes}; kept on the tickets: {summary.notes_kept})"
    )


def _rating(rated: Rated) -> str:
    return f"{rated.score}/5" + (f" ‘{rated.comment}’" if rated.comment else "")


def _ratings(rated: Sequence[Rated]) -> str:
    if not rated:
        return "0"
    return f"{len(rated)}: " + " · ".join(f"#{r.ticket} {r.customer} {_rating(r)}" for r in rated)


def _extra(copies: int) -> str:
    return f" (and {copies} more copies)" if copies > 0 else ""


def _too_many_requests(summary: Summary) -> list[str]:
    if not summary.too_many_requests:
        return ["none met"]
    low, high = min(summary.retry_after), max(summary.retry_after)
    asked = f"{low}" if low == high else f"{low}–{high}"
    first = f"Telegram answered 429 retry after {asked} s; the desk waited and resent"
    if summary.absorbed == summary.too_many_requests:
        first += ": nothing lost"
    else:
        first += f", but {summary.too_many_requests - summary.absorbed} never went out again"
    waited = ", ".join(f"{w:.1f}" for w in summary.waited) or "—"
    return [
        first,
        f"({summary.too_many_requests} × 429; waited {waited} s; "
        f"the desk's own count: {summary.counted_by_desk})",
    ]


def _dead_letters(summary: Summary) -> list[str]:
    first, *rest = summary.dead_letter_reasons or ("",)
    return [f"{summary.dead_letters}: {first}" if first else "0", *rest]


def _first_responses(responses: Sequence[FirstResponse]) -> str:
    shown = [
        f"#{r.ticket} {r.customer} " + (f"{r.seconds:.1f} s" if r.seconds is not None else "—")
        for r in responses
    ]
    return " · ".join(shown) or "—"


def kept_database_lines(path: Path, config: Path | None, style: Style) -> list[str]:
    """How to look at a database kept with --keep."""
    lines = ["", style(f"The desk's database is kept at {path}. To look inside:", Style.BOLD)]
    query = "SELECT id, status, subject FROM tickets"
    lines.append(f"  sqlite3 {shlex.quote(str(path))} {shlex.quote(query)}")
    if config is not None:
        lines.append(f"  topicdesk dlq list --config {shlex.quote(str(config))}")
    return lines
