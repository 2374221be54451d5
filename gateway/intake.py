"""Intake: one SHEP SendMessage in, one answer out (CONTRACT.md section 4, DOMAIN.md section 3).

The checks run in the contract's order and the first failure is the answer: size (by the HTTP layer,
before anything is parsed), well-formedness, envelope schema, sender, service, transport signature,
payload schema, signature, certificate, identity binding, documents. An application that passes is
stored and queued in ONE storage transaction (with its inbound message-log entry) before `SCSS001` and
the receipt are answered; an incomplete package is recorded as INTAKE_REFUSED, never queued.

Idempotency: the same (sender, messageId) with the same payload bytes gets the first receipt again and
queues nothing; with other bytes it is MESSAGE_ID_CONFLICT. A sender's requestNumber is unique the same
way: a new messageId for the same requestNumber and the same payload gets the first receipt, with another
payload MESSAGE_ID_CONFLICT. Concurrent duplicates are settled by storage (`DuplicateIntake`).

`Intake.handle` is synchronous (it runs in a worker thread): parsing, c14n and RSA are CPU work and the
storage calls block until durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lxml import etree

from adapters import egov, elicense
from adapters.shep_sync import (
    SUCCESS_CODE,
    RequestInfo,
    SyncRequest,
    envelope_schema,
    parse_envelope,
    render_fault,
    render_response,
)
from gateway.calendar import WorkingCalendar
from gateway.clock import Clock
from gateway.config import SERVICE_STATUS, SERVICE_SUBMIT, Config, SenderConfig
from gateway.domain import ApplicantKind, Application, Positional, SignerIdentity, Status
from gateway.errors import (
    BinInvalid,
    DocumentDigestMismatch,
    IinInvalid,
    InternalError,
    LicgateError,
    MessageIdConflict,
    Overloaded,
    SchemaInvalid,
    SenderAuthFailed,
    SenderUnknown,
    ServiceNotAllowed,
    ServiceUnknown,
    SignatureMissing,
    TransportSignatureInvalid,
)
from gateway.identifiers import bin_problem, iin_problem
from gateway.storage import (
    ApplicationRecord,
    DuplicateIntake,
    MessageLogEntry,
    NewApplication,
    Storage,
    StorageError,
)
from gateway.texts import status_kk, status_not_found, status_ru
from gateway.workflow import applicant_status
from signing.binding import check_applicant_signer
from signing.verifier import SignatureVerifier, build_verifier
from signing.wsse import verify_wsse

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.intake_pool import ExaminerPool

log = logging.getLogger("licgate.intake")
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a batch

ENDPOINT = "shep/sync"
SERVER_SIDE_CODES = frozenset({"INTERNAL_ERROR", "OVERLOADED"})
INTAKE_REFUSED = "INTAKE_REFUSED"
_ACCEPTED_MESSAGE = "Message has been processed successfully"
_REFUSED_MESSAGE = "Package of documents is incomplete: application refused at intake"
_DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"
_WSSE_SECURITY = (
    "{http://schemas.xmlsoap.org/soap/envelope/}Header/"
    "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
)


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


@dataclass(frozen=True, slots=True)
class _Dialect:
    check_payload: Callable[[etree._Element], None]
    read_application: Callable[[etree._Element, tzinfo], Application]
    payload_schema: Callable[[], etree.XMLSchema]


_DIALECTS: dict[str, _Dialect] = {
    egov.APPLICATION: _Dialect(egov.check_payload, egov.read_application, egov.payload_schema),
    elicense.APPLICATION: _Dialect(elicense.check_payload, elicense.read_application, elicense.payload_schema),
}


class _BatchingThread(ABC, Generic[I]):
    """One background thread that takes everything added since its last turn and processes it in batches
    of at most `max_batch`: woken at once when `_add` asks, else every `linger` seconds (None: only when
    woken). Adding wakes nobody otherwise: a wake-up per item costs the serving process more than the item."""

    def __init__(self, name: str, *, max_batch: int, linger: float | None, max_backlog: int) -> None:
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._max_backlog = max_backlog
        self._backlog: list[I] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is waiting, then stop."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout=timeout)
            self._thread = None

    def _add(self, items: Sequence[I], *, wake: bool) -> Sequence[I]:
        """Queue `items`; the ones past `max_backlog` are not queued and are returned."""
        with self._lock:
            room = max(self._max_backlog - len(self._backlog), 0)
            self._backlog.extend(items[:room])
            wake = wake or len(self._backlog) >= self._max_batch
        if wake:
            self._wake.set()
        return items[room:]

    def _run(self) -> None:
        while True:
            self._wake.wait(self._linger)
            self._wake.clear()
            stopping = self._stopping
            with self._lock:
                backlog, self._backlog = self._backlog, []
            for start in range(0, len(backlog), self._max_batch):
                batch = backlog[start:start + self._max_batch]
                try:
                    self._process(batch)
                except Exception:  # noqa: BLE001 - the thread must outlive one bad batch
                    log.exception("%s: a batch of %d failed", self._name, len(batch))
                    try:
                        self._failed(batch)
                    except Exception:  # noqa: BLE001 - still: the next batch must be served
                        log.exception("%s: answering a failed batch failed too", self._name)
            if stopping:
                return

    def _failed(self, batch: list[I]) -> None:
        """After `_process` raised: whatever the batch's items still need (nothing, by default)."""

    @abstractmethod
    def _process(self, batch: list[I]) -> None:
        """Do what the batch's items are for."""


