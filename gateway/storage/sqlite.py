"""SQLite storage: the embedded default, one file, WAL journal.

Durability: every write transaction commits with `synchronous=FULL` in WAL mode, so when a method returns,
its transaction is in the write-ahead log and the log is fsynced: an acknowledged write survives `kill -9`
of the process and a power loss (as far as the disk honours fsync). Transactions not yet committed are lost.

Concurrency: writers of this process take one lock and one connection in turn (`BEGIN IMMEDIATE`, so a
writer in another process waits on the busy timeout instead of failing half-way); readers take pooled
connections of their own and read a consistent snapshot while a write is going on (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.storage.base import StorageError, StorageUnavailable
from gateway.storage.sqlbase import SqlStorage, Tx, UniqueViolation, require_aware
from gateway.storage.sqlfiles import migrations

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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

    # -- connections ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are begun and ended explicitly below.
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            if not self._memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open SQLite database {self._path}: {exc}") from None
        return conn

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

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._write_lock:
            self._check_open()
            if self._writer is None:
                self._writer = self._connect()
            conn = self._writer
            with self._translated():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(conn, self._sql)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

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
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

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
