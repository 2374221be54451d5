"""The one storage interface: applications, documents, the provider queue with leases, the step timeline,
the outbox of outbound messages, and the message log. Two implementations run the same test suite:
SQLite (the embedded default) and PostgreSQL (several gateway instances on one database).

Every method is synchronous and thread-safe; a method that writes is one transaction, and returns only
after the transaction is durable (SQLite WAL with synchronous=FULL; PostgreSQL commit). Times are aware
datetimes in UTC. Nothing here knows about HTTP, SOAP or signatures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from core.domain import Applicant, Channel, Decision, Document, ServiceType, SignerIdentity, Status, Step
from gateway.storage.signals import Signals


class StorageError(Exception):
    """The database could not do what was asked (unreachable, locked past the timeout, full)."""


class StorageUnavailable(StorageError):
    """The database cannot be reached at all (healthz answers 503)."""


class DuplicateIntake(StorageError):
    """An application with the same (sender_id, message_id) or (sender_id, request_number) exists."""

    def __init__(self, existing: ApplicationRecord, field_name: str) -> None:
        super().__init__(f"duplicate {field_name}")
        self.existing = existing
        self.field_name = field_name  # "message_id" or "request_number"


class TransitionConflict(StorageError):
    """The application's last step was not the one the caller expected (a concurrent change won)."""

    def __init__(self, actual_last_step: Step | None) -> None:
        super().__init__(f"last step is {actual_last_step}")
        self.actual_last_step = actual_last_step


class OutboxKind(StrEnum):
    NOTIFICATION = "NOTIFICATION"
    RESPONSE = "RESPONSE"


