"""Housekeeping: true gauges, a short ledger, admins told of trouble, a consistent store.

Every `health.housekeeping_interval` seconds the housekeeper refreshes the gauges that
describe the store, prunes the processed-update ledger, reads getWebhookInfo, and alerts
the admins (once per condition per day) when operations fail too often or updates pile
up at Telegram: the escalation criteria of the error-handling guide.

Every `health.reconcile_interval` seconds (and once at start) it reconciles what the
store believes with what happened: rows stuck in 'sending', agents' replies that never
reached the customer, tickets whose topic no longer exists. Each finding is logged with
its `kind` and counted in `topicdesk_reconciliation_findings_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal, Protocol

import structlog

from bot.config import Settings
from bot.delivery.errors import Failure, classify, reason
from bot.metrics import Metrics
from bot.services import tickets as desk
from storage import deadletters, health, keys, kv, outbox, tickets, updates
from storage.db import Conn, Database, to_iso, utcnow
from storage.health import UndeliveredReply
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

# Telegram keeps updates 24 h; twice that and a redelivered update can no longer come.
LEDGER_KEPT = timedelta(hours=48)
ALERT_WINDOW = timedelta(hours=24)
# Below this many operations in the window a failure ratio means nothing.
MIN_OPERATIONS = 20
# A row is 'sending' only while its call is under way; the sender says which are.
STUCK_AFTER = timedelta(minutes=5)
# Replies that died longer ago than this are history, not news for the agents.
UNDELIVERED_LOOKBACK = timedelta(days=7)
EXCERPT = 60
# Probing a topic costs a send from the group's 20-a-minute budget (see probe_topics),
# so only a few per pass, least recently probed first.
PROBES_PER_PASS = 3
STOP_GRACE = 5.0

Probe = Literal["present", "missing", "unknown"]


class Telegram(Protocol):
    """The Bot API calls housekeeping makes; aiogram's Bot has them."""

    async def get_webhook_info(self) -> Any: ...

    async def reopen_forum_topic(self, *, chat_id: int, message_thread_id: int) -> Any: ...


