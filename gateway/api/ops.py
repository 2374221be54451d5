"""Operations endpoints: `/healthz`, `/metrics`, and the dead letters of the outbox."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import __version__
from gateway.services import services_of
from gateway.storage import StorageError

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 with each dependency's state; 503 when storage is unreachable."""
    services = services_of(request)
    status = 200
    try:
        services.storage.ping()
        storage = "ok"
    except StorageError as exc:
        storage = f"unreachable: {exc}"
        status = 503
    checks = {"storage": storage, "delivery": services.delivery.health()}
    body = {"status": "ok" if status == 200 else "unavailable", "version": __version__, "checks": checks}
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(services_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# -- dead letters ------------------------------------------------------------------------------------------


class DeadLetter(BaseModel):
    id: int
    application_id: str
    kind: str
    message_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime


class RetryResult(BaseModel):
    id: int
    retried: bool


@router.get("/ops/outbox/dead", response_model=list[DeadLetter])
def dead_letters(request: Request, limit: int = 100) -> list[DeadLetter]:
    """Outbound messages given up on, with the last reason (no message content: ids and reasons only)."""
    services = services_of(request)
    return [DeadLetter(id=m.id, application_id=m.application_id, kind=m.kind.value, message_id=m.message_id,
                       attempts=m.attempts, last_error=m.last_error, created_at=m.created_at,
                       next_attempt_at=m.next_attempt_at)
            for m in services.storage.dead_letters(max(1, min(limit, 1000)))]


@router.post("/ops/outbox/{outbox_id}/retry", response_model=RetryResult)
def retry_dead_letter(outbox_id: int, request: Request) -> RetryResult | JSONResponse:
    """Send a dead-lettered message again (an operator decided its cause is fixed). Loopback clients only:
    the operator works on the gateway's host."""
    client = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(client).is_loopback
    except ValueError:
        local = False
    if not local:
        return JSONResponse({"errorCode": "FORBIDDEN", "errorMessage": "operators only (loopback)",
                             "errorData": None}, status_code=403)
    services = services_of(request)
    retried = services.storage.retry_dead_letter(outbox_id, services.clock.now())
    if retried:
        services.delivery.wake()
    return RetryResult(id=outbox_id, retried=retried)
