"""Intake's pipeline: one SHEP SendMessage in, one answer out.

The checks run in the contract's order and the first failure is the answer: size (by the HTTP layer,
before anything is parsed), well-formedness, envelope schema, sender, service, transport signature,
payload schema, signature, timestamp, certificate, identity binding, documents (`Examiner`, here or in an
`ExaminerPool` worker process); then, here, replay and capacity against storage. An application that
passes is stored and queued in ONE storage transaction (with its inbound message-log entry) before
`SCSS001` and the receipt are answered; an incomplete package is recorded as INTAKE_REFUSED, never queued.

Idempotency: the same (sender, messageId) with the same payload bytes gets the first receipt again and
queues nothing; with other bytes it is MESSAGE_ID_CONFLICT. A sender's requestNumber is unique the same
way: a new messageId for the same requestNumber and the same payload gets the first receipt, with another
payload MESSAGE_ID_CONFLICT. Concurrent duplicates are settled by storage (`DuplicateIntake`).

`Intake.submit(body)` is what the SOAP endpoint awaits. Examined requests are concluded in batches by one
store thread (`Concluder`): each batch is one durable commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio

from adapters import egov
from adapters.shep_sync import SUCCESS_CODE, RequestInfo, render_fault, render_response
from core.clock import Clock
from core.domain import Status
from core.errors import InternalError, LicgateError, MessageIdConflict, Overloaded
from core.texts import status_kk, status_not_found, status_ru
from gateway import messagelog
from gateway.batching import BatchingThread
from gateway.config import SERVICE_STATUS, SERVICE_SUBMIT, Config, SenderConfig
from gateway.intake.examiner import ACCEPTED_MESSAGE, INTAKE_REFUSED, REFUSED_MESSAGE, Examination, Examiner
from gateway.intake.pool import ExaminerPool
from gateway.messagelog import MessageLogWriter
from gateway.regulation import applicant_status
from gateway.storage import (
    ApplicationRecord,
    DuplicateIntake,
    MessageLogEntry,
    NewApplication,
    Storage,
    StorageError,
)
from signing.wsse import ReplayGuard

log = logging.getLogger("licgate.intake")
T = TypeVar("T")

ENDPOINT = "shep/sync"
SERVER_SIDE_CODES = frozenset({"INTERNAL_ERROR", "OVERLOADED"})
# Bodies up to this size are examined in the intake worker processes (when there are any); a larger one
# in a thread of the serving process, where it is not copied through a pipe twice (a 10 MB message would
# cost 20 MB more at the peak).
POOL_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """What goes back over HTTP, and what the request log and metrics say about it."""

    http_status: int
    body: bytes
    outcome: str  # SCSS001, INTAKE_REFUSED or an error code
    message_id: str | None = None
    sender_id: str | None = None
    application_id: str | None = None
    registration_number: str | None = None
    inbound_logged: bool = False  # True when the intake transaction wrote the inbound log entry
    retry_after: int | None = None  # seconds, sent as Retry-After (OVERLOADED, HTTP 503)



_Concluding = tuple["Examination", bytes, datetime, "asyncio.Future[Answer]"]


class Concluder(BatchingThread[_Concluding]):
    """Concludes examined requests (`Intake.conclude_many`) for the event loop on ONE thread, in batches:
    what arrives while a batch is being stored waits for the next, and each batch is one durable commit
    (SQLite). A thread per request, as before, spent the serving process's CPU on waking threads and on
    their contention for the interpreter and the write lock. Never more than `server.max_in_flight` wait."""

    def __init__(self, intake: Intake, max_batch: int = 128) -> None:
        super().__init__("licgate-intake-store", max_batch=max_batch, linger=None, max_backlog=1 << 30)
        self._intake = intake

    async def conclude(self, exam: Examination, body: bytes, received_at: datetime) -> Answer:
        if not self.running:
            raise RuntimeError("the intake store thread is not running")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._add([(exam, body, received_at, future)], wake=True)
        # A caller that goes away cancels only its future: its item is concluded all the same (what was
        # accepted is stored, and its sender's retry gets the same receipt).
        return await future

    def _failed(self, batch: list[_Concluding]) -> None:
        # `conclude_many` does not raise; should anything after it, no caller is left waiting forever.
        for exam, _, _, future in batch:
            answer = self._intake.fault(InternalError(), exam.ids())
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_resolve, [(future, answer)])

    def _process(self, batch: list[_Concluding]) -> None:
        answers = self._intake.conclude_many([(exam, body, at) for exam, body, at, _ in batch])
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Answer]]] = {}
        for (_, _, _, future), answer in zip(batch, answers, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, answer))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, results)
            except RuntimeError:  # that loop is closed: nobody waits for these answers
                pass


def _resolve(results: list[tuple[asyncio.Future[Answer], Answer]]) -> None:
    for future, answer in results:
        if not future.done():
            future.set_result(answer)


class QueueDepthGauge:
    """The provider queue's depth, read from storage at most every `ttl` seconds (a COUNT per request
    would cost more than the request)."""

    def __init__(self, storage: Storage, ttl: float = 0.5) -> None:
        self._storage = storage
        self._ttl = ttl
        self._value = 0
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def value(self) -> int:
        now = time.monotonic()
        if now - self._read_at > self._ttl and self._lock.acquire(blocking=False):
            try:
                self._value = self._storage.queue_depth()
                self._read_at = now
            finally:
                self._lock.release()
        return self._value

    def note_queued(self) -> None:
        """Count an application this process just queued, so the cached depth does not lag behind."""
        self._value += 1



def _filled(parts: tuple[bytes, bytes], registration_number: str) -> bytes:
    return parts[0] + registration_number.encode() + parts[1]



class Intake:
    """The SyncChannel pipeline of one gateway process (see the module docstring): `Examiner.examine`
    (here or in an `ExaminerPool` process), then `conclude` (storage, here)."""

    def __init__(self, config: Config, storage: Storage, clock: Clock, examiner: Examiner,
                 message_log: MessageLogWriter, *, pool: ExaminerPool | None = None,
                 on_revocation: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.examiner = examiner
        self.message_log = message_log
        self.pool = pool
        self.tz = config.calendar.tz
        self.queue_depth = QueueDepthGauge(storage)
        self.concluder = Concluder(self)
        # Seen transport signatures: checked here, where every request of this process is concluded, since
        # the worker processes that verified them do not see each other's requests (docs/signing.md).
        self.replays = ReplayGuard()
        self._on_revocation = on_revocation

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.concluder.start()
        if self.pool is not None:
            self.pool.start()
            log.info("intake examines requests in %d worker processes", self.pool.processes)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        self.concluder.stop()

    # -- the pipeline -------------------------------------------------------------------------------

    async def submit(self, body: bytes) -> Answer:
        """Answer one request body (already read within `max_message_bytes`). Never raises."""
        if len(body) > POOL_MAX_BYTES:
            # Examined and stored by one thread: a large message's memory is then taken from and given back
            # to one malloc arena, not two, and it would be a batch of its own anyway.
            return await anyio.to_thread.run_sync(self.handle, body)
        received_at = self.clock.now()
        examination = await self.pool.examine(body, received_at) if self.pool is not None else None
        if examination is None:
            examination = await anyio.to_thread.run_sync(self.examiner.examine, body, received_at)
        return await self.concluder.conclude(examination, body, received_at)

    def handle(self, body: bytes) -> Answer:
        """Answer one request body (already read within `max_message_bytes`), examined in this thread.
        Never raises."""
        received_at = self.clock.now()
        return self.conclude(self.examiner.examine(body, received_at), body, received_at)

    def conclude(self, exam: Examination, body: bytes, received_at: datetime) -> Answer:
        """The storage half for one request (see `conclude_many`). Never raises."""
        return self.conclude_many([(exam, body, received_at)])[0]

    def conclude_many(self, items: Sequence[tuple[Examination, bytes, datetime]]) -> list[Answer]:
        """The storage half: status lookups, replays, capacity, then each request's refusal or its stored
        application; the applications of all `items` are stored together (one durable commit where the
        storage can). One answer per item, in order. Never raises."""
        answers: list[Answer | None] = [None] * len(items)
        jobs: list[_StoreJob] = []
        for index, (exam, body, received_at) in enumerate(items):
            prepared = self._guarded(exam.ids(), self._prepare, index, exam, body, received_at)
            if isinstance(prepared, _StoreJob):
                jobs.append(prepared)
            else:
                answers[index] = prepared
        if jobs:
            try:
                outcomes: list[ApplicationRecord | Exception] = self.storage.store_applications(
                    [(job.new, job.render_receipt, [job.inbound]) for job in jobs])
            except Exception as exc:  # noqa: BLE001 - every job of the batch shares the failure
                outcomes = [exc] * len(jobs)
            for job, outcome in zip(jobs, outcomes, strict=True):
                answers[job.index] = self._guarded(job.exam.ids(), self._stored, job, outcome)
        done: list[Answer] = []
        now = self.clock.now()
        entries: list[MessageLogEntry] = []
        unrecorded = False  # an exchange of the batch is in no storage transaction yet (a refusal, a status)
        for (_, body, received_at), answer in zip(items, answers, strict=True):
            assert answer is not None
            if not answer.inbound_logged:
                entries.append(self._log_entry("in", body, answer, received_at))
                unrecorded = True
            entries.append(self._log_entry("out", answer.body, answer, now))
            done.append(answer)
        if unrecorded:
            # Stored before it is answered (one group commit for the batch); should the log fail, the answer
            # still goes out, and the failure is in the process log.
            self.message_log.write(*entries)
        else:
            # Each inbound record was stored with its application: the answers' records may follow.
            self.message_log.add(*entries)
        return done

    def _guarded(self, ids: dict[str, str | None], step: Callable[..., T], *args: Any) -> T | Answer:
        try:
            return step(*args)
        except LicgateError as exc:
            return self.fault(exc, ids)
        except Exception:  # noqa: BLE001 - the one place an unexpected failure becomes INTERNAL_ERROR
            log.exception("intake failed", extra={"messageId": ids["message_id"]})
            return self.fault(InternalError(), ids)

    async def refuse_unread(self, exc: LicgateError, head: bytes, *, sender_id: str | None = None,
                            retry_after: int | None = None) -> Answer:
        """A refusal decided before the body was parsed (MESSAGE_TOO_LARGE, OVERLOADED); `head` is what
        was read of the body, logged as evidence (stored before the answer is returned). With
        `retry_after`: HTTP 503 with Retry-After."""
        now = self.clock.now()
        answer = self.fault(exc, {"message_id": None, "sender_id": sender_id, "session_id": None})
        if retry_after is not None:
            answer = dataclasses.replace(answer, http_status=503, retry_after=retry_after)
        await self.message_log.write_async(self._log_entry("in", head, answer, now),
                                           self._log_entry("out", answer.body, answer, now))
        return answer

    def fault(self, exc: LicgateError, ids: dict[str, str | None]) -> Answer:
        body = render_fault(
            code=exc.code, message=exc.message, data=exc.data, at=self.clock.now(), tz=self.tz,
            server_side=exc.code in SERVER_SIDE_CODES, summary=_summary(exc), session_id=ids.get("session_id"),
        )
        if isinstance(exc, Overloaded):  # back-pressure: "try again in a moment", said the HTTP way too
            return Answer(503, body, exc.code, ids.get("message_id"), ids.get("sender_id"),
                          retry_after=exc.retry_after)
        return Answer(500, body, exc.code, ids.get("message_id"), ids.get("sender_id"))

    def _prepare(self, index: int, exam: Examination, body: bytes, received_at: datetime) -> Answer | _StoreJob:
        if exam.observations and self._on_revocation is not None:
            for source, outcome in exam.observations:
                self._on_revocation(source, outcome)
        if exam.replay_key is not None:
            # The transport signature is the contract's sixth check: a replay wins over every later refusal.
            key, until = exam.replay_key
            self.replays.check(key, until, self.clock.now())
        return self._conclude(exam) or self._store_job(index, exam, body, received_at)

    def _conclude(self, exam: Examination) -> Answer | None:
        """The answer for `exam`, or None when its application is to be stored."""
        if exam.error is not None and not exam.late:
            raise exam.error
        info = exam.info
        assert info is not None
        sender = self.config.sender(info.sender_id)
        assert sender is not None
        if exam.service == SERVICE_STATUS:
            assert exam.status_number is not None
            return self._status(exam.status_number, info, sender)
        assert exam.service == SERVICE_SUBMIT and exam.request_hash is not None
        # The contract's order is replay, capacity, the payload's refusal, store. The store finds a replay
        # itself, in its transaction, so an application that passed every check is not looked up first.
        if exam.error is None and not self._over_capacity():
            return None
        replay = self._replay(sender.id, info.message_id, exam.request_hash, info)
        if replay is not None:
            return replay
        self._check_capacity()
        if exam.error is None:
            return None  # the queue had room after all (the depth was read again): store it
        raise exam.error

    # -- MED_LICENSE ----------------------------------------------------------------------------------

    def _store_job(self, index: int, exam: Examination, body: bytes, received_at: datetime) -> _StoreJob:
        info, application, signer = exam.info, exam.application, exam.signer
        assert info is not None and application is not None and signer is not None
        assert exam.provider_bin is not None and exam.request_hash is not None
        sender = self.config.sender(info.sender_id)
        assert sender is not None
        missing, due_at, receipt = exam.missing, exam.due_at, exam.receipt
        assert receipt is not None and (due_at is None) == bool(missing)
        status = Status.INTAKE_REFUSED if missing else Status.RECEIVED
        new = NewApplication(
            provider_bin=exam.provider_bin, sender_id=sender.id, message_id=info.message_id,
            request_number=application.request_number, request_hash=exam.request_hash, channel=sender.channel,
            service_type=application.service_type, dialect=application.dialect, applicant=application.applicant,
            signer=signer, activity_subtypes=application.activity_subtypes,
            # In Astana time: the registration number carries the year as the applicant's calendar has it.
            license_number=application.license_number, received_at=received_at.astimezone(self.tz), due_at=due_at,
            status=status,
            payload=exam.payload_of(body), documents=application.documents, missing_documents=missing,
            session_id=info.session_id, service_id=info.service_id, signed_at=exam.signed_at,
        )
        verdict = INTAKE_REFUSED if missing else SUCCESS_CODE

        def render_receipt(registration_number: str) -> bytes:
            return _filled(receipt, registration_number)

        inbound = messagelog.entry("in", ENDPOINT, body, verdict, received_at, message_id=info.message_id,
                                   sender_id=sender.id, correlation_id=info.correlation_id)
        return _StoreJob(index, exam, new, render_receipt, inbound)

    def _stored(self, job: _StoreJob, outcome: ApplicationRecord | Exception) -> Answer:
        info = job.exam.info
        assert info is not None and job.exam.request_hash is not None
        if isinstance(outcome, DuplicateIntake):
            return self._duplicate(outcome, job.exam.request_hash, info)
        if isinstance(outcome, StorageError):
            raise Overloaded(f"storage: {type(outcome).__name__}")
        if isinstance(outcome, Exception):
            raise outcome
        if not job.new.missing_documents:
            self.queue_depth.note_queued()
        assert job.exam.response is not None
        body = _filled(job.exam.response, outcome.registration_number)
        return Answer(200, body, INTAKE_REFUSED if job.new.missing_documents else SUCCESS_CODE, info.message_id,
                      outcome.sender_id, outcome.id, outcome.registration_number, inbound_logged=True)

    def _replay(self, sender_id: str, message_id: str, request_hash: str, info: RequestInfo) -> Answer | None:
        try:
            existing = self.storage.find_by_message_id(sender_id, message_id)
        except StorageError as exc:
            raise Overloaded(f"storage: {type(exc).__name__}") from None
        if existing is None:
            return None
        if existing.request_hash != request_hash:
            raise MessageIdConflict(f"messageId {message_id} was received before with other content "
                                    f"(registrationNumber {existing.registration_number})")
        return self._receipt_answer(existing, info)

    def _duplicate(self, dup: DuplicateIntake, request_hash: str, info: RequestInfo) -> Answer:
        existing = dup.existing
        if existing.request_hash != request_hash:
            what = "messageId" if dup.field_name == "message_id" else "requestNumber"
            value = info.message_id if dup.field_name == "message_id" else existing.request_number
            raise MessageIdConflict(f"{what} {value} was received before with other content "
                                    f"(registrationNumber {existing.registration_number})")
        return self._receipt_answer(existing, info)

    def _receipt_answer(self, record: ApplicationRecord, info: RequestInfo) -> Answer:
        """The answer to a replay: the first receipt again. INTAKE_REFUSED is final, so a replay answers the
        same code as the first time."""
        refused = record.status is Status.INTAKE_REFUSED
        code = INTAKE_REFUSED if refused else SUCCESS_CODE
        message = REFUSED_MESSAGE if refused else ACCEPTED_MESSAGE
        body = render_response(
            correlation_id=info.message_id, response_date=self.clock.now(), tz=self.tz, data=record.receipt,
            code=code, message=message, session_id=info.session_id,
        )
        return Answer(200, body, code, info.message_id, record.sender_id, record.id, record.registration_number)

    def _over_capacity(self) -> bool:
        try:
            return self.queue_depth.value() >= self.config.storage.max_queue_depth
        except StorageError:
            return True  # `_check_capacity` says why

    def _check_capacity(self) -> None:
        try:
            depth = self.queue_depth.value()
        except StorageError as exc:
            raise Overloaded(f"storage: {type(exc).__name__}") from None
        if depth >= self.config.storage.max_queue_depth:
            raise Overloaded(f"{depth} applications are waiting for the provider")

    # -- MED_LICENSE_STATUS ----------------------------------------------------------------------------

    def _status(self, number: str, info: RequestInfo, sender: SenderConfig) -> Answer:
        try:
            record = self.storage.find_by_request_number(sender.id, number)
            if record is None:
                by_registration = self.storage.find_by_registration_number(number)
                # A sender only ever sees its own applications.
                if by_registration is not None and by_registration.sender_id == sender.id:
                    record = by_registration
        except StorageError as exc:
            raise Overloaded(f"storage: {type(exc).__name__}") from None
        if record is None:
            data = egov.render_status_response(
                request_number=number, status=egov.NOT_FOUND, status_texts=status_not_found(), tz=self.tz)
        else:
            status = applicant_status(record)
            data = egov.render_status_response(
                request_number=record.request_number, registration_number=record.registration_number,
                status=status.value, status_texts=(status_kk(status), status_ru(status)),
                tz=self.tz, received_at=record.received_at, changed_at=record.updated_at, due_at=record.due_at,
                missing=record.missing_documents, result=record.result if status.is_final else None,
            )
        body = render_response(correlation_id=info.message_id, response_date=self.clock.now(), tz=self.tz,
                               data=data, session_id=info.session_id)
        return Answer(200, body, SUCCESS_CODE, info.message_id, sender.id,
                      record.id if record else None, record.registration_number if record else None)

    # -- the message log ---------------------------------------------------------------------------------

    def _log_entry(self, direction: str, body: bytes, answer: Answer, at: datetime) -> MessageLogEntry:
        return messagelog.entry(direction, ENDPOINT, body, answer.outcome, at, message_id=answer.message_id,
                                sender_id=answer.sender_id, application_id=answer.application_id)


@dataclass(slots=True)
class _StoreJob:
    """An examined application on its way into storage, and where its answer goes."""

    index: int
    exam: Examination
    new: NewApplication
    render_receipt: Callable[[str], bytes]
    inbound: MessageLogEntry


def _summary(exc: LicgateError) -> str | None:
    """faultstring's short English tail: the technical detail's first line, bounded."""
    return (exc.data or "").splitlines()[0][:200] if exc.data else None

