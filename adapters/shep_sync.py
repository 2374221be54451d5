"""SHEP SyncChannel v10, the provider side (docs/shep.md, docs/shep.md).

Reads a `SendMessage` envelope into its `requestInfo` and the exact bytes of the payload carried in
`requestData/data`, and renders `SendMessageResponse` and the SOAP 1.1 Fault whose detail is
`SendMessageFault1_SendMessageFault` (ErrorInfo). Pure functions over bytes and lxml trees: no HTTP, no
storage.

The payload was signed as a standalone document before it was put into `data`, so the bytes handed on
are the payload exactly as it arrived: for inline XML, the payload element's byte range cut out of the
request (located with an expat pass, which reports byte offsets); re-serialising the lxml element would
copy the envelope's inherited namespace declarations into it and break inclusive c14n.
"""

from __future__ import annotations

import codecs
import re
import uuid
import xml.parsers.expat
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from xml.sax.saxutils import escape

from lxml import etree

import schemas
from adapters.xml import SOAP_ENV, format_datetime, schema_error, strip_declaration
from core.domain import Positional
from core.errors import MalformedMessage, SchemaInvalid
from core.xmlsafe import load_schema, parse_xml

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
NS_TYPES = "http://bip.bee.kz/SyncChannel/v10/Types"
NS_REQUEST = "http://bip.bee.kz/SyncChannel/v10/Types/Request"
NS_RESPONSE = "http://bip.bee.kz/SyncChannel/v10/Types/Response"
NS_COMMON = "http://bip.bee.kz/common/v10/Types"
NS_INTERFACES = "http://bip.bee.kz/SyncChannel/v10/Interfaces"

SUCCESS_CODE = "SCSS001"
SUCCESS_MESSAGE = "Message has been processed successfully"

# Every schema file the WSDL pulls in, by the name served at /shep/sync?xsd=NAME.
WSDL_FILE = "SyncChannel_v10.wsdl"
ENVELOPE_SCHEMAS = (
    "SyncChannel_v10_Types.xsd",
    "SyncChannel_v10_Request.xsd",
    "SyncChannel_v10_Response.xsd",
    "common_v10_Types.xsd",
)

_SEND_MESSAGE = f"{{{NS_TYPES}}}SendMessage"
_UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii"}


@dataclass(frozen=True, slots=True)
class Property(Positional):
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RequestInfo(Positional):
    message_id: str
    service_id: str
    message_date: str  # as sent; dates on the bus are parsed leniently where they matter
    sender_id: str
    password: str | None
    correlation_id: str | None = None
    route_id: str | None = None
    session_id: str | None = None
    properties: tuple[Property, ...] = ()


@dataclass(slots=True)
class SyncRequest:
    """One SendMessage as read from the wire. Not frozen: intake drops the parsed envelope (`release`) as
    soon as it is done with it, so that a large message is not held twice while its signature is checked."""

    info: RequestInfo
    # The payload document's bytes exactly as they arrived (UTF-8 when transcoded): for an inline payload
    # in a UTF-8 request a view into the request itself, so that a 10 MB message is not held twice.
    raw_payload: bytes | memoryview
    inline: bool  # True: an XML element inside `data`; False: an escaped XML string
    envelope: etree._Element = field(repr=False)  # the parsed envelope (for WS-Security)
    # The payload's root element as parsed (inside the envelope when inline, its own document when a
    # string): good for schema checks before the signature is verified (saves a parse), never to be
    # trusted for content.
    element: etree._Element = field(repr=False)
    # Where `raw_payload` lies in the request body when it is a view of the body itself (start, end):
    # lets another process name the payload without sending its bytes back.
    payload_span: tuple[int, int] | None = None

    @property
    def payload(self) -> bytes:
        """The payload's bytes as a bytes object (a copy when `raw_payload` is a view)."""
        return self.raw_payload if isinstance(self.raw_payload, bytes) else bytes(self.raw_payload)

    def release(self) -> None:
        """Forget the parsed envelope (the payload bytes stay)."""
        self.envelope = None  # type: ignore[assignment]
        self.element = None  # type: ignore[assignment]


