"""The outbox: in order per application (head of line), claims with expiry, retries, dead letters."""

from __future__ import annotations

import threading
from datetime import timedelta

from core.domain import Step
from gateway.storage import NewOutboxMessage, OutboxKind, OutboxState, Storage, Transition
from tests.storage.factory import T0, log_entry, new_application, receipt_for, step


def _with_messages(storage: Storage, n: int, count: int) -> str:
    app = storage.store_application(new_application(n), receipt_for)
    storage.apply_transition(app.id, Transition(recorded_at=T0,
        step=step(Step.REGISTERED), expected_last_step=None,
        outbox=tuple(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, f"out-{n}-{i}", b"<n%d/>" % i)
                     for i in range(count)),
    ))
    return app.id


def test_claim_gives_only_the_oldest_unsent_message_of_each_application(storage: Storage) -> None:
    a = _with_messages(storage, 1, 3)
    b = _with_messages(storage, 2, 2)
    claimed = storage.claim_outbox(T0, 10, 30)
    assert [(m.application_id, m.message_id) for m in claimed] == [(a, "out-1-0"), (b, "out-2-0")]


def test_a_claimed_message_is_not_claimed_again_until_its_claim_expires(storage: Storage) -> None:
    _with_messages(storage, 1, 2)
    [first] = storage.claim_outbox(T0, 10, 30)
    assert storage.claim_outbox(T0 + timedelta(seconds=29), 10, 30) == []
    [again] = storage.claim_outbox(T0 + timedelta(seconds=30), 10, 30)
    assert again.id == first.id


def test_sending_the_head_message_makes_the_next_one_claimable(storage: Storage) -> None:
    app = _with_messages(storage, 1, 2)
    [first] = storage.claim_outbox(T0, 10, 30)
    storage.mark_outbox_sent(first.id, T0 + timedelta(seconds=1),
                             log=[log_entry("out-1-0", verdict="DELIVERED", direction="out", application_id=app)])
    [second] = storage.claim_outbox(T0 + timedelta(seconds=1), 10, 30)
    assert second.message_id == "out-1-1"
    sent = storage.outbox_messages(app)[0]
    assert sent.state is OutboxState.SENT and sent.sent_at == T0 + timedelta(seconds=1)
    assert storage.outbox_backlog() == 1
    assert [e.verdict for e in storage.message_log(message_id="out-1-0")] == ["DELIVERED"]


def test_a_failed_message_waits_for_its_next_attempt_and_blocks_the_later_ones(storage: Storage) -> None:
    app = _with_messages(storage, 1, 2)
    [first] = storage.claim_outbox(T0, 10, 30)
    storage.mark_outbox_failed(first.id, "HTTP 503", T0 + timedelta(seconds=5), dead=False)
    assert storage.claim_outbox(T0 + timedelta(seconds=4), 10, 30) == []
    [retry] = storage.claim_outbox(T0 + timedelta(seconds=5), 10, 30)
    assert retry.id == first.id and retry.attempts == 1 and retry.last_error == "HTTP 503"
    assert retry.next_attempt_at == T0 + timedelta(seconds=5)
    assert storage.outbox_messages(app)[1].state is OutboxState.PENDING


def test_a_dead_letter_blocks_its_application_until_an_operator_retries_it(storage: Storage) -> None:
    blocked = _with_messages(storage, 1, 2)
    other = _with_messages(storage, 2, 1)
    first = next(m for m in storage.claim_outbox(T0, 10, 30) if m.application_id == blocked)
    storage.mark_outbox_failed(first.id, "SOAP fault: no route", T0 + timedelta(seconds=1), dead=True)
    later = T0 + timedelta(hours=1)
    assert [m.application_id for m in storage.claim_outbox(later, 10, 30)] == [other]
    [dead] = storage.dead_letters()
    assert (dead.id, dead.state, dead.last_error, dead.attempts) == (first.id, OutboxState.DEAD,
                                                                      "SOAP fault: no route", 1)
    assert storage.outbox_backlog() == 2  # the blocked one behind the dead letter, and the other's
    assert storage.retry_dead_letter(first.id, later) is True
    assert storage.retry_dead_letter(first.id, later) is False
    assert storage.dead_letters() == []
    [retried] = storage.claim_outbox(later, 10, 30)
    assert retried.id == first.id and retried.attempts == 0
    storage.mark_outbox_sent(retried.id, later)
    assert [m.message_id for m in storage.claim_outbox(later, 10, 30)] == ["out-1-1"]


def test_retrying_a_message_that_is_not_dead_does_nothing(storage: Storage) -> None:
    _with_messages(storage, 1, 1)
    [m] = storage.claim_outbox(T0, 10, 30)
    assert storage.retry_dead_letter(m.id, T0) is False
    assert storage.retry_dead_letter(999_999, T0) is False


def test_claim_respects_its_limit_and_due_time_order(storage: Storage) -> None:
    ids = [_with_messages(storage, n, 1) for n in range(4)]
    assert [m.application_id for m in storage.claim_outbox(T0, 2, 30)] == ids[:2]
    assert [m.application_id for m in storage.claim_outbox(T0, 10, 30)] == ids[2:]


def test_workers_claiming_at_once_never_hold_messages_of_one_application_together(storage: Storage) -> None:
    apps = [_with_messages(storage, n, 3) for n in range(8)]
    held: dict[str, int] = {}
    sent: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        idle = 0
        while idle < 20:
            claimed = storage.claim_outbox(T0, 3, 600)
            idle = 0 if claimed else idle + 1
            for m in claimed:
                with lock:
                    if m.application_id in held:
                        problems.append(f"{m.message_id} claimed while {held[m.application_id]} is out")
                    held[m.application_id] = m.id
                with lock:
                    del held[m.application_id]
                    sent.append(m.message_id)
                storage.mark_outbox_sent(m.id, T0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert sorted(sent) == sorted(f"out-{n}-{i}" for n in range(8) for i in range(3))
    for n, app in enumerate(apps):
        assert [m.message_id for m in storage.outbox_messages(app)] == [f"out-{n}-{i}" for i in range(3)]
        assert [s for s in sent if s.startswith(f"out-{n}-")] == [f"out-{n}-{i}" for i in range(3)]
