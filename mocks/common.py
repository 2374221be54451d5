"""What every mock shares: settings, the test PKI, SOAP envelopes of SHEP v10, payloads, an action log.

The mocks stand in for outside parties, so they only speak the gateway's public wire formats (SHEP
SyncChannel and AsyncChannel SOAP, the provider pull API). Every envelope here is written by hand as a
real participant's software would write it; every envelope read goes through `core.xmlsafe`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
import tomllib
import uuid
from collections import deque
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from core.xmlsafe import parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SYNC_TYPES = "http://bip.bee.kz/SyncChannel/v10/Types"
ASYNC_TYPES = "http://bip.bee.kz/AsyncChannel/v10/Types"
MED = "urn:kz:egov:medlicense:v1"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

ASTANA = timezone(timedelta(hours=5))  # SHEP participants write local time with its offset

PROVIDER_BIN = "051240001234"
PROVIDER_NAME_KK = "Солтүстік Қазақстан облысының денсаулық сақтау басқармасы"
PROVIDER_NAME_RU = "Управление здравоохранения Северо-Казахстанской области"


def now_local() -> datetime:
    return datetime.now(UTC).astimezone(ASTANA)


def iso_local(when: datetime | None = None) -> str:
    return (when or now_local()).astimezone(ASTANA).isoformat(timespec="seconds")


def iso_precise() -> str:
    """Now, to the microsecond: a step recorded right after another must not look earlier than it."""
    return now_local().isoformat(timespec="microseconds")


def standalone(element: etree._Element) -> bytes:
    """`element` as a document of its own, without the namespace declarations of the envelope around it.

    lxml would copy every declaration in scope (soapenv:, typ:, ...) onto the element, and an inclusive
    c14n of that is not what the signer signed.
    """
    copy = parse_xml(etree.tostring(element))
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="utf-8")


def new_id() -> str:
    return str(uuid.uuid4())


# --- settings ----------------------------------------------------------------------------------------


@dataclass
class Urls:
    """Where each party listens (base URLs, no trailing slash)."""

    gateway: str = "http://127.0.0.1:8080"
    shep: str = "http://127.0.0.1:9000"
    portal: str = "http://127.0.0.1:9101"
    center: str = "http://127.0.0.1:9102"
    elicense: str = "http://127.0.0.1:9103"
    provider: str = "http://127.0.0.1:9104"


@dataclass
class ShepSettings:
    # recipient senderId -> its PUSH URL; empty means the default below from [urls]
    push: dict[str, str] = field(default_factory=dict)
    push_attempts: int = 20
    push_backoff_seconds: float = 0.2
    push_backoff_max_seconds: float = 5.0
    relay_timeout_seconds: float = 30.0
    # WS-Security on the gateway's AsyncChannel messages: checked against the test PKI's CA and this BIN
    gateway_bin: str = PROVIDER_BIN
    require_wsse: bool = False  # true: an unsigned or badly signed sendMessage is refused with a fault


@dataclass
class FrontOfficeSettings:
    """A SHEP participant that submits applications (the portal, the Center, the e-license portal)."""

    sender_id: str = ""
    password: str = ""
    service_id: str = "MED_LICENSE"  # the serviceId applications are sent under (e-license: its own, aliased)
    signer: str = ""  # PKI party that signs instead of the applicant (the Center's operator); "" = applicant
    dialect: str = "egov"  # egov | elicense (the e-license portal's own payload dialect)
    data_as_string: bool = False  # put the payload into `data` as an escaped string instead of inline XML
    transport: str = ""  # PKI party whose key signs the SOAP Body (WS-Security), e.g. "portal_transport"
    transport_key_ref: str = "bst"  # bst (certificate in the message) | issuer-serial (named only)
    # NCA's timestamping service (`licgate mock nca`'s POST /tsp): with it, an order with "timestamp": true
    # is signed XAdES-T, its SignatureTimeStamp from that TSA
    tsa_url: str = ""


@dataclass
class ProviderRule:
    """A decision rule of the provider mock: the first rule whose fields all match decides."""

    decision: str = "GRANTED"
    applicant: str = ""  # IIN or BIN; "" matches any
    request_number: str = ""  # the sending system's own number: a rule for one application; "" matches any
    service_type: str = ""  # "" matches any
    channel: str = ""  # "" matches any
    reason_kk: str = ""
    reason_ru: str = ""


@dataclass
class ProviderSettings:
    token: str = "provider-token-0123456789"
    bin: str = PROVIDER_BIN
    signer: str = "provider_head"  # PKI party that signs the results (first head or right to sign)
    employee: str = "Ахметов Б. (уәкілетті қызметкер / ответственный исполнитель)"
    management: str = "Сейітова Г. (басшылық / руководство)"
    poll_seconds: float = 0.5
    lease_seconds: int = 300
    lease_max: int = 50
    # seconds to wait before each step (compressed time: in real life minutes and days)
    delays: dict[str, float] = field(default_factory=lambda: {
        "REGISTERED": 0.2, "SENT_TO_MANAGEMENT": 0.2, "RETURNED_FOR_PREPARATION": 0.3,
        "RESULT_PREPARED": 0.3, "SIGNED": 0.2, "ISSUED": 0.2,
    })
    license_prefix: str = "KZ41LAA"
    license_start: int = 1873
    rules: list[ProviderRule] = field(default_factory=list)


@dataclass
class MockSettings:
    """Settings of every mock, from one TOML file (`licgate mock NAME --config FILE`); all keys optional."""

    pki_dir: Path = Path("./pki")
    next_update_seconds: int = 3600  # read by the NCA mock (mocks/nca.py), so one file can serve all six
    urls: Urls = field(default_factory=Urls)
    shep: ShepSettings = field(default_factory=ShepSettings)
    portal: FrontOfficeSettings = field(default_factory=lambda: FrontOfficeSettings(
        sender_id="EGOV_PORTAL", password="portal-secret"))
    center: FrontOfficeSettings = field(default_factory=lambda: FrontOfficeSettings(
        sender_id="CENTER_IS", password="center-secret", signer="center_operator"))
    elicense: FrontOfficeSettings = field(default_factory=lambda: FrontOfficeSettings(
        sender_id="ELICENSE", password="elicense-secret", dialect="elicense"))
    provider: ProviderSettings = field(default_factory=ProviderSettings)

    def push_url(self, recipient: str) -> str | None:
        """The PUSH URL SHEP delivers a recipient's messages to (the participant's `/shep/push`)."""
        if recipient in self.shep.push:
            return self.shep.push[recipient]
        for name in ("portal", "center", "elicense"):
            office: FrontOfficeSettings = getattr(self, name)
            if office.sender_id == recipient:
                return getattr(self.urls, name) + "/shep/push"
        return None


class SettingsError(Exception):
    pass


def _fill(obj: Any, data: dict[str, Any], where: str) -> Any:
    """Set the keys of a TOML table on dataclass `obj` (its defaults stay where the file is silent),
    refusing unknown keys: a typo should not pass silently."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where.rstrip('.')}: must be a table")
    known = {f.name for f in fields(obj)}
    for key, value in data.items():
        if key not in known:
            raise SettingsError(f"{where}{key}: unknown key")
        current = getattr(obj, key)
        if is_dataclass(current):
            value = _fill(current, value, f"{where}{key}.")
        elif key == "rules":
            value = [_fill(ProviderRule(), r, f"{where}rules[{i}].") for i, r in enumerate(value)]
        elif key == "delays":
            value = {**current, **{k: float(v) for k, v in value.items()}}
        elif isinstance(current, Path):
            value = Path(value)
        setattr(obj, key, value)
    return obj


