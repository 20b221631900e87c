"""The agents' forum group: what an agent writes in a ticket's topic goes to the customer."""

from __future__ import annotations

import re

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.config import Settings
from bot.handlers.common import OnLoop, after_commit, is_service, to_incoming
from bot.metrics import Metrics
from bot.services import tickets as desk
from storage import keys
from storage.db import Conn
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

CLOSE_BUTTON = re.compile(r"^ticket:(\d+):close$")


def create_router(settings: Settings) -> Router:
    """The agents' side: the support group only, and only messages inside topics.

    Messages in the General topic carry no thread and are not topic messages, so
    they never reach these handlers.
    """
    router = Router(name="agents")
    group_id = settings.support.group_id
    router.message.filter(OnLoop(F.chat.id == group_id), OnLoop(F.is_topic_message))
    router.callback_query.filter(OnLoop(F.message.chat.id == group_id))
    router.message.register(on_close, Command("close"))
    router.message.register(on_topic_message)
    router.callback_query.register(on_close_button, OnLoop(F.data.regexp(CLOSE_BUTTON)))
    return router


def _from_a_person(message: Message, group_id: int) -> bool:
    # Anonymous admins post as the group itself through a bot account; they are agents.
    if message.sender_chat is not None:
        return message.sender_chat.id == group_id
    return message.from_user is not None and not message.from_user.is_bot


async def on_topic_message(
    message: Message, db: Conn, settings: Settings, metrics: Metrics, ticket: Ticket | None
) -> None:
    """An agent wrote in a topic: relay it to the ticket's customer."""
    if is_service(message) or not _from_a_person(message, settings.support.group_id):
        return
    if ticket is None:
        log.info("message in a topic that belongs to no ticket, ignored")
        return
    incoming = to_incoming(message)
    key = keys.reply_to("agent", incoming.chat_id, incoming.message_id)
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
    first_response = await desk.answer_customer(db, settings, ticket, incoming)
    if first_response is not None:
        _observe_first_response(db, metrics, first_response)


def _observe_first_response(db: Conn, metrics: Metrics, seconds: float) -> None:
    """From the customer's first message to the first agent reply, counted once committed."""

    async def observe() -> None:
        metrics.first_response.observe(seconds)

    db.after_commit(observe)


async def on_close(message: Message, db: Conn, settings: Settings, ticket: Ticket | None) -> None:
    """/close in a topic closes its ticket."""
    if ticket is None:
        log.info("/close in a topic that belongs to no ticket, ignored")
        return
    if message.from_user is None:
        return
    if not await desk.close_ticket(db, settings, ticket, message.from_user.id):
        key = keys.reply_to("agent", message.chat.id, message.message_id)
        await desk.notify_agents(db, ticket, f"Ticket #{ticket.id} is already closed.", key)


async def on_close_button(
    query: CallbackQuery, bot: Bot, db: Conn, settings: Settings, ticket: Ticket | None
) -> None:
    """The card's Close button."""
    match = CLOSE_BUTTON.match(query.data or "")
    assert match is not None
    if ticket is None or ticket.id != int(match[1]):
        # The button names another ticket than the topic it is in: forged, or stale.
        log.warning(
            "button refused: it names another ticket than its topic's",
            data=query.data,
            presser_id=query.from_user.id,
        )
        text = "This button does not belong to this topic."
        after_commit(db, lambda: bot.answer_callback_query(query.id, text=text), "refuse button")
        return
    closed = await desk.close_ticket(db, settings, ticket, query.from_user.id)
    text = "Ticket closed." if closed else "This ticket is already closed."
    after_commit(db, lambda: bot.answer_callback_query(query.id, text=text), "answer close button")
