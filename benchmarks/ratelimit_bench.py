"""Benchmark our rate limiter against python-telegram-bot's AIORateLimiter.

Both sides send the same mixed workload over real HTTP to the fake Bot API server
(bot/fake_telegram/), which enforces Telegram's limits with real 429s:

- one forum supergroup: topic creations, ticket cards, customer relays and card edits,
  all drawing from the group's 20 sends per minute;
- N private chats: agent replies, each chat about 1 message/s with a burst of 3;
- all of it under the bot-wide 30 messages/s.

Every period (the server's, ours and PTB's) is divided by `--scale`, so with the
default 10 a group allows 20 sends per 6 s and a private chat 10 per second. Each chat
has one call in flight at a time (as our sender does); a 429 is answered by waiting its
`retry_after` and sending again, on both sides. The run is repeated with the fake's
group limit as a 60-second sliding window and as a refilling bucket.

Not scaled: our limiter's `margin` (default 50 ms, `--margin` to change it). It absorbs
the jitter between the client's clock and the server's (the latency of the call that
opened a window vs. the one that closes it), and that jitter is real time: about 20-50
ms here, where server and clients share one process. Scaled to 5 ms it is too small and
the first group window boundary meets a 429. Also not scaled: the fake's `retry_after`,
a whole number of real seconds (at least 1), as Telegram sends it; so at --scale 10 one
429 costs ten times what it costs in production, relative to the limits.

Run from the repository root: `python benchmarks/ratelimit_bench.py` (needs the `bench`
extra: `pip install '.[bench]'`). See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import logging
import math
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.methods import CreateForumTopic, EditMessageText, SendMessage
from aiogram.methods.base import TelegramMethod, TelegramType
from pydantic import BaseModel

from bot.delivery.ratelimit import Limits, RateLimiter
from bot.fake_telegram import BOT_TOKEN, GROUP_ID, FakeTelegram, TelegramError
from bot.fake_telegram import Limits as FakeLimits

try:
    from telegram.error import RetryAfter
    from telegram.ext import AIORateLimiter
    from telegram.warnings import PTBDeprecationWarning
except ImportError:  # pragma: no cover - only without the bench extra
    sys.exit("python-telegram-bot is missing: pip install '.[bench]'")

JSON = dict[str, Any]
GroupMode = Literal["window", "bucket"]
Side = Literal["ours", "ptb"]

# Telegram's figures (Bot FAQ), before scaling.
GLOBAL_PER_SECOND = 30
PRIVATE_PER_SECOND = 1.0
PRIVATE_BURST = 3
GROUP_PER_MINUTE = 20
FIRST_USER_ID = 2_000_000_001


# ---------------------------------------------------------------------------------------
# Configuration and workload
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    scale: float
    chats: int
    group_sends: int
    private_sends: int
    margin: float
    max_attempts: int
    server_thread: bool
    keep_gc: bool
    warm_up: bool

    @property
    def global_period(self) -> float:
        return 1.0 / self.scale

    @property
    def group_period(self) -> float:
        return 60.0 / self.scale

    @property
    def private_rate(self) -> float:
        return PRIVATE_PER_SECOND * self.scale

    @property
    def users(self) -> list[int]:
        return [FIRST_USER_ID + i for i in range(self.chats)]


@dataclass(frozen=True)
class Step:
    """One send into the support group; its params are resolved when it is sent."""

    kind: Literal["topic", "card", "relay", "edit"]
    ticket: int
    relays: int = 0  # for "edit": how many relays the card now counts


def group_script(group_sends: int) -> list[Step]:
    """Tickets of: createForumTopic, the card (sendMessage), relays, one card edit."""
    tickets = max(1, group_sends // 8)
    relays = group_sends - 3 * tickets
    steps: list[Step] = []
    for ticket in range(tickets):
        mine = relays // tickets + (1 if ticket < relays % tickets else 0)
        steps.append(Step("topic", ticket))
        steps.append(Step("card", ticket))
        steps.extend(Step("relay", ticket) for _ in range(mine))
        steps.append(Step("edit", ticket, mine))
    return steps


@dataclass
class GroupState:
    threads: dict[int, int] = field(default_factory=dict)
    cards: dict[int, int] = field(default_factory=dict)

    def request(self, step: Step) -> tuple[str, JSON] | None:
        """The call for a step, or None if what it points at was never delivered."""
        name = f"Ticket #{step.ticket + 1}"
        if step.kind == "topic":
            return "createForumTopic", {"chat_id": GROUP_ID, "name": name}
        thread = self.threads.get(step.ticket)
        if thread is None:
            return None
        if step.kind == "card":
            text = f"{name} · new"
            return "sendMessage", {"chat_id": GROUP_ID, "message_thread_id": thread, "text": text}
        if step.kind == "relay":
            text = f"Customer: a message for {name}"
            return "sendMessage", {"chat_id": GROUP_ID, "message_thread_id": thread, "text": text}
        card = self.cards.get(step.ticket)
        if card is None:
            return None
        text = f"{name} · waiting for an agent · {step.relays} messages"
        return "editMessageText", {"chat_id": GROUP_ID, "message_id": card, "text": text}

    def learn(self, step: Step, result: JSON) -> None:
        if step.kind == "topic":
            self.threads[step.ticket] = int(result["message_thread_id"])
        elif step.kind == "card":
            self.cards[step.ticket] = int(result["message_id"])


# ---------------------------------------------------------------------------------------
# The fake server, also telling which budget refused each 429
# ---------------------------------------------------------------------------------------


class CountingFake(FakeTelegram):
    """FakeTelegram that records, for every 429, which budget was short.

    It looks at the fake's global bucket (private attributes of a test helper: fine
    for a benchmark); if the bot-wide bucket had no token the 429 counts as "global",
    else as the chat's own budget ("group" or "private").
    """

    def __init__(self, limits: FakeLimits) -> None:
        super().__init__(limits=limits)
        self.refused: Counter[str] = Counter()

    def _admit(self, method: str, chat_id: int, count: int = 1) -> None:
        try:
            super()._admit(method, chat_id, count)
        except TelegramError as exc:
            if exc.error_code == 429:
                bucket = self._global_bucket
                if bucket is not None and bucket.wait(self.clock()) > 0:
                    self.refused["global"] += 1
                else:
                    self.refused["group" if chat_id < 0 else "private"] += 1
            raise


class ServerThread:
    """Runs the fake server's event loop in a thread of this process, so the server
    answers (and stamps sends) while the clients' loop is busy, as a remote server would.
    With `--server loop` it shares the clients' loop instead."""

    def __init__(self, fake: FakeTelegram, *, own_thread: bool) -> None:
        self.fake = fake
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        if own_thread:
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _on_server(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.loop is None:
            await coro
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def start(self) -> None:
        if self.thread is not None:
            self.thread.start()
        await self._on_server(self.fake.start())

    async def stop(self) -> None:
        await self._on_server(self.fake.stop())
        if self.loop is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self.thread.join)
            self.loop.close()