def load_settings(path: str | Path | None, **overrides: Any) -> MockSettings:
    """Read a mock settings TOML file (or take the defaults when `path` is None)."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read mock settings {path}: {exc}") from None
    settings: MockSettings = _fill(MockSettings(), data, "")
    if path and not settings.pki_dir.is_absolute():
        settings.pki_dir = (Path(path).resolve().parent / settings.pki_dir).resolve()
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


# --- the test PKI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A party of the test PKI as the mocks use it: keys to sign with and the identity to fill forms with."""

    name: str
    key_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)
    iin: str | None = None
    bin: str | None = None
    person_name: str = ""  # "SURNAME NAME PATRONYMIC" as on the certificate
    organization: str = ""

    @property
    def applicant_name(self) -> str:
        """What goes into `applicant/name`: the organisation for a legal entity, else the person."""
        return self.organization if self.bin and self.organization else self.person_name


class Pki:
    """Read access to a test PKI written by `licgate pki init DIR` (its manifest is `DIR/pki.json`)."""

    def __init__(self, directory: str | Path) -> None:
        from signing.pki import load_pki

        self.dir = Path(directory)
        try:
            self.pki = load_pki(self.dir)
        except OSError as exc:
            raise SettingsError(f"no test PKI at {self.dir}: {exc.strerror or exc} (run `licgate pki init`)") from None
        self._cache: dict[str, Party] = {}

    @property
    def ca_dir(self) -> Path:
        return self.pki.ca_dir

    def party(self, name: str) -> Party:
        if name not in self._cache:
            from signing.pki import GOST_PARTIES, PARTIES

            if name not in self.pki.parties:
                raise SettingsError(f"the test PKI has no party {name!r}")
            entry = self.pki.party(name)
            spec = PARTIES.get(name) or (GOST_PARTIES[name][0] if name in GOST_PARTIES else None)
            person = " ".join(p for p in (spec.surname, spec.given, spec.patronymic) if p) if spec else ""
            self._cache[name] = Party(
                name=name, key_pem=entry.key_pem, cert_pem=entry.cert_pem, iin=entry.iin, bin=entry.bin,
                person_name=person, organization=(spec.organization or "") if spec else "",
            )
        return self._cache[name]


