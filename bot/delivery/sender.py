"""The sender: drains the outbox into the Bot API, one call in flight per chat.

Each chat's rows go out by priority, then in the order written; chats are independent,
so one chat that waits (out of budget, or retrying) never holds back another. A row is
marked `sending` before its call and `sent` with its effects (the topic's id, the copy's
message id) in one transaction after it, so a restart resumes where the last run stopped.
The rate limiter sits below, in the bot's request middleware; retries are tenacity's;
what cannot be delivered becomes a dead letter and the other side is told.

Params keys that start with `_` are instructions to the sender, resolved at send time
from the store, because what they point at may not exist when the row is written:
`_topic` (the ticket's forum topic), `_card` (the ticket's card message), `_reply_to`
(the counterpart of a replied-to message), `_album` (all parts of a media group).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiogram import Bot, methods
from aiogram.exceptions import TelegramMigrateToChat, TelegramRetryAfter
from aiogram.methods.base import TelegramMethod
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from bot import telegram_text
from bot.config import Settings
from bot.delivery.breaker import CircuitBreaker, Outage
from bot.delivery.errors import Failure, classify, reason
from bot.metrics import Metrics
from bot.services.tickets import (
    PRIORITY_RECOVERY,
    notify_agents,
    notify_customer,
    render,
    replace_topic,
    say,
)
from storage import deadletters, kv, messages, outbox, tickets
from storage.db import Conn, Database, from_iso
from storage.outbox import OutboxItem, Outgoing

log = structlog.stdlib.get_logger(__name__)

NOT_READY_DELAY = 1.0
# The sender looks at the outbox at least this often, so rows requeued by another
# process (`topicdesk dlq retry`) go out without a restart.
IDLE_LOOK = 5.0


class NotReadyError(Exception):
    """The row depends on something not delivered yet; try again shortly."""


class UndeliverableError(Exception):
    """The row can never be delivered as it stands; the message says why."""


class BreakerOpenError(Exception):
    """Telegram is failing; the row waits until the circuit breaker closes."""


class _Budget:
    """The retry budget of one call: 429s wait and do not count, other failures do."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.failures = 0

    def exhausted(self, state: RetryCallState) -> bool:
        return self.failures >= self.max_attempts


