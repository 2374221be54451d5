"""Configuration (docs/configuration.md): every key given wrong stops start-up with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config

PROVIDER_BIN = "051240001234"


def base_toml(tmp: Path) -> str:
    (tmp / "pki" / "ca").mkdir(parents=True, exist_ok=True)
    (tmp / "pki" / "crl").mkdir(parents=True, exist_ok=True)
    return f"""
[server]
host = "127.0.0.1"
port = 8080
max_message_bytes = 20971520

[storage]
url = "sqlite:///./licgate.db"

[trust]
ca_dir = "./pki/ca"
revocation = "crl"
crl_dir = "./pki/crl"
ocsp_url = ""

[[providers]]
bin = "{PROVIDER_BIN}"
name_kk = "Денсаулық сақтау басқармасы"
name_ru = "Управление здравоохранения"
token = "provider-token-0123456789"

[[senders]]
id = "EGOV_PORTAL"
password = "portal-secret"
services = ["MED_LICENSE", "MED_LICENSE_STATUS"]
channel = "PORTAL"
wsse = "off"
bin = ""
cert = ""

[[senders]]
id = "CENTER_IS"
password = "center-secret"
services = ["MED_LICENSE"]
channel = "CENTER"
bin = "990140004654"

[checklists]
ISSUE = ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"]
REISSUE = ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"]
DUPLICATE = ["APPLICATION_FORM", "FEE_RECEIPT"]

[terms]
ISSUE = 13
REISSUE = 3
DUPLICATE = 2

[calendar]
timezone = "Asia/Almaty"
work_start = "09:00"
work_end = "18:30"
break_start = "13:00"
break_end = "14:30"
extra_days_off = []
extra_working_days = []

