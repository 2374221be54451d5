"""Provider IS pull API: leases, acks, steps, the signed result, documents, deadlines.

JSON over HTTP with `Authorization: Bearer <token>` per provider (`[[providers]] token`, compared in
constant time). A provider sees only its own applications: another provider's application is answered
404, exactly like one that does not exist. Every refusal is `{"errorCode", "errorMessage", "errorData"}`
(409 adds `allowedNextSteps`), turned from a `LicgateError` into JSON in one place (`gateway.api.errors`);
no stack trace ever reaches a caller. Times are answered in Astana time with their offset.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from core.domain import ApplicantKind, Channel, Decision, ServiceType, Status, Step
from core.errors import (
    MessageTooLarge,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway import messagelog
from gateway.api.errors import LoggedRoute
from gateway.config import ProviderConfig
from gateway.regulation import Deadline
from gateway.services import Services, services_of
from gateway.storage import ApplicationRecord, MessageLogEntry
from gateway.storage.signals import QUEUE, AsyncWaiter
from gateway.workflow import ApplicationView

log = logging.getLogger("licgate.provider")

# docs/provider-api.md names the path parameter `{id}`; in code it is `app_id` (`id` is a builtin).
AppId = Annotated[str, Path(alias="id", description="the application's id, as leased, or its registration number")]


router = APIRouter(tags=["provider"], route_class=LoggedRoute)

# -- authentication --------------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="the provider's token (`[[providers]] token`)")


def current_provider(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ProviderConfig:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("a bearer token is required")
    token = credentials.credentials.encode()
    found: ProviderConfig | None = None
    for provider in services_of(request).config.providers:
        # Every token is compared, in constant time, so the answer time says nothing about which matched.
        if hmac.compare_digest(provider.token.encode(), token):
            found = provider
    if found is None:
        raise Unauthorized("the bearer token is not valid")
    return found


Provider = Annotated[ProviderConfig, Depends(current_provider)]


REGISTRATION_NUMBER = re.compile(r"MED-\d{4}-\d{6,}")


def _own_application(gw: Services, provider: ProviderConfig, app_id: str) -> ApplicationRecord:
    """The application named by its id or by its registration number (`MED-2026-000123`)."""
    app: ApplicationRecord | None = None
    if REGISTRATION_NUMBER.fullmatch(app_id):
        app = gw.storage.find_by_registration_number(app_id)
    elif len(app_id) <= 100:
        app = gw.storage.get_application(app_id)
    if app is None or app.provider_bin != provider.bin:
        raise NotFound(f"no application {app_id[:100]} of this provider")
    return app


# -- models (they are the OpenAPI document) --------------------------------------------------------------------


class LeaseRequest(BaseModel):
    max: int = Field(50, ge=1, le=500, description="at most this many applications")
    lease_seconds: float = Field(300, ge=1, le=86400, description="visibility timeout; unacked ones return after it")
    wait_seconds: float = Field(0, ge=0, le=30, description="with nothing queued, wait up to this long for an "
                                "application (woken at once by an intake on any instance); 0 answers at once")


class ApplicantOut(BaseModel):
    kind: ApplicantKind
    iin: str | None
    bin: str | None
    name: str


class SignerOut(BaseModel):
    iin: str | None
    bin: str | None
    roles: list[str] = Field(description="extended key usage OIDs of the certificate (NCA RK roles)")
    certificate_serial: str
    common_name: str
    organization: str | None


class DocumentOut(BaseModel):
    index: int
    code: str
    file_name: str
    mime_type: str
    sha256: str
    size: int
    url: str = Field(description="GET it with the same bearer token")


class LeasedApplication(BaseModel):
    id: str
    registration_number: str
    request_number: str
    channel: Channel
    sender_id: str
    service_type: ServiceType
    applicant: ApplicantOut
    signer: SignerOut
    activity_subtypes: list[str]
    license_number: str | None
    documents: list[DocumentOut]
    received_at: datetime
    due_at: datetime | None
    status: Status
    last_step: Step | None
    signed_at: datetime | None = Field(None, description="the signing time the application's XAdES-T timestamp "
                                                         "proves (its genTime); null without one")


class LeaseOut(BaseModel):
    lease_id: str
    expires_at: datetime
    applications: list[LeasedApplication]


class AckRequest(BaseModel):
    ids: list[str] = Field(max_length=1000)


class AckOut(BaseModel):
    acked: list[str]


class StepRequest(BaseModel):
    step: Step = Field(description="REGISTERED, SENT_TO_MANAGEMENT, RETURNED_FOR_PREPARATION, RESULT_PREPARED, "
                                   "ISSUED, DELIVERED (SIGNED comes with PUT .../result)")
    actor: str = Field(min_length=1, max_length=200, description="who did it (name or IS user id)")
    at: datetime | None = Field(None, description="when; default now; no offset means Astana time")


class TimelineEntry(BaseModel):
    step: Step
    actor: str
    at: datetime
    source: str
    recorded_at: datetime | None


class DeadlineOut(BaseModel):
    step: Step = Field(description="the step this limit bounds")
    counted_from: str
    limit: str
    due_at: datetime | None
    done_at: datetime | None
    state: str = Field(description="PENDING, MET or BREACHED")
    breached: bool


class ApplicationOut(BaseModel):
    id: str
    registration_number: str
    request_number: str
    channel: Channel
    service_type: ServiceType
    status: Status
    decision: Decision | None
    received_at: datetime
    due_at: datetime | None
    signed_at: datetime | None = Field(None, description="the proven signing time of the application (XAdES-T)")
    last_step: Step | None
    allowed_next_steps: list[Step]
    timeline: list[TimelineEntry]
    deadlines: list[DeadlineOut]
    breached: list[Step] = Field(description="the steps whose deadline was breached")


class BreachOut(BaseModel):
    application_id: str
    registration_number: str
    deadline: DeadlineOut


class ErrorOut(BaseModel):
    errorCode: str  # noqa: N815 - the contract's JSON names
    errorMessage: str  # noqa: N815
    errorData: str | None  # noqa: N815
    allowedNextSteps: list[Step] | None = None  # noqa: N815


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    404: {"model": ErrorOut, "description": "no such application of this provider"},
    422: {"model": ErrorOut, "description": "refused (errorCode as in docs/shep.md)"},
}


# -- rendering ---------------------------------------------------------------------------------------------------


def local(gw: Services, at: datetime | None) -> datetime | None:
    return at.astimezone(gw.calendar.timezone) if at is not None else None


def _leased(gw: Services, request: Request, app: ApplicationRecord) -> LeasedApplication:
    signer = app.signer
    return LeasedApplication(
        id=app.id, registration_number=app.registration_number, request_number=app.request_number,
        channel=app.channel, sender_id=app.sender_id, service_type=app.service_type,
        applicant=ApplicantOut(kind=app.applicant.kind, iin=app.applicant.iin, bin=app.applicant.bin,
                               name=app.applicant.name),
        signer=SignerOut(iin=signer.iin, bin=signer.bin, roles=list(signer.roles),
                         certificate_serial=signer.certificate_serial, common_name=signer.common_name,
                         organization=signer.organization),
        activity_subtypes=list(app.activity_subtypes), license_number=app.license_number,
        documents=[DocumentOut(index=d.index, code=d.code, file_name=d.file_name, mime_type=d.mime_type,
                               sha256=d.sha256, size=d.size,
                               url=str(request.url_for("get_document", id=app.id, index=d.index)))
                   for d in app.documents],
        received_at=local(gw, app.received_at), due_at=local(gw, app.due_at), status=app.status,
        last_step=app.last_step, signed_at=local(gw, app.signed_at),
    )


def deadline_out(gw: Services, d: Deadline) -> DeadlineOut:
    return DeadlineOut(step=d.step, counted_from=d.counted_from, limit=d.limit, due_at=local(gw, d.due_at),
                       done_at=local(gw, d.done_at), state=d.state.value, breached=d.breached)


def _application(gw: Services, view: ApplicationView) -> ApplicationOut:
    app = view.app
    return ApplicationOut(
        id=app.id, registration_number=app.registration_number, request_number=app.request_number,
        channel=app.channel, service_type=app.service_type, status=app.status, decision=app.decision,
        received_at=local(gw, app.received_at), due_at=local(gw, app.due_at),
        signed_at=local(gw, app.signed_at), last_step=app.last_step,
        allowed_next_steps=list(view.allowed_next_steps),
        timeline=[TimelineEntry(step=r.step, actor=r.actor, at=local(gw, r.at), source=r.source,
                                recorded_at=local(gw, r.recorded_at)) for r in view.timeline],
        deadlines=[deadline_out(gw, d) for d in view.deadlines],
        breached=[d.step for d in view.deadlines if d.breached],
    )


# -- endpoints ---------------------------------------------------------------------------------------------------


# A waiting lease looks again this often even when no signal came (a signal from another instance can be
# lost, and an expired lease makes applications leasable without any signal).
LEASE_POLL_SECONDS = 1.0


@router.post("/provider/v1/leases", response_model=LeaseOut, responses=_ERRORS)
async def lease(provider: Provider, request: Request,
                body: Annotated[LeaseRequest | None, Body()] = None) -> LeaseOut:
    """Lease up to `max` queued applications, oldest first; none is ever in two live leases at once.
    Without a body: the defaults (50 for 300 seconds, no waiting). With `wait_seconds` and nothing
    queued, the answer waits until something is (or the time is up, or the gateway is stopping) on the
    event loop: no thread and no database connection is held while waiting."""
    gw = services_of(request)
    body = body or LeaseRequest()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait_seconds
    # Subscribed before the first look, so an intake committed between the look and the wait wakes it.
    with AsyncWaiter(gw.storage.signals, QUEUE, provider.bin) as waiter:
        while True:
            leased = await _in_thread(partial(gw.storage.lease, log=partial(_lease_entry, gw, provider, body)),
                                      provider.bin, body.max, body.lease_seconds, gw.clock.now())
            left = deadline - loop.time()
            if leased.applications or left <= 0 or gw.storage.signals.closed:
                break
            await waiter.wait(min(left, LEASE_POLL_SECONDS))
    if not leased.applications:  # changed nothing: recorded without a transaction of its own to ride in
        gw.message_log.add(_lease_entry(gw, provider, body, leased.lease_id, []))
    return LeaseOut(lease_id=leased.lease_id, expires_at=local(gw, leased.expires_at),
                    applications=[_leased(gw, request, a) for a in leased.applications])


@router.post("/provider/v1/leases/{lease_id}/ack", response_model=AckOut, responses=_ERRORS)
def ack(lease_id: str, body: AckRequest, provider: Provider, request: Request) -> AckOut:
    """Take applications of this lease off the queue for good; answers the ids that were acked."""
    gw = services_of(request)

    def entry(acked: list[str]) -> MessageLogEntry:
        record = {"lease_id": lease_id[:100], "ids": body.ids[:1000], "acked": acked}
        return messagelog.entry("in", "provider/ack", json.dumps(record).encode(), f"HTTP 200 ACKED {len(acked)}",
                                gw.clock.now(), sender_id=provider.bin)

    return AckOut(acked=gw.storage.ack(provider.bin, lease_id[:100], body.ids, gw.clock.now(), log=entry))


def _lease_entry(gw: Services, provider: ProviderConfig, body: LeaseRequest, lease_id: str,
                 ids: list[str]) -> MessageLogEntry:
    record = {"request": body.model_dump(), "lease_id": lease_id, "application_ids": ids}
    return messagelog.entry("in", "provider/leases", json.dumps(record).encode(), f"HTTP 200 LEASED {len(ids)}",
                            gw.clock.now(), sender_id=provider.bin)


@router.post("/provider/v1/applications/{id}/steps", response_model=ApplicationOut,
             responses={**_ERRORS, 409: {"model": ErrorOut, "description": "out of order; see allowedNextSteps"}})
async def record_step(app_id: AppId, body: StepRequest, provider: Provider, request: Request) -> ApplicationOut:
    """Record a step of the regulation (docs/provider-api.md) in its order."""
    raw = await request.body()
    return await _in_thread(_record_step, services_of(request), provider, app_id, body, raw)


def _record_step(gw: Services, provider: ProviderConfig, app_id: str, body: StepRequest, raw: bytes) -> ApplicationOut:
    app = _own_application(gw, provider, app_id)
    # The view comes with the step: a read after the commit must not turn a recorded step into an error.
    view = gw.workflow.record_step(app, body.step, body.actor, body.at, source=f"provider-api:{provider.bin}",
                                   request_body=raw)
    return _application(gw, view)


_XML_TYPES = ("application/xml", "text/xml")


@router.put(
    "/provider/v1/applications/{id}/result", response_model=ApplicationOut,
    responses={**_ERRORS, 409: {"model": ErrorOut, "description": "the last step is not RESULT_PREPARED"},
               413: {"model": ErrorOut, "description": "larger than server.max_message_bytes"}},
    openapi_extra={"requestBody": {"required": True, "description": "the signed LicenseDecision document",
                                   "content": {"application/xml": {"schema": {"type": "string"}}}}},
)
async def upload_result(app_id: AppId, provider: Provider, request: Request) -> ApplicationOut:
    """The management's signed `LicenseDecision` (records SIGNED; the application becomes GRANTED or REFUSED)."""
    gw = services_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in _XML_TYPES:
        raise UnsupportedMediaType(f"Content-Type {content_type[:80]} is not application/xml")
    body = await _read_limited(request, gw.config.server.max_message_bytes)
    return await _in_thread(_upload_result, gw, provider, app_id, body)


