"""Does a CRL refresh of 500,000 serials stall intake? p99 of concurrent intake while CRLs are replaced,
next to the p99 of the same load while nothing changes, measured in the same run.

    .venv/bin/python benchmarks/crl_refresh.py [--serials 500000] [--rounds 4] [--requests 400] [--concurrency 4]

The gateway runs as `licgate serve` (revocation = "crl", intake worker processes "auto") on a SQLite file,
with a CRL of `--serials` revoked serials in its crl_dir. Rounds take turns: a quiet round, then a refresh
round that starts by putting a newer CRL of the same size in place the way the CRL fetcher does (a
temporary file and `os.replace`), which every process of the gateway then indexes again. Each round sends
`--requests` distinct signed applications at `--concurrency`; the refresh rounds' p99 over the quiet
rounds' p99 is the figure (target: within 2x). Before the load, the fetcher's own work on such a CRL
(download from the NCA mock over loopback, signature check, the compare-and-replace) and one index build
are timed in this process, for scale.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from core.clock import Clock  # noqa: E402
from mocks.nca import create_app  # noqa: E402
from signing.crlfetch import CrlFetcher  # noqa: E402
from signing.pki import CRL_NAME, DELTA_CRL_NAME, build_crl, init_pki, load_ca, load_pki  # noqa: E402
from signing.revocation import CrlIndex  # noqa: E402
from signing.trust import TrustStore  # noqa: E402
from tests.intake.conftest import config_table, write_config_file  # noqa: E402
from tests.intake.helpers import application_xml, envelope, sign  # noqa: E402
from tests.support.server import free_port, serve  # noqa: E402


def _intake_bench():  # noqa: ANN202 - the load generator of benchmarks/intake.py, loaded by path
    spec = importlib.util.spec_from_file_location("bench_intake", Path(__file__).with_name("intake.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def put_in_place(crl_dir: Path, data: bytes) -> None:
    """What the fetcher does once a download passed: a temporary file, then os.replace."""
    temporary = crl_dir / f".{CRL_NAME}.bench.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, crl_dir / CRL_NAME)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serials", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=4, help="pairs of quiet and refresh rounds")
    parser.add_argument("--requests", type=int, default=400, help="applications per round")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bench = _intake_bench()
    bench._fast_key_loading()

    work = Path(tempfile.mkdtemp(prefix="licgate-crl-bench-"))
    atexit.register(shutil.rmtree, work, True)
    pki = load_pki(init_pki(work / "pki"))
    issuer, key = load_ca(pki.dir)
    rng = random.Random(5)
    serials = [rng.getrandbits(159) | 1 for _ in range(args.serials)]
    print(f"building {args.rounds + 1} CRLs of {args.serials:,} serials ...", flush=True)
    crls = [build_crl(issuer, key, serials, number=10 + n) for n in range(args.rounds + 1)]
    print(f"  each {len(crls[0]) / 1e6:.1f} MB DER", flush=True)
    (pki.crl_dir / DELTA_CRL_NAME).unlink()
    put_in_place(pki.crl_dir, crls[0])

    # For scale: one index build, and the fetcher's download + check + replace, in this process.
    trust = TrustStore(pki.ca_dir)
    started = time.perf_counter()
    CrlIndex(pki.crl_dir, trust).refresh(wait=True)
    index_seconds = time.perf_counter() - started
    fetched = work / "fetched"
    fetched.mkdir()
    with serve(create_app(pki.dir)) as nca:
        fetcher = CrlFetcher((f"{nca.url}/crl/{CRL_NAME}",), fetched, trust, Clock())
        started = time.perf_counter()
        assert fetcher.fetch(next(iter(fetcher.states.values())))
        fetch_seconds = time.perf_counter() - started
    print(f"  one index build: {index_seconds:.2f} s; the fetcher's download + signature check + replace: "
          f"{fetch_seconds:.2f} s", flush=True)

    total = args.requests * 2 * args.rounds + 100
    print(f"signing {total} distinct applications ...", flush=True)
    bodies = [envelope(sign(application_xml(f"CRL-{uuid.uuid4().hex[:16]}"), pki)) for _ in range(total)]
    table = config_table(pki, f"sqlite:///{work / 'licgate.db'}", max_in_flight=256)
    config = write_config_file(work / "licgate.toml", table)
    port = free_port()
    gateway = bench.start([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                          port, work / "gateway.log", work)
    try:
        bench.run_load(port, bodies[:100], args.concurrency)  # warm-up
        quiet: list[dict] = []
        refresh: list[dict] = []
        at = 100
        for r in range(args.rounds):
            quiet.append(bench.run_load(port, bodies[at:at + args.requests], args.concurrency))
            at += args.requests
            put_in_place(pki.crl_dir, crls[r + 1])
            refresh.append(bench.run_load(port, bodies[at:at + args.requests], args.concurrency))
            at += args.requests
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    refused = {code: n for run in quiet + refresh for code, n in run["codes"].items() if code != 200}
    q, f = bench.combined(quiet), bench.combined(refresh)
    print(f"\nconcurrent intake, {args.concurrency} clients, {args.rounds} rounds of {args.requests} each way")
    print(f"{'':>26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'nothing changes':>26} {q['rps']:>8.0f} {q['p50_ms']:>8.1f} {q['p99_ms']:>8.1f}")
    print(f"{'a CRL replaced per round':>26} {f['rps']:>8.0f} {f['p50_ms']:>8.1f} {f['p99_ms']:>8.1f}")
    ratios = [b["p99_ms"] / a["p99_ms"] for a, b in zip(quiet, refresh, strict=True)]
    print(f"p99 during a refresh / p99 without: {f['p99_ms'] / q['p99_ms']:.2f}x (per round: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}x); target <= 2x")
    if refused:
        print(f"refused answers: {refused} (see {work / 'gateway.log'})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
