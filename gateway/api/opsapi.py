"""The operators' JSON API, `/ops/v1/...`: applications, their timelines and messages, the message log's
search and (admins) a record's body, dead letters and their retry, trust and audit status. Bearer token of an operator
(`[[operators]] token`) or the console's session; 401 without, 403 for a viewer's admin action; every admin
action is a message-log record naming the operator. Refusals in the project's JSON error shape; times in
Astana time with their offset."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field

from core.domain import ApplicantKind, Channel, ServiceType, Status, Step
from core.errors import NotFound
from gateway.api.auth import Caller, admin, operator
from gateway.api.errors import JsonErrorRoute
from gateway.api.provider import REGISTRATION_NUMBER, DeadlineOut, ErrorOut, TimelineEntry, deadline_out, local
from gateway.services import Services, services_of
from gateway.storage import ApplicationQuery, ApplicationRecord, MessageQuery, MessageSummary, OutboxRecord
from gateway.trust_status import TrustReport

router = APIRouter(prefix="/ops/v1", tags=["operators"], route_class=JsonErrorRoute)
Operator = Annotated[Caller, Depends(operator)]
Admin = Annotated[Caller, Depends(admin)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no operator token or console session"},
    403: {"model": ErrorOut, "description": "a viewer asked for an admin action, or a console form without CSRF"},
    422: {"model": ErrorOut, "description": "a parameter is not valid"},
}


class ApplicantOut(BaseModel):
    kind: ApplicantKind
    iin: str | None
    bin: str | None
    name: str


class ApplicationSummary(BaseModel):
    id: str
    registration_number: str
    request_number: str
    provider_bin: str
    sender_id: str
    channel: Channel
    service_type: ServiceType
    applicant: ApplicantOut
    status: Status
    last_step: Step | None
    received_at: datetime
    due_at: datetime | None
    overdue: bool = Field(description="past its term (due_at) with no result yet")


class MessageOut(BaseModel):
    id: int = Field(description="the record's number in the message log")
    direction: str = Field(description='"in" (to the gateway) or "out"')
    endpoint: str = Field(description='what it crossed: "shep/sync", "provider/result", "shep/async", "ops/retry", ...')
    message_id: str | None
    sender_id: str | None
    correlation_id: str | None
    application_id: str | None
    verdict: str = Field(description='the gateway\'s verdict: "SCSS001", an error code, "DELIVERED", "HTTP 503", ...')
    at: datetime
    sha256: str = Field(description="SHA-256 of the body as stored, hex")
    size: int = Field(description="the body's size in bytes")


class OutboxOut(BaseModel):
    id: int
    application_id: str
    kind: str
    message_id: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


class ApplicationDetail(ApplicationSummary):
    timeline: list[TimelineEntry]
    deadlines: list[DeadlineOut]
    breached: list[Step]
    messages: list[MessageOut] = Field(description="every message about it that crossed the gateway, newest first")
    outbox: list[OutboxOut] = Field(description="its outbound messages and their delivery state, in order")


class AuditReport(BaseModel):
    state: str = Field(description="ok | warning | failing")
    reason: str = Field(description="in English; `code` and `params` for other languages")
    code: str
    params: dict[str, str] = {}
    records: int = Field(description="records in the hash chain (its length)")
    head: str = Field(description="the chain's head hash, hex")
    pending: int = Field(description="records stored but not sequenced into the chain yet")
    checkpoints: int
    last_checkpoint_size: int | None = Field(description="the chain length the last signed checkpoint covers")
    last_checkpoint_at: datetime | None
    uncovered: int = Field(description="records no checkpoint covers yet")
    seal_key_id: str


class RetryOut(BaseModel):
    id: int
    retried: bool


class RetryAllOut(BaseModel):
    retried: list[int]


# -- rendering -------------------------------------------------------------------------------------------------


def summary(gw: Services, app: ApplicationRecord) -> ApplicationSummary:
    now = gw.clock.now()
    return ApplicationSummary(
        id=app.id, registration_number=app.registration_number, request_number=app.request_number,
        provider_bin=app.provider_bin, sender_id=app.sender_id, channel=app.channel, service_type=app.service_type,
        applicant=ApplicantOut(kind=app.applicant.kind, iin=app.applicant.iin, bin=app.applicant.bin,
                               name=app.applicant.name),
        status=app.status, last_step=app.last_step, received_at=local(gw, app.received_at),
        due_at=local(gw, app.due_at),
        overdue=app.due_at is not None and app.due_at < now and not app.status.is_final,
    )


def message_out(gw: Services, m: MessageSummary) -> MessageOut:
    return MessageOut(id=m.id, direction=m.direction, endpoint=m.endpoint, message_id=m.message_id,
                      sender_id=m.sender_id, correlation_id=m.correlation_id, application_id=m.application_id,
                      verdict=m.verdict, at=local(gw, m.at), sha256=m.sha256, size=m.size)


def outbox_out(gw: Services, m: OutboxRecord) -> OutboxOut:
    return OutboxOut(id=m.id, application_id=m.application_id, kind=m.kind.value, message_id=m.message_id,
                     state=m.state.value, attempts=m.attempts, last_error=m.last_error,
                     created_at=local(gw, m.created_at), next_attempt_at=local(gw, m.next_attempt_at),
                     sent_at=local(gw, m.sent_at))


def application_detail(gw: Services, registration_number: str) -> ApplicationDetail:
    app = gw.storage.find_by_registration_number(registration_number) \
        if REGISTRATION_NUMBER.fullmatch(registration_number) else None
    if app is None:
        raise NotFound(f"no application {registration_number[:40]}")
    view = gw.workflow.view(app)
    messages = gw.storage.search_messages(MessageQuery(application_id=app.id, limit=500))
    return ApplicationDetail(
        **summary(gw, app).model_dump(),
        timeline=[TimelineEntry(step=r.step, actor=r.actor, at=local(gw, r.at), source=r.source,
                                recorded_at=local(gw, r.recorded_at)) for r in view.timeline],
        deadlines=[deadline_out(gw, d) for d in view.deadlines],
        breached=[d.step for d in view.deadlines if d.breached],
        messages=[message_out(gw, m) for m in messages],
        outbox=[outbox_out(gw, m) for m in gw.storage.outbox_messages(app.id)],
    )


# A checkpoint is due at most `checkpoint_seconds` after the first record it does not cover; later than
# these multiples of it (plus a margin for a busy database) something keeps the auditor from making one.
_AUDIT_WARNING, _AUDIT_FAILING = 3, 10


def audit_report(gw: Services) -> AuditReport:
    """The audit chain's state, in the colours of the trust status: ok, warning (checkpoints late), failing
    (no checkpoint for a long time while records wait, or no auditor)."""
    if gw.auditor is None:
        return AuditReport(state="failing", reason="the audit chain is not kept", code="audit_off", records=0,
                           head="", pending=0, checkpoints=0, last_checkpoint_size=None, last_checkpoint_at=None,
                           uncovered=0, seal_key_id="")
    s: dict[str, Any] = gw.auditor.status()
    now = gw.clock.now()
    period = gw.config.audit.checkpoint_seconds
    last_at = datetime.fromisoformat(s["last_checkpoint_at"]) if s["last_checkpoint_at"] else None
    since = datetime.fromisoformat(s["uncovered_since"]) if s.get("uncovered_since") else None
    uncovered = int(s["records"]) - int(s["last_checkpoint_size"] or 0) + int(s["pending"])
    waiting = (now - since).total_seconds() if since is not None and uncovered > 0 else 0.0
    params = {"records": str(s["records"]), "uncovered": str(uncovered), "minutes": str(int(waiting // 60))}
    if waiting > _AUDIT_FAILING * period + 60:
        state, code, reason = "failing", "audit_stalled", (
            f"{uncovered} records waiting {params['minutes']} min for a checkpoint")
    elif waiting > _AUDIT_WARNING * period + 10:
        state, code, reason = "warning", "audit_late", f"{uncovered} records waiting for a checkpoint"
    elif uncovered:
        state, code = "ok", "audit_pending"
        reason = f"{s['records']} records, {uncovered} to be covered by the next checkpoint"
    else:
        state, code, reason = "ok", "audit_ok", f"{s['records']} records, all covered by a signed checkpoint"
    return AuditReport(state=state, reason=reason, code=code, params=params, records=int(s["records"]),
                       head=str(s["head"]), pending=int(s["pending"]), checkpoints=int(s["checkpoints"]),
                       last_checkpoint_size=s["last_checkpoint_size"],
                       last_checkpoint_at=local(gw, last_at) if last_at else None, uncovered=uncovered,
                       seal_key_id=str(s["seal_key_id"]))


def retry_one(gw: Services, caller: Caller, outbox_id: int) -> bool:
    """Send a dead letter again, the operator's decision logged in the same transaction."""
    message = gw.storage.outbox_message(outbox_id)
    if message is None:
        raise NotFound(f"no outbound message {outbox_id}")
    entry = gw.operators.action_entry(caller.operator, "retry", {"outbox_id": outbox_id,
                                                                 "message_id": message.message_id},
                                      application_id=message.application_id)
    retried = gw.storage.retry_dead_letter(outbox_id, gw.clock.now(), log=[entry])
    if retried:
        gw.delivery.wake()
    return retried