def sign_payload(xml: bytes, party: Party, **layout: Any) -> bytes:
    """Enveloped XMLDSig over the whole payload, as the party's signing software would make it.

    `layout` passes through to `signing.signer.sign_enveloped` (layout, c14n, with_comments): the
    front offices use different layouts on purpose, as real producers do.
    """
    from signing.signer import sign_enveloped

    return sign_enveloped(xml, party.key_pem, party.cert_pem, **layout)


def verify_signed_document(xml: bytes, pki: Pki) -> dict[str, str]:
    """Verify an enveloped signature the way a receiving party's own software would: signxml for the
    signature, the certificate checked against the test PKI's CA chain and validity. Returns the
    signer's name, IIN, BIN and roles (comma-separated EKU OIDs) from the certificate; raises on any failure.

    Deliberately independent of the gateway's verifier: the portal trusts its own check, not licgate's.
    """
    from cryptography import x509
    from signxml import XMLVerifier

    root = parse_xml(xml)
    cert_node = root.find(f".//{{{DSIG}}}X509Certificate")
    if cert_node is None or not (cert_node.text or "").strip():
        raise ValueError("no signer certificate in the document")
    cert = x509.load_der_x509_certificate(base64.b64decode("".join((cert_node.text or "").split())))
    inter = x509.load_pem_x509_certificate((pki.ca_dir / "intermediate.pem").read_bytes())
    top = x509.load_pem_x509_certificate((pki.ca_dir / "root.pem").read_bytes())
    cert.verify_directly_issued_by(inter)  # raises when the chain does not hold
    inter.verify_directly_issued_by(top)
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValueError("the signer's certificate is not valid now")
    XMLVerifier().verify(xml, x509_cert=cert)
    subject = cert.subject
    serial = subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    units = subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    names = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    serial_text = str(serial[0].value) if serial else ""
    unit_text = str(units[0].value) if units else ""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        roles = ",".join(u.dotted_string for u in usages)
    except x509.ExtensionNotFound:
        roles = ""
    return {
        "name": str(names[0].value) if names else "",
        "iin": serial_text[3:] if serial_text.startswith("IIN") else "",
        "bin": unit_text[3:] if unit_text.startswith("BIN") else "",
        "roles": roles,
    }


