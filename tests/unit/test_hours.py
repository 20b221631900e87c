"""Business hours: when the desk is open, and deadlines counted in its opening hours.

The desk in most stories is in Berlin, open Monday to Friday 09:00-12:00 and 13:00-18:00.
Berlin's clocks spring forward on Sunday 30 March 2025 (02:00 CET → 03:00 CEST) and fall
back on Sunday 26 October 2025 (03:00 CEST → 02:00 CET).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings
from bot.services.hours import BusinessHours, parse_ranges, zone

BERLIN = "Europe/Berlin"
OFFICE = "09:00-12:00, 13:00-18:00"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
HOUR = 3600.0


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int, fold: int = 0) -> datetime:
    """A Berlin wall-clock time, as the UTC instant the desk's functions take."""
    return datetime(*args, tzinfo=zone(BERLIN), fold=fold).astimezone(UTC)


@pytest.fixture
def office() -> BusinessHours:
    return BusinessHours.weekly(
        BERLIN, WEEKDAYS, OFFICE, holidays=[date(2025, 12, 25), date(2025, 12, 26)]
    )


def sundays(hours: str) -> BusinessHours:
    """A desk open on Sundays only: both of Berlin's clock changes fall on one."""
    return BusinessHours.weekly(BERLIN, ["sun"], hours)


# --- always open: the default ------------------------------------------------------------


def test_a_desk_that_is_always_open_counts_plain_clock_time() -> None:
    desk = BusinessHours.always_open(BERLIN)
    friday_night = utc(2025, 3, 28, 23, 30)

    assert desk.is_always_open
    assert desk.is_open(friday_night)
    assert desk.next_open(friday_night) == friday_night
    assert desk.business_seconds_between(friday_night, friday_night + timedelta(days=2)) == (
        2 * 86400
    )
    assert desk.add_business_seconds(friday_night, 90) == friday_night + timedelta(seconds=90)


def test_the_desk_is_always_open_when_the_hours_cover_every_day() -> None:
    assert BusinessHours.weekly("UTC", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                "00:00-24:00").is_always_open  # fmt: skip
    assert not BusinessHours.weekly("UTC", WEEKDAYS, "00:00-24:00").is_always_open
    assert not BusinessHours.weekly(
        "UTC", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "00:00-24:00",
        holidays=[date(2025, 1, 1)],
    ).is_always_open  # fmt: skip


# --- an office week ----------------------------------------------------------------------


def test_the_office_is_open_in_its_hours_and_closed_at_lunch_at_night_and_at_weekends(
    office: BusinessHours,
) -> None:
    assert office.is_open(berlin(2025, 3, 24, 9, 0))  # Monday, opening time
    assert office.is_open(berlin(2025, 3, 24, 11, 59))
    assert not office.is_open(berlin(2025, 3, 24, 12, 0))  # lunch
    assert office.is_open(berlin(2025, 3, 24, 13, 0))
    assert not office.is_open(berlin(2025, 3, 24, 18, 0))  # closing time is closed
    assert not office.is_open(berlin(2025, 3, 24, 8, 59))
    assert not office.is_open(berlin(2025, 3, 29, 11, 0))  # Saturday


def test_next_open_is_now_when_open_else_the_next_opening(office: BusinessHours) -> None:
    monday_ten = berlin(2025, 3, 24, 10, 0)
    assert office.next_open(monday_ten) == monday_ten
    assert office.next_open(berlin(2025, 3, 24, 12, 15)) == berlin(2025, 3, 24, 13, 0)
    assert office.next_open(berlin(2025, 3, 24, 18, 0)) == berlin(2025, 3, 25, 9, 0)
    # Friday evening: Monday morning.
    assert office.next_open(berlin(2025, 3, 21, 18, 30)) == berlin(2025, 3, 24, 9, 0)


def test_business_time_skips_lunch_nights_and_the_weekend(office: BusinessHours) -> None:
    # Friday 17:00 to Monday 10:00: Friday's last hour and Monday's first.
    assert (
        office.business_seconds_between(berlin(2025, 3, 21, 17, 0), berlin(2025, 3, 24, 10, 0))
        == 2 * HOUR
    )
    # Monday 11:30 to 13:30: half an hour either side of lunch.
    assert (
        office.business_seconds_between(berlin(2025, 3, 24, 11, 30), berlin(2025, 3, 24, 13, 30))
        == HOUR
    )
    # A whole week: five days of eight hours.
    assert (
        office.business_seconds_between(berlin(2025, 3, 17, 0, 0), berlin(2025, 3, 24, 0, 0))
        == 40 * HOUR
    )
    # Backwards is negative; a closed stretch is zero.
    assert (
        office.business_seconds_between(berlin(2025, 3, 24, 10, 0), berlin(2025, 3, 21, 17, 0))
        == -2 * HOUR
    )
    assert (
        office.business_seconds_between(berlin(2025, 3, 22, 10, 0), berlin(2025, 3, 23, 10, 0)) == 0
    )


