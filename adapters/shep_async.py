"""SHEP AsyncChannel v10 `sendMessage`: the gateway's status notifications and results back to the portals.

Renders the envelope of CONTRACT section 6 / DOMAIN.md section 3 (wrapper `sendMessage` in
`http://bip.bee.kz/AsyncChannel/v10/Types`, every child unqualified, `messageInfo` in the schema's
order) around a `StatusNotification` payload (`urn:kz:egov:medlicense:v1`, `schemas/medlicense_v1.xsd`),
reads a receiver's answer to it, and reads such an envelope back (for receivers and tests).

What counts as accepted (`read_send_answer`): an HTTP 2xx answer that carries no sign of refusal. A
SOAP Fault, a `status/code` of `MESSAGE_NOT_ACCTEPTED` (the official spelling; the correct spelling is
taken too) or of a delivery failure state is a refusal, whatever the HTTP status; any other 2xx answer,
including `MESSAGE_ACCEPTED`, `SCSS001`, an empty body or a body we cannot read, is an acceptance,
because the receiver took the message and told us so with its status line. Non-2xx is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from lxml import etree

from gateway.domain import Channel, Status
from gateway.errors import LicgateError
from gateway.texts import status_kk, status_ru
from gateway.xmlsafe import parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
ASYNC_TYPES = "http://bip.bee.kz/AsyncChannel/v10/Types"
MED = "urn:kz:egov:medlicense:v1"

NOTIFICATION = "NOTIFICATION"
RESPONSE = "RESPONSE"

REFUSAL_CODES = frozenset({"MESSAGE_NOT_ACCTEPTED", "MESSAGE_NOT_ACCEPTED", "NOT_DELIVERED", "DELIVERY_STOPPED"})


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """Everything one outbound `sendMessage` says; rendered once, stored, and sent as it is."""

    message_id: str  # the outbound message's own id, the same on every retry
    correlation_id: str  # the original request's messageId
    service_id: str  # the serviceId the application came in with
    message_type: str  # NOTIFICATION | RESPONSE
    route_id: str  # the senderId the application came from: SHEP routes by it
    message_date: datetime
    sender_id: str
    channel: Channel
    request_number: str
    registration_number: str
    status: Status
    changed_at: datetime
    password: str = field(default="", repr=False)
    session_id: str | None = None
    due_at: datetime | None = None
    result: bytes | None = None  # RESPONSE: the signed LicenseDecision document, embedded unchanged


def iso_local(at: datetime, tz: tzinfo) -> str:
    """`2026-11-27T11:09:03+05:00`: the offset written out, as SHEP's participants expect."""
    return at.astimezone(tz).isoformat(timespec="seconds")


def render_send_message(msg: StatusMessage, tz: tzinfo) -> bytes:
    """The complete SOAP 1.1 envelope of `msg` (no WS-Security: that is added over these bytes)."""
    if msg.message_type not in (NOTIFICATION, RESPONSE):
        raise ValueError(f"unsupported messageType {msg.message_type}")
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, f"{{{ASYNC_TYPES}}}sendMessage", nsmap={"typ": ASYNC_TYPES})
    request = _sub(wrapper, "request")
    info = _sub(request, "messageInfo")
    _sub(info, "messageId", msg.message_id)
    _sub(info, "correlationId", msg.correlation_id)
    _sub(info, "serviceId", msg.service_id)
    _sub(info, "messageType", msg.message_type)
    _sub(info, "routeId", msg.route_id)
    _sub(info, "messageDate", iso_local(msg.message_date, tz))
    sender = _sub(info, "sender")
    _sub(sender, "senderId", msg.sender_id)
    if msg.password:
        _sub(sender, "password", msg.password)
    prop = _sub(info, "properties")
    _sub(prop, "key", "channel")
    _sub(prop, "value", msg.channel.value)
    if msg.session_id:
        _sub(info, "sessionId", msg.session_id)
    data = _sub(_sub(request, "messageData"), "data")
    data.append(_notification(msg, tz))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _notification(msg: StatusMessage, tz: tzinfo) -> etree._Element:
    doc = etree.Element(f"{{{MED}}}StatusNotification", nsmap={None: MED})
    _med(doc, "requestNumber", msg.request_number)
    _med(doc, "registrationNumber", msg.registration_number)
    _med(doc, "status", msg.status.value)
    _med(doc, "statusKk", status_kk(msg.status))
    _med(doc, "statusRu", status_ru(msg.status))
    _med(doc, "changedAt", iso_local(msg.changed_at, tz))
    if msg.due_at is not None:
        _med(doc, "dueAt", iso_local(msg.due_at, tz))
    if msg.result is not None:
        # The stored document was verified at upload; it is parsed again (hardened) only to embed it.
        # Its signature covers the element alone, so receivers verify it as a standalone document.
        _med(doc, "result").append(parse_xml(msg.result))
    return doc


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, name)  # unqualified, as SHEP v10 wants every child
    if text is not None:
        element.text = text
    return element


