"""The escalation policy: a warning, then a breach, on each of a ticket's two clocks, each
fired once, in order, measured from when the customer's message was received.

The default targets, once enabled: normal 1 h to a first response and 1 d to a
resolution, high 15 min and 4 h; a warning at 80%, a breach 2 min (the grace) after
the target.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ConfigError, SlaSettings, load_settings
from bot.services.hours import BusinessHours
from bot.services.sla import (
    Clock,
    SlaEvent,
    SlaPolicy,
    Stage,
    Target,
    TicketFacts,
    deadlines,
    format_duration,
    next_event,
    parse_duration,
    raised,
)
from storage.tickets import Priority

RECEIVED = datetime(2025, 3, 24, 10, 0, tzinfo=UTC)  # a Monday
ALWAYS = BusinessHours.always_open()
POLICY = SlaSettings(enabled=True).policy()


def at(minutes: float = 0, *, hours: float = 0) -> datetime:
    """An instant this long after the customer's message was received."""
    return RECEIVED + timedelta(minutes=minutes, hours=hours)


def facts(priority: Priority = Priority.NORMAL, **changes: object) -> TicketFacts:
    return replace(TicketFacts(created_at=RECEIVED, priority=priority), **changes)


def run_scheduler(
    ticket: TicketFacts, until: datetime, policy: SlaPolicy = POLICY, hours: BusinessHours = ALWAYS
) -> list[tuple[str, datetime]]:
    """What a scheduler that wakes at each due instant fires up to `until`: (kind, when)."""
    fired = []
    now = RECEIVED
    while (event := next_event(ticket, policy, hours, now=now)) is not None:
        if event.due_at > until:
            break
        now = max(now, event.due_at)
        fired.append((event.kind, event.due_at))
        ticket = ticket.fired(event)
    return fired


# --- the schedule ---------------------------------------------------------------------


def test_a_normal_ticket_warns_at_80_percent_and_breaches_after_the_grace() -> None:
    schedule = deadlines(facts(), POLICY, ALWAYS)

    assert schedule.first_response is not None
    assert schedule.first_response.warn_at == at(48)  # 80% of an hour
    assert schedule.first_response.due_at == at(60)
    assert schedule.first_response.breach_at == at(62)  # the grace: 2 min
    assert schedule.resolution is not None
    assert schedule.resolution.warn_at == at(hours=19.2)  # 80% of a day
    assert schedule.resolution.breach_at == at(hours=24, minutes=2)


def test_an_unanswered_ticket_fires_four_events_in_order_and_then_nothing() -> None:
    assert run_scheduler(facts(), until=at(hours=48)) == [
        ("first_response_warning", at(48)),
        ("first_response_breach", at(62)),
        ("resolution_warning", at(hours=19.2)),
        ("resolution_breach", at(hours=24, minutes=2)),
    ]


def test_a_first_response_in_time_stops_its_clock_and_the_resolution_clock_runs_on() -> None:
    answered = facts(first_response_at=at(30))

    assert run_scheduler(answered, until=at(hours=48)) == [
        ("resolution_warning", at(hours=19.2)),
        ("resolution_breach", at(hours=24, minutes=2)),
    ]


def test_an_answer_after_the_warning_prevents_the_breach() -> None:
    warned = facts(response_stage=Stage.WARNING, first_response_at=at(55))

    event = next_event(warned, POLICY, ALWAYS, now=at(55))

    assert event is not None
    assert event.clock is Clock.RESOLUTION


def test_an_answer_within_the_grace_is_no_breach() -> None:
    # The reply was written in time but reached the customer a minute late (a retry):
    # the grace absorbs it.
    late_delivery = facts(response_stage=Stage.WARNING, first_response_at=at(61))

    assert [kind for kind, _ in run_scheduler(late_delivery, until=at(hours=2))] == []


