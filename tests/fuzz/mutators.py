"""A seeded mutation fuzzer for `POST /shep/sync`: valid signed envelopes of every channel and dialect
(the seeds), and mutators of bytes, structure, encodings, namespaces, signatures and sizes.

Deterministic: the same seed and the same seeds' bytes give the same cases in the same order. The
mutators work on the bytes (regular expressions over tags, not a re-serialised tree), so that everything a
mutation does not touch stays byte for byte as signed. `benchmarks/fuzz.py` runs the long form.
"""

from __future__ import annotations

import base64
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml import etree

from core.errors import ALL_CODES
from signing.pki import Pki
from signing.wsse import sign_wsse
from tests.intake.helpers import TYPES, Doc, application_xml, elicense_xml, envelope, sign

Mutator = Callable[[random.Random, bytes], bytes]


@dataclass(frozen=True)
class Seed:
    name: str
    body: bytes


def _docs(service_type: str, tag: str) -> list[Doc]:
    codes = {"ISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"],
             "REISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"],
             "DUPLICATE": ["APPLICATION_FORM", "FEE_RECEIPT"]}[service_type]
    return [Doc(code, f"%PDF-1.4 {code} {tag}".encode()) for code in codes]


def seeds(pki: Pki) -> list[Seed]:
    """One valid request of each kind the gateway takes: every channel, both payload dialects, inline and
    escaped-string data, both signature layouts and c14n flavours, XAdES, a status query, WS-Security."""
    out: list[Seed] = []

    def add(name: str, body: bytes) -> None:
        out.append(Seed(name, body))

    add("portal-inline", envelope(sign(application_xml("FZ-PORTAL-1", documents=_docs("ISSUE", "p1")), pki)))
    add("portal-string", envelope(sign(application_xml("FZ-PORTAL-2", documents=_docs("ISSUE", "p2")), pki,
                                       layout="default-ns", c14n="exclusive"), as_string=True))
    add("portal-xades", envelope(sign(application_xml("FZ-PORTAL-3", documents=_docs("ISSUE", "p3")), pki,
                                      xades="bes")))
    add("portal-legal-entity", envelope(sign(application_xml(
        "FZ-PORTAL-4", iin=None, bin_="940140000385", name='ТОО "Шипагер"', documents=_docs("ISSUE", "p4")),
        pki, "le_head")))
    add("portal-incomplete", envelope(sign(application_xml(
        "FZ-PORTAL-5", documents=_docs("ISSUE", "p5")[:1]), pki)))
    add("center-duplicate", envelope(sign(application_xml(
        "FZ-CENTER-1", channel="CENTER", service_type="DUPLICATE", documents=_docs("DUPLICATE", "c1")),
        pki, "center_operator"), sender="CENTER_IS"))
    add("center-reissue-string", envelope(sign(application_xml(
        "FZ-CENTER-2", channel="CENTER", service_type="REISSUE", documents=_docs("REISSUE", "c2")),
        pki, "center_operator", with_comments=True), sender="CENTER_IS", as_string=True))
    add("elicense-inline", envelope(sign(elicense_xml("KZ000000000001", documents=_docs("ISSUE", "e1")), pki,
                                         layout="default-ns", c14n="exclusive"),
                                    sender="ELICENSE", service="ELICENSE_MED_LICENSE"))
    add("elicense-string", envelope(sign(elicense_xml("KZ000000000002", documents=_docs("ISSUE", "e2")), pki),
                                    sender="ELICENSE", service="ELICENSE_MED_LICENSE", as_string=True))
    add("status-query", envelope(
        b'<StatusRequest xmlns="urn:kz:egov:medlicense:v1"><requestNumber>FZ-PORTAL-1</requestNumber>'
        b"</StatusRequest>", service="MED_LICENSE_STATUS"))
    transport = pki.party("portal_transport")
    add("portal-wsse", sign_wsse(envelope(sign(application_xml("FZ-WSSE-1", documents=_docs("ISSUE", "w1")), pki),
                                          sender="WSSE_PORTAL"), transport.key_pem, transport.cert_pem))
    return out


# -- helpers -----------------------------------------------------------------------------------------------

_START_TAG = re.compile(rb"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)(\s[^<>]*)?>")
_MESSAGE_ID = re.compile(rb"<messageId>[^<]*</messageId>")


