"""The benchmark scripts still run. They are not timed here (a shared machine's timings belong in the
scripts' own output, not in pass/fail): each runs in its smallest form against the current code and must
print its figures and exit 0. A benchmark that broke with a change elsewhere (benchmarks/verify.py once
looked the CRL index up by a key the index no longer used) is caught by the next test run, not by the next
person measuring."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LICGATE_TEST_PG_DSN"}  # SQLite: the smallest form
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env={**env, "PYTHONIOENCODING": "utf-8"},
                          capture_output=True, encoding="utf-8", timeout=timeout, check=False)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_verify_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/verify.py", "--quick")
    assert re.search(r"realistic, 4 x 48 KB docs\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+\d+\s+[\d.]+\s+[\d.]+x", out), out
    assert re.search(r"CRL with 5,000 revoked serials", out), out
    assert re.search(r"lookup .*: [\d.]+ µs", out), out
    for algorithm in ("RSA-2048", "GOST-256", "GOST-512"):  # GOST next to RSA, with the ratio
        assert re.search(algorithm + r"\s+\d+\s+[\d.]+\s+[\d.]+x\s+[\d.]+\s+[\d.]+x", out), out
    assert re.search(r"target: GOST-512 hash \+ signature <= 15 ms on one core: [\d.]+ ms", out), out


def test_crl_refresh_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/crl_refresh.py", "--serials", "2000", "--rounds", "1", "--requests", "30",
                        "--concurrency", "2")
    assert re.search(r"a CRL replaced per round\s+\d+\s+[\d.]+\s+[\d.]+", out), out
    assert re.search(r"p99 during a refresh / p99 without: [\d.]+x", out), out


def test_queue_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/queue.py", "--quick", "--sqlite-only")
    assert re.search(r"lease\+ack", out), out


def test_delivery_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/delivery.py", "--quick", "--sqlite-only")
    assert re.search(r"\d+/s", out), out


@pytest.mark.parametrize("processes", ["auto", "0"])
def test_intake_benchmark_runs(processes: str) -> None:
    out = run_benchmark("benchmarks/intake.py", "--requests", "40", "--rounds", "2", "--concurrency", "2",
                        "--big-mb", "0.3", "--intake-processes", processes)
    # Every request of both servers answered 200 (the gateway's receipts are SCSS001 only then).
    assert re.search(r"bare FastAPI .*\{200: 360\}", out), out
    assert re.search(r"/shep/sync .*\{200: 40\}", out), out
    assert re.search(r"gateway/bare [\d.]+% \(median of the rounds: [\d.]+%, [\d.]+%;", out), out
    assert "answered SCSS001" in out, out


def test_audit_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/audit.py", "--apps", "32", "--rounds", "2", "--refusals", "40",
                        "--records", "2000")
    assert re.search(r"sqlite +intake .*with/without [\d.]+%", out), out
    assert re.search(r"refusals answered after their commit \(write\) +\d+/s", out), out
    assert re.search(r"verify of 2,000 records: [\d.]+ s", out), out


def test_fuzz_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/fuzz.py", "--cases", "300", "--concurrency", "4")
    assert re.search(r"300 cases from \d+ seeds .* [\d.]+ s: \d+/s", out), out
    assert re.search(r"MALFORMED_MESSAGE\s+\d+", out), out
    assert "outside the contract: 0, dropped: 0, INTERNAL_ERROR: 0" in out, out


def test_soak_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/soak.py", "--seconds", "20", "--rate", "3")
    assert re.search(r"^\s+1\s+\d+\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+gateway restarted", out, re.M), out
    assert "lost 0, duplicated 0" in out, out
