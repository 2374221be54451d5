"""What the operators' console and ops API need from storage: searches of applications, queue and outbox
figures, dead letters retried with their log records, console sessions and login lockouts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from core.domain import Applicant, ApplicantKind, Channel, Status, Step
from gateway.storage import (
    ApplicationQuery,
    MessageQuery,
    NewOutboxMessage,
    OutboxKind,
    OutboxState,
    Storage,
    Transition,
)
from tests.storage.factory import OTHER_PROVIDER, PROVIDER, T0, log_entry, new_application, receipt_for, step

ENTITY = Applicant(kind=ApplicantKind.LEGAL_ENTITY, name="ТОО «Шипагер»", bin="940140000385")


def _store(storage: Storage, n: int, **changes: object):  # noqa: ANN202
    app = replace(new_application(n, received_at=T0 + timedelta(minutes=n)), **changes)
    return storage.store_application(app, receipt_for)


def test_applications_are_found_by_each_key_newest_first(storage: Storage) -> None:
    a1 = _store(storage, 1)
    a2 = _store(storage, 2)
    b = _store(storage, 3, applicant=ENTITY, channel=Channel.CENTER, request_number="C-77")
    now = T0 + timedelta(hours=1)
    assert [x.id for x in storage.search_applications(ApplicationQuery(iin="871008401427"), now)] == [a2.id, a1.id]
    assert [x.id for x in storage.search_applications(ApplicationQuery(bin="940140000385"), now)] == [b.id]
    assert [x.id for x in storage.search_applications(ApplicationQuery(request_number="C-77"), now)] == [b.id]
    found = storage.search_applications(ApplicationQuery(registration_number=a1.registration_number), now)
    assert [x.id for x in found] == [a1.id]
    assert storage.search_applications(ApplicationQuery(registration_number="MED-1999-000001"), now) == []
    assert [x.id for x in storage.search_applications(ApplicationQuery(), now)] == [b.id, a2.id, a1.id]
    assert [x.id for x in storage.search_applications(ApplicationQuery(limit=1), now)] == [b.id]


def test_status_channel_and_overdue_narrow_a_search(storage: Storage) -> None:
    late = _store(storage, 1, due_at=T0 + timedelta(days=1))
    in_time = _store(storage, 2, due_at=T0 + timedelta(days=30))
    done = _store(storage, 3, due_at=T0 + timedelta(days=1))
    storage.apply_transition(done.id, Transition(step=step(Step.SIGNED), expected_last_step=None, recorded_at=T0,
                                                 new_status=Status.GRANTED))
    refused = _store(storage, 4, status=Status.INTAKE_REFUSED, due_at=None)
    now = T0 + timedelta(days=2)
    assert [x.id for x in storage.search_applications(ApplicationQuery(overdue=True), now)] == [late.id]
    by_iin = storage.search_applications(ApplicationQuery(iin="871008401427", overdue=True), now)
    assert [x.id for x in by_iin] == [late.id]
    got = storage.search_applications(ApplicationQuery(status=Status.INTAKE_REFUSED), now)
    assert [x.id for x in got] == [refused.id]
    got = storage.search_applications(ApplicationQuery(iin="871008401427", status=Status.GRANTED), now)
    assert [x.id for x in got] == [done.id]
    assert storage.search_applications(ApplicationQuery(channel=Channel.CENTER), now) == []
    key = ApplicationQuery(registration_number=in_time.registration_number, overdue=True)
    assert storage.search_applications(key, now) == []


def test_queue_figures_per_provider(storage: Storage) -> None:
    _store(storage, 1)
    _store(storage, 2)
    _store(storage, 3, provider_bin=OTHER_PROVIDER)
    _store(storage, 4, status=Status.INTAKE_REFUSED)  # never queued
    stats = {s.provider_bin: s for s in storage.queue_stats()}
    assert (stats[PROVIDER].depth, stats[PROVIDER].oldest_received_at) == (2, T0 + timedelta(minutes=1))
    assert (stats[OTHER_PROVIDER].depth, stats[OTHER_PROVIDER].oldest_received_at) == (1, T0 + timedelta(minutes=3))


def _with_outbox(storage: Storage, n: int) -> str:
    app = _store(storage, n)
    storage.apply_transition(app.id, Transition(
        step=step(Step.REGISTERED), expected_last_step=None, recorded_at=T0 + timedelta(minutes=n),
        outbox=(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, f"out-{n}", b"<n/>"),)))
    return app.id


def test_outbox_figures_and_dead_letters_retried_with_their_log(storage: Storage) -> None:
    first, second = _with_outbox(storage, 1), _with_outbox(storage, 2)
    stats = storage.outbox_stats()
    assert (stats.pending, stats.oldest_pending_at, stats.dead) == (2, T0 + timedelta(minutes=1), 0)
    for app_id in (first, second):
        [message] = storage.outbox_messages(app_id)
        storage.mark_outbox_failed(message.id, "HTTP 503", T0, dead=True)
    stats = storage.outbox_stats()
    assert (stats.pending, stats.oldest_pending_at, stats.dead_by_kind) == (0, None, {"NOTIFICATION": 2})
    [one, two] = [m.id for m in storage.dead_letters()]
    assert storage.retry_dead_letter(one, T0, log=[log_entry("retry-1", verdict="RETRY", application_id=first)])
    assert not storage.retry_dead_letter(one, T0, log=[log_entry("retry-again", verdict="RETRY")])
    assert [e.message_id for e in storage.message_log(message_id="retry-again")] == []
    assert [e.verdict for e in storage.message_log(message_id="retry-1")] == ["RETRY"]
    message = storage.outbox_message(one)
    assert message is not None and (message.state, message.attempts) == (OutboxState.PENDING, 0)
    assert storage.retry_all_dead_letters(T0, log=[log_entry("retry-all", verdict="RETRY ALL")]) == [two]
    assert storage.outbox_stats().dead == 0 and storage.outbox_message(10**9) is None


def test_a_session_lives_until_it_expires_or_is_deleted(storage: Storage) -> None:
    storage.create_session("h1", "aigerim", T0, T0 + timedelta(hours=8))
    assert storage.session_operator("h1", T0 + timedelta(hours=1)) == "aigerim"
    assert storage.session_operator("h1", T0 + timedelta(hours=8)) is None
    assert storage.session_operator("unknown", T0) is None
    storage.create_session("h2", "daniyar", T0, T0 + timedelta(hours=8))
    storage.delete_session("h2")
    assert storage.session_operator("h2", T0) is None


def test_repeated_failed_logins_lock_an_operator_out_for_a_while(storage: Storage) -> None:
    assert [storage.login_failed("aigerim", T0, 3, 600) for _ in range(2)] == [None, None]
    storage.login_succeeded("aigerim")  # a success starts the count again
    assert [storage.login_failed("aigerim", T0, 3, 600) for _ in range(2)] == [None, None]
    until = storage.login_failed("aigerim", T0, 3, 600)
    assert until == T0 + timedelta(seconds=600)
    assert storage.login_locked_until("aigerim", T0 + timedelta(seconds=599)) == until
    assert storage.login_locked_until("aigerim", T0 + timedelta(seconds=601)) is None
    assert storage.login_locked_until("daniyar", T0) is None


def test_the_message_log_is_searched_by_each_filter_newest_first_without_bodies(storage: Storage) -> None:
    app = _store(storage, 1)
    entries = [replace(log_entry(f"m-{i}", verdict="SCSS001" if i % 2 else "SIGNATURE_INVALID",
                                 at=T0 + timedelta(minutes=i), application_id=app.id if i < 3 else None),
                       sender_id="CENTER" if i == 4 else "EGOV_PORTAL") for i in range(6)]
    storage.log_messages(entries)

    def ids(**filters: object) -> list[str | None]:
        return [m.message_id for m in storage.search_messages(MessageQuery(**filters))]  # type: ignore[arg-type]

    assert ids() == ["m-5", "m-4", "m-3", "m-2", "m-1", "m-0"]
    assert ids(message_id="m-3") == ["m-3"]
    assert ids(message_id="m-3", verdict="SCSS001") == ["m-3"]
    assert ids(message_id="m-3", verdict="SIGNATURE_INVALID") == []
    assert ids(sender_id="CENTER") == ["m-4"]
    assert ids(verdict="SIGNATURE_INVALID") == ["m-4", "m-2", "m-0"]
    assert ids(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == ["m-3", "m-2"]
    assert ids(application_id=app.id, verdict="SCSS001") == ["m-1"]
    first = storage.search_messages(MessageQuery(limit=2))
    assert [m.message_id for m in first] == ["m-5", "m-4"]
    assert ids(before_id=first[-1].id, limit=2) == ["m-3", "m-2"]
    found = first[0]
    assert found.size == len(entries[5].body) and found.sha256 == entries[5].sha256 and found.at == entries[5].at
    whole = storage.message_entry(found.id)
    assert whole is not None and whole.body == entries[5].body and whole.id == found.id
    assert storage.message_entry(found.id + 1000) is None
