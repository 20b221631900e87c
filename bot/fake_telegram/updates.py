"""The updates queue and how the bot receives it.

``enqueue_update`` queues an update (sorted by update_id; ``keep_id`` replays one). getUpdates
is a real long poll: its offset confirms (drops) what came before, a newer call terminates a
waiting one with 409, and ``allowed_updates`` filters what is handed out. The webhook methods
live here too: while a webhook is set, getUpdates answers 409.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy

from aiohttp import web

from bot.fake_telegram.params import bool_param, int_param, json_param, str_param
from bot.fake_telegram.records import JSON, LONG_POLL_MAX_TIMEOUT, Queued, TelegramError
from bot.fake_telegram.state import FakeState

_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class Updates(FakeState):
    """The queue of updates, getUpdates over it, and the webhook methods."""

    def enqueue_update(
        self, update: JSON, *, keep_id: bool = False, queued_before_filter: bool = False
    ) -> int:
        """Enqueue a raw update. ``keep_id=True`` redelivers an update with its original
        update_id: it is handed out once by the next getUpdates whatever the offset, as
        Telegram does when it replays unconfirmed updates. ``queued_before_filter=True``
        hands it out whatever ``allowed_updates`` says, as Telegram does with an update
        queued before the bot changed them (a kind the bot may not even know)."""
        update = copy.deepcopy(update)
        if keep_id:
            update_id = int(update["update_id"])
        else:
            update_id = self._next_update_id
            update = {
                "update_id": update_id,
                **{k: v for k, v in update.items() if k != "update_id"},
            }
        self._next_update_id = max(self._next_update_id, update_id + 1)
        at = self.clock()
        self.enqueued_at[update_id] = at
        # Kept sorted by update_id; an insort, not a sort per call, so a backlog of tens of
        # thousands of updates builds in linear time (ties keep their order, as before).
        queued = Queued(update, forced=keep_id, at=at, unfiltered=queued_before_filter)
        bisect.insort_right(self._queue, queued, key=lambda q: q.update_id)
        self._notify()
        return update_id

    @property
    def polling(self) -> bool:
        """True while a getUpdates call is waiting."""
        return self._active_poll is not None

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates still queued (not yet confirmed by an offset)."""
        return [q.update for q in self._queue]

    def set_webhook(self, url: str, pending_update_count: int = 0) -> None:
        """With a webhook set, getUpdates answers 409."""
        self.webhook_url = url or None
        self._webhook_pending = pending_update_count

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _allowed(self, kind: str) -> bool:
        if not self._allowed_updates:
            return kind not in _DEFAULT_EXCLUDED_UPDATES
        return kind in self._allowed_updates

    async def _get_updates(self, params: JSON, request: web.Request) -> list[JSON]:
        if self.webhook_url:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int_param(params, "offset") or 0
        limit = min(100, max(1, int_param(params, "limit") or 100))
        timeout = min(LONG_POLL_MAX_TIMEOUT, max(0, int_param(params, "timeout") or 0))
        allowed = json_param(params, "allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]

        poll = next(self._poll_counter)
        if self._active_poll is not None:
            self._superseded.add(self._active_poll)
            self._notify()
        self._active_poll = poll
        try:
            self._confirm(offset)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                if poll in self._superseded:
                    raise TelegramError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                transport = request.transport
                if self._stopping or transport is None or transport.is_closing():
                    return []
                batch = self._select(offset, limit)
                remaining = deadline - loop.time()
                if batch or remaining <= 0:
                    return self._hand_out(batch)
                event = self._wakeup
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, 0.5))
        finally:
            self._superseded.discard(poll)
            if self._active_poll == poll:
                self._active_poll = None

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            self._queue = self._queue[offset:]
            return
        if offset > 0:
            # The queue is sorted by update_id: only its head can fall below the offset.
            cut = bisect.bisect_left(self._queue, offset, key=lambda q: q.update_id)
            if cut:
                kept = [q for q in self._queue[:cut] if q.forced and not q.handed_out]
                self._queue = kept + self._queue[cut:]

    def _select(self, offset: int, limit: int) -> list[Queued]:
        chosen: list[Queued] = []
        for queued in self._queue:
            if not (queued.update_id >= offset or (queued.forced and not queued.handed_out)):
                continue
            if not queued.unfiltered and not self._allowed(queued.kind):
                continue
            chosen.append(queued)
            if len(chosen) >= limit:
                break
        return chosen

    def _hand_out(self, batch: list[Queued]) -> list[JSON]:
        updates = []
        for queued in batch:
            queued.handed_out = True
            self.updates_sent.append(queued.update)
            updates.append(queued.update)
        return updates

    def _enqueue_message(self, chat_id: int, message: JSON) -> None:
        if chat_id < 0 and self.groups[chat_id].bot_status in {"left", "kicked"}:
            return
        self.enqueue_update({"message": message})

    # ----------------------------------------------------------------------------- webhook methods

    def _set_webhook(self, params: JSON) -> bool:
        url = str_param(params, "url") or ""
        self.webhook_url = url or None
        if bool_param(params, "drop_pending_updates"):
            self._queue.clear()
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        self.webhook_url = None
        self._webhook_pending = 0
        if bool_param(params, "drop_pending_updates"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, _params: JSON) -> JSON:
        pending = len(self._queue)
        if self.webhook_url and self._webhook_pending:
            pending = self._webhook_pending
        info: JSON = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info
