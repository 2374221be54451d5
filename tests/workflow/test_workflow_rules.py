"""The regulation's step order and its deadlines, checked against hand-computed dates (Astana time)."""

from __future__ import annotations

import pytest

from core.domain import Channel, ServiceType, Step
from gateway.config import Config
from gateway.regulation import DeadlineState, Regulation, allowed_next_steps, regulation_of
from gateway.storage import StepRecord
from tests.workflow.helpers import local, record

MET, BREACHED, PENDING = DeadlineState.MET, DeadlineState.BREACHED, DeadlineState.PENDING


@pytest.fixture
def regulation() -> Regulation:
    return regulation_of(Config())


def steps(*pairs: tuple[Step, object]) -> list[StepRecord]:
    return [StepRecord(step=s, actor="employee", at=at, source="test") for s, at in pairs]  # type: ignore[arg-type]


def by_step(deadlines: list) -> dict[Step, object]:  # noqa: ANN001
    return {d.step: d for d in deadlines}


# -- order -------------------------------------------------------------------------------------------------


def test_the_first_step_is_registration() -> None:
    assert allowed_next_steps(None, Channel.PORTAL) == (Step.REGISTERED,)


def test_steps_follow_the_regulation_in_order() -> None:
    assert allowed_next_steps(Step.REGISTERED, Channel.PORTAL) == (Step.SENT_TO_MANAGEMENT,)
    assert allowed_next_steps(Step.SENT_TO_MANAGEMENT, Channel.PORTAL) == (Step.RETURNED_FOR_PREPARATION,)
    assert allowed_next_steps(Step.RETURNED_FOR_PREPARATION, Channel.PORTAL) == (Step.RESULT_PREPARED,)
    assert allowed_next_steps(Step.RESULT_PREPARED, Channel.PORTAL) == (Step.SIGNED,)
    assert allowed_next_steps(Step.SIGNED, Channel.PORTAL) == (Step.ISSUED,)


def test_delivered_follows_issued_only_for_center_applications() -> None:
    assert allowed_next_steps(Step.ISSUED, Channel.CENTER) == (Step.DELIVERED,)
    assert allowed_next_steps(Step.ISSUED, Channel.PORTAL) == ()
    assert allowed_next_steps(Step.ISSUED, Channel.ELICENSE) == ()
    assert allowed_next_steps(Step.DELIVERED, Channel.CENTER) == ()


# -- deadlines ----------------------------------------------------------------------------------------------


def test_every_deadline_of_a_friday_application_spanning_the_lunch_break_and_independence_day(
        regulation: Regulation) -> None:
    app = record(received_at=local(2026, 11, 27, 12, 55))  # Friday, 5 minutes before the break
    timeline = steps(
        (Step.REGISTERED, local(2026, 11, 27, 13, 10)),  # during the break: before its 14:35 limit
        (Step.SENT_TO_MANAGEMENT, local(2026, 11, 27, 14, 40)),  # 5 minutes late
        (Step.RETURNED_FOR_PREPARATION, local(2026, 11, 27, 15, 5)),
        (Step.RESULT_PREPARED, local(2026, 12, 17, 18, 0)),
        (Step.SIGNED, local(2026, 12, 17, 18, 45)),  # after the end of that working day
        (Step.ISSUED, local(2026, 12, 18, 9, 8)),
    )
    d = by_step(regulation.deadlines(app, timeline, local(2026, 12, 18, 10, 0)))
    # 12:55 + 10 working minutes = 13:00 + 5 after the 13:00-14:30 break.
    assert d[Step.REGISTERED].due_at == local(2026, 11, 27, 14, 35)
    assert d[Step.REGISTERED].state is MET
    assert d[Step.SENT_TO_MANAGEMENT].due_at == local(2026, 11, 27, 14, 35)
    assert d[Step.SENT_TO_MANAGEMENT].state is BREACHED
    assert d[Step.RETURNED_FOR_PREPARATION].due_at == local(2026, 11, 27, 15, 10)
    assert d[Step.RETURNED_FOR_PREPARATION].state is MET
    # 13 working days after Friday 27 Nov, 16 Dec (Independence Day) skipped: Thursday 17 Dec.
    assert d[Step.RESULT_PREPARED].due_at == local(2026, 12, 17, 18, 30)
    assert d[Step.RESULT_PREPARED].state is MET
    assert d[Step.SIGNED].due_at == local(2026, 12, 17, 18, 30)
    assert d[Step.SIGNED].state is BREACHED
    # Signed after hours: the 10 minutes run from Friday 18 Dec 09:00.
    assert d[Step.ISSUED].due_at == local(2026, 12, 18, 9, 10)
    assert d[Step.ISSUED].state is MET


