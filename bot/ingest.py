"""Long polling that never loses an update: a batch, one transaction, then the offset.

aiogram's own polling confirms updates before their handlers finish, so this loop
replaces it. The updates of one getUpdates answer are handled in one SQLite transaction,
each inside a savepoint that also records its `update_id`; only after the commit does the
next getUpdates call confirm them to Telegram. A crash at any line either loses nothing
(the updates come again) or has committed everything (each is recognised and skipped
when it comes again).

What cannot be handled never stops the desk and is never lost:
- the answer is fetched raw and each update validated on its own, so one update the
  models refuse (or of a kind aiogram does not know) cannot fail the whole batch;
- such an update, and one whose handler fails (a bug: it would fail again), is kept raw
  with its error in quarantine, in the transaction that records its id, and the desk is
  told (`Quarantine`); `topicdesk updates replay` feeds it through the handlers again;
- a database that is busy, locked, read-only, full or gone is not the update's fault: the
  batch is rolled back and not confirmed, and is tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, cast

import structlog
from aiogram import Bot, Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramConflictError, TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update

from bot.delivery.errors import reason
from bot.metrics import Metrics
from storage import quarantine, updates
from storage.db import Conn, Database, is_store_fault
from storage.quarantine import Stage

log = structlog.stdlib.get_logger(__name__)

MAX_BACKOFF = 30.0
Raw = dict[str, Any]


class TokenRejectedError(Exception):
    """Telegram no longer accepts the token (revoked while running)."""


class StoreGoneError(Exception):
    """The database file was removed or replaced under the running daemon."""


class GetRawUpdates(GetUpdates):
    """getUpdates whose answer is kept as JSON, so each update is validated on its own."""

    __returning__: ClassVar[Any] = list[dict[str, Any]]


class Quarantine(Protocol):
    """What the desk does about an update that had to be quarantined."""

    async def quarantined(self, db: Conn, update_id: int, raw: Raw, error: str, kind: str) -> None:
        """Called inside the update's transaction: pass its content on, tell the admins."""
        ...


class _NoDesk:
    async def quarantined(self, db: Conn, update_id: int, raw: Raw, error: str, kind: str) -> None:
        return None


def _raw_chat_id(raw: Raw) -> int | None:
    """The chat an update concerns, for logs, read from the JSON (it may not validate)."""
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if isinstance(raw.get(key), dict):
            return _chat_of(raw[key])
    query = raw.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("message"), dict):
        return _chat_of(query["message"])
    return None


def _chat_of(message: Raw) -> int | None:
    chat = message.get("chat")
    if isinstance(chat, dict) and isinstance(chat.get("id"), int):
        return int(chat["id"])
    return None


