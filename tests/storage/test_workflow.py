"""The timeline of steps and `apply_transition` with its optimistic check on the last step."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from core.domain import Decision, Status, Step
from gateway.storage import NewOutboxMessage, OutboxKind, Storage, Transition, TransitionConflict
from tests.storage.factory import T0, log_entry, new_application, receipt_for, step


def test_transition_appends_the_step_and_sets_what_it_carries(storage: Storage) -> None:
    app = storage.store_application(new_application(1), receipt_for)
    after = storage.apply_transition(app.id, Transition(step=step(Step.REGISTERED), expected_last_step=None,
                                                        recorded_at=T0, new_status=Status.REGISTERED))
    assert after.app.last_step is Step.REGISTERED and after.app.status is Status.REGISTERED
    signed = storage.apply_transition(app.id, Transition(recorded_at=T0,
        step=step(Step.SIGNED, T0 + timedelta(hours=1)), expected_last_step=Step.REGISTERED,
        new_status=Status.GRANTED, decision=Decision.GRANTED, result=b"<LicenseDecision/>",
    )).app
    assert (signed.status, signed.decision, signed.result) == (Status.GRANTED, Decision.GRANTED, b"<LicenseDecision/>")
    assert signed.updated_at == T0 + timedelta(hours=1)
    assert storage.get_application(app.id) == signed
    timeline = storage.timeline(app.id)
    assert [(s.step, s.at) for s in timeline] == [(Step.REGISTERED, T0), (Step.SIGNED, T0 + timedelta(hours=1))]
    assert all(s.recorded_at is not None and s.recorded_at.tzinfo is not None for s in timeline)
    assert timeline[0].actor == "880101300123" and timeline[0].source.startswith("provider-api:")


def test_a_transition_from_a_stale_last_step_conflicts_and_changes_nothing(storage: Storage) -> None:
    app = storage.store_application(new_application(1), receipt_for)
    storage.apply_transition(app.id, Transition(recorded_at=T0, step=step(Step.REGISTERED), expected_last_step=None))
    with pytest.raises(TransitionConflict) as caught:
        storage.apply_transition(app.id, Transition(recorded_at=T0,
            step=step(Step.SENT_TO_MANAGEMENT), expected_last_step=None, new_status=Status.IN_REVIEW,
            outbox=(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, "out-1", b"<n/>"),),
        ))
    assert caught.value.actual_last_step is Step.REGISTERED
    assert [s.step for s in storage.timeline(app.id)] == [Step.REGISTERED]
    assert storage.outbox_messages(app.id) == []
    found = storage.get_application(app.id)
    assert found is not None and found.status is Status.RECEIVED


def test_a_transition_of_an_unknown_application_raises_key_error(storage: Storage) -> None:
    with pytest.raises(KeyError):
        storage.apply_transition("no-such-id", Transition(step=step(Step.REGISTERED), expected_last_step=None,
                                                          recorded_at=T0))


def test_of_two_racing_transitions_from_the_same_step_exactly_one_wins(storage: Storage) -> None:
    app = storage.store_application(new_application(1), receipt_for)
    results: list[object] = []
    barrier = threading.Barrier(5)

    def advance() -> None:
        barrier.wait()
        try:
            results.append(storage.apply_transition(
                app.id, Transition(recorded_at=T0, step=step(Step.REGISTERED), expected_last_step=None)))
        except TransitionConflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=advance) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not isinstance(r, TransitionConflict) for r in results) == 1
    assert len(storage.timeline(app.id)) == 1


def test_a_transition_adds_its_outbox_messages_and_log_entries_atomically(storage: Storage) -> None:
    app = storage.store_application(new_application(1), receipt_for)
    storage.apply_transition(app.id, Transition(recorded_at=T0,
        step=step(Step.REGISTERED), expected_last_step=None,
        outbox=(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, "out-1", b"<n1/>"),
                NewOutboxMessage(app.id, OutboxKind.RESPONSE, "out-2", b"<r1/>")),
        log=(log_entry("prov-1", verdict="OK", application_id=app.id),),
    ))
    messages = storage.outbox_messages(app.id)
    assert [(m.message_id, m.kind, m.body, m.attempts) for m in messages] == [
        ("out-1", OutboxKind.NOTIFICATION, b"<n1/>", 0), ("out-2", OutboxKind.RESPONSE, b"<r1/>", 0)]
    assert messages[0].next_attempt_at <= T0
    assert [e.message_id for e in storage.message_log(application_id=app.id)] == ["prov-1"]
