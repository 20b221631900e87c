"""Admins told of trouble: too many failed sends, updates piling up at Telegram."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from bot.config import Settings
from bot.services import tickets as desk
from storage import housekeeping, keys, kv
from storage.db import Database, to_iso, utcnow

log = structlog.stdlib.get_logger(__name__)

ALERT_WINDOW = timedelta(hours=24)
# Below this many operations in the window a failure ratio means nothing.
MIN_OPERATIONS = 20


class Alerts:
    """Raises each alert once per kind per (UTC) day, to every admin."""

    def __init__(self, database: Database, settings: Settings, wake: Callable[[], None]) -> None:
        self._db = database
        self._settings = settings
        self._health = settings.health
        self._wake = wake
        self._pending_high = False  # pending_update_count was over the limit last time

    async def failure_rate(self) -> bool:
        """Alert when more than failure_alert_ratio of the last 24 h's operations died."""
        since = to_iso(datetime.now(UTC) - ALERT_WINDOW)
        async with self._db.reader() as db:
            total, dead = await housekeeping.outbox_outcomes(db, since)
        limit = self._health.failure_alert_ratio
        if total < MIN_OPERATIONS or dead / total <= limit:
            return False
        text = (
            f"⚠ TopicDesk: {dead} of the {total} sends to Telegram in the last 24 hours "
            f"failed for good ({dead / total:.1%}; the alert threshold is {limit * 100:g}%). "
            "They are kept as dead letters: see <code>topicdesk dlq list</code>. If failures "
            "go on once their causes are fixed, escalate to Telegram's support."
        )
        await self._raise("failures", text, dead=dead, total=total)
        return True

    async def pending_updates(self, pending: int) -> bool:
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
        await self._raise("pending_updates", text, pending_update_count=pending)
        return True

    async def _raise(self, kind: str, text: str, **facts: object) -> None:
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
