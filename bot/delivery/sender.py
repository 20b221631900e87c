"""The sender: drains the outbox into the Bot API, one call in flight per chat.

Scheduling. The sender learns which chats have new rows from the commits themselves
(`Database.on_outbox_commit`), looks only at those, and rescans the whole outbox every
few seconds for rows written by another process (`topicdesk dlq retry`). Chats are
independent, so one chat that waits (out of budget, or retrying) never holds back
another; at most `delivery.max_in_flight` rows are under way at once, which bounds the
tasks waiting in the rate limiter during a backlog.

Order. A private chat's rows go out by priority, then in the order written. A group's
budget (20 sends a minute for all its topics) is shared between tickets round-robin: each
ticket's next row in turn, so a quiet ticket waits at most a few sends behind a noisy
one. Urgent rows (the customers' words, topics, cards, notices) of every ticket go
before any card edit or topic change, so a burst of those never delays a customer.

One row. It is marked `sending` before its call and `sent` with its effects in one
transaction after it, so a restart resumes where the last run stopped. The desk
(`bot.delivery.contract.Desk`) resolves what a row refers to and decides what an
outcome means for a ticket; the rate limiter sits below, in the bot's request
middleware; retries are tenacity's; what cannot be delivered becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramMigrateToChat, TelegramRetryAfter
from aiogram.methods.base import TelegramMethod
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from bot.config import Settings
from bot.delivery import requests
from bot.delivery.breaker import CircuitBreaker
from bot.delivery.contract import Desk, NotReadyError, ObsoleteError, UndeliverableError
from bot.delivery.errors import Failure, classify, reason
from bot.metrics import Metrics
from storage import deadletters, outbox
from storage.db import Conn, Database, from_iso, is_store_fault
from storage.outbox import OutboxItem

log = structlog.stdlib.get_logger(__name__)

NOT_READY_DELAY = 1.0
# The sender rescans the whole outbox at least this often, so rows requeued by another
# process (`topicdesk dlq retry`) go out without a restart.
IDLE_LOOK = 5.0
# How many heads of private chats one read fetches.
CHATS_PER_READ = 200
# How many tickets of a group one look may pass over whose next row is not due yet.
LANES_PER_LOOK = 50


class BreakerOpenError(Exception):
    """Telegram is failing; the row waits until the circuit breaker closes."""


class _Budget:
    """The retry budget of one call: 429s wait and do not count, other failures do."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.failures = 0

    def exhausted(self, state: RetryCallState) -> bool:
        return self.failures >= self.max_attempts


class _Turns:
    """Where a group's round-robin stands: the ticket served last, per band."""

    def __init__(self) -> None:
        self.last: dict[bool, int | None] = {True: None, False: None}