# ---------------------------------------------------------------------------------------
# The two clients
# ---------------------------------------------------------------------------------------


class Stamps:
    """When each call left the client (after its limiter), per chat, and whether it was
    accepted. One call is in flight per chat, so a chat's accepted stamps pair up in
    order with the server's accepted sends: the difference is the latency the limiter's
    margin has to absorb."""

    def __init__(self) -> None:
        self.calls: dict[int, list[tuple[float, bool]]] = {}

    def add(self, chat_id: object, at: float, accepted: bool) -> None:
        if isinstance(chat_id, int):
            self.calls.setdefault(chat_id, []).append((at, accepted))

    def latencies(self, server: dict[int, list[float]]) -> list[float]:
        out: list[float] = []
        for chat_id, calls in self.calls.items():
            sent = [at for at, accepted in calls if accepted]
            out.extend(b - a for a, b in zip(sent, server.get(chat_id, []), strict=False))
        return sorted(out)


class StampMiddleware(BaseRequestMiddleware):
    """Installed after (inside) our RateLimiter: stamps a call as it leaves for HTTP."""

    def __init__(self, stamps: Stamps) -> None:
        self.stamps = stamps

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        at = time.monotonic()
        chat_id = getattr(method, "chat_id", None)
        try:
            response = await make_request(bot, method)
        except TelegramAPIError:
            self.stamps.add(chat_id, at, accepted=False)
            raise
        self.stamps.add(chat_id, at, accepted=True)
        return response


