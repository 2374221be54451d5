"""Queue benchmark: enqueue and lease+ack throughput, and lease latency with 1 thousand and 1 million queued.

Runs on SQLite (a file in a temporary directory) and on PostgreSQL when LICGATE_TEST_PG_DSN is set (in a
schema of its own, dropped afterwards). Every number is printed next to a floor measured in the same run
on the same database with the same durability (the machine is shared and noisy, so the ratio is what
compares across runs):
  - enqueue: `store_application` one per transaction, as intake does; floor: a bare one-row INSERT
    committed per transaction;
  - lease+ack: `lease(100)` then `ack` of those 100; floor: a bare 100-row INSERT transaction and a
    100-row DELETE transaction;
  - lease latency: median time of `lease(100)` with 1 thousand and with 1 million queued (each lease is
    acked and the queue topped up outside the timing, so the depth stays put). Target: within 1.5x.
The queue is filled with bulk INSERT ... SELECT straight into the tables ("fill", not counted).

Usage: python benchmarks/queue.py [--quick] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from core.domain import Applicant, ApplicantKind, Channel, Document, ServiceType, SignerIdentity, Status
from gateway.storage import NewApplication, Storage, open_storage
from gateway.storage.sqlbase import applicant_doc, signer_doc

# Run as a script, this file's directory comes first on sys.path and its name shadows the standard library's
# `queue` (which psycopg imports): take the directory off the path before anything imports it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

PROVIDER = "051240001234"
BATCH = 100
T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
APPLICANT = Applicant(kind=ApplicantKind.INDIVIDUAL, name="АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", iin="871008401427")
SIGNER = SignerIdentity(common_name="АХМЕТОВА АЙГЕРІМ", iin="871008401427", bin=None, roles=("1.2.398.3.3.4.1.1",),
                        certificate_serial="0a1b", issuer="CN=NCA", certificate_der=b"\x30" * 900)


def new_application(n: int) -> NewApplication:
    payload = b"<Application>" + b"x" * 2000 + b"</Application>"
    return NewApplication(
        provider_bin=PROVIDER, sender_id="EGOV_PORTAL", message_id=f"bench-{n}", request_number=f"REQ-{n}",
        request_hash="0" * 64, channel=Channel.PORTAL, service_type=ServiceType.ISSUE, dialect="egov",
        applicant=APPLICANT, signer=SIGNER, activity_subtypes=("01.01",), license_number=None, received_at=T0,
        due_at=T0 + timedelta(days=13), status=Status.RECEIVED, payload=payload,
        documents=(Document("APPLICATION_FORM", "form.pdf", "application/pdf", "0" * 64, b"%PDF" + b"y" * 4000),),
    )


def receipt(number: str) -> bytes:
    return f"<Receipt>{number}</Receipt>".encode()


@dataclass
class Backend:
    """One database under test: its storage, a raw connection for the floor and the fill, and the fill SQL."""

    name: str
    storage: Storage
    execute: Callable[[str, dict], None]  # one statement in its own committed transaction
    fill_sql: tuple[str, ...]  # statements taking :start/:end (or %(start)s/%(end)s) and :provider etc.
    floor_sql: dict[str, str]
    after_fill: Callable[[], None]


FILL_CONSTANTS = {
    "provider": PROVIDER,
    "applicant": json.dumps(applicant_doc(APPLICANT), ensure_ascii=False),
    "signer": json.dumps(signer_doc(SIGNER), ensure_ascii=False),
}

SQLITE_FILL = (
    """WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :end)
    INSERT INTO applications (id, registration_number, provider_bin, sender_id, message_id, request_number,
        request_hash, channel, service_type, service_id, dialect, applicant, signer, activity_subtypes,
        missing_documents, received_at, status, receipt, updated_at)
    SELECT printf('fill-%012d', i), printf('MED-2026-F%09d', i), :provider, 'BENCH_FILL', printf('m%d', i),
        printf('r%d', i), '', 'PORTAL', 'ISSUE', 'MED_LICENSE', 'egov', :applicant, :signer, '["01.01"]', '[]',
        :t, 'RECEIVED', x'3c526563656970742f3e', :t
    FROM n""",
    """WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :end)
    INSERT INTO queue (application_id, provider_bin) SELECT printf('fill-%012d', i), :provider FROM n""",
)

PG_FILL = (
    """INSERT INTO applications (id, registration_number, provider_bin, sender_id, message_id, request_number,
        request_hash, channel, service_type, service_id, dialect, applicant, signer, activity_subtypes,
        missing_documents, received_at, status, receipt, updated_at)
    SELECT 'fill-' || lpad(i::text, 12, '0'), 'MED-2026-F' || lpad(i::text, 9, '0'), %(provider)s, 'BENCH_FILL',
        'm' || i, 'r' || i, '', 'PORTAL', 'ISSUE', 'MED_LICENSE', 'egov', %(applicant)s::jsonb, %(signer)s::jsonb,
        '["01.01"]'::jsonb, '[]'::jsonb, %(t)s, 'RECEIVED', '\\x3c526563656970742f3e'::bytea, %(t)s
    FROM generate_series(%(start)s::bigint, %(end)s::bigint) AS i""",
    """INSERT INTO queue (application_id, provider_bin)
    SELECT 'fill-' || lpad(i::text, 12, '0'), %(provider)s
    FROM generate_series(%(start)s::bigint, %(end)s::bigint) AS i""",
)


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with tempfile.TemporaryDirectory(prefix="licgate-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        path = Path(tmp) / "bench.db"
        storage = open_storage(f"sqlite:///{path}")
        storage.migrate()
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")  # the floor pays the same fsync per commit as the storage
        raw.execute("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, application_id TEXT, provider_bin TEXT)")

        def execute(sql: str, params: dict) -> None:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute(sql, params)
            raw.execute("COMMIT")

        try:
            yield Backend(
                name="SQLite (WAL, synchronous=FULL)", storage=storage, execute=execute, fill_sql=SQLITE_FILL,
                floor_sql={
                    "insert1": "INSERT INTO bench_floor (application_id, provider_bin) VALUES (:id, :provider)",
                    "insert_batch": """
                        WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :end)
                        INSERT INTO bench_floor (id, application_id, provider_bin)
                        SELECT i, printf('x%d', i), :provider FROM n""",
                    "delete_batch": "DELETE FROM bench_floor WHERE id BETWEEN :start AND :end",
                    "update_batch": "UPDATE bench_floor SET provider_bin = provider_bin "
                                    "WHERE id BETWEEN :start AND :end",
                },
                after_fill=lambda: raw.execute("PRAGMA wal_checkpoint(TRUNCATE)"),
            )
        finally:
            storage.close()
            raw.close()


@contextmanager
def postgres_backend(dsn: str) -> Iterator[Backend]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(dsn, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    url = f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"
    storage = open_storage(url, pool_size=4)
    raw = psycopg.connect(url, autocommit=True)
    try:
        storage.migrate()
        raw.execute("CREATE TABLE bench_floor (id bigint PRIMARY KEY, application_id text, provider_bin text)")

        def execute(sql: str, params: dict) -> None:
            with raw.transaction():
                raw.execute(sql, params)

        yield Backend(
            name="PostgreSQL", storage=storage, execute=execute, fill_sql=PG_FILL,
            floor_sql={
                "insert1": "INSERT INTO bench_floor (id, application_id, provider_bin) "
                           "VALUES (%(n)s, %(id)s, %(provider)s)",
                "insert_batch": "INSERT INTO bench_floor (id, application_id, provider_bin) "
                                "SELECT i, 'x' || i, %(provider)s "
                                "FROM generate_series(%(start)s::bigint, %(end)s::bigint) i",
                "delete_batch": "DELETE FROM bench_floor WHERE id BETWEEN %(start)s AND %(end)s",
                "update_batch": "UPDATE bench_floor SET provider_bin = provider_bin "
                                "WHERE id BETWEEN %(start)s AND %(end)s",
            },
            after_fill=lambda: raw.execute("VACUUM ANALYZE"),
        )
    finally:
        storage.close()
        raw.close()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>9,.0f}/s"


def measure_enqueue(b: Backend, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    for i in range(n):
        b.storage.store_application(new_application(i), receipt)
    api = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        b.execute(b.floor_sql["insert1"], {"n": i, "id": f"x{i}", "provider": PROVIDER})
    floor = n / (time.perf_counter() - start)
    return api, floor


def measure_lease_ack(b: Backend, n: int) -> tuple[float, float]:
    now = T0 + timedelta(hours=1)
    done = 0
    start = time.perf_counter()
    while done < n:
        lease = b.storage.lease(PROVIDER, BATCH, 300, now)
        ids = [a.id for a in lease.applications]
        if not ids:
            break
        done += len(b.storage.ack(PROVIDER, lease.lease_id, ids, now))
    api = done / (time.perf_counter() - start)
    base = 10_000_000
    start = time.perf_counter()
    for k in range(n // BATCH):
        params = {"start": base + k * BATCH, "end": base + (k + 1) * BATCH - 1, "provider": PROVIDER}
        b.execute(b.floor_sql["insert_batch"], params)
        b.execute(b.floor_sql["delete_batch"], params)
    floor = (n // BATCH) * BATCH / (time.perf_counter() - start)
    return api, floor


class Filler:
    """Bulk INSERT ... SELECT of queued applications straight into the tables (not part of any timing)."""

    def __init__(self, b: Backend) -> None:
        self.b = b
        self.next = 1
        self.seconds = 0.0

    def add(self, count: int, chunk: int = 200_000) -> None:
        start = time.perf_counter()
        while count > 0:
            size = min(chunk, count)
            params = {**FILL_CONSTANTS, "start": self.next, "end": self.next + size - 1, "t": self._t()}
            for sql in self.b.fill_sql:
                self.b.execute(sql, params)
            self.next += size
            count -= size
        self.seconds += time.perf_counter() - start

    def _t(self) -> object:
        return 0 if self.b.fill_sql is SQLITE_FILL else T0


def lease_latencies(pairs: list[tuple[Backend, Filler]], cycles: int) -> list[tuple[list[float], list[float]]]:
    """For each database: the times of `lease(100)` and of the floor (a bare 100-row UPDATE transaction).
    The databases take turns, call by call, so that the machine's noise falls on all of them alike."""
    out: list[tuple[list[float], list[float]]] = [([], []) for _ in pairs]
    now = T0 + timedelta(hours=2)
    for _ in range(cycles):
        for (b, filler), (samples, floor) in zip(pairs, out, strict=True):
            start = time.perf_counter()
            lease = b.storage.lease(PROVIDER, BATCH, 300, now)
            samples.append(time.perf_counter() - start)
            start = time.perf_counter()
            b.execute(b.floor_sql["update_batch"], {"start": 1, "end": BATCH})
            floor.append(time.perf_counter() - start)
            b.storage.ack(PROVIDER, lease.lease_id, [a.id for a in lease.applications], now)
            filler.add(len(lease.applications))  # keep the depth where it is
    return out


