"""Large payloads, documents and message-log bodies (written by SQLite through incremental blob I/O and by
PostgreSQL through COPY, rather than bound parameters) come back byte for byte, next to small ones stored
the ordinary way, and so do the other columns of their rows."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from core.domain import Document
from gateway.storage import Storage
from tests.storage.factory import log_entry, new_application, receipt_for


def test_large_and_small_blobs_read_back_byte_for_byte(storage: Storage) -> None:
    big_doc = os.urandom(3 * 1024 * 1024 + 7)
    small_doc = b"%PDF-small"
    payload = b"<Application>" + os.urandom(600 * 1024).hex().encode() + b"</Application>"
    app = new_application(1)
    app = replace(app, payload=payload, documents=(
        Document(code="A", file_name="a.pdf", mime_type="application/pdf",
                 sha256=hashlib.sha256(small_doc).hexdigest(), content=small_doc),
        # COPY's text format has escapes of its own: a tab, a newline, a backslash, \N and \x in a value.
        Document(code="B", file_name="б\tc:\\N\\x\n\r.pdf", mime_type="application/pdf",
                 sha256=hashlib.sha256(big_doc).hexdigest(), content=big_doc),
    ))
    envelope = b"<Envelope>" + os.urandom(1536 * 1024) + b"</Envelope>"
    entry = replace(log_entry("msg-1"), body=envelope, sha256=hashlib.sha256(envelope).hexdigest())
    stored = storage.store_application(app, receipt_for, log=[entry])

    assert storage.get_payload(stored.id) == payload
    small = storage.get_document(stored.id, 0)
    big = storage.get_document(stored.id, 1)
    assert small is not None and small[1] == small_doc and small[0].size == len(small_doc)
    assert big is not None and big[1] == big_doc and big[0] == stored.documents[1]
    assert big[0].file_name == "б\tc:\\N\\x\n\r.pdf" and big[0].size == len(big_doc) and big[0].code == "B"
    [logged] = storage.message_log(application_id=stored.id)
    assert replace(logged, id=None) == replace(entry, application_id=stored.id)


def test_large_log_bodies_keep_the_order_they_were_logged_in(storage: Storage) -> None:
    body = os.urandom(1024 * 1024 + 1)
    entries = [log_entry("m-1"), replace(log_entry("m-2"), body=body, sha256=hashlib.sha256(body).hexdigest()),
               log_entry("m-3"), log_entry("m-4")]
    storage.log_messages(entries)
    logged = storage.message_log()
    assert [e.message_id for e in logged] == ["m-1", "m-2", "m-3", "m-4"]
    assert [e.body for e in logged] == [e.body for e in entries]


def test_a_large_entry_keeps_its_time_whatever_its_offset(storage: Storage) -> None:
    body = os.urandom(1024 * 1024 + 1)
    # An offset with seconds and microseconds: PostgreSQL reads no such text form, so COPY sends UTC.
    at = datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, seconds=1, microseconds=5)))
    entry = replace(log_entry("m-odd"), body=body, sha256=hashlib.sha256(body).hexdigest(), at=at)
    storage.log_messages([entry])
    [logged] = storage.message_log()
    assert replace(logged, id=None) == entry and logged.at == at