class RateLimitedError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


class FailedError(Exception):
    """Any answer but success or 429: the message is lost."""


class Client(Protocol):
    async def call(self, method: str, params: JSON) -> JSON: ...

    async def warm_up(self, connections: int) -> None: ...

    async def close(self) -> None: ...


class OursClient:
    """An aiogram Bot whose session goes through our RateLimiter middleware."""

    _METHODS: ClassVar[dict[str, type[SendMessage | EditMessageText | CreateForumTopic]]] = {
        "sendMessage": SendMessage,
        "editMessageText": EditMessageText,
        "createForumTopic": CreateForumTopic,
    }

    def __init__(self, base_url: str, cfg: Config, stamps: Stamps) -> None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(base_url))
        self.limiter = RateLimiter(
            Limits(
                global_per_second=GLOBAL_PER_SECOND,
                global_window=cfg.global_period,
                private_per_second=cfg.private_rate,
                private_burst=PRIVATE_BURST,
                group_per_window=GROUP_PER_MINUTE,
                group_window=cfg.group_period,
                margin=cfg.margin,
                idle_ttl=Limits().idle_ttl / cfg.scale,
                global_429_window=Limits().global_429_window / cfg.scale,
            )
        )
        session.middleware(self.limiter)
        session.middleware(StampMiddleware(stamps))
        self.bot = Bot(BOT_TOKEN, session=session)

    async def call(self, method: str, params: JSON) -> JSON:
        try:
            result = await self.bot(self._METHODS[method](**params))
        except TelegramRetryAfter as exc:
            raise RateLimitedError(exc.retry_after) from exc
        except TelegramAPIError as exc:
            raise FailedError(str(exc)) from exc
        return result.model_dump() if isinstance(result, BaseModel) else {}

    async def warm_up(self, connections: int) -> None:
        """Open the connections before timing (getMe spends no budget)."""
        await asyncio.gather(*(self.bot.get_me() for _ in range(connections)))

    async def close(self) -> None:
        await self.bot.session.close()


class _PtbRetryAfter(RetryAfter):
    """PTB's RetryAfter that also keeps the plain number of seconds."""

    def __init__(self, seconds: float) -> None:
        super().__init__(dt.timedelta(seconds=seconds))
        self.seconds = seconds


