"""Benchmark the real `topicdesk run` process: catch-up, latency, start-up, memory, fairness.

The daemon runs as a subprocess, configured by environment variables only, against the
fake Bot API server (bot/fake_telegram/) running in this process on 127.0.0.1. Its
log goes to a file in a temporary folder. Every figure is taken from the fake's clock:
when a call arrived (`Call.at`) and when an update was enqueued (`enqueued_at`).

1. catch-up: the fake holds a backlog from N customers before the daemon starts: each
   says "hello" (which starts the intake form), answers the category question
   ("Billing", a button label typed as text, which the form accepts), describes the
   problem, then writes 7 follow-ups (relayed into the ticket's topic): 10 updates per
   customer. Timed from the daemon's first getUpdates to the getUpdates whose offset
   confirms the last update (the daemon confirms an update only after its commit).
   The fake enforces Telegram's limits, so the daemon's sender runs alongside.
2. baseline: benchmarks/baseline_bot.py (aiogram `start_polling`, one INSERT and commit
   per message) on the same backlog in a fresh fake, timed the same way.
3. latency: no limits on the fake or in the daemon; 50 tickets are opened, then for
   10 s 50 customer messages a second go to them; for each, the time from its update
   being enqueued to the daemon's copyMessage for it reaching the fake.
4. start-up and memory: launch to the first getUpdates, beside `python -c "import
   aiogram"` (the daemon's interpreter); the daemon's RSS at idle beside that of a
   python that imported aiogram. `--db PATH` starts the daemon on a copy of a prebuilt
   database for this.
5. fair share: one ticket's customer sends 300 messages in 10 s, then a second ticket's
   customer sends one; how many group sends went out before that one's relay, and how
   long it waited. The group budget is scaled (fake `Limits(time_scale=S)`, daemon
   `delivery.group_window = 60/S`) to keep it short.

Run from the repository root: `python benchmarks/catchup_bench.py` (default sizes 1k, 10k
and 50k updates; `--sizes 1000,10000`, `--skip baseline,latency,fair,startup`,
`--topicdesk PATH`, `--json PATH`). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.fake_telegram import BOT_TOKEN, GROUP_ID, Call, FakeTelegram, Limits

REPO = Path(__file__).resolve().parents[1]

JSON = dict[str, Any]

FIRST_USER_ID = 2_000_000_001
UPDATES_PER_CUSTOMER = 10
FOLLOW_UPS = 7
CATEGORY = "Billing"  # a button label of the default form, typed: check_answer accepts it
DESCRIPTION = "I was charged twice for my March invoice; please refund one of the payments."
STEP_NAMES = ("hello", "category", "description", *(f"follow-up {k}" for k in range(1, 8)))
SECTIONS = ("startup", "catchup", "baseline", "latency", "fair")
POLL = 0.05  # how often the benchmark looks at the fake's calls
QUIET = 1.0  # no send for this long: the daemon has drained what it had
SETUP_TIMEOUT = 120.0
BASELINE_BOT = Path(__file__).resolve().parent / "baseline_bot.py"
UNLIMITED = "1000000"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class ProcessDiedError(BenchError):
    """A child process ended while it was being measured."""


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    topicdesk: Path
    python: Path
    sizes: tuple[int, ...]
    skip: frozenset[str]
    json_path: Path
    db: Path | None
    catchup_timeout: float
    idle: float
    startup_runs: int
    latency_tickets: int
    latency_rate: float
    latency_seconds: float
    fair_messages: int
    fair_seconds: float
    fair_scale: float
    fair_timeout: float
    stop_grace: float
    keep_tmp: bool

    def runs(self, section: str) -> bool:
        return section not in self.skip


def interpreter_of(script: Path) -> Path:
    """The python that runs a console script: its shebang, else the python beside it."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = script.read_text(encoding="utf-8").splitlines()[0]
        if first.startswith("#!"):
            candidate = Path(first[2:].strip().split()[0])
            if candidate.name.startswith("python") and candidate.exists():
                return candidate
    beside = script.parent / "python"
    return beside if beside.exists() else Path(sys.executable)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--topicdesk",
        type=Path,
        default=Path(sys.executable).parent / "topicdesk",
        help="the topicdesk executable to benchmark (default: the one beside this python)",
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000,50000",
        help="backlog sizes in updates, comma-separated (10 updates per customer)",
    )
    parser.add_argument(
        "--skip", default="", help=f"comma-separated sections to skip: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "catchup.json"
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="start the daemon on a copy of this database"
    )
    parser.add_argument(
        "--catchup-timeout",
        type=float,
        default=1800.0,
        help="give up on one catch-up run after this many seconds (the rate so far is kept)",
    )
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before RSS")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--latency-tickets", type=int, default=50)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--fair-messages", type=int, default=300)
    parser.add_argument("--fair-seconds", type=float, default=10.0)
    parser.add_argument(
        "--fair-scale",
        type=float,
        default=20.0,
        help="divide the group window by this (20: 20 sends per 3 s)",
    )
    parser.add_argument(
        "--fair-timeout",
        type=float,
        default=180.0,
        help="stop waiting for the quiet ticket's relay after this many seconds",
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=3.0,
        help="seconds a child gets after SIGTERM before SIGKILL",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the logs and databases")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        parser.error("--sizes takes whole numbers, e.g. 1000,10000")
    if any(size < UPDATES_PER_CUSTOMER or size % UPDATES_PER_CUSTOMER for size in sizes):
        parser.error(f"each size must be a positive multiple of {UPDATES_PER_CUSTOMER}")
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) to skip: {', '.join(sorted(unknown))}")
    topicdesk = args.topicdesk.expanduser().absolute()
    if not topicdesk.exists():
        parser.error(f"{topicdesk}: no such executable (pass --topicdesk PATH)")
    if args.db is not None and not args.db.is_file():
        parser.error(f"{args.db}: no such database file")
    if args.fair_scale <= 0 or args.latency_rate <= 0 or args.latency_tickets < 1:
        parser.error("--fair-scale and --latency-rate must be > 0, --latency-tickets >= 1")
    return Config(
        topicdesk=topicdesk,
        python=interpreter_of(topicdesk),
        sizes=sizes,
        skip=skip,
        json_path=args.json,
        db=args.db,
        catchup_timeout=args.catchup_timeout,
        idle=args.idle,
        startup_runs=max(1, args.startup_runs),
        latency_tickets=args.latency_tickets,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        fair_messages=args.fair_messages,
        fair_seconds=args.fair_seconds,
        fair_scale=args.fair_scale,
        fair_timeout=args.fair_timeout,
        stop_grace=args.stop_grace,
        keep_tmp=args.keep_tmp,
    )


