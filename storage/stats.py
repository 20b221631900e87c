"""The desk's figures for /stats: what came in over a period and how it was served.

Every figure is about the tickets *received* in the period (`created_at`, Telegram's date
on the customer's first message, inside [start, end)), whatever has happened to them
since: their status now, their first response and resolution times, their ratings, the
escalation breaches recorded on them (migration 0007's stage columns) and their
assignee now. One indexed range read (`tickets_by_created`) fetches them; the figures
are computed here, in Python, exactly.

- Times are clock time (not business time), in seconds: first response =
  `first_response_at - created_at` (the first agent reply the customer received);
  resolution = `resolved_at - created_at`, for tickets resolved or closed (a reopened
  ticket is not resolved until it is again).
- Percentiles are computed exactly from all the period's values by linear interpolation
  between the closest ranks (numpy's default, R's type 7, Excel's PERCENTILE.INC): the
  median of 1, 2, 3, 10 is 2.5; the 90th percentile of 1..10 is 9.1.
- Days are the desk's calendar days in its time zone: "7d" is today and the six days
  before, from local midnight; `period()` makes the UTC bounds.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from storage.db import Conn, to_iso
from storage.tickets import Status

# /stats [today|7d|30d]: how many of the desk's calendar days each covers, today included.
PERIODS = {"today": 1, "7d": 7, "30d": 30}


def percentile(values: Iterable[float], share: float) -> float | None:
    """The `share` (0.5: median, 0.9: 90th) percentile of `values`, by linear interpolation
    between the closest ranks; None for no values."""
    return _percentile(sorted(values), share)


def _percentile(ordered: Sequence[float], share: float) -> float | None:
    if not ordered:
        return None
    rank = (len(ordered) - 1) * share
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) whose wall clock in `zone` reads `day` 00:00 or later (a
    midnight skipped by a clock change is the instant of the jump), as
    bot.services.hours.BusinessHours.wall_clock_to_utc."""
    wall = datetime.combine(day, time())
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(instant.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of the desk's calendar: UTC bounds [start, end) and its local days."""

    name: str  # "today", "7d", "30d"
    start: datetime  # UTC: the first day's local midnight
    end: datetime  # UTC, exclusive: now
    time_zone: str  # the desk's, e.g. "Europe/Berlin"
    days: tuple[date, ...]  # the local calendar days, oldest first
    day_starts: tuple[datetime, ...] = field(repr=False)  # UTC, one per day


def period(name: str, now: datetime, time_zone: str) -> Period:
    """The period `name` ("today", "7d", "30d") up to `now` (aware), in the desk's days."""
    if name not in PERIODS:
        raise ValueError(f"{name!r} is not a period: use {', '.join(PERIODS)}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC), not a naive one")
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    days = tuple(today - timedelta(days=back) for back in range(PERIODS[name] - 1, -1, -1))
    starts = tuple(_day_start(day, zone) for day in days)
    return Period(name, starts[0], now.astimezone(UTC), time_zone, days, starts)


@dataclass(frozen=True, slots=True)
class Timing:
    """Durations in seconds: how many, their median and 90th percentile."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Timing:
        ordered = sorted(values)
        return cls(len(ordered), _percentile(ordered, 0.5), _percentile(ordered, 0.9))


@dataclass(frozen=True, slots=True)
class Day:
    """One local day: tickets received, and the first responses of those answered."""

    day: date
    received: int
    first_response: Timing


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """An assignee's share of the period's tickets (agent_id None: nobody's)."""

    agent_id: int | None
    full_name: str | None  # as the desk last saw them; None if it never did
    username: str | None
    assigned: int  # received in the period and assigned to them now
    resolved: int  # of those, resolved or closed
    first_response: Timing  # of those answered
    csat_average: float | None
    csat_count: int

    @property
    def name(self) -> str:
        """How to show the agent: the name, @username, the id, or "unassigned"."""
        if self.agent_id is None:
            return "unassigned"
        return self.full_name or (f"@{self.username}" if self.username else str(self.agent_id))


@dataclass(frozen=True, slots=True)
class Report:
    """/stats for one period; see the module's docstring for what each figure counts."""

    period: Period
    received: int
    by_status: dict[Status, int]  # every status, zeros included
    first_response: Timing  # the answered tickets'
    resolution: Timing  # the resolved (or closed) tickets'
    csat_average: float | None  # 1 to 5
    csat_count: int
    first_response_breaches: int  # tickets whose first-response clock breached
    resolution_breaches: int
    days: tuple[Day, ...]
    agents: tuple[AgentFigures, ...]  # the most assigned first; unassigned last

    @property
    def sla_breaches(self) -> int:
        return self.first_response_breaches + self.resolution_breaches


@dataclass
class _Tally:
    assigned: int = 0
    resolved: int = 0
    first_responses: list[float] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)


# Rows are read in slices, and the event loop gets a turn between two: 30 days of a busy
# desk is some 30,000 tickets, about a quarter of a second of Python to go through.
_SLICE = 1000


async def report(db: Conn, span: Period) -> Report:
    """The figures of the tickets received in `span` (read it with `Database.reader()`)."""
    rows = await db.fetchall(
        """
        SELECT t.created_at, t.status, t.assignee_id, t.first_response_at, t.resolved_at,
               t.sla_response_stage, t.sla_resolution_stage, r.score
        FROM tickets t LEFT JOIN ratings r ON r.ticket_id = t.id
        WHERE t.created_at >= ? AND t.created_at < ?
        """,
        (to_iso(span.start), to_iso(span.end)),
    )
    parse = datetime.fromisoformat
    statuses: Counter[str] = Counter()
    first_responses: list[float] = []
    resolutions: list[float] = []
    scores: list[int] = []
    response_breaches = resolution_breaches = 0
    per_day: list[list[float]] = [[] for _ in span.days]
    received_per_day = [0] * len(span.days)
    tallies: dict[int | None, _Tally] = {}
    for number, row in enumerate(rows):
        if number and not number % _SLICE:
            await asyncio.sleep(0)
        created_at, status, assignee, responded_at, resolved_at, response, resolution, score = row
        created = parse(created_at)
        statuses[status] += 1
        day = max(0, bisect_right(span.day_starts, created) - 1)
        received_per_day[day] += 1
        tally = tallies.get(assignee)
        if tally is None:
            tally = tallies[assignee] = _Tally()
        tally.assigned += 1
        if responded_at is not None:
            waited = max(0.0, (parse(responded_at) - created).total_seconds())
            first_responses.append(waited)
            per_day[day].append(waited)
            tally.first_responses.append(waited)
        if resolved_at is not None:
            resolutions.append(max(0.0, (parse(resolved_at) - created).total_seconds()))
            tally.resolved += 1
        if score is not None:
            scores.append(score)
            tally.scores.append(score)
        response_breaches += response == "breach"
        resolution_breaches += resolution == "breach"
    return Report(
        period=span,
        received=len(rows),
        by_status={status: statuses[status.value] for status in Status},
        first_response=Timing.of(first_responses),
        resolution=Timing.of(resolutions),
        csat_average=_mean(scores),
        csat_count=len(scores),
        first_response_breaches=response_breaches,
        resolution_breaches=resolution_breaches,
        days=tuple(
            Day(day, received, Timing.of(values))
            for day, received, values in zip(span.days, received_per_day, per_day, strict=True)
        ),
        agents=await _agents(db, tallies),
    )


def _mean(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


async def _agents(db: Conn, tallies: dict[int | None, _Tally]) -> tuple[AgentFigures, ...]:
    """The per-assignee table, named from the agents table (a few dozen rows)."""
    names = {
        row["user_id"]: (row["full_name"], row["username"])
        for row in await db.fetchall("SELECT user_id, full_name, username FROM agents")
    }
    figures = [
        AgentFigures(
            agent_id=agent_id,
            full_name=names.get(agent_id, (None, None))[0] if agent_id is not None else None,
            username=names.get(agent_id, (None, None))[1] if agent_id is not None else None,
            assigned=tally.assigned,
            resolved=tally.resolved,
            first_response=Timing.of(tally.first_responses),
            csat_average=_mean(tally.scores),
            csat_count=len(tally.scores),
        )
        for agent_id, tally in tallies.items()
    ]
    figures.sort(key=lambda f: (f.agent_id is None, -f.assigned, f.name.lower()))
    return tuple(figures)