class PtbClient:
    """PTB's AIORateLimiter around a plain aiohttp POST to the fake server."""

    def __init__(self, base_url: str, cfg: Config, stamps: Stamps) -> None:
        self.stamps = stamps
        self.limiter = AIORateLimiter(
            overall_max_rate=GLOBAL_PER_SECOND,
            overall_time_period=cfg.global_period,
            group_max_rate=GROUP_PER_MINUTE,
            group_time_period=cfg.group_period,
            max_retries=0,
        )
        self.base = f"{base_url}/bot{BOT_TOKEN}"
        self.http = aiohttp.ClientSession()

    async def start(self) -> None:
        await self.limiter.initialize()

    async def _post(self, method: str, params: JSON) -> JSON:
        at = time.monotonic()
        async with self.http.post(f"{self.base}/{method}", json=params) as response:
            body: JSON = await response.json()
        self.stamps.add(params.get("chat_id"), at, accepted=bool(body.get("ok")))
        if body.get("ok"):
            result = body["result"]
            return result if isinstance(result, dict) else {}
        retry_after = body.get("parameters", {}).get("retry_after")
        if body.get("error_code") == 429 and retry_after is not None:
            raise _PtbRetryAfter(float(retry_after))
        raise FailedError(str(body.get("description")))

    async def warm_up(self, connections: int) -> None:
        """Open the connections before timing (getMe spends no budget)."""

        async def get_me() -> None:
            async with self.http.post(f"{self.base}/getMe") as response:
                await response.read()

        await asyncio.gather(*(get_me() for _ in range(connections)))

    async def call(self, method: str, params: JSON) -> JSON:
        try:
            result = await self.limiter.process_request(
                callback=self._post,
                args=(method, params),
                kwargs={},
                endpoint=method,
                data=params,
                rate_limit_args=None,
            )
        except _PtbRetryAfter as exc:
            raise RateLimitedError(exc.seconds) from exc
        return result if isinstance(result, dict) else {}

    async def close(self) -> None:
        await self.limiter.shutdown()
        await self.http.close()


# ---------------------------------------------------------------------------------------
# Driving the workload
# ---------------------------------------------------------------------------------------


@dataclass
class Delivery:
    delivered: int = 0
    lost: int = 0
    received_429: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def latency_ms(self, q: float) -> str:
        """A quantile of the client-to-server latency of accepted sends, in ms."""
        if not self.latencies:
            return "-"
        if q >= 1 or len(self.latencies) < 2:
            return f"{self.latencies[-1] * 1000:.1f}"
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return f"{cuts[round(q * 100) - 1] * 1000:.1f}"


async def deliver(
    client: Client, method: str, params: JSON, kind: str, cfg: Config, out: Delivery
) -> JSON | None:
    """Send one call; on 429 wait `retry_after` and send it again (up to max_attempts)."""
    for _ in range(cfg.max_attempts):
        try:
            result = await client.call(method, params)
        except RateLimitedError as exc:
            out.received_429[kind] += 1
            await asyncio.sleep(exc.retry_after)
            continue
        except FailedError:
            break
        out.delivered += 1
        return result
    out.lost += 1
    return None


async def group_worker(client: Client, cfg: Config, out: Delivery) -> None:
    state = GroupState()
    for step in group_script(cfg.group_sends):
        request = state.request(step)
        if request is None:
            out.lost += 1
            continue
        result = await deliver(client, *request, "group", cfg, out)
        if result is not None:
            state.learn(step, result)


async def private_worker(client: Client, user_id: int, cfg: Config, out: Delivery) -> None:
    for i in range(cfg.private_sends):
        text = f"Agent: reply {i + 1}"
        await deliver(
            client, "sendMessage", {"chat_id": user_id, "text": text}, "private", cfg, out
        )


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    budget: str
    limit: str
    sends: int
    share: float
    best: float
    refused: int
    slack_ms: float | None


@dataclass(frozen=True)
class SideResult:
    side: Side
    rows: list[BudgetRow]
    delivery: Delivery
    ideal: float


def used_share(series: Sequence[list[float]], rate: float, burst: float) -> float:
    """Accepted sends / what the budget allowed while the sends kept it busy.

    For each chat: `rate × (last − first) + burst`, i.e. the budget's capacity from the
    first send until one full period after the last (for a window `burst` = the limit
    and `rate` = limit / window). A perfect pacer scores 1.0 when the workload fills
    whole windows.
    """
    sends = sum(len(times) for times in series)
    capacity = sum(rate * (times[-1] - times[0]) + burst for times in series if times)
    return sends / capacity if capacity else 0.0