class OutboxState(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    DEAD = "DEAD"  # gave up after max attempts; blocks later messages of the same application


@dataclass(frozen=True, slots=True)
class MessageLogEntry:
    """One message that crossed the boundary, kept so that a dispute can be settled later."""

    direction: str  # "in" | "out"
    endpoint: str  # e.g. "shep/sync", "provider/result", "shep/async"
    message_id: str | None
    sender_id: str | None
    verdict: str  # "SCSS001", "INTAKE_REFUSED", an error code, "DELIVERED", "HTTP 503", ...
    body: bytes
    sha256: str
    at: datetime
    correlation_id: str | None = None
    application_id: str | None = None
    id: int | None = None  # the record's number in the log, once stored


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A message-log record without its body (a search lists many; a body can be megabytes)."""

    id: int
    direction: str
    endpoint: str
    message_id: str | None
    sender_id: str | None
    correlation_id: str | None
    application_id: str | None
    verdict: str
    sha256: str
    size: int
    at: datetime


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """An operator's search of the message log: every filter given must match; newest first, `limit` records
    with an id below `before_id` (the next page starts below the last id of this one)."""

    message_id: str | None = None
    sender_id: str | None = None
    verdict: str | None = None
    application_id: str | None = None
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until
    before_id: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The message log's hash chain as it stands: `seq` records, the last one's chain hash (docs/audit.md)."""

    log_id: str  # this log's identity (the checkpoints' origin)
    seq: int
    chain_hash: str
    added: int = 0  # records the call that returned this head sequenced


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One place of the chain and the record there: `entry` is None when the record is gone from the log."""

    seq: int
    chain_hash: str
    log_id: int
    entry: MessageLogEntry | None
    purged: bool = False  # its body was removed by `licgate audit purge`


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the chain's length and head (`note`, the text appended to checkpoint_file)."""

    id: int
    size: int
    root: str
    at: datetime
    note: str
    timestamp_token: bytes | None = None


@dataclass(frozen=True, slots=True)
class NewApplication:
    """What intake hands to storage: everything read from the verified payload plus intake facts."""

    provider_bin: str
    sender_id: str
    message_id: str
    request_number: str
    request_hash: str  # sha256 hex of the verified payload bytes: same messageId + same hash = same receipt
    channel: Channel
    service_type: ServiceType
    dialect: str
    applicant: Applicant
    signer: SignerIdentity
    activity_subtypes: tuple[str, ...]
    license_number: str | None
    received_at: datetime
    due_at: datetime | None
    status: Status  # RECEIVED (queued) or INTAKE_REFUSED (recorded, not queued)
    payload: bytes | memoryview  # the verified payload document, exactly as it arrived (a view: not copied)
    documents: tuple[Document, ...]
    missing_documents: tuple[str, ...] = ()  # for INTAKE_REFUSED
    session_id: str | None = None
    service_id: str = "MED_LICENSE"
    signed_at: datetime | None = None  # the signing time a verified XAdES-T timestamp proves (its genTime)


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    index: int  # position in the application, 0-based; the document's URL uses it
    code: str
    file_name: str
    mime_type: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ApplicationRecord:
    id: str
    registration_number: str
    provider_bin: str
    sender_id: str
    message_id: str
    request_number: str
    request_hash: str
    channel: Channel
    service_type: ServiceType
    dialect: str
    applicant: Applicant
    signer: SignerIdentity
    activity_subtypes: tuple[str, ...]
    license_number: str | None
    received_at: datetime
    due_at: datetime | None
    status: Status
    last_step: Step | None
    documents: tuple[DocumentMeta, ...]
    missing_documents: tuple[str, ...]
    receipt: bytes  # the receipt answered at intake, answered again for a repeated messageId
    decision: Decision | None = None
    result: bytes | None = None  # the signed LicenseDecision document as uploaded
    session_id: str | None = None
    service_id: str = "MED_LICENSE"
    updated_at: datetime | None = None
    signed_at: datetime | None = None  # the proven signing time of the application's signature


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: Step
    actor: str
    at: datetime  # when the step happened, as the provider's IS says
    source: str  # who recorded it: "provider-api:<BIN>", "result-upload", ...
    recorded_at: datetime | None = None  # filled by storage


@dataclass(frozen=True, slots=True)
class Lease:
    lease_id: str
    expires_at: datetime
    applications: tuple[ApplicationRecord, ...]


@dataclass(frozen=True, slots=True)
class NewOutboxMessage:
    application_id: str
    kind: OutboxKind
    message_id: str  # the outbound message's own id; the same on every retry
    body: bytes  # the complete SOAP envelope, rendered (and WS-Security signed) once


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    application_id: str
    kind: OutboxKind
    message_id: str
    body: bytes
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApplicationQuery:
    """An operator's search: any of the keys (at most one is used: registration number, request number,
    IIN, BIN, in that order), narrowed by status, channel and "overdue" (past its term, no result yet)."""

    registration_number: str | None = None
    request_number: str | None = None
    iin: str | None = None
    bin: str | None = None
    status: Status | None = None
    channel: Channel | None = None
    overdue: bool = False
    limit: int = 100


@dataclass(frozen=True, slots=True)
class QueueStats:
    provider_bin: str
    depth: int  # queued and not yet acked
    oldest_received_at: datetime | None  # of the application longest in the queue


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    oldest_pending_at: datetime | None  # when the oldest undelivered (PENDING) message was queued
    dead_by_kind: dict[str, int]

    @property
    def dead(self) -> int:
        return sum(self.dead_by_kind.values())


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply_transition` wrote: the application after it and its whole timeline, read in the same
    transaction."""

    app: ApplicationRecord
    timeline: list[StepRecord]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A gateway process on this database, as its heartbeat last wrote it."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of the workflow, applied atomically with everything it causes."""

    step: StepRecord
    expected_last_step: Step | None  # optimistic concurrency: the step the caller saw last
    recorded_at: datetime  # when the gateway recorded it (its one clock): the step's recorded_at, outbox times
    new_status: Status | None = None
    decision: Decision | None = None
    result: bytes | None = None
    outbox: tuple[NewOutboxMessage, ...] = ()
    log: tuple[MessageLogEntry, ...] = field(default=())


class Storage(ABC):
    """See the module docstring. Implementations: `SqliteStorage`, `PostgresStorage`."""

    # Wake-ups after commits that queued applications or outbound messages (`gateway.storage.signals`).
    signals: Signals

    # -- lifecycle --------------------------------------------------------------------------------

    @abstractmethod
    def migrate(self) -> None:
        """Apply the numbered migrations not applied yet (an empty database is created from scratch)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable when the database cannot answer a trivial query."""

    # -- intake ------------------------------------------------------------------------------------

    @abstractmethod
    def store_application(
        self,
        app: NewApplication,
        render_receipt: Callable[[str], bytes],
        log: Sequence[MessageLogEntry] = (),
    ) -> ApplicationRecord:
        """In one transaction: assign the id and the registration number (`MED-<year>-<6 digits>`, from a
        sequence), call `render_receipt(registration_number)` for the receipt to keep, insert the
        application, its documents and the log entries, and queue it for its provider when its status
        is RECEIVED (not when INTAKE_REFUSED). Raise DuplicateIntake when (sender_id, message_id) or
        (sender_id, request_number) exists already; nothing is written then."""

    @abstractmethod
    def store_applications(
        self,
        items: Sequence[tuple[NewApplication, Callable[[str], bytes], Sequence[MessageLogEntry]]],
    ) -> list[ApplicationRecord | Exception]:
        """`store_application` for each (app, render_receipt, log) of `items`, durable when this returns:
        in order, the stored record or the exception that application's store raised (DuplicateIntake,
        StorageError); one failing does not fail the others. Storage may commit them together."""

    @abstractmethod
    def get_application(self, app_id: str) -> ApplicationRecord | None: ...

    @abstractmethod
    def find_by_message_id(self, sender_id: str, message_id: str) -> ApplicationRecord | None: ...

    @abstractmethod
    def find_by_request_number(self, sender_id: str, request_number: str) -> ApplicationRecord | None: ...

    @abstractmethod
    def find_by_registration_number(self, registration_number: str) -> ApplicationRecord | None: ...

    @abstractmethod
    def get_document(self, app_id: str, index: int) -> tuple[DocumentMeta, bytes] | None: ...

    @abstractmethod
    def get_payload(self, app_id: str) -> bytes | None:
        """The verified payload document as it arrived."""

    @abstractmethod
    def list_applications(
        self, provider_bin: str, *, open_only: bool = True, after_id: str | None = None, limit: int = 500
    ) -> list[ApplicationRecord]:
        """A provider's applications ordered by id (paged by `after_id`); `open_only` skips final ones."""

    # -- the provider queue --------------------------------------------------------------------------

    @abstractmethod
    def lease(self, provider_bin: str, max_items: int, lease_seconds: float, now: datetime, *,
              log: Callable[[str, list[str]], MessageLogEntry] | None = None) -> Lease:
        """Lease up to `max_items` queued, unacked applications of this provider whose previous lease (if
        any) has expired, oldest first. No application is ever in two live leases at once, even across
        processes (PostgreSQL: FOR UPDATE SKIP LOCKED). An empty lease still gets an id. A non-empty lease
        stores `log(lease_id, application ids)` in its transaction."""

    @abstractmethod
    def ack(self, provider_bin: str, lease_id: str, ids: Sequence[str], now: datetime, *,
            log: Callable[[list[str]], MessageLogEntry] | None = None) -> list[str]:
        """Remove from the queue those of `ids` that are held by this lease; return the ids acked. Stores
        `log(acked ids)` in the same transaction."""

    @abstractmethod
    def queue_depth(self, provider_bin: str | None = None) -> int:
        """Applications queued and not yet acked (leased or not)."""

    @abstractmethod
    def queue_stats(self) -> list[QueueStats]:
        """Per provider: the queue's depth and its oldest application's reception time."""

    # -- operators ---------------------------------------------------------------------------------

    @abstractmethod
    def search_applications(self, query: ApplicationQuery, now: datetime) -> list[ApplicationRecord]:
        """Applications matching `query`, newest first (overdue ones alone: the most overdue first)."""

    @abstractmethod
    def create_session(self, token_hash: str, operator: str, created_at: datetime, expires_at: datetime) -> None:
        """A console session, known by the hash of its token; expired sessions are removed on the way."""

    @abstractmethod
    def session_operator(self, token_hash: str, now: datetime) -> str | None:
        """The operator of a live session, or None."""

    @abstractmethod
    def delete_session(self, token_hash: str) -> None: ...

    @abstractmethod
    def login_locked_until(self, operator: str, now: datetime) -> datetime | None:
        """Until when the operator's logins are refused after too many failures, or None."""

    @abstractmethod
    def login_failed(self, operator: str, now: datetime, max_failures: int, lock_seconds: float) -> datetime | None:
        """Count a failed login; at `max_failures` in a row the operator is locked until the returned time."""

    @abstractmethod
    def login_succeeded(self, operator: str) -> None:
        """Forget the failed logins before this one."""

    # -- workflow -----------------------------------------------------------------------------------

    @abstractmethod
    def apply_transition(self, app_id: str, transition: Transition) -> Applied:
        """In one transaction: check the application's last step is `expected_last_step` (else raise
        TransitionConflict), append the step to the timeline, set status / decision / result when given,
        add the outbox messages and the log entries. Returns the updated application and its timeline."""

    @abstractmethod
    def timeline(self, app_id: str) -> list[StepRecord]: ...

    # -- outbox -------------------------------------------------------------------------------------

    @abstractmethod
    def claim_outbox(self, now: datetime, limit: int, claim_seconds: float, *,
                     holder: str | None = None) -> list[OutboxRecord]:
        """Claim up to `limit` PENDING messages due by `now`, each the oldest unsent message of its
        application (so that delivery stays in order per application), and not claimed by another
        worker whose claim is still live. A DEAD message blocks the later ones of its application.
        `holder` (the instance's id) is recorded with the claim, for `release_outbox_claims`."""

    @abstractmethod
    def release_outbox_claims(self, holder: str) -> int:
        """Give up the live claims `holder` still has (it is stopping); how many. Signals OUTBOX."""

    @abstractmethod
    def mark_outbox_sent(self, outbox_id: int, now: datetime, log: Sequence[MessageLogEntry] = ()) -> None: ...

    @abstractmethod
    def mark_outbox_failed(
        self, outbox_id: int, error: str, next_attempt_at: datetime, dead: bool,
        log: Sequence[MessageLogEntry] = (),
    ) -> None:
        """Record a failed attempt: attempts + 1, the error, the next attempt time, DEAD when `dead`."""

    @abstractmethod
    def outbox_messages(self, application_id: str) -> list[OutboxRecord]: ...

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[OutboxRecord]: ...

    @abstractmethod
    def retry_dead_letter(self, outbox_id: int, now: datetime, log: Sequence[MessageLogEntry] = ()) -> bool:
        """Make a DEAD message PENDING again (an operator's decision), with `log` in the same transaction;
        False (and nothing written) if it was not DEAD."""

    @abstractmethod
    def retry_all_dead_letters(self, now: datetime, log: Sequence[MessageLogEntry] = ()) -> list[int]:
        """Make every DEAD message PENDING again, with `log`; the ids retried."""

    @abstractmethod
    def outbox_message(self, outbox_id: int) -> OutboxRecord | None: ...

    @abstractmethod
    def outbox_stats(self) -> OutboxStats:
        """Undelivered messages: how many are pending and since when, and the dead letters by kind."""

    @abstractmethod
    def outbox_backlog(self) -> int:
        """PENDING messages."""

    # -- instances and periodic jobs ----------------------------------------------------------------

    @abstractmethod
    def heartbeat(self, instance: InstanceRecord, now: datetime) -> None:
        """Insert the instance's row, or refresh its `last_seen` to `now`."""

    @abstractmethod
    def live_instances(self, since: datetime) -> list[InstanceRecord]:
        """The instances seen at or after `since`, oldest first."""

    @abstractmethod
    def remove_instance(self, instance_id: str) -> None: ...

    @abstractmethod
    def forget_instances(self, before: datetime) -> int:
        """Delete the rows of instances last seen before `before`; how many."""

    @abstractmethod
    def claim_job(self, name: str, now: datetime, next_run_at: datetime, holder: str) -> bool:
        """True for the one caller that finds the job `name` due at `now` (or never run) and moves its next
        run to `next_run_at`; every other caller of the same tick gets False, also in other processes."""

    # -- deadline breaches ------------------------------------------------------------------------

    @abstractmethod
    def applications_to_check(self, provider_bin: str, now: datetime, *, after_id: str | None = None,
                              limit: int = 500) -> list[ApplicationRecord]:
        """The provider's unsettled applications the breach sweep must read at `now`: new ones, those whose
        last step changed their deadlines, and those with a deadline come due (by id, paged by `after_id`)."""

    @abstractmethod
    def timelines(self, app_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        """The timelines of several applications in one read (an application without steps is absent)."""

    @abstractmethod
    def breaches_counted(self, app_ids: Sequence[str]) -> set[tuple[str, Step]]:
        """Which (application id, step) breaches of these applications are counted already."""

    @abstractmethod
    def count_breaches(self, breaches: Sequence[tuple[str, Step]], holder: str, now: datetime, *,
                       settle: Sequence[str] = (), checks: Mapping[str, datetime] | None = None,
                       ) -> list[tuple[str, Step]]:
        """In one transaction: record each (application id, step) breach not recorded yet, mark the
        applications of `settle` settled (their breaches final and all recorded), and note for each of
        `checks` when the sweep must read it again. Returns the breaches this call recorded, which the caller
        (and no other, in any process) counts in its metrics."""

    # -- the audit chain (docs/audit.md) ----------------------------------------------------------

    @abstractmethod
    def sequence_log(self, limit: int = 5000) -> ChainHead | None:
        """Give up to `limit` committed records without a place in the chain theirs (in id order), in one
        transaction holding the chain's head; None when another sequencer holds it right now."""

    @abstractmethod
    def chain_head(self) -> ChainHead: ...

    @abstractmethod
    def pending_log(self) -> int:
        """Records not sequenced yet."""

    @abstractmethod
    def add_checkpoint(
        self, make: Callable[[ChainHead, Checkpoint | None, datetime | None], tuple[str, datetime] | None],
    ) -> Checkpoint | None:
        """Holding the chain's head: `make(head, last checkpoint, time of the first record it does not
        cover)` returns the signed note and its time (or None: not due), stored as a checkpoint of the
        head. None when nothing was added (no new records, not due, another instance holds the head)."""

    @abstractmethod
    def set_checkpoint_token(self, checkpoint_id: int, token: bytes) -> None: ...

    @abstractmethod
    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, shortest first."""

    @abstractmethod
    def checkpoint_covering(self, seq: int) -> Checkpoint | None:
        """The shortest checkpoint that covers place `seq`."""

    @abstractmethod
    def last_checkpoint(self) -> tuple[Checkpoint | None, int]:
        """The longest checkpoint (None: none yet) and how many there are."""

    @abstractmethod
    def audit_records(self, after: int, upto: int, limit: int) -> list[AuditRecord]:
        """Places `after` + 1 ... `upto` of the chain (at most `limit`), in order."""

    @abstractmethod
    def audit_records_of_application(self, application_id: str) -> list[AuditRecord]: ...

    @abstractmethod
    def audit_links(self, lo: int, hi: int) -> list[tuple[int, str, str | None]]:
        """(seq, chain hash, entry hash or None when the record is gone) of places `lo` ... `hi`."""

    @abstractmethod
    def add_seal_cert(self, cert_pem: bytes, now: datetime) -> None:
        """Keep the certificate of a seal key the gateway made itself (never the key)."""

    @abstractmethod
    def seal_certs(self) -> list[bytes]:
        """The certificates `add_seal_cert` kept, oldest first."""

    @abstractmethod
    def purge_log(self, before: datetime, now: datetime) -> int:
        """Remove the bodies of records older than `before` about applications in a final state, and the
        documents and payloads of those applications received before it; the records purged."""

    # -- message log --------------------------------------------------------------------------------

    @abstractmethod
    def log_messages(self, entries: Sequence[MessageLogEntry]) -> None: ...

    @abstractmethod
    def message_log(self, *, message_id: str | None = None, application_id: str | None = None,
                    limit: int = 100) -> list[MessageLogEntry]: ...

    @abstractmethod
    def search_messages(self, query: MessageQuery) -> list[MessageSummary]:
        """The records matching `query`, newest first, without their bodies."""

    @abstractmethod
    def message_entry(self, entry_id: int) -> MessageLogEntry | None:
        """One record with its body, by its id."""
