"""Shared fixtures. PostgreSQL and xmlsec1 tests skip with a reason when those are absent, except under
CI=true, where such a skip is a failure (docs/testing.md)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (a skip is a failure under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("LICGATE_TEST_PG_DSN", "")
    if not dsn:
        skip_or_fail("LICGATE_TEST_PG_DSN is not set: PostgreSQL tests need it")
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        skip_or_fail(f"PostgreSQL at LICGATE_TEST_PG_DSN is not reachable: {exc}")
    return dsn


@contextmanager
def fresh_schema(pg_dsn: str) -> Iterator[str]:
    """A storage URL on the PostgreSQL at `pg_dsn` with a fresh, empty schema of its own (dropped afterwards)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_dsn else "?"
    try:
        yield f"{pg_dsn}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A storage URL on the test PostgreSQL with a fresh, empty schema of its own (dropped afterwards)."""
    with fresh_schema(pg_dsn) as url:
        yield url


@pytest.fixture(scope="session")
def xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if not path:
        skip_or_fail("Debian's xmlsec1 CLI is not on PATH (apt-get install xmlsec1)")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """Run a test once on SQLite (a real file) and once on PostgreSQL (a fresh schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'licgate.db'}"
    return request.getfixturevalue("pg_url")