# -- reading ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def envelope_schema() -> etree.XMLSchema:
    """The SyncChannel wrapper schema (with its imports), loaded once from `schemas/`."""
    return load_schema(schemas.path("SyncChannel_v10_Types.xsd"))


def parse_envelope(body: bytes, *, max_bytes: int) -> SyncRequest:
    """Well-formedness, SOAP 1.1 shape, the SendMessage operation and the envelope schema, in that
    order; then the payload's bytes. Raises MalformedMessage or SchemaInvalid."""
    root = parse_xml(body, max_bytes=max_bytes)
    send_message = _operation(root)
    schema = envelope_schema()
    if not schema.validate(send_message):
        raise SchemaInvalid(schema_error(schema.error_log))
    request = send_message.find("request")
    data = None if request is None else request.find("requestData/data")
    if request is None or data is None:  # the schema requires both; comments and PIs are not elements
        raise SchemaInvalid("SendMessage/request/requestData/data: missing")
    info = _request_info(request.find("requestInfo"))
    children = [c for c in data if isinstance(c.tag, str)]
    if len(children) > 1:
        raise SchemaInvalid("requestData/data: one payload document expected, found several elements")
    if children:
        if (data.text or "").strip() or any((c.tail or "").strip() for c in children):
            raise SchemaInvalid("requestData/data: text beside the payload element")
        raw, span = _inline_payload_bytes(body, root, children[0])
        return SyncRequest(info=info, raw_payload=raw, inline=True, envelope=root, element=children[0],
                           payload_span=span)
    text = data.text or ""
    if not text.strip():
        raise SchemaInvalid("requestData/data: empty, a payload document is required")
    payload = _string_payload_bytes(text)
    # The escaped document is part of the message: well-formedness and "no DTD anywhere" are judged here,
    # at the well-formedness stage, with the same hardened parser, before anything about the sender.
    element = parse_xml(payload, max_bytes=max_bytes)
    return SyncRequest(info=info, raw_payload=payload, inline=False, envelope=root, element=element)


def _operation(root: etree._Element) -> etree._Element:
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise MalformedMessage("a SOAP 1.2 envelope; this endpoint speaks SOAP 1.1")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MalformedMessage(f"not a SOAP 1.1 envelope: the root element is {_qname(root)}")
    parts = [c for c in root if isinstance(c.tag, str)]
    if parts and parts[0].tag == f"{{{SOAP_ENV}}}Header":
        parts = parts[1:]
    if len(parts) != 1 or parts[0].tag != f"{{{SOAP_ENV}}}Body":
        raise MalformedMessage("not a SOAP 1.1 envelope: expected an optional Header and one Body")
    operations = [c for c in parts[0] if isinstance(c.tag, str)]
    if not operations:
        raise MalformedMessage("the SOAP Body is empty")
    if len(operations) > 1:
        raise MalformedMessage("the SOAP Body holds more than one element")
    if operations[0].tag != _SEND_MESSAGE:
        raise MalformedMessage(f"unknown operation {_qname(operations[0])}; only SendMessage is offered")
    return operations[0]


def _qname(el: etree._Element) -> str:
    q = etree.QName(el)
    return f"{{{q.namespace}}}{q.localname}" if q.namespace else q.localname


def _text(parent: etree._Element, name: str) -> str | None:
    # The whole character data: a comment or PI inside a value must not cut it short.
    el = parent.find(name)
    if el is None:
        return None
    return (el.text or "") if len(el) == 0 else "".join(el.itertext())


