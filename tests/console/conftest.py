"""The browser: Playwright (pinned in the test extra) driving Debian's chromium. Never `playwright install`:
no CDN is reachable. Without /usr/bin/chromium the browser tests are skipped, except under CI=true."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
# As the machine's probe starts it: no sandbox as root, and no background connections to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is absent (apt-get install chromium): browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Shots:
    """Screenshots of each page, under the test's tmp dir (and, with LICGATE_SCREENSHOTS set, copied there:
    docs/images/ is refreshed that way)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken: list[Path] = []

    def take(self, page: object, name: str) -> Path:
        path = self.directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        self.taken.append(path)
        target = os.environ.get("LICGATE_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)
        return path


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    directory = tmp_path / "screenshots"
    directory.mkdir()
    return Shots(directory)


# The served gateway, its receiver and PKI, as the workflow tests have them.
from tests.workflow.conftest import gateway_factory, pki, receiver, sqlite_url  # noqa: E402, F401