def window_slack(times: list[float], limit: int, window: float) -> float | None:
    """Least room (s) any accepted send had in a sliding window of `limit` per `window`."""
    gaps = [times[k] - times[k - limit] - window for k in range(limit, len(times))]
    return min(gaps) if gaps else None


def bucket_slack(times: list[float], capacity: float, rate: float) -> float | None:
    """Least room (s) any accepted send had in a bucket refilling `rate` per second."""
    if not times:
        return None
    tokens, stamp, least = capacity, times[0], math.inf
    for t in times:
        tokens = min(capacity, tokens + (t - stamp) * rate)
        stamp = t
        least = min(least, (tokens - 1.0) / rate)
        tokens -= 1.0
    return least


def measure(fake: CountingFake, cfg: Config, mode: GroupMode) -> tuple[list[BudgetRow], float]:
    """The budget rows of one run, and the ideal makespan (s) of its workload."""
    n_private = cfg.private_sends
    n_group = cfg.group_sends
    global_rate = GLOBAL_PER_SECOND * cfg.scale
    group_rate = GROUP_PER_MINUTE / cfg.group_period
    private_rate = cfg.private_rate

    # The ideal schedule: every budget spent as fast as its own limit allows.
    windows = math.ceil(n_group / GROUP_PER_MINUTE)
    if mode == "window":
        group_span = (windows - 1) * cfg.group_period
        group_best = n_group / (GROUP_PER_MINUTE * windows)
    else:
        group_span = max(0, n_group - GROUP_PER_MINUTE) / group_rate
        group_best = n_group / max(n_group, GROUP_PER_MINUTE)
    private_span = max(0, n_private - PRIVATE_BURST) / private_rate
    private_best = n_private / max(n_private, PRIVATE_BURST)
    total = n_group + n_private * cfg.chats
    global_span = max(0, total - GLOBAL_PER_SECOND) / global_rate
    ideal = max(group_span, private_span, global_span)
    global_best = total / (global_rate * ideal + GLOBAL_PER_SECOND)

    group_times = fake.sent_per_chat.get(GROUP_ID, [])
    private_times = [fake.sent_per_chat.get(user, []) for user in cfg.users]
    private_slacks = [
        s
        for s in (bucket_slack(t, PRIVATE_BURST, private_rate) for t in private_times)
        if s is not None
    ]
    if mode == "window":
        group_slack = window_slack(group_times, GROUP_PER_MINUTE, cfg.group_period)
    else:
        group_slack = bucket_slack(group_times, GROUP_PER_MINUTE, group_rate)
    global_slack = bucket_slack(fake.sent_times, GLOBAL_PER_SECOND, global_rate)

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000

    def per(period: float) -> str:
        return f"{period:g} s"

    rows = [
        BudgetRow(
            "global",
            f"{GLOBAL_PER_SECOND} / {per(cfg.global_period)}",
            len(fake.sent_times),
            used_share([fake.sent_times], global_rate, GLOBAL_PER_SECOND),
            global_best,
            fake.refused["global"],
            ms(global_slack),
        ),
        BudgetRow(
            f"private ×{cfg.chats}",
            f"{PRIVATE_BURST}+1 / {per(1 / private_rate)}",
            sum(len(t) for t in private_times),
            used_share(private_times, private_rate, PRIVATE_BURST),
            private_best,
            fake.refused["private"],
            ms(min(private_slacks)) if private_slacks else None,
        ),
        BudgetRow(
            "group",
            f"{GROUP_PER_MINUTE} / {per(cfg.group_period)}",
            len(group_times),
            used_share([group_times], group_rate, GROUP_PER_MINUTE),
            group_best,
            fake.refused["group"],
            ms(group_slack),
        ),
    ]
    return rows, ideal


