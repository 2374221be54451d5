"""The operators' commands, run as a shell user would: `licgate applications show|search`, `licgate outbox
dead|retry`, `licgate config check`, `licgate operator hash-password`; tables by default, `--json`."""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.domain import Step
from gateway.operators import verify_password
from gateway.storage import NewOutboxMessage, OutboxKind, StepRecord, Storage, Transition, open_storage
from signing.pki import Pki, init_pki, load_pki
from tests.intake.conftest import config_table, write_config_file
from tests.storage.factory import log_entry
from tests.workflow.helpers import store

ROOT = Path(__file__).resolve().parents[2]


def licgate(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return load_pki(init_pki(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def setup(pki: Pki, tmp_path: Path) -> tuple[Path, Storage]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    table = config_table(pki, url)
    table["providers"][0]["bin"] = "051240001234"
    config = write_config_file(tmp_path / "licgate.toml", table)
    storage = open_storage(url)
    storage.migrate()
    yield config, storage
    storage.close()


def test_applications_are_searched_and_shown_as_tables_and_json(setup: tuple[Path, Storage]) -> None:
    config, storage = setup
    late = store(storage, received_at=datetime.now(UTC) - timedelta(days=40),
                 due_at=datetime.now(UTC) - timedelta(days=20))
    other = store(storage)
    found = licgate("applications", "search", "--config", str(config), "--iin", "871008401427", "--json")
    assert found.returncode == 0, found.stderr
    assert [a["registration_number"] for a in json.loads(found.stdout)] == [other.registration_number,
                                                                           late.registration_number]
    table = licgate("applications", "search", "--config", str(config), "--overdue")
    assert table.returncode == 0 and late.registration_number in table.stdout
    assert other.registration_number not in table.stdout and "registration number" in table.stdout.splitlines()[0]
    shown = licgate("applications", "show", late.registration_number, "--config", str(config))
    assert shown.returncode == 0 and "OVERDUE" in shown.stdout
    assert re.search(r"^RESULT_PREPARED\s+BREACHED", shown.stdout, re.MULTILINE)
    as_json = json.loads(licgate("applications", "show", late.registration_number, "--config", str(config),
                                 "--json").stdout)
    assert as_json["registration_number"] == late.registration_number and as_json["overdue"] is True
    missing = licgate("applications", "show", "MED-2026-999999", "--config", str(config))
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_dead_letters_are_listed_and_sent_again_with_the_shell_user_on_record(setup: tuple[Path, Storage]) -> None:
    config, storage = setup
    app = store(storage)
    now = datetime.now(UTC)
    storage.apply_transition(app.id, Transition(
        step=StepRecord(Step.REGISTERED, "employee", now, "test"), expected_last_step=None, recorded_at=now,
        outbox=(NewOutboxMessage(app.id, OutboxKind.NOTIFICATION, "out-1", b"<n/>"),)))
    [message] = storage.outbox_messages(app.id)
    storage.mark_outbox_failed(message.id, "attempt 50: HTTP 503", now, dead=True)
    listed = json.loads(licgate("outbox", "dead", "--config", str(config), "--json").stdout)
    assert [(d["id"], d["last_error"]) for d in listed] == [(message.id, "attempt 50: HTTP 503")]
    assert "HTTP 503" in licgate("outbox", "dead", "--config", str(config)).stdout
    retried = licgate("outbox", "retry", str(message.id), "--config", str(config))
    assert retried.returncode == 0 and "sent again" in retried.stdout
    assert licgate("outbox", "retry", str(message.id), "--config", str(config)).returncode == 1  # not dead now
    assert json.loads(licgate("outbox", "retry", "--all", "--config", str(config), "--json").stdout) == {"retried": []}
    actions = [e for e in storage.message_log(limit=20) if e.sender_id == f"operator:cli:{getpass.getuser()}"]
    user = getpass.getuser()
    assert sorted(e.verdict for e in actions) == [f"RETRY by cli:{user}", f"RETRY-ALL by cli:{user}"]


def test_the_message_log_is_searched_as_a_table_and_as_json(setup: tuple[Path, Storage]) -> None:
    config, storage = setup
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    storage.log_messages([log_entry("cli-m-1", at=at), log_entry("cli-m-2", verdict="SIGNATURE_INVALID",
                                                                 at=at + timedelta(hours=1))])
    found = licgate("messages", "search", "--config", str(config), "--verdict", "SIGNATURE_INVALID", "--json")
    assert found.returncode == 0, found.stderr
    [record] = json.loads(found.stdout)
    assert record["message_id"] == "cli-m-2" and record["at"] == "2026-12-01T16:00:00+05:00"
    # Without an offset a time is the calendar's (Asia/Almaty): 15:30 there is 10:30 UTC.
    table = licgate("messages", "search", "--config", str(config), "--since", "2026-12-01T15:30")
    assert table.returncode == 0 and "cli-m-2" in table.stdout and "cli-m-1" not in table.stdout
    assert table.stdout.splitlines()[0].split()[:3] == ["record", "time", "dir"]
    bad = licgate("messages", "search", "--config", str(config), "--until", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


def test_config_check_says_ok_or_names_the_key(setup: tuple[Path, Storage], tmp_path: Path) -> None:
    config, _ = setup
    ok = licgate("config", "check", str(config))
    assert ok.returncode == 0 and ok.stdout.startswith("config: ok")
    broken = tmp_path / "broken.toml"
    broken.write_text(config.read_text().replace('"port"', '"prot"', 1) + '\n[server]\ncolour = "red"\n')
    bad = licgate("config", "check", str(broken))
    assert bad.returncode == 2 and "config error" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_hash_password_reads_stdin_and_prints_a_hash_the_config_takes(setup: tuple[Path, Storage]) -> None:
    made = licgate("operator", "hash-password", stdin="долгий-пароль-оператора\n")
    assert made.returncode == 0, made.stderr
    encoded = made.stdout.strip()
    assert encoded.startswith("scrypt$") and verify_password("долгий-пароль-оператора", encoded)
    assert "долгий" not in made.stdout and "долгий" not in made.stderr
    assert licgate("operator", "hash-password", stdin="").returncode == 2
    assert licgate("operator", "hash-password", stdin="short\n").returncode == 2
