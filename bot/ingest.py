"""Long polling that never loses an update: one update, one transaction, then the offset.

aiogram's own polling confirms updates before their handlers finish, so this loop
replaces it. Each update is handled inside one SQLite transaction that also records its
`update_id`; only after the commit does the next getUpdates call confirm it to Telegram.
A crash at any line either loses nothing (the update comes again) or has committed
everything (the update is recognised and skipped when it comes again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from aiogram import Bot, Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramConflictError, TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update

from bot.metrics import Metrics
from storage import updates
from storage.db import Conn, Database

log = structlog.stdlib.get_logger(__name__)

MAX_BACKOFF = 30.0


class TokenRejectedError(Exception):
    """Telegram no longer accepts the token (revoked while running)."""


def update_chat_id(update: Update) -> int | None:
    """The chat an update concerns, for logs and ordering."""
    if update.message is not None:
        return update.message.chat.id
    if update.edited_message is not None:
        return update.edited_message.chat.id
    if update.callback_query is not None and update.callback_query.message is not None:
        return update.callback_query.message.chat.id
    return None


class Poller:
    """Fetches updates and feeds them to the dispatcher, each in its own transaction."""

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        database: Database,
        *,
        polling_timeout: int = 30,
        on_commit: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._bot = bot
        self._dispatcher = dispatcher
        self._db = database
        self._timeout = polling_timeout
        self._on_commit = on_commit
        self._stop = asyncio.Event()
        self.metrics = metrics or Metrics()
        self.processed = 0

    def stop(self) -> None:
        """Finish the update in hand, then return from run()."""
        self._stop.set()

    async def run(self) -> None:
        """Poll until stop(); raise TokenRejectedError if the token stops working."""
        request = GetUpdates(
            timeout=self._timeout,
            allowed_updates=self._dispatcher.resolve_used_update_types(),
        )
        failures = 0
        while not self._stop.is_set():
            try:
                batch = await self._fetch(request)
            except TelegramUnauthorizedError as exc:
                raise TokenRejectedError from exc
            except Exception as exc:  # noqa: BLE001 - any failure to poll is retried
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2**failures)
                level = "error" if isinstance(exc, TelegramConflictError) else "warning"
                getattr(log, level)("getUpdates failed", error=str(exc), retry_in=delay)
                await self._sleep(delay)
                continue
            if batch is None:
                break
            failures = 0
            self.metrics.polled()
            if not batch:
                continue
            try:
                done = await self.process_batch(batch)
            except Exception as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2**failures)
                log.exception(
                    "updates could not be stored; they are not confirmed and will be tried again",
                    error=str(exc),
                    retry_in=delay,
                )
                await self._sleep(delay)
                continue
            if done:
                request.offset = done[-1] + 1

    async def _fetch(self, request: GetUpdates) -> list[Update] | None:
        """One long poll, abandoned (returning None) if stop() is called meanwhile."""
        poll = asyncio.ensure_future(self._bot(request, request_timeout=self._timeout + 15))
        stopped = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if poll in done:
            stopped.cancel()
            return poll.result()
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def process_batch(self, batch: list[Update]) -> list[int]:
        """Handle updates in one transaction, each in its own savepoint; return the ids done.

        One commit (one sync to disk) for the whole batch is what keeps catch-up fast. An
        update that fails is rolled back to its savepoint alone and recorded as failed;
        its neighbours commit. Updates are handled in order, one at a time, so each
        chat's updates keep their order.
        """
        done: list[int] = []
        outcomes: list[str] = []
        async with self._db.transaction() as db:
            for update in batch:
                if self._stop.is_set():
                    break  # not confirmed: Telegram sends the rest again next time
                outcomes.append(await self._handle(db, update))
                done.append(update.update_id)
        self.processed += len(done)
        for outcome in outcomes:
            self.metrics.updates.labels(outcome).inc()
        self._on_commit()
        return done

    async def process(self, update: Update) -> None:
        """Handle one update in its own transaction."""
        await self.process_batch([update])

    async def _handle(self, db: Conn, update: Update) -> str:
        """One update inside the batch's transaction; its effects and id share a savepoint."""
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            update_id=update.update_id, chat_id=update_chat_id(update)
        ):
            outcome: str
            try:
                async with self._db.savepoint() as part:
                    if await updates.is_processed(part, update.update_id):
                        # Telegram sent it again (its offset was not confirmed before a
                        # stop); its effects committed already.
                        outcome = "duplicate"
                    else:
                        result = await self._dispatcher.feed_update(self._bot, update, db=part)
                        outcome = "ignored" if result is UNHANDLED else "handled"
                        await updates.record(part, update.update_id, outcome)
            except Exception:
                log.exception("update could not be handled, skipped")
                await updates.record(db, update.update_id, "failed")
                outcome = "failed"
            log.info(
                "update processed",
                outcome=outcome,
                event_type=event_type(update),
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return outcome


def event_type(update: Update) -> str:
    """The kind of update (message, callback_query, ...), or "unknown" for a kind aiogram
    does not know."""
    try:
        return update.event_type
    except Exception:  # noqa: BLE001 - aiogram raises for kinds newer than itself
        return "unknown"