async def run_side(side: Side, mode: GroupMode, cfg: Config) -> SideResult:
    fake = CountingFake(
        FakeLimits(
            global_per_second=GLOBAL_PER_SECOND,
            private_per_second=PRIVATE_PER_SECOND,
            private_burst=PRIVATE_BURST,
            group_per_minute=GROUP_PER_MINUTE,
            group_mode=mode,
            time_scale=cfg.scale,
        )
    )
    fake.add_group(GROUP_ID)
    for i, user in enumerate(cfg.users):
        fake.add_user(user, f"Customer {i + 1}")
    server = ServerThread(fake, own_thread=cfg.server_thread)
    await server.start()
    stamps = Stamps()
    client: OursClient | PtbClient
    if side == "ours":
        client = OursClient(fake.base_url, cfg, stamps)
    else:
        client = PtbClient(fake.base_url, cfg, stamps)
        await client.start()
    if cfg.warm_up:
        await client.warm_up(cfg.chats + 1)
    out = Delivery()
    if not cfg.keep_gc:
        # A full collection of the fake's growing world pauses the one process for
        # hundreds of ms, which would show up as network jitter no real server has.
        gc.collect()
        gc.disable()
    try:
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(group_worker(client, cfg, out))
            for user in cfg.users:
                tasks.create_task(private_worker(client, user, cfg, out))
        out.wall = time.monotonic() - started
    finally:
        gc.enable()
        await client.close()
        await server.stop()
    rows, ideal = measure(fake, cfg, mode)
    out.latencies = stamps.latencies(fake.sent_per_chat)
    received = sum(out.received_429.values())
    if received != fake.too_many_requests:
        print(f"  warning: {side} received {received} 429s, the fake sent {fake.too_many_requests}")
    return SideResult(side, rows, out, ideal)


# ---------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """Plain aligned text: the first `left` columns to the left, the rest to the right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def report(mode: GroupMode, cfg: Config, results: Sequence[SideResult]) -> str:
    title = {
        "window": "group limit = sliding window: at most 20 sends in any 60 s",
        "bucket": "group limit = bucket: 20 at once, refilling 1 every 3 s",
    }[mode]
    budget_rows = []
    for result in results:
        for row in result.rows:
            slack = "-" if row.slack_ms is None else f"{row.slack_ms:.1f}"
            budget_rows.append(
                [
                    result.side,
                    row.budget,
                    row.limit,
                    str(row.sends),
                    f"{row.share:.3f}",
                    f"{row.best:.3f}",
                    f"{row.share / row.best:.3f}" if row.best else "-",
                    str(row.refused),
                    slack,
                ]
            )
    budgets = table(
        ["side", "budget", "limit", "sends", "share", "best", "of best", "429s", "slack ms"],
        budget_rows,
        left=3,
    )
    delivery_rows = [
        [
            r.side,
            str(r.delivery.delivered),
            str(r.delivery.lost),
            str(sum(r.delivery.received_429.values())),
            f"{r.delivery.wall:.2f}",
            f"{r.ideal:.2f}",
            r.delivery.latency_ms(0.5),
            r.delivery.latency_ms(0.99),
            r.delivery.latency_ms(1.0),
        ]
        for r in results
    ]
    delivery = table(
        [
            "side",
            "delivered",
            "lost",
            "429s",
            "wall s",
            "ideal s",
            "lat p50 ms",
            "p99 ms",
            "max ms",
        ],
        delivery_rows,
        left=1,
    )
    return f"== {title} (scaled ÷{cfg.scale:g}) ==\n{budgets}\n\n{delivery}\n"


