"""Operations endpoints: `/healthz`, `/metrics`, and the first dead-letter routes (`/ops/outbox/...`, kept
for the scripts written against them; the same as `/ops/v1/outbox/...`, with the same credentials)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway import __version__
from gateway.api.auth import Caller, admin, operator
from gateway.api.errors import JsonErrorRoute
from gateway.api.opsapi import OutboxOut, RetryOut, outbox_out, retry_one
from gateway.services import services_of
from gateway.storage import StorageError

router = APIRouter(tags=["operations"])
legacy = APIRouter(tags=["operations"], route_class=JsonErrorRoute)


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 with each dependency's state ("degraded" while delivery fails, with the reasons); 503 when
    storage is unreachable."""
    services = services_of(request)
    status, reasons = 200, []
    try:
        services.storage.ping()
        storage = "ok"
    except StorageError as exc:
        storage = f"unreachable: {exc}"
        status = 503
    checks = {"storage": storage, "delivery": services.delivery.health()}
    if status == 200:
        try:
            delivery = services.figures.delivery_health()
            checks["outbox"] = delivery.state
            reasons.extend(delivery.reasons)
        except StorageError as exc:
            checks["outbox"] = f"unknown: {exc}"
    state = "unavailable" if status != 200 else ("degraded" if reasons else "ok")
    body: dict[str, object] = {"status": state, "version": __version__, "instance": services.instance.id,
                               "checks": checks, "reasons": reasons}
    if status == 200:
        # Every gateway on this database whose heartbeat is recent (docs/operations.md, several instances).
        try:
            body["instances"] = [{
                "id": i.id, "host": i.host, "pid": i.pid, "version": i.version,
                "started_at": i.started_at.isoformat(), "last_seen": i.last_seen.isoformat(),
            } for i in services.instance.live()]
        except StorageError as exc:
            body["instances"] = []
            checks["instances"] = f"unreadable: {exc}"
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(services_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@legacy.get("/ops/outbox/dead", response_model=list[OutboxOut])
def dead_letters(caller: Annotated[Caller, Depends(operator)], request: Request,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[OutboxOut]:
    """Outbound messages given up on (as `GET /ops/v1/outbox/dead`)."""
    services = services_of(request)
    return [outbox_out(services, m) for m in services.storage.dead_letters(limit)]


@legacy.post("/ops/outbox/{outbox_id}/retry", response_model=RetryOut)
def retry_dead_letter(outbox_id: int, caller: Annotated[Caller, Depends(admin)], request: Request) -> RetryOut:
    """Send a dead letter again (as `POST /ops/v1/outbox/{id}/retry`; admins)."""
    return RetryOut(id=outbox_id, retried=retry_one(services_of(request), caller, outbox_id))
