"""The message log proves itself (docs/audit.md): no secret is stored, the records form one hash chain with
signed checkpoints, `licgate audit verify` finds each kind of damage at the right record, an evidence bundle
verifies offline, and a purge leaves a chain that still verifies."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import struct
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.app import create_app
from gateway.cli import main
from gateway.config import parse_config
from gateway.storage import open_storage
from signing.pki import Pki
from tests.intake.conftest import config_table, write_config_file
from tests.intake.helpers import PASSWORDS, application_xml, envelope, post, sign
from tests.support.server import serve
from tests.support.stored import all_pg_bytes, stored_bytes

WRONG_PASSWORD = "wrong-password-7731"
PROVIDER_TOKEN = "provider-token-0123456789"


def _table(pki: Pki, url: str, tmp_path: Path, **audit: Any) -> dict[str, Any]:
    table = config_table(pki, url, intake_processes=0)
    table["audit"] = {"checkpoint_records": 4, "checkpoint_seconds": 3600,
                      "checkpoint_file": str(tmp_path / "audit" / "checkpoints"), **audit}
    return table


def _exchanges(pki: Pki, url: str) -> dict[str, str]:
    """What one portal sends in a day: accepted, incomplete, refused ones; registration numbers by kind."""
    numbers: dict[str, str] = {}
    for i in range(3):
        reply = post(url, envelope(sign(application_xml(), pki)))
        assert reply.status_code == "SCSS001"
        numbers[f"accepted-{i}"] = reply.data.findtext(".//{*}registrationNumber") or ""
    incomplete = post(url, envelope(sign(application_xml(documents=[]), pki)))
    assert incomplete.status_code == "INTAKE_REFUSED"
    numbers["incomplete"] = incomplete.data.findtext(".//{*}registrationNumber") or ""
    assert post(url, envelope(sign(application_xml(), pki), password=WRONG_PASSWORD)).fault_code == "SENDER_AUTH_FAILED"
    assert post(url, envelope(sign(application_xml(iin="871008401428"), pki))).fault_code == "IIN_INVALID"
    # Cut short: not well-formed, and the sender's password is in what did arrive.
    assert post(url, envelope(sign(application_xml(), pki))[:-40]).fault_code == "MALFORMED_MESSAGE"
    return numbers


def _run(pki: Pki, url: str, tmp_path: Path, **audit: Any) -> tuple[Path, dict[str, str]]:
    table = _table(pki, url, tmp_path, **audit)
    config_file = write_config_file(tmp_path / "licgate.toml", table)
    with serve(create_app(parse_config(table, base_dir=tmp_path))) as server:
        numbers = _exchanges(pki, server.url)
    return config_file, numbers


def _licgate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out.splitlines()


def _secrets() -> list[bytes]:
    return [PASSWORDS["EGOV_PORTAL"].encode(), WRONG_PASSWORD.encode(), PROVIDER_TOKEN.encode()]


# --- secrets -----------------------------------------------------------------------------------------------


def test_no_stored_row_contains_a_senders_password_or_a_bearer_token(
        pki: Pki, storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file, _ = _run(pki, storage_url, tmp_path)
    stored = stored_bytes(storage_url)  # a SQLite file with its -wal, or every value of the PostgreSQL schema
    assert b"<password>***</password>" in stored  # the records are there, masked
    for secret in _secrets():
        assert secret not in stored, secret
    assert _licgate(capsys, "audit", "verify", "--config", str(config_file))[0] == 0


def test_the_gateways_own_seal_keys_live_in_memory_only_and_what_each_start_signed_still_verifies(
        pki: Pki, storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    from cryptography.hazmat.primitives import serialization

    table = _table(pki, storage_url, tmp_path, checkpoint_records=2)
    config_file = write_config_file(tmp_path / "licgate.toml", table)
    keys, key_ids = [], []
    for _ in range(2):  # a restart: a new key, its checkpoints signed with it
        app = create_app(parse_config(table, base_dir=tmp_path))
        with serve(app) as server:
            _exchanges(pki, server.url)
        seal = app.state.services.auditor.seal
        key_ids.append(seal.key_id)
        key = seal._key  # noqa: SLF001 - what must never reach storage or a log
        keys += [key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()),
                 key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())]
    stored = stored_bytes(storage_url)  # a SQLite file with its -wal, or every value of the PostgreSQL schema
    for secret in keys + [k[-40:] for k in keys[::2]]:  # the key, in either form, nor its last bytes
        assert secret not in stored
    assert all(secret.decode(errors="replace") not in caplog.text for secret in keys[1::2])
    assert len(set(key_ids)) == 2 and all(f"'key_id': '{k}'" in repr([r.__dict__ for r in caplog.records])
                                          for k in key_ids)
    notes = (tmp_path / "audit" / "checkpoints").read_text()
    assert all(f"licgate-seal {k} " in notes for k in key_ids)  # both keys signed checkpoints
    code, lines = _licgate(capsys, "audit", "verify", "--config", str(config_file))
    assert code == 0 and lines[0].startswith("audit: intact, "), lines


def test_the_audit_migration_masks_the_passwords_of_rows_stored_before_it(
        storage_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.storage.postgres as postgres_storage
    import gateway.storage.sqlite as sqlite_storage
    from adapters.shep_async import PASSWORD_PLACEHOLDER, StatusMessage, render_send_message, with_sender_password
    from core.domain import Channel, Status
    from gateway.storage import MessageLogEntry
    from tests.workflow.helpers import store

    module, before = (sqlite_storage, 5) if storage_url.startswith("sqlite") else (postgres_storage, 6)
    every = module.migrations("sqlite" if module is sqlite_storage else "postgres")
    monkeypatch.setattr(module, "migrations", lambda dialect: [m for m in every if m.version <= before])
    old = open_storage(storage_url)
    old.migrate()
    secret = b"pre-audit-secret-551"
    bodies = [b"<a><sender><senderId>EGOV_PORTAL</senderId><password>" + secret + b"</password></sender>"
              + b"x" * (i * 300_000) + b"</a>" for i in range(2)] + [b"<a>no secret</a>"]
    old.log_messages([MessageLogEntry("in", "shep/sync", f"m{i}", "EGOV_PORTAL", "SCSS001", body,
                                      hashlib.sha256(body).hexdigest(), datetime.now(UTC))
                      for i, body in enumerate(bodies)])
    # A queued notification as the gateway stored it before: its own SHEP password in the envelope.
    app = store(old)
    queued = render_send_message(StatusMessage(
        message_id="out-1", correlation_id=app.message_id, service_id="MED_LICENSE", message_type="NOTIFICATION",
        route_id="EGOV_PORTAL", message_date=datetime.now(UTC), sender_id="LICGATE", channel=Channel.PORTAL,
        request_number=app.request_number, registration_number=app.registration_number,
        status=Status.REGISTERED, changed_at=datetime.now(UTC), password=secret.decode() + "-out"), UTC)
    old.close()
    if storage_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(tmp_path / "licgate.db")) as conn, conn:
            conn.execute("INSERT INTO outbox (application_id, kind, message_id, body, next_attempt_at, created_at) "
                         "VALUES (?, 'NOTIFICATION', 'out-1', ?, 0, 0)", (app.id, queued))
    else:
        with psycopg.connect(storage_url) as conn:
            conn.execute("INSERT INTO outbox (application_id, kind, message_id, body, next_attempt_at, created_at) "
                         "VALUES (%s, 'NOTIFICATION', 'out-1', %s, now(), now())", (app.id, queued))
    assert secret in stored_bytes(storage_url)
    monkeypatch.undo()

    migrated = open_storage(storage_url)
    try:
        migrated.migrate()
        logged = migrated.message_log(limit=10)
        assert [e.body.count(b"<password>***</password>") for e in logged] == [1, 1, 0]
        assert all(hashlib.sha256(e.body).hexdigest() == e.sha256 for e in logged)
        migrated.sequence_log()
        assert migrated.chain_head().seq == 3  # the records stored before are the chain's first
        (outbox,) = migrated.outbox_messages(app.id)  # the password left out, filled in when it is sent
        assert outbox.body == with_sender_password(queued, PASSWORD_PLACEHOLDER) != queued
    finally:
        migrated.close()
    assert secret not in stored_bytes(storage_url)


# --- the chain and verify ---------------------------------------------------------------------------------


@pytest.fixture
def pristine(pki: Pki, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    base = tmp_path / "pristine"
    base.mkdir()
    return _run(pki, f"sqlite:///{base / 'licgate.db'}", base)


def _copy(pristine: tuple[Path, dict[str, str]], tmp_path: Path, name: str) -> tuple[Path, sqlite3.Connection]:
    """A copy of the pristine database with its own config (the same checkpoint_file)."""
    config_file, _ = pristine
    db = tmp_path / f"{name}.db"
    shutil.copy(config_file.parent / "licgate.db", db)
    text = config_file.read_text().replace(str(config_file.parent / "licgate.db"), str(db))
    copy = tmp_path / f"{name}.toml"
    copy.write_text(text)
    return copy, sqlite3.connect(db, isolation_level=None)


def _log_id(conn: sqlite3.Connection, seq: int) -> int:
    return conn.execute("SELECT log_id FROM log_chain WHERE seq = ?", (seq,)).fetchone()[0]


def test_verify_passes_on_an_untouched_log_and_counts_records_and_checkpoints(
        pristine: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    config_file, _ = pristine
    conn = sqlite3.connect(config_file.parent / "licgate.db")
    logged = conn.execute("SELECT count(*) FROM message_log").fetchone()[0]
    seqs = [r[0] for r in conn.execute("SELECT seq FROM log_chain ORDER BY seq")]
    checkpoints = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
    conn.close()
    assert seqs == list(range(1, logged + 1)) and logged >= 14  # every exchange: in and out
    assert checkpoints >= 1
    code, lines = _licgate(capsys, "audit", "verify", "--config", str(config_file))
    assert (code, lines) == (0, [f"audit: intact, {logged} records, {checkpoints} checkpoints"])
    notes = (config_file.parent / "audit" / "checkpoints").read_text()
    assert notes.count("licgate audit log ") == checkpoints and "\n\u2014 licgate-seal " in notes


def _damaged(capsys: pytest.CaptureFixture[str], config: Path) -> list[str]:
    code, lines = _licgate(capsys, "audit", "verify", "--config", str(config))
    assert code == 1 and lines and all(line.startswith("audit: damaged") for line in lines), lines
    return lines


def test_a_changed_byte_in_one_stored_envelope_is_found_at_its_record(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "byte")
    body = bytearray(conn.execute("SELECT body FROM message_log WHERE id = ?", (_log_id(conn, 3),)).fetchone()[0])
    body[len(body) // 2] ^= 0x01
    conn.execute("UPDATE message_log SET body = ? WHERE id = ?", (bytes(body), _log_id(conn, 3)))
    assert _damaged(capsys, config) == ["audit: damaged: record 3: altered (its body does not match its hash)"]


def test_a_changed_verdict_is_found_at_its_record(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "verdict")
    seq, log_id = conn.execute("SELECT c.seq, m.id FROM log_chain c JOIN message_log m ON m.id = c.log_id "
                               "WHERE m.verdict = 'SENDER_AUTH_FAILED' ORDER BY c.seq LIMIT 1").fetchone()
    conn.execute("UPDATE message_log SET verdict = 'SCSS001' WHERE id = ?", (log_id,))
    assert _damaged(capsys, config) == [
        f"audit: damaged: record {seq}: altered (its metadata or chain hash do not match)"]


def test_a_deleted_record_is_found_missing(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "deleted")
    conn.execute("DELETE FROM message_log WHERE id = ?", (_log_id(conn, 5),))
    assert _damaged(capsys, config) == ["audit: damaged: record 5: missing"]
    # ... and also when its place in the chain is deleted with it
    conn.execute("DELETE FROM log_chain WHERE seq = 5")
    assert _damaged(capsys, config) == ["audit: damaged: record 5: missing"]


def test_two_swapped_records_are_found_out_of_order(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "swapped")
    a, b = _log_id(conn, 6), _log_id(conn, 7)
    conn.execute("UPDATE log_chain SET log_id = -1 WHERE seq = 6")
    conn.execute("UPDATE log_chain SET log_id = ? WHERE seq = 7", (a,))
    conn.execute("UPDATE log_chain SET log_id = ? WHERE seq = 6", (b,))
    assert _damaged(capsys, config) == ["audit: damaged: record 6: out of order (its content is at record 7)"]


def test_the_last_records_deleted_after_a_checkpoint_covered_them_are_found_by_checkpoint_file(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "tail")
    size = conn.execute("SELECT max(size) FROM audit_checkpoints").fetchone()[0]
    keep = size - 2
    # Whoever deletes the tail cleans up after themselves: the records, their places, the head and the
    # database's checkpoints. The checkpoint_file (kept elsewhere) still has them.
    conn.execute("DELETE FROM message_log WHERE id IN (SELECT log_id FROM log_chain WHERE seq > ?)", (keep,))
    conn.execute("DELETE FROM log_chain WHERE seq > ?", (keep,))
    head = conn.execute("SELECT chain_hash FROM log_chain WHERE seq = ?", (keep,)).fetchone()[0]
    conn.execute("UPDATE audit_head SET seq = ?, chain_hash = ?", (keep, head))
    conn.execute("DELETE FROM audit_checkpoints WHERE size > ?", (keep,))
    lines = _damaged(capsys, config)
    assert f"audit: damaged: records {keep + 1}-{size}: gone, though covered by a checkpoint_file" in lines


def test_a_checkpoint_whose_signature_was_changed_is_found(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "signature")
    cp_id, size, note = conn.execute("SELECT id, size, note FROM audit_checkpoints ORDER BY size LIMIT 1").fetchone()
    signature = re.search(r"licgate-seal \w+ (\S+)", note)
    assert signature is not None
    flipped = signature[1][:10] + ("A" if signature[1][10] != "A" else "B") + signature[1][11:]
    conn.execute("UPDATE audit_checkpoints SET note = ? WHERE id = ?", (note.replace(signature[1], flipped), cp_id))
    assert _damaged(capsys, config) == [f"audit: damaged: record {size}: checkpoint signature fails (checkpoint)"]


# --- evidence bundles and purge -----------------------------------------------------------------------------


def test_an_evidence_bundle_verifies_offline_and_fails_with_one_changed_byte(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file, numbers = pristine
    out = tmp_path / "evidence.zip"
    code, lines = _licgate(capsys, "audit", "export", "--config", str(config_file), numbers["accepted-1"], str(out))
    assert code == 0 and lines == [f"audit: exported 2 records of {numbers['accepted-1']} to {out}"]
    (config_file.parent / "licgate.db").unlink()  # offline: no database at all
    code, lines = _licgate(capsys, "audit", "verify-bundle", str(out))
    assert (code, lines) == (0, ["audit: intact, 2 records, 1 checkpoints"])

    with zipfile.ZipFile(out) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    body_name = next(n for n in files if n.startswith("bodies/"))
    changed = bytearray(files[body_name])
    changed[100] ^= 0x20
    files[body_name] = bytes(changed)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    code, lines = _licgate(capsys, "audit", "verify-bundle", str(tampered))
    seq = int(body_name.split("/")[1].split(".")[0])
    assert (code, lines) == (1, [f"audit: damaged: record {seq}: altered (its body does not match its hash)"])
    # A changed byte inside any member's stored (compressed) data: the zip layer's errors (zlib, CRC) are
    # findings like any other, never a traceback.
    raw = out.read_bytes()
    with zipfile.ZipFile(out) as bundle:
        members = bundle.infolist()
    for info in members:
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        flipped = bytearray(raw)
        flipped[start + info.compress_size // 2] ^= 0x01
        one = tmp_path / f"flipped-{info.filename.replace('/', '_')}.zip"
        one.write_bytes(bytes(flipped))
        code, lines = _licgate(capsys, "audit", "verify-bundle", str(one))
        assert code == 1 and lines and all(line.startswith("audit: damaged") for line in lines), (info.filename, lines)


def test_a_bundle_changed_at_any_byte_is_judged_never_crashes_and_passes_only_with_its_content_unchanged(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file, numbers = pristine
    out = tmp_path / "evidence.zip"
    assert _licgate(capsys, "audit", "export", "--config", str(config_file), numbers["accepted-1"], str(out))[0] == 0
    raw = out.read_bytes()
    content = _members(out)
    damaged = 0
    for position in range(0, len(raw), max(1, len(raw) // 400)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        one = tmp_path / "flipped.zip"
        one.write_bytes(bytes(flipped))
        code, lines = _licgate(capsys, "audit", "verify-bundle", str(one))
        if code == 0:
            # Only zip bookkeeping (a local header's time, an unused field) may change without a finding: what
            # the bundle says must still read back byte for byte.
            assert _members(one) == content, position
        else:
            assert code == 1 and all(line.startswith("audit: damaged") for line in lines), (position, lines)
            damaged += 1
    assert damaged > 300  # most bytes of a bundle are its compressed content


def test_a_crafted_bundle_is_a_finding_never_a_traceback(
        pristine: tuple[Path, dict[str, str]], pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file, numbers = pristine
    out = tmp_path / "evidence.zip"
    assert _licgate(capsys, "audit", "export", "--config", str(config_file), numbers["accepted-1"], str(out))[0] == 0
    files = _members(out)
    meta = json.loads(files["bundle.json"])

    def variant(name: str, changes: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w", method) as bundle:
            for member, data in {**files, **changes}.items():
                bundle.writestr(member, data)
        return path

    first, *rest = meta["records"]
    infinite = json.dumps({**meta, "records": [{**first, "at_micros": float("inf")}, *rest]})
    crafted = {
        "an infinite time": variant("infinite", {"bundle.json": infinite.encode()}),
        "records not a list": variant("records", {"bundle.json": json.dumps({**meta, "records": 7}).encode()}),
        "a GOST seal certificate": variant("gost-seal", {"seal.pem": pki.party("gost_individual").cert_pem}),
        "not a certificate": variant("no-cert", {"seal.pem": b"-----BEGIN CERTIFICATE-----\nAAAA\n"}),
        "LZMA members": variant("lzma", {}, zipfile.ZIP_LZMA),
        "not a zip": tmp_path / "nothing.zip",
    }
    (tmp_path / "nothing.zip").write_bytes(b"PK\x03\x04 not really")
    for what, path in crafted.items():
        code, lines = _licgate(capsys, "audit", "verify-bundle", str(path))
        assert code == 1 and lines and all(line.startswith("audit: damaged") for line in lines), (what, lines)
    # A member whose central directory entry declares more than any record's body: refused before it is read.
    raw = bytearray(out.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while raw[at + 46:at + 46 + len(b"bundle.json")] != b"bundle.json":
        at = raw.find(b"PK\x01\x02", at + 4)
        assert at >= 0
    raw[at + 24:at + 28] = struct.pack("<I", 0x7FFF_FFFF)
    (tmp_path / "declared-huge.zip").write_bytes(bytes(raw))
    code, lines = _licgate(capsys, "audit", "verify-bundle", str(tmp_path / "declared-huge.zip"))
    assert code == 1 and "over" in lines[0] and lines[0].startswith("audit: damaged: bundle unreadable"), lines


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def test_after_a_purge_verify_passes_and_counts_the_purged_records(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = _copy(pristine, tmp_path, "purge")
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    code, lines = _licgate(capsys, "audit", "purge", "--config", str(config), "--before", tomorrow)
    # The incomplete application (INTAKE_REFUSED, final) has its inbound record and its answer; the accepted
    # ones are still open and keep theirs.
    assert code == 0 and lines[0].startswith("audit: purged 2 records before ")
    emptied = conn.execute("SELECT count(*) FROM message_log WHERE length(body) = 0").fetchone()[0]
    assert emptied == 2
    records = conn.execute("SELECT count(*) FROM log_chain").fetchone()[0]
    checkpoints = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
    code, lines = _licgate(capsys, "audit", "verify", "--config", str(config))
    assert (code, lines) == (0, [f"audit: intact, {records} records, {checkpoints} checkpoints, 2 purged"])


# --- several instances on one PostgreSQL -------------------------------------------------------------------


def test_two_instances_writing_at_once_make_one_intact_chain(
        pki: Pki, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _table(pki, pg_url, tmp_path, checkpoint_records=10)
    config_file = write_config_file(tmp_path / "licgate.toml", table)
    bodies = [envelope(sign(application_xml(iin="871008401428" if i % 3 == 2 else "871008401427"), pki),
                       message_id=str(uuid.uuid4())) for i in range(40)]
    with serve(create_app(parse_config(table, base_dir=tmp_path))) as one, \
            serve(create_app(parse_config(table, base_dir=tmp_path))) as two:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda ib: post((one, two)[ib[0] % 2].url, ib[1]), enumerate(bodies)))
    assert {r.status_code or r.fault_code for r in replies} == {"SCSS001", "IIN_INVALID"}
    storage = open_storage(pg_url)
    try:
        head = storage.chain_head()
        records = storage.audit_records(0, head.seq, 10_000)
        assert [r.seq for r in records] == list(range(1, head.seq + 1))
        assert head.seq == len(bodies) * 2 and storage.pending_log() == 0
        checkpoints = len(storage.checkpoints())
    finally:
        storage.close()
    assert checkpoints >= 2
    code, lines = _licgate(capsys, "audit", "verify", "--config", str(config_file))
    assert (code, lines) == (0, [f"audit: intact, {head.seq} records, {checkpoints} checkpoints"])


# --- the provider API -----------------------------------------------------------------------------------------


def test_every_provider_api_call_is_a_record_refused_ones_with_their_status_and_no_token_is_stored(
        pki: Pki, storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import httpx

    table = _table(pki, storage_url, tmp_path)
    config_file = write_config_file(tmp_path / "licgate.toml", table)
    auth = {"Authorization": f"Bearer {PROVIDER_TOKEN}"}
    with serve(create_app(parse_config(table, base_dir=tmp_path))) as server:
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        api = f"{server.url}/provider/v1"
        leased = httpx.post(f"{api}/leases", json={"max": 5}, headers=auth).json()
        app = leased["applications"][0]
        assert httpx.get(app["documents"][0]["url"], headers=auth).status_code == 200
        assert httpx.post(f"{api}/leases/{leased['lease_id']}/ack", json={"ids": [app["id"]]},
                          headers=auth).json()["acked"] == [app["id"]]
        assert httpx.post(f"{api}/applications/{app['id']}/steps", json={"step": "ISSUED", "actor": "x"},
                          headers=auth).status_code == 409
        wrong = {"Authorization": "Bearer wrong"}
        assert httpx.get(f"{api}/applications/{app['id']}", headers=wrong).status_code == 401
        assert httpx.get(f"{api}/applications/no-such-id/documents/0", headers=auth).status_code == 404
    storage = open_storage(storage_url)
    try:
        records = [(e.endpoint, e.verdict) for e in storage.message_log(limit=100)
                   if e.endpoint.startswith("provider/")]
    finally:
        storage.close()
    assert records == [
        ("provider/leases", "HTTP 200 LEASED 1"), ("provider/documents", "HTTP 200"),
        ("provider/ack", "HTTP 200 ACKED 1"), ("provider/record_step", "HTTP 409 STEP_OUT_OF_ORDER"),
        ("provider/get_application", "HTTP 401 UNAUTHORIZED"), ("provider/get_document", "HTTP 404 NOT_FOUND"),
    ]
    if storage_url.startswith("postgresql"):
        assert PROVIDER_TOKEN.encode() not in all_pg_bytes(storage_url)
    else:
        assert not any(PROVIDER_TOKEN.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
                       and p.suffix != ".toml")
    assert _licgate(capsys, "audit", "verify", "--config", str(config_file))[0] == 0


# --- checkpoints: a configured seal, a TSA --------------------------------------------------------------------


def test_checkpoints_are_signed_by_the_configured_seal_and_timestamped_when_tsa_url_is_set(
        pki: Pki, tmp_path: Path) -> None:
    import httpx

    from core.clock import Clock
    from gateway import messagelog
    from gateway.audit import (
        Auditor,
        SealCerts,
        load_seal,
        parse_note,
        read_checkpoint_file,
        timestamp_verifier,
        trusted_certs,
        verify,
    )
    from mocks.nca import create_app as nca_app
    from signing import tsa
    from signing.seal import make_seal
    from signing.tsp import parse_token

    key_pem, cert_pem = make_seal("licgate test seal")
    (tmp_path / "seal.key").write_bytes(key_pem)
    (tmp_path / "seal.pem").write_bytes(cert_pem)
    storage = open_storage(f"sqlite:///{tmp_path / 'tsa.db'}")
    storage.migrate()
    try:
        with serve(nca_app(pki.dir)) as nca:
            config = parse_config({**config_table(pki, "sqlite:///unused.db"), "audit": {
                "key": "seal.key", "cert": "seal.pem", "checkpoint_records": 3, "tsa_url": f"{nca.url}/tsp",
                "checkpoint_file": "checkpoints"}}, base_dir=tmp_path).audit
            auditor = Auditor(config, storage, Clock(), load_seal(config, storage, Clock()))
            storage.log_messages([messagelog.entry("in", "shep/sync", b"<x/>", "SCSS001", datetime.now(UTC))] * 3)
            made = auditor.tick()
            other = tsa.token_of(httpx.post(f"{nca.url}/tsp", content=tsa.request(hashlib.sha256(b"other").digest()),
                                            headers={"Content-Type": "application/timestamp-query"}).content)
        assert made is not None and made.size == 3
        stored = storage.checkpoints()[0]
        note = parse_note(stored.note)
        certs = SealCerts(cert_pem)
        assert note.verifies([cert_pem]) and stored.timestamp_token is not None
        token = parse_token(stored.timestamp_token)
        assert token.imprint == hashlib.sha256(note.signatures[0][2]).digest()
        filed = read_checkpoint_file(tmp_path / "checkpoints")
        assert [(n.size, n.root, n.tsa_token) for n in filed] == [(3, made.root, stored.timestamp_token)]
        assert storage.audit_records(0, 3, 10)[-1].chain_hash == made.root
        assert trusted_certs(config, storage) == certs  # a configured seal: no certificate of its own kept
        report = verify(storage, certs, tmp_path / "checkpoints")
        assert report.lines() == ["audit: intact, 3 records, 1 checkpoints"]
        with sqlite3.connect(tmp_path / "tsa.db") as conn:  # a token over something else
            conn.execute("UPDATE audit_checkpoints SET timestamp_token = ?", (other,))
        assert verify(storage, certs, None).findings == [
            "record 3: checkpoint timestamp does not cover its signature (checkpoint)"]
        # The TSA's own signature and certificate: a token over the right imprint from a TSA that
        # [trust] tsa_dir does not hold passes the imprint check alone, and fails the full one.
        timestamps = timestamp_verifier(parse_config(config_table(pki, "sqlite:///unused.db"), base_dir=tmp_path).trust)
        assert timestamps is not None
        rogue_key, rogue_cert = make_seal("rogue TSA")
        rogue = tsa.TimestampAuthority(rogue_key, rogue_cert).token(hashlib.sha256(note.signatures[0][2]).digest())
        with sqlite3.connect(tmp_path / "tsa.db") as conn:
            conn.execute("UPDATE audit_checkpoints SET timestamp_token = ?", (stored.timestamp_token,))
        assert verify(storage, certs, None, timestamps=timestamps).findings == []
        with sqlite3.connect(tmp_path / "tsa.db") as conn:
            conn.execute("UPDATE audit_checkpoints SET timestamp_token = ?", (rogue,))
        assert verify(storage, certs, None).findings == []
        (finding,) = verify(storage, certs, None, timestamps=timestamps).findings
        assert finding.startswith("record 3: checkpoint timestamp does not verify (checkpoint: "), finding
        status = auditor.status()
        assert (status["records"], status["pending"], status["checkpoints"], status["last_checkpoint_size"],
                status["seal_key_id"]) == (3, 0, 1, 3, auditor.seal.key_id)
    finally:
        storage.close()


def test_with_a_configured_seal_a_certificate_planted_in_the_database_proves_nothing_later(tmp_path: Path) -> None:
    from core.clock import Clock
    from gateway import messagelog
    from gateway.audit import Auditor, SealCerts, load_seal, trusted_certs, verify
    from gateway.config import AuditConfig
    from signing.seal import Seal, make_seal

    storage = open_storage(f"sqlite:///{tmp_path / 'seal.db'}")
    storage.migrate()

    def three_and_a_checkpoint(auditor: Auditor) -> None:
        storage.log_messages([messagelog.entry("in", "shep/sync", b"<x/>", "SCSS001", datetime.now(UTC))] * 3)
        assert auditor.tick() is not None

    try:
        # First without [audit] key (the gateway's own key), then with one configured.
        three_and_a_checkpoint(Auditor(AuditConfig(checkpoint_records=3), storage, Clock(),
                                       load_seal(AuditConfig(), storage, Clock())))
        key_pem, cert_pem = make_seal("configured seal")
        configured = AuditConfig(key_pem=key_pem, cert_pem=cert_pem, checkpoint_records=3)
        three_and_a_checkpoint(Auditor(configured, storage, Clock(), load_seal(configured, storage, Clock())))
        assert verify(storage, trusted_certs(configured, storage), None).lines() == [
            "audit: intact, 6 records, 2 checkpoints"]  # the own key's checkpoint before it still counts
        # Someone who can write the database plants a certificate of their own and signs a checkpoint.
        rogue_key, rogue_cert = make_seal("rogue")
        storage.add_seal_cert(rogue_cert, datetime.now(UTC))
        three_and_a_checkpoint(Auditor(configured, storage, Clock(), Seal(rogue_key, rogue_cert)))
        assert verify(storage, trusted_certs(configured, storage), None).findings == [
            "record 9: checkpoint signature fails (checkpoint)"]
        # Without a configured seal nothing tells the planted certificate from the gateway's own (docs/audit.md).
        assert verify(storage, SealCerts(None, (*storage.seal_certs(), cert_pem)), None).findings == []
    finally:
        storage.close()


def test_a_record_changed_with_the_whole_chain_recomputed_is_found_by_the_signed_checkpoints(
        pristine: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.auditchain import GENESIS, chain_hash, entry_hash

    config, conn = _copy(pristine, tmp_path, "rechained")
    conn.execute("UPDATE message_log SET verdict = 'INTAKE_REFUSED' WHERE id = ?", (_log_id(conn, 2),))
    # Whoever changed it also recomputes every chain hash after it: the chain alone is consistent again.
    previous = GENESIS
    rows = conn.execute("SELECT c.seq, m.direction, m.endpoint, m.message_id, m.sender_id, m.correlation_id, "
                        "m.application_id, m.verdict, m.at, m.sha256 FROM log_chain c JOIN message_log m "
                        "ON m.id = c.log_id ORDER BY c.seq").fetchall()
    for seq, *fields in rows:
        previous = chain_hash(previous, seq, entry_hash(*fields))
        conn.execute("UPDATE log_chain SET chain_hash = ? WHERE seq = ?", (previous, seq))
    conn.execute("UPDATE audit_head SET chain_hash = ?", (previous,))
    sizes = [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints ORDER BY size")]
    lines = _damaged(capsys, config)
    assert f"audit: damaged: record {sizes[0]}: altered (its chain hash differs from the checkpoint)" in lines
    assert f"audit: damaged: record {sizes[0]}: altered (its chain hash differs from the checkpoint_file)" in lines
