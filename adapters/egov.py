"""The egov payload dialect (`urn:kz:egov:medlicense:v1`, docs/shep.md), used by the Portal
and the Center: `MedicalLicenseApplication` and `StatusRequest` in, `Receipt`, `IntakeRefusal` and
`StatusResponse` out (the e-license dialect gets the same answers).

`read_application` reads only from the element the signature verifier handed back, never from the
unverified tree (and empties the document elements it has read: the tree is not used afterwards).
`check_payload` is the payload-schema stage: the XSD plus the rules an XSD 1.0 cannot say (licenseNumber
for REISSUE and DUPLICATE).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from datetime import datetime, tzinfo
from functools import lru_cache
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

import schemas
from adapters.xml import MED, format_datetime, parse_lenient_datetime, schema_error, strip_declaration, text_of
from core.domain import Applicant, ApplicantKind, Application, Channel, Document, ServiceType, Status
from core.errors import SchemaInvalid
from core.texts import INTAKE_REFUSAL_TEXT, document_kk, document_ru, status_kk, status_ru
from core.xmlsafe import load_schema

NS = MED
APPLICATION = f"{{{NS}}}MedicalLicenseApplication"
STATUS_REQUEST = f"{{{NS}}}StatusRequest"
NOT_FOUND = "NOT_FOUND"  # StatusResponse status when the sender has no application with that number

_NEEDS_LICENSE_NUMBER = ("REISSUE", "DUPLICATE")


@lru_cache(maxsize=1)
def payload_schema() -> etree.XMLSchema:
    return load_schema(schemas.path("medlicense_v1.xsd"))


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def validate(root: etree._Element) -> None:
    """Raise SchemaInvalid naming the element when `root` fails medlicense_v1.xsd."""
    schema = payload_schema()
    if not schema.validate(root):
        raise SchemaInvalid(schema_error(schema.error_log))


def check_payload(root: etree._Element) -> None:
    """The payload-schema stage for an application: the XSD, then licenseNumber where required."""
    validate(root)
    service_type = text_of(root.find(_q("serviceType")))
    if service_type in _NEEDS_LICENSE_NUMBER and root.find(_q("licenseNumber")) is None:
        raise SchemaInvalid(f"/MedicalLicenseApplication/licenseNumber: required for {service_type}")


def read_application(root: etree._Element, tz: tzinfo) -> Application:
    """The application in a verified, schema-valid `MedicalLicenseApplication` element."""
    applicant_el = root.find(_q("applicant"))
    assert applicant_el is not None  # schema-valid
    iin = text_of(applicant_el.find(_q("iin")))
    bin_ = text_of(applicant_el.find(_q("bin")))
    applicant = Applicant(
        kind=ApplicantKind.INDIVIDUAL if iin is not None else ApplicantKind.LEGAL_ENTITY,
        name=text_of(applicant_el.find(_q("name"))) or "",
        iin=iin,
        bin=bin_,
    )
    documents = tuple(
        Document(
            code=d.get("code", ""),
            file_name=d.get("fileName", ""),
            mime_type=d.get("mimeType", ""),
            sha256=d.get("sha256", ""),
            content=take_content(d),
        )
        for d in root.iterfind(f"{_q('documents')}/{_q('document')}")
    )
    return Application(
        request_number=text_of(root.find(_q("requestNumber"))) or "",
        request_date=parse_lenient_datetime(text_of(root.find(_q("requestDate"))) or "", tz),
        channel=Channel(text_of(root.find(_q("channel")))),
        service_type=ServiceType(text_of(root.find(_q("serviceType")))),
        applicant=applicant,
        activity_subtypes=tuple(
            text_of(s) or "" for s in root.iterfind(f"{_q('activity')}/{_q('subtype')}")
        ),
        documents=documents,
        licensor_bin=text_of(root.find(_q("licensorBin"))),
        license_number=text_of(root.find(_q("licenseNumber"))),
        dialect="egov",
    )


def take_content(element: etree._Element | None) -> bytes:
    """The base64 content of a document element, decoded; the element is emptied once its text is read (the
    verified tree is discarded after reading), so that a large document is never held three times at once:
    as the tree's text, as a str and decoded (10 MB message: 27 -> 18 MB at this step's peak)."""
    if element is None:
        return b""
    text = text_of(element) or ""
    element.text = None  # its attributes stay: only the text and what is inside it go
    del element[:]
    return decode_base64(text)


def decode_base64(text: str) -> bytes:
    """Base64 content (already checked by the schema as xs:base64Binary; line breaks are allowed). Not
    ASCII at all is ValueError, not binascii.Error: the schema's check let a Kazakh letter through."""
    try:
        return binascii.a2b_base64(text)
    except ValueError as exc:  # binascii.Error is one
        raise SchemaInvalid(f"document content is not base64: {exc}") from None


