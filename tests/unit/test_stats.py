"""/stats: a week of a small Berlin desk, every figure worked out by hand.

The week is Tuesday 25 to Monday 31 March 2025 in Berlin; "now" is Monday 31 March,
12:00 CEST (10:00 UTC). Berlin springs forward on Sunday 30 March, so that day starts at
00:00 CET (Saturday 23:00 UTC) and Monday at 00:00 CEST (Sunday 22:00 UTC).

The tickets, times in UTC (fr: first response after receipt, res: resolved after receipt):

    ticket  received             local day  status    assignee  fr      res  rating  SLA
    before  24 Mar 22:30         Mon 24     closed    Bob       5 min   1 h  1       fr breach
    A       24 Mar 23:00 (start) Tue 25     closed    Ann       10 min  2 h  5
    B       25 Mar 09:00 (high)  Tue 25     resolved  Bob       30 min  5 h  3       both breach
    C       27 Mar 10:00         Thu 27     pending   Ann       20 min  -    -
    D       29 Mar 23:30         Sun 30     closed    Bob       60 min  8 h  4
    E       30 Mar 21:59         Sun 30     open      -         -       -    -
    F       30 Mar 22:00         Mon 31     pending   Ann       40 min  -    -       fr warning
    G       31 Mar 09:00         Mon 31     open      -         -       -    -
    after   31 Mar 10:00 (now)   -          open      -         -       -    -

"before" and "after" are outside [start, now): the period holds A to G.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import agents, ratings, tickets
from storage import stats as desk_stats
from storage.db import Database, to_iso
from storage.migrations import migrate
from storage.stats import Period, Report, Timing, percentile, period
from storage.tickets import Answer, Priority, Status

GROUP = -1001
ANN, BOB = 501, 502
NOW = datetime(2025, 3, 31, 10, 0, tzinfo=UTC)
MIN = 60.0
HOUR = 3600.0


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    yield database
    await database.close()


class Clock:
    """What storage.tickets and storage.ratings take for "now"."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = NOW
        for module in (tickets, ratings):
            monkeypatch.setattr(module, "utcnow", lambda: to_iso(self.now))


async def a_ticket(
    conn: Any,
    clock: Clock,
    customer: int,
    received: datetime,
    *,
    assignee: int | None = None,
    first_response: timedelta | None = None,
    resolved: timedelta | None = None,
    status: Status = Status.OPEN,
    rating: int | None = None,
    sla: tuple[str | None, str | None] = (None, None),
    priority: Priority = Priority.NORMAL,
) -> int:
    """A ticket as the desk writes one: received, maybe assigned, answered, resolved and
    rated, each at its time; the SLA stages as the scheduler will store them."""
    clock.now = received
    await tickets.save_customer(conn, customer, f"Customer {customer}", None, "en")
    ticket = await tickets.open_ticket(
        conn, customer, "Billing", [Answer("category", "Category", "Billing")], GROUP,
        to_iso(received),
    )  # fmt: skip
    if priority is not Priority.NORMAL:
        await tickets.set_priority(conn, ticket.id, priority, ANN)
    if assignee is not None:
        await tickets.set_assignee(conn, ticket.id, assignee, assignee)
    if first_response is not None:
        await tickets.record_first_response(conn, ticket.id, to_iso(received + first_response))
    if resolved is not None:
        clock.now = received + resolved
        await tickets.set_status(conn, ticket.id, Status.RESOLVED, assignee)
        clock.now += timedelta(hours=1)
    if status is not Status.OPEN:
        await tickets.set_status(conn, ticket.id, status, assignee)
    if rating is not None:
        await ratings.rate(conn, ticket.id, customer, rating)
    await conn.execute(
        "UPDATE tickets SET sla_response_stage = ?, sla_resolution_stage = ? WHERE id = ?",
        (*sla, ticket.id),
    )
    return ticket.id