def _upload_result(gw: Services, provider: ProviderConfig, app_id: str, body: bytes) -> ApplicationOut:
    app = _own_application(gw, provider, app_id)
    return _application(gw, gw.workflow.record_result(app, body, source=f"result-upload:{provider.bin}"))


@router.get("/provider/v1/applications/{id}", response_model=ApplicationOut, responses=_ERRORS)
def get_application(app_id: AppId, provider: Provider, request: Request) -> ApplicationOut:
    """Status, timeline, every deadline (due time, met or breached), and the allowed next steps."""
    gw = services_of(request)
    app = _own_application(gw, provider, app_id)
    return _application(gw, gw.workflow.view(app))


_SAFE_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@router.get("/provider/v1/applications/{id}/documents/{index}", responses=_ERRORS,
            response_class=Response, name="get_document")
def get_document(app_id: AppId, index: int, provider: Provider, request: Request) -> Response:
    """One attached document, byte for byte as it arrived (its sha256 in `X-Content-SHA256`)."""
    gw = services_of(request)
    app = _own_application(gw, provider, app_id)
    found = gw.storage.get_document(app.id, index)
    if found is None:
        raise NotFound(f"application {app.id} has no document {index}")
    meta, content = found
    record = {"application_id": app.id, "index": index, "sha256": meta.sha256, "size": meta.size}
    # A download changes nothing: its record is stored before the document is answered.
    gw.message_log.write(messagelog.entry("in", "provider/documents", json.dumps(record).encode(), "HTTP 200",
                                          gw.clock.now(), sender_id=provider.bin, application_id=app.id))
    mime = meta.mime_type.lower() if _SAFE_MIME.match(meta.mime_type.lower()) else "application/octet-stream"
    return Response(content, media_type=mime, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(meta.file_name, safe='')}",
        "X-Content-SHA256": meta.sha256,
        "X-Content-Type-Options": "nosniff",
    })


@router.get("/provider/v1/breaches", response_model=list[BreachOut], responses=_ERRORS)
def breaches(provider: Provider, request: Request, limit: int = 1000) -> list[BreachOut]:
    """Every breached deadline of this provider's applications (done late, or overdue and not done)."""
    gw = services_of(request)
    found = gw.workflow.breaches(provider.bin, limit=max(1, min(limit, 10_000)))
    return [BreachOut(application_id=app.id, registration_number=app.registration_number,
                      deadline=deadline_out(gw, d)) for app, d in found]


# -- helpers -------------------------------------------------------------------------------------------------------


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise MessageTooLarge(f"{declared} bytes, the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MessageTooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Storage and signature checks block: run them off the event loop."""
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)