def test_a_deadline_in_business_time_waits_for_the_desk(office: BusinessHours) -> None:
    # A customer writes on Friday at 17:30 and may wait one business hour: half an hour
    # on Friday, half an hour on Monday.
    assert office.add_business_seconds(berlin(2025, 3, 21, 17, 30), HOUR) == berlin(
        2025, 3, 24, 9, 30
    )
    # Written on Saturday: the hour starts on Monday morning.
    assert office.add_business_seconds(berlin(2025, 3, 22, 15, 0), HOUR) == berlin(
        2025, 3, 24, 10, 0
    )
    # Over lunch.
    assert office.add_business_seconds(berlin(2025, 3, 24, 11, 30), HOUR) == berlin(
        2025, 3, 24, 13, 30
    )
    # Time that runs out as the desk closes is due at closing time, not at the next opening.
    assert office.add_business_seconds(berlin(2025, 3, 21, 17, 0), HOUR) == berlin(
        2025, 3, 21, 18, 0
    )
    assert office.add_business_seconds(berlin(2025, 3, 22, 15, 0), 0) == berlin(2025, 3, 22, 15)


def test_holidays_are_closed_all_day(office: BusinessHours) -> None:
    christmas_eve_evening = berlin(2025, 12, 24, 18, 30)  # Wednesday

    assert not office.is_open(berlin(2025, 12, 25, 10, 0))  # Thursday, a holiday
    assert not office.is_open(berlin(2025, 12, 26, 10, 0))  # Friday, a holiday
    # Thursday and Friday are holidays, then the weekend: Monday 29 December.
    assert office.next_open(christmas_eve_evening) == berlin(2025, 12, 29, 9, 0)
    assert office.add_business_seconds(christmas_eve_evening, HOUR) == berlin(2025, 12, 29, 10, 0)
    assert office.business_seconds_between(christmas_eve_evening, berlin(2025, 12, 29, 9, 0)) == 0


# --- clock changes -------------------------------------------------------------------------


def test_the_spring_forward_sunday_has_23_hours_and_the_fall_back_sunday_25() -> None:
    desk = sundays("00:00-24:00")
    spring, autumn = date(2025, 3, 30), date(2025, 10, 26)

    (spring_day,) = desk.open_periods(spring)
    (autumn_day,) = desk.open_periods(autumn)

    assert spring_day == (utc(2025, 3, 29, 23, 0), utc(2025, 3, 30, 22, 0))  # CET → CEST
    assert autumn_day == (utc(2025, 10, 25, 22, 0), utc(2025, 10, 26, 23, 0))  # CEST → CET
    assert desk.business_seconds_between(*spring_day) == 23 * HOUR
    assert desk.business_seconds_between(*autumn_day) == 25 * HOUR
    assert desk.business_seconds_between(utc(2025, 3, 29), utc(2025, 4, 1)) == 23 * HOUR


def test_a_range_across_the_changed_hour_is_as_long_as_the_clocks_make_it() -> None:
    desk = sundays("01:00-04:00")

    # Spring: 02:00-03:00 does not exist; 01:00 CET to 04:00 CEST is two hours.
    assert desk.open_periods(date(2025, 3, 30)) == [(utc(2025, 3, 30, 0), utc(2025, 3, 30, 2))]
    # Autumn: 02:00-03:00 happens twice; 01:00 CEST to 04:00 CET is four hours.
    assert desk.open_periods(date(2025, 10, 26)) == [(utc(2025, 10, 25, 23), utc(2025, 10, 26, 3))]


