"""Intake storage: what is stored reads back exactly, numbering, duplicates, refused intake."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.domain import Status
from gateway.storage import DuplicateIntake, Storage
from tests.storage.factory import PROVIDER, T0, log_entry, new_application, receipt_for


def test_stored_application_reads_back_exactly_by_every_key(storage: Storage) -> None:
    new = new_application(1)
    stored = storage.store_application(new, receipt_for)
    assert stored.registration_number.startswith("MED-2026-")
    assert stored.receipt == receipt_for(stored.registration_number)
    for found in (
        storage.get_application(stored.id),
        storage.find_by_message_id("EGOV_PORTAL", "msg-1"),
        storage.find_by_request_number("EGOV_PORTAL", "REQ-1"),
        storage.find_by_registration_number(stored.registration_number),
    ):
        assert found == stored
    assert stored.applicant == new.applicant
    assert stored.signer == new.signer
    assert stored.signer.certificate_der == new.signer.certificate_der
    assert stored.activity_subtypes == ("01.01", "02.03")
    assert [d.code for d in stored.documents] == ["DOC_0", "DOC_1"]
    assert stored.status is Status.RECEIVED and stored.last_step is None and stored.decision is None


def test_unknown_keys_find_nothing(storage: Storage) -> None:
    storage.store_application(new_application(1), receipt_for)
    assert storage.get_application("no-such-id") is None
    assert storage.find_by_message_id("CENTER_IS", "msg-1") is None
    assert storage.find_by_request_number("EGOV_PORTAL", "REQ-2") is None
    assert storage.find_by_registration_number("MED-2026-999999") is None
    assert storage.get_document("no-such-id", 0) is None
    assert storage.get_payload("no-such-id") is None


def test_times_come_back_aware_in_utc(storage: Storage) -> None:
    almaty = timezone(timedelta(hours=5))
    stored = storage.store_application(new_application(1, received_at=T0.astimezone(almaty)), receipt_for)
    again = storage.get_application(stored.id)
    assert again is not None
    assert again.received_at == T0 and again.received_at.utcoffset() == timedelta(0)
    assert again.due_at is not None and again.due_at.tzinfo is not None


def test_naive_times_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.store_application(new_application(1, received_at=datetime(2026, 11, 27, 9, 0)), receipt_for)
    assert storage.find_by_message_id("EGOV_PORTAL", "msg-1") is None


def test_registration_numbers_come_from_one_sequence_with_the_year_of_receipt(storage: Storage) -> None:
    first = storage.store_application(new_application(1), receipt_for)
    second = storage.store_application(new_application(2, received_at=datetime(2027, 1, 2, tzinfo=UTC)),
                                       receipt_for)
    assert first.registration_number == "MED-2026-000001"
    assert second.registration_number == "MED-2027-000002"


def test_document_contents_and_payload_are_kept_byte_for_byte(storage: Storage) -> None:
    new = new_application(7)
    stored = storage.store_application(new, receipt_for)
    for i, doc in enumerate(new.documents):
        found = storage.get_document(stored.id, i)
        assert found is not None
        meta, content = found
        assert content == doc.content
        assert (meta.index, meta.code, meta.file_name, meta.sha256, meta.size) == (
            i, doc.code, doc.file_name, doc.sha256, len(doc.content))
    assert storage.get_document(stored.id, 2) is None
    assert storage.get_payload(stored.id) == new.payload


def test_repeated_message_id_is_a_duplicate_and_writes_nothing(storage: Storage) -> None:
    first = storage.store_application(new_application(1), receipt_for)
    with pytest.raises(DuplicateIntake) as caught:
        storage.store_application(new_application(2, message_id="msg-1"), receipt_for)
    assert caught.value.field_name == "message_id"
    assert caught.value.existing == first
    assert storage.find_by_request_number("EGOV_PORTAL", "REQ-2") is None
    assert storage.queue_depth(PROVIDER) == 1
    assert storage.store_application(new_application(3), receipt_for).registration_number != first.registration_number


def test_repeated_request_number_is_a_duplicate(storage: Storage) -> None:
    first = storage.store_application(new_application(1), receipt_for)
    with pytest.raises(DuplicateIntake) as caught:
        storage.store_application(new_application(2, request_number="REQ-1"), receipt_for)
    assert caught.value.field_name == "request_number"
    assert caught.value.existing.id == first.id


def test_same_numbers_from_another_sender_are_not_duplicates(storage: Storage) -> None:
    storage.store_application(new_application(1), receipt_for)
    other = storage.store_application(new_application(1, sender_id="CENTER_IS"), receipt_for)
    assert other.sender_id == "CENTER_IS"
    assert storage.queue_depth() == 2


def test_racing_duplicates_store_once_and_the_rest_get_duplicate_intake(storage: Storage) -> None:
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def submit(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(storage.store_application(new_application(100 + i, message_id="same"), receipt_for))
        except DuplicateIntake as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [o for o in outcomes if not isinstance(o, DuplicateIntake)]
    duplicates = [o for o in outcomes if isinstance(o, DuplicateIntake)]
    assert len(stored) == 1 and len(duplicates) == 5
    assert all(d.existing.id == stored[0].id for d in duplicates)  # type: ignore[union-attr]
    assert storage.queue_depth() == 1


def test_refused_intake_is_recorded_but_not_queued(storage: Storage) -> None:
    refused = storage.store_application(new_application(1, status=Status.INTAKE_REFUSED), receipt_for)
    assert storage.queue_depth() == 0
    found = storage.get_application(refused.id)
    assert found is not None
    assert found.status is Status.INTAKE_REFUSED
    assert found.missing_documents == ("STAFF_QUALIFICATION",)
    assert storage.lease(PROVIDER, 10, 60, T0).applications == ()


def test_intake_log_entries_are_stored_with_the_new_application_id(storage: Storage) -> None:
    stored = storage.store_application(new_application(1), receipt_for, log=[log_entry("msg-1")])
    [entry] = storage.message_log(application_id=stored.id)
    assert entry.message_id == "msg-1" and entry.verdict == "SCSS001"
    assert entry.body == b"<Envelope id='msg-1'/>"


def test_list_applications_pages_by_id_and_skips_final_ones_when_asked(storage: Storage) -> None:
    ids = [storage.store_application(new_application(i), receipt_for).id for i in range(5)]
    refused = storage.store_application(new_application(9, status=Status.INTAKE_REFUSED), receipt_for).id
    storage.store_application(new_application(10, provider_bin="940140000385"), receipt_for)
    assert [a.id for a in storage.list_applications(PROVIDER)] == sorted(ids)
    everything = [a.id for a in storage.list_applications(PROVIDER, open_only=False)]
    assert everything == sorted([*ids, refused])
    page1 = storage.list_applications(PROVIDER, open_only=False, limit=4)
    page2 = storage.list_applications(PROVIDER, open_only=False, after_id=page1[-1].id, limit=4)
    assert [a.id for a in page1 + page2] == everything
    assert page1[0].documents  # records in a list carry their documents too


def test_a_batch_is_stored_whole_with_consecutive_numbers_and_its_duplicates_told_apart(storage: Storage) -> None:
    earlier = storage.store_application(new_application(1), receipt_for)
    other = storage.store_application(new_application(8), receipt_for)
    batch = [
        new_application(2),
        new_application(3, status=Status.INTAKE_REFUSED),
        new_application(4, message_id="msg-1"),  # stored before the batch
        new_application(5, message_id="msg-2"),  # the batch's own first item has it
        new_application(6, request_number="REQ-3"),  # so has the second
        new_application(7),
        new_application(9, request_number="REQ-8"),  # a stored one's requestNumber
        new_application(10, message_id="msg-8", request_number="REQ-1"),  # two stored ones: messageId wins
    ]
    outcomes = storage.store_applications([(app, receipt_for, [log_entry(app.message_id)]) for app in batch])

    stored = [o for o in outcomes if not isinstance(o, Exception)]
    assert [o.message_id for o in stored] == ["msg-2", "msg-3", "msg-7"]
    numbers = [int(o.registration_number.rsplit("-", 1)[1]) for o in stored]
    assert numbers == list(range(numbers[0], numbers[0] + 3)) and numbers[0] > int(earlier.registration_number[-6:])
    for record in stored:
        assert storage.get_application(record.id) == record
        assert storage.get_payload(record.id) == batch[int(record.message_id[4:]) - 2].payload
        assert [e.application_id for e in storage.message_log(message_id=record.message_id)] == [record.id]
    assert storage.queue_depth() == 4  # earlier, other, msg-2 and msg-7; the refused one is not queued

    duplicates = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(d, DuplicateIntake) for d in duplicates)
    assert [(d.existing.id, d.field_name) for d in duplicates] == [
        (earlier.id, "message_id"), (stored[0].id, "message_id"), (stored[1].id, "request_number"),
        (other.id, "request_number"), (other.id, "message_id")]
    assert duplicates[0].existing == storage.get_application(earlier.id)  # the whole record, documents too
    assert storage.find_by_message_id("EGOV_PORTAL", "msg-4") is None
    assert storage.find_by_message_id("EGOV_PORTAL", "msg-6") is None