def test_an_answer_after_the_breach_time_that_the_scheduler_missed_is_a_late_breach() -> None:
    # The breach was due at 62 min; the reply landed at 63 min, before the scheduler ran.
    missed = facts(response_stage=Stage.WARNING, first_response_at=at(63))

    event = next_event(missed, POLICY, ALWAYS, now=at(64))

    assert event == SlaEvent(Clock.FIRST_RESPONSE, Stage.BREACH, at(62), at(60), late=True)
    assert next_event(missed.fired(event), POLICY, ALWAYS, now=at(64)) != event


def test_resolving_stops_both_clocks() -> None:
    resolved = facts(resolved_at=at(20))

    assert next_event(resolved, POLICY, ALWAYS, now=at(20)) is None


def test_a_ticket_resolved_unanswered_after_the_first_response_breach_time_counts_it() -> None:
    closed_unanswered = facts(resolved_at=at(90))

    event = next_event(closed_unanswered, POLICY, ALWAYS, now=at(90))

    assert event is not None
    assert (event.kind, event.due_at, event.late) == ("first_response_breach", at(62), True)


def test_reopening_runs_the_resolution_clock_again_from_the_receipt() -> None:
    # Resolved after 2 hours (nothing fired), reopened: resolved_at is cleared.
    reopened = facts(first_response_at=at(5), resolved_at=None)

    event = next_event(reopened, POLICY, ALWAYS, now=at(hours=3))

    assert event is not None
    assert (event.kind, event.due_at) == ("resolution_warning", at(hours=19.2))


def test_a_warning_whose_breach_is_also_due_is_passed_over_after_downtime() -> None:
    # The daemon was down from 0:40 to 1:10: the warning (0:48) and the breach (1:02)
    # are both due when it comes back; only the breach is posted.
    event = next_event(facts(), POLICY, ALWAYS, now=at(70))

    assert event is not None
    assert (event.kind, event.due_at) == ("first_response_breach", at(62))


def test_a_stage_is_never_fired_twice_across_a_restart() -> None:
    """A scheduler that stores the stage and the next due instant with the ticket, and
    restarts, fires every event once."""
    stored = {"response_stage": None, "resolution_stage": None, "due_at": RECEIVED}
    posted = []

    def scheduler_pass(now: datetime) -> None:
        ticket = facts(
            response_stage=stored["response_stage"], resolution_stage=stored["resolution_stage"]
        )
        while (event := next_event(ticket, POLICY, ALWAYS, now=now)) and event.due_at <= now:
            posted.append(event.kind)
            ticket = ticket.fired(event)
        stored["response_stage"] = ticket.response_stage
        stored["resolution_stage"] = ticket.resolution_stage
        following = next_event(ticket, POLICY, ALWAYS, now=now)
        stored["due_at"] = following.due_at if following else None

    for minutes in (10, 50, 50, 55, 63, 63, 120):  # repeated passes: a restart in between
        scheduler_pass(at(minutes))

    assert posted == ["first_response_warning", "first_response_breach"]
    assert stored["due_at"] == at(hours=19.2)


# --- priority ----------------------------------------------------------------------------


def test_raising_the_priority_recomputes_from_the_receipt() -> None:
    # A normal ticket made high 10 minutes after it came in: high's 15 minutes count
    # from the receipt, so the warning falls at 12 min and the breach at 17 min.
    event = next_event(facts(Priority.HIGH), POLICY, ALWAYS, now=at(10))

    assert event is not None
    assert (event.kind, event.due_at) == ("first_response_warning", at(12))


def test_raising_the_priority_after_its_target_passed_breaches_at_once() -> None:
    # Made high 20 minutes in: high's breach time (17 min) is already past.
    event = next_event(facts(Priority.HIGH), POLICY, ALWAYS, now=at(20))

    assert event is not None
    assert (event.kind, event.due_at) == ("first_response_breach", at(17))
    assert event.due_at < at(20)  # due: the scheduler fires it on its next pass


def test_lowering_the_priority_after_a_warning_moves_the_breach_later() -> None:
    warned_high = facts(Priority.LOW, response_stage=Stage.WARNING)

    event = next_event(warned_high, POLICY, ALWAYS, now=at(13))

    assert event is not None
    assert (event.kind, event.due_at) == ("first_response_breach", at(hours=4, minutes=2))


