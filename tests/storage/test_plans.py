"""PostgreSQL: the gateway's look-ups stay look-ups as its tables grow from empty.

psycopg prepares a query after five runs, and PostgreSQL may then settle on a generic plan made while the
tables were small, kept until the next ANALYZE (never, with autovacuum off). On a fresh schema such plans
read every application of the sender to find one duplicate and sorted the provider's whole queue to lease
one application: a new gateway slowed from 900 to 230 intakes/s over its first 6,000 applications. These
tests make the look-ups' plans on an empty schema, grow the tables, and count the rows each plan reads.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from gateway.storage import open_storage
from gateway.storage.postgres import PostgresStorage, _configure
from tests.conftest import fresh_schema
from tests.storage.factory import PROVIDER, T0, new_application, receipt_for

GROWN_BY = 20_000
# Past psycopg's prepare threshold (five runs) and PostgreSQL's five custom plans before it weighs a generic
# one; `_explain` checks that each look-up got that far. Which plan PostgreSQL then keeps depends on the
# tables' size at each run: with 12, all five tests fail without `_configure` (checked by removing it; with
# 15, three of the five plans happen to stay good).
RUNS = 12


def _rows_read(plan: dict[str, Any]) -> int:
    """The most rows any node of an EXPLAIN ANALYZE plan produced or threw away."""
    own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
           + plan.get("Rows Removed by Index Recheck", 0)) * plan.get("Actual Loops", 1)
    return max([own, *(_rows_read(child) for child in plan.get("Plans", []))])


NOW = T0 + timedelta(hours=1)
# Each look-up: text that singles out its prepared statement, and the arguments to run it with.
LOOK_UPS = {
    "duplicate": ("Both unique keys", "'EGOV_PORTAL', 'grown-msg-77', 'no-such-request'"),
    "duplicates": ("for a batch in one round trip", "ARRAY['EGOV_PORTAL', 'EGOV_PORTAL'], "
                   "ARRAY['grown-msg-77', 'no-such-message'], ARRAY['no-such-request', 'GROWN-REQ-5']"),
    "message_id": ("applications WHERE sender_id = $1 AND message_id = $2", "'EGOV_PORTAL', 'grown-msg-77'"),
    "lease": ("UPDATE queue AS q SET lease_id",
              f"'a-lease', '{(NOW + timedelta(minutes=1)).isoformat()}', '{PROVIDER}', '{NOW.isoformat()}', 1"),
    "ack": ("DELETE FROM queue", f"ARRAY['grown-5', 'grown-6'], '{PROVIDER}', 'a-lease'"),
    "leased_records": ("WHERE id = ANY", "ARRAY['grown-5', 'grown-6']"),
}


@pytest.fixture(scope="module")
def rows_read(pg_dsn: str) -> dict[str, int]:
    """How many rows each of LOOK_UPS reads: run on one pooled connection whose queries were prepared and
    run on a nearly empty schema, after which the applications and the queue grew by GROWN_BY rows."""
    with fresh_schema(pg_dsn) as url:
        storage = open_storage(url, pool_size=1)
        assert isinstance(storage, PostgresStorage)
        try:
            storage.migrate()
            for i in range(RUNS):
                storage.store_application(new_application(i, documents=0), receipt_for)
                storage.store_applications([(new_application(100 + 2 * i + k, documents=0), receipt_for, ())
                                            for k in range(2)])  # a batch: its duplicates found in one query
                storage.find_by_message_id("EGOV_PORTAL", f"msg-{i}")
                lease = storage.lease(PROVIDER, 1, 60, T0)
                storage.ack(PROVIDER, lease.lease_id, [a.id for a in lease.applications], T0)
            _grow(url)
            return _explain(storage)
        finally:
            storage.close()


def _grow(url: str) -> None:
    """Copies of the first application under new keys, each queued."""
    with psycopg.connect(url, autocommit=True) as raw:
        columns = [r[0] for r in raw.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'applications' ORDER BY ordinal_position")]
        keys = {"id": "'grown-' || i", "registration_number": "'GROWN-' || i", "message_id": "'grown-msg-' || i",
                "request_number": "'GROWN-REQ-' || i"}
        raw.execute(f"INSERT INTO applications ({', '.join(columns)})"
                    f" SELECT {', '.join(keys.get(c, 'a.' + c) for c in columns)}"
                    " FROM applications a, generate_series(1, %(n)s) i WHERE a.message_id = 'msg-0'", {"n": GROWN_BY})
        raw.execute("INSERT INTO queue (application_id, provider_bin) "
                    "SELECT 'grown-' || i, %(p)s FROM generate_series(1, %(n)s) i", {"p": PROVIDER, "n": GROWN_BY})


def _explain(storage: PostgresStorage) -> dict[str, int]:
    """EXPLAIN ANALYZE of each of LOOK_UPS's prepared statements on the storage's one connection, all in one
    transaction rolled back at the end (the lease and the ack write; psycopg forgets its prepared statements
    on a rollback)."""
    found: dict[str, int] = {}
    with storage._pool.connection() as conn:  # noqa: SLF001 - the one connection holding the prepared plans
        statements = conn.execute(
            "SELECT name, statement, generic_plans + custom_plans AS runs FROM pg_prepared_statements").fetchall()
        with conn.transaction(force_rollback=True):
            for what, (marker, args) in LOOK_UPS.items():
                [prepared, *others] = [r for r in statements if marker in r["statement"]] or [None]
                assert prepared is not None and not others, f"no single prepared statement holds {marker!r}"
                assert prepared["runs"] > 5, f"{what} ran {prepared['runs']} times prepared: too few to be tested"
                row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {prepared['name']}({args})").fetchone()
                assert row is not None
                plan = row["QUERY PLAN"]
                found[what] = _rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return found


def test_the_duplicate_look_up_reads_no_other_application(rows_read: dict[str, int]) -> None:
    assert rows_read["duplicate"] <= 2


def test_the_batched_duplicate_look_up_reads_only_the_matches(rows_read: dict[str, int]) -> None:
    assert rows_read["duplicates"] <= 2


def test_looking_up_a_message_id_reads_one_application(rows_read: dict[str, int]) -> None:
    assert rows_read["message_id"] <= 1


def test_a_lease_of_one_reads_the_head_of_the_queue_not_all_of_it(rows_read: dict[str, int]) -> None:
    assert rows_read["lease"] <= 10


def test_an_ack_reads_the_applications_it_names(rows_read: dict[str, int]) -> None:
    assert rows_read["ack"] <= 2


def test_reading_leased_applications_reads_only_those(rows_read: dict[str, int]) -> None:
    assert rows_read["leased_records"] <= 2


def test_a_postgresql_without_the_setting_is_still_used(caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL 11 and older know no plan_cache_mode: the connection is configured without it, said."""

    class OlderServer:
        def execute(self, sql: str) -> None:
            raise psycopg.errors.UndefinedObject(f"unrecognized configuration parameter in {sql!r}")

    _configure(OlderServer())  # type: ignore[arg-type]
    assert "older than 12" in caplog.text
