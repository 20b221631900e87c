"""Who the desk gives a new ticket to: round-robin and least-open among the agents on duty."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.services.assignment import choose, least_open, round_robin
from bot.services.queue import waited
from storage.agents import Agent
from storage.db import to_iso

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def agent(
    user_id: int, *, on_duty: bool = True, assigned_minutes_ago: float | None = None
) -> Agent:
    last = (
        None
        if assigned_minutes_ago is None
        else to_iso(T0 - timedelta(minutes=assigned_minutes_ago))
    )
    return Agent(user_id, f"Agent {user_id}", None, on_duty, last)


def assigned_now(desk: list[Agent], chosen: Agent, minute: int) -> list[Agent]:
    """The desk after `chosen` got a ticket `minute` minutes after T0."""
    stamp = to_iso(T0 + timedelta(minutes=minute))
    return [replace(a, last_assigned_at=stamp) if a.user_id == chosen.user_id else a for a in desk]


def test_round_robin_takes_turns_and_skips_an_agent_gone_off_duty() -> None:
    desk = [agent(30, assigned_minutes_ago=5), agent(10, assigned_minutes_ago=50), agent(20)]
    turns = []
    for minute in range(4):
        chosen = round_robin(desk)
        assert chosen is not None
        turns.append(chosen.user_id)
        desk = assigned_now(desk, chosen, minute)
    # Never assigned first, then the longest wait.
    assert turns == [20, 10, 30, 20]

    desk = [replace(a, on_duty=False) if a.user_id == 10 else a for a in desk]
    turns = []
    for minute in range(10, 14):
        chosen = round_robin(desk)
        assert chosen is not None
        turns.append(chosen.user_id)
        desk = assigned_now(desk, chosen, minute)
    assert turns == [30, 20, 30, 20]


def test_round_robin_breaks_ties_by_user_id() -> None:
    assert round_robin([agent(7), agent(3), agent(5)]) == agent(3)
    same = [agent(9, assigned_minutes_ago=1), agent(4, assigned_minutes_ago=1)]
    assert round_robin(same) == same[1]


def test_least_open_takes_the_lightest_load_and_skips_agents_off_duty() -> None:
    desk = [agent(1), agent(2), agent(3, on_duty=False)]
    assert least_open(desk, {1: 4, 2: 1}) == agent(2)
    # The one off duty holds nothing, and still gets nothing.
    assert least_open(desk, {1: 4, 2: 1, 3: 0}) == agent(2)
    # An agent never counted holds nothing.
    assert least_open([agent(1), agent(2)], {1: 2}) == agent(2)


def test_least_open_breaks_ties_in_round_robin_order() -> None:
    desk = [agent(1, assigned_minutes_ago=1), agent(2, assigned_minutes_ago=30), agent(3)]
    assert least_open(desk, {1: 2, 2: 2, 3: 5}) == desk[1]  # equal loads: the longer wait
    assert least_open(desk, {1: 2, 2: 2, 3: 2}) == desk[2]  # never assigned goes first
    assert least_open([agent(8), agent(6)], {}) == agent(6)  # then the lower id


def test_least_open_spreads_new_tickets_over_the_desk() -> None:
    desk = [agent(1), agent(2), agent(3)]
    load = {1: 3, 2: 1, 3: 0}
    given = []
    for minute in range(5):
        chosen = least_open(desk, load)
        assert chosen is not None
        given.append(chosen.user_id)
        load[chosen.user_id] += 1
        desk = assigned_now(desk, chosen, minute)
    assert given == [3, 2, 3, 2, 3]
    assert load == {1: 3, 2: 3, 3: 3}


def test_nobody_on_duty_means_nobody_is_assigned() -> None:
    away = [agent(1, on_duty=False), agent(2, on_duty=False)]
    assert round_robin(away) is None
    assert least_open(away, {}) is None
    assert round_robin([]) is None
    for strategy in ("round_robin", "least_open", "off"):
        assert choose(strategy, away, {}) is None


def test_assignment_off_assigns_nobody() -> None:
    assert choose("off", [agent(1), agent(2)], {}) is None
    assert choose("round_robin", [agent(1), agent(2)], {}) == agent(1)
    assert choose("least_open", [agent(1), agent(2)], {1: 1}) == agent(2)


def test_the_wait_reads_in_the_largest_fitting_units() -> None:
    assert waited(to_iso(T0), T0 + timedelta(seconds=42)) == "42 s"
    assert waited(to_iso(T0), T0 + timedelta(minutes=12, seconds=59)) == "12 min"
    assert waited(to_iso(T0), T0 + timedelta(hours=3, minutes=5)) == "3 h 05 min"
    assert waited(to_iso(T0), T0 + timedelta(days=2, hours=4, minutes=30)) == "2 d 4 h"
    assert waited(to_iso(T0), T0 - timedelta(seconds=5)) == "0 s"  # a clock a little behind
