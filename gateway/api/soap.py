"""SHEP SyncChannel v10 endpoint (CONTRACT section 4). Filled in by the intake work (issue 4)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["shep"])


def setup(gw):  # noqa: ANN001, ANN201
    return None
