"""Look up the ticket an update belongs to, once, and name it in every log line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.config import Settings
from bot.services import tickets as desk
from storage.db import Conn
from storage.tickets import Ticket

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class TicketContext(BaseMiddleware):
    """Puts the update's ticket (or None) into the handler's data as `ticket`.

    In a private chat it is the customer's open ticket; in the support group, the ticket
    whose topic the message (or the pressed button's message) is in. Its id is bound to
    the log context for the rest of the update.
    """

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        db: Conn = data["db"]
        settings: Settings = data["settings"]
        ticket = await _ticket_of(db, settings, event)
        data["ticket"] = ticket
        if ticket is None:
            return await handler(event, data)
        with structlog.contextvars.bound_contextvars(ticket_id=ticket.id):
            return await handler(event, data)


async def _ticket_of(db: Conn, settings: Settings, event: TelegramObject) -> Ticket | None:
    message: Message | None = None
    if isinstance(event, Message):
        message = event
    elif isinstance(event, CallbackQuery) and isinstance(event.message, Message):
        message = event.message
    if message is None:
        return None
    if message.chat.type == "private":
        return await desk.open_ticket_of(db, message.chat.id)
    if message.chat.id == settings.support.group_id and message.is_topic_message:
        return await desk.ticket_of_topic(db, message.chat.id, message.message_thread_id or 0)
    return None