class MessageLogWriter(_BatchingThread[MessageLogEntry]):
    """Writes the message log entries that are not part of an intake transaction (refusals, answers,
    status requests) in batches from one background thread, so that a flood of bad requests costs one
    durable write per batch rather than per request. An accepted application's inbound entry is written
    in its own storage transaction instead, never here."""

    def __init__(self, storage: Storage, max_batch: int = 500, linger_seconds: float = 0.2,
                 max_backlog: int = 20_000) -> None:
        # Entries wait up to `linger_seconds` for company: every write is a durable commit that competes
        # with the intake transactions for the database.
        super().__init__("licgate-message-log", max_batch=max_batch, linger=linger_seconds, max_backlog=max_backlog)
        self._storage = storage

    def add(self, *entries: MessageLogEntry) -> None:
        for entry in self._add(entries, wake=False):
            # Under a flood the log sheds its own load rather than stall answers; said loudly.
            log.warning("message log backlog full, entry dropped",
                        extra={"messageId": entry.message_id, "verdict": entry.verdict})

    def _process(self, batch: list[MessageLogEntry]) -> None:
        for attempt in range(3):
            try:
                self._storage.log_messages(batch)
                return
            except Exception:  # noqa: BLE001 - the log writer must outlive a database hiccup
                log.exception("message log write failed", extra={"attempt": attempt + 1, "entries": len(batch)})
                time.sleep(0.2 * (attempt + 1))


_Concluding = tuple["Examination", bytes, datetime, "asyncio.Future[Answer]"]


class Concluder(_BatchingThread[_Concluding]):
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


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class Examination(Positional):
    """What the storage-free checks found in one request body (`Examiner.examine`). Plain data, so that it
    can come back from another process: the verified application, or the first refusal and where in the
    contract's order it was found."""

    info: RequestInfo | None = None
    service: str | None = None  # SERVICE_SUBMIT or SERVICE_STATUS, once the sender may call it
    error: LicgateError | None = None
    # True when `error` was found among the payload's checks, which the contract orders after the replay
    # lookup and the capacity check: a replayed messageId is answered its first receipt whatever its payload.
    late: bool = False
    request_hash: str | None = None
    payload: bytes | memoryview | None = None  # the payload's bytes unless `payload_span` names them
    payload_span: tuple[int, int] | None = None  # (start, end) of the payload in the request body
    application: Application | None = None
    signer: SignerIdentity | None = None
    provider_bin: str | None = None
    missing: tuple[str, ...] = ()
    status_number: str | None = None
    # For an application that passed: its term, and its receipt and answer rendered around the registration
    # number it will get (before, after), so that storing it costs the serving process no rendering.
    due_at: datetime | None = None
    receipt: tuple[bytes, bytes] | None = None
    response: tuple[bytes, bytes] | None = None

    def ids(self) -> dict[str, str | None]:
        info = self.info
        return {"message_id": info.message_id if info else None, "sender_id": info.sender_id if info else None,
                "session_id": info.session_id if info else None}

    def payload_of(self, body: bytes) -> bytes | memoryview:
        if self.payload_span is not None:
            return memoryview(body)[self.payload_span[0]:self.payload_span[1]]
        assert self.payload is not None
        return self.payload

    def detach(self) -> Examination:
        """Ready to be pickled: a view of the body is named by its span (the caller holds the body)."""
        if isinstance(self.payload, memoryview):
            if self.payload_span is None:
                self.payload = bytes(self.payload)
            else:
                self.payload = None
        return self


