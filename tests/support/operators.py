"""The operators tests configure: an admin and a viewer, with passwords and ops API tokens."""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway.operators import hash_password

ADMIN, ADMIN_PASSWORD, ADMIN_TOKEN = "aigerim", "Құпия-сөз-2026!", "ops-admin-token-0123456789abcdef"
VIEWER, VIEWER_PASSWORD, VIEWER_TOKEN = "daniyar", "viewer-pass-2026", "ops-viewer-token-0123456789abcdef"


@cache
def _hash(password: str) -> str:
    return hash_password(password)  # scrypt costs about 0.1 s: once per password per test process


def operators_table() -> list[dict[str, Any]]:
    """`[[operators]]` of a test configuration."""
    return [
        {"name": ADMIN, "password_hash": _hash(ADMIN_PASSWORD), "token": ADMIN_TOKEN, "role": "admin"},
        {"name": VIEWER, "password_hash": _hash(VIEWER_PASSWORD), "token": VIEWER_TOKEN, "role": "viewer"},
    ]