# --- the action log ----------------------------------------------------------------------------------


class ActionLog:
    """One line per thing a mock did: logged, and kept in memory for `GET /log` (tests and the demo)."""

    def __init__(self, name: str, keep: int = 2000) -> None:
        self.name = name
        self.logger = logging.getLogger(f"mocks.{name}")
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def __call__(self, action: str, **details: Any) -> None:
        entry = {"at": iso_local(), "mock": self.name, "action": action, **details}
        with self._lock:
            self.entries.append(entry)
        text = " ".join(f"{k}={v}" for k, v in details.items())
        self.logger.info("%s %s", action, text)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.entries)


def setup_mock_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


# --- documents and payloads --------------------------------------------------------------------------


def fake_pdf(code: str, request_number: str) -> bytes:
    """Small PDF-shaped bytes standing in for a scanned document (unique per request and code)."""
    body = f"licgate mock document {code} for application {request_number}"
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% " + body.encode() + b"\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


@dataclass(frozen=True)
class AttachedDocument:
    code: str
    file_name: str
    content: bytes
    mime_type: str = "application/pdf"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def make_documents(codes: list[str], request_number: str) -> list[AttachedDocument]:
    return [AttachedDocument(code, f"{code.lower()}.pdf", fake_pdf(code, request_number)) for code in codes]


@dataclass
class ApplicationForm:
    """What an applicant (or a Center worker) fills in; becomes the payload of docs/shep.md."""

    request_number: str
    channel: str
    service_type: str
    applicant_name: str
    applicant_iin: str | None = None
    applicant_bin: str | None = None
    subtypes: list[str] = field(default_factory=lambda: ["PRIMARY_HEALTH_CARE"])
    license_number: str | None = None
    licensor_bin: str | None = PROVIDER_BIN
    documents: list[AttachedDocument] = field(default_factory=list)
    request_date: datetime = field(default_factory=now_local)


def egov_application_xml(form: ApplicationForm) -> bytes:
    """The unsigned `MedicalLicenseApplication` (docs/shep.md), children in the contract's order."""
    parts = [
        f'<MedicalLicenseApplication xmlns="{MED}">',
        f"<requestNumber>{escape(form.request_number)}</requestNumber>",
        f"<requestDate>{iso_local(form.request_date)}</requestDate>",
        f"<channel>{form.channel}</channel>",
        f"<serviceType>{form.service_type}</serviceType>",
    ]
    if form.licensor_bin:
        parts.append(f"<licensorBin>{form.licensor_bin}</licensorBin>")
    parts.append("<applicant>")
    if form.applicant_iin:
        parts.append(f"<iin>{form.applicant_iin}</iin>")
    else:
        parts.append(f"<bin>{form.applicant_bin}</bin>")
    parts.append(f"<name>{escape(form.applicant_name)}</name></applicant>")
    parts.append("<activity>" + "".join(f"<subtype>{escape(s)}</subtype>" for s in form.subtypes) + "</activity>")
    if form.license_number:
        parts.append(f"<licenseNumber>{escape(form.license_number)}</licenseNumber>")
    parts.append("<documents>")
    for d in form.documents:
        parts.append(
            f"<document code={quoteattr(d.code)} fileName={quoteattr(d.file_name)} "
            f"mimeType={quoteattr(d.mime_type)} sha256={quoteattr(d.sha256)}>"
            f"{base64.b64encode(d.content).decode()}</document>"
        )
    parts.append("</documents></MedicalLicenseApplication>")
    return "".join(parts).encode("utf-8")