def _request_info(el: etree._Element | None) -> RequestInfo:
    sender = None if el is None else el.find("sender")
    if el is None or sender is None:  # the schema requires both
        raise SchemaInvalid("SendMessage/request/requestInfo/sender: missing")
    return RequestInfo(
        message_id=(_text(el, "messageId") or "").strip(),
        service_id=(_text(el, "serviceId") or "").strip(),
        message_date=(_text(el, "messageDate") or "").strip(),
        sender_id=(_text(sender, "senderId") or "").strip(),
        password=_text(sender, "password"),
        correlation_id=_text(el, "correlationId"),
        route_id=_text(el, "routeId"),
        session_id=_text(el, "sessionId"),
        properties=tuple(
            Property(key=_text(p, "key") or "", value=_text(p, "value") or "") for p in el.findall("properties")
        ),
    )


_XML_DECL_STR = re.compile(r"^\ufeff?\s*<\?xml[^>]*\?>")
_ENCODING = re.compile(r"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _as_utf8(body: bytes, root: etree._Element) -> bytes:
    """The request as UTF-8 (without its XML declaration when it had to be transcoded), so that byte
    offsets found by expat index a UTF-8 text whatever encoding the sender chose."""
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").lower()
    if encoding in _UTF8_NAMES:
        return body
    try:
        text = body.decode(codecs.lookup(encoding).name)
    except (LookupError, UnicodeDecodeError):
        raise MalformedMessage(f"cannot decode the request as {encoding}") from None
    return _XML_DECL_STR.sub("", text, count=1).lstrip("\ufeff").encode("utf-8")


class _PayloadFound(Exception):
    """Stops the expat pass once what it was looking for is known."""


_PAYLOAD_PATH = (
    f"{SOAP_ENV} Envelope", f"{SOAP_ENV} Body", f"{NS_TYPES} SendMessage", "request", "requestData", "data",
)
_NAME = rb"(?:[^\s<>/:]+:)?"
# The request's last bytes when nothing but whitespace stands between the payload's closing tag and the
# envelope's: the end tags of data, requestData, request, SendMessage, Body and Envelope.
_CLOSING = re.compile(rb"</data\s*>\s*</requestData\s*>\s*</request\s*>\s*</" + _NAME + rb"SendMessage\s*>\s*</"
                      + _NAME + rb"Body\s*>\s*</" + _NAME + rb"Envelope\s*>\s*\Z")
_CLOSING_WINDOW = 1024
_WHITESPACE = b" \t\r\n"


def _inline_payload_bytes(body: bytes, root: etree._Element, payload: etree._Element) -> tuple[
        memoryview, tuple[int, int] | None]:
    """The payload element's bytes, cut out of the request where they arrived (a view, not a copy), and
    their (start, end) in `body` when the view is of `body` itself (not of a transcoded copy).

    The start: expat reports the byte index of every event, and stops at the payload's start tag. The end:
    when the request closes with the payload's end tag followed by nothing but whitespace and the end tags
    of the elements around it (`_closing_start`), where that run of end tags begins; otherwise expat goes on
    through the payload (`_payload_bounds`). The request was already parsed by the hardened parser, so expat
    never sees the rest.
    """
    text = _as_utf8(body, root)
    end = _closing_start(text, payload)
    start = _payload_start(text) if end is not None else -1
    if end is None or end <= start:
        start, end = _payload_bounds(text)
    return memoryview(text)[start:end], (start, end) if text is body else None


def _expat_parse(parser: xml.parsers.expat.XMLParserType, text: bytes) -> None:
    """expat over the request; what it cannot read (an encoding it does not know or cannot handle) is
    malformed like any other unreadable request, never an internal error."""
    try:
        parser.Parse(text, True)
    except (LookupError, ValueError) as exc:
        raise MalformedMessage(f"cannot read the request's encoding: {exc}") from None


def _payload_start(text: bytes) -> int:
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    stack: list[str] = []
    found: list[int] = []

    def start(name: str, _attrs: object) -> None:
        if tuple(stack) == _PAYLOAD_PATH:
            found.append(parser.CurrentByteIndex)
            raise _PayloadFound
        stack.append(name)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _name: stack.pop()
    try:
        _expat_parse(parser, text)
    except _PayloadFound:
        return found[0]
    except xml.parsers.expat.ExpatError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from None
    raise MalformedMessage("cannot locate the payload inside requestData/data")


def _closing_start(text: bytes, payload: etree._Element) -> int | None:
    """Where the payload's bytes end, read backwards from the end of the request, or None when anything
    but whitespace (a comment, a processing instruction) follows the payload.

    Why this is the payload's end tag and nothing else: the request is well-formed (the hardened parser
    said so). Its last markup, `</...Envelope>`, cannot end a comment (`-->`) or a processing instruction
    (`?>`), so it is the root's end tag; with only whitespace before it, the end tag before that closes
    the root's last child, and so on inwards down to `</data>`. The tree confirms that each of those
    elements is its parent's last node (no comment or PI after it) and that the payload is data's only
    node, so the `>` before `</data>` (whitespace aside) ends the payload's own end tag (or its `/>`),
    unless it ends a CDATA section of whitespace, which the tree does not show.
    """
    node: etree._Element | None = payload
    for _ in range(len(_PAYLOAD_PATH) + 1):  # the payload and each element around it, the root included
        if node is None or node.getnext() is not None:
            return None
        node = node.getparent()
    if node is not None or len(payload.getparent()) != 1:  # type: ignore[arg-type]
        return None
    offset = max(0, len(text) - _CLOSING_WINDOW)
    closing = _CLOSING.search(text, offset)
    if closing is None:
        return None
    end = closing.start()
    while end > 0 and text[end - 1] in _WHITESPACE:
        end -= 1
    # A CDATA section is no node of its own in the tree: one holding only whitespace after the payload
    # passes the checks above, and its `]]>` is the one `>` here that no tag ends with.
    return end if text[end - 1:end] == b">" and text[end - 2:end - 1] != b"]" else None


def _payload_bounds(text: bytes) -> tuple[int, int]:
    """The payload's (start, end) the long way: expat through the payload; it ends where the first event
    after its end tag begins (there always is one: at least `</data>`)."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    stack: list[str] = []
    bounds: list[int] = []
    depth = 0  # > 0 while inside the payload element

    def mark_end(*_args: object) -> None:
        if len(bounds) == 1:
            bounds.append(parser.CurrentByteIndex)
            raise _PayloadFound

    def start(name: str, _attrs: object) -> None:
        nonlocal depth
        if len(bounds) == 1 and depth == 0:
            mark_end()
        if depth:
            depth += 1
            return
        if not bounds and tuple(stack) == _PAYLOAD_PATH:
            bounds.append(parser.CurrentByteIndex)
            depth = 1
            return
        stack.append(name)

    def end(name: str) -> None:
        nonlocal depth
        if depth:
            depth -= 1
            if depth == 0:
                # From here on the next event marks the payload's end, whatever kind it is.
                parser.CharacterDataHandler = mark_end
                parser.CommentHandler = mark_end
                parser.ProcessingInstructionHandler = mark_end
                parser.StartCdataSectionHandler = mark_end
            return
        mark_end()
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        _expat_parse(parser, text)
    except _PayloadFound:
        pass
    except xml.parsers.expat.ExpatError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from None
    if len(bounds) != 2:
        raise MalformedMessage("cannot locate the payload inside requestData/data")
    return bounds[0], bounds[1]


def _string_payload_bytes(text: str) -> bytes:
    """An escaped XML string's document as bytes. A declaration naming another encoding than UTF-8 is
    dropped, since the text is now UTF-8 (the declaration is not part of what c14n signs)."""
    decl = _XML_DECL_STR.match(text)
    if decl:
        m = _ENCODING.search(decl.group(0))
        if m and m.group(1).lower() not in _UTF8_NAMES:
            text = text[decl.end():]
    return text.lstrip("\ufeff").encode("utf-8")


# -- rendering ----------------------------------------------------------------------------------------


def _opt(name: str, value: str | None) -> str:
    return f"<{name}>{escape(value)}</{name}>" if value else ""


def render_response(
    *,
    correlation_id: str,
    response_date: datetime,
    tz: tzinfo,
    data: bytes,
    code: str = SUCCESS_CODE,
    message: str = SUCCESS_MESSAGE,
    session_id: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """`SendMessageResponse` with `data` (an XML document) inline in `responseData/data`."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}">'
        "<soapenv:Body>"
        f'<typ:SendMessageResponse xmlns:typ="{NS_TYPES}">'
        "<response><responseInfo>"
        f"<messageId>{escape(message_id or str(uuid.uuid4()))}</messageId>"
        f"{_opt('correlationId', correlation_id)}"
        f"<responseDate>{format_datetime(response_date, tz, millis=True)}</responseDate>"
        f"<status><code>{escape(code)}</code><message>{escape(message[:250])}</message></status>"
        f"{_opt('sessionId', session_id)}"
        "</responseInfo><responseData><data>"
    )
    tail = "</data></responseData></response></typ:SendMessageResponse></soapenv:Body></soapenv:Envelope>\n"
    return head.encode() + strip_declaration(data) + tail.encode()


