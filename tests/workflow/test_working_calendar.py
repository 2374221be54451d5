"""Kazakhstan's working calendar and the counting of the regulation's terms, against hand-computed dates.

Every expected value below was counted by hand on a paper calendar of 2025-2026 (Astana time, UTC+5).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from gateway.calendar import WorkingCalendar
from gateway.config import CalendarConfig

ALMATY = timezone(timedelta(hours=5))


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    """A moment written in Astana time, as the calendar's users write it."""
    return datetime(y, m, d, hh, mm, tzinfo=ALMATY)


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar(CalendarConfig())


# -- days ---------------------------------------------------------------------------------------------


def test_nauryz_2026_and_its_observed_days_are_days_off(cal: WorkingCalendar) -> None:
    # 21 (Sat), 22 (Sun), 23 (Mon); the weekend ones are observed on 24 (Tue) and 25 (Wed).
    for day in range(21, 26):
        assert not cal.is_working_day(date(2026, 3, day)), day
    assert cal.is_working_day(date(2026, 3, 20))
    assert cal.is_working_day(date(2026, 3, 26))


def test_new_year_and_orthodox_christmas_2026_are_days_off(cal: WorkingCalendar) -> None:
    assert not cal.is_working_day(date(2026, 1, 1))
    assert not cal.is_working_day(date(2026, 1, 2))
    assert not cal.is_working_day(date(2026, 1, 7))
    assert cal.is_working_day(date(2026, 1, 5))


def test_weekends_are_days_off(cal: WorkingCalendar) -> None:
    assert not cal.is_working_day(date(2026, 11, 28))  # Saturday
    assert not cal.is_working_day(date(2026, 11, 29))  # Sunday
    assert cal.is_working_day(date(2026, 11, 30))


def test_an_extra_working_day_makes_a_saturday_working() -> None:
    cal = WorkingCalendar(CalendarConfig(extra_working_days=(date(2026, 3, 28),)))
    assert cal.is_working_day(date(2026, 3, 28))
    assert cal.effective_start(local(2026, 3, 28, 10, 0)) == local(2026, 3, 28, 10, 0)


def test_an_extra_day_off_makes_a_weekday_non_working() -> None:
    cal = WorkingCalendar(CalendarConfig(extra_days_off=(date(2026, 12, 3),)))
    assert not cal.is_working_day(date(2026, 12, 3))


# -- moments ------------------------------------------------------------------------------------------


def test_a_moment_in_working_hours_is_its_own_effective_start(cal: WorkingCalendar) -> None:
    assert cal.effective_start(local(2026, 12, 1, 10, 15)) == local(2026, 12, 1, 10, 15)


def test_a_moment_in_the_lunch_break_starts_at_the_end_of_the_break(cal: WorkingCalendar) -> None:
    assert cal.effective_start(local(2026, 12, 1, 13, 0)) == local(2026, 12, 1, 14, 30)
    assert cal.effective_start(local(2026, 12, 1, 14, 29)) == local(2026, 12, 1, 14, 30)


def test_a_moment_after_hours_starts_the_next_working_morning(cal: WorkingCalendar) -> None:
    assert cal.effective_start(local(2026, 12, 1, 18, 30)) == local(2026, 12, 2, 9, 0)
    assert cal.effective_start(local(2026, 12, 1, 7, 0)) == local(2026, 12, 1, 9, 0)
    # Friday evening -> Monday morning; the eve of Nauryz -> the Thursday after it.
    assert cal.effective_start(local(2026, 11, 27, 20, 0)) == local(2026, 11, 30, 9, 0)
    assert cal.effective_start(local(2026, 3, 20, 19, 0)) == local(2026, 3, 26, 9, 0)


def test_results_are_utc(cal: WorkingCalendar) -> None:
    result = cal.effective_start(local(2026, 12, 1, 10, 15))
    assert result.utcoffset() == timedelta(0)
    assert result == datetime(2026, 12, 1, 5, 15, tzinfo=UTC)