def test_an_opening_time_skipped_by_the_clocks_opens_at_the_jump() -> None:
    desk = sundays("02:30-05:00")

    # 02:30 never shows on 30 March: the desk opens when the clock jumps to 03:00 CEST.
    assert desk.next_open(utc(2025, 3, 29, 22, 0)) == utc(2025, 3, 30, 1, 0)
    assert desk.business_seconds_between(utc(2025, 3, 29), utc(2025, 3, 31)) == 2 * HOUR
    # A range wholly inside the skipped hour does not happen that day.
    assert sundays("02:10-02:50").open_periods(date(2025, 3, 30)) == []


def test_a_time_the_clocks_show_twice_is_open_both_times() -> None:
    desk = sundays("02:00-03:00")
    first = berlin(2025, 10, 26, 2, 30, fold=0)  # 02:30 CEST
    second = berlin(2025, 10, 26, 2, 30, fold=1)  # 02:30 CET, an hour later

    assert second - first == timedelta(hours=1)
    assert desk.is_open(first)
    assert desk.is_open(second)
    assert desk.business_seconds_between(utc(2025, 10, 25), utc(2025, 10, 27)) == 2 * HOUR


def test_the_office_week_across_the_clock_change_opens_at_nine_local_time(
    office: BusinessHours,
) -> None:
    # Friday 28 March closes at 18:00 CET (17:00 UTC); Monday 31 March opens at 09:00 CEST
    # (07:00 UTC): the weekend is one hour shorter in UTC, and no business time is lost.
    assert office.next_open(berlin(2025, 3, 28, 18, 0)) == utc(2025, 3, 31, 7, 0)
    assert office.add_business_seconds(utc(2025, 3, 28, 16, 30), HOUR) == utc(2025, 3, 31, 7, 30)
    assert office.business_seconds_between(utc(2025, 3, 28, 16), utc(2025, 3, 31, 8)) == 2 * HOUR
    # And in October, Monday 27 opens at 09:00 CET (08:00 UTC).
    assert office.next_open(berlin(2025, 10, 24, 18, 0)) == utc(2025, 10, 27, 8, 0)


def test_a_midnight_skipped_by_the_clocks_starts_the_day_at_the_jump() -> None:
    # Havana springs forward at midnight: on 9 March 2025 the day starts at 01:00 CDT.
    desk = BusinessHours.weekly("America/Havana", ["sun"], "00:00-24:00")

    assert desk.wall_clock_to_utc(date(2025, 3, 9), 0) == utc(2025, 3, 9, 5, 0)
    assert desk.business_seconds_between(utc(2025, 3, 8), utc(2025, 3, 11)) == 23 * HOUR


# --- properties --------------------------------------------------------------------------

# Hypothesis takes naive bounds and attaches the time zone itself.
INSTANTS = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001
    max_value=datetime(2026, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=300, deadline=None)
@given(start=INSTANTS, seconds=st.floats(min_value=0, max_value=30 * 86400))
def test_a_deadline_is_exactly_the_business_time_asked_for(start: datetime, seconds: float) -> None:
    desk = BusinessHours.weekly(BERLIN, WEEKDAYS, OFFICE, {"sat": "10:00-14:00"},
                                [date(2025, 12, 25), date(2026, 4, 6)])  # fmt: skip

    due = desk.add_business_seconds(start, seconds)

    assert due >= start
    assert desk.business_seconds_between(start, due) == pytest.approx(seconds, abs=1e-5)


@settings(max_examples=300, deadline=None)
@given(at=INSTANTS)
def test_the_desk_is_closed_until_it_next_opens(at: datetime) -> None:
    desk = BusinessHours.weekly(BERLIN, WEEKDAYS, OFFICE, holidays=[date(2025, 12, 25)])

    opens = desk.next_open(at)

    assert desk.is_open(opens)
    assert desk.business_seconds_between(at, opens) == 0
    assert desk.is_open(at) == (opens == at)


# --- for people ----------------------------------------------------------------------------


def test_times_are_shown_on_the_desks_clock_with_its_zone(office: BusinessHours) -> None:
    assert office.format(utc(2025, 3, 24, 8, 0)) == "Mon 09:00 CET"
    assert office.format(utc(2025, 3, 31, 7, 0)) == "Mon 09:00 CEST"
    assert office.format(utc(2026, 1, 5, 8, 0), with_date=True) == "Mon 5 Jan 09:00 CET"


