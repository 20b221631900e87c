"""The rate limiter, on a fake clock: budgets' shapes, and the middleware's pacing."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Coroutine
from typing import Any

import pytest
from aiogram import methods
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods.base import TelegramMethod
from hypothesis import given
from hypothesis import strategies as st

from bot.delivery.ratelimit import (
    Limits,
    RateLimiter,
    SlidingWindow,
    TokenBucket,
    chat_key,
    is_counted,
)

GROUP = -1001234567890
GROUP_SPAN = 60.05  # group_window + margin
PRIVATE_INTERVAL = 1.05  # 1/private_per_second + margin


class FakeTime:
    """Virtual time for many tasks: sleepers wait in a heap; `run` lets every task go as
    far as it can, then wakes the earliest sleeper, moving the clock to its wake time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), next(self._seq), fut))
        await fut

    async def run(self, *aws: Awaitable[Any]) -> list[Any]:
        """Run `aws` concurrently to the end; results or exceptions, in order."""
        tasks = [asyncio.ensure_future(a) for a in aws]
        while True:
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            assert self._sleepers, "tasks are stuck without sleeping"
            when, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            fut.set_result(None)
        return [t.exception() or t.result() for t in tasks]


class FakeApi:
    """A `make_request` that notes when each call reached it; may answer 429."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.calls: list[tuple[float, TelegramMethod[Any]]] = []
        self.flood: dict[Any, int] = {}  # chat_id -> retry_after for its next call

    async def __call__(self, bot: Any, method: TelegramMethod[Any]) -> Any:
        self.calls.append((self.time.now, method))
        chat_id = getattr(method, "chat_id", None)
        if chat_id in self.flood:
            raise TelegramRetryAfter(
                method=method,
                message="Too Many Requests: retry after N",
                retry_after=self.flood.pop(chat_id),
            )
        return True

    def times(self, chat_id: Any) -> list[float]:
        return [t for t, m in self.calls if getattr(m, "chat_id", None) == chat_id]


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api(time: FakeTime) -> FakeApi:
    return FakeApi(time)


@pytest.fixture
def limiter(time: FakeTime) -> RateLimiter:
    return RateLimiter(Limits(), clock=time.clock, sleep=time.sleep)


def send(
    limiter: RateLimiter, api: FakeApi, method: TelegramMethod[Any]
) -> Coroutine[Any, Any, Any]:
    bot: Any = None
    return limiter(api, bot, method)


def message(chat_id: int | str, thread: int | None = None) -> methods.SendMessage:
    return methods.SendMessage(chat_id=chat_id, text="x", message_thread_id=thread)


def max_in_window(times: list[float], span: float) -> int:
    """The most sends any half-open interval of `span` seconds holds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + span))
    return best


# -- budget shapes -------------------------------------------------------------------


def admit(budget: SlidingWindow | TokenBucket, arrivals: list[float]) -> list[float]:
    """Feed one caller at a time, in arrival order; return when each was admitted."""
    admitted: list[float] = []
    t = 0.0
    for arrival in sorted(arrivals):
        t = max(t, arrival)
        while (wait := budget.wait_time(t)) > 0:
            t += max(wait, 1e-6)
        budget.record(t)
        admitted.append(t)
    return admitted


@given(
    limit=st.integers(1, 25),
    window=st.floats(0.5, 120),
    margin=st.floats(0, 1),
    arrivals=st.lists(st.floats(0, 300), max_size=120),
)
def test_sliding_window_never_admits_more_than_limit_in_any_window(
    limit: int, window: float, margin: float, arrivals: list[float]
) -> None:
    budget = SlidingWindow(limit, window, margin)
    admitted = admit(budget, arrivals)
    span = window + margin
    for i in range(len(admitted) - limit):
        # the (i+limit)-th send comes no sooner than a full span after the i-th
        assert admitted[i] + span <= admitted[i + limit]
    assert len(budget._times) <= limit  # memory bounded by the limit


@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 10),
    arrivals=st.lists(st.floats(0, 100), max_size=120),
)
def test_token_bucket_never_exceeds_burst_plus_refill(
    rate: float, burst: int, arrivals: list[float]
) -> None:
    budget = TokenBucket(rate, burst, margin=0.05)
    admitted = admit(budget, arrivals)
    for i, j in itertools.combinations(range(len(admitted)), 2):
        elapsed = admitted[j] - admitted[i]
        assert j - i + 1 <= burst + elapsed / budget.interval + 1e-6


