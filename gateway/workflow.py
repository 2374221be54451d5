"""The regulation's steps at the provider as a state machine, their time limits, and what each step causes.

Order (CONTRACT section 5, DOMAIN.md section 2): REGISTERED, SENT_TO_MANAGEMENT, RETURNED_FOR_PREPARATION,
RESULT_PREPARED, SIGNED (only by uploading the signed result), ISSUED, and DELIVERED for Center
applications only. Each step is one `storage.apply_transition` call carrying, in the same transaction,
the step, the status change, the outbound message it causes (rendered and WS-Security-signed once, with
its own stable messageId) and the message-log entry of the request that caused it.

What the applicant is told (CONTRACT section 6): REGISTERED -> status REGISTERED and a NOTIFICATION;
SENT_TO_MANAGEMENT -> IN_REVIEW and a NOTIFICATION; the result upload -> GRANTED or REFUSED (recorded,
not sent yet); ISSUED -> one RESPONSE carrying the signed result, the last message; DELIVERED -> recorded.

Deadlines (DOMAIN.md section 2; `[step_limits]` and `[terms]` in config), each on the working calendar:
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

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from adapters.decision import read_decision
from adapters.shep_async import NOTIFICATION, RESPONSE, StatusMessage, render_send_message
from gateway.domain import Channel, Decision, LicenseDecision, Status, Step
from gateway.errors import LicgateError, SchemaInvalid, StepOutOfOrder, StepTimeInvalid
from gateway.storage import (
    ApplicationRecord,
    MessageLogEntry,
    NewOutboxMessage,
    OutboxKind,
    StepRecord,
    Transition,
    TransitionConflict,
)

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("licgate.workflow")

ORDER: tuple[Step, ...] = (
    Step.REGISTERED, Step.SENT_TO_MANAGEMENT, Step.RETURNED_FOR_PREPARATION, Step.RESULT_PREPARED,
    Step.SIGNED, Step.ISSUED, Step.DELIVERED,
)
# A step time may be ahead of the gateway's clock by this much (clocks of the two systems differ).
STEP_TIME_SKEW = timedelta(seconds=120)
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


# -- deadlines -----------------------------------------------------------------------------------------


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


def compute_deadlines(app: ApplicationRecord, timeline: list[StepRecord], gw: Gateway,
                      now: datetime) -> list[Deadline]:
    """Every deadline of the application, with its due time and whether it was met (see module docstring)."""
    if app.status is Status.INTAKE_REFUSED:
        return []  # never reached the provider
    cfg, cal = gw.config, gw.calendar
    limits = cfg.step_limits
    done = {}
    for record in timeline:
        done.setdefault(record.step, record.at)
    term = cfg.terms.get(app.service_type.value, 0)
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


def _state(due: datetime | None, done_at: datetime | None, now: datetime) -> DeadlineState:
    if due is None:
        return DeadlineState.PENDING
    if done_at is not None:
        return DeadlineState.MET if done_at <= due else DeadlineState.BREACHED
    return DeadlineState.BREACHED if now > due else DeadlineState.PENDING


# -- the workflow service --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplicationView:
    app: ApplicationRecord
    timeline: list[StepRecord]
    deadlines: list[Deadline]
    allowed_next_steps: tuple[Step, ...]


class Workflow:
    """Records steps and results of applications; one per gateway process (`gw.components["workflow"]`)."""

    def __init__(self, gw: Gateway, *, verifier_factory: Callable[[], object] | None = None) -> None:
        self.gw = gw
        self._verifier_factory = verifier_factory or self._default_verifier
        self._verifier: object | None = None
        self._verifier_lock = threading.Lock()
        self._counted: set[tuple[str, Step]] = set()  # breaches already counted in /metrics
        self._counted_lock = threading.Lock()
        self._settled: dict[str, tuple[Deadline, ...]] = {}  # issued applications' breaches (final)

    # -- reading ---------------------------------------------------------------------------------------

    def view(self, app: ApplicationRecord) -> ApplicationView:
        return self._view(app, self.gw.storage.timeline(app.id))

    def _view(self, app: ApplicationRecord, timeline: list[StepRecord]) -> ApplicationView:
        deadlines = compute_deadlines(app, timeline, self.gw, self.gw.clock.now())
        self.count_breaches(app, deadlines)
        return ApplicationView(app, timeline, deadlines, allowed_next_steps(app.last_step, app.channel, app.status))

    def _committed_view(self, app: ApplicationRecord, known: list[StepRecord]) -> ApplicationView:
        """The answer to a request whose change is committed. Nothing here may turn that change into an
        error for the caller (its retry would find the step taken and get 409): the timeline is read again
        where it can be, else it is `known` (read before the commit, plus the new step); the deadlines and
        breach counting are best-effort too (the breach monitor counts what is missed here)."""
        try:
            timeline = self.gw.storage.timeline(app.id)
        except Exception:
            log.warning("application %s: timeline not read after the commit; answered from the one read before", app.id,
                        exc_info=True)
            timeline = known
        deadlines: list[Deadline] = []
        try:
            deadlines = compute_deadlines(app, timeline, self.gw, self.gw.clock.now())
            self.count_breaches(app, deadlines)
        except Exception:
            log.warning("application %s: deadlines not computed after the commit", app.id, exc_info=True)
        return ApplicationView(app, timeline, deadlines, allowed_next_steps(app.last_step, app.channel, app.status))

    def breaches(self, provider_bin: str, *, limit: int = 1000) -> list[tuple[ApplicationRecord, Deadline]]:
        """The provider's breached deadlines, oldest application first."""
        found: list[tuple[ApplicationRecord, Deadline]] = []
        for app in self._applications(provider_bin):
            for deadline in self._breached(app):
                found.append((app, deadline))
                if len(found) >= limit:
                    return found
        return found

    def sweep_breaches(self) -> int:
        """Count in /metrics every breach not counted yet (the breach monitor runs this periodically)."""
        before = len(self._counted)
        for provider in self.gw.config.providers:
            for app in self._applications(provider.bin):
                self._breached(app)
        return len(self._counted) - before

    def _breached(self, app: ApplicationRecord) -> tuple[Deadline, ...]:
        """An application's breached deadlines; those of an issued application never change, so they are
        kept rather than computed again from its timeline on every sweep and every breach listing."""
        with self._counted_lock:
            settled = self._settled.get(app.id)
        if settled is not None:
            return settled
        breached = tuple(d for d in self.view(app).deadlines if d.breached)
        if app.last_step in (Step.ISSUED, Step.DELIVERED):
            with self._counted_lock:
                self._settled[app.id] = breached
        return breached

    def count_breaches(self, app: ApplicationRecord, deadlines: list[Deadline]) -> None:
        for deadline in deadlines:
            if deadline.breached:
                key = (app.id, deadline.step)
                with self._counted_lock:
                    if key in self._counted:
                        continue
                    self._counted.add(key)
                self.gw.metrics.deadline_breaches.labels(deadline=deadline.step.value).inc()

    def _applications(self, provider_bin: str) -> Iterator[ApplicationRecord]:
        after: str | None = None
        while True:
            page = self.gw.storage.list_applications(provider_bin, open_only=False, after_id=after, limit=500)
            for app in page:
                if app.status is not Status.INTAKE_REFUSED:
                    yield app
            if len(page) < 500:
                return
            after = page[-1].id

    # -- steps -----------------------------------------------------------------------------------------

    def record_step(self, app: ApplicationRecord, step: Step, actor: str, at: datetime | None, *,
                    source: str, request_body: bytes = b"") -> ApplicationView:
        """Record a step posted by the provider's IS (everything but SIGNED); the application's view after it.

        A repeat of the step just recorded (the last step, with the same actor and `at`) records nothing and
        is answered as the first was, so that the IS may retry when an answer was lost."""
        allowed = allowed_next_steps(app.last_step, app.channel, app.status)
        if step is Step.SIGNED:
            raise StepOutOfOrder("SIGNED is recorded by uploading the signed result (PUT .../result)", allowed)
        before: list[StepRecord] | None = None
        if step is app.last_step and at is not None:
            before = self.gw.storage.timeline(app.id)
            last = before[-1] if before else None
            if last is not None and last.step is step and last.actor == actor and last.at == self._utc(at):
                return self._view(app, before)
        if step not in allowed:
            raise StepOutOfOrder(_out_of_order(app, step, allowed), allowed)
        now = self.gw.clock.now()
        if before is None:
            before = self.gw.storage.timeline(app.id)
        at = self._check_time(app, at, now, before)
        record = StepRecord(step=step, actor=actor, at=at, source=source)
        status = STEP_STATUS.get(step)
        outbox: tuple[NewOutboxMessage, ...] = ()
        if status is not None:  # REGISTERED and IN_REVIEW are told at once
            outbox = (self._message(app, NOTIFICATION, status, changed_at=at, now=now),)
        elif step is Step.ISSUED:
            outbox = (self._message(app, RESPONSE, app.status, changed_at=at, now=now, result=app.result),)
        entry = self._log_entry("provider/steps", app, f"{step.value} RECORDED", request_body, now)
        transition = Transition(step=record, expected_last_step=app.last_step, new_status=status,
                                outbox=outbox, log=(entry,))
        return self._apply(app, transition, step, before)

    def _utc(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            at = at.replace(tzinfo=self.gw.calendar.timezone)  # a bare local time is Astana time
        return at.astimezone(UTC)

    def _check_time(self, app: ApplicationRecord, at: datetime | None, now: datetime,
                    timeline: list[StepRecord]) -> datetime:
        at = now.astimezone(UTC) if at is None else self._utc(at)
        if at > now + STEP_TIME_SKEW:
            raise StepTimeInvalid(f"at {at.isoformat()} is in the future (now {now.isoformat()})")
        previous = self._previous_time(app, timeline)
        # The IS's clock and ours differ a little, and receipts show whole seconds: a step a little before
        # the previous event (within the same skew as for the future) is the IS's word and is kept as said.
        if at < previous - STEP_TIME_SKEW:
            raise StepTimeInvalid(f"at {at.isoformat()} is before the previous event ({previous.isoformat()})")
        return at

    @staticmethod
    def _previous_time(app: ApplicationRecord, timeline: list[StepRecord]) -> datetime:
        return max([app.received_at, *(r.at for r in timeline)])

    # -- results -----------------------------------------------------------------------------------------

    def record_result(self, app: ApplicationRecord, body: bytes, *, source: str) -> ApplicationView:
        """Verify the management's signed `LicenseDecision` and record SIGNED with the decision.

        Raises StepOutOfOrder unless the last step is RESULT_PREPARED (an identical re-upload of the
        result already recorded is answered as the first one was), or the signature, signer and shape
        refusals of CONTRACT section 4 (each logged with its verdict)."""
        if app.result is not None and app.result == body:
            return self.view(app)  # the IS retried an upload that was recorded: same answer, nothing new
        allowed = allowed_next_steps(app.last_step, app.channel, app.status)
        if Step.SIGNED not in allowed:
            raise StepOutOfOrder(_out_of_order(app, Step.SIGNED, allowed), allowed)
        now = self.gw.clock.now()
        try:
            decision, signer_name = self._verified_decision(app, body)
        except LicgateError as exc:
            self.gw.storage.log_messages([self._log_entry("provider/result", app, exc.code, body, now)])
            raise
        before = self.gw.storage.timeline(app.id)
        at = max(now, self._previous_time(app, before))
        record = StepRecord(step=Step.SIGNED, actor=signer_name, at=at, source=source)
        status = Status.GRANTED if decision.decision is Decision.GRANTED else Status.REFUSED
        entry = self._log_entry("provider/result", app, f"SIGNED {decision.decision.value}", body, now)
        transition = Transition(step=record, expected_last_step=app.last_step, new_status=status,
                                decision=decision.decision, result=body, log=(entry,))
        return self._apply(app, transition, Step.SIGNED, before)

    def _verified_decision(self, app: ApplicationRecord, body: bytes) -> tuple[LicenseDecision, str]:
        from signing.binding import check_provider_signer

        verified = self._get_verifier().verify_enveloped(body)  # type: ignore[attr-defined]
        check_provider_signer(verified.signer, app.provider_bin)
        decision = read_decision(verified.root, self.gw.calendar.timezone)
        if decision.registration_number != app.registration_number:
            raise SchemaInvalid(f"LicenseDecision/registrationNumber {decision.registration_number[:40]!r} is "
                                f"not this application's ({app.registration_number})")
        signer = verified.signer
        return decision, f"{signer.common_name} (IIN {signer.iin or '-'})"

    def _get_verifier(self) -> object:
        with self._verifier_lock:
            if self._verifier is None:
                self._verifier = self._verifier_factory()
            return self._verifier

    def _default_verifier(self) -> object:
        # One verifier per process (its CRL index is large): intake's when it has one.
        intake = self.gw.components.get("intake")
        if getattr(intake, "verifier", None) is not None:
            return intake.verifier
        from signing.verifier import build_verifier

        return build_verifier(self.gw.config.trust, self.gw.clock, max_bytes=self.gw.config.server.max_message_bytes)

    # -- internals -------------------------------------------------------------------------------------

    def _apply(self, app: ApplicationRecord, transition: Transition, step: Step,
               before: list[StepRecord]) -> ApplicationView:
        """Commit `transition`; the view after it (`before`: the timeline read before, for the answer)."""
        try:
            updated = self.gw.storage.apply_transition(app.id, transition)
        except TransitionConflict as exc:
            if transition.result is not None:
                current = self.gw.storage.get_application(app.id)
                if current is not None and current.result == transition.result:
                    return self.view(current)  # an identical upload was recorded first: answered as it was
            # Another request recorded a step first: answer with what is allowed now.
            allowed = allowed_next_steps(exc.actual_last_step, app.channel)
            raise StepOutOfOrder(f"{step.value} lost to a concurrent step; the last step is now "
                                 f"{exc.actual_last_step}", allowed) from None
        return self._committed_view(updated, [*before, transition.step])

    def _message(self, app: ApplicationRecord, kind: str, status: Status, *, changed_at: datetime,
                 now: datetime, result: bytes | None = None) -> NewOutboxMessage:
        out = self.gw.config.outbound
        message = StatusMessage(
            message_id=str(uuid.uuid4()), correlation_id=app.message_id, service_id=app.service_id,
            message_type=kind, route_id=app.sender_id, message_date=now, sender_id=out.sender_id,
            password=out.password, channel=app.channel, session_id=app.session_id,
            request_number=app.request_number, registration_number=app.registration_number, status=status,
            changed_at=changed_at, due_at=app.due_at if kind == NOTIFICATION else None, result=result,
        )
        body = render_send_message(message, self.gw.calendar.timezone)
        if out.wsse_key_pem and out.wsse_cert_pem:
            from signing.wsse import sign_wsse

            body = sign_wsse(body, out.wsse_key_pem, out.wsse_cert_pem)
        return NewOutboxMessage(application_id=app.id, kind=OutboxKind(kind), message_id=message.message_id,
                                body=body)

    def _log_entry(self, endpoint: str, app: ApplicationRecord, verdict: str, body: bytes,
                   now: datetime) -> MessageLogEntry:
        return MessageLogEntry(direction="in", endpoint=endpoint, message_id=None, sender_id=app.provider_bin,
                               verdict=verdict, body=body, sha256=hashlib.sha256(body).hexdigest(), at=now,
                               application_id=app.id)


def _out_of_order(app: ApplicationRecord, step: Step, allowed: tuple[Step, ...]) -> str:
    last = app.last_step.value if app.last_step else "none"
    if app.status is Status.INTAKE_REFUSED:
        return "the application was refused at intake (incomplete documents); it has no steps"
    if step is Step.DELIVERED and app.channel is not Channel.CENTER:
        return f"DELIVERED is for Center applications only; this one came through {app.channel.value}"
    nxt = ", ".join(s.value for s in allowed) or "none (the application is finished)"
    return f"{step.value} cannot follow {last}; allowed next: {nxt}"


class BreachMonitor:
    """Counts overdue deadlines in /metrics every `interval` seconds, in one daemon thread."""

    def __init__(self, workflow: Workflow, interval: float) -> None:
        self._workflow = workflow
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="licgate-breaches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._workflow.sweep_breaches()
            except Exception:  # noqa: BLE001 - a failed sweep (storage down) is retried next time
                log.warning("breach sweep failed", exc_info=True)