def verdict(mode: GroupMode, cfg: Config, results: Sequence[SideResult]) -> str:
    lines = []
    for result in results:
        group = result.rows[2]
        refused = sum(row.refused for row in result.rows)
        if result.side == "ours":
            # The target is 0.95 of the budget; a workload too small to fill its windows
            # cannot reach that, so it is judged against the best this workload allows.
            ok = group.share >= 0.95 * group.best and refused == 0
            lines.append(
                f"ours/{mode}: group share {group.share:.3f} of best {group.best:.3f} "
                f"(target ≥ 0.95 × best), {refused} 429s (target 0): {'MET' if ok else 'MISSED'}"
            )
            latencies = result.delivery.latencies
            spread = latencies[-1] - latencies[0] if latencies else 0.0
            if spread > cfg.margin:
                lines.append(
                    f"  latency spread of accepted sends {spread * 1000:.1f} ms > our margin "
                    f"{cfg.margin * 1000:g} ms: a window may close early at the server"
                )
        else:
            private = result.rows[1]
            lines.append(
                f"ptb/{mode}: {private.refused} 429s in private chats "
                "(AIORateLimiter has no per-private-chat limit), "
                f"{group.refused} in the group"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="divide every period by this")
    parser.add_argument("--chats", type=int, default=20, help="private chats")
    parser.add_argument("--group-sends", type=int, default=80, help="calls into the group")
    parser.add_argument("--private-sends", type=int, default=40, help="messages per private chat")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="our limiter's margin in real seconds, not scaled (default: Limits().margin)",
    )
    parser.add_argument(
        "--max-attempts", type=int, default=10, help="attempts per message before it is lost"
    )
    parser.add_argument(
        "--server",
        choices=("thread", "loop"),
        default="thread",
        help="run the fake server in its own thread (default) or in the clients' event loop",
    )
    parser.add_argument(
        "--keep-gc",
        action="store_true",
        help="leave the garbage collector on during the timed runs (pauses look like jitter)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="do not open the HTTP connections before timing (the first calls then connect)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.chats < 1 or args.group_sends < 3 or args.private_sends < 1:
        parser.error("need --scale > 0, --chats >= 1, --group-sends >= 3, --private-sends >= 1")
    margin = Limits().margin if args.margin is None else args.margin
    return Config(
        scale=args.scale,
        chats=args.chats,
        group_sends=args.group_sends,
        private_sends=args.private_sends,
        margin=margin,
        max_attempts=args.max_attempts,
        server_thread=args.server == "thread",
        keep_gc=args.keep_gc,
        warm_up=not args.cold,
    )


def quiet_logs() -> None:
    """429s are expected here: keep the limiters' warnings and PTB's tracebacks out."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.getLogger("telegram").setLevel(logging.CRITICAL + 1)
    logging.getLogger("aiogram").setLevel(logging.CRITICAL + 1)
    # PTB's RetryAfter reads its own int-valued property while it is built.
    warnings.filterwarnings("ignore", category=PTBDeprecationWarning)


async def main(cfg: Config) -> None:
    quiet_logs()
    kinds = Counter(step.kind for step in group_script(cfg.group_sends))
    print(
        f"workload: {cfg.group_sends} group calls ({kinds['topic']} createForumTopic, "
        f"{kinds['card']} cards, {kinds['relay']} relays, {kinds['edit']} card edits) + "
        f"{cfg.chats} private chats × {cfg.private_sends} replies\n"
        f"every period ÷{cfg.scale:g}; our margin {cfg.margin * 1000:g} ms (not scaled); "
        f"fake server in {'its own thread' if cfg.server_thread else 'the same loop'}; "
        f"gc {'on' if cfg.keep_gc else 'off'} while timing; "
        f"connections {'opened before timing' if cfg.warm_up else 'cold'}\n"
    )
    for mode in ("window", "bucket"):
        results = [await run_side(side, mode, cfg) for side in ("ours", "ptb")]
        print(report(mode, cfg, results))
        print(verdict(mode, cfg, results) + "\n")
    print(
        "share = accepted sends / (rate × (last − first send) + burst), per chat, summed;\n"
        "best = the same for an ideal pacer that spends each budget as fast as it allows;\n"
        "slack = least room the server saw for any accepted send (negative is impossible);\n"
        "429s per budget = the budget the fake found short (global if its bot-wide bucket);\n"
        "lat = from a call leaving its limiter to the server counting it (accepted sends)."
    )


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
