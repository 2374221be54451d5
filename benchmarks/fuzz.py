"""The long form of the SOAP mutation fuzzer (tests/fuzz/): mutated signed envelopes of every channel and
dialect against a gateway served over loopback (with the HTTP protocol `licgate serve` runs), with the
counts by errorCode at the end.

    .venv/bin/python benchmarks/fuzz.py [--cases 100000] [--seed 20] [--concurrency 8] [--intake-processes 0]

Exit 1 when any answer was outside the contract (not a SOAP answer with a contract code), INTERNAL_ERROR,
or no answer at all (a dropped connection); the first cases of each are printed with their mutations.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/queue.py would shadow the standard library's queue module.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from gateway.api.connections import protocol_factory  # noqa: E402
from gateway.app import create_app  # noqa: E402
from signing.pki import init_pki, load_pki  # noqa: E402
from tests.fuzz.harness import describe, rss_bytes, run_cases  # noqa: E402
from tests.fuzz.mutators import cases, seeds  # noqa: E402
from tests.intake.conftest import make_config  # noqa: E402
from tests.support.server import serve  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--intake-processes", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="licgate-fuzz-") as tmp:
        init_pki(Path(tmp) / "pki")
        pki = load_pki(Path(tmp) / "pki")
        seed_list = seeds(pki)
        config = make_config(pki, f"sqlite:///{Path(tmp) / 'licgate.db'}", intake_processes=args.intake_processes)
        with serve(create_app(config), http=protocol_factory(config.server)) as server:
            gc.collect()
            rss_before = rss_bytes()
            started = time.monotonic()
            tally = run_cases(server.url, cases(seed_list, args.cases, rng_seed=args.seed),
                              concurrency=args.concurrency)
            elapsed = time.monotonic() - started
            gc.collect()
            time.sleep(1.5)  # core/memory.py gives freed memory back a second after the last large request
            rss_after = rss_bytes()
    print(f"{tally.total} cases from {len(seed_list)} seeds (seed {args.seed}, concurrency {args.concurrency}, "
          f"intake processes {args.intake_processes}) in {elapsed:.1f} s: {tally.total / elapsed:.0f}/s")
    print(f"resident memory of the serving (and sending) process: {rss_before / 2**20:.0f} MB -> "
          f"{rss_after / 2**20:.0f} MB")
    print("answers by errorCode:")
    for code, count in tally.codes.most_common():
        print(f"  {code:<30} {count:>8}")
    print("answers by mutator (a case may carry several):")
    for name, counter in sorted(tally.by_mutation.items()):
        top = ", ".join(f"{c} {n}" for c, n in counter.most_common(4))
        print(f"  {name:<20} {sum(counter.values()):>7}  {top}")
    failed = tally.bad or tally.dropped or tally.internal
    if failed:
        print(describe(tally, limit=10))
    print(f"outside the contract: {len(tally.bad)}, dropped: {len(tally.dropped)}, "
          f"INTERNAL_ERROR: {len(tally.internal)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
