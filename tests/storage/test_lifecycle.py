"""Migrations, health, durability settings and the message log."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.storage import MessageLogEntry, Storage, StorageUnavailable, open_storage
from tests.storage.factory import T0, log_entry, new_application, receipt_for


def test_migrate_creates_an_empty_database_and_running_it_again_changes_nothing(storage_url: str) -> None:
    first = open_storage(storage_url)
    try:
        first.migrate()
        stored = first.store_application(new_application(1), receipt_for)
        first.migrate()
    finally:
        first.close()
    second = open_storage(storage_url)
    try:
        second.migrate()
        assert second.get_application(stored.id) == stored
        assert second.queue_depth() == 1
    finally:
        second.close()


def test_ping_answers_when_the_database_is_there(storage: Storage) -> None:
    storage.ping()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_ping_raises_storage_unavailable_when_the_database_cannot_be_reached(kind: str, tmp_path: Path) -> None:
    url = (f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}" if kind == "sqlite"
           else "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    s = open_storage(url)
    try:
        with pytest.raises(StorageUnavailable):
            s.ping()
    finally:
        s.close()


def test_sqlite_runs_wal_with_synchronous_full(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    s = open_storage(f"sqlite:///{path}")
    s.migrate()
    try:
        conn = s._writer  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: the WAL is fsynced per commit
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_acknowledged_write_is_there_for_a_fresh_connection(storage_url: str) -> None:
    writer = open_storage(storage_url)
    writer.migrate()
    reader = open_storage(storage_url)
    try:
        stored = writer.store_application(new_application(1), receipt_for)
        assert reader.get_application(stored.id) == stored
    finally:
        writer.close()
        reader.close()


def test_message_log_keeps_raw_bytes_hash_and_verdict_and_filters(storage: Storage) -> None:
    body = b"\xef\xbb\xbf<Envelope>\x00 raw</Envelope>"
    entry = MessageLogEntry(direction="in", endpoint="shep/sync", message_id="m-1", sender_id="CENTER_IS",
                            verdict="SIGNATURE_INVALID", body=body, sha256=hashlib.sha256(body).hexdigest(), at=T0,
                            correlation_id="c-1", application_id=None)
    storage.log_messages([entry, log_entry("m-2", application_id="app-2", at=T0 + timedelta(seconds=1))])
    storage.log_messages([log_entry("m-1", verdict="SCSS001", application_id="app-1",
                                    at=T0 + timedelta(seconds=2))])
    first = storage.message_log(message_id="m-1")[0]
    assert first.id is not None and dataclasses.replace(first, id=None) == entry  # stored, numbered
    assert [e.verdict for e in storage.message_log(message_id="m-1")] == ["SIGNATURE_INVALID", "SCSS001"]
    assert [e.message_id for e in storage.message_log(application_id="app-2")] == ["m-2"]
    assert [e.verdict for e in storage.message_log(message_id="m-1", application_id="app-1")] == ["SCSS001"]
    assert [e.message_id for e in storage.message_log(limit=2)] == ["m-2", "m-1"]
    assert storage.message_log(message_id="nothing") == []


def test_two_storages_migrating_one_empty_database_at_once_both_succeed(storage_url: str) -> None:
    storages = [open_storage(storage_url) for _ in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(storages))

    def migrate(s: Storage) -> None:
        barrier.wait()
        try:
            s.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in storages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert storages[0].store_application(new_application(1), receipt_for).registration_number == "MED-2026-000001"
    finally:
        for s in storages:
            s.close()


def test_sqlite_migration_2_moves_the_logged_body_last_and_keeps_every_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.storage.sqlite as sqlite_storage

    url = f"sqlite:///{tmp_path / 'v1.db'}"
    every = sqlite_storage.migrations("sqlite")
    # A database as version 1 left it, with a small and a large (blob I/O) entry in its message log.
    monkeypatch.setattr(sqlite_storage, "migrations", lambda dialect: [m for m in every if m.version == 1])
    big = b"<Envelope>" + b"x" * (600 * 1024) + b"</Envelope>"
    entries = [log_entry("small-1"), dataclasses.replace(log_entry("large-1"), body=big,
                                                          sha256=hashlib.sha256(big).hexdigest())]
    old = open_storage(url)
    old.migrate()
    old.log_messages(entries)
    old.close()
    monkeypatch.undo()

    migrated = open_storage(url)
    try:
        migrated.migrate()
        assert [dataclasses.replace(e, id=None) for m in ("small-1", "large-1")
                for e in migrated.message_log(message_id=m)] == entries
        later = dataclasses.replace(log_entry("large-2"), body=big[::-1], sha256=hashlib.sha256(big[::-1]).hexdigest())
        migrated.log_messages([later])
        assert [dataclasses.replace(e, id=None) for e in migrated.message_log(message_id="large-2")] == [later]
        conn = sqlite3.connect(tmp_path / "v1.db")
        columns = [row[1] for row in conn.execute("PRAGMA table_info(message_log)")]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(message_log)")}
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        conn.close()
        assert columns[-1] == "body" and len(columns) == 11
        # migration 6 (the audit) adds the searches' indexes
        assert indexes == {"message_log_by_message", "message_log_by_application", "message_log_by_sender",
                           "message_log_by_time"}
        assert versions == [m.version for m in every]  # 2 and every later one
    finally:
        migrated.close()


def test_postgres_stores_messages_and_documents_compressed_with_lz4_where_the_server_has_it(pg_url: str) -> None:
    import psycopg

    s = open_storage(pg_url)
    try:
        s.migrate()
        big = b"<Envelope>" + b"<a>repetitive</a>" * 2000 + b"</Envelope>"
        s.log_messages([dataclasses.replace(log_entry("lz4-1"), body=big, sha256=hashlib.sha256(big).hexdigest())])
        assert s.message_log(message_id="lz4-1")[0].body == big
    finally:
        s.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            conn.execute("SET default_toast_compression = 'lz4'")
            expected = "l"
        except psycopg.Error:
            expected = ""  # no lz4 on this server: the migration left the default
        columns = conn.execute(
            "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute "
            "WHERE attname IN ('body', 'content', 'receipt', 'result') AND attnum > 0 "
            "AND attrelid::regclass::text IN ('applications', 'payloads', 'documents', 'outbox', 'message_log')"
        ).fetchall()
        stored = conn.execute("SELECT pg_column_compression(body) FROM message_log").fetchone()[0]
    assert sorted((t, c) for t, c, _ in columns) == [
        ("applications", "receipt"), ("applications", "result"), ("documents", "content"), ("message_log", "body"),
        ("outbox", "body"), ("payloads", "body")]
    assert {m for _, _, m in columns} == {expected}
    assert stored == ("lz4" if expected else "pglz")
