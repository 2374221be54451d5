"""The regulation's steps at the provider, recorded, and what each step causes.

Each step is one `storage.apply_transition` call carrying, in the same transaction, the step, the status
change, the outbound message it causes (rendered and WS-Security-signed once, with its own stable
messageId) and the message-log entry of the request that caused it. The rules (order, deadlines, what the
applicant is told) are `gateway.regulation`'s; this module applies them.

What the applicant is told: REGISTERED -> status REGISTERED and a NOTIFICATION; SENT_TO_MANAGEMENT ->
IN_REVIEW and a NOTIFICATION; the result upload -> GRANTED or REFUSED (recorded, not sent yet); ISSUED ->
one RESPONSE carrying the signed result, the last message; DELIVERED -> recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.decision import read_decision
from adapters.shep_async import NOTIFICATION, PASSWORD_PLACEHOLDER, RESPONSE, StatusMessage, render_send_message
from core.clock import Clock
from core.domain import Decision, LicenseDecision, Status, Step
from core.errors import LicgateError, SchemaInvalid, StepOutOfOrder, StepTimeInvalid
from gateway import messagelog
from gateway.binding import check_provider_signer
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.regulation import STEP_STATUS, Deadline, DeadlineState, Regulation, allowed_next_steps, out_of_order
from gateway.storage import (
    ApplicationRecord,
    MessageLogEntry,
    NewOutboxMessage,
    OutboxKind,
    StepRecord,
    Storage,
    Transition,
    TransitionConflict,
)
from signing.verifier import SignatureVerifier

log = logging.getLogger("licgate.workflow")

# Applications are read a page at a time by the sweep and the breach listing.
PAGE = 500
# After these steps an application's deadlines are final: once its breaches are counted it is settled.
SETTLED_AFTER = (Step.ISSUED, Step.DELIVERED)
NO_CHECK = datetime(9999, 1, 1, tzinfo=UTC)  # "not until its next step" (which resets the check)

# A step time may be ahead of the gateway's clock by this much (clocks of the two systems differ).
STEP_TIME_SKEW = timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class ApplicationView:
    app: ApplicationRecord
    timeline: list[StepRecord]
    deadlines: list[Deadline]
    allowed_next_steps: tuple[Step, ...]


class Workflow:
    """Records steps and results of applications; one per gateway process."""

    def __init__(self, config: Config, storage: Storage, clock: Clock, regulation: Regulation, metrics: Metrics,
                 verifier: SignatureVerifier, *, on_outbox: Callable[[], None] | None = None,
                 instance_id: str = "local") -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.regulation = regulation
        self.metrics = metrics
        self.verifier = verifier
        self._on_outbox = on_outbox
        self._tz = regulation.calendar.timezone
        self._instance_id = instance_id  # breaches are recorded under the instance that counted them

    # -- reading ---------------------------------------------------------------------------------------

    def view(self, app: ApplicationRecord) -> ApplicationView:
        return self._view(app, self.storage.timeline(app.id))

    def _view(self, app: ApplicationRecord, timeline: list[StepRecord]) -> ApplicationView:
        deadlines = self.regulation.deadlines(app, timeline, self.clock.now())
        self.count_breaches(app, deadlines)
        return ApplicationView(app, timeline, deadlines, allowed_next_steps(app.last_step, app.channel, app.status))

    def _committed_view(self, app: ApplicationRecord, timeline: list[StepRecord]) -> ApplicationView:
        """The answer to a request whose change is committed (`timeline` as the commit wrote it). Nothing
        here may turn that change into an error for the caller (its retry would find the step taken and get
        409): the deadlines and breach counting are best-effort (the breach sweep counts what is missed)."""
        deadlines: list[Deadline] = []
        try:
            deadlines = self.regulation.deadlines(app, timeline, self.clock.now())
            self.count_breaches(app, deadlines)
        except Exception:
            log.warning("application %s: deadlines not computed after the commit", app.id, exc_info=True)
        return ApplicationView(app, timeline, deadlines, allowed_next_steps(app.last_step, app.channel, app.status))

    def breaches(self, provider_bin: str, *, limit: int = 1000) -> list[tuple[ApplicationRecord, Deadline]]:
        """The provider's breached deadlines, oldest application first (those not counted yet are counted)."""
        found: list[tuple[ApplicationRecord, Deadline]] = []
        now = self.clock.now()
        for page in self._pages(lambda after: self.storage.list_applications(
                provider_bin, open_only=False, after_id=after, limit=PAGE)):
            timelines = self.storage.timelines([app.id for app in page])
            listed = len(found)
            for app in page:
                if app.status is Status.INTAKE_REFUSED:
                    continue
                found += [(app, d) for d in self.regulation.deadlines(app, timelines.get(app.id, []), now)
                          if d.breached]
            fresh = found[listed:limit]
            if fresh:
                known = self.storage.breaches_counted(list(dict.fromkeys(app.id for app, _ in fresh)))
                self._count([(app.id, d.step) for app, d in fresh if (app.id, d.step) not in known], (), now)
            if len(found) >= limit:
                return found[:limit]
        return found

    def sweep_breaches(self) -> int:
        """Count in /metrics every breach not counted yet by any instance, and settle the applications whose
        deadlines can no longer change (the breach sweep job runs this once per tick across instances); how
        many this call counted. Only the applications due a look are read (new ones, ones whose step changed
        their deadlines, ones with a deadline come due), a page at a time with their timelines; each is told
        when to be read again: its earliest pending deadline."""
        counted = 0
        now = self.clock.now()
        for provider in self.config.providers:
            for page in self._pages(lambda after, bin_=provider.bin: self.storage.applications_to_check(
                    bin_, now, after_id=after, limit=PAGE)):
                ids = [app.id for app in page]
                timelines = self.storage.timelines(ids)
                known = self.storage.breaches_counted(ids)
                breached: list[tuple[str, Step]] = []
                settle: list[str] = []
                checks: dict[str, datetime] = {}
                for app in page:
                    if app.status is Status.INTAKE_REFUSED or app.last_step in SETTLED_AFTER:
                        settle.append(app.id)
                    if app.status is Status.INTAKE_REFUSED:
                        continue
                    deadlines = self.regulation.deadlines(app, timelines.get(app.id, []), now)
                    breached += [(app.id, d.step) for d in deadlines if d.breached and (app.id, d.step) not in known]
                    pending = [d.due_at for d in deadlines if d.state is DeadlineState.PENDING and d.due_at]
                    # Until its earliest pending deadline nothing of it can change but by a step, which resets
                    # the check; with none pending, only a step can.
                    checks[app.id] = min(pending) if pending else NO_CHECK
                counted += self._count(breached, settle, now, checks)
        return counted

    def count_breaches(self, app: ApplicationRecord, deadlines: list[Deadline]) -> None:
        """Count the breaches among `deadlines` that no instance has counted yet."""
        breached = [(app.id, d.step) for d in deadlines if d.breached]
        if breached:
            known = self.storage.breaches_counted([app.id])
            self._count([b for b in breached if b not in known], (), self.clock.now())

    def _count(self, breached: list[tuple[str, Step]], settle: Sequence[str], now: datetime,
               checks: dict[str, datetime] | None = None) -> int:
        if not breached and not settle and not checks:
            return 0
        counted = self.storage.count_breaches(breached, self._instance_id, now, settle=settle, checks=checks)
        for _, step in counted:
            self.metrics.deadline_breaches.labels(deadline=step.value).inc()
        return len(counted)

    @staticmethod
    def _pages(read: Callable[[str | None], list[ApplicationRecord]]) -> Iterator[list[ApplicationRecord]]:
        after: str | None = None
        while True:
            page = read(after)
            if page:
                yield page
            if len(page) < PAGE:
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
            before = self.storage.timeline(app.id)
            last = before[-1] if before else None
            if last is not None and last.step is step and last.actor == actor and last.at == self._utc(at):
                return self._view(app, before)
        if step not in allowed:
            raise StepOutOfOrder(out_of_order(app, step, allowed), allowed)
        now = self.clock.now()
        if before is None:
            before = self.storage.timeline(app.id)
        at = self._check_time(app, at, now, before)
        record = StepRecord(step=step, actor=actor, at=at, source=source)
        status = STEP_STATUS.get(step)
        outbox: tuple[NewOutboxMessage, ...] = ()
        if status is not None:  # REGISTERED and IN_REVIEW are told at once
            outbox = (self._message(app, NOTIFICATION, status, changed_at=at, now=now),)
        elif step is Step.ISSUED:
            outbox = (self._message(app, RESPONSE, app.status, changed_at=at, now=now, result=app.result),)
        entry = self._log_entry("provider/steps", app, f"{step.value} RECORDED", request_body, now)
        transition = Transition(step=record, expected_last_step=app.last_step, recorded_at=now, new_status=status,
                                outbox=outbox, log=(entry,))
        return self._apply(app, transition, step)

    def _utc(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            at = at.replace(tzinfo=self._tz)  # a bare local time is Astana time
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
        refusals of the SOAP endpoint's codes (each logged with its verdict)."""
        if app.result is not None and app.result == body:
            return self.view(app)  # the IS retried an upload that was recorded: same answer, nothing new
        allowed = allowed_next_steps(app.last_step, app.channel, app.status)
        if Step.SIGNED not in allowed:
            raise StepOutOfOrder(out_of_order(app, Step.SIGNED, allowed), allowed)
        now = self.clock.now()
        try:
            decision, signer_name = self._verified_decision(app, body)
        except LicgateError as exc:
            self.storage.log_messages([self._log_entry("provider/result", app, exc.code, body, now)])
            exc.message_logged = True  # type: ignore[attr-defined]  # the API's refusal log skips it
            raise
        before = self.storage.timeline(app.id)
        at = max(now, self._previous_time(app, before))
        record = StepRecord(step=Step.SIGNED, actor=signer_name, at=at, source=source)
        status = Status.GRANTED if decision.decision is Decision.GRANTED else Status.REFUSED
        entry = self._log_entry("provider/result", app, f"SIGNED {decision.decision.value}", body, now)
        transition = Transition(step=record, expected_last_step=app.last_step, recorded_at=now, new_status=status,
                                decision=decision.decision, result=body, log=(entry,))
        return self._apply(app, transition, Step.SIGNED)

    def _verified_decision(self, app: ApplicationRecord, body: bytes) -> tuple[LicenseDecision, str]:
        verified = self.verifier.verify_enveloped(body)
        check_provider_signer(verified.signer, app.provider_bin)
        decision = read_decision(verified.root, self._tz)
        if decision.registration_number != app.registration_number:
            raise SchemaInvalid(f"LicenseDecision/registrationNumber {decision.registration_number[:40]!r} is "
                                f"not this application's ({app.registration_number})")
        signer = verified.signer
        return decision, f"{signer.common_name} (IIN {signer.iin or '-'})"

    # -- internals -------------------------------------------------------------------------------------

    def _apply(self, app: ApplicationRecord, transition: Transition, step: Step) -> ApplicationView:
        """Commit `transition`; the view after it."""
        try:
            applied = self.storage.apply_transition(app.id, transition)
        except TransitionConflict as exc:
            if transition.result is not None:
                current = self.storage.get_application(app.id)
                if current is not None and current.result == transition.result:
                    return self.view(current)  # an identical upload was recorded first: answered as it was
            # Another request recorded a step first: answer with what is allowed now.
            allowed = allowed_next_steps(exc.actual_last_step, app.channel)
            raise StepOutOfOrder(f"{step.value} lost to a concurrent step; the last step is now "
                                 f"{exc.actual_last_step}", allowed) from None
        if transition.outbox and self._on_outbox is not None:
            self._on_outbox()
        return self._committed_view(applied.app, applied.timeline)

    def _message(self, app: ApplicationRecord, kind: str, status: Status, *, changed_at: datetime,
                 now: datetime, result: bytes | None = None) -> NewOutboxMessage:
        out = self.config.outbound
        message = StatusMessage(
            message_id=str(uuid.uuid4()), correlation_id=app.message_id, service_id=app.service_id,
            message_type=kind, route_id=app.sender_id, message_date=now, sender_id=out.sender_id,
            password=PASSWORD_PLACEHOLDER, channel=app.channel, session_id=app.session_id,
            request_number=app.request_number, registration_number=app.registration_number, status=status,
            changed_at=changed_at, due_at=app.due_at if kind == NOTIFICATION else None, result=result,
        )
        # The password is filled in and the envelope signed (WS-Security) by the delivery worker at each
        # attempt: no outbox row holds the password, and the signature's Timestamp is fresh when sent.
        body = render_send_message(message, self._tz)
        return NewOutboxMessage(application_id=app.id, kind=OutboxKind(kind), message_id=message.message_id,
                                body=body)

    @staticmethod
    def _log_entry(endpoint: str, app: ApplicationRecord, verdict: str, body: bytes, now: datetime) -> MessageLogEntry:
        return messagelog.entry("in", endpoint, body, verdict, now, sender_id=app.provider_bin, application_id=app.id)
