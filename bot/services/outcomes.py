"""The desk's rules for delivery: what a row refers to, and what its outcome means.

The sender (bot.delivery) delivers rows and reports; this module decides what that
means for a ticket: a created topic gets remembered, a copy is linked to its original,
a deleted topic is replaced, a closed one reopened, a customer who blocked the bot is
marked unreachable, and whoever waits for a lost message is told.
"""

from __future__ import annotations

from typing import Any

import structlog

from bot.config import Settings
from bot.delivery.breaker import Outage
from bot.delivery.contract import Aimed, NotReadyError, ObsoleteError, UndeliverableError
from bot.delivery.errors import Failure
from bot.metrics import Metrics
from bot.services import deadlines, mirror, workflow
from bot.services.tickets import (
    notify_agents,
    notify_customer,
    render,
    replace_topic,
    say,
    topic_action,
)
from storage import keys, kv, messages, outbox, tickets
from storage.db import Conn, from_iso, utcnow
from storage.outbox import PRIORITY_CARD, PRIORITY_RECOVERY, OutboxItem, Outgoing, Purpose
from storage.tickets import Status

log = structlog.stdlib.get_logger(__name__)


class DeskOutcomes:
    """The `bot.delivery.contract.Desk` of TopicDesk."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics

    async def aim(self, db: Conn, item: OutboxItem) -> Aimed:
        params = dict(item.params)
        params.setdefault("chat_id", item.chat_id)
        if item.chat_id > 0:
            customer = await tickets.get_customer(db, item.chat_id)
            if customer is not None and customer.unreachable:
                raise UndeliverableError(customer.unreachable)
        if item.ticket_id is not None and (
            item.in_topic or item.edits_card or item.purpose is Purpose.TOPIC
        ):
            await self._aim_at_ticket(db, item, params)
        if item.reply_to is not None:
            other = await messages.counterpart(db, int(params["from_chat_id"]), item.reply_to)
            if other is not None and other[0] == params["chat_id"]:
                params["reply_parameters"] = {
                    "message_id": other[1],
                    "allow_sending_without_reply": True,
                }
        parts: list[int] = []
        if item.album is not None:
            found = await messages.album_parts(db, int(params["from_chat_id"]), item.album)
            params["message_ids"] = [part.source_message_id for part in found]
            parts = [part.id for part in found]
        if item.purpose is Purpose.EDIT:
            await mirror.aim_edit(db, item, params)  # at the copy, known by now
        return Aimed(item.method, params, parts)

    async def _aim_at_ticket(self, db: Conn, item: OutboxItem, params: dict[str, Any]) -> None:
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        if ticket is None:
            raise UndeliverableError(f"ticket {item.ticket_id} does not exist")
        params["chat_id"] = ticket.group_chat_id
        if item.purpose is Purpose.TOPIC_PROBE and not ticket.is_open:
            raise ObsoleteError("the ticket was closed since its topic was to be probed")
        if item.in_topic:
            if ticket.thread_id is None:
                if await outbox.has_unsent(db, ticket.id, Purpose.TOPIC):
                    raise NotReadyError("the ticket's topic is not created yet")
                raise UndeliverableError("the ticket's topic could not be created")
            params["message_thread_id"] = ticket.thread_id
        if item.edits_card:
            if ticket.card_message_id is None:
                if await outbox.has_unsent(db, ticket.id, Purpose.CARD):
                    raise NotReadyError("the ticket's card is not posted yet")
                raise UndeliverableError("the ticket has no card to edit")
            params["message_id"] = ticket.card_message_id

    async def delivered(self, db: Conn, item: OutboxItem, aimed: Aimed, result: Any) -> None:
        chat_id = int(aimed.params["chat_id"])
        if item.purpose is Purpose.TOPIC:
            await tickets.set_topic(db, item.ticket_id or 0, chat_id, result["message_thread_id"])
        elif item.purpose is Purpose.CARD and result is not None:
            await tickets.set_card(db, item.ticket_id or 0, result["message_id"])
            await self._pin_card(db, item)
        elif item.purpose is Purpose.RELAY and item.message_id is not None:
            await messages.mark_delivered(db, item.message_id, chat_id, result["message_id"])
            if chat_id > 0:
                await self._answered(db, item.ticket_id)
        elif item.purpose is Purpose.ALBUM:
            for part, copy in zip(aimed.parts, result or [], strict=False):
                await messages.mark_delivered(db, part, chat_id, copy["message_id"])
            if chat_id > 0:
                await self._answered(db, item.ticket_id)
        elif item.purpose is Purpose.TOPIC_PROBE:
            # An open topic answers TOPIC_NOT_MODIFIED; success means it was closed.
            self._metrics.finding(
                "topic_closed",
                "the topic of an open ticket was closed; reopened it",
                ticket_id=item.ticket_id,
                thread_id=aimed.params.get("message_thread_id"),
            )

    async def _pin_card(self, db: Conn, item: OutboxItem) -> None:
        """The card is posted: pin it, so that it stays at the top of the topic."""
        if item.ticket_id is None:
            return
        await outbox.enqueue(
            db,
            Outgoing(
                key=keys.card_pin(item.ticket_id, item.id),
                purpose=Purpose.CARD_PIN,
                method="pinChatMessage",
                params={"disable_notification": True},
                edits_card=True,
                chat_id=item.chat_id,
                ticket_id=item.ticket_id,
                priority=PRIORITY_CARD,
            ),
        )

    async def _answered(self, db: Conn, ticket_id: int | None) -> None:
        """An agent's reply reached the customer: the first one times the first response
        (from Telegram's date on the customer's first message), and an open ticket now
        waits on the customer."""
        ticket = await tickets.get_ticket(db, ticket_id or 0)
        if ticket is None:
            return
        now = utcnow()
        first = await tickets.record_first_response(db, ticket.id, now)
        if first:
            # The first-response clock stops: its warning and breach are off (or late).
            await deadlines.reschedule(db, self._settings, ticket.id)
            seconds = max(0.0, (from_iso(now) - from_iso(ticket.created_at)).total_seconds())
            histogram = self._metrics.first_response

            async def observe() -> None:
                histogram.observe(seconds)

            db.after_commit(observe)
        if ticket.status is Status.OPEN:
            await workflow.change_status(
                db, self._settings, ticket, Status.PENDING, None, tell_customer=False
            )
        elif first:
            answered = await workflow.reload(db, ticket.id)
            await workflow.show(db, answered, keys.first_response(ticket.id))

    async def failed(
        self, db: Conn, item: OutboxItem, failure: Failure, why: str, attempts: int
    ) -> bool:
        if failure is Failure.UNREACHABLE and item.chat_id > 0:
            await tickets.set_unreachable(db, item.chat_id, why)
            log.warning("customer unreachable", reason=why)
            return False
        if failure is Failure.TOPIC_GONE and item.purpose is Purpose.TOPIC_PROBE:
            return await self._probe_found_no_topic(db, item)
        if failure is Failure.TOPIC_GONE and item.ticket_id is not None:
            return await self._replace_topic(db, item, attempts)
        if failure is Failure.TOPIC_CLOSED and item.ticket_id is not None:
            return await self._reopen_topic(db, item, attempts)
        if failure is Failure.PERMANENT and item.purpose is Purpose.EDIT:
            return await mirror.edit_failed(db, item, why)  # a marked repost instead
        if failure is Failure.PERMANENT and item.purpose is Purpose.REACTION:
            return await mirror.reaction_failed(db, item, why)
        return False

    async def group_moved(self, db: Conn, old: int, new: int) -> None:
        """The group was upgraded and has a new id: move everything over to it."""
        moved = await tickets.move_group(db, old, new)
        await outbox.move_chat(db, old, new)
        await kv.put(db, f"group_id:{old}", str(new))
        log.error(
            "the support group was upgraded and has a new id: set support.group_id to it "
            "in the config and restart",
            old_group_id=old,
            new_group_id=new,
            tickets_moved=moved,
        )

    async def buried(self, db: Conn, item: OutboxItem, letter_id: int, why: str) -> None:
        if item.purpose not in {Purpose.RELAY, Purpose.ALBUM} or item.ticket_id is None:
            return
        ticket = await tickets.get_ticket(db, item.ticket_id)
        if ticket is None:
            return
        key = keys.dead_letter_note(letter_id)
        if item.chat_id == ticket.customer_id:
            note = render("⚠ not delivered to the customer: {why}", why=why)
            await notify_agents(db, ticket, note, key=key)
        else:
            await notify_customer(db, ticket, self._settings.texts.not_delivered_to_agents, key)

    async def outage_over(self, db: Conn, outage: Outage, trip: int) -> None:
        minutes, seconds = divmod(round(outage.seconds), 60)
        text = (
            f"✅ Sending to Telegram was down for {minutes} min {seconds} s; "
            f"{outage.queued} messages were queued and are going out now."
        )
        for admin in self._settings.support.admin_ids:
            await say(db, admin, text, keys.outage_report(trip, admin))

    async def _replace_topic(self, db: Conn, item: OutboxItem, attempts: int) -> bool:
        """The topic is gone: queue a new one and the card ahead of the row, then retry it."""
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        tag = keys.replacement(item.ticket_id or 0, f"{item.id}:{attempts}")
        if ticket is None or not await replace_topic(db, self._settings, ticket, tag):
            return False
        await outbox.retry_later(db, item.id, 0, "waiting for the new topic")
        return True

    async def _probe_found_no_topic(self, db: Conn, item: OutboxItem) -> bool:
        """Reconciliation's probe met a deleted topic: queue a new one; the probe is done."""
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        if ticket is None or ticket.thread_id is None:
            return False
        thread_id = ticket.thread_id
        tag = keys.replacement(ticket.id, f"probe:{thread_id}")
        if not await replace_topic(db, self._settings, ticket, tag):
            return False
        await outbox.mark_sent(db, item.id, None)
        self._metrics.finding(
            "topic_missing",
            "the topic of an open ticket no longer exists; a new one is queued",
            ticket_id=ticket.id,
            thread_id=thread_id,
        )
        return True

    async def _reopen_topic(self, db: Conn, item: OutboxItem, attempts: int) -> bool:
        """The topic was closed under us: reopen it first, then retry the row."""
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        if ticket is None:
            return False
        log.warning("the ticket's topic is closed; reopening it")
        key = keys.topic_reopen(ticket.id, item.id, attempts)
        await topic_action(db, ticket, Purpose.TOPIC_REOPEN, key, PRIORITY_RECOVERY)
        await outbox.retry_later(db, item.id, 0, "waiting for the topic to reopen")
        return True