class Sender:
    """Delivers outbox rows; wake() it after a commit that wrote some."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bot = bot
        self._db = db
        self._settings = settings
        self._policy = settings.delivery
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._busy: set[int] = set()
        self._in_flight: set[int] = set()  # outbox ids being delivered now
        self._tasks: set[asyncio.Task[None]] = set()
        self.breaker = CircuitBreaker(self._policy.breaker_threshold)
        self.metrics = metrics or Metrics()
        self.queued = 0

    def wake(self) -> None:
        """Look at the outbox now."""
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
                await asyncio.wait_for(self._wake.wait(), min(wait or IDLE_LOOK, IDLE_LOOK))

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

    async def _start_due(self) -> float | None:
        """Start the due head of every idle chat; return seconds until the next is due."""
        async with self._db.reader() as db:
            heads = await outbox.heads(db)
            self.queued = await outbox.depth(db)
        now = datetime.now(UTC)
        wait: float | None = None
        for item in heads:
            if self._stopping:
                # stop() may have come while we read the outbox; it waits only for the
                # deliveries started before it, so start none after it.
                return None
            if item.chat_id in self._busy:
                continue
            due_in = (from_iso(item.not_before) - now).total_seconds()
            if due_in > 0:
                wait = due_in if wait is None else min(wait, due_in)
                continue
            self._busy.add(item.chat_id)
            self._in_flight.add(item.id)
            task = asyncio.create_task(self._deliver(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wait

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
        if outage is not None:
            await self._report_outage(outage)

    async def _report_outage(self, outage: Outage) -> None:
        minutes, seconds = divmod(round(outage.seconds), 60)
        text = (
            f"✅ Sending to Telegram was down for {minutes} min {seconds} s; "
            f"{outage.queued} messages were queued and are going out now."
        )
        async with self._db.transaction() as db:
            for admin in self._settings.support.admin_ids:
                await say(db, admin, text, f"outage:{self.breaker.trips}:{admin}")

    # One row, start to end.

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            with structlog.contextvars.bound_contextvars(
                outbox_id=item.id, chat_id=item.chat_id, ticket_id=item.ticket_id
            ):
                await self._attempt(item)
        except Exception:
            log.exception("sender failed on an outbox row; it stays queued")
            async with self._db.transaction() as db:
                await outbox.retry_later(db, item.id, self._policy.max_delay, "internal error")
        finally:
            self._busy.discard(item.chat_id)
            self._in_flight.discard(item.id)
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
                plan, parts = await self._plan(db, item)
            except NotReadyError as exc:
                await outbox.retry_later(db, item.id, NOT_READY_DELAY, str(exc))
                return
            except UndeliverableError as exc:
                await self._bury(db, item, str(exc), attempts)
                return
        done = int(item.params.get("_parts_done", 0))
        first: Any = item.params.get("_first_result")
        try:
            for index, request in enumerate(plan):
                if index < done:
                    continue  # went out before a failure of a later part
                result = _dump(await self._call(item, request))
                if index == 0:
                    first = result
                if index < len(plan) - 1:
                    await self._record_progress(item, index + 1, first)
        except BreakerOpenError:
            async with self._db.transaction() as db:
                await outbox.retry_later(
                    db, item.id, self._policy.probe_interval, "Telegram is down"
                )
            return
        except Exception as exc:  # noqa: BLE001 - every failure is sorted below
            await self._failed(item, exc, attempts)
            return
        chat_id = int(getattr(plan[0], "chat_id", item.chat_id))
        await self._succeeded(item, chat_id, parts, first)

    async def _record_progress(self, item: OutboxItem, parts_done: int, first: Any) -> None:
        """Remember the parts of a split message already sent, so a retry sends the rest."""
        progress = {**item.params, "_parts_done": parts_done, "_first_result": first}
        async with self._db.transaction() as db:
            await outbox.replace_params(db, item.id, progress)

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

    # Turning a row into requests.

    async def _plan(
        self, db: Conn, item: OutboxItem
    ) -> tuple[list[TelegramMethod[Any]], list[messages.RelayedMessage]]:
        """The Bot API requests that deliver a row, with what it refers to resolved."""
        params = {key: value for key, value in item.params.items() if not key.startswith("_")}
        params.setdefault("chat_id", item.chat_id)
        if item.chat_id > 0:
            customer = await tickets.get_customer(db, item.chat_id)
            if customer is not None and customer.unreachable:
                raise UndeliverableError(customer.unreachable)
        if item.ticket_id is not None and (
            item.params.get("_topic") or item.params.get("_card") or item.purpose == "topic"
        ):
            await self._aim_at_ticket(db, item, params)
        reply_to = item.params.get("_reply_to")
        if reply_to:
            other = await messages.counterpart(db, int(item.params["from_chat_id"]), int(reply_to))
            if other is not None and other[0] == params["chat_id"]:
                params["reply_parameters"] = {
                    "message_id": other[1],
                    "allow_sending_without_reply": True,
                }
        parts: list[messages.RelayedMessage] = []
        album = item.params.get("_album")
        if album:
            parts = await messages.album_parts(db, int(item.params["from_chat_id"]), str(album))
            params["message_ids"] = [part.source_message_id for part in parts]
        return [_request(item.method, p) for p in _fit(item.method, params)], parts

    async def _aim_at_ticket(self, db: Conn, item: OutboxItem, params: dict[str, Any]) -> None:
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        if ticket is None:
            raise UndeliverableError(f"ticket {item.ticket_id} does not exist")
        params["chat_id"] = ticket.group_chat_id
        if item.params.get("_topic"):
            if ticket.thread_id is None:
                if await outbox.has_unsent(db, ticket.id, "topic"):
                    raise NotReadyError("the ticket's topic is not created yet")
                raise UndeliverableError("the ticket's topic could not be created")
            params["message_thread_id"] = ticket.thread_id
        if item.params.get("_card"):
            if ticket.card_message_id is None:
                if await outbox.has_unsent(db, ticket.id, "card"):
                    raise NotReadyError("the ticket's card is not posted yet")
                raise UndeliverableError("the ticket has no card to edit")
            params["message_id"] = ticket.card_message_id

    # Outcomes.

    async def _succeeded(
        self,
        item: OutboxItem,
        chat_id: int,
        parts: list[messages.RelayedMessage],
        result: Any,
    ) -> None:
        async with self._db.transaction() as db:
            # `result` is Telegram's answer to the first call, as JSON.
            if item.purpose == "topic":
                await tickets.set_topic(
                    db, item.ticket_id or 0, chat_id, result["message_thread_id"]
                )
            elif item.purpose == "card" and result is not None:
                await tickets.set_card(db, item.ticket_id or 0, result["message_id"])
            elif item.purpose == "relay" and item.message_id is not None:
                await messages.mark_delivered(db, item.message_id, chat_id, result["message_id"])
            elif item.purpose == "album":
                for part, copy in zip(parts, result or [], strict=False):
                    await messages.mark_delivered(db, part.id, chat_id, copy["message_id"])
            await outbox.mark_sent(db, item.id, result)
        log.debug("delivered", method=item.method, purpose=item.purpose)

    async def _failed(self, item: OutboxItem, exc: BaseException, attempts: int) -> None:
        """Sort a failure that retrying did not cure: recover, or bury and tell."""
        kind = classify(exc)
        why = reason(exc)
        async with self._db.transaction() as db:
            if kind is Failure.NOT_MODIFIED:
                await outbox.mark_sent(db, item.id, None)
                return
            if kind is Failure.UNREACHABLE and item.chat_id > 0:
                await tickets.set_unreachable(db, item.chat_id, why)
                log.warning("customer unreachable", reason=why)
            elif kind is Failure.TOPIC_GONE and item.ticket_id is not None:
                await self._replace_topic(db, item, attempts)
                return
            elif kind is Failure.TOPIC_CLOSED and item.ticket_id is not None:
                await self._reopen_topic(db, item, attempts)
                return
            elif kind is Failure.BAD_MARKUP and item.params.get("parse_mode"):
                current = await outbox.get_item(db, item.id)  # with any parts already sent
                await outbox.replace_params(db, item.id, _plain((current or item).params))
                await outbox.retry_later(db, item.id, 0, why)
                log.warning("Telegram could not parse the markup; sending as plain text")
                return
            elif kind is Failure.MIGRATED and isinstance(exc, TelegramMigrateToChat):
                await self._follow_migration(db, item.chat_id, exc.migrate_to_chat_id)
                await outbox.retry_later(db, item.id, 0, why)
                return
            await self._bury(db, item, why, attempts)

    async def _bury(self, db: Conn, item: OutboxItem, why: str, attempts: int) -> None:
        """Make the row a dead letter and tell the side that is waiting for it."""
        letter = await deadletters.bury(db, item, why, attempts)
        log.error(
            "not delivered: kept as a dead letter", letter=letter, method=item.method, error=why
        )
        if item.purpose not in {"relay", "album"} or item.ticket_id is None:
            return
        ticket = await tickets.get_ticket(db, item.ticket_id)
        if ticket is None:
            return
        if item.chat_id == ticket.customer_id:
            note = render("⚠ not delivered to the customer: {why}", why=why)
            await notify_agents(db, ticket, note, key=f"dead:{letter}:note")
        else:
            await notify_customer(
                db, ticket, self._settings.texts.not_delivered_to_agents, key=f"dead:{letter}:note"
            )

    async def _replace_topic(self, db: Conn, item: OutboxItem, attempts: int) -> None:
        """The topic is gone: queue a new one and the card ahead of the row, then retry it."""
        ticket = await tickets.get_ticket(db, item.ticket_id or 0)
        tag = f"ticket:{item.ticket_id}:again:{item.id}:{attempts}"
        if ticket is None or not await replace_topic(db, self._settings, ticket, tag):
            await self._bury(db, item, "the ticket's topic is gone", attempts)
            return
        await outbox.retry_later(db, item.id, 0, "waiting for the new topic")

    async def _reopen_topic(self, db: Conn, item: OutboxItem, attempts: int) -> None:
        """The topic was closed under us: reopen it first, then retry the row."""
        log.warning("the ticket's topic is closed; reopening it")
        await outbox.enqueue(
            db,
            Outgoing(
                key=f"ticket:{item.ticket_id}:reopen:{item.id}:{attempts}",
                purpose="topic_reopen",
                method="reopenForumTopic",
                params={"_topic": True},
                chat_id=item.chat_id,
                ticket_id=item.ticket_id,
                priority=PRIORITY_RECOVERY,
            ),
        )
        await outbox.retry_later(db, item.id, 0, "waiting for the topic to reopen")

    async def _follow_migration(self, db: Conn, old: int, new: int) -> None:
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


def _fit(method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Split what is over Telegram's size limits into several calls, in order."""
    if method == "sendMessage" and isinstance(params.get("text"), str):
        text, entities = _visible(params["text"], params.get("parse_mode"), params.get("entities"))
        if len(text) <= telegram_text.TEXT_LIMIT:
            return [params]
        base = {k: v for k, v in params.items() if k not in {"text", "parse_mode", "entities"}}
        chunks = telegram_text.split_text(text, entities)
        calls = []
        for index, (chunk, chunk_entities) in enumerate(chunks):
            call = {**base, "text": chunk, "entities": chunk_entities}
            if index < len(chunks) - 1:
                call.pop("reply_markup", None)  # buttons belong under the last part
            calls.append(call)
        return calls
    if isinstance(params.get("caption"), str):
        caption, entities = _visible(
            params["caption"], params.get("parse_mode"), params.get("caption_entities")
        )
        if len(caption) <= telegram_text.CAPTION_LIMIT:
            return [params]
        (first, first_entities), rest = telegram_text.split_caption(caption, entities)
        head = {k: v for k, v in params.items() if k not in {"parse_mode", "caption_entities"}}
        head.update(caption=first, caption_entities=first_entities)
        tail_base = {k: params[k] for k in ("chat_id", "message_thread_id") if k in params}
        return [head] + [
            {**tail_base, "text": chunk, "entities": chunk_entities, "_method": "sendMessage"}
            for chunk, chunk_entities in rest
        ]
    return [params]


def _visible(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    """The text as Telegram will count it, with its entities."""
    if parse_mode == "HTML":
        try:
            return telegram_text.html_to_entities(text)
        except ValueError:
            return telegram_text.strip_html(text), []
    return text, list(entities or [])


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """The same row without markup, for when Telegram cannot parse it."""
    plain = {k: v for k, v in params.items() if k != "parse_mode"}
    for field in ("text", "caption"):
        if isinstance(plain.get(field), str):
            plain[field] = telegram_text.strip_html(plain[field])
    return plain


def _request(method: str, params: dict[str, Any]) -> TelegramMethod[Any]:
    params = dict(params)
    method = params.pop("_method", method)
    cls = getattr(methods, method[0].upper() + method[1:], None)
    if cls is None:
        raise UndeliverableError(f"unknown Bot API method {method!r}")
    request: TelegramMethod[Any] = cls.model_validate(params)
    return request


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_none=True)
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result
