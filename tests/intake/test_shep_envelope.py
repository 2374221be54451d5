"""The SyncChannel adapter on its own: what is read from an envelope, what is rendered back."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

import adapters.xml
from adapters import shep_sync
from adapters.shep_sync import parse_envelope, render_fault, render_response
from core.errors import MalformedMessage, SchemaInvalid
from tests.intake.helpers import MED, SOAP, TYPES, application_xml, envelope

TZ = ZoneInfo("Asia/Almaty")
LIMIT = 10 * 1024 * 1024
PAYLOAD = (f'<StatusRequest xmlns="{MED}"><!-- c --><requestNumber>A&amp;B "1"</requestNumber>'
           "</StatusRequest>").encode()


def test_inline_payload_is_the_exact_bytes_that_arrived() -> None:
    request = parse_envelope(envelope(PAYLOAD), max_bytes=LIMIT)
    assert request.inline is True
    assert request.payload == PAYLOAD


def test_inline_payload_does_not_take_the_envelopes_namespace_declarations() -> None:
    request = parse_envelope(envelope(PAYLOAD), max_bytes=LIMIT)
    assert b"soapenv" not in request.payload and b"xmlns:typ" not in request.payload


def test_escaped_string_payload_is_the_unescaped_document() -> None:
    request = parse_envelope(envelope(PAYLOAD, as_string=True), max_bytes=LIMIT)
    assert request.inline is False
    assert request.payload == PAYLOAD


def test_self_closing_payload_followed_by_a_comment_is_cut_exactly() -> None:
    body = envelope(b"<x/>").replace(b"<x/></data>", f'<P xmlns="{MED}" a="&gt;"/><!--after--></data>'.encode())
    assert parse_envelope(body, max_bytes=LIMIT).payload == f'<P xmlns="{MED}" a="&gt;"/>'.encode()


_CLOSE = b"</requestData></request></typ:SendMessage></soapenv:Body></soapenv:Envelope>"


@pytest.mark.parametrize(("inside", "after"), [
    # (between the payload and </data>, from </data> to the end of the request)
    (b"", _CLOSE),
    (b"\n  ", b"\n</requestData >\n</request>\t</typ:SendMessage\n></soapenv:Body>  </soapenv:Envelope>\r\n"),
    (b"", b"</requestData></request></typ:SendMessage></soapenv:Body></soapenv:Envelope><!-- </data> -->"),
    (b"", b"</requestData></request></typ:SendMessage><!-- x --></soapenv:Body></soapenv:Envelope>"),
    (b"", b"</requestData></request></typ:SendMessage></soapenv:Body></soapenv:Envelope><?pi </data>?>\n"),
    (b"<!-- </P> -->", _CLOSE),
    (b"<?pi </data>?>", _CLOSE),
    (b"<![CDATA[]]>", _CLOSE),
    (b"\r\n<![CDATA[ \n]]> ", _CLOSE),
], ids=["tight", "whitespace", "comment-after-root", "comment-in-body", "pi-after-root", "comment-in-data",
        "pi-in-data", "empty-cdata-in-data", "blank-cdata-in-data"])
@pytest.mark.parametrize("payload", [
    f'<P xmlns="{MED}"><a>x</a><![CDATA[</data></requestData>]]><!-- </P> --></P>'.encode(),
    f'<P xmlns="{MED}" a="&gt;"/>'.encode(),
    f'<m:P xmlns:m="{MED}">\n<m:a>&lt;/data&gt;</m:a>\n</m:P  >'.encode(),
], ids=["cdata-and-comment", "self-closing", "prefixed"])
def test_the_payloads_end_read_backwards_agrees_with_the_full_pass(inside: bytes, after: bytes,
                                                                   payload: bytes) -> None:
    """The payload's end is read from the request's closing tags when only whitespace follows the payload
    (`_closing_start`), else found by expat through the payload: both give the same bytes, whatever
    comments, processing instructions, CDATA or whitespace stand around and inside."""
    body = envelope(b"<x/>").replace(b"<x/></data>" + _CLOSE, payload + inside + b"</data>" + after)
    request = parse_envelope(body, max_bytes=LIMIT)
    assert request.payload == payload
    assert request.payload_span == (body.index(payload), body.index(payload) + len(payload))
    fast = shep_sync._closing_start(body, request.element)
    assert (fast is not None) == all(mark not in inside + after for mark in (b"<!--", b"<?", b"<![CDATA["))
    assert shep_sync._payload_bounds(body) == (body.index(payload), body.index(payload) + len(payload))


def test_an_envelope_in_another_encoding_is_cut_from_its_utf8_text() -> None:
    text = envelope(application_xml()).decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    request = parse_envelope(text.encode("utf-16"), max_bytes=LIMIT)
    assert request.payload.decode("utf-8").startswith("<MedicalLicenseApplication")
    assert "АХМЕТОВА" in request.payload.decode("utf-8")


def test_request_info_is_read() -> None:
    body = envelope(PAYLOAD, sender="CENTER_IS", message_id="m-1", service="MED_LICENSE_STATUS",
                    session_id="{0b9e5d3c-2f61-4c8e-8d0a-7a1e4b2c9f30}")
    info = parse_envelope(body, max_bytes=LIMIT).info
    assert (info.message_id, info.sender_id, info.password, info.service_id) == (
        "m-1", "CENTER_IS", "center-secret", "MED_LICENSE_STATUS")
    assert info.session_id == "{0b9e5d3c-2f61-4c8e-8d0a-7a1e4b2c9f30}"


@pytest.mark.parametrize("body, reason", [
    (b"<a><b></a>", "not well-formed"),
    (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>', "SOAP 1.2"),
    (b"<Envelope/>", "not a SOAP 1.1 envelope"),
    (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><t:Other xmlns:t="{TYPES}"/></e:Body></e:Envelope>'.encode(),
     "unknown operation"),
    (f'<e:Envelope xmlns:e="{SOAP}"><e:Body/></e:Envelope>'.encode(), "empty"),
])
def test_what_is_not_a_sendmessage_envelope_is_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as err:
        parse_envelope(body, max_bytes=LIMIT)
    assert reason in str(err.value.data)


def test_schema_failure_names_the_element() -> None:
    body = envelope(PAYLOAD).replace(b"<messageDate>2026-11-27T11:02:17+05:00</messageDate>",
                                     b"<messageDate>yesterday</messageDate>")
    with pytest.raises(SchemaInvalid) as err:
        parse_envelope(body, max_bytes=LIMIT)
    assert "messageDate" in str(err.value.data)


def test_qualified_children_fail_the_schema() -> None:
    body = envelope(PAYLOAD).replace(b"<request>", b"<typ:request>").replace(b"</request>", b"</typ:request>")
    with pytest.raises(SchemaInvalid):
        parse_envelope(body, max_bytes=LIMIT)


def test_two_payload_elements_are_refused() -> None:
    with pytest.raises(SchemaInvalid):
        parse_envelope(envelope(PAYLOAD + PAYLOAD), max_bytes=LIMIT)


def test_empty_data_is_refused() -> None:
    with pytest.raises(SchemaInvalid):
        parse_envelope(envelope(b""), max_bytes=LIMIT)


def _schema_valid(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    element = root.find(f"{{{SOAP}}}Body")[0]
    if element.tag == f"{{{SOAP}}}Fault":
        element = element.find(f"detail/{{{TYPES}}}SendMessageFault1_SendMessageFault")
    schema = shep_sync.envelope_schema()
    assert schema.validate(element), schema.error_log
    return root


def test_response_has_the_samples_shape_and_passes_the_schema() -> None:
    body = render_response(correlation_id="c-1", response_date=datetime(2026, 11, 27, 6, 2, 17, tzinfo=UTC), tz=TZ,
                           data=b'<?xml version="1.0"?>\n<Receipt xmlns="urn:kz:egov:medlicense:v1"/>')
    root = _schema_valid(body)
    info = root.find(f".//{{{TYPES}}}SendMessageResponse/response/responseInfo")
    assert info.findtext("correlationId") == "c-1"
    assert info.findtext("status/code") == "SCSS001"
    assert info.findtext("responseDate") == "2026-11-27T11:02:17.000+05:00"


def test_fault_has_the_samples_shape() -> None:
    body = render_fault(code="IIN_MISMATCH", message="kk / ru", data="certificate IIN 1, applicant/iin 2",
                        at=datetime(2026, 11, 27, 6, 2, 17, 398000, tzinfo=UTC), tz=TZ, server_side=False)
    root = _schema_valid(body)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault.findtext("faultcode") == "soapenv:Client"
    info = fault.find(f"detail/{{{TYPES}}}SendMessageFault1_SendMessageFault")
    assert [c.tag for c in info] == ["errorCode", "errorMessage", "errorData", "errorDate"]
    assert info.findtext("errorDate") == "2026-11-27T11:02:17.398+05:00"


def test_server_side_faults_say_server() -> None:
    body = render_fault(code="OVERLOADED", message="m", data=None, at=datetime.now(UTC), tz=TZ, server_side=True)
    assert b"<faultcode>soapenv:Server</faultcode>" in body
    assert b"errorData" not in body


def test_fault_data_with_control_characters_stays_well_formed() -> None:
    body = render_fault(code="SCHEMA_INVALID", message="m", data="bad \x01 <char>", at=datetime.now(UTC), tz=TZ,
                        server_side=False)
    assert etree.fromstring(body) is not None


def test_wsdl_points_every_import_at_the_endpoint() -> None:
    wsdl = shep_sync.wsdl_document("http://gw.example/shep/sync").decode()
    assert 'location="http://gw.example/shep/sync"' in wsdl
    assert 'schemaLocation="http://gw.example/shep/sync?xsd=SyncChannel_v10_Types"' in wsdl
    types = shep_sync.schema_document("SyncChannel_v10_Types", "http://gw.example/shep/sync").decode()
    assert "?xsd=common_v10_Types" in types and "?xsd=SyncChannel_v10_Request" in types
    assert shep_sync.schema_document("../../etc/passwd", "http://x") is None


def test_lenient_dates_are_read_in_every_form_the_bus_uses() -> None:
    parse = adapters.xml.parse_lenient_datetime
    assert parse("2026-11-27T11:02:17+06:00", TZ) == datetime(2026, 11, 27, 5, 2, 17, tzinfo=UTC)
    assert parse("2026-11-27T11:02:17", TZ) == datetime(2026, 11, 27, 6, 2, 17, tzinfo=UTC)
    assert parse("2026-11-27", TZ) == datetime(2026, 11, 26, 19, 0, tzinfo=UTC)
    assert parse("junk", TZ) is None
