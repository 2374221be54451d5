"""SQLite storage: the embedded default, one file, WAL journal.

Durability: every write transaction commits with `synchronous=FULL` in WAL mode, so when a method returns,
its transaction is in the write-ahead log and the log is fsynced: an acknowledged write survives `kill -9`
of the process and a power loss (as far as the disk honours fsync). Transactions not yet committed are lost.

Concurrency: writers of this process take one lock and one connection in turn (`BEGIN IMMEDIATE`, so a
writer in another process waits on the busy timeout instead of failing half-way); readers take pooled
connections of their own and read a consistent snapshot while a write is going on (WAL).

Group commit (`_write_grouped`, used by intake): callers that arrive while a write is in progress queue
their work; the next holder of the write lock runs every queued piece of work in ONE transaction, each in a
savepoint of its own (a piece that fails is rolled back alone and its caller gets its exception; a piece
alone in its transaction needs none), commits
once, and only then hands each caller its result. A commit costs an fsync and most of a transaction's CPU,
so under concurrent intake this is the difference between one commit per application and one per batch;
each caller still returns only after the transaction holding its work is durable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from gateway.storage.base import StorageError, StorageUnavailable
from gateway.storage.sqlbase import BLOB_TABLES, SqlStorage, Tx, UniqueViolation, require_aware
from gateway.storage.sqlfiles import migrations

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")
_BLOB_IO_MIN = 256 * 1024  # below this, binding is cheaper than a second statement and a blob handle
# One encoder for every JSON column (json.dumps with options builds a new one per call; four per intake).
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class _Pending:
    """One caller's work waiting for a group commit, and what came of it."""

    work: Callable[[Tx], Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


def to_micros(value: datetime) -> int:
    delta = require_aware(value, "time") - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def split_statements(script: str) -> list[str]:
    """A migration script as single statements (SQLite's `execute` runs one; `executescript` would commit
    the transaction that holds the migration lock)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise ValueError(f"unterminated SQL statement: {buf.strip()[:80]!r}")
    return statements


def _copy_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        return type(exc)(str(exc)) if type(exc).__init__ is StorageError.__init__ else StorageError(str(exc))
    return StorageError(f"the group commit failed: {type(exc).__name__}: {exc}")


class SqliteStorage(SqlStorage):
    dialect = "sqlite"
    serialized_writes = True

    def __init__(self, path: str, *, busy_timeout_seconds: float = 30.0) -> None:
        super().__init__()
        self._path = path
        self._memory = path == ":memory:"
        self._busy_timeout = busy_timeout_seconds
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._writer: sqlite3.Connection | None = None
        self._closed = False
        self._pending: list[_Pending] = []  # work waiting for the next group commit
        self._pending_lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are begun and ended explicitly below.
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            if not self._memory:
                self._use_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            # Statement journals (of savepoints and multi-row statements) in memory, not in a temporary file
            # created and deleted per transaction (strace: an open, unlink and close per intake commit).
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open SQLite database {self._path}: {exc}") from None
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new database file to WAL needs it exclusively, and SQLite answers "database is locked"
        # at once, without the busy handler, while another connection is opening the same new file (seen
        # with three storages migrating one empty database together). The mode is kept in the file, so
        # trying again shortly finds it set or takes the switch.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from None
            raise StorageError(f"SQLite refused the write: {exc}") from None
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite: {exc}") from None

    def _writer_connection(self) -> sqlite3.Connection:
        """The one write connection (the write lock is held), opened on first use."""
        self._check_open()
        if self._writer is None:
            self._writer = self._connect()
        return self._writer

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._write_lock:
            conn = self._writer_connection()
            with self._translated():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(conn, self._sql)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    def _write_grouped(self, work: Callable[[Tx], T]) -> T:
        outcome = self._write_grouped_many([work])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _write_grouped_many(self, works: Sequence[Callable[[Tx], T]]) -> list[T | Exception]:
        items = [_Pending(work) for work in works]
        with self._pending_lock:
            self._pending.extend(items)
        with self._write_lock:
            # Whoever holds the lock first commits everything queued by then, these items included unless
            # an earlier holder already did.
            if not items[-1].done:
                self._commit_pending()
        return [item.error if item.error is not None else item.result for item in items]  # type: ignore[misc]

    def _commit_pending(self) -> None:
        """Run the queued work in one transaction (the write lock is held)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            conn = self._writer_connection()
            with self._translated():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if len(batch) == 1:
                        # Alone in its transaction: a failure rolls all of it back, no savepoint needed.
                        batch[0].result = batch[0].work(Tx(conn, self._sql))
                        conn.execute("COMMIT")
                        return
                    for item in batch:
                        conn.execute("SAVEPOINT grouped")
                        try:
                            with self._translated():
                                item.result = item.work(Tx(conn, self._sql))
                        except Exception as exc:  # noqa: BLE001 - handed to this item's caller below
                            if not conn.in_transaction:
                                raise  # SQLite rolled the whole transaction back: it fails for everyone
                            conn.execute("ROLLBACK TO grouped")
                            item.result, item.error = None, exc
                        conn.execute("RELEASE grouped")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException as exc:
            # Nothing of the batch was committed: every caller gets the failure, each its own instance
            # (one exception object raised in several threads would share one traceback).
            for item in batch:
                item.result = None
                item.error = exc if item is batch[-1] else _copy_error(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in batch:
                item.done = True

    def _next_registration_values(self, tx: Tx, count: int) -> list[int]:
        # One counter row under the write lock: the batch takes a contiguous range in one statement.
        if count == 0:
            return []
        row = tx.one("next_registration_numbers", count=count)
        assert row is not None
        return list(range(row["value"] - count + 1, row["value"] + 1))

    def _insert_with_blob(self, tx: Tx, query: str, rows: Sequence[dict[str, Any]], column: str,
                          blobs: Sequence[bytes]) -> None:
        # sqlite3 binds a blob by copying it, and the copy stays with the cached statement until its next
        # use: for a 10 MB message that was about 30 MB more at the peak, held after the answer. A large
        # blob is inserted as a zeroblob (the blob column is last in its table, in payloads, documents and,
        # since migration 2, message_log, so SQLite writes the zeros page by page without allocating them)
        # and written through the pager in place.
        # Rows go in in the order given (message-log ids are its order), small ones batched between large.
        small: list[dict[str, Any]] = []
        for row, blob in zip(rows, blobs, strict=True):
            if len(blob) < _BLOB_IO_MIN:
                small.append({**row, column: blob})
                continue
            tx.many(query, small)
            small = []
            rowid = tx.conn.execute(self._sql[f"{query}_zeroblob"], {**row, f"{column}_size": len(blob)}).lastrowid
            with tx.conn.blobopen(BLOB_TABLES[query], column, rowid) as handle:
                handle.write(blob)
        tx.many(query, small)

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        if self._memory:
            # Every connection to ":memory:" is a database of its own: share the one writer connection.
            with self._write() as tx:
                yield tx
            return
        self._check_open()
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            with self._translated():
                conn.execute("BEGIN")
                try:
                    yield Tx(conn, self._sql)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
        finally:
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    # -- value representation --------------------------------------------------------------------------

    def _ts(self, value: datetime) -> Any:
        return to_micros(value)

    def _dt(self, value: Any) -> datetime:
        return from_micros(value)

    def _json(self, value: Any) -> Any:
        return _encode_json(value)

    def _unjson(self, value: Any) -> Any:
        return json.loads(value)

    def _list(self, values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    # -- lifecycle -------------------------------------------------------------------------------------

    def migrate(self) -> None:
        # The whole run is one IMMEDIATE transaction: a second process starting at the same moment waits
        # for it, then finds every migration recorded.
        with self._write() as tx:
            tx.run("migrations_table")
            applied = {r["version"] for r in tx.all("migrations_applied")}
            for migration in migrations(self.dialect):
                if migration.version in applied:
                    continue
                for statement in split_statements(migration.sql):
                    tx.conn.execute(statement)
                # What a data step rewrites must not stay readable in the file's freed space.
                tx.conn.execute("PRAGMA secure_delete=ON")
                try:
                    self._after_migration(tx, migration.name)
                finally:
                    tx.conn.execute("PRAGMA secure_delete=OFF")
                tx.run("migration_record", version=migration.version, name=migration.name,
                       applied_at=to_micros(datetime.now(UTC)))

    def close(self) -> None:
        with self._write_lock, self._pool_lock:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def ping(self) -> None:
        try:
            with self._read() as tx:
                tx.one("ping")
        except StorageError as exc:
            raise StorageUnavailable(str(exc)) from None