def message_body(gw: Services, caller: Caller, entry_id: int) -> tuple[bytes, str]:
    """A record's body as stored, and a file name for it; the download is itself a logged admin action."""
    entry = gw.storage.message_entry(entry_id)
    if entry is None:
        raise NotFound(f"no message-log record {entry_id}")
    gw.operators.record(caller.operator, "download", {"record": entry_id, "sha256": entry.sha256},
                        application_id=entry.application_id)
    kind = "json" if entry.body[:1] in (b"{", b"[") else "xml" if entry.body[:1] == b"<" else "bin"
    return entry.body, f"licgate-message-{entry_id}.{kind}"


def retry_all(gw: Services, caller: Caller) -> list[int]:
    entry = gw.operators.action_entry(caller.operator, "retry-all", {})
    retried = gw.storage.retry_all_dead_letters(gw.clock.now(), log=[entry])
    if retried:
        gw.delivery.wake()
    return retried


# -- endpoints ---------------------------------------------------------------------------------------------------


@router.get("/applications", response_model=list[ApplicationSummary], responses=_ERRORS)
def search_applications(
    caller: Operator, request: Request,
    registration_number: Annotated[str | None, Query(max_length=40)] = None,
    request_number: Annotated[str | None, Query(max_length=100)] = None,
    iin: Annotated[str | None, Query(pattern=r"^\d{12}$")] = None,
    bin: Annotated[str | None, Query(pattern=r"^\d{12}$")] = None,  # noqa: A002 - the contract's name
    status: Status | None = None,
    channel: Channel | None = None,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ApplicationSummary]:
    """Applications by registration number, requestNumber, the applicant's IIN or BIN, status, channel,
    overdue (past the term, no result yet); newest first."""
    gw = services_of(request)
    query = ApplicationQuery(registration_number=registration_number, request_number=request_number, iin=iin,
                             bin=bin, status=status, channel=channel, overdue=overdue, limit=limit)
    return [summary(gw, a) for a in gw.storage.search_applications(query, gw.clock.now())]


