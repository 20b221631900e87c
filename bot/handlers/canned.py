"""Canned responses in the support group: /canned for agents, /canned_add and /canned_del
for admins.

/canned lists them and /canned name sends one to the ticket's customer, in a ticket's
topic. /canned_add name text and /canned_del name work in a topic or in the General
topic (whose messages are not topic messages, so this router does not filter on topics).
It comes before bot.handlers.agents, which would relay these commands to the customer.
One short answer per command, in the ticket's topic, or else in General.
"""

from __future__ import annotations

from html import escape

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.config import Settings
from bot.handlers.agents import answer_command, author, refuse_non_agent
from bot.handlers.common import OnLoop, explicit_reply_id
from bot.services import canned as canned_replies
from bot.services.agents import Actor, AgentDirectory
from storage import canned
from storage.db import Conn, to_iso
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

# Formatting an admin applied with Telegram's own editor (bold, a link...) arrives as
# entities: /canned_add then takes the message as Telegram HTML renders it. Without
# them, the text is read as Telegram HTML written by hand. Entities Telegram finds by
# itself (links, @mentions, the command) do not count as formatting.
FORMATTING = frozenset(
    {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "blockquote",
        "expandable_blockquote",
        "custom_emoji",
    }
)


def create_router(settings: Settings) -> Router:
    """Canned responses: the support group, in topics and in General."""
    router = Router(name="canned")
    router.message.filter(OnLoop(F.chat.id == settings.support.group_id))
    router.message.register(on_canned, Command("canned"))
    router.message.register(on_canned_add, Command("canned_add"))
    router.message.register(on_canned_del, Command("canned_del"))
    return router


async def _admin(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
    what: str,
) -> Actor | None:
    """The admin who sent a command; None (after refusing anyone else) to stop there."""
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return None
    if not actor.is_agent:
        await refuse_non_agent(db, message, ticket, actor, what)
        return None
    if not actor.is_admin:
        log.warning("not an admin: refused", user_id=actor.user_id, what=what)
        await answer_command(
            db, message, ticket, "Only the desk's admins can change canned responses.", "canned"
        )
        return None
    return actor


def _source(message: Message) -> str:
    """The command as Telegram HTML (see FORMATTING)."""
    entities = message.entities or []
    if any(entity.type in FORMATTING for entity in entities):
        return message.html_text
    return message.text or ""


async def on_canned(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/canned lists the canned responses; /canned name sends one to the customer."""
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return
    if not actor.is_agent:
        await refuse_non_agent(db, message, ticket, actor, "/canned")
        return
    responses = await canned.active(db)
    words = (command.args or "").split()
    if not words:
        await answer_command(db, message, ticket, canned_replies.listing(responses), "canned")
        return
    if ticket is None:
        await answer_command(db, message, None, "Use /canned name in a ticket's topic.", "canned")
        return
    name = words[0].lower()
    response = next((r for r in responses if r.name == name), None)
    if response is None:
        names = [r.name for r in responses]
        await answer_command(
            db, message, ticket, canned_replies.unknown_name(name, names), "canned"
        )
        return
    if not ticket.is_open:
        text = f"Ticket #{ticket.id} is closed: the customer will not see this message."
        await answer_command(db, message, ticket, text, "canned")
        return
    await canned_replies.send(
        db,
        ticket,
        response,
        agent_id=actor.user_id,
        agent_name=actor.name,
        chat_id=message.chat.id,
        message_id=message.message_id,
        date=to_iso(message.date),
        reply_to_message_id=explicit_reply_id(message),
    )


async def on_canned_add(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/canned_add name text: an admin adds a canned response, or replaces its text."""
    actor = await _admin(message, bot, db, settings, directory, ticket, "/canned_add")
    if actor is None:
        return
    parts = _source(message).split(maxsplit=2)
    if len(parts) < 3:
        usage = (
            "Usage: /canned_add name text. The text is Telegram HTML and may use "
            "{customer_name}, {ticket_id} and {agent_name}."
        )
        await answer_command(db, message, ticket, escape(usage), "canned")
        return
    name, text = parts[1].lower(), parts[2].strip()
    problem = canned_replies.problem_with(name, text)
    if problem is not None:
        await answer_command(db, message, ticket, escape(problem), "canned")
        return
    added = await canned.put(db, name, text, actor.user_id)
    log.info("canned response saved", name=name, added=added, admin_id=actor.user_id)
    verb = "Added" if added else "Replaced"
    preview = escape(canned_replies.preview(text))
    await answer_command(db, message, ticket, f"{verb} <code>{name}</code>: {preview}", "canned")


async def on_canned_del(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/canned_del name: an admin deletes a canned response (the config won't bring it back)."""
    actor = await _admin(message, bot, db, settings, directory, ticket, "/canned_del")
    if actor is None:
        return
    words = (command.args or "").split()
    if not words:
        await answer_command(db, message, ticket, "Usage: /canned_del name", "canned")
        return
    name = words[0].lower()
    if not await canned.delete(db, name, actor.user_id):
        await answer_command(
            db, message, ticket, f"No canned response <code>{escape(name)}</code>.", "canned"
        )
        return
    log.info("canned response deleted", name=name, admin_id=actor.user_id)
    await answer_command(db, message, ticket, f"Deleted <code>{escape(name)}</code>.", "canned")