class Examiner:
    """The CPU-bound part of intake, with no storage: the envelope, the sender, the service, the transport
    signature, and for MED_LICENSE the payload's schema, signature, certificate, identity binding and
    documents. One per process (its verifier holds the trust store and revocation caches)."""

    def __init__(self, config: Config, verifier: SignatureVerifier, calendar: WorkingCalendar, clock: Clock) -> None:
        self.config = config
        self.verifier = verifier
        self.calendar = calendar
        self.clock = clock
        self.tz = calendar.timezone
        # Compiled now, once, rather than by the first requests, which may be examined in several threads
        # at once (in the serving process: with no worker processes, and for large messages).
        envelope_schema()
        for dialect in _DIALECTS.values():
            dialect.payload_schema()

    def examine(self, body: bytes, received_at: datetime) -> Examination:
        """Never raises: a refusal is the examination's `error`. `received_at` is when the body was read."""
        exam = Examination()
        try:
            self._examine(body, received_at, exam)
        except LicgateError as exc:
            exam.error = exc
        except Exception:  # noqa: BLE001 - the one place an unexpected failure becomes INTERNAL_ERROR
            log.exception("intake failed", extra={"messageId": exam.info.message_id if exam.info else None})
            exam.error = InternalError()
        return exam

    def _examine(self, body: bytes, received_at: datetime, exam: Examination) -> None:
        request = parse_envelope(body, max_bytes=self.config.server.max_message_bytes)
        exam.info = request.info
        sender = self._check_sender(request.info.sender_id, request.info.password)
        service = self._check_service(sender, request.info.service_id)
        self._check_transport(sender, request)
        exam.service = service
        if service == SERVICE_STATUS:
            exam.status_number = self._status_request(request)
            return
        assert service == SERVICE_SUBMIT
        payload = request.raw_payload  # a view into `body` when inline: hashed, parsed and stored, never copied
        exam.request_hash = sha256_hex(payload)
        exam.late = True
        self._check_payload(request, sender, payload, exam)
        exam.payload, exam.payload_span = payload, request.payload_span
        self._prepare_answer(exam, received_at)

    def _prepare_answer(self, exam: Examination, received_at: datetime) -> None:
        """The term, the receipt and the answer of an application about to be stored, rendered here (in a
        worker process when there are workers) around a one-off slot where its registration number goes."""
        info, application = exam.info, exam.application
        assert info is not None and application is not None
        slot = secrets.token_hex(12)
        if exam.missing:
            receipt = egov.render_intake_refusal(slot, received_at, list(exam.missing), self.tz)
            code, message = INTAKE_REFUSED, _REFUSED_MESSAGE
        else:
            exam.due_at = self.calendar.term_deadline(received_at, self.config.terms[application.service_type.value])
            receipt = egov.render_receipt(slot, received_at, exam.due_at, self.tz)
            code, message = SUCCESS_CODE, _ACCEPTED_MESSAGE
        response = render_response(correlation_id=info.message_id, response_date=self.clock.now(), tz=self.tz,
                                   data=receipt, code=code, message=message, session_id=info.session_id)
        exam.receipt, exam.response = _around(receipt, slot), _around(response, slot)

    # -- sender, service, transport -----------------------------------------------------------------

    def _check_sender(self, sender_id: str, password: str | None) -> SenderConfig:
        sender = self.config.sender(sender_id)
        if sender is None:
            raise SenderUnknown(f"senderId {sender_id!r} is not configured")
        # Constant time, so the answer's timing says nothing about how much of the password matched.
        if not hmac.compare_digest((password or "").encode(), sender.password.encode()):
            raise SenderAuthFailed(f"wrong password for senderId {sender_id}")
        return sender

    def _check_service(self, sender: SenderConfig, service_id: str) -> str:
        service = self.config.service(service_id)
        if service is None:
            raise ServiceUnknown(f"serviceId {service_id!r} is not offered")
        allowed = service_id in sender.services or any(self.config.service(s) == service for s in sender.services)
        if not allowed:
            raise ServiceNotAllowed(f"senderId {sender.id} may not call {service_id}")
        return service

    def _check_transport(self, sender: SenderConfig, request: SyncRequest) -> None:
        if sender.wsse == "off":
            return
        if request.envelope.find(_WSSE_SECURITY) is None:
            if sender.wsse == "required":
                raise TransportSignatureInvalid("WS-Security is required for this sender and is missing")
            return
        try:
            verify_wsse(request.envelope, sender_bin=sender.bin or None, sender_cert_pem=sender.cert_pem,
                        verifier=self.verifier)
        except TransportSignatureInvalid:
            raise
        except LicgateError as exc:
            # Certificate problems of the transport key are the transport signature's failure.
            raise TransportSignatureInvalid(f"{exc.code}: {exc.data or ''}".strip(": ")) from None

    # -- MED_LICENSE ----------------------------------------------------------------------------------

    def _check_payload(self, request: SyncRequest, sender: SenderConfig, payload: bytes | memoryview,
                       exam: Examination) -> None:
        # Payload schema: on the inline element as parsed with the envelope, or on the string's document.
        root = request.element
        dialect = _DIALECTS.get(root.tag)
        if dialect is None:
            raise SchemaInvalid(f"/{etree.QName(root).localname}: not an application payload "
                                f"(expected MedicalLicenseApplication in {egov.NS} or LicenseApplication in "
                                f"{elicense.NS})")
        dialect.check_payload(root)
        if next(root.iter(_DS_SIGNATURE), None) is None:
            raise SignatureMissing("the payload carries no enveloped XML signature")
        del root
        request.release()

        # Signature and certificate: the application is read ONLY from what the verifier hands back.
        verified = self.verifier.verify_enveloped(payload)
        application = dialect.read_application(verified.root, self.tz)
        signer = verified.signer
        del verified  # the verified tree is not needed once read (a large payload is not held twice)

        self._check_applicant_numbers(application)
        if application.channel is not sender.channel:
            raise SchemaInvalid(f"/channel: {application.channel.value} is not the sender's channel "
                                f"{sender.channel.value}")
        check_applicant_signer(sender.channel, application.applicant, signer, sender.bin or None)
        exam.provider_bin = self._provider_bin(application.licensor_bin)
        exam.missing = tuple(self._check_documents(application))
        exam.application, exam.signer = application, signer

    def _check_applicant_numbers(self, application: Application) -> None:
        applicant = application.applicant
        if applicant.kind is ApplicantKind.INDIVIDUAL:
            if problem := iin_problem(applicant.iin or ""):
                raise IinInvalid(f"applicant/iin {applicant.iin}: {problem}")
        elif problem := bin_problem(applicant.bin or ""):
            raise BinInvalid(f"applicant/bin {applicant.bin}: {problem}")

    def _provider_bin(self, licensor_bin: str | None) -> str:
        providers = self.config.providers
        if licensor_bin is None:
            if len(providers) == 1:
                return providers[0].bin
            raise SchemaInvalid("/licensorBin: required when the gateway serves several providers")
        if problem := bin_problem(licensor_bin):
            raise BinInvalid(f"licensorBin {licensor_bin}: {problem}")
        if self.config.provider(licensor_bin) is None:
            raise SchemaInvalid(f"/licensorBin: {licensor_bin} is not a provider served here")
        return licensor_bin

    def _check_documents(self, application: Application) -> list[str]:
        """Digests first (DOCUMENT_DIGEST_MISMATCH), then the checklist: the missing codes, in its order."""
        for index, doc in enumerate(application.documents):
            actual = sha256_hex(doc.content)
            if not hmac.compare_digest(actual, doc.sha256):
                raise DocumentDigestMismatch(f"document {index + 1} ({doc.code}): declared sha256 {doc.sha256}, "
                                             f"content has {actual}")
        present = {doc.code for doc in application.documents}
        required = self.config.checklists.get(application.service_type.value, ())
        return [code for code in required if code not in present]

    # -- MED_LICENSE_STATUS ----------------------------------------------------------------------------

    @staticmethod
    def _status_request(request: SyncRequest) -> str:
        root = request.element
        if root.tag != egov.STATUS_REQUEST:
            raise SchemaInvalid(f"/{etree.QName(root).localname}: expected StatusRequest in {egov.NS}")
        egov.validate(root)
        return egov.read_status_request(root)