def test_a_breach_may_raise_the_priority_one_step() -> None:
    assert raised(Priority.LOW) is Priority.NORMAL
    assert raised(Priority.NORMAL) is Priority.HIGH
    assert raised(Priority.HIGH) is Priority.URGENT
    assert raised(Priority.URGENT) is None


# --- business hours ------------------------------------------------------------------------


def test_targets_in_business_hours_wait_for_the_desk_and_the_grace_does_not() -> None:
    office = BusinessHours.weekly("Europe/Berlin", ["mon", "tue", "wed", "thu", "fri"],
                                  "09:00-18:00", holidays=[date(2025, 3, 31)])  # fmt: skip
    policy = SlaSettings(enabled=True, business_hours_only=True).policy()
    # Friday 28 March, 17:30 CET (16:30 UTC); Monday 31 March is a holiday; Tuesday 1 April
    # opens at 09:00 CEST (07:00 UTC).
    friday = TicketFacts(created_at=datetime(2025, 3, 28, 16, 30, tzinfo=UTC),
                         priority=Priority.NORMAL)  # fmt: skip

    schedule = deadlines(friday, policy, office).first_response

    assert schedule is not None
    # 48 business minutes: 30 on Friday, 18 on Tuesday.
    assert schedule.warn_at == datetime(2025, 4, 1, 7, 18, tzinfo=UTC)
    assert schedule.due_at == datetime(2025, 4, 1, 7, 30, tzinfo=UTC)
    assert schedule.breach_at == datetime(2025, 4, 1, 7, 32, tzinfo=UTC)
    assert office.format(schedule.due_at) == "Tue 09:30 CEST"


def test_a_priority_can_run_around_the_clock_while_others_wait_for_business_hours() -> None:
    policy = SlaSettings(
        enabled=True, business_hours_only=True, urgent={"business_hours_only": False}
    ).policy()

    assert policy.targets[Priority.URGENT].business_hours_only is False
    assert policy.targets[Priority.NORMAL].business_hours_only is True


# --- what is off ------------------------------------------------------------------------


def test_a_disabled_policy_fires_nothing() -> None:
    assert next_event(facts(), SlaPolicy.off(), ALWAYS, now=at(hours=100)) is None
    assert next_event(facts(), SlaSettings().policy(), ALWAYS, now=at(hours=100)) is None


def test_a_clock_set_off_fires_nothing_and_warn_at_zero_only_breaches() -> None:
    target = Target(first_response=None, resolution=timedelta(hours=1), warn_at=0)
    policy = SlaPolicy({Priority.NORMAL: target})

    assert run_scheduler(facts(), until=at(hours=5), policy=policy) == [
        ("resolution_breach", at(62))
    ]
    assert next_event(facts(Priority.HIGH), policy, ALWAYS, now=at(0)) is None  # no target


def test_on_a_tie_the_first_response_fires_first() -> None:
    policy = SlaPolicy({Priority.NORMAL: Target(timedelta(hours=1), timedelta(hours=1))})

    event = next_event(facts(), policy, ALWAYS, now=at(0))

    assert event is not None
    assert event.clock is Clock.FIRST_RESPONSE


