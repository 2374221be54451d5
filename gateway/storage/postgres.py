"""PostgreSQL storage: several gateway processes on one database (psycopg 3 with a connection pool).

Durability is PostgreSQL's: a method returns after its transaction committed (with the server's default
`synchronous_commit=on`, after the WAL record is flushed). Queue leases and outbox claims lock their rows
with `FOR UPDATE SKIP LOCKED`, so concurrent processes never hand out one row twice. The URL may carry
`?options=-csearch_path%3D<schema>`: every query uses unqualified table names.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.storage.base import DuplicateIntake, NewApplication, StorageError, StorageUnavailable
from gateway.storage.signals import Signals
from gateway.storage.sqlbase import BLOB_TABLES, Row, SqlStorage, Tx, UniqueViolation, require_aware
from gateway.storage.sqlfiles import migrations

T = TypeVar("T")
log = logging.getLogger("licgate.storage")
_PIPELINE_MAX_BLOB_BYTES = 1024 * 1024
# A row whose blob is larger goes in by COPY, its blob streamed in pieces of this size (see _insert_with_blob).
_COPY_PIECE_BYTES = 1024 * 1024
# COPY's text format: a backslash starts an escape, a tab ends a field, a newline ends a row.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _unreachable(exc: psycopg.Error) -> bool:
    """The server cannot be reached or went away (as opposed to refusing one statement, e.g. a deadlock)."""
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)  # failed to connect, connection lost
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")  # connection errors; shutting down


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection plans each execution of a prepared statement for its parameters. psycopg
    prepares a query after five runs, and PostgreSQL then may settle on a generic plan made while the
    tables were still small and keep it until the next ANALYZE (never, with autovacuum off): on an empty
    schema the generic plan of the intake's duplicate look-up scans every application of the sender by the
    request-number key, the lease sorts the provider's whole queue, and a fresh gateway slowed from 900 to
    230 intakes/s over its first 6,000 applications. Planning each time costs the server about 0.1-0.3 ms
    for the duplicate look-up (docs/storage.md, "Query plans"). PostgreSQL 11 and older have no such
    setting: each connection logs a warning and is used all the same."""
    try:
        conn.execute("SET plan_cache_mode = force_custom_plan")
    except psycopg.errors.UndefinedObject:
        log.warning("this PostgreSQL (older than 12) cannot be told to plan each execution: look-ups may "
                    "slow down as the tables grow until they are analyzed (run ANALYZE, or keep autovacuum on)")


