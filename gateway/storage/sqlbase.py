"""What SQLite and PostgreSQL storage share: the logic of every method, written once against named queries.

A dialect supplies its queries (`sql/<dialect>/queries.sql`), transactions (`_read`, `_write`) and the way
it represents times, JSON and lists of ids. The queries of both dialects take the same parameter names and
return the same column names, so the code here does not know which database it talks to.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from adapters.shep_async import PASSWORD_PLACEHOLDER, with_sender_password
from core.auditchain import chain_hash, entry_hash, micros
from core.domain import (
    Applicant,
    ApplicantKind,
    Channel,
    Decision,
    ServiceType,
    SignerIdentity,
    Status,
    Step,
)
from core.redact import redact
from gateway.storage.base import (
    ApplicationQuery,
    ApplicationRecord,
    Applied,
    AuditRecord,
    ChainHead,
    Checkpoint,
    DocumentMeta,
    DuplicateIntake,
    InstanceRecord,
    Lease,
    MessageLogEntry,
    MessageQuery,
    MessageSummary,
    NewApplication,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    OutboxStats,
    QueueStats,
    StepRecord,
    Storage,
    StorageError,
    StorageUnavailable,
    Transition,
    TransitionConflict,
)
from gateway.storage.signals import OUTBOX, QUEUE, Signals
from gateway.storage.sqlfiles import queries

Row = Mapping[str, Any]
T = TypeVar("T")
FINAL_STATUSES = [s.value for s in Status if s.is_final]


# The named inserts that carry a blob, and their tables (a dialect may write a large blob its own way).
BLOB_TABLES = {"insert_payload": "payloads", "insert_document": "documents", "insert_log": "message_log"}


class UniqueViolation(StorageError):
    """A unique constraint refused a write (the dialect translates its driver's integrity error)."""


class Tx:
    """One transaction on one connection, running the dialect's named queries."""

    def __init__(self, conn: Any, sql: Mapping[str, str]) -> None:
        self.conn = conn
        self._sql = sql

    def one(self, query: str, /, **params: Any) -> Row | None:
        return self.conn.execute(self._sql[query], params).fetchone()

    def all(self, query: str, /, **params: Any) -> list[Row]:
        return self.conn.execute(self._sql[query], params).fetchall()

    def run(self, query: str, /, **params: Any) -> int:
        """Execute a statement; the number of rows it changed."""
        return self.conn.execute(self._sql[query], params).rowcount

    def many(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.executemany(self._sql[query], rows)

    def pipeline(self, blob_bytes: int = 0) -> AbstractContextManager[object]:
        """A block of writes whose results are not read, carrying `blob_bytes` of blobs in all: a dialect
        may send them to the server together (PostgreSQL's pipeline mode, one round trip); their errors
        come out at the end of the block."""
        return nullcontext()


def new_application_id() -> str:
    """A UUID of version 7's layout: the millisecond time first, so ids sort roughly by intake time and
    paging a provider's applications by id is stable; 74 random bits keep them unguessable."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), not naive {value!r}")
    return value


def _blob_bytes(app: NewApplication, log: Sequence[MessageLogEntry]) -> int:
    return len(app.payload) + sum(len(d.content) for d in app.documents) + sum(len(e.body) for e in log)


def registration_number(received_at: datetime, sequence_value: int) -> str:
    # The year as the caller's received_at has it (pass it in UTC, or local time to number by local year).
    return f"MED-{received_at.year:04d}-{sequence_value:06d}"


# --- JSON documents of applicant and signer ----------------------------------------------------------


def applicant_doc(a: Applicant) -> dict[str, Any]:
    return {"kind": a.kind.value, "name": a.name, "iin": a.iin, "bin": a.bin}


def applicant_of(doc: Mapping[str, Any]) -> Applicant:
    return Applicant(kind=ApplicantKind(doc["kind"]), name=doc["name"], iin=doc.get("iin"), bin=doc.get("bin"))


def signer_doc(s: SignerIdentity, signed_at: datetime | None = None) -> dict[str, Any]:
    """The signer's JSON document; it also keeps the signature's proven signing time (a XAdES-T genTime),
    which belongs with the signature and so needs no column of its own."""
    return {
        "signed_at": signed_at.astimezone(UTC).isoformat() if signed_at else None,
        "common_name": s.common_name, "iin": s.iin, "bin": s.bin, "roles": list(s.roles),
        "certificate_serial": s.certificate_serial, "issuer": s.issuer, "organization": s.organization,
        "not_before": s.not_before.isoformat() if s.not_before else None,
        "not_after": s.not_after.isoformat() if s.not_after else None,
        "certificate_der": base64.b64encode(s.certificate_der).decode("ascii"),
    }


def signer_of(doc: Mapping[str, Any]) -> SignerIdentity:
    def when(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    return SignerIdentity(
        common_name=doc["common_name"], iin=doc.get("iin"), bin=doc.get("bin"), roles=tuple(doc["roles"]),
        certificate_serial=doc["certificate_serial"], issuer=doc["issuer"], organization=doc.get("organization"),
        not_before=when(doc.get("not_before")), not_after=when(doc.get("not_after")),
        certificate_der=base64.b64decode(doc.get("certificate_der") or ""),
    )


class SqlStorage(Storage):
    """The storage logic over a dialect's named queries (see the module docstring)."""

    dialect: str
    serialized_writes: bool  # True when one write at a time holds the database (SQLite)

    def __init__(self) -> None:
        self._sql = queries(self.dialect)
        self.signals = Signals()

    def _changed(self, topic: str, key: str | None = None) -> None:
        """After a commit that queued something: wake this process's waiters (a dialect may tell other
        processes too: `PostgresStorage._changed`)."""
        self.signals.fire(topic, key)

    # -- what a dialect supplies ----------------------------------------------------------------------

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction (a consistent snapshot where the database offers one)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """A write transaction, committed durably when the block exits normally, else rolled back. Driver
        errors come out as StorageError; unique violations as UniqueViolation."""

    def _write_grouped(self, work: Callable[[Tx], T]) -> T:
        """`work` in a write transaction, committed durably before this returns; its result. A dialect may
        commit several callers' work in one transaction (SQLite: `SqliteStorage._write_grouped`), so `work`
        must raise to undo what it did, and its exceptions come out here as they would from `_write`."""
        with self._write() as tx:
            return work(tx)

    def _insert_with_blob(self, tx: Tx, query: str, rows: Sequence[dict[str, Any]], column: str,
                          blobs: Sequence[bytes]) -> None:
        """Insert `rows`, each with its blob in `column` (a dialect may write large blobs without binding
        them: `SqliteStorage._insert_with_blob`)."""
        tx.many(query, [{**row, column: blob} for row, blob in zip(rows, blobs, strict=True)])

    @abstractmethod
    def _ts(self, value: datetime) -> Any:
        """An aware datetime as the database stores it."""

    @abstractmethod
    def _dt(self, value: Any) -> datetime:
        """A stored time as an aware UTC datetime."""

    @abstractmethod
    def _json(self, value: Any) -> Any: ...

    @abstractmethod
    def _unjson(self, value: Any) -> Any: ...

    @abstractmethod
    def _list(self, values: Sequence[str]) -> Any:
        """A list of strings as one query parameter (`ids`, `final`)."""

    def _ts_opt(self, value: datetime | None) -> Any:
        return None if value is None else self._ts(require_aware(value, "time"))

    def _dt_opt(self, value: Any) -> datetime | None:
        return None if value is None else self._dt(value)

    # -- rows to records --------------------------------------------------------------------------------

    def _records(self, tx: Tx, rows: Sequence[Row]) -> list[ApplicationRecord]:
        if not rows:
            return []
        return self._build_records(rows, tx.all("documents_of", ids=self._list([r["id"] for r in rows])))

    def _build_records(self, rows: Sequence[Row], doc_rows: Sequence[Row]) -> list[ApplicationRecord]:
        """Records from fetched rows (no database work: may run after the transaction has ended)."""
        docs: dict[str, list[DocumentMeta]] = defaultdict(list)
        for d in doc_rows:
            docs[d["application_id"]].append(DocumentMeta(
                index=d["idx"], code=d["code"], file_name=d["file_name"], mime_type=d["mime_type"],
                sha256=d["sha256"], size=d["size"],
            ))
        return [self._record(r, tuple(docs[r["id"]])) for r in rows]

    def _record(self, r: Row, documents: tuple[DocumentMeta, ...]) -> ApplicationRecord:
        return ApplicationRecord(
            id=r["id"], registration_number=r["registration_number"], provider_bin=r["provider_bin"],
            sender_id=r["sender_id"], message_id=r["message_id"], request_number=r["request_number"],
            request_hash=r["request_hash"], channel=Channel(r["channel"]),
            service_type=ServiceType(r["service_type"]), dialect=r["dialect"],
            applicant=applicant_of(self._unjson(r["applicant"])), signer=signer_of(signer := self._unjson(r["signer"])),
            activity_subtypes=tuple(self._unjson(r["activity_subtypes"])), license_number=r["license_number"],
            received_at=self._dt(r["received_at"]), due_at=self._dt_opt(r["due_at"]), status=Status(r["status"]),
            last_step=Step(r["last_step"]) if r["last_step"] else None, documents=documents,
            missing_documents=tuple(self._unjson(r["missing_documents"])), receipt=bytes(r["receipt"]),
            decision=Decision(r["decision"]) if r["decision"] else None,
            result=bytes(r["result"]) if r["result"] is not None else None, session_id=r["session_id"],
            service_id=r["service_id"], updated_at=self._dt(r["updated_at"]),
            signed_at=datetime.fromisoformat(signer["signed_at"]) if signer.get("signed_at") else None,
        )

    def _one_record(self, name: str, **params: Any) -> ApplicationRecord | None:
        with self._read() as tx:
            row = tx.one(name, **params)
            return self._records(tx, [row])[0] if row else None

    def _outbox_record(self, r: Row) -> OutboxRecord:
        return OutboxRecord(
            id=r["id"], application_id=r["application_id"], kind=OutboxKind(r["kind"]), message_id=r["message_id"],
            body=bytes(r["body"]), state=OutboxState(r["state"]), attempts=r["attempts"],
            next_attempt_at=self._dt(r["next_attempt_at"]), created_at=self._dt(r["created_at"]),
            last_error=r["last_error"], sent_at=self._dt_opt(r["sent_at"]),
        )

    def _log_entry(self, r: Row) -> MessageLogEntry:
        return MessageLogEntry(
            direction=r["direction"], endpoint=r["endpoint"], message_id=r["message_id"], sender_id=r["sender_id"],
            verdict=r["verdict"], body=bytes(r["body"]), sha256=r["sha256"], at=self._dt(r["at"]),
            correlation_id=r["correlation_id"], application_id=r["application_id"], id=r["id"],
        )

    def _insert_log(self, tx: Tx, entries: Sequence[MessageLogEntry]) -> None:
        self._insert_with_blob(tx, "insert_log", [{
            "direction": e.direction, "endpoint": e.endpoint, "message_id": e.message_id,
            "sender_id": e.sender_id, "verdict": e.verdict, "sha256": e.sha256,
            "at": self._ts(require_aware(e.at, "MessageLogEntry.at")), "correlation_id": e.correlation_id,
            "application_id": e.application_id,
        } for e in entries], "body", [e.body for e in entries])

    # -- intake -------------------------------------------------------------------------------------------

    def _duplicate_of(self, tx: Tx, sender_id: str, message_id: str, request_number: str) -> DuplicateIntake | None:
        row = tx.one("find_duplicate", sender_id=sender_id, message_id=message_id, request_number=request_number)
        if row is None:
            return None
        return DuplicateIntake(self._records(tx, [row])[0],
                               "message_id" if row["match_rank"] == 1 else "request_number")

    def _duplicates_of(self, tx: Tx, apps: Sequence[NewApplication]) -> list[DuplicateIntake | None]:
        """`_duplicate_of` for each of `apps` (a dialect with round trips to save does it in one query)."""
        return [self._duplicate_of(tx, a.sender_id, a.message_id, a.request_number) for a in apps]

    def store_application(
        self,
        app: NewApplication,
        render_receipt: Callable[[str], bytes],
        log: Sequence[MessageLogEntry] = (),
    ) -> ApplicationRecord:
        result = self.store_applications([(app, render_receipt, log)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def store_applications(
        self,
        items: Sequence[tuple[NewApplication, Callable[[str], bytes], Sequence[MessageLogEntry]]],
    ) -> list[ApplicationRecord | Exception]:
        results = self._store_applications(items)
        for provider_bin in {r.provider_bin for r in results
                             if isinstance(r, ApplicationRecord) and r.status is Status.RECEIVED}:
            self._changed(QUEUE, provider_bin)
        return results

    def _store_applications(
        self,
        items: Sequence[tuple[NewApplication, Callable[[str], bytes], Sequence[MessageLogEntry]]],
    ) -> list[ApplicationRecord | Exception]:
        for app, _, _ in items:
            require_aware(app.received_at, "received_at")
        if len(items) > 1:
            try:
                return self._write_grouped(lambda tx: self._store_together(tx, items))
            except StorageUnavailable:
                raise
            except StorageError:
                # Another process stored one of them meanwhile, or one of them is refused by the database:
                # one by one below, each settled alone.
                pass
        prepared = [self._store_work(app, render_receipt, log) for app, render_receipt, log in items]
        outcomes = self._write_grouped_many([work for _, work in prepared])
        results: list[ApplicationRecord | Exception] = []
        for (app, _, _), (app_id, _), outcome in zip(items, prepared, outcomes, strict=True):
            if isinstance(outcome, UniqueViolation):
                # Another transaction stored the same intake between our check and our insert.
                with self._read() as tx:
                    outcome = self._duplicate_of(tx, app.sender_id, app.message_id, app.request_number) or outcome
            if isinstance(outcome, Exception):
                results.append(outcome)
            else:
                number, receipt = outcome
                results.append(self._stored_record(app_id, app, number, receipt))
        return results

    def _store_together(
        self, tx: Tx, items: Sequence[tuple[NewApplication, Callable[[str], bytes], Sequence[MessageLogEntry]]],
    ) -> list[ApplicationRecord | Exception]:
        """`store_applications` in one statement per table for the whole batch (each statement gives up the
        GIL and costs a round trip: about nine per application one by one). Duplicates are found first, of
        stored applications and within the batch; a unique key refusing an insert anyway (another process
        was faster) fails the whole work with UniqueViolation."""
        outcomes: list[ApplicationRecord | Exception | None] = [None] * len(items)
        holders: dict[tuple[str, str, str], int] = {}
        later: list[tuple[int, int, str]] = []  # (index, index of the batch's first holder, field)
        fresh: list[int] = []
        duplicates = self._duplicates_of(tx, [app for app, _, _ in items])
        for i, ((app, _, _), duplicate) in enumerate(zip(items, duplicates, strict=True)):
            if duplicate:
                outcomes[i] = duplicate
                continue
            by_message = holders.get(("message_id", app.sender_id, app.message_id))
            by_request = holders.get(("request_number", app.sender_id, app.request_number))
            if by_message is not None or by_request is not None:
                later.append((i, by_message if by_message is not None else by_request,  # type: ignore[arg-type]
                              "message_id" if by_message is not None else "request_number"))
                continue
            holders[("message_id", app.sender_id, app.message_id)] = i
            holders[("request_number", app.sender_id, app.request_number)] = i
            fresh.append(i)
        numbers = self._next_registration_values(tx, len(fresh))
        app_rows, payload_rows, payloads, doc_rows, docs, queue_rows, logs = [], [], [], [], [], [], []
        for i, value in zip(fresh, numbers, strict=True):
            app, render_receipt, log = items[i]
            app_id = new_application_id()
            number = registration_number(app.received_at, value)
            try:
                receipt = render_receipt(number)
            except Exception as exc:  # noqa: BLE001 - this application's failure, not the batch's
                outcomes[i] = exc
                for key in (("message_id", app.sender_id, app.message_id),
                            ("request_number", app.sender_id, app.request_number)):
                    holders.pop(key, None)
                continue
            app_rows.append(self._application_row(app_id, app, number, receipt))
            payload_rows.append({"application_id": app_id})
            payloads.append(app.payload)
            for index, d in enumerate(app.documents):
                doc_rows.append({"application_id": app_id, "idx": index, "code": d.code, "file_name": d.file_name,
                                 "mime_type": d.mime_type, "sha256": d.sha256, "size": len(d.content)})
                docs.append(d.content)
            if app.status is Status.RECEIVED:
                queue_rows.append({"application_id": app_id, "provider_bin": app.provider_bin})
            logs += [e if e.application_id else replace(e, application_id=app_id) for e in log]
            outcomes[i] = self._stored_record(app_id, app, number, receipt)
        with tx.pipeline(sum(len(b) for b in payloads) + sum(len(d) for d in docs) + sum(len(e.body) for e in logs)):
            tx.many("insert_application", app_rows)
            self._insert_with_blob(tx, "insert_payload", payload_rows, "body", payloads)
            self._insert_with_blob(tx, "insert_document", doc_rows, "content", docs)
            tx.many("enqueue", queue_rows)
            self._insert_log(tx, logs)
        for i, holder, field in later:
            first = outcomes[holder]
            # The holder's own failure (its receipt could not be made) is not this one's: nothing of either
            # is stored, so this one is answered as the holder was.
            outcomes[i] = DuplicateIntake(first, field) if isinstance(first, ApplicationRecord) else first
        return outcomes  # type: ignore[return-value]

    def _next_registration_values(self, tx: Tx, count: int) -> list[int]:
        """`count` values of the registration sequence, in order."""
        return [tx.one("next_registration_number")["value"] for _ in range(count)]  # type: ignore[index]

    def _application_row(self, app_id: str, app: NewApplication, number: str, receipt: bytes) -> dict[str, Any]:
        return dict(
            id=app_id, registration_number=number, provider_bin=app.provider_bin,
            sender_id=app.sender_id, message_id=app.message_id, request_number=app.request_number,
            request_hash=app.request_hash, channel=app.channel.value, service_type=app.service_type.value,
            service_id=app.service_id, dialect=app.dialect, session_id=app.session_id,
            applicant=self._json(applicant_doc(app.applicant)),
            signer=self._json(signer_doc(app.signer, app.signed_at)),
            activity_subtypes=self._json(list(app.activity_subtypes)),
            missing_documents=self._json(list(app.missing_documents)),
            license_number=app.license_number, received_at=self._ts(app.received_at),
            due_at=self._ts_opt(app.due_at), status=app.status.value, receipt=receipt,
            updated_at=self._ts(app.received_at),
        )

    def _write_grouped_many(self, works: Sequence[Callable[[Tx], T]]) -> list[T | Exception]:
        """Each of `works` as by `_write_grouped`; its result or its exception, in order. A dialect may
        commit them all in one transaction (SQLite)."""
        outcomes: list[T | Exception] = []
        for work in works:
            try:
                outcomes.append(self._write_grouped(work))
            except Exception as exc:  # noqa: BLE001 - handed back in place of the result
                outcomes.append(exc)
        return outcomes

    def _store_work(self, app: NewApplication, render_receipt: Callable[[str], bytes],
                    log: Sequence[MessageLogEntry]) -> tuple[str, Callable[[Tx], tuple[str, bytes]]]:
        app_id = new_application_id()
        # Entries logged with the intake are about this application, which had no id when they were made.
        log = [e if e.application_id else replace(e, application_id=app_id) for e in log]

        def store(tx: Tx) -> tuple[str, bytes]:
            duplicate = self._duplicate_of(tx, app.sender_id, app.message_id, app.request_number)
            if duplicate:
                raise duplicate
            seq = tx.one("next_registration_number")
            assert seq is not None
            number = registration_number(app.received_at, seq["value"])
            receipt = render_receipt(number)
            with tx.pipeline(_blob_bytes(app, log)):
                tx.many("insert_application", [self._application_row(app_id, app, number, receipt)])
                self._insert_with_blob(tx, "insert_payload", [{"application_id": app_id}], "body", [app.payload])
                self._insert_with_blob(tx, "insert_document", [{
                    "application_id": app_id, "idx": i, "code": d.code, "file_name": d.file_name,
                    "mime_type": d.mime_type, "sha256": d.sha256, "size": len(d.content),
                } for i, d in enumerate(app.documents)], "content", [d.content for d in app.documents])
                if app.status is Status.RECEIVED:
                    tx.many("enqueue", [{"application_id": app_id, "provider_bin": app.provider_bin}])
                self._insert_log(tx, log)
            return number, receipt

        return app_id, store

    @staticmethod
    def _stored_record(app_id: str, app: NewApplication, number: str, receipt: bytes) -> ApplicationRecord:
        return ApplicationRecord(
            id=app_id, registration_number=number, provider_bin=app.provider_bin, sender_id=app.sender_id,
            message_id=app.message_id, request_number=app.request_number, request_hash=app.request_hash,
            channel=app.channel, service_type=app.service_type, dialect=app.dialect, applicant=app.applicant,
            signer=app.signer, activity_subtypes=tuple(app.activity_subtypes), license_number=app.license_number,
            received_at=app.received_at.astimezone(UTC),
            due_at=app.due_at.astimezone(UTC) if app.due_at else None, status=app.status, last_step=None,
            documents=tuple(
                DocumentMeta(index=i, code=d.code, file_name=d.file_name, mime_type=d.mime_type, sha256=d.sha256,
                             size=len(d.content))
                for i, d in enumerate(app.documents)
            ),
            missing_documents=tuple(app.missing_documents), receipt=receipt, session_id=app.session_id,
            service_id=app.service_id, updated_at=app.received_at.astimezone(UTC),
            signed_at=app.signed_at.astimezone(UTC) if app.signed_at else None,
        )

    def get_application(self, app_id: str) -> ApplicationRecord | None:
        return self._one_record("application_by_id", id=app_id)

    def find_by_message_id(self, sender_id: str, message_id: str) -> ApplicationRecord | None:
        return self._one_record("find_by_message_id", sender_id=sender_id, value=message_id)

    def find_by_request_number(self, sender_id: str, request_number: str) -> ApplicationRecord | None:
        return self._one_record("find_by_request_number", sender_id=sender_id, value=request_number)

    def find_by_registration_number(self, registration_number: str) -> ApplicationRecord | None:
        return self._one_record("find_by_registration_number", registration_number=registration_number)

    def get_document(self, app_id: str, index: int) -> tuple[DocumentMeta, bytes] | None:
        with self._read() as tx:
            d = tx.one("document", application_id=app_id, idx=index)
        if d is None:
            return None
        meta = DocumentMeta(index=d["idx"], code=d["code"], file_name=d["file_name"], mime_type=d["mime_type"],
                            sha256=d["sha256"], size=d["size"])
        return meta, bytes(d["content"])

    def get_payload(self, app_id: str) -> bytes | None:
        with self._read() as tx:
            row = tx.one("payload", application_id=app_id)
        return bytes(row["body"]) if row else None

    def list_applications(
        self, provider_bin: str, *, open_only: bool = True, after_id: str | None = None, limit: int = 500
    ) -> list[ApplicationRecord]:
        with self._read() as tx:
            rows = tx.all("list_applications", provider_bin=provider_bin, after_id=after_id or "",
                          final=self._list(FINAL_STATUSES if open_only else []), limit=limit)
            return self._records(tx, rows)

    # -- the provider queue --------------------------------------------------------------------------------

    def lease(self, provider_bin: str, max_items: int, lease_seconds: float, now: datetime, *,
              log: Callable[[str, list[str]], MessageLogEntry] | None = None) -> Lease:
        lease_id = uuid.uuid4().hex
        expires_at = require_aware(now, "now").astimezone(UTC) + timedelta(seconds=lease_seconds)
        if max_items <= 0:
            return Lease(lease_id, expires_at, ())
        with self._write() as tx:
            picked = tx.all("lease", provider_bin=provider_bin, lease_id=lease_id, now=self._ts(now),
                            until=self._ts(expires_at), max_items=max_items)
            order = [r["application_id"] for r in sorted(picked, key=lambda r: r["seq"])]
            if not order:
                return Lease(lease_id, expires_at, ())
            # The leased rows are read in the lease's own transaction: either the caller gets the lease
            # and its applications, or nothing is leased (a read after the commit could fail and leave
            # them hidden for the whole lease with no lease_id to ack).
            rows = tx.all("applications_by_ids", ids=self._list(order))
            doc_rows = tx.all("documents_of", ids=self._list(order))
            if log is not None:
                self._insert_log(tx, [log(lease_id, order)])
        # Records are built after the commit, so that other writers (SQLite: one at a time) need not wait.
        return Lease(lease_id, expires_at, self._in_order(self._build_records(rows, doc_rows), order))

    @staticmethod
    def _in_order(records: list[ApplicationRecord], order: list[str]) -> tuple[ApplicationRecord, ...]:
        by_id = {r.id: r for r in records}
        return tuple(by_id[i] for i in order)

    def ack(self, provider_bin: str, lease_id: str, ids: Sequence[str], now: datetime, *,
            log: Callable[[list[str]], MessageLogEntry] | None = None) -> list[str]:
        with self._write() as tx:
            acked = {r["application_id"] for r in tx.all("ack", provider_bin=provider_bin, lease_id=lease_id,
                                                          ids=self._list(list(ids)))} if ids else set()
            done = [i for i in dict.fromkeys(ids) if i in acked]
            if log is not None:
                self._insert_log(tx, [log(done)])
        return done

    def queue_depth(self, provider_bin: str | None = None) -> int:
        with self._read() as tx:
            row = (tx.one("queue_depth_all") if provider_bin is None
                   else tx.one("queue_depth", provider_bin=provider_bin))
        return int(row["n"]) if row else 0

    def queue_stats(self) -> list[QueueStats]:
        with self._read() as tx:
            rows = tx.all("queue_stats")
        return [QueueStats(r["provider_bin"], int(r["n"]), self._dt_opt(r["oldest_received_at"])) for r in rows]

    # -- operators ----------------------------------------------------------------------------------------

    def search_applications(self, query: ApplicationQuery, now: datetime) -> list[ApplicationRecord]:
        filters = {"status": query.status.value if query.status else None,
                   "channel": query.channel.value if query.channel else None,
                   "overdue": query.overdue, "now": self._ts(require_aware(now, "now")), "limit": query.limit}
        with self._read() as tx:
            if query.registration_number is not None:
                row = tx.one("find_by_registration_number", registration_number=query.registration_number)
                found = self._records(tx, [row] if row else [])
                return [a for a in found if _matches(a, query, now)]
            for key, name in ((query.request_number, "search_by_request_number"), (query.iin, "search_by_iin"),
                              (query.bin, "search_by_bin")):
                if key is not None:
                    return self._records(tx, tx.all(name, key=key, **filters))
            if query.overdue:
                return self._records(tx, tx.all("search_overdue", **filters))
            return self._records(tx, tx.all("search_recent", **filters))

    def create_session(self, token_hash: str, operator: str, created_at: datetime, expires_at: datetime) -> None:
        with self._write() as tx:
            tx.run("delete_expired_sessions", now=self._ts(require_aware(created_at, "created_at")))
            tx.run("insert_session", token_hash=token_hash, operator=operator, created_at=self._ts(created_at),
                   expires_at=self._ts(require_aware(expires_at, "expires_at")))

    def session_operator(self, token_hash: str, now: datetime) -> str | None:
        with self._read() as tx:
            row = tx.one("session_operator", token_hash=token_hash, now=self._ts(require_aware(now, "now")))
        return row["operator"] if row else None

    def delete_session(self, token_hash: str) -> None:
        with self._write() as tx:
            tx.run("delete_session", token_hash=token_hash)

    def login_locked_until(self, operator: str, now: datetime) -> datetime | None:
        with self._read() as tx:
            row = tx.one("lockout_of", operator=operator)
        until = self._dt_opt(row["locked_until"]) if row else None
        return until if until is not None and until > require_aware(now, "now") else None

    def login_failed(self, operator: str, now: datetime, max_failures: int, lock_seconds: float) -> datetime | None:
        with self._write() as tx:
            row = tx.one("lockout_failed", operator=operator)
            assert row is not None
            if int(row["failures"]) < max_failures:
                return None
            until = require_aware(now, "now") + timedelta(seconds=lock_seconds)
            tx.run("lockout_lock", operator=operator, until=self._ts(until))
            return until

    def login_succeeded(self, operator: str) -> None:
        with self._write() as tx:
            tx.run("lockout_clear", operator=operator)

    # -- workflow -----------------------------------------------------------------------------------------

    def apply_transition(self, app_id: str, transition: Transition) -> Applied:
        step = transition.step
        at = require_aware(step.at, "StepRecord.at")
        recorded_at = require_aware(transition.recorded_at, "Transition.recorded_at")
        # A new message is due at once. The step's own time comes from the provider's IS, whose clock may
        # run ahead of ours, so whichever of the two is earlier.
        due = min(at, recorded_at)
        with self._write() as tx:
            changed = tx.run(
                "advance_application", id=app_id,
                expected=transition.expected_last_step.value if transition.expected_last_step else None,
                step=step.step.value, status=transition.new_status.value if transition.new_status else None,
                decision=transition.decision.value if transition.decision else None, result=transition.result,
                updated_at=self._ts(at),
            )
            if not changed:
                row = tx.one("last_step_of", id=app_id)
                if row is None:
                    raise KeyError(app_id)
                raise TransitionConflict(Step(row["last_step"]) if row["last_step"] else None)
            tx.run("insert_step", application_id=app_id, step=step.step.value, actor=step.actor, at=self._ts(at),
                   source=step.source, recorded_at=self._ts(recorded_at))
            tx.many("insert_outbox", [{
                "application_id": m.application_id, "kind": m.kind.value, "message_id": m.message_id,
                "body": m.body, "next_attempt_at": self._ts(due), "created_at": self._ts(recorded_at),
            } for m in transition.outbox])
            self._insert_log(tx, transition.log)
            row = tx.one("application_by_id", id=app_id)
            assert row is not None
            applied = Applied(self._records(tx, [row])[0], self._timeline(tx, app_id))
        if transition.outbox:
            self._changed(OUTBOX)
        return applied

    def timeline(self, app_id: str) -> list[StepRecord]:
        with self._read() as tx:
            return self._timeline(tx, app_id)

    def _timeline(self, tx: Tx, app_id: str) -> list[StepRecord]:
        return [StepRecord(step=Step(r["step"]), actor=r["actor"], at=self._dt(r["at"]), source=r["source"],
                           recorded_at=self._dt(r["recorded_at"])) for r in tx.all("timeline", application_id=app_id)]

    # -- outbox -------------------------------------------------------------------------------------------

    def claim_outbox(self, now: datetime, limit: int, claim_seconds: float, *,
                     holder: str | None = None) -> list[OutboxRecord]:
        require_aware(now, "now")
        if limit <= 0:
            return []
        with self._write() as tx:
            rows = tx.all("claim_outbox", now=self._ts(now), until=self._ts(now + timedelta(seconds=claim_seconds)),
                          limit=limit, holder=holder)
        return sorted((self._outbox_record(r) for r in rows), key=lambda m: m.id)

    def release_outbox_claims(self, holder: str) -> int:
        with self._write() as tx:
            released = tx.run("release_outbox_claims", holder=holder)
        if released:
            self._changed(OUTBOX)
        return released

    def mark_outbox_sent(self, outbox_id: int, now: datetime, log: Sequence[MessageLogEntry] = ()) -> None:
        with self._write() as tx:
            tx.run("outbox_sent", id=outbox_id, now=self._ts(require_aware(now, "now")))
            self._insert_log(tx, log)

    def mark_outbox_failed(
        self, outbox_id: int, error: str, next_attempt_at: datetime, dead: bool,
        log: Sequence[MessageLogEntry] = (),
    ) -> None:
        with self._write() as tx:
            tx.run("outbox_failed", id=outbox_id, error=error,
                   next_attempt_at=self._ts(require_aware(next_attempt_at, "next_attempt_at")),
                   state=OutboxState.DEAD.value if dead else OutboxState.PENDING.value)
            self._insert_log(tx, log)

    def outbox_messages(self, application_id: str) -> list[OutboxRecord]:
        with self._read() as tx:
            return [self._outbox_record(r) for r in tx.all("outbox_of", application_id=application_id)]

    def dead_letters(self, limit: int = 100) -> list[OutboxRecord]:
        with self._read() as tx:
            return [self._outbox_record(r) for r in tx.all("dead_letters", limit=limit)]

    def retry_dead_letter(self, outbox_id: int, now: datetime, log: Sequence[MessageLogEntry] = ()) -> bool:
        # Attempts start again from zero: the operator decided the cause is fixed.
        with self._write() as tx:
            retried = tx.run("retry_dead_letter", id=outbox_id, now=self._ts(require_aware(now, "now"))) > 0
            if retried:
                self._insert_log(tx, log)
        if retried:
            self._changed(OUTBOX)
        return retried

    def retry_all_dead_letters(self, now: datetime, log: Sequence[MessageLogEntry] = ()) -> list[int]:
        with self._write() as tx:
            rows = tx.all("retry_all_dead_letters", now=self._ts(require_aware(now, "now")))
            self._insert_log(tx, log)
        if rows:
            self._changed(OUTBOX)
        return sorted(int(r["id"]) for r in rows)

    def outbox_message(self, outbox_id: int) -> OutboxRecord | None:
        with self._read() as tx:
            row = tx.one("outbox_by_id", id=outbox_id)
        return self._outbox_record(row) if row else None

    def outbox_stats(self) -> OutboxStats:
        with self._read() as tx:
            pending = tx.one("outbox_pending_stats")
            dead = tx.all("outbox_dead_by_kind")
        assert pending is not None
        return OutboxStats(pending=int(pending["pending"]),
                           oldest_pending_at=self._dt_opt(pending["oldest_pending_at"]),
                           dead_by_kind={r["kind"]: int(r["n"]) for r in dead})

    def outbox_backlog(self) -> int:
        with self._read() as tx:
            row = tx.one("outbox_backlog")
        return int(row["n"]) if row else 0

    # -- instances and periodic jobs --------------------------------------------------------------------

    def _instance(self, r: Row) -> InstanceRecord:
        return InstanceRecord(id=r["id"], host=r["host"], pid=r["pid"], version=r["version"],
                              started_at=self._dt(r["started_at"]), last_seen=self._dt(r["last_seen"]))

    def heartbeat(self, instance: InstanceRecord, now: datetime) -> None:
        with self._write() as tx:
            tx.run("heartbeat", id=instance.id, host=instance.host, pid=instance.pid, version=instance.version,
                   started_at=self._ts(require_aware(instance.started_at, "started_at")),
                   now=self._ts(require_aware(now, "now")))

    def live_instances(self, since: datetime) -> list[InstanceRecord]:
        with self._read() as tx:
            return [self._instance(r) for r in tx.all("live_instances", since=self._ts(require_aware(since, "since")))]

    def remove_instance(self, instance_id: str) -> None:
        with self._write() as tx:
            tx.run("remove_instance", id=instance_id)

    def forget_instances(self, before: datetime) -> int:
        with self._write() as tx:
            return tx.run("forget_instances", before=self._ts(require_aware(before, "before")))

    def claim_job(self, name: str, now: datetime, next_run_at: datetime, holder: str) -> bool:
        with self._write() as tx:
            return tx.one("claim_job", name=name, now=self._ts(require_aware(now, "now")),
                          next_run_at=self._ts(require_aware(next_run_at, "next_run_at")), holder=holder) is not None

    # -- deadline breaches ---------------------------------------------------------------------------------

    def applications_to_check(self, provider_bin: str, now: datetime, *, after_id: str | None = None,
                              limit: int = 500) -> list[ApplicationRecord]:
        with self._read() as tx:
            rows = tx.all("applications_to_check", provider_bin=provider_bin, after_id=after_id or "",
                          now=self._ts(require_aware(now, "now")), limit=limit)
            return self._records(tx, rows)

    def timelines(self, app_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        if not app_ids:
            return {}
        with self._read() as tx:
            rows = tx.all("timelines_of", ids=self._list(list(app_ids)))
        found: dict[str, list[StepRecord]] = defaultdict(list)
        for r in rows:
            found[r["application_id"]].append(StepRecord(
                step=Step(r["step"]), actor=r["actor"], at=self._dt(r["at"]), source=r["source"],
                recorded_at=self._dt(r["recorded_at"])))
        return dict(found)

    def breaches_counted(self, app_ids: Sequence[str]) -> set[tuple[str, Step]]:
        if not app_ids:
            return set()
        with self._read() as tx:
            rows = tx.all("breaches_counted", ids=self._list(list(app_ids)))
        return {(r["application_id"], Step(r["step"])) for r in rows}

    def count_breaches(self, breaches: Sequence[tuple[str, Step]], holder: str, now: datetime, *,
                       settle: Sequence[str] = (), checks: Mapping[str, datetime] | None = None,
                       ) -> list[tuple[str, Step]]:
        if not breaches and not settle and not checks:
            return []
        at = self._ts(require_aware(now, "now"))
        counted: list[tuple[str, Step]] = []
        with self._write() as tx:
            for app_id, step in dict.fromkeys(breaches):
                if tx.one("count_breach", application_id=app_id, step=step.value, holder=holder, now=at) is not None:
                    counted.append((app_id, step))
            if settle:
                tx.run("settle_breaches", ids=self._list(list(settle)), now=at)
            if checks:
                tx.many("set_breach_check", [{"id": app_id, "at": self._ts(require_aware(when, "check"))}
                                             for app_id, when in checks.items()])
        return counted

    # -- the audit chain (docs/audit.md) -------------------------------------------------------------------

    def _entry_hash(self, r: Row) -> str:
        return entry_hash(r["direction"], r["endpoint"], r["message_id"], r["sender_id"], r["correlation_id"],
                          r["application_id"], r["verdict"], micros(self._dt(r["at"])), r["sha256"])

    def _head(self, r: Row, added: int = 0) -> ChainHead:
        return ChainHead(r["log_id"], int(r["seq"]), r["chain_hash"], added)

    def sequence_log(self, limit: int = 5000) -> ChainHead | None:
        with self._read() as tx:
            # Looked at first without the lock: an idle sequencer writes nothing (a row lock is a write).
            pending = tx.one("log_pending_count")
            if pending is not None and int(pending["n"]) == 0:
                row = tx.one("audit_head")
                assert row is not None
                return self._head(row)
        with self._write() as tx:
            row = tx.one("audit_head_lock")
            if row is None:
                return None  # another instance is sequencing: it takes these records too
            rows = tx.all("log_pending_batch", limit=limit)
            if not rows:
                return self._head(row)
            seq, previous = int(row["seq"]), row["chain_hash"]
            links = []
            for r in rows:
                seq += 1
                previous = chain_hash(previous, seq, self._entry_hash(r))
                links.append({"seq": seq, "log_id": r["id"], "chain_hash": previous})
            tx.many("log_chain_insert", links)
            tx.run("log_pending_delete", ids=self._list([r["id"] for r in rows]))
            tx.run("audit_head_set", seq=seq, chain_hash=previous)
        return ChainHead(row["log_id"], seq, previous, len(rows))

    def chain_head(self) -> ChainHead:
        with self._read() as tx:
            row = tx.one("audit_head")
        assert row is not None
        return self._head(row)

    def pending_log(self) -> int:
        with self._read() as tx:
            row = tx.one("log_pending_count")
        return int(row["n"]) if row else 0

    def _checkpoint(self, r: Row) -> Checkpoint:
        token = r["timestamp_token"]
        return Checkpoint(id=int(r["id"]), size=int(r["size"]), root=r["root"], at=self._dt(r["at"]), note=r["note"],
                          timestamp_token=bytes(token) if token is not None else None)

    def add_checkpoint(
        self, make: Callable[[ChainHead, Checkpoint | None, datetime | None], tuple[str, datetime] | None],
    ) -> Checkpoint | None:
        with self._write() as tx:
            row = tx.one("audit_head_lock")
            if row is None:
                return None
            head = self._head(row)
            last_row = tx.one("checkpoint_last")
            last = self._checkpoint(last_row) if last_row else None
            covered = last.size if last else 0
            if head.seq <= covered:
                return None
            first = tx.one("record_time_at", seq=covered + 1)
            made = make(head, last, self._dt(first["at"]) if first else None)
            if made is None:
                return None
            note, at = made
            inserted = tx.one("checkpoint_insert", size=head.seq, root=head.chain_hash,
                              at=self._ts(require_aware(at, "checkpoint time")), note=note)
            assert inserted is not None
        return Checkpoint(id=int(inserted["id"]), size=head.seq, root=head.chain_hash, at=at, note=note)

    def set_checkpoint_token(self, checkpoint_id: int, token: bytes) -> None:
        with self._write() as tx:
            tx.run("checkpoint_token", id=checkpoint_id, token=token)

    def checkpoints(self) -> list[Checkpoint]:
        with self._read() as tx:
            return [self._checkpoint(r) for r in tx.all("checkpoints_all")]

    def checkpoint_covering(self, seq: int) -> Checkpoint | None:
        with self._read() as tx:
            row = tx.one("checkpoint_covering", size=seq)
        return self._checkpoint(row) if row else None

    def last_checkpoint(self) -> tuple[Checkpoint | None, int]:
        with self._read() as tx:
            row = tx.one("checkpoint_last")
            count = tx.one("checkpoint_count")
        return (self._checkpoint(row) if row else None), int(count["n"]) if count else 0

    def _audit_record(self, r: Row) -> AuditRecord:
        entry = None
        if r["present"] is not None:
            entry = MessageLogEntry(
                direction=r["direction"], endpoint=r["endpoint"], message_id=r["message_id"],
                sender_id=r["sender_id"], verdict=r["verdict"], body=bytes(r["body"]), sha256=r["sha256"],
                at=self._dt(r["at"]), correlation_id=r["correlation_id"], application_id=r["application_id"])
        return AuditRecord(seq=int(r["seq"]), chain_hash=r["chain_hash"], log_id=int(r["log_id"]), entry=entry,
                           purged=bool(r["purged"]))

    def audit_records(self, after: int, upto: int, limit: int) -> list[AuditRecord]:
        with self._read() as tx:
            rows = tx.all("audit_records", after=after, upto=upto, limit=limit)
        return [self._audit_record(r) for r in rows]

    def audit_records_of_application(self, application_id: str) -> list[AuditRecord]:
        with self._read() as tx:
            rows = tx.all("audit_records_of_application", application_id=application_id)
        return [self._audit_record(r) for r in rows]

    def audit_links(self, lo: int, hi: int) -> list[tuple[int, str, str | None]]:
        with self._read() as tx:
            rows = tx.all("audit_links", lo=lo, hi=hi)
        return [(int(r["seq"]), r["chain_hash"], self._entry_hash(r) if r["present"] is not None else None)
                for r in rows]

    def add_seal_cert(self, cert_pem: bytes, now: datetime) -> None:
        with self._write() as tx:
            tx.run("seal_cert_put", cert_pem=cert_pem, now=self._ts(require_aware(now, "now")))

    def seal_certs(self) -> list[bytes]:
        with self._read() as tx:
            return [bytes(r["cert_pem"]) for r in tx.all("seal_certs")]

    def purge_log(self, before: datetime, now: datetime) -> int:
        cut, at = self._ts(require_aware(before, "before")), self._ts(require_aware(now, "now"))
        purged = 0
        while True:
            with self._write() as tx:
                ids = [int(r["id"]) for r in tx.all("purgeable_log", before=cut, limit=1000)]
                if ids:
                    tx.run("purge_log_bodies", ids=self._list(ids))  # type: ignore[arg-type]
                    tx.run("purge_log_mark", ids=self._list(ids), now=at)  # type: ignore[arg-type]
                else:
                    tx.run("purge_documents", before=cut)
                    tx.run("purge_payloads", before=cut)
            purged += len(ids)
            if not ids:
                return purged

    def _after_migration(self, tx: Tx, name: str) -> None:
        """A migration's data step, in its transaction: `audit` rewrites the secrets of the stored records,
        and takes the gateway's own SHEP password out of the queued envelopes (filled in when sent)."""
        if name != "audit":
            return
        # Ids first, then one body at a time: a large log is never in memory at once.
        for r in tx.all("log_with_secrets"):
            row = tx.one("log_body", id=r["id"])
            assert row is not None
            body = redact(bytes(row["body"]))
            tx.run("log_rewrite", id=r["id"], body=body, sha256=hashlib.sha256(body).hexdigest())
        for r in tx.all("outbox_with_secrets"):
            row = tx.one("outbox_body", id=r["id"])
            assert row is not None
            tx.run("outbox_rewrite", id=r["id"], body=with_sender_password(bytes(row["body"]), PASSWORD_PLACEHOLDER))

    # -- message log --------------------------------------------------------------------------------------

    def log_messages(self, entries: Sequence[MessageLogEntry]) -> None:
        if entries:
            # Grouped: where the dialect can, the entries ride along with the next intake commit instead of
            # holding the database for a durable commit of their own.
            self._write_grouped(lambda tx: self._insert_log(tx, entries))

    def message_log(self, *, message_id: str | None = None, application_id: str | None = None,
                    limit: int = 100) -> list[MessageLogEntry]:
        """The latest `limit` entries matching both filters (those given), oldest first."""
        if message_id is not None and application_id is not None:
            name = "log_by_message_and_application"
        elif message_id is not None:
            name = "log_by_message"
        elif application_id is not None:
            name = "log_by_application"
        else:
            name = "log_latest"
        with self._read() as tx:
            rows = tx.all(name, message_id=message_id, application_id=application_id, limit=limit)
        return [self._log_entry(r) for r in reversed(rows)]

    def search_messages(self, query: MessageQuery) -> list[MessageSummary]:
        params = {"message_id": query.message_id, "sender_id": query.sender_id, "verdict": query.verdict,
                  "application_id": query.application_id, "before_id": query.before_id, "limit": query.limit,
                  "since": self._ts(require_aware(query.since, "since")) if query.since else None,
                  "until": self._ts(require_aware(query.until, "until")) if query.until else None}
        # The most selective key present picks the index the search walks (newest first); the rest filter.
        if query.message_id is not None:
            name = "search_log_by_message"
        elif query.application_id is not None:
            name = "search_log_by_application"
        else:
            name = "search_log"
        with self._read() as tx:
            rows = tx.all(name, **params)
        return [MessageSummary(
            id=r["id"], direction=r["direction"], endpoint=r["endpoint"], message_id=r["message_id"],
            sender_id=r["sender_id"], correlation_id=r["correlation_id"], application_id=r["application_id"],
            verdict=r["verdict"], sha256=r["sha256"], size=r["size"], at=self._dt(r["at"])) for r in rows]

    def message_entry(self, entry_id: int) -> MessageLogEntry | None:
        with self._read() as tx:
            row = tx.one("log_entry", id=entry_id)
        return self._log_entry(row) if row else None


def _matches(app: ApplicationRecord, query: ApplicationQuery, now: datetime) -> bool:
    """The search's filters, for an application found by its registration number."""
    if query.status is not None and app.status is not query.status:
        return False
    if query.channel is not None and app.channel is not query.channel:
        return False
    return not query.overdue or (app.due_at is not None and app.due_at < now and not app.status.is_final)
