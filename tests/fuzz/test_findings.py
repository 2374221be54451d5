"""What the mutation fuzzer found, each kept as a test named after it (the fuzzer's run may not draw the
same case again)."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from cryptography import x509

from core.errors import MalformedMessage
from core.xmlsafe import parse_xml
from signing.pki import Pki
from tests.intake.helpers import Reply, application_xml, envelope, post, sign
from tests.support.server import ServerThread

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _signed_envelope(pki: Pki, **kw: object) -> bytes:
    body = envelope(sign(application_xml(**kw), pki))
    assert body.startswith(DECLARATION)
    return body


def _fault(reply: Reply) -> str | None:
    assert b"Traceback" not in reply.body
    return reply.fault_code


def test_utf8_byte_order_mark_then_a_nonsense_encoding_is_malformed(gateway: ServerThread, pki: Pki) -> None:
    # libxml2 believes the mark and parsed it; expat, which cuts the payload out, believed the declaration
    # and raised LookupError: INTERNAL_ERROR.
    body = b"\xef\xbb\xbf" + _signed_envelope(pki).replace(b'encoding="UTF-8"', b'encoding="nonsense"', 1)
    assert _fault(post(gateway.url, body)) == "MALFORMED_MESSAGE"


def test_utf8_byte_order_mark_then_a_declared_multibyte_encoding_is_malformed(gateway: ServerThread,
                                                                              pki: Pki) -> None:
    # expat: "multi-byte encodings are not supported" (ValueError), INTERNAL_ERROR before the fix.
    for declared in (b"UTF-16", b"UTF-32", b"windows-1251"):
        body = b"\xef\xbb\xbf" + _signed_envelope(pki).replace(b'encoding="UTF-8"', b'encoding="' + declared + b'"', 1)
        assert _fault(post(gateway.url, body)) == "MALFORMED_MESSAGE", declared


def test_utf8_byte_order_mark_with_a_utf8_declaration_is_still_accepted(gateway: ServerThread, pki: Pki) -> None:
    assert post(gateway.url, b"\xef\xbb\xbf" + _signed_envelope(pki)).status_code == "SCSS001"


def test_utf16_byte_order_mark_contradicting_the_declaration_is_malformed(gateway: ServerThread, pki: Pki) -> None:
    # A UTF-16 request that declares UTF-8: libxml2 parsed it by the mark; the contradiction is a fatal
    # error in XML 1.0 (4.3.3).
    body = _signed_envelope(pki).decode("utf-8").encode("utf-16")
    assert body.startswith(b"\xff\xfe")
    assert _fault(post(gateway.url, body)) == "MALFORMED_MESSAGE"


def test_utf16_request_that_says_so_is_read_and_its_payload_verified(gateway: ServerThread, pki: Pki) -> None:
    body = _signed_envelope(pki).replace(b'encoding="UTF-8"', b'encoding="UTF-16"', 1).decode("utf-8").encode("utf-16")
    reply = post(gateway.url, body, content_type="text/xml; charset=utf-16")
    assert reply.status_code == "SCSS001", reply.body[:800]


def test_certificate_with_a_malformed_subject_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    # cryptography parses a certificate's names lazily: the damaged subject loaded, the signature (which
    # does not cover KeyInfo) verified with its key, and reading the subject for the trust check's message
    # raised ValueError: INTERNAL_ERROR.
    body = _signed_envelope(pki)
    m = re.search(rb"<ds:X509Certificate>([^<]+)</ds:X509Certificate>", body)
    assert m is not None
    der = bytearray(base64.b64decode(m.group(1)))
    subject = x509.load_pem_x509_certificate(pki.party("individual").cert_pem).subject.public_bytes()
    # The first attribute value's string tag (after its OID 2.5.4.x) becomes BOOLEAN: the certificate
    # still loads, its subject does not parse.
    at = bytes(der).index(subject) + subject.index(b"\x06\x03\x55\x04") + 5
    der[at] = 0x01
    damaged = body[:m.start(1)] + base64.b64encode(bytes(der)) + body[m.end(1):]
    assert _fault(post(gateway.url, damaged)) == "SIGNATURE_INVALID"


@pytest.mark.timeout(15)
def test_node_counting_is_linear_in_the_number_of_nodes() -> None:
    # The count was of a union (elements | comments | PIs), which libxml2 merges with a duplicate check per
    # node: 80,000 comments beside 80,000 elements took 18 s, 190,000 would take minutes. Linear: well
    # under a second, so the timeout (15 s) only trips on the quadratic count (about 30 s here).
    document = b"<r>" + b"<a/><!---->" * 95_000 + b"<?p?></r>"
    root = parse_xml(document, max_elements=200_000)
    assert root.tag == "r"
    with pytest.raises(MalformedMessage, match="more than 190000 nodes"):
        parse_xml(document, max_elements=190_000)


def test_non_ascii_text_in_a_document_element_is_schema_invalid(gateway: ServerThread, pki: Pki) -> None:
    # binascii raises ValueError (not binascii.Error) for a str that is not ASCII: INTERNAL_ERROR before.
    xml = application_xml()
    xml = re.sub(rb'(<document code="FEE_RECEIPT"[^>]*>)[^<]*', lambda m: m.group(1) + "ҚҰЖАТ".encode(), xml)
    assert _fault(post(gateway.url, envelope(sign(xml, pki)))) == "SCHEMA_INVALID"


def test_a_json_body_that_is_not_utf8_is_schema_invalid_not_500(gateway: ServerThread) -> None:
    # FastAPI answers an undecodable JSON body with its own 400 HTTPException, which the JSON APIs' guard
    # did not know: 500 INTERNAL_ERROR.
    response = httpx.post(gateway.url + "/provider/v1/leases", content=b"\x80",
                          headers={"Authorization": "Bearer provider-token-0123456789",
                                   "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errorCode"] == "SCHEMA_INVALID"


def test_an_id_no_route_matches_is_not_found_in_the_error_shape(gateway: ServerThread) -> None:
    # An id holding a slash matches no route: routing's own 404 was FastAPI's {"detail": "Not Found"}.
    response = httpx.post(gateway.url + "/provider/v1/applications/a%2Fb/c/steps", json={},
                          headers={"Authorization": "Bearer provider-token-0123456789"})
    assert response.status_code == 404
    assert response.json()["errorCode"] == "NOT_FOUND" and "errorData" in response.json()
    wrong_method = httpx.delete(gateway.url + "/ops/v1/trust")
    assert wrong_method.status_code == 405 and wrong_method.json()["errorCode"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(("document", "ok"), [
    (b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><a/>', True),
    (b'\xef\xbb\xbf<?xml version="1.0" encoding="us-ascii"?><a/>', True),
    (b'\xef\xbb\xbf<?xml version="1.0"?><a/>', True),
    (b'\xef\xbb\xbf<?xml version="1.0" encoding="nonsense"?><a/>', False),
    (b'\xef\xbb\xbf<?xml version="1.0" encoding="ISO-8859-1"?><a/>', False),
    ('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"), True),
    ('<?xml version="1.0" encoding="UTF-8"?><a/>'.encode("utf-16"), False),
    ('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-32"), False),
])
def test_the_parser_refuses_a_byte_order_mark_its_declaration_contradicts(document: bytes, ok: bool) -> None:
    if ok:
        assert parse_xml(document).tag == "a"
    else:
        with pytest.raises(MalformedMessage):
            parse_xml(document)