def _element_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of elements whose end tag is found after their start tag (the nearest one of that name:
    good enough for a mutator, which need not be exact)."""
    spans = []
    for m in _START_TAG.finditer(body):
        if m.group(0).endswith(b"/>"):
            spans.append((m.start(), m.end()))
            continue
        close = b"</" + (m.group(1) or b"") + m.group(2) + b">"
        end = body.find(close, m.end())
        if end >= 0:
            spans.append((m.start(), end + len(close)))
    return spans


def _pick_span(rng: random.Random, body: bytes) -> tuple[int, int] | None:
    spans = _element_spans(body)
    return rng.choice(spans) if spans else None


def _text_positions(body: bytes) -> list[int]:
    """Offsets right after a `>`: inside character data or between elements."""
    return [m.end() for m in re.finditer(rb">", body)]


def _strip_decl(body: bytes) -> bytes:
    return re.sub(rb"^(\xef\xbb\xbf)?<\?xml[^>]*\?>\s*", b"", body, count=1)


# -- mutators ------------------------------------------------------------------------------------------------

def flip_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def replace_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.choice(b"<>&\"'/=;:?!-[]\x00\x80\xff ")
    return bytes(data)


def truncate(rng: random.Random, body: bytes) -> bytes:
    return body[:rng.randrange(len(body) + 1)]


def duplicate_element(rng: random.Random, body: bytes) -> bytes:
    span = _pick_span(rng, body)
    if span is None:
        return body
    a, b = span
    return body[:b] + body[a:b] + body[b:]


def delete_element(rng: random.Random, body: bytes) -> bytes:
    span = _pick_span(rng, body)
    if span is None:
        return body
    a, b = span
    return body[:a] + body[b:]


def swap_elements(rng: random.Random, body: bytes) -> bytes:
    spans = _element_spans(body)
    if len(spans) < 2:
        return body
    (a1, b1), (a2, b2) = sorted(rng.sample(spans, 2))
    if a2 < b1:  # nested or overlapping: move the inner one out instead
        return body[:a1] + body[a2:b2] + body[a1:a2] + body[b2:b1] + body[b1:]
    return body[:a1] + body[a2:b2] + body[b1:a2] + body[a1:b1] + body[b2:]


def deep_nesting(rng: random.Random, body: bytes) -> bytes:
    depth = rng.choice([10, 60, 70, 200, 2000, 20000])
    name = rng.choice([b"x", b"data", b"soapenv:Body", b"ds:Signature", b"request"])
    positions = _text_positions(body)
    if not positions:
        return body
    at = rng.choice(positions)
    return body[:at] + (b"<" + name + b">") * depth + (b"</" + name + b">") * depth + body[at:]


def many_siblings(rng: random.Random, body: bytes) -> bytes:
    count = rng.choice([1000, 50_000, 250_000])
    kind = rng.choice([b"<a/>", b"<!---->", b"<?p?>", b"<a></a>"])
    positions = _text_positions(body)
    if not positions:
        return body
    at = rng.choice(positions)
    return body[:at] + kind * count + body[at:]


_ENCODINGS = ["nonsense", "UTF-16", "utf-16le", "UTF-32", "ISO-8859-1", "windows-1251", "cp500", "UTF-7",
              "ascii", "", "utf-8 ", "koi8-r", "x-unknown-123", "EBCDIC-US", "UCS-4", "GB18030"]
_BOMS = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b""]


def bom_and_encoding(rng: random.Random, body: bytes) -> bytes:
    """A byte-order mark and/or a declared encoding, with the body transcoded to it or not."""
    encoding = rng.choice(_ENCODINGS)
    bom = rng.choice(_BOMS)
    rest = _strip_decl(body)
    decl = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() if rng.random() < 0.8 else b""
    text = decl + rest
    if rng.random() < 0.5:
        target = rng.choice(["utf-16-le", "utf-16-be", "utf-32-le", "cp1251", "latin-1", "cp500", "utf-8"])
        try:
            text = text.decode("utf-8").encode(target, errors="replace")
        except (UnicodeDecodeError, LookupError):
            pass
    return bom + text


def control_characters(rng: random.Random, body: bytes) -> bytes:
    positions = _text_positions(body)
    if not positions:
        return body
    data = body
    for _ in range(rng.randint(1, 3)):
        at = rng.choice(positions)
        junk = rng.choice([b"\x00", b"\x01", b"\x08", b"\x0b", b"\x1f", b"\x7f", b"\xc0\x80", b"\xed\xa0\x80",
                           b"\xef\xbf\xbe", b"\xf4\x90\x80\x80", b"\xc3", b"&#0;", b"&#x1F;", b"&#xD800;",
                           b"&#65534;", b"&unknown;", b"&amp;", b"<![CDATA[x]]>", b"\r\n", b"\xe2\x80\xae",
                           "ҚАЗАҚ".encode(), b"\xc2\xa0", b"\xef\xbb\xbf"])
        at = min(at, len(data))
        data = data[:at] + junk + data[at:]
    return data


_NAMESPACES = [b"http://schemas.xmlsoap.org/soap/envelope/", TYPES.encode(), b"urn:kz:egov:medlicense:v1",
               b"urn:kz:elicense:medlicense:v1", b"http://www.w3.org/2000/09/xmldsig#"]
_OTHER_NAMESPACES = [b"http://www.w3.org/2003/05/soap-envelope", b"", b"urn:x", b"http://bip.bee.kz/SyncChannel/v9/Types",
                     b"http://www.w3.org/2000/09/xmldsig#more", b"urn:kz:egov:medlicense:v2", b"\xc3\xa9", b"&lt;"]


def namespaces(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:  # one namespace URI replaced
        old = rng.choice(_NAMESPACES)
        return body.replace(old, rng.choice(_OTHER_NAMESPACES), 1)
    if choice == 1:  # a default namespace dropped onto an unqualified element
        return body.replace(b"<request>", b'<request xmlns="' + rng.choice(_NAMESPACES) + b'">', 1)
    if choice == 2:  # a prefix nobody declared
        return body.replace(b"<soapenv:Body>", b"<undeclared:Body>", 1).replace(b"</soapenv:Body>",
                                                                               b"</undeclared:Body>", 1)
    if choice == 3:  # a prefix redeclared inside
        return body.replace(b"<typ:SendMessage>", b'<typ:SendMessage xmlns:soapenv="urn:other">', 1)
    return body.replace(b'xmlns="', b'xmlns:p="', 1)  # a payload's default namespace made a prefix


_SIGNATURE = re.compile(rb"<(ds:)?Signature[\s>].*?</(ds:)?Signature>", re.S)


def second_signature(rng: random.Random, body: bytes) -> bytes:
    m = _SIGNATURE.search(body)
    if m is None:
        return body
    sig = m.group(0)
    choice = rng.randrange(3)
    if choice == 0:  # beside the first
        return body[:m.end()] + sig + body[m.end():]
    if choice == 1:  # inside an earlier element of the payload
        at = body.find(b"<applicant>")
        if at < 0:
            at = body.find(b"<requestInfo>")
        return body if at < 0 else body[:at] + sig + body[at:]
    return body[:m.start()] + body[m.end():]  # no signature at all


_X509 = re.compile(rb"(<(?:ds:)?X509Certificate>)([A-Za-z0-9+/=\s]+)(</(?:ds:)?X509Certificate>)")


def certificate(rng: random.Random, body: bytes) -> bytes:
    """The signer's certificate damaged inside its DER: a flipped byte, most often in the subject."""
    m = _X509.search(body)
    if m is None:
        return body
    try:
        der = bytearray(base64.b64decode(m.group(2)))
    except ValueError:
        return body
    choice = rng.randrange(4)
    if choice == 0 and der:
        der[rng.randrange(len(der))] ^= 0xFF
    elif choice == 1:  # about where the subject's RDNs are
        lo, hi = min(100, len(der)), min(400, len(der))
        if hi > lo:
            der[rng.randrange(lo, hi)] = rng.randrange(256)
    elif choice == 2:
        der = der[:rng.randrange(len(der) + 1)]
    else:
        der = bytearray(rng.randbytes(rng.randint(0, 600)))
    return body[:m.start(2)] + base64.b64encode(bytes(der)) + body[m.end(2):]