def render_fault(
    *,
    code: str,
    message: str,
    data: str | None,
    at: datetime,
    tz: tzinfo,
    server_side: bool,
    summary: str | None = None,
    session_id: str | None = None,
) -> bytes:
    """A SOAP 1.1 Fault whose detail is `SendMessageFault1_SendMessageFault` (ErrorInfo).

    faultcode is soapenv:Server for what is the gateway's side (INTERNAL_ERROR, OVERLOADED: retrying may
    help) and soapenv:Client for everything the caller must change.
    """
    faultstring = f"{code}: {summary}" if summary else code
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>soapenv:{'Server' if server_side else 'Client'}</faultcode>"
        f"<faultstring>{escape(_xml_safe(faultstring))}</faultstring>"
        "<detail>"
        f'<typ:SendMessageFault1_SendMessageFault xmlns:typ="{NS_TYPES}">'
        f"<errorCode>{escape(code)}</errorCode>"
        f"<errorMessage>{escape(message)}</errorMessage>"
        f"{_opt('errorData', _xml_safe(data) if data else None)}"
        f"<errorDate>{format_datetime(at, tz, millis=True)}</errorDate>"
        f"{_opt('sessionId', session_id)}"
        "</typ:SendMessageFault1_SendMessageFault>"
        "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>\n"
    ).encode()