def _copy_field(value: Any) -> str:
    """A value in COPY's text format (the server reads it as the column's type reads text). Only the kinds
    of value the blob tables' other columns hold: text, integers, times, NULL."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        # In UTC: an offset with seconds or microseconds has no text form PostgreSQL reads back.
        return require_aware(value, "time").astimezone(UTC).isoformat()
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value).translate(_COPY_ESCAPES)
    raise TypeError(f"no COPY text form for {type(value).__name__} here")


def _copy_row(conn: psycopg.Connection[Any], table: str, row: Mapping[str, Any], column: str, blob: bytes) -> None:
    """Insert `row` into `table` with `blob` in `column` (last), streamed by COPY in hex pieces."""
    names = [name for name in row if name != column]
    view = memoryview(blob)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join([*names, column])}) FROM STDIN") as copy:
        # bytea's hex input, \x then two digits a byte; its backslash doubled, as COPY reads escapes.
        copy.write("".join(f"{_copy_field(row[name])}\t" for name in names) + "\\\\x")
        for start in range(0, len(view), _COPY_PIECE_BYTES):
            copy.write(view[start:start + _COPY_PIECE_BYTES].hex())
        copy.write("\n")


# One channel for every licgate schema of a database; the payload says whose signal it is:
# "<schema>|<origin>|<topic>|<key>" (origin: the sending storage, which ignores its own).
CHANNEL = "licgate"
_LISTEN_POLL_SECONDS = 1.0  # how often the listener looks whether it is to stop
_RECONNECT_SECONDS = (0.5, 1, 2, 5)


class _Notifications:
    """This process's signals to the other instances (NOTIFY, sent after the commit by a thread of its own
    on a pooled connection, many signals in one statement) and theirs to it (LISTEN, on a connection of its
    own outside the pool, started with the first waiter). After the listener (re)connects it wakes every
    waiter, as signals may have been missed meanwhile."""

    def __init__(self, url: str, kwargs: dict[str, Any], pool: ConnectionPool, signals: Signals) -> None:
        self._url = url
        self._kwargs = kwargs
        self._pool = pool
        self._signals = signals
        self._origin = uuid.uuid4().hex[:12]
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._publisher: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()

    def publish(self, topic: str, key: str | None) -> None:
        with self._lock:
            self._pending.add(f"{topic}|{key or ''}")
            if self._publisher is None and not self._stop.is_set():
                self._publisher = threading.Thread(target=self._publish_loop, name="licgate-notify", daemon=True)
                self._publisher.start()
        self._wake.set()

    def listen(self) -> None:
        with self._lock:
            if self._listener is None and not self._stop.is_set():
                self._listener = threading.Thread(target=self._listen_loop, name="licgate-listen", daemon=True)
                self._listener.start()

    def wait_listening(self, timeout: float) -> bool:
        """True once the listener is connected (tests)."""
        return self._listening.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._publisher, self._listener):
            if thread is not None:
                thread.join(timeout=_LISTEN_POLL_SECONDS + 5)

    def _publish_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = sorted(self._pending), set()
            if pending:
                try:
                    with self._pool.connection(timeout=5) as conn:
                        conn.execute("SELECT pg_notify(%s, concat_ws('|', coalesce(current_schema(), ''), %s::text, p))"
                                     " FROM unnest(%s::text[]) AS p", [CHANNEL, self._origin, pending])
                except (psycopg.Error, PoolTimeout) as exc:
                    # The other instances find the change by polling; this one was woken at the commit.
                    log.warning("could not notify the other instances", extra={"error": str(exc)[:200]})
            if self._stop.is_set():
                return

    def _listen_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, **{**self._kwargs, "row_factory": tuple_row}) as conn:
                    schema = conn.execute("SELECT coalesce(current_schema(), '')").fetchone()[0]  # type: ignore[index]
                    conn.execute(f"LISTEN {CHANNEL}")
                    attempt = 0
                    self._listening.set()
                    self._signals.fire_all()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=_LISTEN_POLL_SECONDS):
                            self._received(schema, notify.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                if self._stop.is_set():
                    return
                log.warning("not listening to the other instances; polling meanwhile",
                            extra={"error": str(exc)[:200]})
                self._stop.wait(_RECONNECT_SECONDS[min(attempt, len(_RECONNECT_SECONDS) - 1)])
                attempt += 1

    def _received(self, schema: str, payload: str) -> None:
        their_schema, _, rest = payload.partition("|")
        origin, _, rest = rest.partition("|")
        if their_schema != schema or origin == self._origin:
            return
        topic, _, key = rest.partition("|")
        self._signals.fire(topic, key or None)


class _PgTx(Tx):
    def many(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql[query], rows)

    def pipeline(self, blob_bytes: int = 0) -> AbstractContextManager[object]:
        # The intake's inserts, five statements or more, in one round trip instead of one each; but a
        # large message's statements go one after another (psycopg pipelines the rows of one executemany
        # all the same), so that libpq does not hold the blobs of all of them at once.
        return self.conn.pipeline() if blob_bytes <= _PIPELINE_MAX_BLOB_BYTES else nullcontext()


class PostgresStorage(SqlStorage):
    dialect = "postgres"
    serialized_writes = False

    def __init__(self, url: str, *, pool_size: int = 8, checkout_timeout: float = 10.0,
                 ping_timeout: float = 3.0) -> None:
        super().__init__()
        self._checkout_timeout = checkout_timeout
        self._ping_timeout = ping_timeout
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if "connect_timeout" not in url:
            kwargs["connect_timeout"] = 5
        # `check`: a connection the server dropped (a restart, a failover) is found out when it is taken
        # from the pool and replaced, instead of failing the request that drew it.
        self._pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), kwargs=kwargs, open=False,
                                    name="licgate-storage", check=ConnectionPool.check_connection,
                                    configure=_configure)
        # Open without waiting: a database that is down at start-up shows as StorageUnavailable on use
        # (and in healthz), and the pool keeps trying to connect.
        self._pool.open(wait=False)
        self.signals = Signals(on_first_subscriber=self._listen)
        self._notifications = _Notifications(url, kwargs, self._pool, self.signals)

    def _listen(self) -> None:
        self._notifications.listen()

    def _changed(self, topic: str, key: str | None = None) -> None:
        super()._changed(topic, key)
        self._notifications.publish(topic, key)

    def wait_listening(self, timeout: float) -> bool:
        """True once this storage hears the other instances' signals (they may be missed before)."""
        return self._notifications.wait_listening(timeout)

    @contextmanager
    def _connection(self, *, transaction: bool, timeout: float | None = None) -> Iterator[Tx]:
        try:
            with self._pool.connection(timeout=timeout or self._checkout_timeout) as conn:
                if transaction:
                    with conn.transaction():
                        yield _PgTx(conn, self._sql)
                else:
                    yield _PgTx(conn, self._sql)
        except PoolTimeout as exc:
            raise StorageUnavailable(f"no PostgreSQL connection: {exc}") from None
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(str(exc)) from None
        except psycopg.Error as exc:
            if _unreachable(exc):
                raise StorageUnavailable(f"PostgreSQL: {exc}") from None
            raise StorageError(f"PostgreSQL: {exc}") from None

    def _write(self) -> AbstractContextManager[Tx]:
        # READ COMMITTED: a write's guarantees come from its statements (row locks, WHERE conditions).
        return self._connection(transaction=True)

    def _duplicates_of(self, tx: Tx, apps: Sequence[NewApplication]) -> list[DuplicateIntake | None]:
        """One round trip for the whole batch (`find_duplicates`): per application the match on messageId
        first, else the one on requestNumber, as `find_duplicate` answers one by one."""
        if len(apps) < 2:
            return super()._duplicates_of(tx, apps)
        rows = tx.all("find_duplicates", senders=[a.sender_id for a in apps],
                      message_ids=[a.message_id for a in apps], request_numbers=[a.request_number for a in apps])
        best: dict[int, Row] = {}
        for row in rows:
            item = int(row["item"]) - 1
            if item not in best or row["match_rank"] < best[item]["match_rank"]:
                best[item] = row
        if not best:
            return [None] * len(apps)
        chosen = sorted(best.items())
        records = dict(zip((i for i, _ in chosen), self._records(tx, [r for _, r in chosen]), strict=True))
        return [DuplicateIntake(records[i], "message_id" if best[i]["match_rank"] == 1 else "request_number")
                if i in records else None for i in range(len(apps))]

    def _next_registration_values(self, tx: Tx, count: int) -> list[int]:
        return [row["value"] for row in tx.all("next_registration_numbers", count=count)] if count else []

    def _write_grouped_many(self, works: Sequence[Callable[[Tx], T]]) -> list[T | Exception]:
        """All of `works` in one transaction (one commit, one connection), each in a savepoint of its own: a
        work that fails is undone alone and its exception takes its place (a lone work needs no savepoint). A
        failure of the transaction itself (the commit, the connection) fails them all."""
        if len(works) == 1:
            # Alone in its transaction: a failure rolls all of it back, no savepoint needed (two round trips).
            try:
                with self._write() as tx:
                    return [works[0](tx)]
            except StorageUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - handed back in place of the result
                return [exc]
        outcomes: list[T | Exception] = []
        with self._write() as tx:
            for work in works:
                try:
                    with tx.conn.transaction():
                        outcomes.append(work(tx))
                except psycopg.errors.UniqueViolation as exc:
                    outcomes.append(UniqueViolation(str(exc)))
                except psycopg.Error as exc:
                    if _unreachable(exc) or tx.conn.closed:
                        raise
                    outcomes.append(StorageError(f"PostgreSQL: {exc}"))
                except Exception as exc:  # noqa: BLE001 - handed back in place of the result
                    outcomes.append(exc)
        return outcomes

    def _insert_with_blob(self, tx: Tx, query: str, rows: Sequence[dict[str, Any]], column: str,
                          blobs: Sequence[bytes]) -> None:
        # A bound parameter passes through libpq's output buffer whole, and libpq keeps that buffer, grown
        # by doubling, for the connection's life: a 10 MB message left 16 MB behind in each connection
        # that stored one, and peaked there. A row with a blob over 1 MB goes in by COPY instead, the blob
        # written in 1 MB pieces as hex (2 MB of text each), so nothing holds more than a piece. COPY is not
        # allowed in pipeline mode, which `pipeline` does not enter for over 1 MB of blobs in all.
        small: list[dict[str, Any]] = []
        for row, blob in zip(rows, blobs, strict=True):
            if len(blob) <= _PIPELINE_MAX_BLOB_BYTES:
                small.append({**row, column: blob})
                continue
            tx.many(query, small)  # rows go in in the order given (message-log ids are its order)
            small = []
            _copy_row(tx.conn, BLOB_TABLES[query], row, column, blob)
        tx.many(query, small)

    def _read(self) -> AbstractContextManager[Tx]:
        # Each statement in autocommit: under READ COMMITTED a BEGIN/COMMIT around reads would add two
        # round trips and no consistency (what a read combines, e.g. documents, does not change).
        return self._connection(transaction=False)

    # -- value representation --------------------------------------------------------------------------

    def _ts(self, value: datetime) -> Any:
        return require_aware(value, "time")

    def _dt(self, value: Any) -> datetime:
        return value.astimezone(UTC)

    def _json(self, value: Any) -> Any:
        return Jsonb(value)

    def _unjson(self, value: Any) -> Any:
        return value

    def _list(self, values: Sequence[str]) -> Any:
        return list(values)

    # -- lifecycle -------------------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._write() as tx:
            tx.one("migrate_lock")
            tx.run("migrations_table")
            applied = {r["version"] for r in tx.all("migrations_applied")}
            for migration in migrations(self.dialect):
                if migration.version in applied:
                    continue
                # Without parameters psycopg sends the script as one simple query: all its statements.
                tx.conn.execute(migration.sql)
                self._after_migration(tx, migration.name)
                tx.run("migration_record", version=migration.version, name=migration.name,
                       applied_at=datetime.now(UTC))

    def close(self) -> None:
        self._notifications.close()
        self._pool.close()

    def ping(self) -> None:
        try:
            with self._connection(transaction=False, timeout=self._ping_timeout) as tx:
                tx.one("ping")
        except StorageError as exc:
            raise StorageUnavailable(str(exc)) from None