_DOCUMENT = re.compile(rb"(<(?:document|content)\b[^>]*>)([A-Za-z0-9+/=]*)(</(?:document|content)>)")


def huge_base64(rng: random.Random, body: bytes) -> bytes:
    matches = list(_DOCUMENT.finditer(body))
    if not matches:
        return body
    m = rng.choice(matches)
    size = rng.choice([1, 1000, 100_000, 900_000, 2_500_000])
    blob = rng.choice([base64.b64encode(b"\0" * size), b"A" * size, b"!" * (size // 100 + 1), b"====" * 10])
    return body[:m.start(2)] + blob + body[m.end(2):]


def attributes(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # an attribute twice (not well-formed)
        return re.sub(rb'(<document\b)( code="[^"]*")', rb"\1\2\2", body, count=1)
    if choice == 1:
        return re.sub(rb'sha256="[0-9a-f]+"', b'sha256="' + rng.choice([b"", b"XYZ", b"0" * 64, b"a" * 65]) + b'"',
                      body, count=1)
    if choice == 2:
        return re.sub(rb'code="[^"]*"', b'code="' + rng.choice([b"", b"UNKNOWN", "ҚҰЖАТ".encode(), b"&#0;"]) + b'"',
                      body, count=1)
    return body.replace(b"<request>", b'<request xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
                        1)


def non_ascii_text(rng: random.Random, body: bytes) -> bytes:
    """Kazakh and other non-ASCII characters in an element's text, where an ASCII code is expected."""
    name = rng.choice([b"channel", b"serviceType", b"requestNumber", b"subtype", b"iin", b"bin", b"requestDate",
                       b"licenseNumber", b"messageId", b"serviceId", b"senderId", b"operation", b"applicationNumber",
                       b"document [^>]*", b"content"])
    text = rng.choice(["ПОРТАЛ", "ҚАЗАҚСТАН", "ß", "٣٤٥", "１２３", "😀", "\u200b", "ISSUE\u0301"]).encode()
    return re.sub(rb"(<" + name + rb">)([^<]*)(</)", lambda m: m.group(1) + text + m.group(3), body, count=1)


def random_body(rng: random.Random, body: bytes) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 4096))
    if kind == 1:
        return b"<" + rng.randbytes(rng.randint(0, 512)) + b">"
    return body[:rng.randrange(len(body) + 1)] + rng.randbytes(rng.randint(1, 256))


def soap_shape(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return body.replace(b"<soapenv:Header/>", b"", 1)
    if choice == 1:
        return body.replace(b"<soapenv:Header/>", b"<soapenv:Header><x>" + b"y" * 100 + b"</x></soapenv:Header>", 1)
    if choice == 2:
        return body.replace(b"<soapenv:Body>", b"<soapenv:Body><extra/>", 1)
    if choice == 3:
        return b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "y">]>' + _strip_decl(body)
    return _strip_decl(body).replace(b"<requestData>", b"<requestData><?pi x?><!-- c -->", 1)


MUTATORS: dict[str, Mutator] = {
    "flip_bytes": flip_bytes, "replace_bytes": replace_bytes, "truncate": truncate,
    "duplicate_element": duplicate_element, "delete_element": delete_element, "swap_elements": swap_elements,
    "deep_nesting": deep_nesting, "many_siblings": many_siblings, "bom_and_encoding": bom_and_encoding,
    "control_characters": control_characters, "namespaces": namespaces, "second_signature": second_signature,
    "certificate": certificate, "huge_base64": huge_base64, "attributes": attributes,
    "non_ascii_text": non_ascii_text, "random_body": random_body, "soap_shape": soap_shape,
}
# The costly ones (megabytes per case) are rarer, so that a run of thousands stays within its time.
_WEIGHTS = {"huge_base64": 0.3, "many_siblings": 0.3, "deep_nesting": 0.6}
_CONTENT_TYPES = ["text/xml; charset=utf-8"] * 12 + ["application/soap+xml", "application/xml",
                                                    "text/xml; charset=utf-16", "text/plain", ""]


@dataclass(frozen=True)
class Case:
    index: int
    seed: str
    mutations: tuple[str, ...]
    body: bytes
    content_type: str


def cases(seed_list: list[Seed], count: int, rng_seed: int = 20) -> Iterator[Case]:
    """`count` mutated requests, each from one seed with 1-3 mutations and a fresh messageId (so that a
    replay is not all the gateway ever answers)."""
    rng = random.Random(rng_seed)
    names = list(MUTATORS)
    weights = [_WEIGHTS.get(n, 1.0) for n in names]
    for index in range(count):
        seed = rng.choice(seed_list)
        message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        body = _MESSAGE_ID.sub(b"<messageId>" + message_id + b"</messageId>", seed.body, count=1)
        applied = tuple(rng.choices(names, weights, k=rng.choice([1, 1, 1, 2, 3])))
        for name in applied:
            body = MUTATORS[name](rng, body)
        yield Case(index, seed.name, applied, body, rng.choice(_CONTENT_TYPES))


# -- judging an answer -------------------------------------------------------------------------------------------

_FAULT = f"{{{TYPES}}}SendMessageFault1_SendMessageFault"
_RESPONSE = f"{{{TYPES}}}SendMessageResponse"


def verdict(status: int, content: bytes) -> str:
    """The answer's code, or a string starting `BAD:` when the answer is outside the contract."""
    if b"Traceback" in content or b'File "' in content:
        return "BAD: a stack trace in the answer"
    try:
        root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return f"BAD: HTTP {status}, not XML: {content[:80]!r}"
    if status == 200:
        code = root.findtext(f".//{_RESPONSE}/response/responseInfo/status/code")
        return code if code in ("SCSS001", "INTAKE_REFUSED") else f"BAD: HTTP 200 with status {code}"
    code = root.findtext(f".//{_FAULT}/errorCode")
    if status not in (500, 503) or code not in ALL_CODES:
        return f"BAD: HTTP {status} with errorCode {code}"
    return code
