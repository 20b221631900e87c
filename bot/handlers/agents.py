"""The agents' forum group: what an agent writes in a ticket's topic goes to the customer."""

from __future__ import annotations

from html import escape

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.config import Settings
from bot.handlers.common import OnLoop, is_service, to_incoming
from bot.metrics import Metrics
from bot.services import tickets as desk
from bot.services import workflow
from bot.services.agents import Actor, AgentDirectory, anonymous_admin
from storage import keys
from storage.db import Conn
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)


def create_router(settings: Settings) -> Router:
    """The agents' side: the support group only, and only messages inside topics.

    Messages in the General topic carry no thread and are not topic messages, so
    they never reach these handlers.
    """
    router = Router(name="agents")
    group_id = settings.support.group_id
    router.message.filter(OnLoop(F.chat.id == group_id), OnLoop(F.is_topic_message))
    router.message.register(on_close, Command("close"))
    router.message.register(on_topic_message)
    return router


async def author(
    message: Message, bot: Bot, db: Conn, settings: Settings, directory: AgentDirectory
) -> Actor | None:
    """Who wrote a message in the group: an agent, someone else, or None for a bot."""
    if message.sender_chat is not None:
        # Anonymous admins post as the group itself, through a bot account: agents.
        if message.sender_chat.id == settings.support.group_id:
            return anonymous_admin(message.chat.title or "")
        return None  # a channel posting in the group
    if message.from_user is None or message.from_user.is_bot:
        return None
    return await directory.actor(bot, db, message.from_user, wrote=True)


async def refuse_outsider(db: Conn, ticket: Ticket, actor: Actor, what: str) -> None:
    """Someone who is not an agent wrote in a ticket's topic: nothing of theirs reaches
    the customer or changes the ticket. Told once per ticket, logged every time."""
    log.warning("not an agent: refused", presser_id=actor.user_id, what=what)
    note = (
        f"{escape(actor.name)}, only the desk's agents can write to the customer or change "
        "this ticket; this stayed here."
    )
    await desk.notify_agents(db, ticket, note, f"ticket:{ticket.id}:outsider:{actor.user_id}")


async def answer_command(
    db: Conn,
    message: Message,
    ticket: Ticket | None,
    text: str,
    kind: str,
    *,
    buttons: desk.Buttons = (),
) -> None:
    """Answer a command in the group where it was given: its ticket's topic, or General.
    `kind` names the handler in the row's key (storage.keys.reply_to)."""
    key = keys.reply_to(kind, message.chat.id, message.message_id)
    if ticket is not None:
        await desk.notify_agents(db, ticket, text, key, buttons=buttons)
    else:
        await desk.say(db, message.chat.id, text, key, buttons=buttons)


async def refuse_non_agent(
    db: Conn, message: Message, ticket: Ticket | None, actor: Actor, what: str
) -> None:
    """Someone who is not an agent used a command in the group: told once (per ticket in
    a topic, per person in General), logged, and nothing changes."""
    if ticket is not None:
        await refuse_outsider(db, ticket, actor, what)
        return
    log.warning("not an agent: refused", user_id=actor.user_id, what=what)
    note = f"{escape(actor.name)}, only the desk's agents can use these commands."
    await desk.say(
        db, message.chat.id, note, keys.outsider_in_group(message.chat.id, actor.user_id or 0)
    )


async def on_topic_message(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """An agent wrote in a topic: relay it to the ticket's customer."""
    if is_service(message):
        return
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return
    if ticket is None:
        log.info("message in a topic that belongs to no ticket, ignored")
        return
    if not actor.is_agent:
        await refuse_outsider(db, ticket, actor, "message")
        return
    incoming = to_incoming(message)
    key = keys.reply_to("agent", incoming.chat_id, incoming.message_id)
    command = unknown_command(message)
    if command:
        # A mistyped command (/hisotry), or one for another bot (/close@otherbot): never
        # the customer's to read.
        note = (
            f"{escape(command)} is not a command here, so it was not sent to the customer. "
            "To send a text that starts with /, put a space or a quote before it."
        )
        await desk.notify_agents(db, ticket, note, key)
        log.info("unknown command in a topic: not relayed", command=command)
        return
    if not ticket.is_open:
        note = f"Ticket #{ticket.id} is closed: the customer will not see this message."
        await desk.notify_agents(db, ticket, note, key)
        return
    if not incoming.relayable:
        await desk.notify_agents(
            db, ticket, "This kind of message can't be sent to a customer.", key
        )
        return
    too_large = desk.oversize_note(settings, incoming)
    if too_large:
        await desk.notify_agents(db, ticket, too_large, key)
        return
    await desk.relay(db, settings, ticket, incoming, "to_customer")


def unknown_command(message: Message) -> str:
    """The /command a message starts with (every known one has its handler before this
    one), or ""."""
    entities = message.entities or []
    first = entities[0] if entities else None
    if first is None or first.type != "bot_command" or first.offset != 0 or not message.text:
        return ""
    return message.text[: first.length]


async def on_close(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    metrics: Metrics,
    ticket: Ticket | None,
) -> None:
    """/close in a topic closes its ticket."""
    if ticket is None:
        log.info("/close in a topic that belongs to no ticket, ignored")
        return
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return
    if not actor.is_agent:
        await refuse_outsider(db, ticket, actor, "/close")
        return
    if await workflow.close_ticket(db, settings, ticket, actor, metrics) is None:
        key = keys.reply_to("agent", message.chat.id, message.message_id)
        await desk.notify_agents(db, ticket, f"Ticket #{ticket.id} is already closed.", key)