# ---------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process, in KiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def copy_db(source: Path, target: Path) -> None:
    """Copy a SQLite database, with its -wal file if it has one."""
    shutil.copy2(source, target)
    wal = Path(f"{source}-wal")
    if wal.exists():
        shutil.copy2(wal, Path(f"{target}-wal"))


def db_bytes(path: Path) -> int:
    """A SQLite database's size on disk, its -wal file included."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


class Child:
    """A child process (the daemon or the baseline) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.launched = 0.0
        self._log: IO[bytes] | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.launched = time.monotonic()
        self._popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        """Raise ProcessDiedError (with the end of the log) if the process has ended."""
        if self._popen is None:
            return
        code = self._popen.poll()
        if code is not None:
            raise ProcessDiedError(
                f"{self.name} exited with code {code} while it was being measured; "
                f"the end of its log ({self.log_path}):\n{self.tail()}"
            )

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; the log is closed."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(popen.wait, grace)
            except subprocess.TimeoutExpired:
                popen.kill()
                await asyncio.to_thread(popen.wait, 10)
        if self._log is not None:
            self._log.close()
            self._log = None


def child_env() -> dict[str, str]:
    """This process's environment without TopicDesk's variables or a PYTHONPATH that
    would make the child import this checkout instead of its own installed copy."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("TOPICDESK_") and k != "PYTHONPATH"
    }


def desk(cfg: Config, fake: FakeTelegram, workdir: Path, name: str, **delivery: str) -> Child:
    """`topicdesk run` against the fake, configured by environment variables only."""
    env = child_env()
    env.update(
        {
            "TOPICDESK_TELEGRAM__TOKEN": BOT_TOKEN,
            "TOPICDESK_TELEGRAM__API_URL": fake.base_url,
            "TOPICDESK_TELEGRAM__POLLING_TIMEOUT": "10",
            "TOPICDESK_SUPPORT__GROUP_ID": str(GROUP_ID),
            "TOPICDESK_STORAGE__PATH": str(workdir / f"{name}.db"),
            "TOPICDESK_LOGGING__FORMAT": "json",
            "TOPICDESK_LOGGING__LEVEL": "INFO",
        }
    )
    for key, value in delivery.items():
        env[f"TOPICDESK_DELIVERY__{key.upper()}"] = value
    return Child(name, [str(cfg.topicdesk), "run"], env, workdir)


def baseline(cfg: Config, fake: FakeTelegram, workdir: Path, name: str) -> Child:
    argv = [
        str(cfg.python),
        str(BASELINE_BOT),
        "--api-url",
        fake.base_url,
        "--db",
        str(workdir / f"{name}.db"),
    ]
    return Child(name, argv, child_env(), workdir)


# ---------------------------------------------------------------------------------------
# Watching the fake
# ---------------------------------------------------------------------------------------


class Watch:
    """Reads the fake's calls as they come: polls with their offsets, relays by source."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self._seen = 0
        self.first_poll: float | None = None
        self.polls: list[tuple[float, int]] = []  # (arrival, offset) of each getUpdates
        self.confirmed = 0  # the highest offset seen, minus one
        self.relays: dict[tuple[int, int], float] = {}  # (from_chat_id, message_id) -> at
        self.topics_created = 0

    def scan(self) -> None:
        calls = self.fake.calls
        fresh: list[Call] = calls[self._seen :]
        self._seen = len(calls)
        for call in fresh:
            if call.method == "getUpdates":
                if self.first_poll is None:
                    self.first_poll = call.at
                offset = int(call.params.get("offset") or 0)
                self.polls.append((call.at, offset))
                self.confirmed = max(self.confirmed, offset - 1)
            elif call.status != 200:
                continue
            elif call.method == "copyMessage":
                key = (int(call.params["from_chat_id"]), int(call.params["message_id"]))
                self.relays[key] = min(call.at, self.relays.get(key, math.inf))
            elif call.method == "createForumTopic":
                self.topics_created += 1

    def confirmed_at(self, update_id: int) -> float | None:
        """When the first getUpdates confirming `update_id` arrived (offset above it)."""
        return next((at for at, offset in self.polls if offset > update_id), None)