@pytest.fixture
async def week(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    clock = Clock(monkeypatch)
    minutes: Callable[[float], timedelta] = lambda n: timedelta(minutes=n)  # noqa: E731
    hours: Callable[[float], timedelta] = lambda n: timedelta(hours=n)  # noqa: E731
    async with db.transaction() as conn:
        await agents.remember(conn, ANN, "Ann Agent", "ann")
        await agents.remember(conn, BOB, "Bob Agent", None)
        # before
        await a_ticket(conn, clock, 1, utc(2025, 3, 24, 22, 30), assignee=BOB,
                       first_response=minutes(5), resolved=hours(1), status=Status.CLOSED,
                       rating=1, sla=("breach", None))  # fmt: skip
        # A, B, C, D, E, F, G
        await a_ticket(conn, clock, 2, utc(2025, 3, 24, 23, 0), assignee=ANN,
                       first_response=minutes(10), resolved=hours(2), status=Status.CLOSED,
                       rating=5)  # fmt: skip
        await a_ticket(conn, clock, 3, utc(2025, 3, 25, 9, 0), assignee=BOB,
                       first_response=minutes(30), resolved=hours(5), rating=3,
                       sla=("breach", "breach"), priority=Priority.HIGH)  # fmt: skip
        await a_ticket(conn, clock, 4, utc(2025, 3, 27, 10, 0), assignee=ANN,
                       first_response=minutes(20), status=Status.PENDING)  # fmt: skip
        await a_ticket(conn, clock, 5, utc(2025, 3, 29, 23, 30), assignee=BOB,
                       first_response=minutes(60), resolved=hours(8), status=Status.CLOSED,
                       rating=4)  # fmt: skip
        await a_ticket(conn, clock, 6, utc(2025, 3, 30, 21, 59))
        await a_ticket(conn, clock, 7, utc(2025, 3, 30, 22, 0), assignee=ANN,
                       first_response=minutes(40), status=Status.PENDING,
                       sla=("warning", None))  # fmt: skip
        await a_ticket(conn, clock, 8, utc(2025, 3, 31, 9, 0))
        # after
        await a_ticket(conn, clock, 9, NOW)
    return db


async def report_of(db: Database, span: Period) -> Report:
    async with db.reader() as conn:
        return await desk_stats.report(conn, span)


# --- the week ------------------------------------------------------------------------------


async def test_the_week_counts_the_tickets_received_in_it_by_status_now(week: Database) -> None:
    report = await report_of(week, period("7d", NOW, "Europe/Berlin"))

    # A to G; "before" came in half an hour before Tuesday began, "after" at `now`.
    assert report.received == 7
    assert report.by_status == {
        Status.OPEN: 2,  # E, G
        Status.PENDING: 2,  # C, F
        Status.RESOLVED: 1,  # B
        Status.CLOSED: 2,  # A, D
    }


async def test_the_week_times_first_responses_and_resolutions(week: Database) -> None:
    report = await report_of(week, period("7d", NOW, "Europe/Berlin"))

    # Answered: A 10, C 20, B 30, F 40, D 60 min. Median: the third, 30 min. 90th
    # percentile: rank (5 - 1) × 0.9 = 3.6, between 40 and 60 min: 40 + 0.6 × 20 = 52 min.
    assert report.first_response == Timing(5, 30 * MIN, 52 * MIN)
    # Resolved: A 2 h, B 5 h, D 8 h. Median 5 h; rank 1.8: 5 + 0.8 × 3 = 7.4 h.
    assert report.resolution.count == 3
    assert report.resolution.p50 == 5 * HOUR
    assert report.resolution.p90 == pytest.approx(7.4 * HOUR)


async def test_the_week_has_its_ratings_and_breaches(week: Database) -> None:
    report = await report_of(week, period("7d", NOW, "Europe/Berlin"))

    # A 5, B 3, D 4: (5 + 3 + 4) / 3 = 4.0; "before"'s 1 is not this week's.
    assert (report.csat_average, report.csat_count) == (4.0, 3)
    # B breached both clocks; F's warning is no breach; "before"'s breach is not this week's.
    assert (report.first_response_breaches, report.resolution_breaches) == (1, 1)
    assert report.sla_breaches == 2


async def test_the_week_is_seven_local_days_across_the_clock_change(week: Database) -> None:
    report = await report_of(week, period("7d", NOW, "Europe/Berlin"))

    assert report.period.start == utc(2025, 3, 24, 23, 0)  # Tuesday 00:00 CET
    assert report.period.end == NOW
    assert [(d.day, d.received, d.first_response) for d in report.days] == [
        # A and B: 10 and 30 min; median 20, 90th: 10 + 0.9 × 20 = 28 min.
        (date(2025, 3, 25), 2, Timing(2, 20 * MIN, 28 * MIN)),
        (date(2025, 3, 26), 0, Timing(0, None, None)),
        (date(2025, 3, 27), 1, Timing(1, 20 * MIN, 20 * MIN)),  # C
        (date(2025, 3, 28), 0, Timing(0, None, None)),
        (date(2025, 3, 29), 0, Timing(0, None, None)),
        # D at 00:30 CET and E at 23:59 CEST are both Sunday's; only D is answered.
        (date(2025, 3, 30), 2, Timing(1, 60 * MIN, 60 * MIN)),
        # F at 00:00 CEST (a fixed +01:00 would have put it on Sunday) and G.
        (date(2025, 3, 31), 2, Timing(1, 40 * MIN, 40 * MIN)),
    ]


async def test_the_week_has_a_line_per_assignee(week: Database) -> None:
    report = await report_of(week, period("7d", NOW, "Europe/Berlin"))

    rows = [
        (a.name, a.assigned, a.resolved, a.first_response.p50, a.csat_average, a.csat_count)
        for a in report.agents
    ]
    assert rows == [
        # A, C, F: resolved A; answered in 10, 20, 40 min (median 20); rated 5.
        ("Ann Agent", 3, 1, 20 * MIN, 5.0, 1),
        # B, D: both resolved; 30 and 60 min (median 45); rated 3 and 4.
        ("Bob Agent", 2, 2, 45 * MIN, 3.5, 2),
        # E, G: nobody's, unanswered.
        ("unassigned", 2, 0, None, None, 0),
    ]


async def test_today_is_the_desks_day_so_far(week: Database) -> None:
    report = await report_of(week, period("today", NOW, "Europe/Berlin"))

    # Monday 31 March from 00:00 CEST: F and G.
    assert report.period.start == utc(2025, 3, 30, 22, 0)
    assert report.received == 2
    assert report.first_response == Timing(1, 40 * MIN, 40 * MIN)
    assert report.resolution == Timing(0, None, None)
    assert [a.name for a in report.agents] == ["Ann Agent", "unassigned"]


async def test_thirty_days_take_in_the_ticket_before_the_week(week: Database) -> None:
    report = await report_of(week, period("30d", NOW, "Europe/Berlin"))

    assert len(report.days) == 30
    assert report.days[0].day == date(2025, 3, 2)
    # All nine but "after": "before" adds Bob's closed ticket, rated 1, 5 min, 1 h.
    assert report.received == 8
    assert report.by_status[Status.CLOSED] == 3
    assert (report.csat_average, report.csat_count) == (13 / 4, 4)
    assert report.first_response_breaches == 2


async def test_a_quiet_period_has_zeros_and_no_times(db: Database) -> None:
    report = await report_of(db, period("7d", NOW, "UTC"))

    assert report.received == 0
    assert set(report.by_status.values()) == {0}
    assert report.first_response == Timing(0, None, None)
    assert report.csat_average is None
    assert report.agents == ()
    assert [d.received for d in report.days] == [0] * 7


# --- periods and percentiles -----------------------------------------------------------------


def test_periods_start_at_the_desks_local_midnight() -> None:
    assert period("today", utc(2025, 3, 30, 12), "Europe/Berlin").start == utc(2025, 3, 29, 23)
    assert period("today", utc(2025, 3, 30, 23), "Europe/Berlin").start == utc(2025, 3, 30, 22)
    assert period("today", utc(2025, 3, 30, 23), "UTC").start == utc(2025, 3, 30, 0)
    # Havana skips midnight on 9 March 2025: the day starts at the jump, 01:00 CDT.
    assert period("today", utc(2025, 3, 9, 12), "America/Havana").start == utc(2025, 3, 9, 5)
    span = period("7d", utc(2025, 3, 31, 10), "Europe/Berlin")
    assert span.days == tuple(date(2025, 3, day) for day in range(25, 32))
    assert span.day_starts[-2:] == (utc(2025, 3, 29, 23), utc(2025, 3, 30, 22))


def test_a_period_must_be_known_and_now_aware() -> None:
    with pytest.raises(ValueError, match="'90d' is not a period: use today, 7d, 30d"):
        period("90d", NOW, "UTC")
    with pytest.raises(ValueError, match="aware"):
        period("7d", datetime(2025, 3, 31), "UTC")  # noqa: DTZ001 - the point of the test


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert percentile([3, 1, 10, 2], 0.5) == 2.5
    assert percentile(range(1, 11), 0.9) == pytest.approx(9.1)
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3], 1.0) == 3
    assert percentile([1, 2, 3], 0.0) == 1
