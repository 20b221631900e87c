"""Agents' commands about who works what, anywhere in the support group.

In a ticket's topic: /assign @agent (or as a reply to one of the agent's messages) and
/unassign. Anywhere, the General topic included: /onduty, /offduty, /queue, /mine.
Messages in General are not topic messages, so bot.handlers.agents never sees them: this
router comes before it. One short answer per command, in the ticket's topic, or else in
General (also for a topic that belongs to no ticket). Only agents; anyone else is
refused, told once, logged, and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User

from bot.config import Settings
from bot.handlers.agents import answer_command, author, refuse_non_agent
from bot.handlers.common import OnLoop, explicit_reply_id
from bot.services import assignment, queue, workflow
from bot.services.agents import Actor, AgentDirectory
from storage import agents
from storage.agents import Agent
from storage.db import Conn
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

HANDED_SHOWN = 10  # tickets named in /offduty's answer


def create_router(settings: Settings) -> Router:
    """The support group's assignment and queue commands, in General and in topics."""
    router = Router(name="assignment")
    router.message.filter(OnLoop(F.chat.id == settings.support.group_id))
    router.message.register(on_assign, Command("assign"))
    router.message.register(on_unassign, Command("unassign"))
    router.message.register(on_duty, Command("onduty"))
    router.message.register(off_duty, Command("offduty"))
    router.message.register(on_queue, Command("queue"))
    router.message.register(on_mine, Command("mine"))
    return router


async def agent_behind(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
    what: str,
) -> Actor | None:
    """The agent who sent a command; None (after refusing anyone else) to stop there."""
    actor = await author(message, bot, db, settings, directory)
    if actor is None or actor.is_agent:
        return actor
    await refuse_non_agent(db, message, ticket, actor, what)
    return None


async def on_assign(
    message: Message,
    command: CommandObject,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/assign @agent, or /assign as a reply to an agent's message, in a ticket's topic."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/assign")
    if actor is None:
        return
    if ticket is None:
        await answer_command(db, message, None, "Use /assign in a ticket's topic.", "desk")
        return
    if not ticket.is_open:
        await answer_command(
            db, message, ticket, f"Ticket #{ticket.id} is closed: reopen it first.", "desk"
        )
        return
    found = await _named_agent(message, command, bot, db, directory)
    if isinstance(found, str):
        await answer_command(db, message, ticket, found, "desk")
        return
    if ticket.assignee_id == found.user_id:
        text = f"Ticket #{ticket.id} is already assigned to {escape(found.full_name)}."
        await answer_command(db, message, ticket, text, "desk")
        return
    await workflow.assign(db, ticket, found, actor)  # announced in the topic


async def _named_agent(
    message: Message, command: CommandObject, bot: Bot, db: Conn, directory: AgentDirectory
) -> Agent | str:
    """The agent an /assign names (an @username, a mention of someone without one, or the
    author of the message it replies to), or why there is none."""
    mentioned = next(
        (e.user for e in message.entities or () if e.type == "text_mention" and e.user),
        None,
    )
    if mentioned is not None:
        return await _as_agent(bot, db, directory, mentioned)
    if command.args:
        username = command.args.split()[0]
        if not username.startswith("@"):
            return "Usage: /assign @username, or reply /assign to one of the agent's messages."
        agent = await agents.by_username(db, username)
        if agent is None:
            return (
                f"{escape(username)} is not known to the desk as an agent yet: reply /assign "
                "to one of their messages instead."
            )
        # Still an agent? (They may have left the group since the desk met them.)
        user = User(
            id=agent.user_id, is_bot=False, first_name=agent.full_name, username=agent.username
        )
        return await _as_agent(bot, db, directory, user)
    if explicit_reply_id(message) is not None and message.reply_to_message is not None:
        replied = message.reply_to_message
        if replied.from_user is None or replied.sender_chat is not None:
            return "That message is not an agent's."
        return await _as_agent(bot, db, directory, replied.from_user)
    return "Usage: /assign @username, or reply /assign to one of the agent's messages."


