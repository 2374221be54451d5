"""What the three front offices (the egov portal, the Center's IS, the e-license portal) have in common.

Each one fills an application, signs it (the applicant, or the Center's operator), submits it through SHEP
as its own senderId, and keeps a personal-cabinet record that the notifications SHEP pushes to it
(`POST /shep/push`, the AsyncChannel PUSH client interface) keep up to date. A final RESPONSE carries the
provider's signed decision, which the office verifies before it offers it for download.

JSON control API (the same on every office):
- `POST /applications` `{"applicant": "individual", "service_type": "ISSUE", "documents": [...]?, ...}`
  fills, signs and submits one application; answers the cabinet record with SHEP's answer in it.
- `POST /applications/{requestNumber}/status-query`: asks the gateway (MED_LICENSE_STATUS) through SHEP.
- `GET /cabinet/{requestNumber}` (JSON), `GET /cabinet/{requestNumber}/page` (HTML),
  `GET /cabinet/{requestNumber}/result` (the signed decision or the refusal receipt, as XML),
  `GET /cabinet` (every record), `GET /log`.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from lxml import etree

from core.xmlsafe import parse_xml
from mocks.common import (
    MED,
    ActionLog,
    ApplicationForm,
    FrontOfficeSettings,
    MockSettings,
    Party,
    Pki,
    SyncAnswer,
    async_send_response,
    egov_application_xml,
    iso_local,
    make_documents,
    new_id,
    now_local,
    parse_async_send,
    parse_notification,
    parse_sync_answer,
    sign_payload,
    standalone,
    status_request_xml,
    sync_request,
)

XML = "text/xml; charset=utf-8"
FIRST_HEAD, RIGHT_TO_SIGN = "1.2.398.3.3.4.1.2.1", "1.2.398.3.3.4.1.2.2"  # NCA RK roles (EKU OIDs)
FINAL = ("GRANTED", "REFUSED", "INTAKE_REFUSED")
CHECKLISTS = {
    "ISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"],
    "REISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"],
    "DUPLICATE": ["APPLICATION_FORM", "FEE_RECEIPT"],
}


@dataclass
class CabinetRecord:
    """One application as the office shows it to its applicant (the personal cabinet)."""

    request_number: str
    message_id: str
    channel: str
    service_type: str
    applicant: dict[str, str]
    signer: str
    submitted_at: str
    documents: list[str]
    answer_code: str = ""
    answer_message: str = ""
    answer_fault: bool = False
    answer_error_data: str = ""
    session_id: str = ""
    registration_number: str = ""
    status: str = ""
    status_kk: str = ""
    status_ru: str = ""
    received_at: str = ""
    due_at: str = ""
    signed_at: str = ""  # the receipt's signedAt: the signing time the gateway found proven by the timestamp
    refusal_kk: str = ""
    refusal_ru: str = ""
    missing_documents: list[dict[str, str]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, str] = field(default_factory=dict)
    result_verified: bool = False
    result_check: str = ""
    handed_over_at: str = ""
    receipt_xml: str = ""
    result_xml: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass
class OfficeState:
    name: str
    settings: MockSettings
    office: FrontOfficeSettings
    log: ActionLog
    build_payload: Callable[[ApplicationForm], bytes]
    pki: Pki | None = None
    records: dict[str, CabinetRecord] = field(default_factory=dict)
    by_message: dict[str, str] = field(default_factory=dict)  # sync messageId -> requestNumber
    client: httpx.AsyncClient | None = None
    counter: Any = field(default_factory=lambda: itertools.count(1))
    sign_layout: dict[str, Any] = field(default_factory=dict)

    def record(self, request_number: str) -> CabinetRecord:
        record = self.records.get(request_number)
        if record is None:
            raise HTTPException(404, f"no application {request_number} in this cabinet")
        return record


def create_office_app(
    name: str, settings: MockSettings, *, title: str, request_prefix: str,
    build_payload: Callable[[ApplicationForm], bytes] = egov_application_xml,
    sign_layout: dict[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app of one front office; the caller adds its own routes to it."""
    office: FrontOfficeSettings = getattr(settings, name)
    state = OfficeState(name=name, settings=settings, office=office, log=ActionLog(name),
                        build_payload=build_payload, sign_layout=sign_layout or {})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pki = Pki(settings.pki_dir)
        state.client = httpx.AsyncClient(timeout=60.0)
        try:
            yield
        finally:
            await state.client.aclose()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.office = state

    @app.post("/applications", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        order = await request.json()
        record = await _submit(state, order, request_prefix)
        return _view(record)

    @app.post("/applications/{request_number}/status-query")
    async def status_query(request_number: str) -> dict[str, Any]:
        record = state.record(request_number)
        answer = await _call_sync(state, "MED_LICENSE_STATUS", status_request_xml(request_number), new_id())
        state.log("status-queried", request=request_number, code=answer.code,
                  status=answer.data_text("status") or "-")
        if not answer.fault and answer.data is not None:
            _apply_status(state, record, answer.data, source="status-query")
        return {"code": answer.code, "status": answer.data_text("status"),
                "status_kk": answer.data_text("statusKk"), "status_ru": answer.data_text("statusRu"),
                "cabinet": _view(record)}

    @app.post("/shep/push")
    async def push(request: Request) -> Response:
        return _receive_push(state, await request.body())

    @app.get("/cabinet")
    def cabinet() -> list[dict[str, Any]]:
        return [_view(r) for r in state.records.values()]

    @app.get("/cabinet/{request_number}")
    def cabinet_record(request_number: str) -> dict[str, Any]:
        return _view(state.record(request_number))

    @app.get("/cabinet/{request_number}/page", response_class=HTMLResponse)
    def cabinet_page(request_number: str) -> str:
        return _page(title, state.record(request_number))

    @app.get("/cabinet/{request_number}/result")
    def cabinet_result(request_number: str) -> Response:
        record = state.record(request_number)
        body = record.result_xml or (record.receipt_xml if record.status == "INTAKE_REFUSED" else "")
        if not body:
            raise HTTPException(404, "no result yet")
        if record.result_xml and not record.result_verified:
            raise HTTPException(409, f"the result's signature did not verify: {record.result_check}")
        kind = "decision" if record.result_xml else "intake-refusal"
        return Response(body.encode("utf-8"), media_type="application/xml", headers={
            "Content-Disposition": f'attachment; filename="{request_number}-{kind}.xml"'})

    @app.get("/log")
    def action_log() -> list[dict[str, Any]]:
        return state.log.snapshot()

    return app


def _view(record: CabinetRecord) -> dict[str, Any]:
    out = asdict(record)
    out.pop("receipt_xml")
    out.pop("result_xml")
    out["final"] = record.final
    out["has_result"] = bool(record.result_xml)
    return out


async def _submit(state: OfficeState, order: dict[str, Any], prefix: str) -> CabinetRecord:
    """Fill the form from `order`, sign it and send it through SHEP; the answer goes into the cabinet."""
    assert state.pki is not None
    applicant: Party = state.pki.party(str(order.get("applicant", "individual")))
    service_type = str(order.get("service_type", "ISSUE"))
    codes = order.get("documents")
    if codes is None:
        codes = CHECKLISTS.get(service_type, [])
    request_number = str(order.get("request_number") or f"{prefix}{now_local():%y%m%d}{next(state.counter):05d}")
    if request_number in state.records:
        raise HTTPException(409, f"{request_number} was already submitted")
    legal = bool(applicant.bin) and order.get("as_legal_entity", True)
    form = ApplicationForm(
        request_number=request_number, channel=str(order.get("channel", _channel(state.name))),
        service_type=service_type,
        applicant_name=str(order.get("applicant_name") or applicant.applicant_name),
        applicant_iin=None if legal else str(order.get("applicant_iin") or applicant.iin),
        applicant_bin=str(order.get("applicant_bin") or applicant.bin) if legal else None,
        subtypes=list(order.get("subtypes") or ["PRIMARY_HEALTH_CARE"]),
        license_number=order.get("license_number"),
        documents=make_documents(list(codes), request_number),
    )
    signer_name = str(order.get("signer") or state.office.signer or applicant.name)
    layout = dict(state.sign_layout)
    if order.get("timestamp"):
        layout.update(xades="t", timestamp=await _stamper(state, order.get("signed_days_ago")))
    signed = sign_payload(state.build_payload(form), state.pki.party(signer_name), **layout)
    message_id = new_id()
    record = CabinetRecord(
        request_number=request_number, message_id=message_id, channel=form.channel, service_type=service_type,
        applicant={"name": form.applicant_name, "iin": form.applicant_iin or "", "bin": form.applicant_bin or ""},
        signer=signer_name, submitted_at=iso_local(), documents=list(codes),
    )
    state.records[request_number] = record
    state.by_message[message_id] = request_number
    state.log("signed", request=request_number, signer=signer_name, service=service_type,
              documents=",".join(codes) or "none")
    answer = await _call_sync(state, state.office.service_id, signed, message_id)
    record.answer_code, record.answer_message = answer.code, answer.message
    record.answer_fault, record.answer_error_data = answer.fault, answer.error_data
    record.session_id = answer.session_id
    if not answer.fault and answer.data is not None:
        record.receipt_xml = etree.tostring(answer.data, encoding="unicode")
        _apply_status(state, record, answer.data, source="receipt")
    state.log("submitted", request=request_number, message_id=message_id, code=answer.code,
              registration=record.registration_number or "-", status=record.status or "-")
    return record


async def _stamper(state: OfficeState, days_ago: object) -> Callable[[bytes], bytes]:
    """A XAdES-T stamper asking the office's TSA (RFC 3161 over HTTP); `days_ago` asks the NCA mock to
    backdate the stamp, standing for an application signed and stamped that long ago and sent only now."""
    if not state.office.tsa_url:
        raise HTTPException(422, "this office has no tsa_url: it cannot timestamp its signatures")
    headers = {"Content-Type": "application/timestamp-query"}
    if days_ago:
        headers["X-Mock-Days-Ago"] = str(float(days_ago))  # type: ignore[arg-type]
    url = state.office.tsa_url

    def stamp(data: bytes) -> bytes:
        from signing.tsa import request, token_of

        # Synchronous: the signer calls it in the middle of building the signature (the TSA is another server).
        answer = httpx.post(url, content=request(hashlib.sha256(data).digest(), nonce=secrets.randbits(62)),
                            headers=headers, timeout=30.0)
        answer.raise_for_status()
        return token_of(answer.content)

    return stamp


def _channel(name: str) -> str:
    return {"portal": "PORTAL", "center": "CENTER", "elicense": "ELICENSE"}[name]


async def _call_sync(state: OfficeState, service_id: str, payload: bytes, message_id: str) -> SyncAnswer:
    assert state.client is not None
    envelope = sync_request(message_id=message_id, service_id=service_id, sender_id=state.office.sender_id,
                            password=state.office.password, payload=payload,
                            as_string=state.office.data_as_string)
    if state.office.transport:
        from signing.wsse import sign_wsse

        assert state.pki is not None
        party = state.pki.party(state.office.transport)
        envelope = sign_wsse(envelope, party.key_pem, party.cert_pem, key_ref=state.office.transport_key_ref)
    answer = await state.client.post(state.settings.urls.shep + "/shep/sync", content=envelope,
                                     headers={"Content-Type": XML, "SOAPAction": '""'})
    try:
        return parse_sync_answer(answer.status_code, answer.content)
    except Exception as exc:  # noqa: BLE001 - an unreadable answer is recorded as such
        return SyncAnswer(http_status=answer.status_code, code="UNREADABLE_ANSWER", message=str(exc)[:200],
                          fault=True)


def _text(doc: etree._Element, name: str) -> str:
    return (doc.findtext(f"{{{MED}}}{name}") or "").strip()


def _apply_status(state: OfficeState, record: CabinetRecord, doc: etree._Element, source: str) -> None:
    """Update the cabinet from a Receipt, an IntakeRefusal or a StatusResponse."""
    record.registration_number = _text(doc, "registrationNumber") or record.registration_number
    if _text(doc, "status") and not (record.final and _text(doc, "status") not in FINAL):
        record.status = _text(doc, "status")
        record.status_kk, record.status_ru = _text(doc, "statusKk"), _text(doc, "statusRu")
    record.received_at = _text(doc, "receivedAt") or record.received_at
    record.due_at = _text(doc, "dueAt") or record.due_at
    record.signed_at = _text(doc, "signedAt") or record.signed_at
    if _text(doc, "reasonKk"):
        record.refusal_kk, record.refusal_ru = _text(doc, "reasonKk"), _text(doc, "reasonRu")
    missing = doc.findall(f"{{{MED}}}missingDocuments/{{{MED}}}document")
    if missing:
        record.missing_documents = [
            {"code": m.get("code", ""), "kk": _text(m, "nameKk"), "ru": _text(m, "nameRu")} for m in missing
        ]
    result = doc.find(f"{{{MED}}}result")
    if result is not None and len(result) and not record.result_xml:
        decision = next(c for c in result if isinstance(c.tag, str))
        _take_result(state, record, standalone(decision), source)


def _receive_push(state: OfficeState, body: bytes) -> Response:
    """The PUSH client's `sendMessage`: SHEP delivers one of the gateway's notifications."""
    try:
        message = parse_async_send(body)
        doc = message.document()
        if doc is None:
            raise ValueError("empty messageData/data")
        notification = parse_notification(doc)
    except Exception as exc:  # noqa: BLE001 - answered as not accepted, SHEP will retry or give up
        state.log("push-refused", reason=str(exc)[:200])
        return Response(async_send_response("", accepted=False, note=str(exc)[:200]), media_type=XML)
    request_number = notification.request_number or state.by_message.get(message.correlation_id, "")
    record = state.records.get(request_number)
    if record is None:
        state.log("push-unknown", request=request_number, correlation=message.correlation_id)
        return Response(async_send_response(message.message_id, note="unknown application, kept in the log"),
                        media_type=XML)
    seen = any(n["status"] == notification.status and n["changed_at"] == notification.changed_at
               for n in record.notifications)
    if seen:
        state.log("push-duplicate", request=request_number, status=notification.status)
        return Response(async_send_response(message.message_id, note="duplicate"), media_type=XML)
    record.notifications.append({
        "message_type": message.message_type, "status": notification.status, "status_kk": notification.status_kk,
        "status_ru": notification.status_ru, "changed_at": notification.changed_at, "due_at": notification.due_at,
        "correlation_id": message.correlation_id, "route_id": message.route_id, "received_at": iso_local(),
        "extra": notification.extra,
    })
    record.registration_number = notification.registration_number or record.registration_number
    if not record.final or notification.status in FINAL:
        record.status, record.status_kk, record.status_ru = (
            notification.status, notification.status_kk, notification.status_ru)
    record.due_at = notification.due_at or record.due_at
    if notification.result_xml:
        _take_result(state, record, notification.result_xml, "push")
    state.log("notified", request=request_number, type=message.message_type, status=notification.status,
              correlation_ok=message.correlation_id == record.message_id)
    return Response(async_send_response(message.message_id), media_type=XML)


def _take_result(state: OfficeState, record: CabinetRecord, xml: bytes, source: str) -> None:
    """Verify the provider's signed decision before the applicant is offered it."""
    if record.result_xml and record.result_verified:
        state.log("result-ignored", request=record.request_number, source=source,
                  reason="a verified result is already in the cabinet")
        return
    record.result_xml = xml.decode("utf-8")
    try:
        record.decision = _read_decision(xml)
        assert state.pki is not None
        record.result_check = verify_decision(xml, state.pki, state.settings.provider.bin)
        record.result_verified = True
    except Exception as exc:  # noqa: BLE001 - shown in the cabinet, the download is then refused
        record.result_verified = False
        record.result_check = f"{type(exc).__name__}: {exc}"[:300]
    state.log("result-received", request=record.request_number, source=source,
              decision=record.decision.get("decision", "?"), verified=record.result_verified,
              check=record.result_check[:120])


def _read_decision(xml: bytes) -> dict[str, str]:
    doc = parse_xml(xml)
    return {k: _text(doc, k) for k in ("registrationNumber", "decision", "licenseNumber", "reasonKk", "reasonRu",
                                       "issuedAt") if _text(doc, k)}


def verify_decision(xml: bytes, pki: Pki, provider_bin: str) -> str:
    """Check the decision's signature and that it was signed under the provider's BIN; says who signed."""
    from mocks.common import verify_signed_document

    signer = verify_signed_document(xml, pki)
    if signer.get("bin") != provider_bin:
        raise ValueError(f"signed under BIN {signer.get('bin') or 'none'}, not the provider's {provider_bin}")
    if not {FIRST_HEAD, RIGHT_TO_SIGN} & set(signer["roles"].split(",")):
        raise ValueError("the signer is neither the provider's first head nor a right-to-sign holder")
    return f"signature valid; signed by {signer.get('name')} under BIN {signer.get('bin')}"


def _page(title: str, record: CabinetRecord) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(n['received_at'])}</td><td>{e(n['status_kk'])}</td><td>{e(n['status_ru'])}</td></tr>"
        for n in record.notifications
    )
    missing = "".join(f"<li>{e(m['kk'])} / {e(m['ru'])}</li>" for m in record.missing_documents)
    decision = record.decision
    result = ""
    if record.result_xml:
        what = (f"Лицензия № {e(decision.get('licenseNumber', ''))}" if decision.get("decision") == "GRANTED"
                else f"{e(decision.get('reasonKk', ''))}<br>{e(decision.get('reasonRu', ''))}")
        result = (f"<p>{what}</p><p>{'✔' if record.result_verified else '✘'} {e(record.result_check)}</p>"
                  f'<p><a href="result">Жүктеп алу / Скачать</a></p>')
    return (
        f"<!doctype html><html lang=kk><meta charset=utf-8><title>{e(title)}: {e(record.request_number)}</title>"
        f"<h1>{e(record.request_number)}</h1>"
        f"<p>{e(record.status_kk)} / {e(record.status_ru)}</p>"
        f"<p>Тіркеу нөмірі / Регистрационный номер: {e(record.registration_number)}</p>"
        f"<p>Мерзімі / Срок: {e(record.due_at)}</p>"
        + (f"<p>{e(record.refusal_kk)}<br>{e(record.refusal_ru)}</p><ul>{missing}</ul>" if missing else "")
        + result
        + f"<table><tr><th>уақыты / время</th><th>kk</th><th>ru</th></tr>{rows}</table></html>"
    )
