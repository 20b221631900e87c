"""Edits and reactions in both chats, mirrored to the other side (bot.services.mirror).

A customer's edit of a relayed message updates its copy in the topic, and an agent's edit
of a relayed topic message updates the customer's copy. An agent's reaction on a copy of
the customer's words appears on the customer's original, and the customer's reaction on
the copy of an agent's reply appears on the agent's original in the topic.

Telegram sends message_reaction only when the bot asks for it in allowed_updates (this
router's handlers make aiogram ask), and in a group only while the bot is an
administrator there; it never sends one for a reaction a bot set, so the bot's own
reactions (mirrored ones, the marks on notes) cannot come back as updates.
"""

from __future__ import annotations

import structlog
from aiogram import Bot, F, Router
from aiogram.types import Message, MessageReactionUpdated, ReactionTypeEmoji

from bot.config import Settings
from bot.handlers.agents import author
from bot.handlers.common import OnLoop, kind_of
from bot.services import mirror
from bot.services.agents import AgentDirectory, anonymous_admin
from storage.db import Conn

log = structlog.stdlib.get_logger(__name__)


def create_router(settings: Settings) -> Router:
    """Edited messages and reactions: in private chats, and in the support group."""
    router = Router(name="mirror")
    private = OnLoop(F.chat.type == "private")
    in_group = OnLoop(F.chat.id == settings.support.group_id)
    router.edited_message.register(on_customer_edit, private)
    router.edited_message.register(on_agent_edit, in_group, OnLoop(F.is_topic_message))
    router.message_reaction.register(on_customer_reaction, private)
    router.message_reaction.register(on_agent_reaction, in_group)
    return router


def to_edit(message: Message) -> mirror.Edit:
    """The desk's view of an edited message: its text or caption now, with its entities."""
    kind = kind_of(message)
    found = message.entities if kind == "text" else message.caption_entities
    return mirror.Edit(
        chat_id=message.chat.id,
        message_id=message.message_id,
        editor_id=message.from_user.id if message.from_user else None,
        kind=kind,
        text=message.text if kind == "text" else message.caption,
        edit_date=message.edit_date or int(message.date.timestamp()),
        entities=[entity.model_dump(mode="json", exclude_none=True) for entity in found or []],
    )


def to_reaction(update: MessageReactionUpdated, user_id: int) -> mirror.ReactionChange:
    """The emoji of a reaction change; custom emoji and paid reactions are left out."""
    return mirror.ReactionChange(
        chat_id=update.chat.id,
        message_id=update.message_id,
        user_id=user_id,
        date=int(update.date.timestamp()),
        old=tuple(r.emoji for r in update.old_reaction if isinstance(r, ReactionTypeEmoji)),
        new=tuple(r.emoji for r in update.new_reaction if isinstance(r, ReactionTypeEmoji)),
    )


async def on_customer_edit(message: Message, db: Conn) -> None:
    """The customer edited a message: its copy in the topic follows."""
    if message.from_user is None or message.from_user.is_bot:
        return
    link = await mirror.original_of(db, message.chat.id, message.message_id, "to_agents")
    if link is None:
        return  # a form answer, a command: never relayed
    await mirror.carry_edit(db, link, to_edit(message))


async def on_agent_edit(
    message: Message, bot: Bot, db: Conn, settings: Settings, directory: AgentDirectory
) -> None:
    """An agent edited a message relayed to the customer: the customer's copy follows."""
    link = await mirror.original_of(db, message.chat.id, message.message_id, "to_customer")
    if link is None:
        return  # a note, a command, an outsider's words: never relayed
    actor = await author(message, bot, db, settings, directory)
    if actor is None:
        return
    if not actor.is_agent:
        log.warning("not an agent: edit not carried", presser_id=actor.user_id)
        return
    await mirror.carry_edit(db, link, to_edit(message))


async def on_customer_reaction(reaction: MessageReactionUpdated, db: Conn) -> None:
    """The customer reacted to an agent's reply: the agent's original shows it."""
    user = reaction.user
    if user is None or user.is_bot or user.id != reaction.chat.id:
        return
    link = await mirror.copy_of(db, reaction.chat.id, reaction.message_id, "to_customer")
    if link is None:
        return  # not a relayed reply: a notice of the desk, the customer's own words
    await mirror.carry_reaction(db, link, to_reaction(reaction, user.id))


async def on_agent_reaction(
    reaction: MessageReactionUpdated,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
) -> None:
    """An agent reacted to the customer's words in the topic: the customer's original
    shows it. Anyone else's reactions stay in the group."""
    link = await mirror.copy_of(db, reaction.chat.id, reaction.message_id, "to_agents")
    if link is None:
        return  # the card, a note, an agent's own message: not a customer's words
    if reaction.user is not None:
        if reaction.user.is_bot:
            return
        actor = await directory.actor(bot, db, reaction.user)
    elif reaction.actor_chat is not None and reaction.actor_chat.id == reaction.chat.id:
        actor = anonymous_admin(reaction.chat.title or "")  # reacting as the group
    else:
        return  # as a channel
    if not actor.is_agent:
        log.warning("not an agent: reaction not mirrored", presser_id=actor.user_id)
        return
    who = actor.user_id if actor.user_id is not None else reaction.chat.id
    await mirror.carry_reaction(db, link, to_reaction(reaction, who))
