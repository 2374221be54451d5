"""Fixtures of the GOST tests: the big-number types to run the arithmetic with, and the real NCA files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail


def _mpz() -> Callable[[int], int]:
    try:
        import gmpy2
    except ImportError:
        skip_or_fail("gmpy2 (the `gost` extra) is not installed")
    return gmpy2.mpz


@pytest.fixture(params=["int", "gmpy2"])
def number(request: pytest.FixtureRequest) -> Callable[[int], int]:
    """Each arithmetic test runs on Python ints (the fallback) and on gmpy2.mpz (the `gost` extra)."""
    return int if request.param == "int" else _mpz()



@pytest.fixture(scope="session")
def kalkan() -> Path:
    """tests/data/kalkan: real KalkanCrypt output and NCA's GOST test CA certificates (its README.md)."""
    return Path(__file__).resolve().parents[2] / "data" / "kalkan"


def le(hex_number: str) -> bytes:
    """A number as the standard prints it (most significant digit first) as this package's bytes."""
    return bytes.fromhex(hex_number)[::-1]
