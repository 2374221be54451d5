"""Reading the gateway's AsyncChannel `sendMessage` envelopes back, as a receiver would: for tests only
(the product renders them, `adapters.shep_async`; the mocks read them with their own code)."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from adapters.shep_async import ASYNC_TYPES
from adapters.xml import MED, SOAP_ENV, local_name
from core.xmlsafe import parse_xml


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
        info_order=tuple(local_name(c) for c in info if isinstance(c.tag, str)),
        has_wsse=header is not None and any(local_name(c) == "Security" for c in header),
    )


def _standalone(element: etree._Element) -> bytes:
    """The element as its own document, without the envelope's namespace declarations it inherits."""
    copy = parse_xml(etree.tostring(element))
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="UTF-8")
