"""Intake throughput and latency: distinct pre-signed applications sent to `POST /shep/sync` over loopback,
next to a bare FastAPI endpoint (reads the body, returns a fixed answer) under the same uvicorn settings,
measured in the same run. Then one 10 MB application and the gateway's peak memory growth.

    .venv/bin/python benchmarks/intake.py [--requests 3000] [--rounds 3] [--concurrency 4,8,16] [--postgres [DSN]]
        [--setups sqlite,postgres,postgres-2]   (also sqlite-nochain, postgres-nochain: the audit chain off)

The gateway runs as `licgate serve` (durable commits: SQLite WAL, synchronous=FULL; PostgreSQL with
synchronous_commit on), in each setup of the same run on a fresh database: SQLite, PostgreSQL, and two
instances on one PostgreSQL with the load generator's connections spread over both (as a load balancer
would); the bare endpoint as its own uvicorn process, started once before the first measurement.
Per concurrency level the two take turns: bare, gateway, bare, ... (`--rounds` gateway rounds, each of
requests/rounds distinct applications), and the ratio is the median over the rounds of the gateway's rate
against the bare rounds either side of it: on a shared machine whose speed drifts by tens of percent within
a minute, two measurements taken minutes apart compared the machine's moods as much as the servers. The
load comes from a separate process speaking HTTP/1.1 keep-alive on raw asyncio streams, so that the
client's cost stays out of the servers' processes. For the gateway it also prints the CPU time its serving
process(es), its intake worker processes and, on PostgreSQL, the database server processes serving its
connections spent per application (from /proc): steadier than the rates on a shared machine, and the
breakdown of where an application's time goes. Targets: at concurrency 16 the gateway at >= 35% of the
bare endpoint's rate with p99 <= 30 ms on SQLite, >= 30% with p99 <= 40 ms on PostgreSQL; peak memory
growth for a 10 MB message under 4x its size.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/queue.py would shadow the standard library's queue module.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from signing.pki import init_pki, load_pki  # noqa: E402
from tests.intake.conftest import config_table, write_config_file  # noqa: E402
from tests.intake.helpers import Doc, application_xml, envelope, sign  # noqa: E402
from tests.support.server import free_port, wait_http  # noqa: E402

BARE_APP = textwrap.dedent('''
    from fastapi import FastAPI, Request, Response

    app = FastAPI()
    ANSWER = b'<?xml version="1.0" encoding="UTF-8"?><ok/>'

    @app.post("/shep/sync")
    async def bare(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="text/xml; charset=utf-8")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}
''')


# -- load generator (its own process) ---------------------------------------------------------------------


async def _worker(port: int, bodies: list[bytes], latencies: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in bodies:
        head = (f"POST /shep/sync HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/xml; charset=utf-8\r\n"
                f'SOAPAction: ""\r\nContent-Length: {len(body)}\r\n\r\n').encode()
        started = time.perf_counter()
        writer.write(head + body)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        status = int(status_line.split()[1])
        codes[status] = codes.get(status, 0) + 1
    writer.close()


def _load(ports: list[int], bodies: list[bytes], concurrency: int, out: mp.Queue) -> None:
    # A fork of the preparing process: what it built is kept out of the collector's passes, whose pauses
    # here would be counted as the servers' latency.
    gc.collect()
    gc.freeze()
    latencies: list[float] = []
    codes: dict[int, int] = {}
    shares = [bodies[i::concurrency] for i in range(concurrency)]

    async def main() -> float:
        started = time.perf_counter()
        # With several instances the connections are spread over them, as a load balancer would.
        await asyncio.gather(*(_worker(ports[i % len(ports)], share, latencies, codes)
                               for i, share in enumerate(shares)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    out.put((elapsed, latencies, codes))


BARE_REPEAT = 6  # a bare round re-sends its bodies this many times: about as long as a gateway round


def run_load(port: int | list[int], bodies: list[bytes], concurrency: int) -> dict[str, float]:
    ports = port if isinstance(port, list) else [port]
    out: mp.Queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_load, args=(ports, bodies, concurrency, out))
    proc.start()
    elapsed, latencies, codes = out.get()
    proc.join()
    run = {"codes": codes, "latencies": latencies, "elapsed": elapsed}
    return {**run, **combined([run])}


def combined(runs: list[dict]) -> dict:
    """Several rounds as one: the rate over their summed time, percentiles over all their requests."""
    ordered = sorted(x for run in runs for x in run["latencies"])
    codes: dict[int, int] = {}
    for run in runs:
        for code, n in run["codes"].items():
            codes[code] = codes.get(code, 0) + n
    return {
        "rps": len(ordered) / sum(run["elapsed"] for run in runs),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "codes": codes,
    }


# -- servers -------------------------------------------------------------------------------------------------


def start(cmd: list[str], port: int, log: Path, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return proc


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def big_application(pki_dir: Path, size: int) -> bytes:
    pki = load_pki(pki_dir)
    raw = os.urandom(size * 3 // 4)
    docs = [Doc("APPLICATION_FORM", raw, "scan.pdf"), Doc("FEE_RECEIPT", b"fee"), Doc("PREMISES_EQUIPMENT", b"p"),
            Doc("STAFF_QUALIFICATION", b"s")]
    # One long base64 line per document, as most portals send it.
    # signxml refuses text nodes over 10 MB; the NCA layout (c14n#WithComments) is built without it.
    payload = sign(application_xml(documents=docs), pki, with_comments=True)
    return envelope(payload)


def postgres_url(dsn: str) -> str:
    """A storage URL with a fresh schema of its own on the PostgreSQL at `dsn`."""
    from urllib.parse import quote

    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    atexit.register(_drop_schema, dsn, schema)
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _fast_key_loading() -> None:
    """Preparation only: signing thousands of payloads reloads the same PEM key each time, and loading an
    RSA key (with its consistency check) costs ~30 ms. Cache it; the servers measured are untouched."""
    import functools
    import types

    from cryptography.hazmat.primitives import serialization

    import signing.signer

    cached = functools.lru_cache(maxsize=8)(serialization.load_pem_private_key)
    signing.signer.serialization = types.SimpleNamespace(**{**vars(serialization), "load_pem_private_key": cached})


def postgres_backends(dsn: str, application_name: str) -> list[int]:
    """The pids of the PostgreSQL server processes serving the gateway's connections (same machine)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                            [application_name]).fetchall()
    return [r[0] for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="distinct applications per concurrency level")
    parser.add_argument("--concurrency", default="4,8,16", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the servers take turns this many times per concurrency level")
    parser.add_argument("--big-mb", type=float, default=10.0)
    parser.add_argument("--postgres", metavar="DSN", nargs="?", const=os.environ.get("LICGATE_TEST_PG_DSN", ""),
                        default=os.environ.get("LICGATE_TEST_PG_DSN", ""),
                        help="the PostgreSQL to measure on (a fresh schema per setup; default $LICGATE_TEST_PG_DSN)")
    parser.add_argument("--setups", default=None,
                        help="comma-separated, of sqlite, postgres, postgres-2 (two instances on one database), "
                             "sqlite-nochain and postgres-nochain (the message log's chain switched off: its "
                             "pending trigger dropped); default: the first three when a PostgreSQL is given, "
                             "else sqlite")
    parser.add_argument("--intake-processes", default="auto",
                        help="server.intake_processes for the gateway (default: auto)")
    args = parser.parse_args()
    if args.rounds < 1 or args.requests < args.rounds:
        parser.error("--rounds must be at least 1 and at most --requests")
    args.requests -= args.requests % args.rounds  # whole rounds: every application sent is counted
    setups = (args.setups or ("sqlite,postgres,postgres-2" if args.postgres else "sqlite")).split(",")
    if any(s not in SETUPS for s in setups):
        parser.error(f"--setups takes {', '.join(SETUPS)}")
    if any(s.startswith("postgres") for s in setups) and not args.postgres:
        parser.error("a postgres setup needs --postgres DSN or LICGATE_TEST_PG_DSN")

    _fast_key_loading()
    work = Path(tempfile.mkdtemp(prefix="licgate-bench-"))
    atexit.register(shutil.rmtree, work, True)  # its database grows by hundreds of MB per run
    init_pki(work / "pki")
    pki = load_pki(work / "pki")
    levels = [int(c) for c in args.concurrency.split(",")]
    total = args.requests * len(levels)
    print(f"signing {total} distinct applications ...", flush=True)
    bodies = [envelope(sign(application_xml(f"BENCH-{uuid.uuid4().hex[:16]}",
                                            documents=[Doc(c, hashlib.sha256(f"{c}{i}".encode()).digest() * 32)
                                                       for c in ("APPLICATION_FORM", "FEE_RECEIPT",
                                                                 "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION")]),
                                 pki)) for i in range(total)]
    # Every setup stores the same applications, each setup in a fresh database of its own.
    batches = [bodies[i * args.requests:(i + 1) * args.requests] for i in range(len(levels))]
    print(f"  one request is {len(bodies[0])} bytes", flush=True)
    (work / "bare_app.py").write_text(BARE_APP)
    bare_port = free_port()
    bare = start([sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(bare_port),
                  "--log-level", "warning", "--no-access-log"], bare_port, work / "bare.log", work)
    try:
        run_load(bare_port, bodies[:200], levels[-1])  # warm-up
        for n, setup in enumerate(setups):
            measure_setup(setup, args, pki, work / setup, bare_port, levels, batches,
                                     big=n == 0 and args.big_mb > 0)
    finally:
        bare.terminate()
        bare.wait()
    return 0


def measure_setup(setup: str, args: argparse.Namespace, pki: object, work: Path, bare_port: int,
                  levels: list[int], batches: list[list[bytes]], *, big: bool) -> bool:
    """One storage setup: its gateway instance(s) and the bare endpoint taking turns at every level; prints
    the table. True when the gateway refused anything."""
    work.mkdir()
    instances = 2 if setup == "postgres-2" else 1
    app_name = f"licgate-bench-{uuid.uuid4().hex[:8]}"
    chain = not setup.endswith("-nochain")
    label, setup = setup, setup.removesuffix("-nochain")
    if setup == "sqlite":
        storage_url = f"sqlite:///{work / 'licgate.db'}"
        print("\nstorage: SQLite (WAL, synchronous=FULL), one instance", flush=True)
    else:
        storage_url = postgres_url(args.postgres) + f"&application_name={app_name}"
        print(f"\nstorage: PostgreSQL (synchronous_commit on), {instances} instance(s) on one database", flush=True)
    processes = args.intake_processes if args.intake_processes == "auto" else int(args.intake_processes)
    table = config_table(pki, storage_url, max_message_bytes=20 * 1024 * 1024,
                         max_in_flight=256, intake_processes=processes)
    config = write_config_file(work / "licgate.toml", table)
    if not chain:
        without_chain(storage_url)
        print("  the message log's hash chain is off (no record is sequenced)", flush=True)
    gateways: list[subprocess.Popen] = []
    ports: list[int] = []
    while len(ports) < instances:
        port = free_port()
        if port != bare_port and port not in ports:
            ports.append(port)
    for i, port in enumerate(ports):
        gateways.append(start([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                              port, work / f"gateway-{i}.log", work))
    try:
        run_load(ports, [envelope(sign(application_xml(), pki)) for _ in range(50)], levels[-1])
        workers = [w for g in gateways for w in child_pids(g.pid)]
        backends = postgres_backends(args.postgres, app_name) if setup != "sqlite" else []
        # The two servers take turns, round by round (bare, gateway, bare, ...), so that the shared machine's
        # slow and fast spells fall on both alike; a bare round re-sends its bodies until it has run about
        # as long as a gateway round. Each round's ratio is the gateway's rate over the mean of the bare
        # rounds either side of it.
        bare_rounds: list[list[dict[str, float]]] = []
        gw_rounds: list[list[dict[str, float]]] = []
        for level, batch in zip(levels, batches, strict=True):
            share = len(batch) // args.rounds
            bare_batch = batch[:share] * BARE_REPEAT
            bare_runs = [run_load(bare_port, bare_batch, level)]
            gw_runs = []
            for r in range(args.rounds):
                pools = ([g.pid for g in gateways], workers, backends)
                before_cpu = [sum(cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists()) for pids in pools]
                gw_runs.append(run_load(ports, batch[r * share:(r + 1) * share], level))
                after_cpu = [sum(cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists()) for pids in pools]
                gw_runs[-1]["cpu_ms"] = [(a - b) * 1000 / share for a, b in zip(after_cpu, before_cpu, strict=True)]
                bare_runs.append(run_load(bare_port, bare_batch, level))
            bare_rounds.append(bare_runs)
            gw_rounds.append(gw_runs)
        if big:
            big_ok, big_report = big_message(args, gateways[0].pid, ports[0], work.parent / "pki")
    finally:
        for g in gateways:
            g.terminate()
        for g in gateways:
            g.wait()

    print(f"{'endpoint':<28}{'concurrency':>12}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}  HTTP codes")
    for level, bare_runs, gw_runs in zip(levels, bare_rounds, gw_rounds, strict=True):
        for name, runs in (("bare FastAPI (same uvicorn)", bare_runs), ("/shep/sync (signed intake)", gw_runs)):
            r = combined(runs)
            rates = ", ".join(f"{run['rps']:.0f}" for run in runs)
            print(f"{name:<28}{level:>12}{r['rps']:>12.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}  {r['codes']}"
                  f"  ({len(runs)} rounds: {rates}/s)")
        ratios = [gw["rps"] * 2 / (before["rps"] + after["rps"])
                  for gw, before, after in zip(gw_runs, bare_runs, bare_runs[1:], strict=False)]
        p99 = combined(gw_runs)["p99_ms"]
        target, p99_target = TARGETS[setup]
        print(f"  {label}, concurrency {level}: gateway/bare {statistics.median(ratios):.1%} (median of the rounds: "
              f"{', '.join(f'{x:.1%}' for x in ratios)}; target >= {target:.0%}); gateway p99 {p99:.1f} ms "
              f"(target <= {p99_target} ms)")
        serving, examining, server = (statistics.mean(run["cpu_ms"][i] for run in gw_runs) for i in range(3))
        line = (f"  CPU per application: serving process(es) {serving:.2f} ms, {len(workers)} intake worker "
                f"process(es) {examining:.2f} ms")
        if setup != "sqlite":
            line += f", PostgreSQL server processes {server:.2f} ms"
        print(line)
    if big:
        print(big_report)
    refused = (big and not big_ok) or any(set(run["codes"]) != {200} for runs in gw_rounds for run in runs)
    if refused:
        print_gateway_errors(work / "gateway-0.log")
    return refused


SETUPS = ("sqlite", "postgres", "postgres-2", "sqlite-nochain", "postgres-nochain")


def without_chain(storage_url: str) -> None:
    """The database migrated, with the trigger that queues every record for the hash chain dropped: the
    gateway's sequencer then finds nothing to do (one read every 0.25 s)."""
    from gateway.storage import open_storage

    storage = open_storage(storage_url)
    try:
        storage.migrate()
        with storage._write() as tx:  # noqa: SLF001 - a benchmark's knob
            tx.conn.execute("DROP TRIGGER message_log_pending" + ("" if storage_url.startswith("sqlite")
                                                                   else " ON message_log"))
    finally:
        storage.close()


# Per setup: the gateway's rate as a share of the bare endpoint's, and its p99 in ms (docs/performance.md).
TARGETS = {"sqlite": (0.35, 30), "postgres": (0.30, 40), "postgres-2": (0.30, 40)}


def big_message(args: argparse.Namespace, pid: int, port: int, pki_dir: Path) -> tuple[bool, str]:
    """One 10 MB application; the serving process's peak memory growth."""
    import httpx

    big = big_application(pki_dir, int(args.big_mb * 1024 * 1024))
    big_size = len(big)
    before = rss_kb(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
    started = time.perf_counter()
    reply = httpx.post(f"http://127.0.0.1:{port}/shep/sync", content=big, headers={"Content-Type": "text/xml"},
                       timeout=120)
    big_seconds = time.perf_counter() - started
    growth = (rss_kb(pid, "VmHWM") - before) * 1024
    ok = b"<code>SCSS001</code>" in reply.content
    report = (f"10 MB application: {big_size / 1e6:.1f} MB request, answered {'SCSS001' if ok else 'NOT OK'} in "
              f"{big_seconds:.2f} s; peak RSS growth {growth / 1e6:.1f} MB = {growth / big_size:.1f}x the message "
              "(target < 4x)")
    if not ok:
        report += "\n" + reply.content[:1000].decode(errors="replace")
    return ok, report


def print_gateway_errors(log: Path) -> None:
    """What the gateway logged about a refusal (its log goes with the work directory when the script ends):
    the first error in full, with its traceback, and how many there were."""
    errors = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"level": "ERROR", "msg": line} if "Error" in line or "Traceback" in line else {}
        if entry.get("level") in ("ERROR", "CRITICAL"):
            errors.append(entry)
    print(f"the gateway logged {len(errors)} error(s); the first:")
    if errors:
        print(f"  {errors[0].get('ts', '')} {errors[0].get('logger', '')}: {errors[0].get('msg', '')}")
        print(textwrap.indent(errors[0].get("exc", ""), "    "))


if __name__ == "__main__":
    sys.exit(main())