def test_facts_are_read_from_the_stored_columns() -> None:
    stored = TicketFacts.parse(
        "2025-03-24T10:00:00.000000+00:00",
        "high",
        first_response_at="2025-03-24T10:05:00.000000+00:00",
        resolved_at=None,
        response_stage="warning",
        resolution_stage=None,
    )

    assert stored == TicketFacts(
        created_at=RECEIVED,
        priority=Priority.HIGH,
        first_response_at=at(5),
        response_stage=Stage.WARNING,
    )


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("2w", 1209600),
     ("90s", 90), (" 1H 30M ", 5400)],
)  # fmt: skip
def test_durations_are_read_with_their_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["off", "none", ""])
def test_off_means_no_target(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [("15", "sla.high.first_response '15' is not a duration"),
     ("15 minutes", "'15 minutes' is not a duration: write it like 15m"),
     ("0m", "'0m' is zero: write off for no target")],
)  # fmt: skip
def test_a_bad_duration_is_refused_naming_its_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text, "sla.high.first_response")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (720, "12m"), (3600, "1h"), (5400, "1h 30m"), (3605, "1h"),
     (93600, "1d 2h"), (-120, "-2m")],
)  # fmt: skip
def test_durations_are_shown_to_their_two_largest_units(seconds: int, shown: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == shown


# --- the [sla] section ---------------------------------------------------------------------

BASE = '[telegram]\ntoken = "123:abc"\n[support]\ngroup_id = -1001\n'


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "config.toml"


def test_the_policy_is_off_by_default_with_the_default_targets_ready(config: Path) -> None:
    config.write_text(BASE)

    sla = load_settings(config).sla
    policy = sla.policy()

    assert not sla.enabled
    assert policy.target(Priority.HIGH) is None
    assert {p: (t.first_response, t.resolution) for p, t in policy.targets.items()} == {
        Priority.LOW: (timedelta(hours=4), timedelta(days=3)),
        Priority.NORMAL: (timedelta(hours=1), timedelta(days=1)),
        Priority.HIGH: (timedelta(minutes=15), timedelta(hours=4)),
        Priority.URGENT: (timedelta(minutes=5), timedelta(hours=1)),
    }
    assert policy.targets[Priority.NORMAL].warn_at == 0.8
    assert policy.targets[Priority.NORMAL].grace == timedelta(minutes=2)


def test_a_priority_table_overrides_what_it_names_and_inherits_the_rest(config: Path) -> None:
    config.write_text(
        BASE
        + """
[sla]
enabled = true
warn_at = 0.75
grace = "5m"

[sla.high]
first_response = "10m"

[sla.low]
resolution = "off"
grace = "off"
"""
    )

    policy = load_settings(config).sla.policy()

    high, low = policy.targets[Priority.HIGH], policy.targets[Priority.LOW]
    assert (high.first_response, high.resolution) == (timedelta(minutes=10), timedelta(hours=4))
    assert (high.warn_at, high.grace) == (0.75, timedelta(minutes=5))
    assert (low.first_response, low.resolution, low.grace) == (timedelta(hours=4), None,
                                                               timedelta())  # fmt: skip


def test_a_target_can_come_from_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text(BASE)
    monkeypatch.setenv("TOPICDESK_SLA__ENABLED", "true")
    monkeypatch.setenv("TOPICDESK_SLA__URGENT__FIRST_RESPONSE", "2m")

    policy = load_settings(config).sla.policy()

    assert policy.enabled
    assert policy.targets[Priority.URGENT].first_response == timedelta(minutes=2)
    assert policy.targets[Priority.URGENT].resolution == timedelta(hours=1)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[sla.high]\nfirst_response = "15 minutes"',
         "sla.high.first_response '15 minutes' is not a duration"),
        ("[sla]\ngrace = 120", 'sla.grace must be a duration written as text, such as "15m"'),
        ("[sla]\nwarn_at = 1.5", "sla.warn_at Input should be less than 1"),
        ('[sla.normal]\nresolution = "0m"', "sla.normal.resolution '0m' is zero"),
        ('[sla.high]\nfrist_response = "1h"', "sla.high.frist_response is not a known setting"),
        ('[sla.critical]\nfirst_response = "1m"', "sla.critical is not a known setting"),
    ],
)  # fmt: skip
def test_a_bad_sla_setting_is_named_in_one_sentence(config: Path, table: str, message: str) -> None:
    config.write_text(BASE + table + "\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(config)

    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_a_bad_target_from_the_environment_names_the_variable(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text(BASE)
    monkeypatch.setenv("TOPICDESK_SLA__HIGH__RESOLUTION", "soon")

    with pytest.raises(ConfigError, match="TOPICDESK_SLA__HIGH__RESOLUTION in the environment"):
        load_settings(config)
