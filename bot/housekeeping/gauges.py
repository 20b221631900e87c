"""Gauges that describe the store and Telegram's queue, and the ledger kept short."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import structlog

from bot.delivery.errors import reason
from bot.metrics import Metrics
from storage import deadletters, housekeeping, outbox, updates
from storage.db import Database

log = structlog.stdlib.get_logger(__name__)

# Telegram keeps updates 24 h; twice that and a redelivered update can no longer come.
LEDGER_KEPT = timedelta(hours=48)


class WebhookInfo(Protocol):
    """The one Bot API call the gauges make; aiogram's Bot has it."""

    async def get_webhook_info(self) -> Any: ...


class Gauges:
    """Keeps the store's gauges true and its ledger short."""

    def __init__(
        self,
        bot: WebhookInfo,
        database: Database,
        metrics: Metrics,
        breaker_open: Callable[[], bool],
    ) -> None:
        self._bot = bot
        self._db = database
        self._metrics = metrics
        self._breaker_open = breaker_open

    async def refresh(self) -> None:
        async with self._db.reader() as db:
            depth = await outbox.depth(db)
            letters = await deadletters.count_open(db)
            open_tickets = await housekeeping.count_open_tickets(db)
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

    async def pending_updates(self) -> int | None:
        """pending_update_count from getWebhookInfo, also set as a gauge."""
        try:
            info = await self._bot.get_webhook_info()
        except Exception as exc:  # noqa: BLE001 - reported, and tried again next time
            log.warning("getWebhookInfo failed", error=reason(exc))
            return None
        count = int(info.pending_update_count)
        self._metrics.pending_updates.set(count)
        return count
