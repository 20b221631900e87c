"""Canned responses: an agent sends a stored text to the customer with /canned name.

A canned reply is the agent's reply in every way that matters: it is recorded in the
ticket's messages (to the customer, its source the agent's /canned message) and queued
as a RELAY, so its delivery times the first response and moves an open ticket to
pending (bot.services.outcomes), and a text longer than one message is split by the
sender like any other (bot.delivery.requests.fit). The agent's command gets the bot's
reaction once it is queued: free on the group's budget, where a line would cost a send.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from html import escape

import structlog

from bot.config import Settings
from bot.services.notes import react
from bot.telegram_text import html_to_entities, strip_html
from storage import canned, keys, messages, outbox, tickets
from storage.canned import CannedResponse, Seeding
from storage.db import Conn, Database
from storage.outbox import PRIORITY_CUSTOMER, Outgoing, Purpose
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

NAME = re.compile(r"[a-z0-9_]{1,32}")
VARIABLES = ("customer_name", "ticket_id", "agent_name")
_VARIABLE = re.compile(r"\{(" + "|".join(VARIABLES) + r")\}")
# From Telegram's list of reaction emoji: "sent, okay".
SENT_MARK = "👌"
PREVIEW_CHARS = 60


def fill(template: str, *, customer_name: str, ticket_id: int, agent_name: str) -> str:
    """The canned text for one ticket: its variables filled with HTML-escaped values.

    Only the three variables are replaced; any other brace stays as written (a canned
    text is not a format string).
    """
    values = {
        "customer_name": customer_name,
        "ticket_id": str(ticket_id),
        "agent_name": agent_name,
    }
    return _VARIABLE.sub(lambda match: escape(values[match[1]]), template)


def problem_with(name: str, text: str) -> str | None:
    """Why a name or text cannot be a canned response (as the config checks it), or None."""
    if not NAME.fullmatch(name):
        return f"{name!r} is not a canned response name: use 1 to 32 of a-z, 0-9 and _."
    if not text.strip():
        return "The text is empty."
    try:
        html_to_entities(text)
    except ValueError as exc:
        return f"The text is not valid Telegram HTML ({exc}); write &lt; &gt; &amp; for < > &."
    return None


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The first words of a canned text, as plain text on one line."""
    plain = " ".join(strip_html(text).split())
    if len(plain) <= limit:
        return plain
    cut = plain[:limit].rsplit(" ", 1)[0] or plain[:limit]
    return cut + "…"


def listing(responses: Sequence[CannedResponse]) -> str:
    """Every canned response: its name and first words, in Telegram HTML."""
    if not responses:
        return "No canned responses yet. Admins add one with /canned_add name text."
    lines = ["💬 <b>Canned responses</b> (send one with /canned name):"]
    lines += [f"<code>{r.name}</code> · {escape(preview(r.text))}" for r in responses]
    return "\n".join(lines)


def close_names(name: str, names: Sequence[str]) -> list[str]:
    """Names like `name`: those that start with it, then those spelled alike."""
    starting = [n for n in names if n.startswith(name) and name]
    alike = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return list(dict.fromkeys(starting[:3] + alike))[:3]


def unknown_name(name: str, names: Sequence[str]) -> str:
    """The short answer to /canned with a name nobody defined."""
    text = f"No canned response <code>{escape(name)}</code>."
    close = close_names(name, names)
    if close:
        return text + " Did you mean " + ", ".join(f"<code>{n}</code>" for n in close) + "?"
    return text + " /canned lists them."


async def send(
    db: Conn,
    ticket: Ticket,
    response: CannedResponse,
    *,
    agent_id: int | None,
    agent_name: str,
    chat_id: int,
    message_id: int,
    date: str,
    reply_to_message_id: int | None = None,
) -> bool:
    """Send a canned response to the ticket's customer as the reply of the agent whose
    /canned command is message `message_id` of `chat_id` (sent at `date`, Telegram's).
    False if that command was handled already."""
    customer = await tickets.get_customer(db, ticket.customer_id)
    text = fill(
        response.text,
        customer_name=customer.full_name if customer is not None else "",
        ticket_id=ticket.id,
        agent_name=agent_name,
    )
    link = await messages.add_message(
        db,
        ticket_id=ticket.id,
        direction="to_customer",
        source_chat_id=chat_id,
        source_message_id=message_id,
        sender_id=agent_id,
        kind="canned",
        text=strip_html(text),
        media_group_id=None,
        sent_at=date,
    )
    if link is None:
        log.info("canned response already sent", message_id=message_id)
        return False
    params: dict[str, object] = {"text": text, "parse_mode": "HTML"}
    if reply_to_message_id is not None:
        # The agent answered a customer's message in the topic: the customer sees the
        # reply on their original.
        original = await messages.counterpart(db, chat_id, reply_to_message_id)
        if original is not None and original[0] == ticket.customer_id:
            params["reply_parameters"] = {
                "message_id": original[1],
                "allow_sending_without_reply": True,
            }
    await outbox.enqueue(
        db,
        Outgoing(
            key=keys.canned(chat_id, message_id, "reply"),
            purpose=Purpose.RELAY,
            method="sendMessage",
            params=params,
            chat_id=ticket.customer_id,
            ticket_id=ticket.id,
            message_id=link,
            priority=PRIORITY_CUSTOMER,
        ),
    )
    await react(db, chat_id, message_id, SENT_MARK, keys.canned(chat_id, message_id, "mark"))
    log.info("canned response sent", name=response.name, agent_id=agent_id)
    return True


async def seed_from_config(database: Database, settings: Settings) -> Seeding:
    """Bring the config's `[canned]` table into the database (storage.canned's rules)."""
    async with database.transaction() as db:
        seeding = await canned.seed(db, settings.canned)
    if seeding.added or seeding.refreshed or seeding.kept:
        log.info(
            "canned responses seeded from the config",
            added=list(seeding.added),
            refreshed=list(seeding.refreshed),
            kept_as_admins_left_them=list(seeding.kept),
        )
    return seeding