def test_group_burst_of_20_then_21st_waits_for_the_first_to_leave_the_window() -> None:
    window = SlidingWindow(20, 60.0, 0.05)
    for _ in range(20):
        assert window.wait_time(0.0) == 0
        window.record(0.0)
    assert window.wait_time(0.0) == pytest.approx(GROUP_SPAN)
    assert window.wait_time(30.0) == pytest.approx(GROUP_SPAN - 30)
    assert window.wait_time(GROUP_SPAN) == 0

    # A bucket refilling one send every 3 s would let the 21st through after 3 s...
    bucket = TokenBucket(rate=1 / 3, burst=20, margin=0.0)
    for _ in range(20):
        bucket.record(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(3.0)
    # ...and then one every 3 s: 20 + 19 sends within the first minute, which the
    # server's "20 in any 60 s" answers with 429s. The sliding window never allows that.
    bucket_times = admit(TokenBucket(rate=1 / 3, burst=20), [0.0] * 40)
    assert bucket_times[20:23] == pytest.approx([3.0, 6.0, 9.0])
    assert max_in_window(bucket_times, 60.0) == 39
    window_times = admit(SlidingWindow(20, 60.0), [0.0] * 40)
    assert window_times[20:] == [60.0] * 20
    assert max_in_window(window_times, 60.0) == 20


def test_token_bucket_burst_then_steady_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, margin=0.05)
    admitted = admit(bucket, [0.0] * 7)
    assert admitted[:3] == [0.0, 0.0, 0.0]
    assert admitted[3:] == pytest.approx([1.05, 2.10, 3.15, 4.20])
    # idle long enough, the full burst is back
    assert admit(bucket, [100.0] * 3) == [100.0] * 3
    assert bucket.settled(200.0)


@pytest.mark.parametrize(
    "budget",
    [SlidingWindow(20, 60.0, 0.05), TokenBucket(1.0, 3, 0.05)],
    ids=["window", "bucket"],
)
def test_pause_until_holds_everything_until_t(budget: SlidingWindow | TokenBucket) -> None:
    assert budget.wait_time(0.0) == 0
    budget.pause_until(10.0)
    assert budget.wait_time(0.0) == 10.0
    assert budget.wait_time(9.5) == 0.5
    assert not budget.settled(9.5)
    budget.pause_until(5.0)  # an earlier pause never shortens a later one
    assert budget.wait_time(9.5) == 0.5
    assert budget.wait_time(10.0) == 0
    assert budget.settled(10.0)


def test_budgets_use_their_clock_when_no_time_is_given() -> None:
    now = [0.0]
    window = SlidingWindow(1, 10.0, 0.0, clock=lambda: now[0])
    window.record()
    now[0] = 4.0
    assert window.wait_time() == 6.0


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        Limits(group_window=0)
    with pytest.raises(ValueError, match="at least one"):
        Limits(private_burst=0)


# -- which calls count ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sendMessage",
        "sendPhoto",
        "sendMediaGroup",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "createForumTopic",
        "editForumTopic",
        "closeForumTopic",
        "reopenForumTopic",
        "deleteForumTopic",
        "editGeneralForumTopic",
        "pinChatMessage",
    ],
)
def test_sends_and_edits_are_counted(name: str) -> None:
    assert is_counted(name)


@pytest.mark.parametrize(
    "name",
    [
        "getUpdates",
        "getMe",
        "getChat",
        "getChatMember",
        "answerCallbackQuery",
        "setMyCommands",
        "deleteWebhook",
        "getWebhookInfo",
        "sendChatAction",
        "deleteMessage",
    ],
)
def test_reads_and_housekeeping_are_not_counted(name: str) -> None:
    assert not is_counted(name)


def test_chat_keys() -> None:
    assert chat_key("-1001234") == -1001234
    assert chat_key("42") == 42
    assert chat_key("@desk") == "@desk"
    assert chat_key(None) is None


# -- the middleware ------------------------------------------------------------------


