"""Operations endpoints (CONTRACT section 7): /healthz and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway import __version__
from gateway.app import gateway_of
from gateway.storage import StorageError

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    gw = gateway_of(request)
    checks: dict[str, str] = {}
    status = 200
    try:
        gw.storage.ping()
        checks["storage"] = "ok"
    except StorageError as exc:
        checks["storage"] = f"unreachable: {exc}"
        status = 503
    for name, component in gw.components.items():
        health = getattr(component, "health", None)
        if callable(health):
            checks[name] = health()
    body = {"status": "ok" if status == 200 else "unavailable", "version": __version__, "checks": checks}
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(gateway_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