[outbound]
shep_async_url = "http://127.0.0.1:9000/shep/async"
sender_id = "LICGATE"
password = ""
wsse_key = ""
wsse_cert = ""
"""


def write(tmp: Path, text: str) -> Path:
    path = tmp / "licgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_contract_example_loads_with_its_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, base_toml(tmp_path)))
    assert config.server.port == 8080
    assert config.storage.url == f"sqlite:///{tmp_path / 'licgate.db'}"
    assert config.providers[0].bin == PROVIDER_BIN
    assert config.sender("CENTER_IS").bin == "990140004654"
    assert config.terms == {"ISSUE": 13, "REISSUE": 3, "DUPLICATE": 2}
    assert config.checklists["DUPLICATE"] == ("APPLICATION_FORM", "FEE_RECEIPT")
    assert config.outbound.sender_id == "LICGATE"


def test_secrets_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_PW", "from-env")
    text = base_toml(tmp_path).replace('password = "portal-secret"', 'password = "env:PORTAL_PW"')
    assert load_config(write(tmp_path, text)).sender("EGOV_PORTAL").password == "from-env"


def test_the_storage_url_with_its_password_may_come_from_the_environment(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICGATE_DB", "postgresql://licgate:s3cret@db.internal:5432/licgate")
    text = base_toml(tmp_path).replace('url = "sqlite:///./licgate.db"', 'url = "env:LICGATE_DB"')
    assert load_config(write(tmp_path, text)).storage.url == "postgresql://licgate:s3cret@db.internal:5432/licgate"
    monkeypatch.setenv("LICGATE_DB", "mysql://x/y")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == "storage.url"


# (key named in the error, text to replace, replacement)
WRONG: list[tuple[str, str, str]] = [
    ("server.host", 'host = "127.0.0.1"', "host = 5"),
    ("server.port", "port = 8080", "port = 70000"),
    ("server.port", "port = 8080", 'port = "8080"'),
    ("server.max_message_bytes", "max_message_bytes = 20971520", "max_message_bytes = -1"),
    ("server.colour", "max_message_bytes = 20971520", 'max_message_bytes = 20971520\ncolour = "red"'),
    ("storage.url", 'url = "sqlite:///./licgate.db"', 'url = "mysql://x/y"'),
    ("trust.ca_dir", 'ca_dir = "./pki/ca"', 'ca_dir = "./nowhere"'),
    ("trust.revocation", 'revocation = "crl"', 'revocation = "sometimes"'),
    ("trust.crl_dir", 'crl_dir = "./pki/crl"', 'crl_dir = "./nowhere"'),
    ("trust.ocsp_url", 'ocsp_url = ""', 'ocsp_url = "ftp://ocsp"'),
    ("providers[0].bin", f'bin = "{PROVIDER_BIN}"', 'bin = "051240001235"'),
    ("providers[0].name_kk", 'name_kk = "Денсаулық сақтау басқармасы"\n', ""),
    ("providers[0].name_ru", 'name_ru = "Управление здравоохранения"', "name_ru = 1"),
    ("providers[0].token", 'token = "provider-token-0123456789"', 'token = "short"'),
    ("providers[0].token", 'token = "provider-token-0123456789"', 'token = "env:LICGATE_NO_SUCH_VAR"'),
    ("senders[0].id", 'id = "EGOV_PORTAL"', 'id = ""'),
    ("senders[0].password", 'password = "portal-secret"\n', ""),
    ("senders[0].services", 'services = ["MED_LICENSE", "MED_LICENSE_STATUS"]', 'services = ["PIZZA"]'),
    ("senders[0].channel", 'channel = "PORTAL"', 'channel = "FAX"'),
    ("senders[0].wsse", 'wsse = "off"', 'wsse = "maybe"'),
    ("senders[0].bin", 'bin = ""\ncert = ""', 'bin = "12"\ncert = ""'),
    ("senders[0].cert", 'cert = ""', 'cert = "./missing.pem"'),
    ("senders[1].bin", 'bin = "990140004654"', 'bin = ""'),
    ("checklists.ISSUE", 'ISSUE = ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"]',
     "ISSUE = 3"),
    ("checklists.RENEW", 'DUPLICATE = ["APPLICATION_FORM", "FEE_RECEIPT"]', 'RENEW = ["APPLICATION_FORM"]'),
    ("terms.ISSUE", "ISSUE = 13", "ISSUE = 0"),
    ("terms.REISSUE", "REISSUE = 3", 'REISSUE = "three"'),
    ("calendar.timezone", 'timezone = "Asia/Almaty"', 'timezone = "Mars/Olympus"'),
    ("calendar.work_start", 'work_start = "09:00"', 'work_start = "9am"'),
    ("calendar.work_end", 'work_end = "18:30"', 'work_end = "08:00"'),
    ("calendar.break_start", 'break_start = "13:00"', 'break_start = "20:00"'),
    ("calendar.break_end", 'break_end = "14:30"', 'break_end = "25:00"'),
    ("calendar.extra_days_off", "extra_days_off = []", 'extra_days_off = ["2026-02-30"]'),
    ("calendar.extra_working_days", "extra_working_days = []", "extra_working_days = 7"),
    ("outbound.shep_async_url", 'shep_async_url = "http://127.0.0.1:9000/shep/async"', 'shep_async_url = "nowhere"'),
    ("outbound.sender_id", 'sender_id = "LICGATE"', 'sender_id = ""'),
    ("outbound.password", 'password = ""\nwsse_key', "password = 12\nwsse_key"),
    ("outbound.password", 'password = ""\nwsse_key', 'password = "a\\u0001b"\nwsse_key'),
    ("outbound.wsse_key", 'wsse_key = ""', 'wsse_key = "./missing-key.pem"'),
    ("outbound.wsse_cert", 'wsse_cert = ""', 'wsse_cert = "-----BEGIN CERTIFICATE-----\\nnot base64\\n"'),
    ("banana", "[server]", "banana = 1\n[server]"),
    # keys beyond the contract (docs/configuration.md)
    ("server.max_in_flight", "max_message_bytes = 20971520", "max_message_bytes = 20971520\nmax_in_flight = 0"),
    ("server.log_level", "max_message_bytes = 20971520", 'max_message_bytes = 20971520\nlog_level = "LOUD"'),
    ("server.intake_processes", "max_message_bytes = 20971520",
     'max_message_bytes = 20971520\nintake_processes = "many"'),
    ("server.intake_processes", "max_message_bytes = 20971520", "max_message_bytes = 20971520\nintake_processes = -1"),
    ("storage.max_queue_depth", 'url = "sqlite:///./licgate.db"',
     'url = "sqlite:///./licgate.db"\nmax_queue_depth = 0'),
    ("storage.pool_size", 'url = "sqlite:///./licgate.db"', 'url = "sqlite:///./licgate.db"\npool_size = 1000'),
    ("trust.ocsp_timeout_seconds", 'ocsp_url = ""', 'ocsp_url = ""\nocsp_timeout_seconds = 0'),
    ("step_limits.register_minutes", "[outbound]", "[step_limits]\nregister_minutes = 0\n[outbound]"),
    ("step_limits.review_minutes", "[outbound]", '[step_limits]\nreview_minutes = "half an hour"\n[outbound]'),
    ("step_limits.issue_minutes", "[outbound]", "[step_limits]\nissue_minutes = 100000\n[outbound]"),
    ("step_limits.breach_sweep_seconds", "[outbound]", "[step_limits]\nbreach_sweep_seconds = -1\n[outbound]"),
    ("outbound.timeout_seconds", 'sender_id = "LICGATE"', 'sender_id = "LICGATE"\ntimeout_seconds = 0'),
    ("outbound.max_attempts", 'sender_id = "LICGATE"', 'sender_id = "LICGATE"\nmax_attempts = 0'),
    ("outbound.backoff_initial_seconds", 'sender_id = "LICGATE"',
     'sender_id = "LICGATE"\nbackoff_initial_seconds = "soon"'),
    ("outbound.backoff_max_seconds", 'sender_id = "LICGATE"',
     'sender_id = "LICGATE"\nbackoff_initial_seconds = 10\nbackoff_max_seconds = 5'),
    ("outbound.poll_seconds", 'sender_id = "LICGATE"', 'sender_id = "LICGATE"\npoll_seconds = 0'),
    ("outbound.concurrency", 'sender_id = "LICGATE"', 'sender_id = "LICGATE"\nconcurrency = 65'),
    ("service_aliases.ELIC", "[outbound]", '[service_aliases]\nELIC = "PIZZA"\n[outbound]'),
]


@pytest.mark.parametrize(("key", "old", "new"), WRONG, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(WRONG)])
def test_each_key_given_wrong_names_the_key(tmp_path: Path, key: str, old: str, new: str) -> None:
    text = base_toml(tmp_path)
    assert old in text, f"test bug: {old!r} not in the base config"
    if key == "outbound.wsse_cert":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        (tmp_path / "key.pem").write_bytes(pem)
        text = text.replace('wsse_key = ""', 'wsse_key = "./key.pem"')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text.replace(old, new, 1)))
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "absent.toml")
    assert err.value.key == "config"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[server\nport = 1"))
    assert "not valid TOML" in err.value.reason


def test_serve_with_a_bad_key_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, base_toml(tmp_path).replace("port = 8080", "port = -5"))
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("licgate: config error: server.port:")


def test_the_installed_command_exits_2_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, base_toml(tmp_path).replace('channel = "PORTAL"', 'channel = "FAX"'))
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "licgate: config error: senders[0].channel: must be one of PORTAL, CENTER, ELICENSE, not 'FAX'"
    ]


def test_intake_processes_auto_leaves_a_core_to_the_serving_process(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    text = base_toml(tmp_path)
    auto = load_config(write(tmp_path, text)).server
    assert auto.intake_processes is None
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert auto.resolved_intake_processes() == 3
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert auto.resolved_intake_processes() == 0
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert auto.resolved_intake_processes() == 8
    fixed = load_config(write(tmp_path, text.replace("max_message_bytes = 20971520",
                                                     "max_message_bytes = 20971520\nintake_processes = 0"))).server
    assert fixed.resolved_intake_processes() == 0


def test_crypto_providers_absent_means_every_installed_one(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, base_toml(tmp_path)))
    assert config.trust.crypto_providers is None


def test_crypto_providers_may_be_listed(tmp_path: Path) -> None:
    text = base_toml(tmp_path).replace('ca_dir = "./pki/ca"', 'ca_dir = "./pki/ca"\ncrypto_providers = []', 1)
    assert load_config(write(tmp_path, text)).trust.crypto_providers == ()


@pytest.mark.parametrize("value", ['["no-such-provider"]', '"gost"', "[1]"])
def test_a_crypto_provider_that_cannot_be_loaded_names_the_key(tmp_path: Path, value: str) -> None:
    text = base_toml(tmp_path).replace('ca_dir = "./pki/ca"', f'ca_dir = "./pki/ca"\ncrypto_providers = {value}', 1)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == "trust.crypto_providers"
    assert "\n" not in str(err.value)
