"""SQLite group commit: intakes that wait for the write lock are committed together in one transaction, each
caller still gets only its own outcome, and only once the shared transaction is durable."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.storage import DuplicateIntake, StorageError
from gateway.storage.sqlite import SqliteStorage
from tests.storage.factory import new_application, receipt_for


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    s = SqliteStorage(str(tmp_path / "group.db"), busy_timeout_seconds=10)
    s.migrate()
    yield s
    s.close()


def _batched(storage: SqliteStorage, path: str, calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls[0]` while another connection holds the database's write lock, so that it takes the
    process's write lock and waits; queue the other calls behind it; then let the database go. The first
    call commits alone, the others are all pending by then and go in the next transaction together."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    outcomes: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(0,))]
    threads[0].start()
    deadline = time.monotonic() + 10
    while storage._pending and time.monotonic() < deadline:  # the first call is inside its transaction
        time.sleep(0.005)
    threads += [threading.Thread(target=run, args=(i,)) for i in range(1, len(calls))]
    for t in threads[1:]:
        t.start()
    while len(storage._pending) < len(calls) - 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(storage._pending) == len(calls) - 1, "the calls did not queue for a group commit"
    blocker.execute("ROLLBACK")
    blocker.close()
    for t in threads:
        t.join()
    return outcomes


def test_queued_intakes_are_committed_together_and_each_caller_gets_its_own_record(
        sqlite_storage: SqliteStorage, tmp_path: Path) -> None:
    path = str(tmp_path / "group.db")
    calls = [lambda i=i: sqlite_storage.store_application(new_application(i), receipt_for) for i in range(8)]
    outcomes = _batched(sqlite_storage, path, calls)
    assert [o.message_id for o in outcomes] == [f"msg-{i}" for i in range(8)]  # type: ignore[attr-defined]
    numbers = {o.registration_number for o in outcomes}  # type: ignore[attr-defined]
    assert len(numbers) == 8
    # Durable and visible to anyone once the callers have their answers: read with a fresh connection.
    fresh = sqlite3.connect(path)
    assert fresh.execute("SELECT count(*) FROM applications").fetchone()[0] == 8
    assert fresh.execute("SELECT count(*) FROM queue").fetchone()[0] == 8
    fresh.close()
    for o in outcomes:
        found = sqlite_storage.get_application(o.id)  # type: ignore[attr-defined]
        assert found is not None and found.receipt == receipt_for(o.registration_number)  # type: ignore[attr-defined]


def test_a_duplicate_inside_a_group_is_refused_alone(sqlite_storage: SqliteStorage, tmp_path: Path) -> None:
    path = str(tmp_path / "group.db")
    calls: list[Callable[[], object]] = [
        lambda: sqlite_storage.store_application(new_application(0), receipt_for),
        lambda: sqlite_storage.store_application(new_application(1), receipt_for),
        lambda: sqlite_storage.store_application(new_application(2, message_id="msg-1"), receipt_for),
        lambda: sqlite_storage.store_application(new_application(3), receipt_for),
    ]
    first, one, dup, three = _batched(sqlite_storage, path, calls)
    assert isinstance(dup, DuplicateIntake) or isinstance(one, DuplicateIntake)
    stored = one if isinstance(dup, DuplicateIntake) else dup
    refused = dup if isinstance(dup, DuplicateIntake) else one
    assert refused.existing.id == stored.id  # type: ignore[union-attr]
    assert not isinstance(first, Exception) and not isinstance(three, Exception)
    assert sqlite_storage.queue_depth() == 3


def test_work_failing_inside_a_group_is_rolled_back_alone(sqlite_storage: SqliteStorage, tmp_path: Path) -> None:
    path = str(tmp_path / "group.db")

    def broken_receipt(number: str) -> bytes:
        raise ValueError("cannot render")

    calls: list[Callable[[], object]] = [
        lambda: sqlite_storage.store_application(new_application(0), receipt_for),
        lambda: sqlite_storage.store_application(new_application(1), receipt_for),
        lambda: sqlite_storage.store_application(new_application(2), broken_receipt),
        lambda: sqlite_storage.store_application(new_application(3), receipt_for),
    ]
    outcomes = _batched(sqlite_storage, path, calls)
    assert isinstance(outcomes[2], ValueError)
    assert [type(o).__name__ for i, o in enumerate(outcomes) if i != 2] == ["ApplicationRecord"] * 3
    assert sqlite_storage.find_by_message_id("EGOV_PORTAL", "msg-2") is None
    assert sqlite_storage.queue_depth() == 3
    # The savepoint took the failed work's counter increment with it: numbers stay dense.
    numbers = sorted(o.registration_number for i, o in enumerate(outcomes) if i != 2)  # type: ignore[attr-defined]
    assert numbers == ["MED-2026-000001", "MED-2026-000002", "MED-2026-000003"]


def test_a_group_that_cannot_commit_fails_every_caller_and_stores_nothing(
        sqlite_storage: SqliteStorage, tmp_path: Path) -> None:
    path = str(tmp_path / "group.db")
    calls = [lambda i=i: sqlite_storage.store_application(new_application(i), receipt_for) for i in range(4)]
    # A reader holding an old snapshot does not stop a commit; a closed storage does: close it while the
    # group waits, and every queued caller must hear of it rather than believe its work was stored.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    outcomes: list[object] = [None] * 4

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(sqlite_storage._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    sqlite_storage._closed = True  # what close() sets; the lock it also takes is held by the first call
    blocker.execute("ROLLBACK")
    blocker.close()
    for t in threads:
        t.join()
    failed = [o for o in outcomes if isinstance(o, StorageError)]
    stored = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(failed) + len(stored) == 4 and len(failed) >= 3
    fresh = sqlite3.connect(path)
    assert fresh.execute("SELECT count(*) FROM applications").fetchone()[0] == len(stored)
    fresh.close()
    sqlite_storage._closed = False


def test_a_lone_failing_work_is_rolled_back_and_the_next_write_goes_on(sqlite_storage: SqliteStorage) -> None:
    """A transaction with one work runs it without a savepoint: its failure must still undo all of it."""

    def broken_receipt(number: str) -> bytes:
        raise ValueError("cannot render")

    with pytest.raises(ValueError, match="cannot render"):
        sqlite_storage.store_application(new_application(0), broken_receipt)
    assert sqlite_storage.find_by_message_id("EGOV_PORTAL", "msg-0") is None
    assert sqlite_storage.queue_depth() == 0
    stored = sqlite_storage.store_application(new_application(1), receipt_for)
    # The failed work's counter increment went with its rollback.
    assert stored.registration_number == "MED-2026-000001"
    with pytest.raises(DuplicateIntake):
        sqlite_storage.store_application(new_application(2, message_id="msg-1"), receipt_for)
    assert sqlite_storage.queue_depth() == 1