class Sender:
    """Delivers outbox rows; notify() it of the chats a commit queued work for."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        settings: Settings,
        desk: Desk,
        *,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bot = bot
        self._db = db
        self._desk = desk
        self._policy = settings.delivery
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._look: dict[int, None] = {}  # chats to look at, in the order they asked
        self._due: dict[int, float] = {}  # chat -> monotonic time its next row is due
        self._busy: set[int] = set()
        self._in_flight: set[int] = set()  # outbox ids being delivered now
        self._turns: dict[int, _Turns] = {}
        self._next_scan = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.breaker = CircuitBreaker(self._policy.breaker_threshold)
        self.metrics = metrics or Metrics()
        self.queued = 0

    def wake(self) -> None:
        """Rescan the whole outbox now."""
        self._next_scan = 0.0
        self._wake.set()

    def notify(self, chat_ids: set[int]) -> None:
        """A commit queued work for these chats."""
        for chat_id in chat_ids:
            self._look[chat_id] = None
        self._wake.set()

    def is_delivering(self, outbox_id: int) -> bool:
        """Whether this row's delivery is under way (so its 'sending' state is real)."""
        return outbox_id in self._in_flight

    async def run(self) -> None:
        """Deliver until stop() is called."""
        async with self._db.transaction() as db:
            resumed = await outbox.resume_interrupted(db)
        if resumed:
            log.warning("resuming sends interrupted by the last stop", count=resumed)
        while not self._stopping:
            self._wake.clear()
            if self.breaker.is_open:
                await self._probe()
                continue
            wait = await self._start_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def stop(self, grace: float = 10.0) -> None:
        """Start nothing new and let the calls in flight finish (their rows stay safe)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # Choosing what to send.

    async def _start_due(self) -> float:
        """Start the due next row of every idle chat asked about; return how long to wait."""
        now = time.monotonic()
        if now >= self._next_scan:
            await self._scan()
            self._next_scan = now + IDLE_LOOK
        for chat_id, due in list(self._due.items()):
            if due <= now:
                del self._due[chat_id]
                self._look[chat_id] = None
        while self._look and len(self._in_flight) < self._policy.max_in_flight:
            if self._stopping:
                # stop() may have come while we read the outbox; it waits only for the
                # deliveries started before it, so start none after it.
                break
            # Read a few more heads than there are free places (some are not due), not
            # every waiting chat's: during a backlog most of them could not start anyway.
            free = self._policy.max_in_flight - len(self._in_flight)
            taken = list(itertools.islice(self._look, min(CHATS_PER_READ, 2 * free + 8)))
            for chat_id in taken:
                del self._look[chat_id]  # a busy chat is looked at again when it is done
            chats = [c for c in taken if c not in self._busy]
            private = [c for c in chats if c > 0]
            groups = [c for c in chats if c <= 0]
            async with self._db.reader() as db:
                heads = await outbox.heads(db, private) if private else []
                for group in groups:
                    head = await self._group_head(db, group)
                    if head is not None:
                        heads.append(head)
            for item in sorted(heads, key=lambda head: (head.priority, head.id)):
                if not self._due_now(item) or self._stopping:
                    continue
                if len(self._in_flight) >= self._policy.max_in_flight:
                    self._look[item.chat_id] = None
                    continue
                self._start(item)
        upcoming = [due - time.monotonic() for due in self._due.values()]
        return max(0.0, min([self._next_scan - time.monotonic(), *upcoming]))

    async def _scan(self) -> None:
        """Every chat with rows to send, and the outbox's depth for the gauges."""
        async with self._db.reader() as db:
            for chat_id in await outbox.unsent_chats(db):
                self._look.setdefault(chat_id, None)
            self.queued = await outbox.depth(db)

    def _due_now(self, item: OutboxItem) -> bool:
        due_in = (from_iso(item.not_before) - datetime.now(UTC)).total_seconds()
        if due_in <= 0:
            return True
        due = time.monotonic() + due_in
        self._due[item.chat_id] = min(due, self._due.get(item.chat_id, due))
        return False

    async def _group_head(self, db: Conn, chat_id: int) -> OutboxItem | None:
        """The next row of a group: urgent rows before the rest, tickets round-robin."""
        turns = self._turns.setdefault(chat_id, _Turns())
        for urgent in (True, False):
            item = await self._next_turn(db, chat_id, turns, urgent=urgent)
            if item is not None:
                return item
        if chat_id not in self._due:
            self._turns.pop(chat_id, None)  # nothing queued: forget where it stood
        return None

    async def _next_turn(
        self, db: Conn, chat_id: int, turns: _Turns, *, urgent: bool
    ) -> OutboxItem | None:
        start = turns.last[urgent]
        after = start
        wrapped = False
        for _ in range(LANES_PER_LOOK):
            item = await outbox.lane_head(db, chat_id, after, urgent=urgent)
            if item is None:
                if wrapped or start is None:
                    return None
                wrapped, after = True, None  # past the last ticket: start again
                continue
            lane = item.ticket_id
            if wrapped and start is not None and lane is not None and lane > start:
                return None  # went round once
            if self._due_now(item):
                turns.last[urgent] = lane
                return item
            after = -1 if lane is None else lane
        return None

    def _start(self, item: OutboxItem) -> None:
        self._busy.add(item.chat_id)
        self._in_flight.add(item.id)
        task = asyncio.create_task(self._deliver(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(self) -> None:
        """While the breaker is open: ask Telegram who we are, every probe_interval."""
        # New rows wake the sender, but must not make it probe faster: only stop() may
        # cut the wait short.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), self._policy.probe_interval)
        if self._stopping:
            return
        try:
            await self._bot.get_me()
        except Exception as exc:  # noqa: BLE001 - any failure means still down
            log.warning("Telegram still failing", error=reason(exc))
            return
        async with self._db.reader() as db:
            queued = await outbox.depth(db)
        outage = self.breaker.success(queued)
        self.metrics.breaker_open.set(0)
        self.wake()
        if outage is not None:
            async with self._db.transaction() as db:
                await self._desk.outage_over(db, outage, self.breaker.trips)

    # One row, start to end.

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            with structlog.contextvars.bound_contextvars(
                outbox_id=item.id, chat_id=item.chat_id, ticket_id=item.ticket_id
            ):
                await self._attempt(item)
        except Exception as exc:
            if is_store_fault(exc):
                # The row stays as it was in the store and is tried again on a later look.
                log.warning("the database refused the sender; the row waits", error=str(exc))
                self._due[item.chat_id] = time.monotonic() + NOT_READY_DELAY
                return
            log.exception("sender failed on an outbox row; it stays queued")
            async with self._db.transaction() as db:
                await outbox.retry_later(db, item.id, self._policy.max_delay, "internal error")
        finally:
            self._busy.discard(item.chat_id)
            self._in_flight.discard(item.id)
            self._look[item.chat_id] = None
            self._wake.set()

    async def _attempt(self, item: OutboxItem) -> None:
        attempts = item.attempts + 1
        async with self._db.transaction() as db:
            await outbox.mark_sending(db, item.id)
            if attempts > self._policy.max_attempts + 3:
                # Recoveries (new topic, plain text, new group id) each cost an attempt;
                # a row that keeps needing them is not going to make it.
                await self._bury(db, item, "gave up after repeated recoveries", attempts)
                return
            try:
                aimed = await self._desk.aim(db, item)
                plan = [requests.build(call) for call in requests.fit(aimed.method, aimed.params)]
            except NotReadyError as exc:
                await outbox.retry_later(db, item.id, NOT_READY_DELAY, str(exc))
                return
            except ObsoleteError as exc:
                await outbox.mark_sent(db, item.id, None)
                log.info("not sent: no longer needed", reason=str(exc))
                return
            except (UndeliverableError, requests.UnknownMethodError) as exc:
                await self._bury(db, item, str(exc), attempts)
                return
        first: Any = item.first_result
        try:
            for index, request in enumerate(plan):
                if index < item.parts_done:
                    continue  # went out before a failure of a later part
                result = requests.dump(await self._call(item, request))
                if index == 0:
                    first = result
                if index < len(plan) - 1:
                    async with self._db.transaction() as db:
                        await outbox.record_progress(db, item.id, index + 1, first)
        except BreakerOpenError:
            async with self._db.transaction() as db:
                await outbox.retry_later(
                    db, item.id, self._policy.probe_interval, "Telegram is down"
                )
            return
        except Exception as exc:  # noqa: BLE001 - every failure is sorted below
            await self._failed(item, exc, attempts)
            return
        async with self._db.transaction() as db:
            await self._desk.delivered(db, item, aimed, first)
            await outbox.mark_sent(db, item.id, first)
        log.debug("delivered", method=item.method, purpose=item.purpose)

    async def _call(self, item: OutboxItem, request: TelegramMethod[Any]) -> Any:
        """One Bot API call with tenacity's retries; 429s wait exactly retry_after."""
        budget = _Budget(self._policy.max_attempts)
        retrying = AsyncRetrying(
            retry=retry_if_exception(self._retryable),
            wait=self._wait,
            stop=budget.exhausted,
            before_sleep=self._before_sleep(item),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    result = await self._bot(request)
                except Exception as exc:
                    kind = classify(exc)
                    self.metrics.sends.labels(request.__api_method__, kind.value).inc()
                    if kind is Failure.RATE_LIMITED:
                        self.metrics.rate_limited.inc()
                    if kind is Failure.TRANSIENT:
                        budget.failures += 1
                        if self.breaker.failure(self.queued):
                            self.metrics.breaker_open.set(1)
                    if kind in {Failure.RATE_LIMITED, Failure.TRANSIENT} and self.breaker.is_open:
                        raise BreakerOpenError from exc
                    raise
        self.metrics.sends.labels(request.__api_method__, "sent").inc()
        self.breaker.success(self.queued)
        return result

    def _retryable(self, exc: BaseException) -> bool:
        return classify(exc) in {Failure.RATE_LIMITED, Failure.TRANSIENT}

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TelegramRetryAfter):
            return exc.retry_after + self._policy.retry_margin
        backoff = wait_random_exponential(
            multiplier=self._policy.base_delay, max=self._policy.max_delay
        )
        return float(backoff(state))

    def _before_sleep(self, item: OutboxItem) -> Callable[[RetryCallState], Awaitable[None]]:
        async def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.upcoming_sleep
            self.metrics.retries.inc()
            log.warning(
                "send failed, retrying",
                method=item.method,
                retry_in=round(delay, 2),
                error=reason(exc) if exc else "",
            )
            async with self._db.transaction() as db:
                await outbox.record_attempt(db, item.id, reason(exc) if exc else "")

        return note

    # Outcomes.

    async def _failed(self, item: OutboxItem, exc: BaseException, attempts: int) -> None:
        """Sort a failure that retrying did not cure: recover, or bury and tell."""
        kind = classify(exc)
        why = reason(exc)
        async with self._db.transaction() as db:
            if kind is Failure.NOT_MODIFIED:
                await outbox.mark_sent(db, item.id, None)
                return
            if kind is Failure.BAD_MARKUP and item.params.get("parse_mode"):
                await outbox.replace_params(db, item.id, requests.plain(item.params))
                await outbox.retry_later(db, item.id, 0, why)
                log.warning("Telegram could not parse the markup; sending as plain text")
                return
            if kind is Failure.MIGRATED and isinstance(exc, TelegramMigrateToChat):
                await self._desk.group_moved(db, item.chat_id, exc.migrate_to_chat_id)
                await outbox.retry_later(db, item.id, 0, why)
                return
            if not await self._desk.failed(db, item, kind, why, attempts):
                await self._bury(db, item, why, attempts)

    async def _bury(self, db: Conn, item: OutboxItem, why: str, attempts: int) -> None:
        """Make the row a dead letter and tell the side that is waiting for it."""
        letter = await deadletters.bury(db, item, why, attempts)
        log.error(
            "not delivered: kept as a dead letter", letter=letter, method=item.method, error=why
        )
        await self._desk.buried(db, item, letter, why)
