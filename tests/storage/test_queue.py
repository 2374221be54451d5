"""The provider queue: leases with a visibility timeout, ack by the holding lease, oldest first."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from gateway.storage import Storage, StorageError
from tests.storage.factory import OTHER_PROVIDER, PROVIDER, T0, new_application, receipt_for


def _queue(storage: Storage, n: int, provider_bin: str = PROVIDER, start: int = 0) -> list[str]:
    return [storage.store_application(new_application(start + i, provider_bin=provider_bin, documents=0),
                                      receipt_for).id for i in range(n)]


def test_lease_hands_out_the_oldest_first(storage: Storage) -> None:
    ids = _queue(storage, 5)
    first = storage.lease(PROVIDER, 2, 60, T0)
    second = storage.lease(PROVIDER, 10, 60, T0)
    assert [a.id for a in first.applications] == ids[:2]
    assert [a.id for a in second.applications] == ids[2:]
    assert first.lease_id != second.lease_id
    assert first.expires_at == T0 + timedelta(seconds=60)
    assert first.applications[0].registration_number == "MED-2026-000001"


def test_leased_applications_carry_their_full_records(storage: Storage) -> None:
    stored = storage.store_application(new_application(1), receipt_for)
    [leased] = storage.lease(PROVIDER, 1, 60, T0).applications
    assert leased == stored


class _RecordsUnreadable:
    """A write transaction whose read of the leased applications fails (a locked or failing database)."""

    def __init__(self, tx: Any) -> None:
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def all(self, query: str, /, **params: Any) -> Any:
        if query == "applications_by_ids":
            raise StorageError("disk I/O error")
        return self._tx.all(query, **params)


def test_a_lease_whose_records_cannot_be_read_leases_nothing(storage: Storage, monkeypatch) -> None:
    stored = storage.store_application(new_application(1), receipt_for)
    real_write = storage._write  # type: ignore[attr-defined]

    @contextmanager
    def write() -> Iterator[Any]:
        with real_write() as tx:
            yield _RecordsUnreadable(tx)

    monkeypatch.setattr(storage, "_write", write)
    with pytest.raises(StorageError):  # the provider gets an error and no lease_id ...
        storage.lease(PROVIDER, 10, 86400, T0)
    monkeypatch.undo()
    # ... so nothing may stay leased: the application is handed out at once, not after 24 hours
    assert [a.id for a in storage.lease(PROVIDER, 10, 60, T0).applications] == [stored.id]


def test_a_lease_needs_no_read_after_its_commit(storage: Storage, monkeypatch) -> None:
    stored = storage.store_application(new_application(1), receipt_for)

    @contextmanager
    def broken_read() -> Iterator[Any]:
        raise StorageError("database is locked")
        yield

    monkeypatch.setattr(storage, "_read", broken_read)
    leased = storage.lease(PROVIDER, 10, 86400, T0)
    assert [a.id for a in leased.applications] == [stored.id]
    assert leased.applications[0] == stored


def test_an_application_under_a_live_lease_is_not_leased_again(storage: Storage) -> None:
    _queue(storage, 3)
    assert len(storage.lease(PROVIDER, 10, 60, T0).applications) == 3
    assert storage.lease(PROVIDER, 10, 60, T0 + timedelta(seconds=59)).applications == ()


def test_an_expired_lease_is_leased_again_oldest_first(storage: Storage) -> None:
    ids = _queue(storage, 3)
    first = storage.lease(PROVIDER, 2, 30, T0)
    rest = storage.lease(PROVIDER, 10, 300, T0)
    assert storage.ack(PROVIDER, first.lease_id, [ids[1]], T0) == [ids[1]]
    again = storage.lease(PROVIDER, 10, 30, T0 + timedelta(seconds=30))
    assert [a.id for a in again.applications] == [ids[0]]
    assert [a.id for a in rest.applications] == [ids[2]]


def test_ack_is_accepted_only_from_the_lease_holding_the_application(storage: Storage) -> None:
    ids = _queue(storage, 2)
    old = storage.lease(PROVIDER, 2, 10, T0)
    assert storage.ack(PROVIDER, "not-a-lease", ids, T0) == []
    new = storage.lease(PROVIDER, 1, 60, T0 + timedelta(seconds=11))  # old lease expired: ids[0] moves on
    assert [a.id for a in new.applications] == [ids[0]]
    assert storage.ack(PROVIDER, old.lease_id, ids, T0 + timedelta(seconds=12)) == [ids[1]]
    assert storage.ack(OTHER_PROVIDER, new.lease_id, [ids[0]], T0) == []
    assert storage.ack(PROVIDER, new.lease_id, [ids[0], ids[0]], T0) == [ids[0]]
    assert storage.queue_depth(PROVIDER) == 0


def test_ack_removes_from_the_queue_for_good(storage: Storage) -> None:
    ids = _queue(storage, 3)
    lease = storage.lease(PROVIDER, 3, 10, T0)
    assert storage.queue_depth(PROVIDER) == 3 and storage.queue_depth() == 3
    assert storage.ack(PROVIDER, lease.lease_id, ids[:2], T0) == ids[:2]
    assert storage.queue_depth(PROVIDER) == 1
    assert storage.ack(PROVIDER, lease.lease_id, ids[:2], T0) == []  # already gone
    later = storage.lease(PROVIDER, 10, 10, T0 + timedelta(hours=1))
    assert [a.id for a in later.applications] == [ids[2]]


def test_each_provider_leases_only_its_own_applications(storage: Storage) -> None:
    mine = _queue(storage, 2)
    theirs = _queue(storage, 2, provider_bin=OTHER_PROVIDER, start=10)
    assert [a.id for a in storage.lease(OTHER_PROVIDER, 10, 60, T0).applications] == theirs
    assert [a.id for a in storage.lease(PROVIDER, 10, 60, T0).applications] == mine
    assert storage.queue_depth(PROVIDER) == 2 and storage.queue_depth() == 4


def test_an_empty_lease_still_has_an_id(storage: Storage) -> None:
    lease = storage.lease(PROVIDER, 10, 60, T0)
    assert lease.applications == () and lease.lease_id
    assert storage.lease(PROVIDER, 0, 60, T0).lease_id


def test_no_application_is_in_two_live_leases_when_threads_lease_at_once(storage: Storage) -> None:
    ids = _queue(storage, 60)
    got: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        while True:
            lease = storage.lease(PROVIDER, 4, 600, T0)
            if not lease.applications:
                return
            with lock:
                got.extend(a.id for a in lease.applications)
            storage.ack(PROVIDER, lease.lease_id, [a.id for a in lease.applications], T0)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(got) == Counter(ids)
    assert storage.queue_depth() == 0


def test_queue_depth_stays_exact_while_intakes_and_acks_run_at_once(storage: Storage) -> None:
    acked: list[str] = []
    done = threading.Event()

    def intake(k: int) -> None:
        for i in range(15):
            storage.store_application(new_application(1000 * k + i, documents=0), receipt_for)

    def consumer() -> None:
        while not done.is_set():
            lease = storage.lease(PROVIDER, 3, 600, T0)
            acked.extend(storage.ack(PROVIDER, lease.lease_id, [a.id for a in lease.applications], T0))

    producers = [threading.Thread(target=intake, args=(k,)) for k in range(4)]
    consumers = [threading.Thread(target=consumer) for _ in range(2)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    done.set()
    for t in consumers:
        t.join()
    assert storage.queue_depth(PROVIDER) == 60 - len(acked)
    remaining = storage.lease(PROVIDER, 100, 600, T0 + timedelta(hours=1))
    assert len(remaining.applications) == 60 - len(acked)
    assert storage.queue_depth(OTHER_PROVIDER) == 0


def test_sqlite_lease_and_ack_use_indexes_and_never_sort_or_scan_the_queue(tmp_path) -> None:  # noqa: ANN001
    from gateway.storage.sqlfiles import queries
    from gateway.storage.sqlite import SqliteStorage

    s = SqliteStorage(str(tmp_path / "plan.db"))
    s.migrate()
    params = {"provider_bin": PROVIDER, "lease_id": "l", "now": 0, "until": 1, "max_items": 100, "ids": "[]"}
    try:
        with s._write() as tx:  # noqa: SLF001 - the plan is what this test is about
            plans = {name: " | ".join(r[3] for r in tx.conn.execute("EXPLAIN QUERY PLAN " + queries("sqlite")[name],
                                                                      params))
                     for name in ("lease", "ack")}
    finally:
        s.close()
    for plan in plans.values():
        assert "TEMP B-TREE" not in plan and "SCAN queue" not in plan and "SCAN q " not in plan, plan
    assert "USING INDEX queue_by_provider (provider_bin=?)" in plans["lease"]
    assert "USING INDEX sqlite_autoindex_queue_1 (application_id=?)" in plans["ack"]
