"""What the message log's audit costs (docs/audit.md), measured in one run:

1. intake's storage path (batches of applications stored with their inbound record, as the intake store
   thread stores them) with the chain (the pending trigger and a running sequencer) and without it (the
   trigger dropped, no sequencer), rounds alternating, on SQLite and, with --postgres, PostgreSQL;
2. refusals stored before they are answered (`MessageLogWriter.write`, 16 callers at once) against the
   earlier fire-and-forget `add`, as refusals/s;
3. the time `audit verify` takes for --records records (default one million), generated directly with SQL
   and sequenced first.

    .venv/bin/python benchmarks/audit.py [--apps 600] [--rounds 3] [--records 1000000] [--sqlite-only]

PostgreSQL runs too when `LICGATE_TEST_PG_DSN` is set (or `--postgres DSN`), in schemas of its own that are
dropped afterwards.

Targets: intake with the chain >= 90% of intake without it on PostgreSQL; verify of a million records
under 30 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's queue module.
ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from core.clock import Clock  # noqa: E402
from gateway import messagelog  # noqa: E402
from gateway.audit import Auditor, SealCerts, load_seal, verify  # noqa: E402
from gateway.config import AuditConfig  # noqa: E402
from gateway.messagelog import MessageLogWriter  # noqa: E402
from gateway.storage import Storage, open_storage  # noqa: E402
from tests.storage.factory import new_application  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 16  # applications per store batch (the intake store thread's batches under load are of this order)


def _fresh(kind: str, dsn: str | None, tmp: Path) -> tuple[Storage, str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'{uuid.uuid4().hex[:8]}.db'}"
    else:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{dsn}{'&' if '?' in (dsn or '') else '?'}options=-csearch_path%3D{schema}&application_name={schema}"
    storage = open_storage(url, pool_size=4)
    storage.migrate()
    return storage, url


def _drop_schema(dsn: str, url: str) -> None:
    import psycopg

    schema = url.rsplit("application_name=", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _without_chain(storage: Storage, kind: str) -> None:
    with storage._write() as tx:  # noqa: SLF001 - a benchmark's knob
        tx.conn.execute("DROP TRIGGER message_log_pending" + ("" if kind == "sqlite" else " ON message_log"))


def _server_cpu(dsn: str | None, url: str) -> dict[int, float]:
    """CPU seconds each PostgreSQL backend serving `url`'s connections has used (from /proc: the server runs
    on this machine), by pid."""
    if dsn is None:
        return {}
    import psycopg

    name = url.rsplit("application_name=", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])]
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def _batch(n: int) -> list[tuple]:
    body = b"<Envelope>" + b"<password>secret</password>" + b"x" * 6000 + b"</Envelope>"
    items = []
    for i in range(BATCH):
        app = new_application(n + i, message_id=str(uuid.uuid4()), request_number=str(uuid.uuid4()))
        entry = messagelog.entry("in", "shep/sync", body, "SCSS001", datetime.now(UTC),
                                 message_id=app.message_id, sender_id=app.sender_id)
        items.append((app, lambda number: b"<receipt>" + number.encode() + b"</receipt>", [entry]))
    return items


def intake(kind: str, dsn: str | None, tmp: Path, apps: int, rounds: int) -> None:
    """Batch by batch, the two databases take turns (the machine's drift falls on both alike); the chained
    one's sequencer runs inside its timing after every fourth batch (the gateway's runs every 0.25 s, on
    more records at a time: this counts its cost in full)."""
    chained, chained_url = _fresh(kind, dsn, tmp)
    plain, plain_url = _fresh(kind, dsn, tmp)
    _without_chain(plain, kind)
    seal = load_seal(AuditConfig(), chained, Clock())
    auditor = Auditor(AuditConfig(checkpoint_records=1000), chained, Clock(), seal)
    spent = {"with": 0.0, "without": 0.0}
    cpu = {"with": 0.0, "without": 0.0}  # the storing threads' and the sequencer's own CPU time
    turns = max(1, apps * rounds // BATCH)
    urls = {"with": chained_url, "without": plain_url}

    def store(storage: Storage, items: list[tuple]) -> float:
        started = time.thread_time()
        storage.store_applications(items)
        return time.thread_time() - started

    server_before = {name: _server_cpu(dsn if kind == "postgres" else None, u) for name, u in urls.items()}
    with ThreadPoolExecutor(4) as pool:  # four store batches at once, as four instances' store threads
        for turn in range(turns):
            order = [("with", chained), ("without", plain)]
            for name, storage in (order if turn % 2 else order[::-1]):
                items = _batch(turn * BATCH)
                started = time.perf_counter()
                cpu[name] += sum(pool.map(store, [storage] * 4, [items[i::4] for i in range(4)]))
                if name == "with" and turn % 4 == 3:
                    tick_started = time.thread_time()
                    auditor.tick()
                    cpu[name] += time.thread_time() - tick_started
                spent[name] += time.perf_counter() - started
    auditor.tick()
    for name, u in urls.items():
        after = _server_cpu(dsn if kind == "postgres" else None, u)
        cpu[name] += sum(v - server_before[name].get(pid, 0.0) for pid, v in after.items())
    stored = turns * BATCH
    head = chained.chain_head()
    print(f"{kind:8s} intake (storage path, batches of {BATCH}, 4 at once, taking turns): without the chain "
          f"{stored / spent['without']:7.0f} apps/s, with it {stored / spent['with']:7.0f} apps/s; "
          f"with/without {spent['without'] / spent['with']:.1%}; chain length {head.seq}, "
          f"{chained.pending_log()} pending")
    where = "the storing threads and the sequencer" + (" + the database's backends" if kind == "postgres" else "")
    print(f"{kind:8s} CPU per application ({where}): without the chain {cpu['without'] / stored * 1000:.2f} ms, "
          f"with it {cpu['with'] / stored * 1000:.2f} ms; without/with {cpu['without'] / cpu['with']:.1%}")
    for s in (chained, plain):
        s.close()
    if kind == "postgres" and dsn:
        _drop_schema(dsn, chained_url)
        _drop_schema(dsn, plain_url)


def refusals(kind: str, dsn: str | None, tmp: Path, count: int) -> None:
    storage, url = _fresh(kind, dsn, tmp)
    writer = MessageLogWriter(storage)
    writer.start()
    body = b"<Fault>" + b"y" * 1500 + b"</Fault>"

    def one(i: int, wait: bool) -> None:
        entries = [messagelog.entry(d, "shep/sync", body, "SIGNATURE_INVALID", datetime.now(UTC), message_id=str(i))
                   for d in ("in", "out")]
        if wait:
            writer.write(*entries)
        else:
            writer.add(*entries)

    try:
        for wait in (False, True):
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(one, range(count), [wait] * count))
            elapsed = time.perf_counter() - started
            print(f"{kind:8s} refusals answered {'after their commit (write)' if wait else 'at once (add)':27s} "
                  f"{count / elapsed:7.0f}/s")
    finally:
        writer.stop()
        storage.close()
        if kind == "postgres" and dsn:
            _drop_schema(dsn, url)


def verify_time(kind: str, dsn: str | None, tmp: Path, records: int) -> None:
    storage, url = _fresh(kind, dsn, tmp)
    started = time.perf_counter()
    at = int(time.time() * 1_000_000)
    if kind == "sqlite":
        rows = ((d, "shep/sync", f"m-{i}", "EGOV_PORTAL", "SCSS001", body, hashlib.sha256(body).hexdigest(), at + i)
                for i in range(records) for d in ("in",)
                for body in [b"<Envelope n='%d'>" % i + b"z" * 700 + b"</Envelope>"])
        with storage._write() as tx:  # noqa: SLF001 - generating data
            tx.conn.executemany("INSERT INTO message_log (direction, endpoint, message_id, sender_id, verdict, body, "
                                "sha256, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    else:
        with storage._write() as tx:  # noqa: SLF001 - generating data
            tx.conn.execute(
                "INSERT INTO message_log (direction, endpoint, message_id, sender_id, verdict, body, sha256, at) "
                "SELECT 'in', 'shep/sync', 'm-' || n, 'EGOV_PORTAL', 'SCSS001', b, encode(sha256(b), 'hex'), "
                "now() + n * interval '1 microsecond' FROM (SELECT n, convert_to('<Envelope n=''' || n || '''>' "
                "|| repeat('z', 700) || '</Envelope>', 'UTF8') AS b FROM generate_series(1, %s) AS n) AS g",
                [records])
    generated = time.perf_counter() - started
    started = time.perf_counter()
    while (head := storage.sequence_log(20_000)) is not None and head.added:
        pass
    sequenced = time.perf_counter() - started
    if kind == "postgres":
        with storage._write() as tx:  # noqa: SLF001 - what autovacuum does after a bulk load
            tx.conn.execute("ANALYZE")
    seal = load_seal(AuditConfig(), storage, Clock())
    started = time.perf_counter()
    report = verify(storage, SealCerts(None, (seal.cert_pem,)), None)
    elapsed = time.perf_counter() - started
    assert report.intact and report.records == records, report.lines()
    print(f"{kind:8s} verify of {records:,} records: {elapsed:.1f} s ({records / elapsed:,.0f} records/s; "
          f"generated in {generated:.1f} s, sequenced in {sequenced:.1f} s)")
    storage.close()
    if kind == "postgres" and dsn:
        _drop_schema(dsn, url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=600, help="applications per round and setup")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refusals", type=int, default=2000)
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the verify timing")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_DSN, default=os.environ.get("LICGATE_TEST_PG_DSN"),
                        metavar="DSN")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgres"] if args.postgres and not args.sqlite_only else [])
    with tempfile.TemporaryDirectory(prefix="licgate-audit-bench-") as tmp:
        for kind in kinds:
            intake(kind, args.postgres, Path(tmp), args.apps, args.rounds)
        for kind in kinds:
            refusals(kind, args.postgres, Path(tmp), args.refusals)
        for kind in kinds:
            verify_time(kind, args.postgres, Path(tmp), args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
