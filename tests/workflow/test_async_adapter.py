"""The AsyncChannel v10 `sendMessage` envelope, the receiver's answer, and the LicenseDecision reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from adapters.decision import read_decision
from adapters.shep_async import (
    ASYNC_TYPES,
    NOTIFICATION,
    RESPONSE,
    StatusMessage,
    read_send_answer,
    render_send_message,
)
from adapters.xml import MED, SOAP_ENV
from core.domain import Channel, Decision, Status
from core.errors import SchemaInvalid
from tests.support.async_messages import read_send_message
from tests.workflow.helpers import ALMATY

DECISION = (
    b'<LicenseDecision xmlns="urn:kz:egov:medlicense:v1">\n'
    b"  <registrationNumber>MED-2026-000731</registrationNumber>\n"
    b"  <decision>GRANTED</decision>\n"
    b"  <licenseNumber>KZ41LAA00001873</licenseNumber>\n"
    b"  <issuedAt>2026-12-09T16:30:00+05:00</issuedAt>\n"
    b"</LicenseDecision>"
)


def message(**overrides: object) -> StatusMessage:
    base = dict(
        message_id="b1c7", correlation_id="6f1c2a8e", service_id="MED_LICENSE", message_type=NOTIFICATION,
        route_id="EGOV_PORTAL", message_date=datetime(2026, 11, 27, 6, 9, 3, tzinfo=UTC), sender_id="LICGATE",
        channel=Channel.PORTAL, request_number="002145778812", registration_number="MED-2026-000731",
        status=Status.REGISTERED, changed_at=datetime(2026, 11, 27, 6, 9, 3, tzinfo=UTC), password="secret",
        session_id="{ABC}", due_at=datetime(2026, 12, 17, 13, 30, tzinfo=UTC),
    )
    base.update(overrides)
    return StatusMessage(**base)  # type: ignore[arg-type]


def test_send_message_has_the_v10_shape_with_unqualified_children_in_schema_order() -> None:
    body = render_send_message(message(), ALMATY)
    root = etree.fromstring(body)
    wrapper = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}sendMessage")
    assert wrapper is not None
    info = wrapper.find("request/messageInfo")
    assert info is not None, "request and messageInfo must be unqualified"
    assert [c.tag for c in info] == ["messageId", "correlationId", "serviceId", "messageType", "routeId",
                                    "messageDate", "sender", "properties", "sessionId"]
    assert [c.tag for c in info.find("sender")] == ["senderId", "password"]
    assert [c.tag for c in info.find("properties")] == ["key", "value"]


def test_notification_routes_to_the_original_sender_and_correlates_to_the_original_message() -> None:
    got = read_send_message(render_send_message(message(), ALMATY))
    assert got.route_id == "EGOV_PORTAL"
    assert got.correlation_id == "6f1c2a8e"
    assert got.message_id == "b1c7"
    assert got.message_type == "NOTIFICATION"
    assert got.properties == {"channel": "PORTAL"}
    assert got.session_id == "{ABC}"


def test_dates_are_written_in_astana_time_with_the_offset() -> None:
    got = read_send_message(render_send_message(message(), ALMATY))
    assert got.message_date == "2026-11-27T11:09:03+05:00"
    assert got.changed_at == "2026-11-27T11:09:03+05:00"
    assert got.due_at == "2026-12-17T18:30:00+05:00"


def test_status_texts_are_bilingual() -> None:
    got = read_send_message(render_send_message(message(status=Status.IN_REVIEW), ALMATY))
    assert (got.status, got.status_kk, got.status_ru) == ("IN_REVIEW", "Қаралуда", "На рассмотрении")


def test_the_response_embeds_the_signed_decision_unchanged() -> None:
    body = render_send_message(message(message_type=RESPONSE, status=Status.GRANTED, result=DECISION,
                                       due_at=None), ALMATY)
    got = read_send_message(body)
    assert got.message_type == "RESPONSE"
    assert got.status_kk == "Қанағаттандырылды"
    assert got.result is not None
    # Exactly the uploaded element: canonical forms match.
    assert etree.tostring(etree.fromstring(got.result), method="c14n") == etree.tostring(
        etree.fromstring(DECISION), method="c14n")
    data = etree.fromstring(body).find(f".//{{{MED}}}StatusNotification")
    assert [etree.QName(c).localname for c in data] == [
        "requestNumber", "registrationNumber", "status", "statusKk", "statusRu", "changedAt", "result"]


def test_no_password_element_when_no_password_is_configured() -> None:
    root = etree.fromstring(render_send_message(message(password=""), ALMATY))
    assert root.find(f".//{{{ASYNC_TYPES}}}sendMessage/request/messageInfo/sender/password") is None


# -- the receiver's answer ---------------------------------------------------------------------------------


def _answer(code: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
            f'<typ:sendMessageResponse xmlns:typ="{ASYNC_TYPES}"><response><messageId>x</messageId>'
            f"<status><code>{code}</code><message>m</message></status></response>"
            "</typ:sendMessageResponse></soapenv:Body></soapenv:Envelope>").encode()


def test_message_accepted_is_delivered() -> None:
    answer = read_send_answer(200, _answer("MESSAGE_ACCEPTED"))
    assert answer.accepted and answer.verdict == "MESSAGE_ACCEPTED"


def test_a_bare_http_200_is_delivered() -> None:
    assert read_send_answer(200, b"").accepted


def test_message_not_accepted_with_the_official_misspelling_is_refused() -> None:
    answer = read_send_answer(200, _answer("MESSAGE_NOT_ACCTEPTED"))
    assert not answer.accepted and answer.verdict == "MESSAGE_NOT_ACCTEPTED"


def test_a_soap_fault_is_refused_even_with_http_200() -> None:
    fault = (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
             "<faultcode>soapenv:Server</faultcode><faultstring>busy</faultstring><detail><e>"
             "<errorCode>SHEP_BUSY</errorCode></e></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    answer = read_send_answer(200, fault.encode())
    assert not answer.accepted
    assert "SHEP_BUSY" in answer.verdict


def test_a_server_error_is_refused() -> None:
    answer = read_send_answer(503, b"Service Unavailable")
    assert not answer.accepted and answer.verdict == "HTTP 503"


# -- the LicenseDecision reader ------------------------------------------------------------------------------


def test_a_granted_decision_is_read_from_the_verified_element() -> None:
    decision = read_decision(etree.fromstring(DECISION), ALMATY)
    assert decision.decision is Decision.GRANTED
    assert decision.license_number == "KZ41LAA00001873"
    assert decision.issued_at == datetime(2026, 12, 9, 11, 30, tzinfo=UTC)


def _decision(body: str) -> etree._Element:
    return etree.fromstring(f'<LicenseDecision xmlns="urn:kz:egov:medlicense:v1">{body}</LicenseDecision>')


def test_a_granted_decision_needs_a_licence_number() -> None:
    with pytest.raises(SchemaInvalid, match="licenseNumber"):
        read_decision(_decision("<registrationNumber>M</registrationNumber><decision>GRANTED</decision>"
                                "<issuedAt>2026-12-09</issuedAt>"), ALMATY)


def test_a_refusal_needs_reasons_in_kazakh_and_russian() -> None:
    with pytest.raises(SchemaInvalid, match="reasonRu"):
        read_decision(_decision("<registrationNumber>M</registrationNumber><decision>REFUSED</decision>"
                                "<reasonKk>Себеп</reasonKk><issuedAt>2026-12-09</issuedAt>"), ALMATY)
    refusal = read_decision(_decision(
        "<registrationNumber>M</registrationNumber><decision>REFUSED</decision><reasonKk>Себеп</reasonKk>"
        "<reasonRu>Причина</reasonRu><issuedAt>2026-12-09T10:00:00</issuedAt><extra>ok</extra>"), ALMATY)
    assert refusal.reason_ru == "Причина"
    assert refusal.issued_at == datetime(2026, 12, 9, 5, 0, tzinfo=UTC)  # no offset: Astana time


def test_a_decision_with_elements_out_of_order_is_schema_invalid() -> None:
    with pytest.raises(SchemaInvalid, match="out of order"):
        read_decision(_decision("<decision>GRANTED</decision><registrationNumber>M</registrationNumber>"
                                "<licenseNumber>L</licenseNumber><issuedAt>2026-12-09</issuedAt>"), ALMATY)


def test_another_root_element_is_schema_invalid() -> None:
    with pytest.raises(SchemaInvalid, match="root element"):
        read_decision(etree.fromstring(b'<StatusRequest xmlns="urn:kz:egov:medlicense:v1"/>'), ALMATY)


def test_the_password_is_filled_in_the_sender_block_only_escaped_or_left_out_when_empty() -> None:
    from adapters.shep_async import PASSWORD_PLACEHOLDER, with_sender_password

    stored = render_send_message(message(password=PASSWORD_PLACEHOLDER), ALMATY)
    assert b"<password>***</password>" in stored
    filled = with_sender_password(stored, 'a&b<c>"d')
    path = f".//{{{ASYNC_TYPES}}}sendMessage/request/messageInfo/sender/password"
    assert etree.fromstring(filled).findtext(path) == 'a&b<c>"d'
    assert filled.replace(b'a&amp;b&lt;c&gt;"d', b"***") == stored  # nothing else changed
    assert etree.fromstring(with_sender_password(stored, "")).find(path) is None
    assert etree.fromstring(with_sender_password(stored, "a\rb")).findtext(path) == "a\rb"  # as &#13;
    assert with_sender_password(with_sender_password(stored, "one"), PASSWORD_PLACEHOLDER) == stored
    # A payload whose text looks like a sender block (a result document could): it comes through untouched.
    lookalike = b"<sender><senderId>X</senderId><password>***</password></sender>"
    with_payload = stored.replace(b"<messageData><data>", b"<messageData><data>" + lookalike, 1)
    assert with_payload != stored
    refilled = with_sender_password(with_payload, "real")
    assert refilled.count(lookalike) == 1 and refilled.count(b"<password>real</password>") == 1
