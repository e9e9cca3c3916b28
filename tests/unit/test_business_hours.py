"""Business-hours arithmetic: property tests against a minute-by-minute reference count,
plus worked examples (weekends, holidays, DST in both directions, odd offsets)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.business_hours import CalendarError, WorkingCalendar

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",  # +05:30, no DST
    "America/Santiago",  # DST change at local midnight
    "Pacific/Chatham",  # +12:45 / +13:45
]
MINUTE = timedelta(minutes=1)
NY = ZoneInfo("America/New_York")


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    """0-3 disjoint intervals in one day, on whole minutes (some on quarter hours)."""
    count = draw(st.integers(0, 3))
    points = draw(
        st.lists(st.integers(0, 1440), min_size=2 * count, max_size=2 * count, unique=True)
    )
    points.sort()
    return tuple((points[i], points[i + 1]) for i in range(0, len(points), 2))


@st.composite
def calendars(draw: st.DrawFn) -> WorkingCalendar:
    weekly = tuple(draw(day_hours()) for _ in range(7))
    if not any(weekly):
        weekly = (((540, 1020),), *weekly[1:])
    holidays = draw(st.frozensets(st.dates(date(2024, 1, 1), date(2026, 12, 31)), max_size=6))
    return WorkingCalendar(draw(st.sampled_from(ZONES)), weekly, holidays)


starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 6, 30)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)


def reference_between(cal: WorkingCalendar, a: datetime, b: datetime) -> timedelta:
    """Count working minutes one at a time (a and b on whole minutes)."""
    minutes = 0
    cursor = a
    while cursor < b:
        minutes += cal.is_working(cursor)
        cursor += MINUTE
    return minutes * MINUTE


def reference_add(cal: WorkingCalendar, start: datetime, minutes: int) -> datetime:
    cursor = start
    while minutes:
        if cal.is_working(cursor):
            minutes -= 1
        cursor += MINUTE
    return cursor


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(cal=calendars(), start=starts, minutes=st.integers(1, 900))
def test_adding_working_time_matches_the_minute_count_and_lands_in_working_time(
    cal: WorkingCalendar, start: datetime, minutes: int
) -> None:
    result = cal.add_working_time(start, timedelta(minutes=minutes))
    assert result == reference_add(cal, start, minutes)
    # Never outside working hours: the instant just before the deadline is worked.
    assert cal.is_working(result - timedelta(seconds=1))
    assert cal.working_time_between(start, result) == timedelta(minutes=minutes)


@PROPS
@given(cal=calendars(), start=starts, span=st.integers(0, 4 * 1440))
def test_working_time_between_matches_the_minute_count(
    cal: WorkingCalendar, start: datetime, span: int
) -> None:
    end = start + timedelta(minutes=span)
    assert cal.working_time_between(start, end) == reference_between(cal, start, end)


@PROPS
@given(cal=calendars(), start=starts, a=st.integers(0, 5000), b=st.integers(0, 5000))
def test_adding_is_monotonic(cal: WorkingCalendar, start: datetime, a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert cal.add_working_time(start, timedelta(minutes=small)) <= cal.add_working_time(
        start, timedelta(minutes=large)
    )


@PROPS
@given(cal=calendars(), start=starts, later=st.integers(0, 3000), minutes=st.integers(1, 600))
def test_later_start_never_gives_an_earlier_deadline(
    cal: WorkingCalendar, start: datetime, later: int, minutes: int
) -> None:
    duration = timedelta(minutes=minutes)
    assert cal.add_working_time(start, duration) <= cal.add_working_time(
        start + timedelta(minutes=later), duration
    )


@PROPS
@given(
    cal=calendars(),
    start=starts,
    first=st.integers(0, 2000),
    second=st.integers(0, 2000),
)
def test_adding_in_two_steps_equals_adding_once(
    cal: WorkingCalendar, start: datetime, first: int, second: int
) -> None:
    one = cal.add_working_time(start, timedelta(minutes=first))
    two = cal.add_working_time(one, timedelta(minutes=second))
    whole = cal.add_working_time(start, timedelta(minutes=first + second))
    # Equal in working time; the two-step path may sit at a span's end instead of the next
    # span's start when `first` ends exactly at closing time.
    assert cal.working_time_between(start, two) == cal.working_time_between(start, whole)
    assert two <= whole or cal.working_time_between(whole, two) == timedelta(0)


def office_hours(holidays: tuple[date, ...] = ()) -> WorkingCalendar:
    return WorkingCalendar.from_spec(
        "America/New_York",
        {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        holidays,
    )


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)  # type: ignore[arg-type,misc]


def test_friday_afternoon_rolls_over_the_weekend() -> None:
    cal = office_hours()
    # Friday 2025-03-07 16:00 + 2 working hours → Monday 10:00.
    assert cal.add_working_time(ny(2025, 3, 7, 16), timedelta(hours=2)) == ny(2025, 3, 10, 10)


def test_a_holiday_is_skipped() -> None:
    cal = office_hours((date(2025, 3, 10),))
    assert cal.add_working_time(ny(2025, 3, 7, 16), timedelta(hours=2)) == ny(2025, 3, 11, 10)
    assert cal.working_time_between(ny(2025, 3, 7, 9), ny(2025, 3, 12, 9)) == timedelta(hours=16)


def test_closing_time_is_the_deadline_not_next_morning() -> None:
    cal = office_hours()
    assert cal.add_working_time(ny(2025, 3, 12, 9), timedelta(hours=8)) == ny(2025, 3, 12, 17)
    assert not cal.is_working(ny(2025, 3, 12, 17))
    assert cal.is_working(ny(2025, 3, 12, 16, 59, 59))


def test_start_outside_hours_begins_at_opening() -> None:
    cal = office_hours()
    assert cal.add_working_time(ny(2025, 3, 12, 6), timedelta(minutes=30)) == ny(2025, 3, 12, 9, 30)


def test_dst_spring_forward_day_has_23_hours() -> None:
    cal = WorkingCalendar.always()
    local = WorkingCalendar.from_spec("America/New_York", {"sun": [["00:00", "24:00"]]})
    sunday, monday = ny(2025, 3, 9), ny(2025, 3, 10)
    assert local.working_time_between(sunday, monday) == timedelta(hours=23)
    assert cal.working_time_between(sunday, monday) == timedelta(hours=23)
    # Hours 01:00-03:00 that day contain only one real hour (02:xx never happens).
    early = WorkingCalendar.from_spec("America/New_York", {"sun": [["01:00", "03:00"]]})
    assert early.working_time_between(sunday, monday) == timedelta(hours=1)
    assert early.add_working_time(sunday, timedelta(minutes=90)) == ny(2025, 3, 16, 1, 30)


def test_dst_fall_back_repeated_hour_is_worked_twice() -> None:
    night = WorkingCalendar.from_spec("America/New_York", {"sun": [["00:30", "02:00"]]})
    sunday, monday = ny(2025, 11, 2), ny(2025, 11, 3)
    # 00:30-01:00 EDT, 01:00-02:00 EDT, then 01:00-02:00 EST again: 2.5 real hours.
    assert night.working_time_between(sunday, monday) == timedelta(hours=2, minutes=30)


def test_business_hours_in_a_half_hour_zone() -> None:
    cal = WorkingCalendar.from_spec("Asia/Kolkata", {"mon": [["09:00", "17:00"]]})
    monday_9_ist = datetime(2025, 3, 10, 3, 30, tzinfo=UTC)
    assert cal.add_working_time(monday_9_ist, timedelta(hours=1)) == datetime(
        2025, 3, 10, 4, 30, tzinfo=UTC
    )


def test_always_calendar_is_plain_arithmetic() -> None:
    cal = WorkingCalendar.always()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert cal.add_working_time(start, timedelta(seconds=7)) == start + timedelta(seconds=7)
    assert cal.add_working_time(start, timedelta(0)) == start


@pytest.mark.parametrize(
    ("zone", "hours", "message"),
    [
        ("Mars/Olympus", {"mon": [["09:00", "17:00"]]}, "unknown time zone"),
        ("UTC", {}, "needs some working hours"),
        ("UTC", {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}, "overlap"),
        ("UTC", {"mon": [["17:00", "09:00"]]}, "start < end"),
        ("UTC", {"mon": [["9", "17:00"]]}, "HH:MM"),
        ("UTC", {"funday": [["09:00", "17:00"]]}, "unknown weekday"),
    ],
)
def test_bad_calendars_are_refused(zone: str, hours: dict, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        WorkingCalendar.from_spec(zone, hours)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        WorkingCalendar.always().add_working_time(datetime(2025, 1, 1), timedelta(hours=1))


def test_a_calendar_whose_days_are_all_holidays_says_so() -> None:
    start = date(2025, 1, 6)
    cal = WorkingCalendar.from_spec(
        "UTC",
        {"mon": [["09:00", "10:00"]]},
        [start + timedelta(days=i) for i in range(0, 900)],
    )
    with pytest.raises(CalendarError, match="no working time ahead"):
        cal.add_working_time(datetime(2025, 1, 6, tzinfo=UTC), timedelta(minutes=1))