def read_status_request(root: etree._Element) -> str:
    """The number asked about in a schema-valid `StatusRequest`."""
    return text_of(root.find(_q("requestNumber"))) or ""


# -- answers ---------------------------------------------------------------------------------------------


def _el(name: str, value: str) -> str:
    return f"<{name}>{escape(value)}</{name}>"


def render_receipt(registration_number: str, received_at: datetime, due_at: datetime, tz: tzinfo,
                   signed_at: datetime | None = None) -> bytes:
    """The `SCSS001` receipt: the application is stored and queued for the provider; `signed_at` is the
    signing time its XAdES-T timestamp proves, when it carries one that verified."""
    signed = _el("signedAt", format_datetime(signed_at, tz)) if signed_at is not None else ""
    return (
        f'<Receipt xmlns="{NS}">'
        f"{_el('registrationNumber', registration_number)}"
        f"{_el('status', Status.RECEIVED.value)}"
        f"{_el('statusKk', status_kk(Status.RECEIVED))}"
        f"{_el('statusRu', status_ru(Status.RECEIVED))}"
        f"{_el('receivedAt', format_datetime(received_at, tz))}"
        f"{_el('dueAt', format_datetime(due_at, tz))}"
        f"{signed}"
        "</Receipt>"
    ).encode()


def _missing(codes: Sequence[str]) -> str:
    return "<missingDocuments>" + "".join(
        f"<document code={quoteattr(code)}>{_el('nameKk', document_kk(code))}{_el('nameRu', document_ru(code))}"
        "</document>"
        for code in codes
    ) + "</missingDocuments>"


def render_intake_refusal(
    registration_number: str, received_at: datetime, missing: Sequence[str], tz: tzinfo
) -> bytes:
    """The refusal receipt for an incomplete package (status code INTAKE_REFUSED), in Kazakh and Russian."""
    kk, ru = INTAKE_REFUSAL_TEXT
    return (
        f'<IntakeRefusal xmlns="{NS}">'
        f"{_el('registrationNumber', registration_number)}"
        f"{_el('status', Status.INTAKE_REFUSED.value)}"
        f"{_el('statusKk', status_kk(Status.INTAKE_REFUSED))}"
        f"{_el('statusRu', status_ru(Status.INTAKE_REFUSED))}"
        f"{_el('receivedAt', format_datetime(received_at, tz))}"
        f"{_el('reasonKk', kk + ' ' + ', '.join(document_kk(c) for c in missing))}"
        f"{_el('reasonRu', ru + ' ' + ', '.join(document_ru(c) for c in missing))}"
        f"{_missing(missing)}"
        "</IntakeRefusal>"
    ).encode()


def render_status_response(
    *,
    request_number: str,
    status: str,
    status_texts: tuple[str, str],
    tz: tzinfo,
    registration_number: str | None = None,
    received_at: datetime | None = None,
    changed_at: datetime | None = None,
    due_at: datetime | None = None,
    missing: Sequence[str] = (),
    result: bytes | None = None,
) -> bytes:
    """The answer to a StatusRequest; `result` is the signed LicenseDecision document, byte for byte."""
    parts = [f'<StatusResponse xmlns="{NS}">', _el("requestNumber", request_number)]
    if registration_number:
        parts.append(_el("registrationNumber", registration_number))
    parts += [_el("status", status), _el("statusKk", status_texts[0]), _el("statusRu", status_texts[1])]
    for name, value in (("receivedAt", received_at), ("changedAt", changed_at), ("dueAt", due_at)):
        if value is not None:
            parts.append(_el(name, format_datetime(value, tz)))
    if missing:
        parts.append(_missing(missing))
    head = "".join(parts).encode()
    if result:
        head += b"<result>" + strip_declaration(result) + b"</result>"
    return head + b"</StatusResponse>"