_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """Details may quote what the sender sent; characters XML cannot carry are replaced."""
    return _NOT_XML_CHARS.sub("\ufffd", text)


# -- the WSDL ------------------------------------------------------------------------------------------


def wsdl_document(endpoint_url: str) -> bytes:
    """The WSDL with the endpoint's address and every schemaLocation made absolute (`?xsd=NAME`)."""
    text = schemas.path(WSDL_FILE).read_text(encoding="utf-8")
    text = text.replace('location="http://localhost:8080/shep/sync"', f'location="{escape(endpoint_url)}"')
    return _absolute_locations(text, endpoint_url).encode("utf-8")


def schema_document(name: str, endpoint_url: str) -> bytes | None:
    """One of the WSDL's schemas by name (with or without `.xsd`), imports made absolute; None if unknown."""
    file = name if name.endswith(".xsd") else f"{name}.xsd"
    if file not in ENVELOPE_SCHEMAS:
        return None
    text = schemas.path(file).read_text(encoding="utf-8")
    return _absolute_locations(text, endpoint_url).encode("utf-8")


def _absolute_locations(text: str, endpoint_url: str) -> str:
    for file in ENVELOPE_SCHEMAS:
        text = text.replace(f'schemaLocation="{file}"', f'schemaLocation="{escape(endpoint_url)}?xsd={file[:-4]}"')
    return text
