"""The rate limiter: every send waits for its budgets before it reaches Telegram.

Three kinds of budget, shaped as TELEGRAM.md describes:

- each private chat: a token bucket (about 1 message/s, short bursts pass);
- each group, supergroup or channel: a sliding window of 20 sends in any 60 seconds,
  shared by all its forum topics (the server counts per `chat_id`, never per topic);
- the bot as a whole: a sliding window of 30 sends in any second.

Why a sliding window for groups and not a bucket refilling one send every 3 s: the
`retry_after` values seen after group bursts (30, 34, 60 s) point to "20 in any 60 s".
A burst of 20 followed by one send every 3 s passes a bucket but meets 429s from the
server; pacing so that no 60-second window holds more than 20 sends is safe under
either reading.

`RateLimiter` is an aiogram request middleware (`bot.session.middleware(limiter)`), so
every Bot API call goes through it; `acquire()` and `penalize()` are usable without a
bot (benchmarks). Budgets are pure and take the time as an argument; the limiter reads
an injected clock and sleeps with an injected `sleep`, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

log = structlog.stdlib.get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
ChatKey = int | str

# The shortest sleep of the acquire loop. A computed wait can come out a rounding error
# above zero; sleeping at least this long guarantees the clock moves past it.
_MIN_SLEEP = 0.001


class Budget(Protocol):
    """What the limiter needs of a budget shape."""

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until one more send is admitted; 0 if it is admitted now."""
        ...

    def record(self, now: float | None = None) -> None:
        """Spend one send at `now`."""
        ...

    def pause_until(self, t: float) -> None:
        """Admit nothing before `t`."""
        ...

    def refund(self, at: float) -> None:
        """Take back the send recorded at `at` (Telegram refused it)."""
        ...

    def settled(self, now: float | None = None) -> bool:
        """True when the budget is as good as a new one: forgetting it loses nothing."""
        ...


