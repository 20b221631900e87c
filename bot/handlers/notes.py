"""What stays inside a ticket's topic: internal notes and /history.

A topic message that starts with `agents.note_prefix` (its text, or a media's caption),
or a /note command, is a note: stored on the ticket, marked with the bot's reaction,
never relayed. This router comes before bot.handlers.agents, which relays every other
topic message to the customer. A note from someone who is not an agent is refused like
any outsider's message, and stored nowhere.
"""

from __future__ import annotations

from html import escape

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import Message

from bot.config import Settings
from bot.handlers.agents import author, refuse_outsider
from bot.handlers.common import OnLoop, is_service
from bot.services import notes
from bot.services import tickets as desk
from bot.services.agents import Actor, AgentDirectory
from storage import keys
from storage.db import Conn
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)


class IsNote(Filter):
    """A topic message that is a note by its prefix, or a part of an album whose caption
    made it one (the other parts carry no caption). Hands the note's text on as `note`."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    async def __call__(self, message: Message, db: Conn) -> bool | dict[str, str]:
        text = notes.note_text(message.text or message.caption, self._prefix)
        if text is not None:
            return {"note": text}
        if await notes.is_note_album(db, message.chat.id, message.media_group_id):
            return {"note": ""}
        return False


def create_router(settings: Settings) -> Router:
    """Notes and /history: the support group, messages inside topics only."""
    router = Router(name="notes")
    router.message.filter(
        OnLoop(F.chat.id == settings.support.group_id), OnLoop(F.is_topic_message)
    )
    router.message.register(on_note_command, Command("note"))
    router.message.register(on_history, Command("history"))
    router.message.register(on_note, IsNote(settings.agents.note_prefix))
    return router


async def _agent_on_ticket(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
    what: str,
) -> tuple[Actor, Ticket] | None:
    """The agent who wrote in a ticket's topic, and the ticket; None to stop there (a
    bot, a topic of no ticket, or someone who is not an agent, refused)."""
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return None
    if ticket is None:
        log.info("in a topic that belongs to no ticket, ignored", what=what)
        return None
    if not actor.is_agent:
        await refuse_outsider(db, ticket, actor, what)
        return None
    return actor, ticket


def _author_id(message: Message, actor: Actor) -> int:
    """Who wrote a note: the agent, or the group for an anonymous admin."""
    if actor.user_id is not None:
        return actor.user_id
    return message.sender_chat.id if message.sender_chat is not None else message.chat.id


async def on_note(
    message: Message,
    note: str,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """`// text` (or a media captioned so) in a topic: an internal note."""
    if is_service(message):
        return
    found = await _agent_on_ticket(message, bot, db, settings, directory, ticket, "note")
    if found is None:
        return
    actor, ticket = found
    await notes.keep_note(
        db,
        ticket,
        _author_id(message, actor),
        message.chat.id,
        message.message_id,
        note,
        message.media_group_id,
    )


async def on_note_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/note text (or a media captioned so): an internal note."""
    found = await _agent_on_ticket(message, bot, db, settings, directory, ticket, "/note")
    if found is None:
        return
    actor, ticket = found
    text = (command.args or "").strip()
    if not text and message.text is not None:
        # A bare /note says nothing; it stays inside all the same, and the agent learns how.
        prefix = escape(settings.agents.note_prefix)
        usage = f"Write the note after the command (/note text), or start a message with {prefix}"
        key = keys.note(message.chat.id, message.message_id, "usage")
        await desk.notify_agents(db, ticket, usage, key)
        return
    await notes.keep_note(
        db,
        ticket,
        _author_id(message, actor),
        message.chat.id,
        message.message_id,
        text,
        message.media_group_id,
    )


async def on_history(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/history in a topic: the ticket's changes, who made them and when."""
    found = await _agent_on_ticket(message, bot, db, settings, directory, ticket, "/history")
    if found is None:
        return
    _, ticket = found
    await notes.show_history(
        db, ticket, keys.reply_to("history", message.chat.id, message.message_id)
    )