async def wait_for(
    predicate: Callable[[], bool],
    watch: Watch,
    children: Sequence[Child],
    limit: float,
    what: str,
    progress: Callable[[], str] | None = None,
) -> bool:
    """Wait until predicate() (scanning the fake's calls), a child dies (ProcessDiedError) or
    `limit` seconds pass (False). `progress` is printed every 30 s."""
    deadline = time.monotonic() + limit
    next_report = time.monotonic() + 30.0
    while True:
        watch.scan()
        if predicate():
            return True
        for child in children:
            child.check()
        now = time.monotonic()
        if now >= deadline:
            print(f"    gave up waiting for {what} after {limit:g} s", flush=True)
            return False
        if progress is not None and now >= next_report:
            print(f"    {progress()}", flush=True)
            next_report = now + 30.0
        await asyncio.sleep(POLL)


async def first_poll(watch: Watch, child: Child) -> float:
    """When the child's first getUpdates reached the fake (BenchError if it never did)."""
    await wait_for(
        lambda: watch.first_poll is not None,
        watch,
        [child],
        SETUP_TIMEOUT,
        f"{child.name}'s first getUpdates",
    )
    if watch.first_poll is None:
        raise BenchError(f"{child.name} never called getUpdates; its log: {child.log_path}")
    return watch.first_poll


async def wait_quiet(fake: FakeTelegram, watch: Watch, child: Child, limit: float) -> None:
    """Wait until the fake has accepted no send for QUIET seconds (at most `limit`)."""
    state = {"count": len(fake.sent_log), "since": time.monotonic()}

    def quiet() -> bool:
        if len(fake.sent_log) != state["count"]:
            state["count"], state["since"] = len(fake.sent_log), time.monotonic()
        return time.monotonic() - state["since"] >= QUIET

    await wait_for(quiet, watch, [child], limit, "the daemon's sends to settle")


