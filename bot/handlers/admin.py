"""The admins' commands, and /help for everyone: in a private chat with the bot, in the
General topic, or in a ticket's topic.

/help lists what the asker may use. /ban, /unban, /agents and /dlq are for admins
(`support.admin_ids`); anyone else gets a short refusal, logged with their id, and nothing
changes. This router comes first of all: in a private chat the customer's router takes
every message, and in a topic the agents' router would relay the command to the customer.
One answer per command, where it was given (a ticket's topic, or else General / the chat).
"""

from __future__ import annotations

from html import escape

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.config import Settings
from bot.handlers.agents import author
from bot.handlers.common import OnLoop, after_commit
from bot.services import admin
from bot.services import tickets as desk
from bot.services.agents import Actor, AgentDirectory
from storage import bans, keys, tickets
from storage.db import Conn
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

REFUSED = "Only the desk's admins can use {what}."


def create_router(settings: Settings) -> Router:
    """Admin commands and /help: private chats and the support group."""
    router = Router(name="admin")
    group_id = settings.support.group_id
    router.message.filter(OnLoop((F.chat.type == "private") | (F.chat.id == group_id)))
    router.message.register(on_help, Command("help"))
    router.message.register(on_ban, Command("ban"))
    router.message.register(on_unban, Command("unban"))
    router.message.register(on_agents, Command("agents"))
    router.message.register(on_dlq, Command("dlq"))
    router.callback_query.register(on_dlq_button, OnLoop(F.data.startswith(admin.DLQ_PREFIX)))
    return router


def _private(message: Message) -> bool:
    return message.chat.type == "private"


async def _reply(
    db: Conn,
    message: Message,
    ticket: Ticket | None,
    text: str,
    *,
    key: str | None = None,
    buttons: tuple[tuple[str, str], ...] = (),
) -> None:
    """Answer a command where it was given: the private chat, the ticket's topic, or General
    (a ticket's `ticket` is None in a private chat: there it is the asker's own ticket)."""
    key = key or keys.reply_to("admin", message.chat.id, message.message_id)
    if ticket is None or _private(message):
        await desk.say(db, message.chat.id, text, key, buttons=buttons)
    else:
        await desk.notify_agents(db, ticket, text, key, buttons=buttons)


async def _asker(
    message: Message, bot: Bot, db: Conn, settings: Settings, directory: AgentDirectory
) -> Actor | None:
    """Who sent the command; None for a bot or a channel (ignored)."""
    if not _private(message):
        return await author(message, bot, db, settings, directory)
    user = message.from_user
    if user is None or user.is_bot:
        return None
    is_admin = directory.is_admin(user.id)
    return Actor(user.id, user.full_name, user.username, is_agent=is_admin, is_admin=is_admin)


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
    actor = await _asker(message, bot, db, settings, directory)
    if actor is None:
        return None
    if actor.is_admin:
        return actor
    log.warning("not an admin: refused", user_id=actor.user_id, what=what)
    key = None
    if not _private(message) and not actor.is_agent:
        # Someone who is not even an agent, in the group: told once, not once per command.
        key = keys.outsider_in_group(message.chat.id, actor.user_id or 0)
    await _reply(db, message, ticket, REFUSED.format(what=what), key=key)
    return None