class SlidingWindow:
    """At most `limit` sends in any `window + margin` seconds.

    Keeps the times of the last `limit` sends (so memory is bounded by `limit`): one
    more send is admitted once the oldest of them is `window + margin` seconds old.
    Any half-open interval of `window + margin` seconds then holds at most `limit`.
    """

    __slots__ = ("_clock", "_paused_until", "_span", "_times", "limit")

    def __init__(
        self,
        limit: int,
        window: float,
        margin: float = 0.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a sliding window needs a limit of at least 1")
        if window <= 0 or margin < 0:
            raise ValueError("a sliding window needs window > 0 and margin >= 0")
        self.limit = limit
        self._span = window + margin
        self._clock = clock
        self._times: deque[float] = deque(maxlen=limit)
        self._paused_until = float("-inf")

    @property
    def span(self) -> float:
        """The effective window: `window + margin`."""
        return self._span

    def wait_time(self, now: float | None = None) -> float:
        if now is None:
            now = self._clock()
        wait = self._paused_until - now
        if len(self._times) >= self.limit:
            wait = max(wait, self._times[0] + self._span - now)
        return wait if wait > 0 else 0.0

    def record(self, now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        self._times.append(now)  # maxlen drops the oldest, which has left the window

    def pause_until(self, t: float) -> None:
        self._paused_until = max(self._paused_until, t)

    def refund(self, at: float) -> None:
        """Take back the send recorded at `at`: Telegram refused it, so it did not count."""
        with contextlib.suppress(ValueError):
            self._times.remove(at)

    def settled(self, now: float | None = None) -> bool:
        if now is None:
            now = self._clock()
        if self._paused_until > now:
            return False
        return not self._times or self._times[-1] + self._span <= now


class TokenBucket:
    """Refills `rate` sends per second up to `burst`; each send takes one.

    With `margin`, one send is refilled every `1/rate + margin` seconds. Implemented as
    its exact equivalent, the generic cell rate algorithm: one "theoretical arrival
    time" instead of a float token count that drifts, and O(1) memory.
    """

    __slots__ = ("_clock", "_interval", "_paused_until", "_tat", "_tolerance", "burst")

    def __init__(
        self,
        rate: float,
        burst: int,
        margin: float = 0.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or margin < 0:
            raise ValueError("a token bucket needs rate > 0, burst >= 1 and margin >= 0")
        self.burst = burst
        self._interval = 1.0 / rate + margin
        # A full bucket lets `burst` sends through at once: the last of them may be
        # (burst - 1) intervals ahead of its "fair" time.
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._tat = float("-inf")  # when the bucket is full again
        self._paused_until = float("-inf")

    @property
    def interval(self) -> float:
        """Seconds to refill one send: `1/rate + margin`."""
        return self._interval

    def wait_time(self, now: float | None = None) -> float:
        if now is None:
            now = self._clock()
        wait = max(self._paused_until - now, self._tat - self._tolerance - now)
        return wait if wait > 0 else 0.0

    def record(self, now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        self._tat = max(self._tat, now) + self._interval

    def pause_until(self, t: float) -> None:
        self._paused_until = max(self._paused_until, t)

    def refund(self, at: float) -> None:
        """Take back one recorded send: Telegram refused it, so it did not count."""
        self._tat -= self._interval

    def settled(self, now: float | None = None) -> bool:
        if now is None:
            now = self._clock()
        return self._paused_until <= now and self._tat <= now


@dataclass(frozen=True, slots=True)
class Limits:
    """Every rate the limiter keeps to. The defaults are Telegram's, per the Bot FAQ."""

    global_per_second: int = 30
    global_window: float = 1.0
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_window: int = 20
    group_window: float = 60.0
    # Seconds added to every window and refill interval, to absorb the jitter between
    # our clock and the server's (when a request leaves us vs. when it is counted).
    margin: float = 0.05
    # Forget a chat's budget after this long unused (and only once it is as good as
    # new), so memory stays bounded by the chats active lately.
    idle_ttl: float = 600.0
    # 429s for this many distinct chats within this many seconds mean the bot-wide
    # limit was hit, not the chats' own: then the global budget is paused as well.
    global_429_chats: int = 3
    global_429_window: float = 1.0

    def __post_init__(self) -> None:
        if min(self.global_per_second, self.private_burst, self.group_per_window) < 1:
            raise ValueError("limits need at least one send per window and burst")
        if min(self.global_window, self.private_per_second, self.group_window) <= 0:
            raise ValueError("rates and windows must be positive")
        if self.margin < 0 or self.idle_ttl < 0 or self.global_429_window < 0:
            raise ValueError("margin, idle_ttl and global_429_window must not be negative")
        if self.global_429_chats < 1:
            raise ValueError("global_429_chats must be at least 1")


# Which Bot API methods spend budget: those that put something into a chat, or change
# something there that the server counts like a message. TDLib's maintainer: edits and
# sends "share the limit", and "creating a forum topic is sending a message about its
# creation" (tdlib/td#2592); closing, reopening, renaming and pinning post service
# messages too. Everything else (getUpdates, getMe, getChat*, answerCallbackQuery,
# setMyCommands, deleteWebhook, deleteMessage, ...) passes without spending.
COUNTED_PREFIXES: tuple[str, ...] = ("send", "copy", "forward", "editMessage")
COUNTED_METHODS: frozenset[str] = frozenset(
    {
        "createForumTopic",
        "editForumTopic",
        "closeForumTopic",
        "reopenForumTopic",
        "deleteForumTopic",
        "editGeneralForumTopic",
        "closeGeneralForumTopic",
        "reopenGeneralForumTopic",
        "hideGeneralForumTopic",
        "unhideGeneralForumTopic",
        "pinChatMessage",
        "stopPoll",
        "stopMessageLiveLocation",
    }
)
# "send" methods that put no message into the chat: a typing indicator is not counted.
UNCOUNTED_METHODS: frozenset[str] = frozenset({"sendChatAction"})


def is_counted(api_method: str) -> bool:
    """Whether a Bot API method (by its API name, e.g. "sendMessage") spends budget."""
    if api_method in UNCOUNTED_METHODS:
        return False
    return api_method in COUNTED_METHODS or api_method.startswith(COUNTED_PREFIXES)


def chat_key(chat_id: int | str | None) -> ChatKey | None:
    """The key a chat's budget is kept under: a numeric id as int, "@name" as is.

    A numeric id written as a string ("-1001234") is the same chat as the int.
    """
    if isinstance(chat_id, str):
        digits = chat_id.removeprefix("-")
        if digits.isdigit():
            return int(chat_id)
    return chat_id


def is_private(key: ChatKey) -> bool:
    """Private chats have positive ids; groups, supergroups and channels negative ones,
    and a string chat id is always an "@username" of a public supergroup or channel."""
    return isinstance(key, int) and key > 0


def _method_chat(method: object) -> ChatKey | None:
    """The chat a method sends into (sendGift may name a user instead of a chat)."""
    chat_id = getattr(method, "chat_id", None)
    if chat_id is None:
        chat_id = getattr(method, "user_id", None)
    return chat_key(chat_id) if isinstance(chat_id, int | str) else None


@dataclass(slots=True)
class _Entry:
    budget: Budget
    used: float  # last acquire or penalty, for forget_idle


class RateLimiter(BaseRequestMiddleware):
    """Paces sends per chat, per group and bot-wide; install with
    `bot.session.middleware(limiter)`.

    Acquiring is atomic: between reading the budgets' wait times and recording the send
    there is no await, so concurrent callers can never overspend a budget. No lock is
    held while sleeping, so a caller waiting on one chat never blocks another chat.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        lim = self.limits
        self.global_budget = SlidingWindow(
            lim.global_per_second, lim.global_window, lim.margin, clock=clock
        )
        self._chats: dict[ChatKey, _Entry] = {}
        self._recent_429: deque[tuple[float, ChatKey, float]] = deque()
        self._last_sweep = clock()
        self.sends = 0
        self.waited_seconds = 0.0
        self.retry_after_count = 0

    # -- budgets ---------------------------------------------------------------------

    def _new_budget(self, key: ChatKey) -> Budget:
        lim = self.limits
        if is_private(key):
            return TokenBucket(
                lim.private_per_second, lim.private_burst, lim.margin, clock=self._clock
            )
        return SlidingWindow(lim.group_per_window, lim.group_window, lim.margin, clock=self._clock)

    def _entry(self, key: ChatKey, now: float) -> _Entry:
        entry = self._chats.get(key)
        if entry is None:
            entry = self._chats[key] = _Entry(self._new_budget(key), now)
        return entry

    def budget(self, chat_id: int | str) -> Budget:
        """The budget a chat spends (created on first use)."""
        key = chat_key(chat_id)
        assert key is not None
        return self._entry(key, self._clock()).budget

    @property
    def tracked_chats(self) -> int:
        """How many chats' budgets are kept in memory."""
        return len(self._chats)

    def forget_idle(self, now: float | None = None) -> int:
        """Drop the budgets unused for `idle_ttl` that are as good as new; return how many.

        A budget still inside its window or paused is kept whatever its age: forgetting
        it would hand out sends the server still counts.
        """
        if now is None:
            now = self._clock()
        self._last_sweep = now
        cutoff = now - self.limits.idle_ttl
        stale = [
            key
            for key, entry in self._chats.items()
            if entry.used <= cutoff and entry.budget.settled(now)
        ]
        for key in stale:
            del self._chats[key]
        if stale:
            log.debug("forgot idle chat budgets", count=len(stale), kept=len(self._chats))
        return len(stale)

    # -- acquiring -------------------------------------------------------------------

    async def acquire(self, chat_id: int | str | None) -> float:
        """Wait until the chat's budget and the global one admit a send, then spend one
        of each; return the time it was recorded at. `None` spends only the global
        budget (e.g. an inline message edit)."""
        key = chat_key(chat_id)
        waited = 0.0
        while True:
            now = self._clock()
            if now - self._last_sweep >= self.limits.idle_ttl / 2:
                self.forget_idle(now)
            # Looked up again on every pass: the entry may have been forgotten (and so
            # recreated as an equivalent fresh one) while we slept.
            entry = self._entry(key, now) if key is not None else None
            wait = self.global_budget.wait_time(now)
            if entry is not None:
                wait = max(wait, entry.budget.wait_time(now))
            if wait <= 0:
                # No await between the check above and the records below.
                self.global_budget.record(now)
                if entry is not None:
                    entry.budget.record(now)
                    entry.used = now
                admitted = now
                break
            if entry is not None:
                entry.used = now
            wait = max(wait, _MIN_SLEEP)
            waited += wait
            await self._sleep(wait)
        self.sends += 1
        self.waited_seconds += waited
        if waited >= 1.0:
            log.debug("send waited for budget", chat_id=chat_id, waited=round(waited, 3))
        return admitted

    def refund(self, chat_id: int | str | None, at: float) -> None:
        """Give back the send admitted at `at`: Telegram refused it and did not count it,
        so keeping it would leave that slot of the window unused."""
        self.global_budget.refund(at)
        key = chat_key(chat_id)
        entry = self._chats.get(key) if key is not None else None
        if entry is not None:
            entry.budget.refund(at)

    def penalize(self, chat_id: int | str | None, retry_after: float) -> None:
        """Telegram answered 429: admit nothing into that chat for `retry_after` (+margin).

        The global budget is paused only when the 429 concerns everything:
        - the request named no chat (nothing narrower to blame), or
        - 429s arrived for `global_429_chats` (3) or more distinct chats within
          `global_429_window` (1 s). One chat over its limit explains one chat's 429;
          several unrelated chats refused at the same moment mean the bot-wide 30/s was
          hit, and pausing only those chats would let the next chats run into it too.
        """
        lim = self.limits
        now = self._clock()
        self.retry_after_count += 1
        until = now + retry_after + lim.margin
        key = chat_key(chat_id)
        if key is None:
            self.global_budget.pause_until(until)
            log.warning(
                "rate limited by Telegram; pausing all sends",
                chat_id=None,
                retry_after=retry_after,
                reason="429 without a chat",
            )
            return
        entry = self._entry(key, now)
        entry.budget.pause_until(until)
        entry.used = now
        log.warning("rate limited by Telegram", chat_id=key, retry_after=retry_after)

        recent = self._recent_429
        recent.append((now, key, retry_after))
        while recent and recent[0][0] < now - lim.global_429_window:
            recent.popleft()
        chats = {k for _, k, _ in recent}
        if len(chats) >= lim.global_429_chats:
            longest = max(ra for _, _, ra in recent)
            self.global_budget.pause_until(now + longest + lim.margin)
            log.warning(
                "pausing all sends",
                reason="429s for several chats at once",
                chats=len(chats),
                within=lim.global_429_window,
                retry_after=longest,
            )

    # -- the middleware --------------------------------------------------------------

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        api_method = method.__api_method__
        if not is_counted(api_method):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                # Nothing of ours to pause: these calls do not draw from the budgets.
                self.retry_after_count += 1
                log.warning(
                    "rate limited by Telegram",
                    method=api_method,
                    chat_id=_method_chat(method),
                    retry_after=exc.retry_after,
                )
                raise
        key = _method_chat(method)
        admitted = await self.acquire(key)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as exc:
            self.refund(key, admitted)
            self.penalize(key, exc.retry_after)
            raise  # the caller's retry policy decides whether to try again