def test_a_deadline_not_yet_due_is_pending_and_an_overdue_one_is_breached(regulation: Regulation) -> None:
    app = record(received_at=local(2026, 3, 20, 17, 0), service_type=ServiceType.DUPLICATE)
    before = by_step(regulation.deadlines(app, [], local(2026, 3, 20, 17, 5)))
    assert before[Step.REGISTERED].due_at == local(2026, 3, 20, 17, 10)
    assert before[Step.REGISTERED].state is PENDING
    assert before[Step.RETURNED_FOR_PREPARATION].due_at is None
    after = by_step(regulation.deadlines(app, [], local(2026, 3, 26, 9, 0)))
    assert after[Step.REGISTERED].state is BREACHED
    # A duplicate's 2 working days skip Nauryz (21-25 March): Thursday 26 and Friday 27.
    assert after[Step.RESULT_PREPARED].due_at == local(2026, 3, 27, 18, 30)
    assert after[Step.RESULT_PREPARED].state is PENDING


def test_a_new_year_application_registers_after_the_holidays(regulation: Regulation) -> None:
    app = record(received_at=local(2025, 12, 31, 18, 25), service_type=ServiceType.REISSUE)
    d = by_step(regulation.deadlines(app, [], local(2025, 12, 31, 18, 26)))
    # 5 minutes on 31 Dec, then 1-2 Jan (holidays) and the weekend: Monday 5 Jan 09:05.
    assert d[Step.REGISTERED].due_at == local(2026, 1, 5, 9, 5)
    # 3 working days: 5 (1), 6 (2), 7 Christmas, 8 (3).
    assert d[Step.RESULT_PREPARED].due_at == local(2026, 1, 8, 18, 30)


def test_the_standard_term_is_the_due_date_promised_at_intake(regulation: Regulation) -> None:
    promised = local(2026, 12, 21, 18, 30)
    app = record(received_at=local(2026, 11, 27, 11, 0), due_at=promised)
    d = by_step(regulation.deadlines(app, [], local(2026, 11, 27, 11, 1)))
    assert d[Step.RESULT_PREPARED].due_at == promised


def test_review_within_30_working_minutes_of_sending_during_the_lunch_break(regulation: Regulation) -> None:
    app = record(received_at=local(2026, 12, 1, 12, 45))
    timeline = steps((Step.REGISTERED, local(2026, 12, 1, 12, 50)),
                     (Step.SENT_TO_MANAGEMENT, local(2026, 12, 1, 13, 20)))
    d = by_step(regulation.deadlines(app, timeline, local(2026, 12, 1, 14, 40)))
    assert d[Step.RETURNED_FOR_PREPARATION].due_at == local(2026, 12, 1, 15, 0)
    assert d[Step.RETURNED_FOR_PREPARATION].state is PENDING
    # 12:45 + 10 working minutes = 12:55, long before the step at 13:20.
    assert d[Step.SENT_TO_MANAGEMENT].due_at == local(2026, 12, 1, 12, 55)
    assert d[Step.SENT_TO_MANAGEMENT].state is BREACHED
