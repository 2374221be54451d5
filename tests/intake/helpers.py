"""Builders for the intake tests: payloads as the front ends make them, signed with the test PKI, inside
SyncChannel envelopes, sent as real bytes over loopback."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import httpx
from lxml import etree

from signing.pki import Pki
from signing.signer import sign_enveloped

MED = "urn:kz:egov:medlicense:v1"
ELIC = "urn:kz:elicense:medlicense:v1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES = "http://bip.bee.kz/SyncChannel/v10/Types"
PROVIDER_BIN = "051240001234"
PASSWORDS = {"EGOV_PORTAL": "portal-secret", "CENTER_IS": "center-secret", "ELICENSE": "elicense-secret",
             "STATUS_ONLY": "status-secret", "WSSE_PORTAL": "wsse-secret", "WSSE_OPTIONAL": "wsse-optional",
             "WSSE_PINNED": "wsse-pinned"}
CHECKLIST = {
    "ISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"],
    "REISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"],
    "DUPLICATE": ["APPLICATION_FORM", "FEE_RECEIPT"],
}


@dataclass
class Doc:
    code: str
    content: bytes
    file_name: str = "doc.pdf"
    mime_type: str = "application/pdf"
    sha256: str | None = None  # None: the right digest

    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.content).hexdigest()


def docs_for(service_type: str, *, skip: tuple[str, ...] = ()) -> list[Doc]:
    return [Doc(code, f"%PDF-1.4 {code} {uuid.uuid4()}".encode()) for code in CHECKLIST[service_type]
            if code not in skip]


def application_xml(
    request_number: str | None = None, *, channel: str = "PORTAL", service_type: str = "ISSUE",
    iin: str | None = "871008401427", bin_: str | None = None, name: str = "АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ",
    documents: list[Doc] | None = None, license_number: str | None = None, licensor_bin: str | None = None,
    request_date: str = "2026-11-27T11:01:55+05:00", comment: bool = False,
) -> bytes:
    number = request_number or f"REQ-{uuid.uuid4().hex[:12]}"
    docs = docs_for(service_type) if documents is None else documents
    if license_number is None and service_type != "ISSUE":
        license_number = "KZ18LAA00032760"
    parts = [f'<MedicalLicenseApplication xmlns="{MED}">',
             f"<requestNumber>{escape(number)}</requestNumber>",
             f"<requestDate>{request_date}</requestDate>",
             f"<channel>{channel}</channel>", f"<serviceType>{service_type}</serviceType>"]
    if licensor_bin:
        parts.append(f"<licensorBin>{licensor_bin}</licensorBin>")
    parts.append("<applicant>" + (f"<iin>{iin}</iin>" if bin_ is None else f"<bin>{bin_}</bin>")
                 + f"<name>{escape(name)}</name></applicant>")
    if comment:
        parts.append("<!-- signed with comments -->")
    parts.append("<activity><subtype>PRIMARY_HEALTH_CARE</subtype></activity>")
    if license_number:
        parts.append(f"<licenseNumber>{license_number}</licenseNumber>")
    parts.append("<documents>")
    for d in docs:
        parts.append(f"<document code={quoteattr(d.code)} fileName={quoteattr(d.file_name)} "
                     f"mimeType={quoteattr(d.mime_type)} sha256={quoteattr(d.digest())}>"
                     f"{base64.b64encode(d.content).decode()}</document>")
    parts.append("</documents></MedicalLicenseApplication>")
    return "".join(parts).encode()


def elicense_xml(application_number: str | None = None, *, operation: str = "NEW", idnumber: str = "871008401427",
                 kind: str = "INDIVIDUAL", documents: list[Doc] | None = None) -> bytes:
    number = application_number or f"KZ{uuid.uuid4().int % 10**12:012d}"
    docs = docs_for({"NEW": "ISSUE", "REREGISTRATION": "REISSUE", "DUPLICATE": "DUPLICATE"}[operation]) \
        if documents is None else documents
    parts = [f'<LicenseApplication xmlns="{ELIC}">', f"<applicationNumber>{number}</applicationNumber>",
             "<submittedAt>2026-11-27T10:00:00+05:00</submittedAt>", f"<operation>{operation}</operation>",
             f'<licensor bin="{PROVIDER_BIN}"/>',
             f'<licensee type="{kind}" idNumber="{idnumber}"><fullName>АХМЕТОВА АЙГЕРІМ</fullName></licensee>',
             '<activity><subtype code="PRIMARY_HEALTH_CARE"/></activity>']
    if operation != "NEW":
        parts.append('<existingLicense number="KZ18LAA00032760"/>')
    parts.append("<attachments>")
    for d in docs:
        parts.append(f"<attachment kind={quoteattr(d.code)} name={quoteattr(d.file_name)} "
                     f"contentType={quoteattr(d.mime_type)} sha256={quoteattr(d.digest())}>"
                     f"<content>{base64.b64encode(d.content).decode()}</content></attachment>")
    parts.append("</attachments></LicenseApplication>")
    return "".join(parts).encode()


def sign(xml: bytes, pki: Pki, party: str = "individual", **kw: object) -> bytes:
    p = pki.party(party)
    return sign_enveloped(xml, p.key_pem, p.cert_pem, **kw)  # type: ignore[arg-type]


_DECL = re.compile(rb"^<\?xml[^>]*\?>\s*")


def envelope(
    payload: bytes, *, sender: str = "EGOV_PORTAL", password: str | None = None, service: str = "MED_LICENSE",
    message_id: str | None = None, as_string: bool = False, header: str = "<soapenv:Header/>",
    session_id: str | None = None,
) -> bytes:
    """A SendMessage as the samples show it: soapenv and typ declared on the root, the payload inline or
    as an escaped string."""
    pw = PASSWORDS.get(sender, "x") if password is None else password
    if as_string:
        data = ('<data xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                'xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:type="xs:string">'
                + escape(payload.decode("utf-8")) + "</data>").encode()
    else:
        data = b"<data>" + _DECL.sub(b"", payload) + b"</data>"
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:typ="{TYPES}">{header}<soapenv:Body>'
        "<typ:SendMessage><request><requestInfo>"
        f"<messageId>{message_id or uuid.uuid4()}</messageId>"
        f"<serviceId>{service}</serviceId>"
        "<messageDate>2026-11-27T11:02:17+05:00</messageDate>"
        f"<sender><senderId>{escape(sender)}</senderId><password>{escape(pw)}</password></sender>"
        + (f"<sessionId>{session_id}</sessionId>" if session_id else "")
        + "</requestInfo><requestData>"
    ).encode()
    return head + data + b"</requestData></request></typ:SendMessage></soapenv:Body></soapenv:Envelope>"


@dataclass
class Reply:
    http_status: int
    root: etree._Element
    body: bytes
    retry_after: str | None = None  # the Retry-After header, when there is one

    @property
    def fault_code(self) -> str | None:
        return self.root.findtext(f".//{{{TYPES}}}SendMessageFault1_SendMessageFault/errorCode")

    @property
    def error_data(self) -> str | None:
        return self.root.findtext(f".//{{{TYPES}}}SendMessageFault1_SendMessageFault/errorData")

    @property
    def status_code(self) -> str | None:
        return self.root.findtext(f".//{{{TYPES}}}SendMessageResponse/response/responseInfo/status/code")

    @property
    def data(self) -> etree._Element:
        data = self.root.find(f".//{{{TYPES}}}SendMessageResponse/response/responseData/data")
        assert data is not None, self.body[:2000]
        return data[0]

    def receipt(self, name: str) -> str | None:
        return self.data.findtext(f"{{{MED}}}{name}")


def post(url: str, body: bytes, *, content_type: str = "text/xml; charset=utf-8",
         headers: dict[str, str] | None = None, client: httpx.Client | None = None) -> Reply:
    h = {"Content-Type": content_type, "SOAPAction": '""', **(headers or {})}
    c = client or httpx
    r = c.post(url + "/shep/sync", content=body, headers=h, timeout=60)
    return Reply(r.status_code, etree.fromstring(r.content), r.content, r.headers.get("retry-after"))