async def _as_agent(bot: Bot, db: Conn, directory: AgentDirectory, user: User) -> Agent | str:
    if user.is_bot:
        return "That message is not an agent's."
    actor = await directory.actor(bot, db, user)
    if not actor.checked:
        return f"Could not check {escape(user.full_name)}'s membership with Telegram; try again."
    if not actor.is_agent:
        log.info("assignment refused: not an agent", user_id=user.id)
        return f"{escape(user.full_name)} is not one of the desk's agents."
    agent = await agents.get(db, user.id)  # met just now by directory.actor
    assert agent is not None
    return agent


async def on_unassign(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/unassign in a ticket's topic: nobody works it now."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/unassign")
    if actor is None:
        return
    if ticket is None:
        await answer_command(db, message, None, "Use /unassign in a ticket's topic.", "desk")
        return
    if not ticket.is_open:
        await answer_command(
            db, message, ticket, f"Ticket #{ticket.id} is closed: reopen it first.", "desk"
        )
        return
    if ticket.assignee_id is None:
        await answer_command(
            db, message, ticket, f"Nobody is assigned to ticket #{ticket.id}.", "desk"
        )
        return
    await workflow.assign(db, ticket, None, actor)  # announced in the topic


async def on_duty(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/onduty: new tickets may be assigned to the agent."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/onduty")
    if actor is None:
        return
    if actor.user_id is None:
        await answer_command(
            db, message, ticket, "Post as yourself, not anonymously, to go on duty.", "desk"
        )
        return
    # Said whether or not they were on duty already: an agent the desk has just met is
    # (see storage.agents.remember), and the answer states where they stand.
    changed = await assignment.go_on_duty(db, actor.user_id)
    log.info("agent on duty", agent_id=actor.user_id, changed=changed)
    text = f"🟢 {escape(actor.name)} is on duty."
    if settings.agents.assignment != "off":
        text += " New tickets can be assigned to them."
    await answer_command(db, message, ticket, text, "desk")


async def off_duty(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/offduty: no new tickets for the agent; theirs stay, or are handed on (config)."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/offduty")
    if actor is None:
        return
    if actor.user_id is None:
        await answer_command(
            db, message, ticket, "Post as yourself, not anonymously, to go off duty.", "desk"
        )
        return
    done = await assignment.go_off_duty(db, settings, actor, actor.user_id)
    log.info("agent off duty", agent_id=actor.user_id, changed=done.changed)
    text = f"⚪ {escape(actor.name)} is off duty."
    if done.kept:
        count = len(done.kept)
        text += f" Their {count} active ticket{'s' if count > 1 else ''} stay assigned to them."
    if done.handed_on:
        handed = [
            f"#{ticket.id} → {escape(agent.full_name) if agent else 'nobody'}"
            for ticket, agent in done.handed_on[:HANDED_SHOWN]
        ]
        more = len(done.handed_on) - HANDED_SHOWN
        text += " Handed on: " + ", ".join(handed) + (f" and {more} more." if more > 0 else ".")
    await answer_command(db, message, ticket, text, "desk")


async def on_queue(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/queue: the tickets nobody has answered yet, the longest waiting first."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/queue")
    if actor is None:
        return
    await answer_command(db, message, ticket, await queue.queue_text(db, datetime.now(UTC)), "desk")


async def on_mine(
    message: Message,
    bot: Bot,
    db: Conn,
    settings: Settings,
    directory: AgentDirectory,
    ticket: Ticket | None,
) -> None:
    """/mine: the active tickets assigned to the agent who asks."""
    actor = await agent_behind(message, bot, db, settings, directory, ticket, "/mine")
    if actor is None:
        return
    if actor.user_id is None:
        await answer_command(
            db, message, ticket, "Post as yourself, not anonymously, to see your tickets.", "desk"
        )
        return
    await answer_command(
        db, message, ticket, await queue.mine_text(db, actor.user_id, actor.name), "desk"
    )