def test_naive_datetimes_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError):
        cal.effective_start(datetime(2026, 12, 1, 10, 0))


# -- working minutes ------------------------------------------------------------------------------------


def test_ten_working_minutes_inside_a_period(cal: WorkingCalendar) -> None:
    assert cal.add_working_minutes(local(2026, 12, 1, 10, 0), 10) == local(2026, 12, 1, 10, 10)


def test_working_minutes_skip_the_lunch_break(cal: WorkingCalendar) -> None:
    # 12:50 + 30 working minutes: 10 before the break, 20 after it.
    assert cal.add_working_minutes(local(2026, 12, 1, 12, 50), 30) == local(2026, 12, 1, 14, 50)


def test_a_step_done_during_the_lunch_break_counts_from_the_end_of_the_break(cal: WorkingCalendar) -> None:
    # Sent to management at 13:20: the 30-minute review limit runs from 14:30.
    assert cal.add_working_minutes(local(2026, 12, 1, 13, 20), 30) == local(2026, 12, 1, 15, 0)


def test_a_limit_ending_exactly_at_the_break_ends_at_the_break(cal: WorkingCalendar) -> None:
    assert cal.add_working_minutes(local(2026, 12, 1, 12, 50), 10) == local(2026, 12, 1, 13, 0)


def test_working_minutes_skip_the_night_and_the_weekend(cal: WorkingCalendar) -> None:
    # Friday 18:25 + 10: 5 minutes on Friday, 5 on Monday.
    assert cal.add_working_minutes(local(2026, 11, 27, 18, 25), 10) == local(2026, 11, 30, 9, 5)


def test_working_minutes_skip_nauryz(cal: WorkingCalendar) -> None:
    assert cal.add_working_minutes(local(2026, 3, 20, 18, 20), 30) == local(2026, 3, 26, 9, 20)


# -- within the working day ------------------------------------------------------------------------------


def test_within_the_working_day_ends_at_the_end_of_working_hours(cal: WorkingCalendar) -> None:
    assert cal.end_of_working_day(local(2026, 12, 1, 17, 0)) == local(2026, 12, 1, 18, 30)
    assert cal.end_of_working_day(local(2026, 12, 1, 13, 30)) == local(2026, 12, 1, 18, 30)


def test_within_the_working_day_after_hours_means_the_next_working_day(cal: WorkingCalendar) -> None:
    assert cal.end_of_working_day(local(2026, 11, 27, 19, 0)) == local(2026, 11, 30, 18, 30)


# -- terms in working days ---------------------------------------------------------------------------------


def test_issue_received_friday_morning_is_due_at_the_end_of_the_13th_working_day_after_it(
    cal: WorkingCalendar,
) -> None:
    # Working days after Fri 27 Nov 2026: Nov 30, Dec 1-4, 7-11, 14, 15, (16 Independence Day), 17 = 13th.
    assert cal.term_deadline(local(2026, 11, 27, 11, 0), 13) == local(2026, 12, 17, 18, 30)


def test_friday_afternoon_submission_counts_friday_as_the_day_of_receipt(cal: WorkingCalendar) -> None:
    assert cal.term_deadline(local(2026, 11, 27, 16, 45), 13) == local(2026, 12, 17, 18, 30)


def test_friday_evening_submission_counts_as_received_monday_and_the_term_starts_tuesday(
    cal: WorkingCalendar,
) -> None:
    # Received Mon 30 Nov 09:00 (moved); 13 working days from Tue 1 Dec, skipping 16 Dec: Fri 18 Dec.
    assert cal.term_deadline(local(2026, 11, 27, 18, 45), 13) == local(2026, 12, 18, 18, 30)
    assert cal.term_deadline(local(2026, 11, 28, 12, 0), 13) == local(2026, 12, 18, 18, 30)