def _around(rendered: bytes, slot: str) -> tuple[bytes, bytes]:
    before, found, after = rendered.partition(slot.encode())
    # The slot is random and the rest is ours or escaped sender text: it cannot be missing or there twice.
    if not found or slot.encode() in after:
        raise RuntimeError("the registration number's place in a rendered answer is not there exactly once")
    return before, after


def _filled(parts: tuple[bytes, bytes], registration_number: str) -> bytes:
    return parts[0] + registration_number.encode() + parts[1]


ExamineFn = Callable[[bytes, datetime], Examination]


class Intake:
    """The SyncChannel pipeline of one gateway process (see the module docstring): `Examiner.examine`
    (here or in an `ExaminerPool` process), then `conclude` (storage, here)."""

    def __init__(self, gw: Gateway, *, verifier: SignatureVerifier | None = None) -> None:
        self.gw = gw
        self.config: Config = gw.config
        self.storage: Storage = gw.storage
        self.tz = gw.config.calendar.tz
        self.message_log = MessageLogWriter(gw.storage)
        self.queue_depth = QueueDepthGauge(gw.storage)
        self.verifier = verifier or build_verifier(
            gw.config.trust, gw.clock, max_bytes=gw.config.server.max_message_bytes)
        self.examiner = Examiner(self.config, self.verifier, gw.calendar, gw.clock)
        self._own_verifier = verifier is None
        self.pool: ExaminerPool | None = None
        self.concluder = Concluder(self)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Callable[[], None]:
        self.message_log.start()
        self.concluder.start()
        processes = self.config.server.resolved_intake_processes()
        # Worker processes read the system clock and build their verifier from the configuration: a test's
        # manual clock or injected verifier lives in this process only, so then everything is examined here.
        if processes and type(self.gw.clock) is Clock and self._own_verifier:
            from gateway.intake_pool import ExaminerPool

            self.pool = ExaminerPool(self.config, processes)
            self.pool.start()
            log.info("intake examines requests in %d worker processes", processes)

        def stop() -> None:
            if self.pool is not None:
                self.pool.stop()
                self.pool = None
            self.concluder.stop()
            self.message_log.stop()

        return stop

    # -- the pipeline -------------------------------------------------------------------------------

    def handle(self, body: bytes) -> Answer:
        """Answer one request body (already read within `max_message_bytes`), examined in this thread.
        Never raises."""
        received_at = self.gw.clock.now()
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
        now = self.gw.clock.now()
        entries: list[MessageLogEntry] = []
        for (_, body, received_at), answer in zip(items, answers, strict=True):
            assert answer is not None
            if not answer.inbound_logged:
                entries.append(self._log_entry("in", body, answer, received_at))
            entries.append(self._log_entry("out", answer.body, answer, now))
            done.append(answer)
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

    def refuse_unread(self, exc: LicgateError, head: bytes) -> Answer:
        """A refusal decided before the body was parsed (MESSAGE_TOO_LARGE, OVERLOADED); `head` is what
        was read of the body, logged as evidence."""
        now = self.gw.clock.now()
        answer = self.fault(exc, {"message_id": None, "sender_id": None, "session_id": None})
        self.message_log.add(self._log_entry("in", head, answer, now), self._log_entry("out", answer.body, answer, now))
        return answer

    def fault(self, exc: LicgateError, ids: dict[str, str | None]) -> Answer:
        body = render_fault(
            code=exc.code, message=exc.message, data=exc.data, at=self.gw.clock.now(), tz=self.tz,
            server_side=exc.code in SERVER_SIDE_CODES, summary=_summary(exc), session_id=ids.get("session_id"),
        )
        return Answer(500, body, exc.code, ids.get("message_id"), ids.get("sender_id"))

    def _prepare(self, index: int, exam: Examination, body: bytes, received_at: datetime) -> Answer | _StoreJob:
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
            session_id=info.session_id, service_id=info.service_id,
        )
        verdict = INTAKE_REFUSED if missing else SUCCESS_CODE

        def render_receipt(registration_number: str) -> bytes:
            return _filled(receipt, registration_number)

        inbound = MessageLogEntry(
            direction="in", endpoint=ENDPOINT, message_id=info.message_id, sender_id=sender.id, verdict=verdict,
            body=body, sha256=sha256_hex(body), at=received_at, correlation_id=info.correlation_id,
        )
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
        message = _REFUSED_MESSAGE if refused else _ACCEPTED_MESSAGE
        body = render_response(
            correlation_id=info.message_id, response_date=self.gw.clock.now(), tz=self.tz, data=record.receipt,
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
        body = render_response(correlation_id=info.message_id, response_date=self.gw.clock.now(), tz=self.tz,
                               data=data, session_id=info.session_id)
        return Answer(200, body, SUCCESS_CODE, info.message_id, sender.id,
                      record.id if record else None, record.registration_number if record else None)

    # -- the message log ---------------------------------------------------------------------------------

    def _log_entry(self, direction: str, body: bytes, answer: Answer, at: datetime) -> MessageLogEntry:
        return MessageLogEntry(
            direction=direction, endpoint=ENDPOINT, message_id=answer.message_id, sender_id=answer.sender_id,
            verdict=answer.outcome, body=body, sha256=sha256_hex(body), at=at,
            application_id=answer.application_id,
        )


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