class Housekeeper:
    """Runs housekeeping and reconciliation until stop()."""

    def __init__(
        self,
        bot: Telegram,
        database: Database,
        settings: Settings,
        metrics: Metrics,
        *,
        is_delivering: Callable[[int], bool] = lambda _outbox_id: False,
        breaker_open: Callable[[], bool] = lambda: False,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._bot = bot
        self._db = database
        self._settings = settings
        self._health = settings.health
        self._metrics = metrics
        self._is_delivering = is_delivering
        self._breaker_open = breaker_open
        self._wake = wake
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probed: dict[int, float] = {}  # ticket id -> when its topic was last probed
        self._pending_high = False  # pending_update_count was over the limit last time

    def start(self) -> None:
        """Run in the background until stop()."""
        self._task = asyncio.create_task(self.run(), name="housekeeper")

    async def stop(self) -> None:
        """Finish the step in hand (a few seconds at most), then return."""
        self._stop.set()
        if self._task is None:
            return
        _, pending = await asyncio.wait({self._task}, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        """Both loops, until stop()."""
        await asyncio.gather(
            self._every(self._health.housekeeping_interval, self.tidy, "housekeeping"),
            self._every(self._health.reconcile_interval, self.reconcile, "reconciliation"),
        )

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]], what: str) -> None:
        while not self._stop.is_set():
            try:
                await job()
            except Exception:
                log.exception("housekeeping step failed; trying again next time", step=what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    # Housekeeping.

    async def tidy(self) -> None:
        """Gauges, ledger, getWebhookInfo and the alerts that depend on them."""
        await self.refresh_gauges()
        await self.prune_ledger()
        await self.check_failure_rate()
        pending = await self.read_pending_updates()
        if pending is not None:
            await self.check_pending_updates(pending)

    async def refresh_gauges(self) -> None:
        async with self._db.reader() as db:
            depth = await outbox.depth(db)
            letters = await deadletters.count_open(db)
            open_tickets = await health.count_open_tickets(db)
        self._metrics.outbox_depth.set(depth)
        self._metrics.dead_letters.set(letters)
        self._metrics.open_tickets.set(open_tickets)
        self._metrics.breaker_open.set(1 if self._breaker_open() else 0)
        self._metrics.seconds_since_poll()  # refreshes the poll-age gauge

    async def prune_ledger(self) -> int:
        async with self._db.transaction() as db:
            pruned = await updates.prune(db, LEDGER_KEPT)
        if pruned:
            log.info("processed-update ledger pruned", removed=pruned)
        return pruned

    async def read_pending_updates(self) -> int | None:
        """pending_update_count from getWebhookInfo, also set as a gauge."""
        try:
            info = await self._bot.get_webhook_info()
        except Exception as exc:  # noqa: BLE001 - reported, and tried again next time
            log.warning("getWebhookInfo failed", error=reason(exc))
            return None
        count = int(info.pending_update_count)
        self._metrics.pending_updates.set(count)
        return count

    async def check_failure_rate(self) -> bool:
        """Alert when more than failure_alert_ratio of the last 24 h's operations died."""
        since = to_iso(datetime.now(UTC) - ALERT_WINDOW)
        async with self._db.reader() as db:
            total, dead = await health.outbox_outcomes(db, since)
        limit = self._health.failure_alert_ratio
        if total < MIN_OPERATIONS or dead / total <= limit:
            return False
        text = (
            f"⚠ TopicDesk: {dead} of the {total} sends to Telegram in the last 24 hours "
            f"failed for good ({dead / total:.1%}; the alert threshold is {limit * 100:g}%). "
            "They are kept as dead letters: see <code>topicdesk dlq list</code>. If failures "
            "go on once their causes are fixed, escalate to Telegram's support."
        )
        await self._alert("failures", text, dead=dead, total=total)
        return True

    async def check_pending_updates(self, pending: int) -> bool:
        """Alert when updates pile up at Telegram at two checks in a row (sustained)."""
        limit = self._health.pending_alert
        was_high, self._pending_high = self._pending_high, pending > limit
        if not (was_high and self._pending_high):
            return False
        text = (
            f"⚠ TopicDesk: {pending} updates are waiting at Telegram (the alert threshold is "
            f"{limit}). TopicDesk is not receiving its updates or not keeping up with them: "
            "check its log. If it goes on, escalate to Telegram's support."
        )
        await self._alert("pending_updates", text, pending_update_count=pending)
        return True

    async def _alert(self, kind: str, text: str, **facts: object) -> None:
        """Tell every admin, once per kind per (UTC) day; log it the first time."""
        day = datetime.now(UTC).date().isoformat()
        admins = self._settings.support.admin_ids
        async with self._db.transaction() as db:
            first = await kv.get(db, keys.alert(kind, day)) is None
            if first:
                await kv.put(db, keys.alert(kind, day), utcnow())
            for admin in admins:
                await desk.say(db, admin, text, key=keys.alert(kind, day, admin))
        if first:
            log.error("alert raised", alert=kind, admins=len(admins), **facts)
            self._wake()

    # Reconciliation.

    async def reconcile(self) -> int:
        """Find and repair what the store believes wrongly; return how many findings."""
        found = await self.resume_stuck_sends()
        found += await self.flag_undelivered_replies()
        found += await self.probe_topics()
        if found:
            self._wake()
        return found

    def _finding(self, kind: str, event: str, **facts: object) -> None:
        self._metrics.reconciliation.labels(kind).inc()
        log.warning(event, kind=kind, **facts)

    async def resume_stuck_sends(self) -> int:
        """Rows left 'sending' with no delivery under way go back to their queue."""
        before = to_iso(datetime.now(UTC) - STUCK_AFTER)
        resumed = []
        async with self._db.transaction() as db:
            for item in await health.sending_since(db, before):
                # Checked inside the transaction: the sender cannot mark a row meanwhile.
                if not self._is_delivering(item.id) and await health.resume(db, item.id):
                    resumed.append(item)
        for item in resumed:
            self._finding(
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
            for reply in await health.undelivered_replies(db, since):
                told = await self._agents_told(db, reply)
                if told is None:
                    continue  # the sender's note is still on its way
                if told:
                    await health.flag_undelivered(db, reply, told_by="sender")
                    continue
                ticket = await tickets.get_ticket(db, reply.ticket_id)
                assert ticket is not None
                await desk.notify_agents(
                    db, ticket, undelivered_note(reply), key=keys.undelivered_note(reply.outbox_id)
                )
                await health.flag_undelivered(db, reply, told_by="reconciliation")
                noted.append(reply)
        for reply in noted:
            self._finding(
                "undelivered_reply",
                "an agent's reply never reached the customer; the agents are told",
                ticket_id=reply.ticket_id,
                message_id=reply.message_id,
                outbox_id=reply.outbox_id,
            )
        return len(noted)

    @staticmethod
    async def _agents_told(db: Conn, reply: UndeliveredReply) -> bool | None:
        """Whether the sender's own note reached the topic; None while it is on its way."""
        if reply.letter_id is None:
            return False
        state = await health.state_of(db, keys.dead_letter_note(reply.letter_id))
        if state in {"pending", "sending"}:
            return None
        return state == "sent"

    async def probe_topics(self) -> int:
        """Find open tickets whose topic no longer exists and queue a new topic for each.

        The Bot API has no read-only way to ask whether a topic exists, and sendChatAction
        is no probe: it answers True for a deleted topic (tdlib/telegram-bot-api#732).
        reopenForumTopic is: on an open topic it fails with TOPIC_NOT_MODIFIED and posts
        nothing, on a deleted one it fails with "message thread not found" or
        TOPIC_DELETED, and a topic closed by hand under an open ticket is reopened, as
        the sender would do anyway. It counts against the group's budget, so probes are
        few, least recently probed first, and only while the group has nothing queued.
        """
        if self._breaker_open():
            return 0
        async with self._db.reader() as db:
            candidates = await health.open_tickets_with_topic(db)
        self._probed = {k: v for k, v in self._probed.items() if k in set(candidates)}
        candidates.sort(key=lambda ticket_id: self._probed.get(ticket_id, 0.0))
        replaced = 0
        for ticket_id in candidates[:PROBES_PER_PASS]:
            if self._stop.is_set():
                break
            async with self._db.reader() as db:
                ticket = await tickets.get_ticket(db, ticket_id)
                queued = await health.waiting_in_chat(db, ticket.group_chat_id) if ticket else 0
            if ticket is None or ticket.thread_id is None or not ticket.is_open:
                continue
            if queued:
                break  # the group's budget belongs to real messages first
            self._probed[ticket_id] = time.monotonic()
            found = await self._probe(ticket, ticket.thread_id)
            if found == "unknown":
                break
            if found == "missing":
                replaced += await self._replace_topic(ticket, ticket.thread_id)
        return replaced

    async def _probe(self, ticket: Ticket, thread_id: int) -> Probe:
        try:
            await self._bot.reopen_forum_topic(
                chat_id=ticket.group_chat_id, message_thread_id=thread_id
            )
        except Exception as exc:  # noqa: BLE001 - every answer is sorted below
            kind = classify(exc)
            if kind is Failure.NOT_MODIFIED:
                return "present"  # open, as it should be
            if kind is Failure.TOPIC_GONE or "topic_id_invalid" in reason(exc).lower():
                return "missing"
            log.warning(
                "could not check a ticket's topic; trying again later",
                ticket_id=ticket.id,
                error=reason(exc),
            )
            return "unknown"
        self._finding(
            "topic_closed",
            "the topic of an open ticket was closed; reopened it",
            ticket_id=ticket.id,
            thread_id=thread_id,
        )
        return "present"

    async def _replace_topic(self, ticket: Ticket, thread_id: int) -> int:
        async with self._db.transaction() as db:
            current = await tickets.get_ticket(db, ticket.id)
            if current is None or current.thread_id != thread_id or not current.is_open:
                return 0  # the sender met the deleted topic first and replaced it
            tag = keys.replacement(ticket.id, f"probe:{thread_id}")
            if not await desk.replace_topic(db, self._settings, current, tag):
                return 0
        self._finding(
            "topic_missing",
            "the topic of an open ticket no longer exists; a new one is queued",
            ticket_id=ticket.id,
            thread_id=thread_id,
        )
        return 1


def undelivered_note(reply: UndeliveredReply) -> str:
    """The agents' note about a reply that never reached the customer (Telegram HTML)."""
    if reply.text:
        text = reply.text.replace("\n", " ")
        excerpt = text if len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"
    else:
        excerpt = f"({reply.kind})"
    return f"⚠ an earlier reply never reached the customer: {escape(excerpt)}"