async def idle(child: Child, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        child.check()
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------


def add_customers(fake: FakeTelegram, count: int, first: int = FIRST_USER_ID) -> list[int]:
    users = [first + i for i in range(count)]
    for i, user in enumerate(users):
        fake.add_user(user, "Customer", str(i + 1), username=f"customer{i + 1}")
    return users


def conversation(customer: int) -> list[str]:
    """The 10 messages of one customer: hello, the form's two answers, 7 follow-ups."""
    follow_ups = [
        f"Follow-up {k} from customer {customer}: one more detail about the double charge."
        for k in range(1, FOLLOW_UPS + 1)
    ]
    return ["hello", CATEGORY, DESCRIPTION, *follow_ups]


def fill_backlog(fake: FakeTelegram, users: list[int]) -> int:
    """Every customer's conversation, interleaved as a downtime backlog would be; returns
    the last update_id."""
    scripts = [conversation(i + 1) for i in range(len(users))]
    for step in range(UPDATES_PER_CUSTOMER):
        for user, script in zip(users, scripts, strict=True):
            fake.send_private(user, script[step])
    return last_update_id(fake)


def last_update_id(fake: FakeTelegram) -> int:
    return next(reversed(fake.enqueued_at))


def open_tickets(fake: FakeTelegram, users: list[int]) -> None:
    """Each customer completes the form: hello, the category, the description."""
    for i, user in enumerate(users):
        for text in conversation(i + 1)[:3]:
            fake.send_private(user, text)


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------


@dataclass
class CatchUp:
    who: str
    updates: int
    customers: int
    seconds: float | None = None
    committed: int = 0
    timed_out: bool = False
    startup_s: float | None = None
    sends_during: int = 0
    too_many_requests: int = 0
    rss_idle_kib: int | None = None
    db_bytes: int | None = None
    backlog_build_s: float = 0.0
    steps: list[float | None] = field(default_factory=list)  # updates/s of each round

    @property
    def rate(self) -> float | None:
        if not self.seconds:
            return None
        return self.committed / self.seconds

    def to_json(self) -> JSON:
        return {
            "updates": self.updates,
            "customers": self.customers,
            "seconds": self.seconds,
            "committed": self.committed,
            "updates_per_s": self.rate,
            "timed_out": self.timed_out,
            "startup_s": self.startup_s,
            "sends_during_catchup": self.sends_during,
            "too_many_requests": self.too_many_requests,
            "rss_idle_kib": self.rss_idle_kib,
            "db_bytes": self.db_bytes,
            "updates_per_s_by_step": dict(zip(STEP_NAMES, self.steps, strict=False)),
        }


async def catch_up(cfg: Config, who: str, size: int, workdir: Path) -> CatchUp:
    customers = size // UPDATES_PER_CUSTOMER
    result = CatchUp(who, size, customers)
    fake = FakeTelegram(limits=Limits())
    await fake.start()
    fake.add_group(GROUP_ID)
    name = f"{who}-{size}"
    child = (
        desk(cfg, fake, workdir, name) if who == "topicdesk" else baseline(cfg, fake, workdir, name)
    )
    try:
        built = time.monotonic()
        users = add_customers(fake, customers)
        last = fill_backlog(fake, users)
        first = last - size + 1
        result.backlog_build_s = time.monotonic() - built
        gc.collect()
        gc.freeze()  # the fake's world is large and stays: keep the collector off it
        watch = Watch(fake)
        print(f"  {who}: {size} updates from {customers} customers ...", flush=True)
        child.start()
        started = await first_poll(watch, child)
        result.startup_s = started - child.launched
        sends_before = len(fake.sent_log)

        def progress() -> str:
            done = max(0, watch.confirmed - first + 1)
            spent = time.monotonic() - started
            return f"{who}: {done}/{size} committed after {spent:.0f} s ({done / spent:.0f}/s)"

        finished = await wait_for(
            lambda: watch.confirmed >= last,
            watch,
            [child],
            cfg.catchup_timeout,
            f"{who} to commit {size} updates",
            progress,
        )
        end = watch.confirmed_at(last) if finished else time.monotonic()
        assert end is not None
        result.seconds = end - started
        result.committed = max(0, min(watch.confirmed, last) - first + 1)
        result.timed_out = not finished
        result.steps = step_rates(watch, first, customers, started)
        result.sends_during = sum(1 for at, _m, _c in fake.sent_log[sends_before:] if at <= end)
        result.too_many_requests = fake.too_many_requests
        await idle(child, cfg.idle)
        result.rss_idle_kib = child.rss_kib()
        result.db_bytes = db_bytes(workdir / f"{name}.db")
        rate = result.rate or 0.0
        print(
            f"    {result.committed} committed in {result.seconds:.2f} s: {rate:.1f} updates/s"
            + (" (timed out)" if result.timed_out else ""),
            flush=True,
        )
    finally:
        await child.stop(cfg.stop_grace)
        await fake.stop()
        gc.unfreeze()
    return result


def step_rates(watch: Watch, first: int, customers: int, started: float) -> list[float | None]:
    """Updates/s of each round of the backlog (every customer's hello, then every
    customer's category, ...), from the getUpdates offsets: where the time goes."""
    rates: list[float | None] = []
    begin: float | None = started
    for step in range(UPDATES_PER_CUSTOMER):
        end = watch.confirmed_at(first + (step + 1) * customers - 1)
        if begin is None or end is None or end <= begin:
            rates.append(None)
        else:
            rates.append(customers / (end - begin))
        begin = end
    return rates


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (q in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: Sequence[float]) -> JSON:
    """p50, p99 and max in ms of values in seconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1000

    return {
        "p50_ms": ms(percentile(values, 0.5)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values) if values else None),
    }


async def latency(cfg: Config, workdir: Path) -> JSON:
    fake = FakeTelegram()  # no limits
    await fake.start()
    fake.add_group(GROUP_ID)
    # The daemon's own budgets opened wide too, so no pacing wait is measured.
    child = desk(
        cfg,
        fake,
        workdir,
        "latency",
        global_per_second=UNLIMITED,
        private_per_second=UNLIMITED,
        private_burst=UNLIMITED,
        group_per_window=UNLIMITED,
    )
    watch = Watch(fake)
    tickets = cfg.latency_tickets
    try:
        child.start()
        await first_poll(watch, child)
        users = add_customers(fake, tickets)
        open_tickets(fake, users)
        opened = await wait_for(
            lambda: watch.topics_created >= tickets,
            watch,
            [child],
            SETUP_TIMEOUT,
            f"{tickets} topics",
        )
        if not opened:
            raise BenchError(f"only {watch.topics_created} of {tickets} topics were created")
        await wait_quiet(fake, watch, child, SETUP_TIMEOUT)
        total = round(cfg.latency_rate * cfg.latency_seconds)
        print(
            f"  {tickets} tickets open; {total} messages at {cfg.latency_rate:g}/s ...", flush=True
        )
        sent: list[tuple[int, int, int]] = []  # (user, message_id, update_id)
        # The fake is the measuring instrument: a full collection of this process's heap
        # (aiohttp, the fake's world) would stamp arrivals late, so none runs meanwhile.
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        began = loop.time()
        for i in range(total):
            due = began + i / cfg.latency_rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % 50 == 0:
                child.check()
            user = users[i % tickets]
            message = fake.send_private(user, f"Message {i + 1} under steady load.")
            sent.append((user, int(message["message_id"]), last_update_id(fake)))
        offered = loop.time() - began
        await wait_for(
            lambda: all((u, m) in watch.relays for u, m, _ in sent),
            watch,
            [child],
            30.0,
            "the last relays",
        )
        relay_lat: list[float] = []
        commit_lat: list[float] = []
        for user, message_id, update_id in sent:
            enqueued = fake.enqueued_at[update_id]
            relayed = watch.relays.get((user, message_id))
            if relayed is not None:
                relay_lat.append(relayed - enqueued)
            confirmed = watch.confirmed_at(update_id)
            if confirmed is not None:
                commit_lat.append(confirmed - enqueued)
        result = {
            "tickets": tickets,
            "messages": total,
            "offered_per_s": (total - 1) / offered if total > 1 and offered else None,
            "measured": len(relay_lat),
            "missing": total - len(relay_lat),
            **spread(relay_lat),
            "committed": {"measured": len(commit_lat), **spread(commit_lat)},
        }
        p50 = result["p50_ms"]
        print(
            f"    {len(relay_lat)}/{total} relays measured, p50 "
            + ("-" if p50 is None else f"{p50:.0f} ms"),
            flush=True,
        )
        return result
    finally:
        await child.stop(cfg.stop_grace)
        await fake.stop()


async def fair_share(cfg: Config, workdir: Path) -> JSON:
    scale = cfg.fair_scale
    window = 60.0 / scale
    fake = FakeTelegram(limits=Limits(time_scale=scale))
    await fake.start()
    fake.add_group(GROUP_ID)
    child = desk(cfg, fake, workdir, "fair", group_window=f"{window:g}")
    watch = Watch(fake)
    try:
        child.start()
        await first_poll(watch, child)
        busy, quiet = add_customers(fake, 2)
        open_tickets(fake, [busy, quiet])
        opened = await wait_for(
            lambda: watch.topics_created >= 2, watch, [child], SETUP_TIMEOUT, "2 topics"
        )
        if not opened:
            raise BenchError(f"only {watch.topics_created} of 2 topics were created")
        await wait_quiet(fake, watch, child, SETUP_TIMEOUT)
        print(
            f"  group budget 20 per {window:g} s (÷{scale:g}); the busy customer sends "
            f"{cfg.fair_messages} messages in {cfg.fair_seconds:g} s ...",
            flush=True,
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        burst_start = fake.clock()
        busy_ids: list[int] = []
        for i in range(cfg.fair_messages):
            due = began + i * cfg.fair_seconds / cfg.fair_messages
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % 50 == 0:
                child.check()
            message = fake.send_private(busy, f"Busy customer, message {i + 1}.")
            busy_ids.append(int(message["message_id"]))
        message = fake.send_private(quiet, "Quiet customer: is anyone there?")
        key = (quiet, int(message["message_id"]))
        asked = fake.enqueued_at[last_update_id(fake)]
        relayed = await wait_for(
            lambda: key in watch.relays,
            watch,
            [child],
            cfg.fair_timeout,
            "the quiet ticket's relay",
        )
        end = watch.relays[key] if relayed else fake.clock()
        group_sends = [at for at, _m, chat in fake.sent_log if chat == GROUP_ID]
        busy_relays = [watch.relays[(busy, m)] for m in busy_ids if (busy, m) in watch.relays]
        result = {
            "scale": scale,
            "group_budget": f"20 per {window:g} s",
            "busy_messages": cfg.fair_messages,
            "busy_seconds": cfg.fair_seconds,
            "relayed": relayed,
            "waited_s": end - asked,
            "waited_s_at_real_limits": (end - asked) * scale,
            "group_sends_since_quiet_message": sum(1 for at in group_sends if asked <= at < end),
            "group_sends_since_burst": sum(1 for at in group_sends if burst_start <= at < end),
            "busy_relays_before": sum(1 for at in busy_relays if at < end),
            "too_many_requests": fake.too_many_requests,
        }
        print(
            f"    the quiet message waited {result['waited_s']:.1f} s behind "
            f"{result['group_sends_since_quiet_message']} group sends"
            + ("" if relayed else " (and was still not relayed)"),
            flush=True,
        )
        return result
    finally:
        await child.stop(cfg.stop_grace)
        await fake.stop()


def timed_python(cfg: Config, code: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [str(cfg.python), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
        timeout=120,
    )
    return time.monotonic() - started, done.stdout.strip()


async def startup(cfg: Config, workdir: Path) -> tuple[JSON, JSON]:
    """Launch to first getUpdates, RSS at idle; the same for a bare `import aiogram`."""
    starts: list[float] = []
    rss: int | None = None
    size_before = size_after = None
    for run in range(cfg.startup_runs):
        fake = FakeTelegram()
        await fake.start()
        fake.add_group(GROUP_ID)
        name = f"startup-{run + 1}"
        if cfg.db is not None:
            target = workdir / f"{name}.db"
            copy_db(cfg.db, target)
            size_before = db_bytes(target)
        child = desk(cfg, fake, workdir, name)
        watch = Watch(fake)
        try:
            child.start()
            starts.append(await first_poll(watch, child) - child.launched)
            if run == cfg.startup_runs - 1:
                await idle(child, cfg.idle)
                rss = child.rss_kib()
            size_after = db_bytes(workdir / f"{name}.db")
        finally:
            await child.stop(cfg.stop_grace)
            await fake.stop()
    imports = [timed_python(cfg, "import aiogram")[0] for _ in range(cfg.startup_runs)]
    own_rss = (
        "import re, aiogram; "
        "print(re.search(r'^VmRSS:\\s+(\\d+)', open('/proc/self/status').read(), re.M)[1])"
    )
    _, aiogram_rss = timed_python(cfg, own_rss)
    start_json = {
        "database": str(cfg.db) if cfg.db else "fresh",
        "db_bytes_before": size_before,
        "db_bytes": size_after,
        "first_getupdates_s": statistics.median(starts),
        "first_getupdates_runs_s": starts,
        "import_aiogram_s": statistics.median(imports),
        "import_aiogram_runs_s": imports,
    }
    memory_json = {
        "idle_s": cfg.idle,
        "daemon_rss_kib": rss,
        "python_aiogram_rss_kib": int(aiogram_rss),
    }
    print(
        f"  start-up {start_json['first_getupdates_s']:.2f} s (import aiogram "
        f"{start_json['import_aiogram_s']:.2f} s); RSS {rss} KiB (aiogram {aiogram_rss} KiB)",
        flush=True,
    )
    return start_json, memory_json


# ---------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
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


def num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


@dataclass
class Report:
    cfg: Config
    meta: JSON
    catchup: dict[int, CatchUp] = field(default_factory=dict)
    baseline: dict[int, CatchUp] = field(default_factory=dict)
    latency: JSON | None = None
    startup: JSON | None = None
    memory: JSON | None = None
    fair: JSON | None = None
    error: str | None = None

    def ratio(self, size: int) -> float | None:
        ours, base = self.catchup.get(size), self.baseline.get(size)
        if ours is None or base is None or not ours.rate or not base.rate:
            return None
        return ours.rate / base.rate

    def to_json(self) -> JSON:
        catchup = {}
        for size, run in self.catchup.items():
            catchup[str(size)] = {**run.to_json(), "vs_baseline": self.ratio(size)}
        return {
            "meta": self.meta,
            "catchup": catchup,
            "baseline": {str(size): run.to_json() for size, run in self.baseline.items()},
            "latency": self.latency,
            "startup": self.startup,
            "memory": self.memory,
            "fair": self.fair,
            "error": self.error,
        }

    def text(self) -> str:
        out: list[str] = []
        sizes = sorted(set(self.catchup) | set(self.baseline))
        if sizes:
            rows = []
            for size in sizes:
                ours, base = self.catchup.get(size), self.baseline.get(size)
                rows.append(
                    [
                        str(size),
                        str(size // UPDATES_PER_CUSTOMER),
                        num(ours.seconds, ".2f") if ours else "-",
                        (num(ours.rate) + ("*" if ours.timed_out else "")) if ours else "-",
                        num(base.seconds, ".2f") if base else "-",
                        (num(base.rate) + ("*" if base.timed_out else "")) if base else "-",
                        num(self.ratio(size), ".3f"),
                        str(ours.sends_during) if ours else "-",
                        mib(ours.rss_idle_kib) if ours else "-",
                        num(ours.db_bytes / 2**20 if ours and ours.db_bytes else None),
                    ]
                )
            out.append("== catch-up from a backlog (fake with Telegram's limits) ==")
            out.append(
                table(
                    [
                        "updates",
                        "customers",
                        "topicdesk s",
                        "upd/s",
                        "baseline s",
                        "upd/s",
                        "td/baseline",
                        "sends meanwhile",
                        "idle RSS MiB",
                        "db MiB",
                    ],
                    rows,
                )
            )
            steps = [
                [who, str(size), *(num(rate, ".0f") for rate in run.steps)]
                for who, runs in (("topicdesk", self.catchup), ("baseline", self.baseline))
                for size, run in sorted(runs.items())
                if run.steps
            ]
            if steps:
                out.append("")
                out.append("updates/s by step of the backlog (each step: one update per customer)")
                short = ["hello", "category", "descr.", *(f"fu{k}" for k in range(1, 8))]
                out.append(table(["who", "updates", *short], steps, left=2))
            if any(r.timed_out for r in [*self.catchup.values(), *self.baseline.values()]):
                out.append("* timed out (--catchup-timeout): the rate of what was committed")
            out.append("")
        if self.latency is not None:
            lat = self.latency
            committed = lat["committed"]
            out.append(
                f"== latency under steady load ({lat['tickets']} tickets, "
                f"{num(lat['offered_per_s'])} msg/s for "
                f"{self.cfg.latency_seconds:g} s, no limits) =="
            )
            out.append(
                table(
                    ["from enqueued to", "measured", "p50 ms", "p99 ms", "max ms"],
                    [
                        [
                            "relay (copyMessage)",
                            f"{lat['measured']}/{lat['messages']}",
                            num(lat["p50_ms"]),
                            num(lat["p99_ms"]),
                            num(lat["max_ms"]),
                        ],
                        [
                            "confirmed (getUpdates offset)",
                            f"{committed['measured']}/{lat['messages']}",
                            num(committed["p50_ms"]),
                            num(committed["p99_ms"]),
                            num(committed["max_ms"]),
                        ],
                    ],
                )
            )
            out.append("")
        if self.startup is not None and self.memory is not None:
            st, mem = self.startup, self.memory
            database = st["database"]
            if st["db_bytes"] is not None:
                database += f", {st['db_bytes'] / 2**20:.1f} MiB"
                if st["db_bytes_before"] is not None:
                    database += f" ({st['db_bytes_before'] / 2**20:.1f} MiB before start)"
            out.append(f"== start-up and memory (database: {database}) ==")
            out.append(
                table(
                    ["measure", "topicdesk", "python + aiogram"],
                    [
                        [
                            "launch to first getUpdates / import, s (median)",
                            num(st["first_getupdates_s"], ".2f"),
                            num(st["import_aiogram_s"], ".2f"),
                        ],
                        [
                            f"RSS at idle ({mem['idle_s']:g} s), MiB",
                            mib(mem["daemon_rss_kib"]),
                            mib(mem["python_aiogram_rss_kib"]),
                        ],
                    ],
                )
            )
            out.append("")
        if self.fair is not None:
            fair = self.fair
            out.append(
                f"== fair share of the group budget ({fair['group_budget']}, ÷{fair['scale']:g}) =="
            )
            waited = num(fair["waited_s"]) + ("" if fair["relayed"] else "+ (not relayed)")
            out.append(
                table(
                    ["measure", "value"],
                    [
                        [
                            f"busy ticket: messages in {fair['busy_seconds']:g} s",
                            str(fair["busy_messages"]),
                        ],
                        ["quiet message waited, s", waited],
                        [
                            "  the same at real limits (× scale), s",
                            num(fair["waited_s_at_real_limits"]),
                        ],
                        [
                            "group sends between it and its relay",
                            str(fair["group_sends_since_quiet_message"]),
                        ],
                        ["busy relays that went before it", str(fair["busy_relays_before"])],
                        ["429s", str(fair["too_many_requests"])],
                    ],
                )
            )
            out.append("")
        if self.error:
            out.append(f"stopped early: {self.error}")
        return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def source_version(package: Path) -> str | None:
    """The commit of the checkout a package is imported from, "+dirty" with changes; None
    for an installed copy. Read-only: git takes no optional locks."""
    root = package.parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{commit}{'+dirty' if dirty else ''}" if commit else None


def meta(cfg: Config) -> JSON:
    try:
        where = subprocess.run(
            [str(cfg.python), "-c", "import bot; print(bot.__file__)"],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=tempfile.gettempdir(),
            timeout=60,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        where = ""
    return {
        "topicdesk": str(cfg.topicdesk),
        "python": str(cfg.python),
        "bot_package": where,
        "source": source_version(Path(where)) if where else None,
        "sizes": list(cfg.sizes),
        "skipped": sorted(cfg.skip),
        "db": str(cfg.db) if cfg.db else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_start": os.getloadavg()[0],
    }


async def run(cfg: Config, report: Report, workdir: Path) -> None:
    if cfg.runs("startup"):
        print("start-up and memory", flush=True)
        report.startup, report.memory = await startup(cfg, workdir)
    for size in cfg.sizes:
        if cfg.runs("catchup"):
            print(f"catch-up, {size} updates", flush=True)
            report.catchup[size] = await catch_up(cfg, "topicdesk", size, workdir)
        if cfg.runs("baseline"):
            print(f"baseline, {size} updates", flush=True)
            report.baseline[size] = await catch_up(cfg, "baseline", size, workdir)
    if cfg.runs("latency"):
        print("latency under steady load", flush=True)
        report.latency = await latency(cfg, workdir)
    if cfg.runs("fair"):
        print("fair share", flush=True)
        report.fair = await fair_share(cfg, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    report = Report(cfg, meta(cfg))
    print(
        f"topicdesk: {cfg.topicdesk}\n"
        f"python:    {cfg.python}\n"
        f"bot:       {report.meta['bot_package'] or '?'}"
        f"{' at ' + report.meta['source'] if report.meta['source'] else ''}\n",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="catchup-bench-"))
    failed = False
    try:
        asyncio.run(run(cfg, report, workdir))
    except BenchError as exc:
        failed = True
        report.error = str(exc).splitlines()[0]
        print(f"\nERROR: {exc}\n", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        failed = True
        report.error = "interrupted"
    report.meta["loadavg_end"] = os.getloadavg()[0]
    print()
    print(report.text())
    print(
        f"load average (1 min) at start {report.meta['loadavg_start']:.2f}, at end "
        f"{report.meta['loadavg_end']:.2f}, on {os.cpu_count()} cpus; the daemon and this "
        "process need one each, so anything else running skews the figures"
    )
    cfg.json_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    print(f"JSON: {cfg.json_path}")
    if failed or cfg.keep_tmp:
        print(f"logs and databases kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
