"""What the desk does with an update it had to quarantine: nobody's words are lost.

The update itself is kept raw (storage.quarantine) by the poller. Here its content is
passed to people: a customer's message is copied into their ticket's topic, or into the
General topic when they have no ticket, with a note that it could not be handled
normally; an agent's message gets a note in its topic that the customer did not get it.
The admins are told once per kind of error, not once per update.
"""

from __future__ import annotations

from typing import Any

import structlog

from bot.config import Settings
from bot.services.tickets import notify_agents, render, say
from storage import keys, kv, outbox, tickets
from storage.db import Conn, utcnow
from storage.outbox import PRIORITY_CUSTOMER, PRIORITY_NOTICE, Outgoing, Purpose

log = structlog.stdlib.get_logger(__name__)

NOTE = (
    "⚠ This message from {name} could not be handled normally (update {update_id} is kept "
    "in quarantine); it is copied here so that it is not lost."
)
AGENT_NOTE = (
    "⚠ This message could not be handled normally (update {update_id} is kept in "
    "quarantine): the customer did not get it."
)
REPORT = (
    "⚠ TopicDesk quarantined an update it could not handle ({kind}: {error}). It is kept, "
    "and what a customer wrote was passed to the agents. See <code>topicdesk updates "
    "list</code>; after an upgrade, <code>topicdesk updates replay --all</code>. You are "
    "told once per kind of error."
)


class DeskQuarantine:
    """The `bot.ingest.Quarantine` of TopicDesk."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def quarantined(
        self,
        db: Conn,
        update_id: int,
        raw: dict[str, Any],
        error: str,
        kind: str,
    ) -> None:
        message = raw.get("message") if isinstance(raw.get("message"), dict) else None
        if message is not None:
            await self._pass_on(db, update_id, message)
        await self._report(db, kind, error)

    async def _pass_on(self, db: Conn, update_id: int, message: dict[str, Any]) -> None:
        chat = message.get("chat") or {}
        chat_id, message_id = chat.get("id"), message.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            return
        group = self._settings.support.group_id
        sender = message.get("from") or {}
        name = " ".join(
            str(part) for part in (sender.get("first_name"), sender.get("last_name")) if part
        )
        if chat.get("type") == "private":
            ticket = await tickets.open_ticket_of(db, chat_id)
            note = render(NOTE, name=name or chat_id, update_id=update_id)
            await outbox.enqueue(
                db,
                Outgoing(
                    key=keys.quarantined(update_id, "copy"),
                    purpose=Purpose.RELAY,
                    method="copyMessage",
                    params={"from_chat_id": chat_id, "message_id": message_id},
                    chat_id=group,
                    ticket_id=None if ticket is None else ticket.id,
                    priority=PRIORITY_CUSTOMER,
                    in_topic=ticket is not None,
                ),
            )
            if ticket is not None:
                await notify_agents(db, ticket, note, keys.quarantined(update_id, "note"))
            else:
                await say(db, group, note, keys.quarantined(update_id, "note"))
        elif chat_id == group and isinstance(message.get("message_thread_id"), int):
            ticket = await tickets.ticket_by_topic(db, group, int(message["message_thread_id"]))
            if ticket is not None:
                note = render(AGENT_NOTE, update_id=update_id)
                await notify_agents(
                    db, ticket, note, keys.quarantined(update_id, "note"), priority=PRIORITY_NOTICE
                )

    async def _report(self, db: Conn, kind: str, error: str) -> None:
        marker = keys.quarantine_report(kind)
        if await kv.get(db, marker) is not None:
            return
        await kv.put(db, marker, utcnow())
        text = render(REPORT, kind=kind, error=error[:300])
        for admin in self._settings.support.admin_ids:
            await say(db, admin, text, keys.quarantine_report(kind, admin))
        log.error("a new kind of update could not be handled; admins told", error_kind=kind)
