"""Fixtures of the intake tests: one test PKI per session, a gateway on a real database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import Clock
from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.intake.examiner import Examiner
from gateway.regulation import regulation_of
from signing.pki import Pki, init_pki, load_pki
from signing.verifier import build_verifier
from tests.intake.helpers import PASSWORDS, PROVIDER_BIN
from tests.support.server import ServerThread, serve


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return load_pki(directory)


def config_table(pki: Pki, storage_url: str, **server: Any) -> dict[str, Any]:
    return {
        "server": {"max_message_bytes": 2 * 1024 * 1024, **server},
        "storage": {"url": storage_url},
        "trust": {"ca_dir": str(pki.ca_dir), "revocation": "crl", "crl_dir": str(pki.crl_dir),
                  "tsa_dir": str(pki.tsa_dir)},
        "providers": [{"bin": PROVIDER_BIN, "name_kk": "Денсаулық сақтау басқармасы",
                       "name_ru": "Управление здравоохранения", "token": "provider-token-0123456789"}],
        "service_aliases": {"ELICENSE_MED_LICENSE": "MED_LICENSE"},
        "senders": [
            {"id": "EGOV_PORTAL", "password": PASSWORDS["EGOV_PORTAL"], "channel": "PORTAL",
             "services": ["MED_LICENSE", "MED_LICENSE_STATUS"]},
            {"id": "CENTER_IS", "password": PASSWORDS["CENTER_IS"], "channel": "CENTER", "bin": "990140004654",
             "services": ["MED_LICENSE", "MED_LICENSE_STATUS"]},
            {"id": "ELICENSE", "password": PASSWORDS["ELICENSE"], "channel": "ELICENSE",
             "services": ["ELICENSE_MED_LICENSE", "MED_LICENSE_STATUS"]},
            {"id": "STATUS_ONLY", "password": PASSWORDS["STATUS_ONLY"], "channel": "PORTAL",
             "services": ["MED_LICENSE_STATUS"]},
            {"id": "WSSE_PORTAL", "password": PASSWORDS["WSSE_PORTAL"], "channel": "PORTAL", "wsse": "required",
             "bin": "110250007893", "services": ["MED_LICENSE", "MED_LICENSE_STATUS"]},
            {"id": "WSSE_OPTIONAL", "password": PASSWORDS["WSSE_OPTIONAL"], "channel": "PORTAL", "wsse": "optional",
             "bin": "110250007893", "services": ["MED_LICENSE"]},
            {"id": "WSSE_PINNED", "password": PASSWORDS["WSSE_PINNED"], "channel": "PORTAL", "wsse": "required",
             "cert": str(pki.party("portal_transport").cert_path), "services": ["MED_LICENSE"]},
        ],
    }


def make_config(pki: Pki, storage_url: str, **server: Any) -> Config:
    return parse_config(config_table(pki, storage_url, **server), base_dir=Path.cwd())


def make_examiner(pki: Pki, storage_url: str) -> Examiner:
    """An examiner as a gateway process builds one, on the system clock."""
    config = make_config(pki, storage_url)
    return Examiner(config, build_verifier(config.trust, Clock()), regulation_of(config), Clock())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'licgate.db'}"


@pytest.fixture
def gateway(pki: Pki, sqlite_url: str) -> Iterator[ServerThread]:
    """A gateway on a fresh SQLite file, served over loopback."""
    app = create_app(make_config(pki, sqlite_url))
    with serve(app) as server:
        server.app = app  # type: ignore[attr-defined]
        yield server


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config_file(path: Path, table: dict[str, Any]) -> Path:
    """`table` (as `config_table` makes it) as a TOML file for `licgate serve --config`."""
    lines: list[str] = []
    for section, content in table.items():
        if isinstance(content, list):
            for item in content:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in content.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
