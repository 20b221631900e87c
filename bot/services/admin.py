"""What the admin commands say and do (bot.handlers.admin): help, bans, agents, dead letters."""

from __future__ import annotations

from html import escape

import structlog

from bot.config import Settings
from bot.services import tickets as desk
from bot.services.incoming import Incoming
from storage import agents, bans, deadletters, keys, tickets
from storage.db import Conn
from storage.redact import safe_text

log = structlog.stdlib.get_logger(__name__)

CUSTOMER_COMMANDS = (
    ("/start", "start, or see where your question stands"),
    ("/new", "open a new ticket"),
    ("/status", "your tickets and where each stands"),
    ("/close", "close your ticket"),
    ("/cancel", "leave the form"),
    ("/help", "this list"),
)
AGENT_COMMANDS = (
    ("/close", "close the ticket (in its topic)"),
    ("/assign @agent", "give the ticket to an agent; /unassign"),
    ("/onduty, /offduty", "take new tickets, or not"),
    ("/queue, /mine", "unanswered tickets; yours"),
    ("/note text", "an internal note (or start a message with //)"),
    ("/history", "the ticket's history"),
    ("/canned [name]", "list the canned responses, or send one"),
    ("/help", "this list"),
)
ADMIN_COMMANDS = (
    ("/agents", "the agents, on duty or not, and their active tickets"),
    ("/ban ID [reason]", "ban a customer (in a ticket's topic: /ban [reason])"),
    ("/unban ID", "lift a ban"),
    ("/dlq", "dead letters, with buttons to retry or drop each"),
    ("/canned_add name text, /canned_del name", "manage canned responses"),
)
# Dead letters shown by /dlq, each with its two buttons (the rest: `topicdesk dlq list`).
DLQ_SHOWN = 20
DLQ_PREFIX = "dlq:"


def help_text(*, customer: bool, agent: bool, admin: bool) -> str:
    """The commands the asker may use, in one message (Telegram HTML)."""
    sections: list[str] = []
    if customer:
        sections.append(_section("Commands", CUSTOMER_COMMANDS))
    if agent:
        sections.append(_section("In the support group", AGENT_COMMANDS))
    if admin:
        sections.append(_section("For admins (here or in the General topic)", ADMIN_COMMANDS))
    return "\n\n".join(sections) or "No commands are available to you here."


def _section(title: str, commands: tuple[tuple[str, str], ...]) -> str:
    lines = [f"<b>{escape(title)}</b>"]
    lines += [f"{escape(command)} - {escape(what)}" for command, what in commands]
    return "\n".join(lines)


async def turned_away(db: Conn, settings: Settings, incoming: Incoming) -> bool:
    """A banned customer's message: kept, not relayed, and the ban's one note queued.
    False if the sender is not banned."""
    ban = await bans.get(db, incoming.sender_id)
    if ban is None:
        return False
    await bans.keep_message(
        db, incoming.sender_id, incoming.message_id, incoming.kind, incoming.text, incoming.date
    )
    key = keys.ban_note(incoming.sender_id, ban.created_at)
    await desk.say(db, incoming.chat_id, settings.texts.banned, key)
    log.info("message from a banned customer kept, not relayed", user_id=incoming.sender_id)
    return True


async def agents_text(db: Conn, settings: Settings) -> str:
    """The agents the desk knows: name, @username, duty, active tickets."""
    known = await agents.all_agents(db)
    counts = await agents.active_counts(db)
    source = (
        "the ids in agents.ids"
        if settings.agents.ids
        else "the support group's members (and the admins)"
    )
    lines = ["<b>Agents</b>"]
    for agent in known:
        username = f" @{escape(agent.username)}" if agent.username else ""
        duty = "on duty" if agent.on_duty else "off duty"
        lines.append(
            f"{escape(agent.full_name)}{username} ({agent.user_id}) · {duty} · "
            f"{counts.get(agent.user_id, 0)} active"
        )
    if not known:
        lines.append("None met yet: agents appear here once they act in the group.")
    lines.append(f"\nWho is an agent: {escape(source)}. Add or remove agents there.")
    return "\n".join(lines)


async def dlq_listing(db: Conn) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The open dead letters with their reasons, and a retry and a drop button for each
    of the first DLQ_SHOWN (as `topicdesk dlq list` shows them)."""
    letters = await deadletters.list_letters(db)
    if not letters:
        return "No dead letters.", ()
    lines = [f"<b>Dead letters: {len(letters)}</b>"]
    buttons: list[tuple[str, str]] = []
    for letter in letters[:DLQ_SHOWN]:
        ticket = f" ticket #{letter.ticket_id}" if letter.ticket_id else ""
        when = letter.created_at[:16].replace("T", " ")
        lines.append(
            f"{letter.id}. {when} {escape(letter.method)} to {letter.chat_id}{ticket}: "
            f"{escape(safe_text(letter.error))}"
        )
        buttons.append((f"↻ Retry {letter.id}", f"{DLQ_PREFIX}{letter.id}:retry"))
        buttons.append((f"✖ Drop {letter.id}", f"{DLQ_PREFIX}{letter.id}:drop"))
    if len(letters) > DLQ_SHOWN:
        lines.append(f"… and {len(letters) - DLQ_SHOWN} more: topicdesk dlq list")
    return "\n".join(lines), tuple(buttons)


def parse_dlq_button(data: str) -> tuple[int, str] | None:
    """(letter id, "retry"|"drop") from a /dlq button's data, or None for anything else."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] + ":" != DLQ_PREFIX or parts[2] not in {"retry", "drop"}:
        return None
    if not parts[1].isdigit() or len(parts[1]) > 18:
        return None
    return int(parts[1]), parts[2]


async def resolve_letter(db: Conn, letter_id: int, action: str) -> str:
    """Retry or drop a dead letter as `topicdesk dlq` does; the answer for the button."""
    letter = await deadletters.get_letter(db, letter_id)
    if letter is None or letter.resolution is not None:
        return f"Dead letter {letter_id} does not exist or is resolved."
    if action == "retry":
        if letter.chat_id > 0:
            # The admin says try again: a customer marked unreachable may be back.
            await tickets.set_unreachable(db, letter.chat_id, None)
        await deadletters.resolve(db, letter, "retried")
        return f"Dead letter {letter_id} queued again."
    await deadletters.resolve(db, letter, "dropped")
    return f"Dead letter {letter_id} dropped."
