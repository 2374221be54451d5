"""Provider IS pull API (CONTRACT section 5). Filled in by the provider work (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["provider"])


def setup(gw):  # noqa: ANN001, ANN201
    return None