@router.get("/applications/{registration_number}", response_model=ApplicationDetail,
            responses={**_ERRORS, 404: {"model": ErrorOut, "description": "no such application"}})
def get_application(registration_number: str, caller: Operator, request: Request) -> ApplicationDetail:
    """One application: timeline, deadlines and breaches, its messages and its outbound messages' state."""
    return application_detail(services_of(request), registration_number)


@router.get("/messages", response_model=list[MessageOut], responses=_ERRORS)
def search_messages(
    caller: Operator, request: Request,
    message_id: Annotated[str | None, Query(max_length=200)] = None,
    sender: Annotated[str | None, Query(max_length=200, description="senderId, or operator:NAME")] = None,
    verdict: Annotated[str | None, Query(max_length=100, description='e.g. "SCSS001", "SIGNATURE_INVALID"')] = None,
    since: Annotated[AwareDatetime | None, Query(description="at or after (ISO 8601 with offset)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="before (ISO 8601 with offset)")] = None,
    before_id: Annotated[int | None, Query(ge=1, description="the next page: records below this id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[MessageOut]:
    """Records of the message log by messageId, sender, verdict and time; newest first, without bodies."""
    gw = services_of(request)
    query = MessageQuery(message_id=message_id, sender_id=sender, verdict=verdict, since=since, until=until,
                         before_id=before_id, limit=limit)
    return [message_out(gw, m) for m in gw.storage.search_messages(query)]


@router.get("/messages/{entry_id}/body", response_class=Response,
            responses={**_ERRORS, 404: {"model": ErrorOut, "description": "no such record"},
                       200: {"content": {"application/octet-stream": {}}, "description": "the body as stored"}})
def get_message_body(entry_id: int, caller: Admin, request: Request) -> Response:
    """A record's body as stored (the envelope as it crossed) for admins; the download is logged."""
    body, name = message_body(services_of(request), caller, entry_id)
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/outbox/dead", response_model=list[OutboxOut], responses=_ERRORS)
def dead_letters(caller: Operator, request: Request,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[OutboxOut]:
    """Outbound messages given up on, with their last reason."""
    gw = services_of(request)
    return [outbox_out(gw, m) for m in gw.storage.dead_letters(limit)]


@router.post("/outbox/{outbox_id}/retry", response_model=RetryOut,
             responses={**_ERRORS, 404: {"model": ErrorOut, "description": "no such outbound message"}})
def retry_dead_letter(outbox_id: int, caller: Admin, request: Request) -> RetryOut:
    """Send a dead letter again (admins); `retried` is false when it was not dead."""
    return RetryOut(id=outbox_id, retried=retry_one(services_of(request), caller, outbox_id))


@router.post("/outbox/retry-all", response_model=RetryAllOut, responses=_ERRORS)
def retry_all_dead_letters(caller: Admin, request: Request) -> RetryAllOut:
    """Send every dead letter again (admins)."""
    return RetryAllOut(retried=retry_all(services_of(request), caller))


@router.get("/audit", response_model=AuditReport, responses=_ERRORS)
def audit(caller: Operator, request: Request) -> AuditReport:
    """The message log's hash chain: its length and head, records not yet sequenced or not yet covered by a
    signed checkpoint, the last checkpoint, the seal; ok / warning / failing with the reason
    (`licgate audit verify` checks the chain itself)."""
    return audit_report(services_of(request))


@router.get("/trust", response_model=TrustReport, responses=_ERRORS)
def trust(caller: Operator, request: Request) -> TrustReport:
    """The state of what signatures are judged by: CA certificates' expiry, each CRL's nextUpdate, OCSP
    reachability, the transport certificate's expiry, each with ok / warning / failing and the reason."""
    return services_of(request).trust_status.report()
