"""Kazakhstan's working calendar: which days are working days, working hours, and the regulation's terms.

The one calendar of licgate (intake computes `due_at` with it, the workflow every step's deadline).
Public holidays come from the `holidays` package (`holidays.country_holidays("KZ")`, which includes the
observed days that move a holiday falling on a weekend to the next weekday, and the decreed
substitutions it knows); `[calendar] extra_days_off` adds days declared non-working by decree and
`extra_working_days` makes days working that would not be (a Saturday worked in exchange for a bridge
day). A working day has two working periods: `work_start`-`break_start` and `break_end`-`work_end`.

All public methods take and return aware datetimes in UTC; the arithmetic happens in the configured
zone (Asia/Almaty, UTC+5, which has no daylight saving time).

How a term in days is counted (docs/provider-api.md, Civil Code art. 178), as this module reads it:
1. The moment of receipt is first moved to the start of the next working period when it falls outside
   working hours: after hours, before hours, on a day off, or during the lunch break (for the break
   this moves it to `break_end` of the same day, which does not change the day).
2. The term starts on the day after the (moved) day of receipt: that day itself is never counted, even
   when receipt moved to 09:00 of it. So an application received on Friday 19:00 or on Saturday counts
   as received on Monday 09:00, and a 13-day term runs from Tuesday: it ends like one received on Monday
   at 11:00. (Counting Monday itself would give applications submitted after hours a day less than those
   submitted on Monday morning; art. 178 counts from the day after the event.)
3. The term ends at `work_end` of its N-th working day.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from gateway.config import CalendarConfig

_ONE_DAY = timedelta(days=1)


def _substitution_sources(year: int) -> set[date]:
    """The days worked in exchange for the substituted days off that the `holidays` package lists under
    `year`: entries (to_month, to_day, from_month, from_day[, from_year]) of its static data."""
    table = getattr(holidays.country_holidays("KZ", years=year), "special_public_holidays", {}) or {}
    entries = table.get(year, ())
    if entries and isinstance(entries[0], int):
        entries = (entries,)
    sources = set()
    for entry in entries:
        if len(entry) >= 4:
            sources.add(date(entry[4] if len(entry) > 4 else year, entry[2], entry[3]))
    return sources


class WorkingCalendar:
    def __init__(self, cfg: CalendarConfig) -> None:
        self._cfg = cfg
        self._tz = cfg.tz
        self._extra_off = frozenset(cfg.extra_days_off)
        self._extra_working = frozenset(cfg.extra_working_days)
        self._holidays_by_year: dict[int, tuple[frozenset[date], frozenset[date]]] = {}
        # The holidays package fills its years lazily (mutating the object); the calendar is shared by
        # request threads and the delivery worker, so years are materialised once under a lock.
        self._lock = threading.Lock()
        self._term_end_days: dict[tuple[date, int], date] = {}

    @property
    def timezone(self) -> ZoneInfo:
        return self._tz

    # -- days ------------------------------------------------------------------------------------------

    def public_holidays(self, year: int) -> frozenset[date]:
        """Kazakhstan's public holidays of `year` with their observed (transferred) days."""
        return self._year(year)[0]

    def transferred_working_days(self, year: int) -> frozenset[date]:
        """Weekend days of `year` worked in exchange for a bridge day off, as decreed (e.g. Saturday
        4 May 2024 for Wednesday 8 May). The `holidays` package lists the day off with the day it was
        substituted from; that source day is a working day, though the package has no category for it."""
        return self._year(year)[1]

    def _year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        with self._lock:
            known = self._holidays_by_year.get(year)
            if known is None:
                # A day worked in December may pay for a day off listed under the next year.
                sources = _substitution_sources(year) | _substitution_sources(year + 1)
                known = (frozenset(holidays.country_holidays("KZ", years=year).keys()),
                         frozenset(d for d in sources if d.year == year))
                self._holidays_by_year[year] = known
            return known

    def is_working_day(self, day: date) -> bool:
        if day in self._extra_working:
            return True
        if day in self._extra_off:
            return False
        if day in self.transferred_working_days(day.year):
            return True
        if day.weekday() >= 5:
            return False
        return day not in self.public_holidays(day.year)

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        day += _ONE_DAY
        while not self.is_working_day(day):
            day += _ONE_DAY
        return day

    # -- moments -----------------------------------------------------------------------------------------

    def effective_start(self, at: datetime) -> datetime:
        """`at` if it lies in a working period, else the start of the next working period."""
        local = self._local(at)
        day = local.date()
        if self.is_working_day(day):
            for start, end in self._periods(day):
                if local < end:
                    return max(local, start).astimezone(UTC)
        return self._periods(self.next_working_day(day))[0][0].astimezone(UTC)

    def add_working_minutes(self, at: datetime, minutes: float) -> datetime:
        """The moment `minutes` of working time after `at`, skipping the break, nights and days off.

        A result that lands exactly on the end of a working period stays there (a limit ending at 13:00
        ends at 13:00, not at 14:30)."""
        if minutes < 0:
            raise ValueError("minutes must not be negative")
        remaining = timedelta(minutes=minutes)
        current = self._local(self.effective_start(at))
        while True:
            end = self._period_end(current)
            available = end - current
            if remaining <= available:
                return (current + remaining).astimezone(UTC)
            remaining -= available
            current = self._local(self.effective_start(end))

    def end_of_working_day(self, at: datetime) -> datetime:
        """`work_end` of the working day `at` belongs to ("within the working day"); a moment outside
        working hours belongs to the next working period's day."""
        day = self._local(self.effective_start(at)).date()
        return self._at(day, self._cfg.work_end).astimezone(UTC)

    def term_deadline(self, received_at: datetime, working_days: int) -> datetime:
        """The end of a term of `working_days` working days from a receipt (see the module docstring)."""
        if working_days < 0:
            raise ValueError("working_days must not be negative")
        start = self._local(self.effective_start(received_at)).date()
        key = (start, working_days)
        day = self._term_end_days.get(key)
        if day is None:
            # Every application of a day has the same term end: walked once per day, not per application.
            day = start
            for _ in range(working_days):
                day = self.next_working_day(day)
            if len(self._term_end_days) >= 4096:
                self._term_end_days.clear()
            self._term_end_days[key] = day
        return self._at(day, self._cfg.work_end).astimezone(UTC)

    def working_day_of(self, at: datetime) -> date:
        """The local working day whose working hours `at` counts in."""
        return self._local(self.effective_start(at)).date()

    # -- internals ---------------------------------------------------------------------------------

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("the calendar needs aware datetimes")
        return at.astimezone(self._tz)

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self._tz)

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        cfg = self._cfg
        periods = [
            (self._at(day, cfg.work_start), self._at(day, cfg.break_start)),
            (self._at(day, cfg.break_end), self._at(day, cfg.work_end)),
        ]
        return [(s, e) for s, e in periods if s < e]

    def _period_end(self, local: datetime) -> datetime:
        """The end of the working period containing `local` (which must lie in one)."""
        for start, end in self._periods(local.date()):
            if start <= local < end:
                return end
        raise AssertionError(f"{local} is not in a working period")
