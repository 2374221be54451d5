"""Every storage test runs on a real SQLite file and on a fresh PostgreSQL schema (`storage_url`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.storage import Storage, open_storage


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    s = open_storage(storage_url, pool_size=4)
    s.migrate()
    yield s
    s.close()
