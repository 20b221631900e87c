"""The housekeeper: runs the gauges, alerts and reconciliation on their intervals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from bot.config import Settings
from bot.housekeeping.alerts import Alerts
from bot.housekeeping.gauges import Gauges, WebhookInfo
from bot.housekeeping.reconcile import Reconciler
from bot.metrics import Metrics
from storage.db import Database

log = structlog.stdlib.get_logger(__name__)

STOP_GRACE = 5.0


class Housekeeper:
    """Runs housekeeping and reconciliation until stop()."""

    def __init__(
        self,
        bot: WebhookInfo,
        database: Database,
        settings: Settings,
        metrics: Metrics,
        *,
        is_delivering: Callable[[int], bool] = lambda _outbox_id: False,
        breaker_open: Callable[[], bool] = lambda: False,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._health = settings.health
        self._wake = wake
        self.gauges = Gauges(bot, database, metrics, breaker_open)
        self.alerts = Alerts(database, settings, wake)
        self.reconciler = Reconciler(
            database, metrics, is_delivering=is_delivering, breaker_open=breaker_open
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    async def tidy(self) -> None:
        """Gauges, ledger, getWebhookInfo and the alerts that depend on them."""
        await self.gauges.refresh()
        await self.gauges.prune_ledger()
        await self.alerts.failure_rate()
        pending = await self.gauges.pending_updates()
        if pending is not None:
            await self.alerts.pending_updates(pending)

    async def reconcile(self) -> int:
        """Find and repair what the store believes wrongly; return how many findings.

        Topic probes are queued here and answered through the outbox; what they find is
        counted when their answer comes.
        """
        found = await self.reconciler.resume_stuck_sends()
        found += await self.reconciler.flag_undelivered_replies()
        probes = await self.reconciler.probe_topics()
        if found or probes:
            self._wake()
        return found
