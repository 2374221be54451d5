"""SHEP AsyncChannel v10 `sendMessage`: the gateway's status notifications and results back to the portals.

Renders the envelope of docs/shep.md / docs/shep.md (wrapper `sendMessage` in
`http://bip.bee.kz/AsyncChannel/v10/Types`, every child unqualified, `messageInfo` in the schema's
order) around a `StatusNotification` payload (`urn:kz:egov:medlicense:v1`, `schemas/medlicense_v1.xsd`),
and reads a receiver's answer to it.

What counts as accepted (`read_send_answer`): an HTTP 2xx answer that carries no sign of refusal. A
SOAP Fault, a `status/code` of `MESSAGE_NOT_ACCTEPTED` (the official spelling; the correct spelling is
taken too) or of a delivery failure state is a refusal, whatever the HTTP status; any other 2xx answer,
including `MESSAGE_ACCEPTED`, `SCSS001`, an empty body or a body we cannot read, is an acceptance,
because the receiver took the message and told us so with its status line. Non-2xx is a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from lxml import etree

from adapters.xml import MED, SOAP12_ENV, SOAP_ENV, format_datetime, local_name
from core.domain import Channel, Status
from core.errors import LicgateError
from core.texts import status_kk, status_ru
from core.xmlsafe import parse_xml

ASYNC_TYPES = "http://bip.bee.kz/AsyncChannel/v10/Types"

NOTIFICATION = "NOTIFICATION"
RESPONSE = "RESPONSE"

REFUSAL_CODES = frozenset({"MESSAGE_NOT_ACCTEPTED", "MESSAGE_NOT_ACCEPTED", "NOT_DELIVERED", "DELIVERY_STOPPED"})

# What a stored envelope carries in place of the gateway's SHEP password: the password is filled in at each
# attempt (`with_sender_password`), so that no outbox row holds it and a changed password reaches the
# messages already queued.
PASSWORD_PLACEHOLDER = "***"

# The sender block as `render_send_message` writes it: `<sender><senderId>..</senderId>` and, when there is
# one, `<password>..</password>`.
_SENDER = re.compile(rb"(<sender><senderId>[^<]*</senderId>)(?:<password>[^<]*</password>)?(</sender>)")


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


def with_sender_password(envelope: bytes, password: str) -> bytes:
    """`envelope` (rendered by `render_send_message`) with its sender's password set to `password`, or
    without a password element when it is empty. Only the sender block of `messageInfo` is touched: it comes
    before `messageData`, so nothing in the payload (a result document) can be mistaken for it."""
    end = envelope.find(b"<messageData>")
    head, tail = (envelope, b"") if end < 0 else (envelope[:end], envelope[end:])
    # Serialized by lxml, as the rest of the envelope was: "\r" travels as a character reference, and a
    # character XML cannot carry is a ValueError here rather than an envelope nobody can read.
    element = etree.tostring(_password_element(password)) if password else b""
    head = _SENDER.sub(lambda m: m.group(1) + element + m.group(2), head, count=1)
    return head + tail  # without a sender block (not one of ours), unchanged: the receiver refuses it


def _password_element(password: str) -> etree._Element:
    element = etree.Element("password")
    element.text = password
    return element


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
    _sub(info, "messageDate", format_datetime(msg.message_date, tz))
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
    _med(doc, "changedAt", format_datetime(msg.changed_at, tz))
    if msg.due_at is not None:
        _med(doc, "dueAt", format_datetime(msg.due_at, tz))
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
    code = next((e.text for e in fault.iter() if local_name(e) == "errorCode" and e.text), None)
    text = fault.findtext("faultstring") or ""
    return f"{code or fault.findtext('faultcode') or ''}: {text}".strip(": ")


def _status_code(root: etree._Element) -> str | None:
    for status in root.iter():
        if local_name(status) == "status":
            for child in status:
                if local_name(child) == "code" and child.text and child.text.strip():
                    return child.text.strip()
    return None