def _med(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{MED}}}{name}")
    if text is not None:
        element.text = text
    return element


# -- the receiver's answer --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAnswer:
    accepted: bool
    verdict: str  # for the message log and the dead-letter reason: "MESSAGE_ACCEPTED", "HTTP 503 ..."


def read_send_answer(http_status: int, body: bytes) -> SendAnswer:
    """Decide whether the receiver accepted a `sendMessage` (see the module docstring)."""
    root = None
    if body.strip().startswith(b"<"):
        try:
            root = parse_xml(body)
        except LicgateError:
            root = None
    fault = _fault_reason(root) if root is not None else None
    code = _status_code(root) if root is not None else None
    if fault is not None:
        return SendAnswer(False, f"HTTP {http_status} SOAP Fault {fault}"[:500])
    if not 200 <= http_status < 300:
        return SendAnswer(False, f"HTTP {http_status}" + (f" {code}" if code else ""))
    if code in REFUSAL_CODES:
        return SendAnswer(False, code)
    return SendAnswer(True, code or f"HTTP {http_status}")


def _fault_reason(root: etree._Element) -> str | None:
    fault = next(iter(root.iter(f"{{{SOAP_ENV}}}Fault", f"{{{SOAP12_ENV}}}Fault")), None)
    if fault is None:
        return None
    code = next((e.text for e in fault.iter() if _local(e) == "errorCode" and e.text), None)
    text = fault.findtext("faultstring") or ""
    return f"{code or fault.findtext('faultcode') or ''}: {text}".strip(": ")


def _status_code(root: etree._Element) -> str | None:
    for status in root.iter():
        if _local(status) == "status":
            for child in status:
                if _local(child) == "code" and child.text and child.text.strip():
                    return child.text.strip()
    return None


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


# -- reading an envelope back (receivers, tests) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedStatusMessage:
    message_id: str
    correlation_id: str
    service_id: str
    message_type: str
    route_id: str
    message_date: str
    sender_id: str
    properties: dict[str, str]
    session_id: str
    request_number: str
    registration_number: str
    status: str
    status_kk: str
    status_ru: str
    changed_at: str
    due_at: str
    result: bytes | None  # the embedded LicenseDecision re-serialised as a standalone document
    info_order: tuple[str, ...]  # the element names of messageInfo, in order
    has_wsse: bool


def read_send_message(body: bytes) -> ReceivedStatusMessage:
    """Read a `sendMessage` envelope carrying a StatusNotification (raises ValueError if it is not one)."""
    root = parse_xml(body)
    request = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}sendMessage/request")
    if request is None:
        raise ValueError("not an AsyncChannel sendMessage")
    info = request.find("messageInfo")
    doc = request.find(f"messageData/data/{{{MED}}}StatusNotification")
    if info is None or doc is None:
        raise ValueError("sendMessage without messageInfo or StatusNotification")
    result = doc.find(f"{{{MED}}}result")
    decision = next((c for c in result if isinstance(c.tag, str)), None) if result is not None else None
    header = root.find(f"{{{SOAP_ENV}}}Header")
    return ReceivedStatusMessage(
        message_id=info.findtext("messageId") or "",
        correlation_id=info.findtext("correlationId") or "",
        service_id=info.findtext("serviceId") or "",
        message_type=info.findtext("messageType") or "",
        route_id=info.findtext("routeId") or "",
        message_date=info.findtext("messageDate") or "",
        sender_id=info.findtext("sender/senderId") or "",
        properties={p.findtext("key") or "": p.findtext("value") or "" for p in info.iterfind("properties")},
        session_id=info.findtext("sessionId") or "",
        request_number=doc.findtext(f"{{{MED}}}requestNumber") or "",
        registration_number=doc.findtext(f"{{{MED}}}registrationNumber") or "",
        status=doc.findtext(f"{{{MED}}}status") or "",
        status_kk=doc.findtext(f"{{{MED}}}statusKk") or "",
        status_ru=doc.findtext(f"{{{MED}}}statusRu") or "",
        changed_at=doc.findtext(f"{{{MED}}}changedAt") or "",
        due_at=doc.findtext(f"{{{MED}}}dueAt") or "",
        result=_standalone(decision) if decision is not None else None,
        info_order=tuple(_local(c) for c in info if isinstance(c.tag, str)),
        has_wsse=header is not None and any(_local(c) == "Security" for c in header),
    )


def _standalone(element: etree._Element) -> bytes:
    """The element as its own document, without the envelope's namespace declarations it inherits."""
    copy = parse_xml(etree.tostring(element))
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="UTF-8")