async def on_help(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/help: the commands the asker may use."""
    user = message.from_user
    if _private(message):
        if user is None or user.is_bot:
            return
        actor = await directory.actor(bot, db, user)
        text = admin.help_text(customer=True, agent=actor.is_agent, admin=actor.is_admin)
        await _reply(db, message, None, text)
        return
    asker = await author(message, bot, db, settings, directory)
    if asker is None:
        return
    if not asker.is_agent:
        log.info("/help from someone who is not an agent", user_id=asker.user_id)
        key = keys.outsider_in_group(message.chat.id, asker.user_id or 0)
        note = f"{escape(asker.name)}, only the desk's agents can use these commands."
        await _reply(db, message, ticket, note, key=key)
        return
    text = admin.help_text(customer=False, agent=True, admin=asker.is_admin)
    await _reply(db, message, ticket, text)


def _target(command: CommandObject, ticket: Ticket | None) -> tuple[int, str] | None:
    """The user a /ban or /unban is about, and the rest of its words: `ID [words]`, or in
    a ticket's topic `[words]` for its customer."""
    words = (command.args or "").strip().split(maxsplit=1)
    if words and words[0].isdigit() and len(words[0]) <= 18:
        return int(words[0]), words[1].strip() if len(words) > 1 else ""
    if ticket is not None:
        return ticket.customer_id, " ".join(words)
    return None


async def _who(db: Conn, user_id: int) -> str:
    customer = await tickets.get_customer(db, user_id)
    if customer is None:
        return f"user {user_id}"
    return f"{escape(customer.full_name)} ({user_id})"


async def _announce(
    db: Conn, message: Message, where: Ticket | None, user_id: int, text: str
) -> None:
    """Tell the topic of the user's active ticket, unless the command was given there."""
    active = await tickets.open_ticket_of(db, user_id)
    if active is None or active.thread_id is None:
        return
    if where is not None and where.id == active.id and not _private(message):
        return
    key = keys.part(keys.reply_to("admin", message.chat.id, message.message_id), "announce")
    await desk.notify_agents(db, active, text, key)


async def on_ban(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/ban ID [reason], or /ban [reason] in a ticket's topic: the customer's messages are
    kept and never relayed; they are told once."""
    where = None if _private(message) else ticket
    actor = await _admin(message, bot, db, settings, directory, where, "/ban")
    if actor is None:
        return
    target = _target(command, where)
    if target is None:
        usage = "Use /ban ID [reason], or /ban [reason] in a ticket's topic."
        await _reply(db, message, where, usage)
        return
    user_id, reason = target
    if directory.is_admin(user_id):
        await _reply(db, message, where, "An admin of the desk cannot be banned.")
        return
    ban = await bans.ban(db, user_id, reason or None, actor.user_id)
    who = await _who(db, user_id)
    if ban is None:
        await _reply(db, message, where, f"{who} is already banned.")
        return
    log.info("customer banned", user_id=user_id, by=actor.user_id)
    because = f": {escape(reason)}" if reason else ""
    text = (
        f"{who} is banned by {escape(actor.name)}{because}. "
        "Their messages are kept and not relayed."
    )
    await _reply(db, message, where, text)
    await _announce(db, message, where, user_id, text)


async def on_unban(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/unban ID, or /unban in a ticket's topic: their messages are relayed again."""
    where = None if _private(message) else ticket
    actor = await _admin(message, bot, db, settings, directory, where, "/unban")
    if actor is None:
        return
    target = _target(command, where)
    if target is None:
        await _reply(db, message, where, "Use /unban ID, or /unban in a ticket's topic.")
        return
    user_id = target[0]
    who = await _who(db, user_id)
    if not await bans.unban(db, user_id):
        await _reply(db, message, where, f"{who} is not banned.")
        return
    log.info("customer unbanned", user_id=user_id, by=actor.user_id)
    text = f"{who} is no longer banned: their new messages are relayed again."
    await _reply(db, message, where, text)
    await _announce(db, message, where, user_id, text)


async def on_agents(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/agents: the agents the desk knows, on duty or not, with their active tickets."""
    where = None if _private(message) else ticket
    if await _admin(message, bot, db, settings, directory, where, "/agents") is None:
        return
    if (command.args or "").strip():
        note = (
            "Agents are the support group's members, or the ids in agents.ids when set: "
            "add or remove them there. /agents lists them."
        )
        await _reply(db, message, where, note)
        return
    await _reply(db, message, where, await admin.agents_text(db, settings))


async def on_dlq(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/dlq: the dead letters with their reasons, and buttons to retry or drop each."""
    where = None if _private(message) else ticket
    if await _admin(message, bot, db, settings, directory, where, "/dlq") is None:
        return
    text, buttons = await admin.dlq_listing(db)
    await _reply(db, message, where, text, buttons=buttons)


async def on_dlq_button(
    query: CallbackQuery, bot: Bot, db: Conn, directory: AgentDirectory
) -> None:
    """A /dlq button: retry or drop one dead letter; admins only, forged ids change nothing."""
    user = query.from_user
    if not directory.is_admin(user.id):
        log.warning("not an admin: refused", user_id=user.id, what="dlq button")
        refused = "Only the desk's admins can do this."
        after_commit(db, lambda: bot.answer_callback_query(query.id, text=refused), "answer dlq")
        return
    parsed = admin.parse_dlq_button(query.data or "")
    if parsed is None:
        log.warning("unknown dlq button", data=query.data, user_id=user.id)
        answer = "This button is not known here."
    else:
        answer = await admin.resolve_letter(db, *parsed)
        log.info("dead letter resolved by an admin", letter=parsed[0], action=parsed[1])
    after_commit(db, lambda: bot.answer_callback_query(query.id, text=answer), "answer dlq")