def test_the_next_opening_names_its_date_when_a_weekday_would_be_ambiguous(
    office: BusinessHours,
) -> None:
    assert office.format_next_open(berlin(2025, 3, 21, 18, 30)) == "Mon 09:00 CET"
    # Christmas Eve's evening: the next opening is five days away, still unambiguous.
    assert office.format_next_open(berlin(2025, 12, 24, 18, 30)) == "Mon 09:00 CET"
    long_closed = BusinessHours.weekly(
        BERLIN, WEEKDAYS, OFFICE, holidays=[date(2025, 12, d) for d in range(22, 32)]
    )
    assert long_closed.format_next_open(berlin(2025, 12, 19, 18, 30)) == "Thu 1 Jan 09:00 CET"


def test_the_week_is_described_in_one_line(office: BusinessHours) -> None:
    assert office.describe_week() == ("mon-fri 09:00-12:00,13:00-18:00 (Europe/Berlin, 2 holidays)")


# --- what the desk refuses ------------------------------------------------------------------


def test_naive_times_are_refused(office: BusinessHours) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        office.is_open(datetime(2025, 3, 24, 10, 0))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-18:00", ((540, 1080),)),
        ("13:00-18:00, 09:00-12:00", ((540, 720), (780, 1080))),
        ("09:00-12:00,12:00-18:00", ((540, 1080),)),  # touching ranges are one
        ("00:00-24:00", ((0, 1440),)),
        ("9:30-17:00", ((570, 1020),)),
        ("closed", ()),
        ("", ()),
    ],
)
def test_opening_hours_are_read_from_ranges(text: str, expected: tuple[object, ...]) -> None:
    assert parse_ranges(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("22:00-06:00", "'22:00-06:00' crosses midnight"),
        ("09:00-12:00,11:00-13:00", "09:00-12:00 and 11:00-13:00 overlap"),
        ("09:00-25:00", "hours go from 00:00 to 24:00"),
        ("9-17", "'9-17' is not a time range"),
        ("09:00-09:00", "is an empty range"),
    ],
)
def test_bad_opening_hours_are_refused_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ranges(text)


def test_a_week_without_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="never open"):
        BusinessHours.weekly(BERLIN, [], OFFICE)


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe", "", "../etc/passwd", "europe/berlin"])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a known time zone"):
        zone(name)


# --- the [hours] section ------------------------------------------------------------------

BASE = '[telegram]\ntoken = "123:abc"\n[support]\ngroup_id = -1001\n'


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "config.toml"


def test_without_an_hours_section_the_desk_is_always_open(config: Path) -> None:
    config.write_text(BASE)

    hours = load_settings(config).hours

    assert hours.time_zone == "UTC"
    assert hours.business_hours().is_always_open


def test_the_hours_section_sets_the_week(config: Path) -> None:
    config.write_text(
        BASE
        + """
[hours]
time_zone = "Europe/Berlin"
weekdays = ["Mon", "tuesday", "wed", "thu", "fri"]
open = "09:00-12:00, 13:00-18:00"
days = { fri = "09:00-15:00", sat = "10:00-12:00" }
holidays = [2025-12-25, "2025-12-26"]
"""
    )

    desk = load_settings(config).hours.business_hours()

    assert desk.describe_week() == (
        "mon-thu 09:00-12:00,13:00-18:00; fri 09:00-15:00; sat 10:00-12:00 "
        "(Europe/Berlin, 2 holidays)"
    )
    assert not desk.is_open(berlin(2025, 12, 26, 10, 0))


def test_the_time_zone_can_come_from_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text(BASE)
    monkeypatch.setenv("TOPICDESK_HOURS__TIME_ZONE", "America/New_York")

    assert load_settings(config).hours.time_zone == "America/New_York"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('time_zone = "Mars/Olympus"', "hours.time_zone 'Mars/Olympus' is not a known time zone"),
        ('open = "18:00-09:00"', "hours.open '18:00-09:00' crosses midnight"),
        ('days = { fri = "9-15" }', "hours.days fri: '9-15' is not a time range"),
        ('days = { funday = "09:00-10:00" }', "'funday' is not a day of the week"),
        ('weekdays = ["mon", "caturday"]', "hours.weekdays.1 'caturday' is not a day of the week"),
        ('holidays = ["25.12.2025"]', "hours.holidays.0 '25.12.2025' is not a date"),
        ("weekdays = []", "hours has no opening hours"),
        ('tz = "UTC"', "hours.tz is not a known setting"),
    ],
)
def test_a_bad_hours_setting_is_named_in_one_sentence(
    config: Path, table: str, message: str
) -> None:
    config.write_text(BASE + "[hours]\n" + table + "\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(config)

    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