def status_request_xml(request_number: str) -> bytes:
    number = escape(request_number)
    return f'<StatusRequest xmlns="{MED}"><requestNumber>{number}</requestNumber></StatusRequest>'.encode()


def strip_declaration(xml: bytes) -> bytes:
    """The payload without its `<?xml ...?>` line, to be placed inside `data`."""
    text = xml.lstrip()
    if text.startswith(b"<?xml"):
        text = text[text.index(b"?>") + 2:].lstrip()
    return text


# --- SHEP SyncChannel v10 ----------------------------------------------------------------------------


def sync_request(
    *, message_id: str, service_id: str, sender_id: str, password: str, payload: bytes,
    as_string: bool = False, session_id: str | None = None, message_date: str | None = None,
) -> bytes:
    """A SyncChannel `SendMessage` envelope; the payload goes into `data` inline or as an escaped string."""
    body = strip_declaration(payload)
    if as_string:
        data = (f'<data xmlns:xsi="{XSI}" xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:type="xs:string">'
                f"{escape(body.decode('utf-8'))}</data>")
    else:
        data = "<data>" + body.decode("utf-8") + "</data>"
    session = f"<sessionId>{session_id}</sessionId>" if session_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:typ="{SYNC_TYPES}">'
        "<soapenv:Header/><soapenv:Body><typ:SendMessage><request><requestInfo>"
        f"<messageId>{escape(message_id)}</messageId>"
        f"<serviceId>{escape(service_id)}</serviceId>"
        f"<messageDate>{message_date or iso_local()}</messageDate>"
        f"<sender><senderId>{escape(sender_id)}</senderId><password>{escape(password)}</password></sender>"
        f"{session}</requestInfo><requestData>{data}</requestData></request></typ:SendMessage>"
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()


@dataclass
class SyncAnswer:
    """What a SyncChannel call answered: a response (code, data) or a SOAP fault (errorCode)."""

    http_status: int
    code: str  # responseInfo/status/code, or the fault's errorCode
    message: str
    fault: bool
    data: etree._Element | None = None  # the first element inside responseData/data
    error_data: str = ""
    session_id: str = ""

    def data_text(self, name: str) -> str:
        if self.data is None:
            return ""
        node = self.data.find(f"{{{MED}}}{name}")
        return (node.text or "") if node is not None else ""

    def data_list(self, path: str) -> list[str]:
        if self.data is None:
            return []
        return [n.text or "" for n in self.data.iterfind(path, {"m": MED})]


def _text(parent: etree._Element | None, path: str) -> str:
    if parent is None:
        return ""
    node = parent.find(path)
    return (node.text or "").strip() if node is not None else ""


def data_element(data: etree._Element | None) -> etree._Element | None:
    """The document inside a SHEP `data` element: an inline element, or an escaped XML string."""
    if data is None:
        return None
    for child in data:
        if isinstance(child.tag, str):
            return child
    text = (data.text or "").strip()
    if text.startswith("<"):
        return parse_xml(text.encode("utf-8"))
    return None


def parse_sync_answer(http_status: int, body: bytes) -> SyncAnswer:
    root = parse_xml(body)
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    fault = soap_body.find(f"{{{SOAP_ENV}}}Fault") if soap_body is not None else None
    if fault is not None:
        info = fault.find(f"detail/{{{SYNC_TYPES}}}SendMessageFault1_SendMessageFault")
        return SyncAnswer(
            http_status=http_status, code=_text(info, "errorCode") or _text(fault, "faultcode"),
            message=_text(info, "errorMessage") or _text(fault, "faultstring"), fault=True,
            error_data=_text(info, "errorData"), session_id=_text(info, "sessionId"),
        )
    response = soap_body.find(f"{{{SYNC_TYPES}}}SendMessageResponse/response") if soap_body is not None else None
    if response is None:
        raise ValueError("neither a SendMessageResponse nor a Fault")
    info = response.find("responseInfo")
    return SyncAnswer(
        http_status=http_status, code=_text(info, "status/code"), message=_text(info, "status/message"),
        fault=False, data=data_element(response.find("responseData/data")),
        session_id=_text(info, "sessionId"),
    )


