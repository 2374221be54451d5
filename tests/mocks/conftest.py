"""Fixtures for the mocks' tests: a test PKI (made once per session) and mock settings pointing at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mocks.common import MockSettings, Urls, free_port


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from signing.pki import init_pki

    return init_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def settings(pki_dir: Path) -> MockSettings:
    """Settings with a free port reserved for every party (tests start only the ones they need)."""
    ports = {n: free_port() for n in ("gateway", "shep", "portal", "center", "elicense", "provider")}
    urls = Urls(**{n: f"http://127.0.0.1:{p}" for n, p in ports.items()})
    return MockSettings(pki_dir=pki_dir, urls=urls)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