def run(open_backend: Callable[[], AbstractContextManager[Backend]], quick: bool) -> None:
    enqueue_n = 500 if quick else 3_000
    big = 100_000 if quick else 1_000_000
    cycles = 30 if quick else 60
    with open_backend() as small_db, open_backend() as big_db:
        print(f"\n{small_db.name}")
        api, floor = measure_enqueue(small_db, enqueue_n)
        print(f"  enqueue: store_application, 1 per transaction   {api:>9,.0f}/s   floor (1-row INSERT txn) "
              f"{floor:>9,.0f}/s   ratio {api / floor:.2f}")
        api, floor = measure_lease_ack(small_db, enqueue_n)
        print(f"  lease+ack, batches of {BATCH}                     {api:>9,.0f}/s   floor ({BATCH}-row INSERT txn"
              f" + DELETE txn) {floor:>9,.0f}/s   ratio {api / floor:.2f}")
        # Lease latency: two databases of the same kind, one with 1 thousand queued, one with 1 million.
        small, large = Filler(small_db), Filler(big_db)
        small.add(1_000)
        large.add(big)
        small_db.after_fill()
        big_db.after_fill()
        pairs = [(small_db, small), (big_db, large)]
        lease_latencies(pairs, 5)  # warm-up
        results = lease_latencies(pairs, cycles)
        depths = [b.storage.queue_depth(PROVIDER) for b, _ in pairs]
        start = time.perf_counter()
        for _ in range(10):
            big_db.storage.queue_depth(PROVIDER)
        depth_ms = (time.perf_counter() - start) / 10 * 1e3
        med = statistics.median
        for depth, (lat, flo) in zip(depths, results, strict=True):
            print(f"  lease({BATCH}) latency, {depth:>9,} queued   median {med(lat) * 1e3:7.2f} ms   "
                  f"p90 {statistics.quantiles(lat, n=10)[-1] * 1e3:7.2f} ms   floor ({BATCH}-row UPDATE txn) "
                  f"{med(flo) * 1e3:6.2f} ms")
        (lat_small, _), (lat_large, _) = results
        print(f"  lease latency at {depths[1]:,} vs {depths[0]:,} queued: {med(lat_large) / med(lat_small):.2f}x"
              f" (target <= 1.5)")
        print(f"  queue_depth() with {depths[1]:,} queued: {depth_ms:.2f} ms")
        print(f"  (fill: {large.next - 1:,} queued applications bulk-inserted in {large.seconds:.1f} s, "
              f"not counted)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run: 100 thousand instead of 1 million")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run(sqlite_backend, args.quick)
    dsn = os.environ.get("LICGATE_TEST_PG_DSN", "")
    if args.sqlite_only:
        pass
    elif dsn:
        run(lambda: postgres_backend(dsn), args.quick)
    else:
        print("\nPostgreSQL: skipped (set LICGATE_TEST_PG_DSN)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
