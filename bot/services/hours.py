"""Business hours: when the desk is open, and time counted only while it is.

Pure computations (the standard library only, no storage, no Telegram). Every instant
goes in and comes out as an aware datetime in UTC; the desk's own time zone is used only
inside, to lay its week over the calendar, and to show a time to people.

A day's opening hours are wall-clock ranges such as 09:00-12:00 and 13:00-18:00. On the
days clocks change, a range covers the instants whose wall clock reads inside it:

- spring forward (Europe/Berlin, last Sunday of March, 02:00 → 03:00): a range ending at
  02:30 ends at the jump, one starting at 02:30 starts at the jump (03:00 CEST), and the
  day's 00:00-24:00 lasts 23 hours;
- fall back (last Sunday of October, 03:00 → 02:00): 02:00-03:00 is open for both of
  its hours, and 00:00-24:00 lasts 25 hours.

Business seconds are real seconds: an hour of the desk's day is 3600 of them whatever
the clocks do. `BusinessHours.always_open()` (the default config) makes every function
plain clock arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_NAMES: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHORT_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SHORT_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MINUTES_A_DAY = 24 * 60
ALL_DAY = "00:00-24:00"
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")

# A range of one day's wall clock, in minutes after midnight: (start, end), end <= 1440.
Range = tuple[int, int]


def zone(name: str) -> ZoneInfo:
    """The time zone called `name` (e.g. "Europe/Berlin"); ValueError in one sentence."""
    unknown = ValueError(
        f"{name!r} is not a known time zone: use a name from the tz database, "
        "such as Europe/Berlin, America/New_York or UTC"
    )
    cleaned = name.strip()
    if not cleaned or cleaned.startswith(("/", ".")) or ".." in cleaned:
        raise unknown
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
        raise unknown from None


def day_index(name: str) -> int:
    """0 for "mon" (or "Monday") to 6 for "sun"; ValueError otherwise."""
    key = name.strip().lower()
    for index, day in enumerate(DAY_NAMES):
        if key in (day, _full_day(day)):
            return index
    raise ValueError(f"{name!r} is not a day of the week: use mon, tue, wed, thu, fri, sat, sun")


def _full_day(short: str) -> str:
    return {
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
        "sun": "sunday",
    }[short]


def parse_ranges(text: str) -> tuple[Range, ...]:
    """Opening hours of one day, e.g. "09:00-12:00, 13:00-18:00"; "" or "closed": none.

    Ranges are sorted; touching ones are joined. ValueError (one sentence) for a range
    that is malformed, empty, crosses midnight or overlaps another.
    """
    cleaned = text.strip().lower()
    if cleaned in ("", "closed"):
        return ()
    found: list[Range] = []
    for part in cleaned.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise ValueError(
                f"{part.strip()!r} is not a time range: write it like 09:00-18:00, "
                "several separated by commas, or closed"
            )
        start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
        if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
            raise ValueError(f"{part.strip()!r} is not a time range: hours go from 00:00 to 24:00")
        start, end = start_h * 60 + start_m, end_h * 60 + end_m
        if end < start:
            raise ValueError(
                f"{part.strip()!r} crosses midnight: end the day at 24:00 and go on "
                "from 00:00 on the next day"
            )
        if end == start:
            raise ValueError(f"{part.strip()!r} is an empty range")
        found.append((start, end))
    found.sort()
    joined: list[Range] = []
    for start, end in found:
        if joined and start < joined[-1][1]:
            raise ValueError(f"{_show_range(joined[-1])} and {_show_range((start, end))} overlap")
        if joined and start == joined[-1][1]:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return tuple(joined)


def _show_range(value: Range) -> str:
    return f"{value[0] // 60:02d}:{value[0] % 60:02d}-{value[1] // 60:02d}:{value[1] % 60:02d}"


def _utc(moment: datetime, what: str = "a time") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), not a naive one")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class BusinessHours:
    """The desk's week (Monday first, each day its ranges) in its time zone, less holidays.

    Build it with `BusinessHours.always_open()` or `BusinessHours.weekly(...)`; the
    `[hours]` config section gives one with `HoursSettings.business_hours()`.
    """

    time_zone: ZoneInfo
    week: tuple[tuple[Range, ...], ...]  # seven days, Monday first
    holidays: frozenset[date] = frozenset()
    _always: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a week has seven days")
        if not any(self.week):
            raise ValueError("the desk is never open: give at least one day some hours")
        always = not self.holidays and all(day == ((0, MINUTES_A_DAY),) for day in self.week)
        object.__setattr__(self, "_always", always)

    @classmethod
    def always_open(cls, time_zone: str = "UTC") -> BusinessHours:
        """Open every hour of every day (times are still shown in `time_zone`)."""
        all_day: tuple[Range, ...] = ((0, MINUTES_A_DAY),)
        return cls(zone(time_zone), (all_day,) * 7)

    @classmethod
    def weekly(
        cls,
        time_zone: str,
        weekdays: Iterable[str],
        hours: str,
        days: Mapping[str, str] | None = None,
        holidays: Iterable[date] = (),
    ) -> BusinessHours:
        """`hours` (e.g. "09:00-18:00") on each of `weekdays` ("mon"...); `days` gives a
        day other hours (or "closed"), whether or not it is among `weekdays`."""
        ranges = parse_ranges(hours)
        open_days = {day_index(day) for day in weekdays}
        week = [ranges if index in open_days else () for index in range(7)]
        for day, text in (days or {}).items():
            week[day_index(day)] = parse_ranges(text)
        return cls(zone(time_zone), tuple(week), frozenset(holidays))

    @property
    def is_always_open(self) -> bool:
        """Open around the clock, every day: no out-of-office, business time is clock time."""
        return self._always

    # --- the calendar --------------------------------------------------------------

    def local(self, at: datetime) -> datetime:
        """`at` on the desk's wall clock."""
        return _utc(at).astimezone(self.time_zone)

    def wall_clock_to_utc(self, day: date, minute: int) -> datetime:
        """The first instant whose wall clock reads `minute` after midnight of `day`, or
        later (1440: the next midnight). A time skipped by the clocks springing forward is
        the instant of the jump; a time the clocks show twice is its first showing."""
        if minute >= MINUTES_A_DAY:
            day, minute = day + timedelta(days=1), minute - MINUTES_A_DAY
        wall = datetime.combine(day, time(minute // 60, minute % 60))
        first = wall.replace(tzinfo=self.time_zone)  # fold=0: the earlier reading
        instant = first.astimezone(UTC)
        if instant.astimezone(self.time_zone).replace(tzinfo=None) == wall:
            return instant
        # Skipped: the jump lies between the instant read with the offset after it
        # (earlier) and the one read with the offset before it (later).
        low = int(first.replace(fold=1).astimezone(UTC).timestamp())
        high = int(instant.timestamp())
        while high - low > 1:  # the first second on the new offset
            middle = (low + high) // 2
            moment = datetime.fromtimestamp(middle, UTC)
            if moment.astimezone(self.time_zone).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def open_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The desk's open periods on a day of its calendar, as UTC [start, end)."""
        if day in self.holidays:
            return []
        periods = []
        for start, end in self.week[day.weekday()]:
            begins, ends = self.wall_clock_to_utc(day, start), self.wall_clock_to_utc(day, end)
            if begins < ends:  # a range wholly inside a spring-forward gap is empty
                periods.append((begins, ends))
        return periods

    def _periods_from(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open periods that end after `at`, in order, clipped to start at `at` at the
        earliest; endless (the week repeats), so callers stop it."""
        day = self.local(at).date()
        while True:
            for begins, ends in self.open_periods(day):
                if ends > at:
                    yield max(begins, at), ends
            day += timedelta(days=1)

    # --- questions ------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """Whether the desk is open at `at`."""
        at = _utc(at)
        return self._always or next(self._periods_from(at))[0] == at

    def next_open(self, at: datetime) -> datetime:
        """`at` if the desk is open then, else when it next opens (UTC)."""
        at = _utc(at)
        if self._always:
            return at
        return next(self._periods_from(at))[0]

    def business_seconds_between(self, start: datetime, end: datetime) -> float:
        """Seconds of opening hours from `start` to `end` (negative if `end` is earlier)."""
        start, end = _utc(start), _utc(end)
        if end < start:
            return -self.business_seconds_between(end, start)
        if self._always:
            return (end - start).total_seconds()
        total = timedelta()
        for begins, ends in self._periods_from(start):
            if begins >= end:
                break
            total += min(ends, end) - begins
        return total.total_seconds()

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of opening hours have passed since `start`: a
        deadline in business time. Counting that ends as the desk closes gives the
        closing time, not the next opening. Zero or less: `start` itself."""
        start = _utc(start)
        left = timedelta(seconds=seconds)
        if left <= timedelta() or self._always:
            return start + max(left, timedelta())
        for begins, ends in self._periods_from(start):
            if left <= ends - begins:
                return begins + left
            left -= ends - begins
        raise AssertionError("unreachable: the desk's week always has open periods")

    # --- for people -------------------------------------------------------------------

    def format(self, at: datetime, *, with_date: bool = False) -> str:
        """`at` on the desk's wall clock for people: "Mon 09:00 CET", or with the date
        "Mon 5 Jan 09:00 CET" (for a time a week or more away)."""
        local = self.local(at)
        day = _SHORT_DAYS[local.weekday()]
        if with_date:
            day = f"{day} {local.day} {_SHORT_MONTHS[local.month - 1]}"
        return f"{day} {local:%H:%M} {local.tzname()}"

    def format_next_open(self, now: datetime) -> str:
        """When the desk next opens, for an out-of-office note: the date is named when
        that is six days or more away (the weekday alone would be ambiguous)."""
        opens = self.next_open(now)
        return self.format(opens, with_date=opens - _utc(now) >= timedelta(days=6))

    def describe_week(self) -> str:
        """The week in one line, e.g. "mon-fri 09:00-18:00 (Europe/Berlin)", for logs and
        the admins."""
        parts = []
        index = 0
        while index < 7:
            end = index
            while end + 1 < 7 and self.week[end + 1] == self.week[index]:
                end += 1
            if self.week[index]:
                days = DAY_NAMES[index] if end == index else f"{DAY_NAMES[index]}-{DAY_NAMES[end]}"
                parts.append(f"{days} {','.join(_show_range(r) for r in self.week[index])}")
            index = end + 1
        holidays = f", {len(self.holidays)} holidays" if self.holidays else ""
        return f"{'; '.join(parts)} ({self.time_zone.key}{holidays})"
