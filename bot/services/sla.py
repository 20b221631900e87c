"""The escalation policy: how long a ticket may wait for its first response and for its
resolution, and which warning or breach is due next.

Pure computations over a ticket's facts; nothing here reads the database or speaks to
Telegram. Each ticket runs two clocks from its receipt (`tickets.created_at`, Telegram's
date on the customer's first message):

- first response: stops at `first_response_at` (the first agent reply the customer got),
  or at `resolved_at` if the ticket was resolved or closed unanswered;
- resolution: stops at `resolved_at` (set on resolving or closing, cleared on reopening,
  which starts this clock again from the receipt).

Each clock has a target per priority. With `warn_at` (0.8) the warning falls at 80% of
the target; the breach at the target plus `grace`, which absorbs delivery delays
(`first_response_at` is when the reply reached the customer, after any retries: the
error-handling guide's "grace periods that account for retry delays"). With
`business_hours_only` the target is counted in opening hours (bot.services.hours); the
grace is always clock time. A priority change recomputes both clocks from the receipt.

How a scheduler uses this (one task, no timer per ticket; migration 0007's columns):

- `tickets.sla_response_stage` / `sla_resolution_stage`: the furthest stage fired on each
  clock (NULL, 'warning', 'breach'); a stage is never fired twice, and a breach implies
  the warning (a warning not yet fired when its breach is due is skipped).
- `tickets.sla_due_at`: `next_event(...).due_at`, or NULL; indexed where not NULL.
- Recompute `sla_due_at` in the transaction that changes any fact: the ticket opened,
  the first response recorded, a status or priority change, and for every ticket with an
  active clock at start (the config may have changed).
- The scheduler reads `WHERE sla_due_at IS NOT NULL AND sla_due_at <= now ORDER BY
  sla_due_at`, recomputes `next_event` from the row's facts, and if it is due fires it
  (posts, ticket_events kind 'sla_warning'/'sla_breach'), stores its stage and the next
  `sla_due_at`, all in one transaction: across restarts nothing fires twice.
- An event with `late=True` is a breach found after its clock stopped (the reply came
  after the breach time but before the scheduler saw it): record and count it; a post
  asking someone to hurry is pointless by then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.services.hours import BusinessHours
from storage.tickets import Priority

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_PART = re.compile(r"(\d+)([wdhms])")
OFF = ("off", "none", "")
PRIORITY_ORDER = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)
# Each priority's (first response, resolution) targets when the config names none.
DEFAULT_TARGETS = {
    Priority.LOW: ("4h", "3d"),
    Priority.NORMAL: ("1h", "1d"),
    Priority.HIGH: ("15m", "4h"),
    Priority.URGENT: ("5m", "1h"),
}
DEFAULT_WARN_AT = 0.8
DEFAULT_GRACE = "2m"


def parse_duration(text: str, key: str | None = None) -> timedelta | None:
    """ "15m", "4h", "1d", "1h30m" (units w d h m s) as a timedelta; "off" (or "none",
    ""): None, no target. ValueError in one sentence, naming `key` when given."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned in OFF:
        return None
    if not _DURATION.match(cleaned):
        where = f"{key} " if key else ""
        raise ValueError(
            f"{where}{text!r} is not a duration: write it like 15m, 4h, 1d or 1h30m "
            "(units w, d, h, m, s), or off"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _PART.findall(cleaned))
    if seconds == 0:
        where = f"{key} " if key else ""
        raise ValueError(f"{where}{text!r} is zero: write off for no target")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta | float) -> str:
    """A duration for people, to its two largest units (cut, not rounded): "45s", "12m",
    "1h 30m", "1h", "2d 4h"."""
    seconds = round(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    sizes = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    amounts = []
    for unit, size in sizes:
        amounts.append((seconds // size, unit))
        seconds %= size
    first = next((index for index, (amount, _) in enumerate(amounts) if amount), len(sizes) - 1)
    shown = [f"{amount}{unit}" for amount, unit in amounts[first : first + 2] if amount]
    return " ".join(shown) or "0s"


class Clock(StrEnum):
    """What the customer is waiting for."""

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class Stage(StrEnum):
    """How far a clock has run past its target; stored per clock with the ticket."""

    WARNING = "warning"
    BREACH = "breach"


@dataclass(frozen=True, slots=True)
class Target:
    """One priority's targets, with the section's defaults already applied."""

    first_response: timedelta | None  # None: no first-response target
    resolution: timedelta | None  # None: no resolution target
    warn_at: float = 0.8  # share of the target at which to warn; 0: never warn
    grace: timedelta = timedelta(minutes=2)  # added to a breach, for delivery delays
    business_hours_only: bool = False  # count targets in opening hours only

    def of(self, clock: Clock) -> timedelta | None:
        return self.first_response if clock is Clock.FIRST_RESPONSE else self.resolution


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The escalation policy: a target per priority, or off (`enabled` false)."""

    targets: Mapping[Priority, Target]
    enabled: bool = True

    @classmethod
    def off(cls) -> SlaPolicy:
        return cls({}, enabled=False)

    def target(self, priority: Priority) -> Target | None:
        return self.targets.get(Priority(priority)) if self.enabled else None


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the policy needs to know of a ticket; all times aware, in UTC."""

    created_at: datetime  # the receipt: Telegram's date on the customer's first message
    priority: Priority
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None  # resolved or closed; None while active
    response_stage: Stage | None = None  # tickets.sla_response_stage
    resolution_stage: Stage | None = None  # tickets.sla_resolution_stage

    @classmethod
    def parse(
        cls,
        created_at: str,
        priority: str,
        first_response_at: str | None = None,
        resolved_at: str | None = None,
        response_stage: str | None = None,
        resolution_stage: str | None = None,
    ) -> TicketFacts:
        """From the stored columns (ISO 8601 times, the stages' text)."""
        return cls(
            created_at=_parse_time(created_at),
            priority=Priority(priority),
            first_response_at=_parse_time(first_response_at) if first_response_at else None,
            resolved_at=_parse_time(resolved_at) if resolved_at else None,
            response_stage=Stage(response_stage) if response_stage else None,
            resolution_stage=Stage(resolution_stage) if resolution_stage else None,
        )

    def __post_init__(self) -> None:
        for moment in (self.created_at, self.first_response_at, self.resolved_at):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError("a ticket's times must be aware datetimes (UTC), not naive")

    def stage(self, clock: Clock) -> Stage | None:
        return self.response_stage if clock is Clock.FIRST_RESPONSE else self.resolution_stage

    def stopped_at(self, clock: Clock) -> datetime | None:
        """When the clock stopped: the first response (or the resolution), the resolution."""
        if clock is Clock.RESOLUTION:
            return self.resolved_at
        stops = [at for at in (self.first_response_at, self.resolved_at) if at is not None]
        return min(stops) if stops else None

    def fired(self, event: SlaEvent) -> TicketFacts:
        """These facts once `event` has fired (its stage stored)."""
        if event.clock is Clock.FIRST_RESPONSE:
            return replace(self, response_stage=event.stage)
        return replace(self, resolution_stage=event.stage)


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ClockDeadlines:
    """One clock's schedule: when it warns, when its target falls, when it breaches."""

    clock: Clock
    target: timedelta
    warn_at: datetime | None  # None: no warning (warn_at 0)
    due_at: datetime  # the target reached: "answer by Mon 09:00 CET"
    breach_at: datetime  # due_at plus the grace


@dataclass(frozen=True, slots=True)
class Deadlines:
    """A ticket's two clocks under its priority's targets (None: no target)."""

    first_response: ClockDeadlines | None
    resolution: ClockDeadlines | None

    def of(self, clock: Clock) -> ClockDeadlines | None:
        return self.first_response if clock is Clock.FIRST_RESPONSE else self.resolution


@dataclass(frozen=True, slots=True)
class SlaEvent:
    """A warning or breach to fire at `due_at` (UTC)."""

    clock: Clock
    stage: Stage
    due_at: datetime  # when it fires: the warning time, or the breach time (with grace)
    deadline: datetime  # the clock's target instant, without the grace, to show people
    late: bool = False  # the clock stopped after the breach, before it was fired

    @property
    def kind(self) -> str:
        """ "first_response_warning", "first_response_breach", "resolution_warning" or
        "resolution_breach"."""
        return f"{self.clock.value}_{self.stage.value}"


def deadlines(facts: TicketFacts, policy: SlaPolicy, hours: BusinessHours) -> Deadlines:
    """The ticket's schedule under the policy for its current priority, from its receipt."""
    target = policy.target(facts.priority)
    if target is None:
        return Deadlines(None, None)
    found = {clock: _clock_deadlines(clock, facts.created_at, target, hours) for clock in Clock}
    return Deadlines(found[Clock.FIRST_RESPONSE], found[Clock.RESOLUTION])


def _clock_deadlines(
    clock: Clock, received: datetime, target: Target, hours: BusinessHours
) -> ClockDeadlines | None:
    length = target.of(clock)
    if length is None:
        return None

    def after(share: float) -> datetime:
        seconds = length.total_seconds() * share
        if target.business_hours_only:
            return hours.add_business_seconds(received, seconds)
        return received.astimezone(UTC) + timedelta(seconds=seconds)

    due = after(1.0)
    warn = after(target.warn_at) if target.warn_at > 0 else None
    return ClockDeadlines(clock, length, warn, due, due + target.grace)


def next_event(
    facts: TicketFacts, policy: SlaPolicy, hours: BusinessHours, *, now: datetime
) -> SlaEvent | None:
    """The next warning or breach to fire (the earlier of the two clocks'; on a tie the
    first response's), or None when nothing more can fire. A stage already fired is never
    returned again; a warning whose breach is due by `now` is passed over for the breach;
    a clock that stopped in time fires nothing, one that stopped after its breach time
    gives that breach with `late` set."""
    schedule = deadlines(facts, policy, hours)
    events = [
        event
        for clock in Clock
        if (event := _clock_event(clock, schedule.of(clock), facts, now)) is not None
    ]
    return min(events, key=lambda event: event.due_at) if events else None


def _clock_event(
    clock: Clock, schedule: ClockDeadlines | None, facts: TicketFacts, now: datetime
) -> SlaEvent | None:
    """The next event of one clock, given what it has fired already."""
    fired = facts.stage(clock)
    if schedule is None or fired is Stage.BREACH:
        return None
    breach = SlaEvent(clock, Stage.BREACH, schedule.breach_at, schedule.due_at)
    stopped = facts.stopped_at(clock)
    if stopped is not None:  # no warning is worth sending now; a passed breach still counts
        return replace(breach, late=True) if stopped > schedule.breach_at else None
    warning_due = None if fired is Stage.WARNING else schedule.warn_at
    if warning_due is not None and schedule.breach_at > now:
        return SlaEvent(clock, Stage.WARNING, warning_due, schedule.due_at)
    return breach


def raised(priority: Priority) -> Priority | None:
    """The next priority up (a breach may raise it), None for urgent."""
    index = PRIORITY_ORDER.index(Priority(priority))
    return PRIORITY_ORDER[index + 1] if index + 1 < len(PRIORITY_ORDER) else None