class Poller:
    """Fetches updates and feeds them to the dispatcher, a batch per transaction."""

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        database: Database,
        *,
        polling_timeout: int = 30,
        metrics: Metrics | None = None,
        desk: Quarantine | None = None,
        store_alert_after: float = 60.0,
        alert: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._bot = bot
        self._dispatcher = dispatcher
        self._db = database
        self._timeout = polling_timeout
        self._desk = desk or _NoDesk()
        self._store_alert_after = store_alert_after
        self._alert = alert
        self._stop = asyncio.Event()
        self._store_failing_since: float | None = None
        self._store_alerted = False
        self.metrics = metrics or Metrics()
        self.processed = 0

    def stop(self) -> None:
        """Finish the update in hand, then return from run()."""
        self._stop.set()

    async def run(self) -> None:
        """Poll until stop(); raise TokenRejectedError if the token stops working."""
        request = GetRawUpdates(
            timeout=self._timeout,
            allowed_updates=self._dispatcher.resolve_used_update_types(),
        )
        failures = 0
        while not self._stop.is_set():
            try:
                await self.replay_requested()
                batch = await self._fetch(request)
            except TelegramUnauthorizedError as exc:
                raise TokenRejectedError from exc
            except Exception as exc:  # noqa: BLE001 - any failure to poll is retried
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2**failures)
                if is_store_fault(exc):
                    await self._store_trouble(exc)
                level = "error" if isinstance(exc, TelegramConflictError) else "warning"
                getattr(log, level)("getUpdates failed", error=reason(exc), retry_in=delay)
                await self._sleep(delay)
                continue
            if batch is None:
                break
            failures = 0
            self.metrics.polled()
            if not batch:
                continue
            gone = self._db.file_is_gone()
            if gone is not None:
                # Whatever is stored now would be lost with the unlinked file: take nothing.
                await self._store_trouble(StoreGoneError(gone))
                log.error("no updates are taken: " + gone)
                await self._sleep(MAX_BACKOFF)
                continue
            try:
                done = await self.store_batch(batch)
            except Exception as exc:
                if not is_store_fault(exc):
                    raise  # a fault of the poller itself: let the daemon stop
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2**failures)
                await self._store_trouble(exc)
                log.error(  # noqa: TRY400 - the reason says it; no traceback every retry
                    "the database cannot take the updates; they are not confirmed and will "
                    "be tried again",
                    error=reason(exc),
                    retry_in=delay,
                )
                await self._sleep(delay)
                continue
            self._store_recovered()
            if done:
                request.offset = done[-1] + 1

    async def _fetch(self, request: GetUpdates) -> list[Raw] | None:
        """One long poll, abandoned (returning None) if stop() is called meanwhile."""
        poll = asyncio.ensure_future(self._bot(request, request_timeout=self._timeout + 15))
        stopped = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if poll in done:
            stopped.cancel()
            return cast(list[Raw], poll.result())
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # A database in trouble.

    async def _store_trouble(self, exc: BaseException) -> None:
        why = reason(exc)
        now = time.monotonic()
        if self._store_failing_since is None:
            self._store_failing_since = now
        self.metrics.store_failing(why)
        failing_for = now - self._store_failing_since
        if (
            self._alert is not None
            and not self._store_alerted
            and failing_for >= self._store_alert_after
        ):
            self._store_alerted = True
            await self._alert(
                f"⚠ TopicDesk cannot write to its database ({why}) for "
                f"{failing_for:.0f} s: no update is taken meanwhile, none is lost. "
                "Check the disk, the file's permissions and other processes."
            )

    def _store_recovered(self) -> None:
        if self._store_failing_since is not None:
            log.warning(
                "the database takes updates again",
                after_s=round(time.monotonic() - self._store_failing_since, 1),
            )
        self._store_failing_since = None
        self._store_alerted = False
        self.metrics.store_failing(None)

    # Updates.

    async def process_batch(self, batch: list[Raw]) -> list[int]:
        """Handle updates in one transaction, each in its own savepoint; return the ids done.

        One commit (one sync to disk) for the whole batch is what keeps catch-up fast. An
        update that fails is rolled back to its savepoint alone and quarantined; its
        neighbours commit. A database fault aborts the whole batch (raised). Updates are
        handled in order, one at a time, so each chat's updates keep their order.
        """
        done: list[int] = []
        outcomes: list[str] = []
        async with self._db.transaction() as db:
            for raw in batch:
                if self._stop.is_set():
                    break  # not confirmed: Telegram sends the rest again next time
                update_id = raw.get("update_id")
                if not isinstance(update_id, int):
                    log.error("an update without an update_id was skipped", update=str(raw)[:200])
                    continue
                outcomes.append(await self._handle(db, update_id, raw))
                done.append(update_id)
        self.processed += len(done)
        for outcome in outcomes:
            self.metrics.updates.labels(outcome).inc()
        return done

    async def store_batch(self, batch: list[Raw]) -> list[int]:
        """process_batch(), and if the batch cannot be committed for another reason than
        the database's trouble (a constraint only checked at commit, say), each update
        in a transaction of its own, so that the culprit alone is quarantined."""
        try:
            return await self.process_batch(batch)
        except Exception as exc:
            if is_store_fault(exc):
                raise
            log.exception("a batch of updates could not be committed; storing them one by one")
        done: list[int] = []
        for raw in batch:
            try:
                done += await self.process_batch([raw])
            except Exception as exc:
                update_id = raw.get("update_id")
                if is_store_fault(exc) or not isinstance(update_id, int):
                    raise
                async with self._db.transaction() as db:
                    await self._quarantine(db, update_id, raw, "handler", exc)
                done.append(update_id)
        return done

    async def _handle(self, db: Conn, update_id: int, raw: Raw) -> str:
        """One update inside the batch's transaction; its effects and id share a savepoint."""
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            update_id=update_id, chat_id=_raw_chat_id(raw)
        ):
            outcome = await self._feed(db, update_id, raw)
            log.info(
                "update processed",
                outcome=outcome,
                event_type=_kind_of(raw),
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return outcome

    async def _feed(self, db: Conn, update_id: int, raw: Raw, *, replay: bool = False) -> str:
        """Validate and dispatch one update; quarantine it if that fails for its own sake."""
        try:
            update = Update.model_validate(raw, context={"bot": self._bot})
        except Exception as exc:  # noqa: BLE001 - any refusal of the models quarantines it
            return await self._quarantine(db, update_id, raw, "parse", exc)
        try:
            update.event_type  # noqa: B018 - raises for a kind aiogram does not know
        except Exception as exc:  # noqa: BLE001
            return await self._quarantine(db, update_id, raw, "kind", exc)
        try:
            async with self._db.savepoint() as part:
                if replay:
                    await updates.record(part, update_id, "handled")
                elif not await updates.claim(part, update_id):
                    # Telegram sent it again (its offset was not confirmed before a
                    # stop); its effects committed already.
                    return "duplicate"
                result = await self._dispatcher.feed_update(self._bot, update, db=part)
                if result is UNHANDLED:
                    await updates.record(part, update_id, "ignored")
                    return "ignored"
                return "handled"
        except Exception as exc:
            if is_store_fault(exc):
                raise
            log.exception("update could not be handled; quarantined")
            return await self._quarantine(db, update_id, raw, "handler", exc)

    async def _quarantine(
        self,
        db: Conn,
        update_id: int,
        raw: Raw,
        stage: Stage,
        exc: BaseException,
    ) -> str:
        error = reason(exc)
        kind = f"{stage}:{type(exc).__name__}"
        async with self._db.savepoint() as part:
            await quarantine.put(part, update_id, raw, stage, error, kind)
            await updates.record(part, update_id, "quarantined")
        # The desk's part (passing the message on, telling the admins) may fail on its own
        # without losing the update, which is stored above.
        try:
            async with self._db.savepoint() as part:
                await self._desk.quarantined(part, update_id, raw, error, kind)
        except Exception as desk_exc:
            if is_store_fault(desk_exc):
                raise
            log.exception("could not pass a quarantined update on")
        log.warning("update quarantined", stage=stage, error=error)
        return "quarantined"

    # Replays asked for by `topicdesk updates replay`.

    async def replay_requested(self) -> int:
        """Feed the quarantined updates an admin asked to replay through the handlers."""
        async with self._db.reader() as db:
            due = await quarantine.due_replays(db)
        for entry in due:
            with structlog.contextvars.bound_contextvars(update_id=entry.update_id):
                async with self._db.transaction() as db:
                    outcome = await self._feed(db, entry.update_id, entry.raw, replay=True)
                    await quarantine.replayed(db, entry.update_id, outcome)
                log.info("quarantined update replayed", outcome=outcome)
        return len(due)


def _kind_of(raw: Raw) -> str:
    return next((key for key in raw if key != "update_id"), "unknown")