async def test_a_group_out_of_budget_never_delays_private_chats(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    group = [send(limiter, api, message(GROUP)) for _ in range(25)]
    private = [send(limiter, api, message(uid)) for uid in (101, 102) for _ in range(5)]
    results = await time.run(*group, *private)
    assert results == [True] * 35

    group_times = api.times(GROUP)
    assert group_times[:20] == [0.0] * 20
    assert group_times[20:] == pytest.approx([GROUP_SPAN] * 5)
    assert max_in_window(group_times, GROUP_SPAN) == 20

    for uid in (101, 102):
        times = api.times(uid)
        assert times == pytest.approx([0, 0, 0, PRIVATE_INTERVAL, 2 * PRIVATE_INTERVAL])
        assert max(times) < 3  # all done while the group still waits for its minute
    assert limiter.sends == 35
    assert limiter.waited_seconds > 0


async def test_many_concurrent_callers_never_overspend(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    await time.run(*(send(limiter, api, message(GROUP)) for _ in range(70)))
    times = api.times(GROUP)
    assert len(times) == 70
    assert max_in_window(times, GROUP_SPAN) == 20
    assert max(times) == pytest.approx(3 * GROUP_SPAN)


async def test_global_budget_spans_all_chats(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    # 40 private chats, one message each: only 30 pass in any 1.05 s
    await time.run(*(send(limiter, api, message(1000 + uid)) for uid in range(40)))
    times = [t for t, _ in api.calls]
    assert max_in_window(times, 1.05) == 30
    assert sorted(times)[30] == pytest.approx(1.05)


async def test_topics_of_one_group_share_its_budget(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    await time.run(*(send(limiter, api, message(GROUP, thread=7)) for _ in range(20)))
    await time.run(send(limiter, api, message(GROUP, thread=8)))
    await time.run(send(limiter, api, methods.CreateForumTopic(chat_id=GROUP, name="n")))
    await time.run(
        send(limiter, api, methods.EditMessageText(chat_id=str(GROUP), message_id=1, text="y"))
    )
    assert api.times(GROUP)[20:] == pytest.approx([GROUP_SPAN, GROUP_SPAN])
    assert api.calls[-1][0] == pytest.approx(GROUP_SPAN)  # "-100..." is the same chat
    assert limiter.tracked_chats == 1


async def test_retry_after_pauses_only_that_chat_and_is_reraised(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    api.flood[GROUP] = 30
    [error] = await time.run(send(limiter, api, message(GROUP)))
    assert isinstance(error, TelegramRetryAfter)
    assert error.retry_after == 30
    assert limiter.retry_after_count == 1

    await time.run(send(limiter, api, message(GROUP)), send(limiter, api, message(-55)))
    assert api.times(-55) == [0.0]  # another group goes at once
    assert api.times(GROUP) == pytest.approx([0.0, 30.05])
    assert limiter.global_budget.wait_time(0.0) == 0  # one chat's 429 is that chat's


async def test_three_chats_429_within_a_second_pause_the_global_budget(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    api.flood.update({-1: 5, -2: 5})
    await time.run(send(limiter, api, message(-1)), send(limiter, api, message(-2)))
    assert limiter.global_budget.wait_time(time.now) == 0  # two chats: still their own

    time.now = 0.5
    api.flood[-3] = 5
    results = await time.run(send(limiter, api, message(-3)))
    assert isinstance(results[0], TelegramRetryAfter)
    assert limiter.global_budget.wait_time(time.now) == pytest.approx(5.05)

    await time.run(send(limiter, api, message(77)))  # an innocent chat waits too
    assert api.times(77) == pytest.approx([5.55])
    assert limiter.retry_after_count == 3


async def test_429s_spread_over_more_than_a_second_stay_per_chat(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    for i, chat in enumerate((-1, -2, -3)):
        time.now = i * 0.6
        api.flood[chat] = 5
        await time.run(send(limiter, api, message(chat)))
    assert limiter.global_budget.wait_time(time.now) == 0


async def test_a_429_without_a_chat_pauses_everything(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    edit = methods.EditMessageText(inline_message_id="abc", text="y")

    async def flooded(bot: Any, method: TelegramMethod[Any]) -> Any:
        raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=2)

    bot: Any = None
    [error] = await time.run(limiter(flooded, bot, edit))
    assert isinstance(error, TelegramRetryAfter)
    await time.run(send(limiter, api, message(12)))
    assert api.times(12) == pytest.approx([2.05])


async def test_reads_pass_without_spending(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    limiter.global_budget.pause_until(1000.0)  # even with every send held back
    results = await time.run(
        send(limiter, api, methods.GetUpdates(offset=1, timeout=0)),
        send(limiter, api, methods.AnswerCallbackQuery(callback_query_id="1")),
        send(limiter, api, methods.GetMe()),
        send(limiter, api, methods.SendChatAction(chat_id=GROUP, action="typing")),
    )
    assert results == [True] * 4
    assert [t for t, _ in api.calls] == [0.0] * 4
    assert limiter.sends == 0
    assert limiter.tracked_chats == 0


async def test_a_429_on_an_uncounted_call_is_counted_and_reraised(
    time: FakeTime, limiter: RateLimiter
) -> None:
    async def flooded(bot: Any, method: TelegramMethod[Any]) -> Any:
        raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=60)

    bot: Any = None
    [error] = await time.run(limiter(flooded, bot, methods.GetUpdates()))
    assert isinstance(error, TelegramRetryAfter)
    assert limiter.retry_after_count == 1
    assert limiter.global_budget.wait_time(time.now) == 0


async def test_acquire_and_penalize_work_without_a_bot(
    time: FakeTime, limiter: RateLimiter
) -> None:
    await time.run(limiter.acquire(42), limiter.acquire("@channel"), limiter.acquire(None))
    limiter.penalize(42, 3)
    assert limiter.budget(42).wait_time(time.now) == pytest.approx(3.05)
    assert limiter.budget("@channel").wait_time(time.now) == 0
    assert limiter.sends == 3


async def test_idle_budgets_are_forgotten(time: FakeTime) -> None:
    limits = Limits(idle_ttl=100.0, global_per_second=1000)
    limiter = RateLimiter(limits, clock=time.clock, sleep=time.sleep)
    await time.run(*(limiter.acquire(uid) for uid in range(1, 51)))
    await time.run(*(limiter.acquire(GROUP) for _ in range(20)))
    assert limiter.tracked_chats == 51

    assert limiter.forget_idle(50.0) == 0  # not idle long enough
    assert limiter.forget_idle(100.0) == 51
    assert limiter.tracked_chats == 0

    # A group still inside its window is kept however long ago it was used.
    short = RateLimiter(Limits(idle_ttl=1.0), clock=time.clock, sleep=time.sleep)
    time.now = 0.0
    await time.run(*(short.acquire(GROUP) for _ in range(20)))
    assert short.forget_idle(10.0) == 0
    assert short.budget(GROUP).wait_time(10.0) == pytest.approx(GROUP_SPAN - 10)
    assert short.forget_idle(GROUP_SPAN) == 1


async def test_idle_budgets_are_forgotten_opportunistically(time: FakeTime) -> None:
    limiter = RateLimiter(Limits(idle_ttl=100.0), clock=time.clock, sleep=time.sleep)
    await time.run(*(limiter.acquire(uid) for uid in range(1, 11)))
    time.now = 500.0
    await time.run(limiter.acquire(999))
    assert limiter.tracked_chats == 1


async def test_a_refused_send_gives_its_slot_back(
    time: FakeTime, api: FakeApi, limiter: RateLimiter
) -> None:
    # Telegram did not count a send it answered with 429, so neither do we: after the
    # pause, the group still has all 20 sends of its window, not 19.
    api.flood[GROUP] = 1
    await time.run(send(limiter, api, message(GROUP)))
    assert limiter.budget(GROUP).wait_time(time.now) > 0  # paused for retry_after
    time.now = 1.06
    await time.run(*(send(limiter, api, message(GROUP)) for _ in range(20)))
    assert api.times(GROUP)[1:] == pytest.approx([1.06] * 20)


def test_budgets_forget_a_refunded_send() -> None:
    window = SlidingWindow(2, 10.0)
    window.record(0.0)
    window.record(1.0)
    assert window.wait_time(1.0) == pytest.approx(9.0)
    window.refund(1.0)
    assert window.wait_time(1.0) == 0
    window.refund(5.0)  # never recorded: nothing to take back
    bucket = TokenBucket(1.0, 1)
    bucket.record(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(1.0)
    bucket.refund(0.0)
    assert bucket.wait_time(0.0) == 0