# --- SHEP AsyncChannel v10 ---------------------------------------------------------------------------


@dataclass
class AsyncMessage:
    """One AsyncChannel `sendMessage` (the gateway's notifications, and SHEP's pushes of them)."""

    message_id: str
    correlation_id: str
    service_id: str
    message_type: str
    route_id: str
    message_date: str
    sender_id: str
    properties: dict[str, str]
    session_id: str
    data_xml: bytes  # the document inside messageData/data, serialized on its own

    def document(self) -> etree._Element | None:
        return parse_xml(self.data_xml) if self.data_xml else None


def parse_async_send(body: bytes) -> AsyncMessage:
    """Read an AsyncChannel `sendMessage` request envelope (raises ValueError when it is not one)."""
    root = parse_xml(body)
    request = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}sendMessage/request")
    if request is None:
        raise ValueError("not an AsyncChannel sendMessage")
    info = request.find("messageInfo")
    if info is None:
        raise ValueError("sendMessage without messageInfo")
    props = {}
    for p in info.iterfind("properties"):
        props[_text(p, "key")] = _text(p, "value")
    doc = data_element(request.find("messageData/data"))
    return AsyncMessage(
        message_id=_text(info, "messageId"), correlation_id=_text(info, "correlationId"),
        service_id=_text(info, "serviceId"), message_type=_text(info, "messageType"),
        route_id=_text(info, "routeId"), message_date=_text(info, "messageDate"),
        sender_id=_text(info, "sender/senderId"), properties=props, session_id=_text(info, "sessionId"),
        data_xml=standalone(doc) if doc is not None else b"",
    )


def async_send_request(message: AsyncMessage, password: str = "") -> bytes:
    """An AsyncChannel `sendMessage` envelope carrying `message` (SHEP's PUSH to a participant)."""
    props = "".join(
        f"<properties><key>{escape(k)}</key><value>{escape(v)}</value></properties>"
        for k, v in message.properties.items()
    )
    optional = ""
    if message.route_id:
        optional = f"<routeId>{escape(message.route_id)}</routeId>"
    session = f"<sessionId>{escape(message.session_id)}</sessionId>" if message.session_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f'<typ:sendMessage xmlns:typ="{ASYNC_TYPES}"><request><messageInfo>'
        f"<messageId>{escape(message.message_id)}</messageId>"
        + (f"<correlationId>{escape(message.correlation_id)}</correlationId>" if message.correlation_id else "")
        + f"<serviceId>{escape(message.service_id)}</serviceId>"
        f"<messageType>{escape(message.message_type)}</messageType>{optional}"
        f"<messageDate>{escape(message.message_date)}</messageDate>"
        f"<sender><senderId>{escape(message.sender_id)}</senderId>"
        f"<password>{escape(password)}</password></sender>{props}{session}"
        "</messageInfo><messageData><data>"
        + strip_declaration(message.data_xml).decode("utf-8")
        + "</data></messageData></request></typ:sendMessage></soapenv:Body></soapenv:Envelope>"
    ).encode("utf-8")


def async_send_response(message_id: str, accepted: bool = True, note: str = "") -> bytes:
    """The answer to an AsyncChannel `sendMessage`: MESSAGE_ACCEPTED (or the official misspelling)."""
    code = "MESSAGE_ACCEPTED" if accepted else "MESSAGE_NOT_ACCTEPTED"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f'<typ:sendMessageResponse xmlns:typ="{ASYNC_TYPES}"><response>'
        f"<messageId>{escape(message_id)}</messageId><responseDate>{iso_local()}</responseDate>"
        f"<status><code>{code}</code><message>{escape(note or code)}</message></status>"
        "</response></typ:sendMessageResponse></soapenv:Body></soapenv:Envelope>"
    ).encode()


