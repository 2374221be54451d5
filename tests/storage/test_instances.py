"""What several instances on one database share through storage: heartbeat rows, one run per job tick,
each breach recorded by one caller, outbox claims given back, and signals after commits (on PostgreSQL
also across storages, by NOTIFY)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from core.domain import Step
from gateway.storage import InstanceRecord, NewOutboxMessage, OutboxKind, Storage, Transition, open_storage
from gateway.storage.signals import OUTBOX, QUEUE
from tests.storage.factory import T0, new_application, receipt_for, step


def _instance(name: str) -> InstanceRecord:
    return InstanceRecord(id=name, host="host-a", pid=4242, version="0.1.0", started_at=T0, last_seen=T0)


def test_heartbeats_list_the_live_instances_and_stale_rows_are_forgotten(storage: Storage) -> None:
    storage.heartbeat(_instance("a"), T0)
    storage.heartbeat(_instance("b"), T0 + timedelta(seconds=10))
    storage.heartbeat(_instance("a"), T0 + timedelta(seconds=12))  # refreshed, not duplicated
    live = storage.live_instances(T0 + timedelta(seconds=11))
    assert [(i.id, i.last_seen) for i in live] == [("a", T0 + timedelta(seconds=12))]
    assert {i.id for i in storage.live_instances(T0)} == {"a", "b"}
    assert storage.forget_instances(T0 + timedelta(seconds=11)) == 1
    storage.remove_instance("a")
    assert storage.live_instances(T0) == []


def test_a_job_tick_is_claimed_by_one_caller_until_its_next_run(storage: Storage) -> None:
    assert storage.claim_job("sweep", T0, T0 + timedelta(seconds=60), "a")  # never ran: inserted
    assert not storage.claim_job("sweep", T0 + timedelta(seconds=1), T0 + timedelta(seconds=61), "b")
    assert not storage.claim_job("sweep", T0 + timedelta(seconds=59), T0 + timedelta(seconds=119), "a")
    assert storage.claim_job("sweep", T0 + timedelta(seconds=60), T0 + timedelta(seconds=120), "b")
    assert storage.claim_job("other", T0, T0 + timedelta(seconds=60), "b")  # jobs are independent


def test_concurrent_claims_of_one_tick_across_storages_give_it_to_one(storage_url: str) -> None:
    storages = [open_storage(storage_url, pool_size=2) for _ in range(4)]
    for s in storages:
        s.migrate()
    won: list[int] = []
    barrier = threading.Barrier(len(storages))

    def claim(i: int) -> None:
        barrier.wait()
        if storages[i].claim_job("tick", T0, T0 + timedelta(seconds=5), f"i{i}"):
            won.append(i)

    try:
        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(storages))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1
    finally:
        for s in storages:
            s.close()


def test_each_breach_is_recorded_by_one_caller_and_settled_applications_are_not_swept(storage: Storage) -> None:
    a = storage.store_application(new_application(1), receipt_for)
    b = storage.store_application(new_application(2), receipt_for)
    first = storage.count_breaches([(a.id, Step.REGISTERED), (b.id, Step.REGISTERED)], "i1", T0)
    assert sorted(first) == sorted([(a.id, Step.REGISTERED), (b.id, Step.REGISTERED)])
    again = storage.count_breaches([(a.id, Step.REGISTERED), (a.id, Step.SENT_TO_MANAGEMENT)], "i2", T0,
                                   settle=[a.id])
    assert again == [(a.id, Step.SENT_TO_MANAGEMENT)]
    assert storage.breaches_counted([a.id, b.id]) == {
        (a.id, Step.REGISTERED), (a.id, Step.SENT_TO_MANAGEMENT), (b.id, Step.REGISTERED)}
    assert [x.id for x in storage.applications_to_check(a.provider_bin, T0)] == [b.id]


def test_the_sweep_reads_an_application_again_when_its_check_comes_due_or_a_step_changes_it(
        storage: Storage) -> None:
    a = storage.store_application(new_application(1), receipt_for)
    b = storage.store_application(new_application(2), receipt_for)
    assert [x.id for x in storage.applications_to_check(a.provider_bin, T0)] == [a.id, b.id]  # new ones at once
    later = T0 + timedelta(hours=1)
    storage.count_breaches([], "i1", T0, checks={a.id: later, b.id: later})
    assert storage.applications_to_check(a.provider_bin, T0) == []
    assert [x.id for x in storage.applications_to_check(a.provider_bin, later)] == [a.id, b.id]
    storage.apply_transition(b.id, Transition(step=step(Step.REGISTERED), expected_last_step=None, recorded_at=T0))
    assert [x.id for x in storage.applications_to_check(a.provider_bin, T0)] == [b.id]  # its step reset the check


def test_timelines_of_several_applications_in_one_read(storage: Storage) -> None:
    a = storage.store_application(new_application(1), receipt_for)
    b = storage.store_application(new_application(2), receipt_for)
    storage.apply_transition(a.id, Transition(step=step(Step.REGISTERED), expected_last_step=None, recorded_at=T0))
    found = storage.timelines([a.id, b.id])
    assert list(found) == [a.id] and [r.step for r in found[a.id]] == [Step.REGISTERED]


def test_a_stopping_holder_gives_its_outbox_claims_back(storage: Storage) -> None:
    app = storage.store_application(new_application(1), receipt_for)
    storage.apply_transition(app.id, Transition(step=step(Step.REGISTERED), expected_last_step=None, recorded_at=T0,
                                                outbox=(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, "m1",
                                                                         b"<n/>"),)))
    [claimed] = storage.claim_outbox(T0, 10, 60, holder="i1")
    assert storage.claim_outbox(T0, 10, 60, holder="i2") == []
    woken: list[str | None] = []
    storage.signals.subscribe(OUTBOX, woken.append)
    if hasattr(storage, "wait_listening"):  # PostgreSQL: its listener wakes everyone once when it connects
        assert storage.wait_listening(10)
        time.sleep(0.2)
        woken.clear()
    assert storage.release_outbox_claims("i2") == 0
    assert storage.release_outbox_claims("i1") == 1
    assert woken == [None]
    [again] = storage.claim_outbox(T0, 10, 60, holder="i2")  # at once, not after the 60 s claim
    assert again.id == claimed.id


def test_a_commit_that_queues_signals_the_waiters_of_its_provider(storage: Storage) -> None:
    woken: list[str | None] = []
    storage.signals.subscribe(QUEUE, woken.append)
    app = storage.store_application(new_application(1), receipt_for)
    # (On PostgreSQL the listener, started by the subscription, also wakes everyone once when it connects.)
    assert [k for k in woken if k is not None] == [app.provider_bin]


def test_postgresql_signals_reach_another_storage_on_the_database(pg_url: str) -> None:
    writer, listener = open_storage(pg_url, pool_size=2), open_storage(pg_url, pool_size=2)
    try:
        writer.migrate()
        woken = threading.Event()
        keys: list[str | None] = []

        def on_queue(key: str | None) -> None:
            keys.append(key)
            if key is not None:
                woken.set()

        listener.signals.subscribe(QUEUE, on_queue)
        assert listener.wait_listening(10)  # type: ignore[attr-defined]
        started = time.monotonic()
        app = writer.store_application(new_application(1), receipt_for)
        assert woken.wait(5), "no NOTIFY arrived"
        assert time.monotonic() - started < 1.0
        assert app.provider_bin in keys
    finally:
        writer.close()
        listener.close()
