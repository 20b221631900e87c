"""Reconciliation: what the store believes, held against what happened, and repaired.

Each finding is logged with its `kind` and counted in
`topicdesk_reconciliation_findings_total`:
- rows stuck in 'sending' with no delivery under way go back to their queue;
- an agent's reply that never reached its customer gets a note in the topic, once;
- the topics of open tickets are probed, a few a pass, through the outbox like every
  other call: the desk's rules (bot.services.outcomes) replace a deleted topic and count
  a reopened one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape

from bot.metrics import Metrics
from bot.services import tickets as desk
from storage import housekeeping, keys, tickets
from storage.db import Conn, Database, to_iso
from storage.housekeeping import UndeliveredReply
from storage.outbox import PRIORITY_PROBE, Purpose, State

# A row is 'sending' only while its call is under way; the sender says which are.
STUCK_AFTER = timedelta(minutes=5)
# Replies that died longer ago than this are history, not news for the agents.
UNDELIVERED_LOOKBACK = timedelta(days=7)
EXCERPT = 60
# Probing a topic costs a send from the group's 20-a-minute budget, so only a few per
# pass, least recently probed first.
PROBES_PER_PASS = 3


class Reconciler:
    """Finds and repairs what the store believes wrongly."""

    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        *,
        is_delivering: Callable[[int], bool],
        breaker_open: Callable[[], bool],
    ) -> None:
        self._db = database
        self._metrics = metrics
        self._is_delivering = is_delivering
        self._breaker_open = breaker_open
        self._probed: dict[int, float] = {}  # ticket id -> when its topic was last probed

    async def resume_stuck_sends(self) -> int:
        """Rows left 'sending' with no delivery under way go back to their queue."""
        before = to_iso(datetime.now(UTC) - STUCK_AFTER)
        resumed = []
        async with self._db.transaction() as db:
            for item in await housekeeping.sending_since(db, before):
                # Checked inside the transaction: the sender cannot mark a row meanwhile.
                if not self._is_delivering(item.id) and await housekeeping.resume(db, item.id):
                    resumed.append(item)
        for item in resumed:
            self._metrics.finding(
                "stuck_sending",
                "an outbox row was stuck in 'sending'; queued again",
                outbox_id=item.id,
                chat_id=item.chat_id,
                ticket_id=item.ticket_id,
                method=item.method,
            )
        return len(resumed)

    async def flag_undelivered_replies(self) -> int:
        """Tell the agents of an open ticket about a reply that never reached the customer.

        The sender already posts "not delivered to the customer" when it gives up on a
        reply; a second note would spend the group's budget to say it again. So a reply
        is noted here only when that note is missing or failed too, and flagged either
        way so it is looked at once.
        """
        since = to_iso(datetime.now(UTC) - UNDELIVERED_LOOKBACK)
        noted: list[UndeliveredReply] = []
        async with self._db.transaction() as db:
            for reply in await housekeeping.undelivered_replies(db, since):
                told = await _agents_told(db, reply)
                if told is None:
                    continue  # the sender's note is still on its way
                if told:
                    await housekeeping.flag_undelivered(db, reply, told_by="sender")
                    continue
                ticket = await tickets.get_ticket(db, reply.ticket_id)
                assert ticket is not None
                await desk.notify_agents(
                    db, ticket, undelivered_note(reply), key=keys.undelivered_note(reply.outbox_id)
                )
                await housekeeping.flag_undelivered(db, reply, told_by="reconciliation")
                noted.append(reply)
        for reply in noted:
            self._metrics.finding(
                "undelivered_reply",
                "an agent's reply never reached the customer; the agents are told",
                ticket_id=reply.ticket_id,
                message_id=reply.message_id,
                outbox_id=reply.outbox_id,
            )
        return len(noted)

    async def probe_topics(self) -> int:
        """Queue a probe of a few open tickets' topics; return how many were queued.

        The Bot API has no read-only way to ask whether a topic exists, and sendChatAction
        is no probe: it answers True for a deleted topic (tdlib/telegram-bot-api#732).
        reopenForumTopic is: on an open topic it fails with TOPIC_NOT_MODIFIED and posts
        nothing, on a deleted one it fails with "message thread not found" or
        TOPIC_DELETED, and a topic closed by hand under an open ticket is reopened, as
        the sender would do anyway. The probe is an outbox row, so it is paced with the
        group's budget after everything else queued there, and its answer is the desk's
        to act on (a new topic for a deleted one). No probes while the group has rows
        waiting or Telegram is failing.
        """
        if self._breaker_open():
            return 0
        stamp = int(time.time())
        queued = 0
        async with self._db.transaction() as db:
            candidates = await housekeeping.open_tickets_with_topic(db)
            self._probed = {k: v for k, v in self._probed.items() if k in set(candidates)}
            candidates.sort(key=lambda ticket_id: self._probed.get(ticket_id, 0.0))
            idle: dict[int, bool] = {}  # group -> nothing waiting there before this pass
            for ticket_id in candidates[:PROBES_PER_PASS]:
                ticket = await tickets.get_ticket(db, ticket_id)
                if ticket is None or ticket.thread_id is None:
                    continue
                group = ticket.group_chat_id
                if group not in idle:
                    idle[group] = not await housekeeping.waiting_in_chat(db, group)
                if not idle[group]:
                    break  # the group's budget belongs to real messages first
                self._probed[ticket_id] = time.monotonic()
                await desk.topic_action(
                    db,
                    ticket,
                    Purpose.TOPIC_PROBE,
                    keys.topic_probe(ticket.id, ticket.thread_id, stamp),
                    PRIORITY_PROBE,
                )
                queued += 1
        return queued


async def _agents_told(db: Conn, reply: UndeliveredReply) -> bool | None:
    """Whether the sender's own note reached the topic; None while it is on its way."""
    if reply.letter_id is None:
        return False
    state = await housekeeping.state_of(db, keys.dead_letter_note(reply.letter_id))
    if state in {State.PENDING, State.SENDING}:
        return None
    return state == State.SENT


def undelivered_note(reply: UndeliveredReply) -> str:
    """The agents' note about a reply that never reached the customer (Telegram HTML)."""
    if reply.text:
        text = reply.text.replace("\n", " ")
        excerpt = text if len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"
    else:
        excerpt = f"({reply.kind})"
    return f"⚠ an earlier reply never reached the customer: {escape(excerpt)}"