def parse_async_send_response(body: bytes) -> str:
    """The status code of a `sendMessageResponse` (MESSAGE_ACCEPTED, ...), or "" when there is none."""
    root = parse_xml(body)
    response = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}sendMessageResponse/response")
    return _text(response, "status/code")


def soap_fault(code: str, message: str, namespace: str = ASYNC_TYPES) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>soapenv:Client</faultcode><faultstring>{escape(code)}: {escape(message)}</faultstring>"
        f'<detail><typ:SendMessageFault1_SendMessageFault xmlns:typ="{namespace}">'
        f"<errorCode>{escape(code)}</errorCode><errorMessage>{escape(message)}</errorMessage>"
        f"<errorDate>{iso_local()}</errorDate></typ:SendMessageFault1_SendMessageFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


@dataclass
class Notification:
    """A `StatusNotification` (docs/shep.md) as the front offices read it."""

    request_number: str
    registration_number: str
    status: str
    status_kk: str
    status_ru: str
    changed_at: str
    due_at: str
    result_xml: bytes  # the signed LicenseDecision when final, else b""
    extra: dict[str, str]


def parse_notification(doc: etree._Element) -> Notification:
    if doc.tag != f"{{{MED}}}StatusNotification":
        raise ValueError(f"not a StatusNotification: {doc.tag}")
    known = {"requestNumber", "registrationNumber", "status", "statusKk", "statusRu", "changedAt", "dueAt", "result"}
    result = doc.find(f"{{{MED}}}result")
    decision = None
    if result is not None:
        decision = next((c for c in result if isinstance(c.tag, str)), None)
    extra = {}
    for child in doc:
        if isinstance(child.tag, str):
            local = etree.QName(child).localname
            if local not in known and len(child) == 0:
                extra[local] = child.text or ""
    return Notification(
        request_number=_text(doc, f"{{{MED}}}requestNumber"),
        registration_number=_text(doc, f"{{{MED}}}registrationNumber"),
        status=_text(doc, f"{{{MED}}}status"), status_kk=_text(doc, f"{{{MED}}}statusKk"),
        status_ru=_text(doc, f"{{{MED}}}statusRu"), changed_at=_text(doc, f"{{{MED}}}changedAt"),
        due_at=_text(doc, f"{{{MED}}}dueAt"),
        result_xml=standalone(decision) if decision is not None else b"",
        extra=extra,
    )


# --- running a mock ----------------------------------------------------------------------------------


def run_mock(name: str, create_app: Any, host: str, port: int, config: str | None, *, needs_pki: bool = True) -> int:
    """`licgate mock NAME`: read the settings, serve the mock in the foreground until interrupted.

    A bad settings file or a missing test PKI is one line on stderr and exit code 2, not a traceback."""
    import sys

    import uvicorn

    try:
        settings = load_settings(config)
        if needs_pki:
            Pki(settings.pki_dir)
    except SettingsError as exc:
        print(f"licgate mock {name}: {exc}", file=sys.stderr)
        return 2
    setup_mock_logging()
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=3)
    return 0


class ServerThread:
    """An ASGI app served by uvicorn in a background thread on loopback (used by `licgate demo`).

    Given `sock` (from `reserve_port`), it serves on that already-bound socket, so no other process can
    take the port between choosing it and serving on it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None,
                 sock: socket.socket | None = None) -> None:
        import uvicorn

        self.app = app
        self.port = sock.getsockname()[1] if sock is not None else (port or free_port())
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True,
                                       kwargs={"sockets": [sock]} if sock is not None else {})

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserve_port() -> socket.socket:
    """A loopback socket bound to a free port and kept: hand it to `ServerThread(sock=...)`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock
