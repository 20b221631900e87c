"""Telegram's send budgets and the faults a test injects.

``Limits`` describes the budgets: bot-wide per second, per private chat (a token bucket with a
burst) and per group (a sliding 60-second window, or a refilling bucket). ``Budgets._admit``
counts every accepted send against them, or answers 429 with Telegram's ``retry_after``. The
accepted sends are kept (``sent_times``, ``sent_per_chat``, ``sent_log``) for the
``sends_in_window`` checks. ``fail()`` makes the next calls of a method answer any error.
"""

from __future__ import annotations

import bisect
import math

from bot.fake_telegram.records import JSON, Bucket, Fault, TelegramError
from bot.fake_telegram.state import FakeState

#: Every call that draws from the send budgets when ``Limits`` are given.
SENDING_METHODS: frozenset[str] = frozenset(
    {
        "sendMessage",
        "copyMessage",
        "copyMessages",
        "sendMediaGroup",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendVideoNote",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "createForumTopic",
        "editForumTopic",
        "closeForumTopic",
        "reopenForumTopic",
    }
)


def window_wait(times: list[float], now: float, window: float, cap: int, need: int) -> float:
    """Seconds until a sliding window of ``window`` s holding at most ``cap`` admits ``need``."""
    need = min(need, cap)
    start = bisect.bisect_right(times, now - window)
    excess = len(times) - start + need - cap
    if excess <= 0:
        return 0.0
    return times[start + excess - 1] + window - now


class Budgets(FakeState):
    """Admission of every send against ``Limits``, the accepted sends, and injected faults."""

    # ----------------------------------------------------------------------------- inspection

    def sends_in_window(
        self, chat_id: int | None, window: float, *, at: float | None = None
    ) -> int:
        """Accepted sends (to ``chat_id``, or to all chats with None) in the ``window`` real
        seconds up to ``at`` (default now)."""
        times = self.sent_times if chat_id is None else self.sent_per_chat.get(chat_id, [])
        end = self.clock() if at is None else at
        return bisect.bisect_right(times, end) - bisect.bisect_right(times, end - window)

    def max_sends_in_window(self, chat_id: int | None, window: float) -> int:
        """The most accepted sends that any sliding ``window`` (real seconds) held."""
        times = self.sent_times if chat_id is None else self.sent_per_chat.get(chat_id, [])
        best = 0
        for index, start in enumerate(times):
            best = max(best, bisect.bisect_left(times, start + window) - index)
        return best

    # ----------------------------------------------------------------------------- faults

    def fail(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
        html: bool = False,
    ) -> None:
        """The next ``times`` calls of ``method`` (to ``chat_id`` if given) answer this error.
        ``html=True`` answers an nginx-style HTML page with status ``error_code``."""
        parameters: JSON = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        self._faults.append(
            Fault(method.lower(), error_code, description, parameters, times, chat_id, html)
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, method: str, params: JSON) -> Fault | None:
        for fault in self._faults:
            if fault.method != method.lower():
                continue
            if fault.chat_id is not None:
                try:
                    target = int(params.get("chat_id"))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if target != fault.chat_id:
                    continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None

    # ----------------------------------------------------------------------------- budgets

    def _admit(self, method: str, chat_id: int, count: int = 1) -> None:
        """Count an accepted send, or answer 429 if a limit would be exceeded."""
        now = self.clock()
        limits = self.limits
        if limits is not None:
            need = count if limits.album_counts_each else 1
            scale = limits.time_scale
            if self._global_bucket is None:
                capacity = max(1.0, float(limits.global_per_second))
                self._global_bucket = Bucket(
                    capacity, limits.global_per_second * scale, capacity, now
                )
            waits = [self._global_bucket.wait(now, need)]
            chat_bucket = self._chat_budget(chat_id, now)
            if chat_bucket is not None:
                waits.append(chat_bucket.wait(now, need))
            else:
                waits.append(
                    window_wait(
                        self.sent_per_chat.get(chat_id, []),
                        now,
                        60.0 / scale,
                        limits.group_per_minute,
                        need,
                    )
                )
            wait = max(waits)
            if wait > 0:
                self.too_many_requests += 1
                retry_after = max(1, math.ceil(wait))
                raise TelegramError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            self._global_bucket.take(now, need)
            if chat_bucket is not None:
                chat_bucket.take(now, need)
        self.sent_times.append(now)
        self.sent_per_chat.setdefault(chat_id, []).append(now)
        self.sent_log.append((now, method, chat_id))

    def _chat_budget(self, chat_id: int, now: float) -> Bucket | None:
        """The token bucket for a private chat, or for a group in "bucket" mode."""
        limits = self.limits
        assert limits is not None
        bucket = self._chat_buckets.get(chat_id)
        if bucket is not None:
            return bucket
        if chat_id > 0:
            capacity = float(max(1, limits.private_burst))
            rate = limits.private_per_second * limits.time_scale
        elif limits.group_mode == "bucket":
            capacity = float(limits.group_per_minute)
            rate = limits.group_per_minute / 60.0 * limits.time_scale
        else:
            return None
        bucket = Bucket(capacity, rate, capacity, now)
        self._chat_buckets[chat_id] = bucket
        return bucket
