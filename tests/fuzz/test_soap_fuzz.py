"""Mutation fuzzing of `POST /shep/sync` over loopback: thousands of mutated signed envelopes, each answered
with a contract code in a SOAP envelope, never INTERNAL_ERROR, never a dropped connection, and the serving
process's memory bounded. The long form is `benchmarks/fuzz.py`."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from gateway.api.connections import protocol_factory
from gateway.app import create_app
from signing.pki import Pki
from tests.fuzz.harness import describe, rss_bytes, run_cases
from tests.fuzz.mutators import Seed, cases, seeds
from tests.intake.conftest import make_config
from tests.support.server import serve


@pytest.fixture(scope="module")
def fuzz_seeds(pki: Pki) -> list[Seed]:
    return seeds(pki)


def _settled_rss() -> int:
    """Resident memory once the last requests' memory went back (core/memory.py trims a second later)."""
    gc.collect()
    time.sleep(1.5)
    return rss_bytes()


def test_every_seed_is_accepted_unmutated(pki: Pki, fuzz_seeds: list[Seed], tmp_path: Path) -> None:
    # The fuzzer starts from valid requests: were they refused already, it would test little.
    from tests.fuzz.harness import run_cases as run
    from tests.fuzz.mutators import Case

    with serve(create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0))) as server:
        tally = run(server.url, [Case(i, s.name, (), s.body, "text/xml; charset=utf-8")
                                 for i, s in enumerate(fuzz_seeds)], concurrency=1)
    assert tally.codes == {"SCSS001": len(fuzz_seeds) - 1, "INTAKE_REFUSED": 1}, describe(tally)


def test_five_thousand_mutated_envelopes_get_contract_answers(pki: Pki, fuzz_seeds: list[Seed],
                                                              tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0)
    # Served by the HTTP protocol `licgate serve` runs (head and body time limits, connections per address).
    with serve(create_app(config), http=protocol_factory(config.server)) as server:
        warm = run_cases(server.url, cases(fuzz_seeds, 1000, rng_seed=1))
        before = _settled_rss()
        started = time.monotonic()
        tally = run_cases(server.url, cases(fuzz_seeds, 5000, rng_seed=20))
        elapsed = time.monotonic() - started
        growth = _settled_rss() - before
    print(describe(tally), f"\n{elapsed:.1f} s, RSS growth {growth / 2**20:.1f} MB")
    assert not warm.bad and not warm.dropped and not warm.internal, describe(warm)
    assert tally.total == 5000
    assert not tally.bad, describe(tally)
    assert not tally.dropped, describe(tally)
    assert not tally.internal, describe(tally)
    # Refusals of every early stage and acceptances both occur: the mutations reach deep and shallow.
    assert tally.codes["MALFORMED_MESSAGE"] and tally.codes["SCHEMA_INVALID"] and tally.codes["SIGNATURE_INVALID"]
    assert tally.codes["SCSS001"], describe(tally)
    # The test process is the serving process (and the client): what 5,000 requests leave behind is bounded
    # (without core/memory.py's trim: +220 MB, freed but kept by the allocator).
    assert growth < 100 * 2**20, f"RSS grew {growth / 2**20:.0f} MB over 5,000 cases"


def test_mutated_envelopes_through_an_intake_worker_process(pki: Pki, fuzz_seeds: list[Seed],
                                                            tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=1)
    with serve(create_app(config), http=protocol_factory(config.server)) as server:
        tally = run_cases(server.url, cases(fuzz_seeds, 800, rng_seed=7), concurrency=4)
    assert tally.total == 800
    assert not tally.bad and not tally.dropped and not tally.internal, describe(tally)