def test_a_term_spanning_nauryz_skips_all_five_days(cal: WorkingCalendar) -> None:
    # Received Fri 20 Mar 2026: 26 (1), 27 (2), 30, 31, Apr 1, 2, 3, 6, 7, 8, 9, 10, 13 (13).
    assert cal.term_deadline(local(2026, 3, 20, 10, 0), 13) == local(2026, 4, 13, 18, 30)
    # A duplicate (2 days) received the same Friday afternoon: Thu 26 and Fri 27 March.
    assert cal.term_deadline(local(2026, 3, 20, 17, 0), 2) == local(2026, 3, 27, 18, 30)


def test_a_term_spanning_new_year_skips_the_holidays_and_christmas(cal: WorkingCalendar) -> None:
    # Received Wed 31 Dec 2025: Jan 1, 2 (holidays), 3, 4 (weekend), 5 (1), 6 (2), 7 (Christmas), 8 (3).
    assert cal.term_deadline(local(2025, 12, 31, 15, 0), 3) == local(2026, 1, 8, 18, 30)


def test_received_on_a_holiday_counts_as_received_the_next_working_morning(cal: WorkingCalendar) -> None:
    # Received on 1 Jan 2026 -> Mon 5 Jan 09:00; the term runs from Tue 6: 6 (1), 8 (2), 9 (3).
    assert cal.term_deadline(local(2026, 1, 1, 10, 0), 3) == local(2026, 1, 9, 18, 30)


def test_a_saturday_made_working_counts_in_a_term() -> None:
    cal = WorkingCalendar(CalendarConfig(extra_working_days=(date(2026, 3, 28),)))
    # As the Nauryz case, but Sat 28 Mar is the 3rd working day: the 13th is Fri 10 Apr.
    assert cal.term_deadline(local(2026, 3, 20, 10, 0), 13) == local(2026, 4, 10, 18, 30)


def test_an_extra_day_off_lengthens_a_term() -> None:
    cal = WorkingCalendar(CalendarConfig(extra_days_off=(date(2026, 12, 3),)))
    assert cal.term_deadline(local(2026, 11, 27, 11, 0), 13) == local(2026, 12, 18, 18, 30)


def test_configured_working_hours_are_used() -> None:
    cal = WorkingCalendar(CalendarConfig(work_start=time(8, 0), work_end=time(17, 0),
                                         break_start=time(12, 0), break_end=time(13, 0)))
    assert cal.term_deadline(local(2026, 11, 27, 11, 0), 2) == local(2026, 12, 1, 17, 0)
    assert cal.add_working_minutes(local(2026, 12, 1, 11, 55), 10) == local(2026, 12, 1, 13, 5)
    assert cal.effective_start(local(2026, 12, 1, 17, 0)) == local(2026, 12, 2, 8, 0)


def test_a_saturday_worked_for_a_bridge_day_off_is_a_working_day_by_default() -> None:
    # Government decree for 2024: Wednesday 8 May off, Saturday 4 May worked instead. The `holidays`
    # package lists 8 May as "substituted from 04.05.2024"; the Saturday must count as a working day.
    cal = WorkingCalendar(CalendarConfig())
    assert cal.is_working_day(date(2024, 5, 4))
    assert not cal.is_working_day(date(2024, 5, 8))
    assert date(2024, 5, 4) in cal.transferred_working_days(2024)


def test_a_term_counts_the_worked_saturday() -> None:
    cal = WorkingCalendar(CalendarConfig())
    # DUPLICATE (2 working days) received Friday 3 May 2024 11:00: day 1 is Saturday 4 May (worked),
    # day 2 is Monday 6 May.
    due = cal.term_deadline(local(2024, 5, 3, 11, 0).astimezone(UTC), 2)
    assert due == local(2024, 5, 6, 18, 30)


def test_an_extra_day_off_wins_over_a_transferred_working_day() -> None:
    cal = WorkingCalendar(CalendarConfig(extra_days_off=(date(2024, 5, 4),)))
    assert not cal.is_working_day(date(2024, 5, 4))
