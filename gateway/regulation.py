"""The regulation's rules, pure: the order of the steps at the provider, what the applicant is told, and
every deadline with its due time on the working calendar. No storage, no clock of its own: callers pass
the application, its timeline and "now".

The steps (the regulation's section 2, item 5): REGISTERED, SENT_TO_MANAGEMENT, RETURNED_FOR_PREPARATION,
RESULT_PREPARED, SIGNED (recorded only by uploading the signed result), ISSUED, and DELIVERED for Center
applications only.

Deadlines (`[step_limits]` and `[terms]` in the configuration), each on the working calendar:
| bounds | counted from | limit |
| REGISTERED, SENT_TO_MANAGEMENT | receipt | `register_minutes` working minutes (10) |
| RETURNED_FOR_PREPARATION | SENT_TO_MANAGEMENT | `review_minutes` working minutes (30) |
| RESULT_PREPARED | receipt | the Standard's term: `terms[service_type]` working days, i.e. the
|   |   | application's `due_at` as promised at intake |
| SIGNED | RESULT_PREPARED | within that working day (its `work_end`) |
| ISSUED | SIGNED | `issue_minutes` working minutes (10) |
The regulation counts the term "from registration"; registration itself is due within 10 working minutes
of receipt, so both give the same day unless registration is late, and a late registration must not
lengthen the applicant's term. So the term is counted from receipt, and equals the `dueAt` the
applicant was given in the intake receipt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.domain import Channel, ServiceType, Status, Step
from gateway.calendar import WorkingCalendar
from gateway.config import Config, StepLimitsConfig
from gateway.storage import ApplicationRecord, StepRecord

ORDER: tuple[Step, ...] = (
    Step.REGISTERED, Step.SENT_TO_MANAGEMENT, Step.RETURNED_FOR_PREPARATION, Step.RESULT_PREPARED,
    Step.SIGNED, Step.ISSUED, Step.DELIVERED,
)
# The status a step gives the application, where it changes it (the result upload gives GRANTED/REFUSED).
STEP_STATUS: dict[Step, Status] = {Step.REGISTERED: Status.REGISTERED, Step.SENT_TO_MANAGEMENT: Status.IN_REVIEW}


def applicant_status(app: ApplicationRecord) -> Status:
    """What the applicant's front end may be told. A signed result is published only when the authorized
    employee issues it (step 6 of the regulation), so between SIGNED and ISSUED the applicant still sees
    IN_REVIEW, and the result is not handed out; the provider's own API shows GRANTED/REFUSED at once."""
    if app.status in (Status.GRANTED, Status.REFUSED) and app.last_step is Step.SIGNED:
        return Status.IN_REVIEW
    return app.status


def allowed_next_steps(last_step: Step | None, channel: Channel, status: Status | None = None) -> tuple[Step, ...]:
    """The steps that may come after `last_step` (SIGNED is recorded by the result upload only). An
    application refused at intake never reached the provider: no step applies to it."""
    if status is Status.INTAKE_REFUSED:
        return ()
    if last_step is None:
        return (Step.REGISTERED,)
    if last_step is Step.ISSUED:
        return (Step.DELIVERED,) if channel is Channel.CENTER else ()
    if last_step is Step.DELIVERED:
        return ()
    return (ORDER[ORDER.index(last_step) + 1],)


def out_of_order(app: ApplicationRecord, step: Step, allowed: tuple[Step, ...]) -> str:
    """Why `step` cannot be recorded now, in words for the provider's IS."""
    last = app.last_step.value if app.last_step else "none"
    if app.status is Status.INTAKE_REFUSED:
        return "the application was refused at intake (incomplete documents); it has no steps"
    if step is Step.DELIVERED and app.channel is not Channel.CENTER:
        return f"DELIVERED is for Center applications only; this one came through {app.channel.value}"
    nxt = ", ".join(s.value for s in allowed) or "none (the application is finished)"
    return f"{step.value} cannot follow {last}; allowed next: {nxt}"


class DeadlineState(StrEnum):
    PENDING = "PENDING"  # not done yet, not overdue (or not started: its due time is not known yet)
    MET = "MET"
    BREACHED = "BREACHED"  # done late, or not done and overdue


@dataclass(frozen=True, slots=True)
class Deadline:
    step: Step  # the step this limit bounds
    counted_from: str  # "RECEIVED" or the step it runs from
    limit: str  # e.g. "10 working minutes", "13 working days", "within the working day"
    due_at: datetime | None  # None until the event it runs from has happened
    done_at: datetime | None
    state: DeadlineState

    @property
    def breached(self) -> bool:
        return self.state is DeadlineState.BREACHED


class Regulation:
    """The time limits of the regulation on one working calendar (see the module docstring)."""

    def __init__(self, calendar: WorkingCalendar, step_limits: StepLimitsConfig, terms: Mapping[str, int]) -> None:
        self.calendar = calendar
        self.step_limits = step_limits
        self.terms = dict(terms)

    def term_due(self, received_at: datetime, service_type: ServiceType) -> datetime:
        """When the result is due: the Standard's term in working days, counted from receipt."""
        return self.calendar.term_deadline(received_at, self.terms.get(service_type.value, 0))

    def deadlines(self, app: ApplicationRecord, timeline: list[StepRecord], now: datetime) -> list[Deadline]:
        """Every deadline of the application, with its due time and whether it was met."""
        if app.status is Status.INTAKE_REFUSED:
            return []  # never reached the provider
        cal, limits = self.calendar, self.step_limits
        done: dict[Step, datetime] = {}
        for record in timeline:
            done.setdefault(record.step, record.at)
        term = self.terms.get(app.service_type.value, 0)
        due_term = app.due_at or cal.term_deadline(app.received_at, term)
        register_due = cal.add_working_minutes(app.received_at, limits.register_minutes)
        sent = done.get(Step.SENT_TO_MANAGEMENT)
        prepared = done.get(Step.RESULT_PREPARED)
        signed = done.get(Step.SIGNED)
        rows = [
            (Step.REGISTERED, "RECEIVED", f"{limits.register_minutes} working minutes", register_due),
            (Step.SENT_TO_MANAGEMENT, "RECEIVED", f"{limits.register_minutes} working minutes", register_due),
            (Step.RETURNED_FOR_PREPARATION, Step.SENT_TO_MANAGEMENT.value, f"{limits.review_minutes} working minutes",
             cal.add_working_minutes(sent, limits.review_minutes) if sent else None),
            (Step.RESULT_PREPARED, "RECEIVED", f"{term} working days", due_term),
            (Step.SIGNED, Step.RESULT_PREPARED.value, "within the working day",
             cal.end_of_working_day(prepared) if prepared else None),
            (Step.ISSUED, Step.SIGNED.value, f"{limits.issue_minutes} working minutes",
             cal.add_working_minutes(signed, limits.issue_minutes) if signed else None),
        ]
        return [Deadline(step, origin, limit, due, done.get(step), _state(due, done.get(step), now))
                for step, origin, limit, due in rows]


def regulation_of(config: Config) -> Regulation:
    """The regulation as a configuration sets it: its calendar, step limits and terms."""
    return Regulation(WorkingCalendar(config.calendar), config.step_limits, config.terms)


def _state(due: datetime | None, done_at: datetime | None, now: datetime) -> DeadlineState:
    if due is None:
        return DeadlineState.PENDING
    if done_at is not None:
        return DeadlineState.MET if done_at <= due else DeadlineState.BREACHED
    return DeadlineState.BREACHED if now > due else DeadlineState.PENDING
