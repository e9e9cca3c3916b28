"""Business-hours calendar arithmetic: pure, deterministic, no clock reads, no I/O beyond
the time-zone database that `zoneinfo` loads once per zone.

A `WorkingCalendar` says when a help desk works: weekly opening hours in local wall time of
one IANA time zone, minus holidays (local dates). "Working" is decided on the wall clock:
an instant is working when its local time falls inside that weekday's hours on a day that
is not a holiday. Every computation below agrees exactly with that definition, across DST
changes too (a local hour skipped in spring is not worked; a local hour repeated in autumn
is worked twice, because the people at the desk are there twice).

Durations are real elapsed time (what a stopwatch measures), not wall-clock differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
# A calendar that yields no working time for this long is treated as having none at all
# (e.g. every working day of the next two years declared a holiday).
_MAX_IDLE_DAYS = 800

Interval = tuple[int, int]  # [start, end) in minutes after local midnight; end <= 1440


class CalendarError(ValueError):
    """The calendar description is unusable (unknown zone, overlapping or empty hours)."""


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(f"unknown time zone {name!r}") from exc


def parse_hhmm(value: str) -> int:
    """'09:30' → 570 minutes; '24:00' is allowed as the end of a day."""
    hours, sep, minutes = value.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise CalendarError(f"time {value!r} is not HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > MINUTES_PER_DAY:
        raise CalendarError(f"time {value!r} is out of range")
    return total


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    ordered = sorted(intervals)
    for start, end in ordered:
        if not 0 <= start < end <= MINUTES_PER_DAY:
            raise CalendarError("each opening interval needs 00:00 <= start < end <= 24:00")
    for (_, end_a), (start_b, _) in pairwise(ordered):
        if start_b < end_a:
            raise CalendarError("opening intervals of one day overlap")
    return tuple(ordered)


@dataclass(frozen=True)
class WorkingCalendar:
    """Weekly hours (Monday first) in the local time of `time_zone`, minus `holidays`."""

    time_zone: str = "UTC"
    weekly: tuple[tuple[Interval, ...], ...] = field(
        default_factory=lambda: tuple(((0, MINUTES_PER_DAY),) for _ in range(7))
    )
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise CalendarError("weekly hours need seven days, Monday first")
        object.__setattr__(self, "weekly", tuple(_normalise(day) for day in self.weekly))
        if not any(self.weekly):
            raise CalendarError("a calendar needs some working hours in the week")
        _zone(self.time_zone)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def always(cls) -> WorkingCalendar:
        """24 hours a day, 7 days a week, no holidays (the default SLA calendar)."""
        return cls()

    @classmethod
    def from_spec(
        cls,
        time_zone: str,
        weekly_hours: Mapping[str, Sequence[Sequence[str]]],
        holidays: Iterable[date | str] = (),
    ) -> WorkingCalendar:
        """From the stored shape: {"mon": [["09:00", "17:00"]], ...}; missing days are closed."""
        unknown = set(weekly_hours) - set(WEEKDAYS)
        if unknown:
            raise CalendarError(f"unknown weekday keys: {sorted(unknown)}")
        weekly: list[tuple[Interval, ...]] = []
        for day in WEEKDAYS:
            spans = []
            for pair in weekly_hours.get(day, ()):
                if len(pair) != 2:
                    raise CalendarError("each opening interval is [start, end]")
                spans.append((parse_hhmm(pair[0]), parse_hhmm(pair[1])))
            weekly.append(tuple(spans))
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in holidays)
        return cls(time_zone, tuple(weekly), days)

    @property
    def is_always(self) -> bool:
        return not self.holidays and all(day == ((0, MINUTES_PER_DAY),) for day in self.weekly)

    # --- queries --------------------------------------------------------------------------
    def is_working(self, at: datetime) -> bool:
        """Whether `at` (aware) is inside working hours, judged on the local wall clock."""
        local = _aware(at).astimezone(_zone(self.time_zone))
        if local.date() in self.holidays:
            return False
        minute_of_day = local.hour * 60 + local.minute
        # Seconds matter at an interval's end: 16:59:30 is working, 17:00:00 is not.
        offset = minute_of_day + (local.second + local.microsecond / 1e6) / 60
        return any(start <= offset < end for start, end in self.weekly[local.weekday()])

    def working_segments(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working time from `start` on, as ascending, disjoint UTC [begin, end) spans.

        Raises CalendarError when no working time follows for `_MAX_IDLE_DAYS` days."""
        cursor = _aware(start).astimezone(UTC)
        if self.is_always:
            yield cursor, datetime.max.replace(tzinfo=UTC)
            return
        zone = _zone(self.time_zone)
        idle_since = cursor
        while True:
            piece_end, offset = _constant_offset_piece(zone, cursor)
            produced = False
            for begin, end in self._segments_in_piece(cursor, piece_end, offset):
                produced = True
                yield begin, end
            if produced:
                idle_since = piece_end
            elif piece_end - idle_since > timedelta(days=_MAX_IDLE_DAYS):
                raise CalendarError("the calendar has no working time ahead")
            cursor = piece_end

    def _segments_in_piece(
        self, lo: datetime, hi: datetime, offset: timedelta
    ) -> Iterator[tuple[datetime, datetime]]:
        """Within [lo, hi), where local time = UTC + offset exactly."""
        first = (lo + offset).date()
        last = (hi + offset).date()
        day = first
        while day <= last:
            if day not in self.holidays:
                midnight = datetime.combine(day, time(), tzinfo=UTC) - offset
                for start_min, end_min in self.weekly[day.weekday()]:
                    begin = max(lo, midnight + timedelta(minutes=start_min))
                    end = min(hi, midnight + timedelta(minutes=end_min))
                    if begin < end:
                        yield begin, end
            day += _DAY

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which `duration` of working time has passed since `start`.

        A zero duration returns `start` itself. For a positive duration the result is the
        end of the last working span used, so the moment just before it is working time.
        """
        if duration < timedelta(0):
            raise ValueError("duration must not be negative")
        start = _aware(start).astimezone(UTC)
        if duration == timedelta(0):
            return start
        remaining = duration
        for begin, end in self.working_segments(start):
            span = end - begin
            if remaining <= span:
                return begin + remaining
            remaining -= span
        raise CalendarError("unreachable: working_segments is infinite")  # pragma: no cover

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time inside [a, b); zero when b <= a."""
        a = _aware(a).astimezone(UTC)
        b = _aware(b).astimezone(UTC)
        total = timedelta(0)
        if b <= a:
            return total
        if self.is_always:
            return b - a
        for begin, end in self.working_segments(a):
            if begin >= b:
                break
            total += min(end, b) - begin
        return total


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("business-hours arithmetic needs timezone-aware datetimes")
    return value


def _constant_offset_piece(zone: ZoneInfo, start: datetime) -> tuple[datetime, timedelta]:
    """(end, offset): the UTC offset of `zone` is `offset` on all of [start, end).

    Pieces are at most a day long; a change of offset inside the day is found by bisection
    to the second (zone transitions fall on whole seconds). Two changes within one day that
    cancel each other out would be missed; no time zone in the database does that.
    """
    offset = _offset(zone, start)
    probe = start + _DAY
    if _offset(zone, probe) == offset:
        return probe, offset
    lo, hi = start, probe  # offset(lo) == offset, offset(hi) != offset
    while hi - lo > _SECOND:
        mid = lo + (hi - lo) / 2
        if _offset(zone, mid) == offset:
            lo = mid
        else:
            hi = mid
    # Land on the whole second at which the new offset starts.
    edge = hi.replace(microsecond=0)
    if _offset(zone, edge) == offset:
        edge += _SECOND
    return edge, offset


def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    value = at.astimezone(zone).utcoffset()
    if value is None:  # pragma: no cover - ZoneInfo always answers for aware datetimes
        raise CalendarError("time zone gave no offset")
    return value
