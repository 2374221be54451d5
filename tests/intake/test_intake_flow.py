"""Intake as the regulation and docs/shep.md describe it: accepted applications are stored and queued
before SCSS001; incomplete packages are refused at intake and never queued; repeats get the first receipt.
Runs on SQLite and PostgreSQL where storage behaviour matters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.domain import Decision, Status, Step
from gateway.app import create_app
from gateway.storage import StepRecord, Transition
from signing.pki import Pki
from tests.intake.conftest import make_config
from tests.intake.helpers import MED, application_xml, docs_for, elicense_xml, envelope, post, sign
from tests.support.server import ServerThread, serve


@pytest.fixture
def gw_any(pki: Pki, storage_url: str) -> Iterator[tuple[ServerThread, Any]]:
    """A gateway on SQLite, then on PostgreSQL; yields the server and its Gateway object."""
    app = create_app(make_config(pki, storage_url))
    with serve(app) as server:
        yield server, app.state.services


def test_accepted_application_is_stored_and_queued_before_the_receipt(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    payload = sign(application_xml("002145778812"), pki)
    message_id = str(uuid.uuid4())
    reply = post(server.url, envelope(payload, message_id=message_id))
    assert reply.http_status == 200 and reply.status_code == "SCSS001"
    registration = reply.receipt("registrationNumber")
    assert re.fullmatch(r"MED-\d{4}-\d{6}", registration or "")
    assert reply.receipt("status") == "RECEIVED"
    assert (reply.receipt("statusKk"), reply.receipt("statusRu")) == ("Қабылданды", "Принято")
    assert reply.root.findtext(".//responseInfo/correlationId") == message_id

    record = gw.storage.find_by_message_id("EGOV_PORTAL", message_id)
    assert record.registration_number == registration and record.status is Status.RECEIVED
    assert gw.storage.queue_depth() == 1
    # Exactly the signed document as it travelled inline (an XML declaration cannot travel inside data).
    assert gw.storage.get_payload(record.id) == payload.split(b"?>", 1)[1].lstrip()
    assert record.signer.iin == "871008401427" and record.applicant.iin == "871008401427"
    assert [d.code for d in record.documents] == ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT",
                                                  "STAFF_QUALIFICATION"]
    due = gw.calendar.term_deadline(record.received_at, 13)
    assert record.due_at == due
    assert reply.receipt("dueAt") == due.astimezone(gw.config.calendar.tz).isoformat(timespec="seconds")
    inbound = [e for e in gw.storage.message_log(message_id=message_id) if e.direction == "in"]
    assert inbound and inbound[0].verdict == "SCSS001" and inbound[0].body.startswith(b"<?xml")


@pytest.mark.parametrize("as_string", [False, True], ids=["inline", "escaped-string"])
@pytest.mark.parametrize("layout", [
    {"c14n": "inclusive"}, {"c14n": "inclusive", "with_comments": True}, {"c14n": "exclusive"},
    {"layout": "default-ns", "c14n": "inclusive"},
], ids=["inclusive", "inclusive-with-comments", "exclusive", "default-ns"])
def test_payload_signed_standalone_verifies_inside_an_envelope_declaring_namespaces(
        gateway: ServerThread, pki: Pki, as_string: bool, layout: dict[str, Any]) -> None:
    # The envelope declares xmlns:soapenv and xmlns:typ on its root: inclusive c14n of a re-serialised
    # element would pick them up; the bytes as they arrived do not.
    payload = sign(application_xml(comment=True), pki, **layout)
    body = envelope(payload, as_string=as_string)
    assert b'xmlns:typ="http://bip.bee.kz/SyncChannel/v10/Types"' in body.split(b"<soapenv:Body>")[0]
    reply = post(gateway.url, body)
    assert reply.status_code == "SCSS001", reply.body[:1500]


def test_incomplete_package_is_refused_at_intake_and_not_queued(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    docs = docs_for("REISSUE", skip=("FEE_RECEIPT", "REISSUE_GROUNDS"))
    message_id = str(uuid.uuid4())
    reply = post(server.url, envelope(sign(application_xml(service_type="REISSUE", documents=docs), pki),
                                      message_id=message_id))
    assert reply.http_status == 200 and reply.status_code == "INTAKE_REFUSED"
    assert reply.data.tag == f"{{{MED}}}IntakeRefusal"
    missing = [d.get("code") for d in reply.data.iterfind(f"{{{MED}}}missingDocuments/{{{MED}}}document")]
    assert missing == ["FEE_RECEIPT", "REISSUE_GROUNDS"]
    assert "Отказано в приеме" in reply.receipt("statusRu")
    record = gw.storage.find_by_message_id("EGOV_PORTAL", message_id)
    assert record.status is Status.INTAKE_REFUSED and record.missing_documents == ("FEE_RECEIPT", "REISSUE_GROUNDS")
    assert gw.storage.queue_depth() == 0


def test_same_message_id_and_content_gets_the_first_receipt_and_queues_nothing(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    body = envelope(sign(application_xml(), pki))
    first, again = post(server.url, body), post(server.url, body)
    assert first.status_code == again.status_code == "SCSS001"
    assert first.receipt("registrationNumber") == again.receipt("registrationNumber")
    assert first.receipt("receivedAt") == again.receipt("receivedAt")
    assert gw.storage.queue_depth() == 1


def test_concurrent_repeats_of_one_message_make_one_application(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    body = envelope(sign(application_xml(), pki))
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: post(server.url, body), range(8)))
    assert {r.status_code for r in replies} == {"SCSS001"}
    assert len({r.receipt("registrationNumber") for r in replies}) == 1
    assert gw.storage.queue_depth() == 1


def test_same_request_number_under_a_new_message_id(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml("PORTAL-77"), pki)
    first = post(gateway.url, envelope(payload))
    # A retry with a new messageId and the same signed payload: the same receipt.
    retry = post(gateway.url, envelope(payload))
    assert retry.status_code == "SCSS001"
    assert retry.receipt("registrationNumber") == first.receipt("registrationNumber")
    # Another application under the same requestNumber: a conflict.
    other = post(gateway.url, envelope(sign(application_xml("PORTAL-77"), pki)))
    assert other.fault_code == "MESSAGE_ID_CONFLICT"
    assert gateway.app.state.services.storage.queue_depth() == 1


def test_refused_message_can_be_corrected_under_the_same_message_id(gateway: ServerThread, pki: Pki) -> None:
    message_id = str(uuid.uuid4())
    bad = post(gateway.url, envelope(sign(application_xml(iin="123456789011"), pki), message_id=message_id))
    assert bad.fault_code == "IIN_INVALID"
    good = post(gateway.url, envelope(sign(application_xml(), pki), message_id=message_id))
    assert good.status_code == "SCSS001"


def test_channel_must_be_the_senders(gateway: ServerThread, pki: Pki) -> None:
    reply = post(gateway.url, envelope(sign(application_xml(channel="CENTER"), pki)))
    assert reply.fault_code == "SCHEMA_INVALID" and "channel" in (reply.error_data or "")


def test_center_application_signed_by_its_operator(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(channel="CENTER", service_type="DUPLICATE"), pki, "center_operator")
    assert post(gateway.url, envelope(payload, sender="CENTER_IS")).status_code == "SCSS001"


@pytest.mark.parametrize("party", ["le_head", "le_signer"])
def test_legal_entity_signed_by_first_head_or_right_to_sign(gateway: ServerThread, pki: Pki, party: str) -> None:
    payload = sign(application_xml(iin=None, bin_="940140000385", name='ТОО "Шипагер"'), pki, party)
    assert post(gateway.url, envelope(payload)).status_code == "SCSS001"


@pytest.mark.parametrize("as_string", [False, True])
def test_elicense_dialect_under_its_own_service_id(gateway: ServerThread, pki: Pki, as_string: bool) -> None:
    payload = sign(elicense_xml(), pki, layout="default-ns", c14n="exclusive")
    reply = post(gateway.url, envelope(payload, sender="ELICENSE", service="ELICENSE_MED_LICENSE",
                                       as_string=as_string))
    assert reply.status_code == "SCSS001", reply.body[:1000]
    record = gateway.app.state.services.storage.find_by_registration_number(reply.receipt("registrationNumber"))
    assert record.dialect == "elicense" and record.channel.value == "ELICENSE"


def test_licensor_bin_must_be_a_served_provider(gateway: ServerThread, pki: Pki) -> None:
    reply = post(gateway.url, envelope(sign(application_xml(licensor_bin="990140004654"), pki)))
    assert reply.fault_code == "SCHEMA_INVALID" and "licensorBin" in (reply.error_data or "")


def _status(server: ServerThread, number: str, sender: str = "EGOV_PORTAL"):  # noqa: ANN202
    body = envelope(f'<StatusRequest xmlns="{MED}"><requestNumber>{number}</requestNumber></StatusRequest>'.encode(),
                    sender=sender, service="MED_LICENSE_STATUS")
    return post(server.url, body)


def test_status_request_answers_status_texts_and_due_date(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    receipt = post(server.url, envelope(sign(application_xml("ST-1"), pki)))
    for number in ("ST-1", receipt.receipt("registrationNumber")):
        reply = _status(server, number)
        assert reply.status_code == "SCSS001"
        assert reply.data.tag == f"{{{MED}}}StatusResponse"
        assert reply.receipt("status") == "RECEIVED" and reply.receipt("statusKk") == "Қабылданды"
        assert reply.receipt("dueAt") == receipt.receipt("dueAt")
        assert reply.receipt("registrationNumber") == receipt.receipt("registrationNumber")


def test_a_sender_sees_only_its_own_applications(gateway: ServerThread, pki: Pki) -> None:
    receipt = post(gateway.url, envelope(sign(application_xml("OWN-1"), pki)))
    for number in ("OWN-1", receipt.receipt("registrationNumber")):
        reply = _status(gateway, number, sender="CENTER_IS")
        assert reply.receipt("status") == "NOT_FOUND" and reply.receipt("registrationNumber") is None


def test_status_shows_the_signed_result_only_once_it_is_issued(gw_any, pki: Pki) -> None:  # noqa: ANN001
    server, gw = gw_any
    receipt = post(server.url, envelope(sign(application_xml("FIN-1"), pki)))
    record = gw.storage.find_by_registration_number(receipt.receipt("registrationNumber"))
    result = sign(f'<LicenseDecision xmlns="{MED}"><registrationNumber>{record.registration_number}'
                  "</registrationNumber><decision>GRANTED</decision><licenseNumber>KZ41LAA00001873</licenseNumber>"
                  "<issuedAt>2026-12-09T16:30:00+05:00</issuedAt></LicenseDecision>".encode(), pki, "provider_head")
    now = datetime.now(UTC)
    gw.storage.apply_transition(record.id, Transition(recorded_at=now,
        step=StepRecord(Step.SIGNED, "provider_head", now, "test"), expected_last_step=None,
        new_status=Status.GRANTED, decision=Decision.GRANTED, result=result))
    signed = _status(server, "FIN-1")
    # Signed by management but not yet issued by the authorized employee: not published to the applicant.
    assert signed.receipt("status") == "IN_REVIEW" and signed.receipt("statusRu") == "На рассмотрении"
    assert signed.data.find(f"{{{MED}}}result") is None
    gw.storage.apply_transition(record.id, Transition(recorded_at=now,
        step=StepRecord(Step.ISSUED, "employee", now, "test"), expected_last_step=Step.SIGNED))
    reply = _status(server, "FIN-1")
    assert reply.receipt("status") == "GRANTED" and reply.receipt("statusRu") == "Удовлетворено"
    decision = reply.data.find(f"{{{MED}}}result/{{{MED}}}LicenseDecision")
    assert decision is not None and decision.findtext(f"{{{MED}}}licenseNumber") == "KZ41LAA00001873"


def test_refusals_are_logged_with_their_verdict(gateway: ServerThread) -> None:
    message_id = str(uuid.uuid4())
    post(gateway.url, envelope(application_xml(), message_id=message_id, password="wrong"))
    gw = gateway.app.state.services
    gw.intake.message_log.stop()  # flush
    entries = gw.storage.message_log(message_id=message_id)
    assert {(e.direction, e.verdict) for e in entries} == {("in", "SENDER_AUTH_FAILED"), ("out", "SENDER_AUTH_FAILED")}
    assert all(len(e.sha256) == 64 for e in entries)


def test_requests_are_counted_in_metrics(gateway: ServerThread) -> None:
    post(gateway.url, envelope(application_xml(), sender="NOBODY"))
    import httpx

    text = httpx.get(gateway.url + "/metrics").text
    assert 'licgate_requests_total{code="SENDER_UNKNOWN",endpoint="shep/sync"} 1.0' in text
    assert "licgate_request_seconds_bucket" in text


@pytest.mark.parametrize("content_type", ["text/xml; charset=utf-8", "application/xml",
                                          'application/soap+xml; charset=utf-8; action=""'])
def test_every_soap_content_type_is_accepted(gateway: ServerThread, pki: Pki, content_type: str) -> None:
    reply = post(gateway.url, envelope(sign(application_xml(), pki)), content_type=content_type)
    assert reply.status_code == "SCSS001"


def test_soapaction_may_be_absent(gateway: ServerThread, pki: Pki) -> None:
    import httpx

    r = httpx.post(gateway.url + "/shep/sync", content=envelope(sign(application_xml(), pki)),
                   headers={"Content-Type": "text/xml"})
    assert r.status_code == 200 and b"<code>SCSS001</code>" in r.content


def test_envelope_in_windows_1251_with_a_payload_signed_in_utf8(gateway: ServerThread, pki: Pki) -> None:
    # The payload's characters are what c14n signs, so the envelope's encoding does not matter.
    body = envelope(sign(application_xml(), pki)).decode("utf-8")
    body = body.replace('encoding="UTF-8"', 'encoding="windows-1251"').replace("ҚЫЗЫ", "КЫЗЫ")
    reply = post(gateway.url, body.encode("cp1251"))
    # The name changed (Ә/Қ are not in cp1251), so the signature no longer matches: SIGNATURE_INVALID,
    # which proves the payload was found, transcoded and verified rather than refused as malformed.
    assert reply.fault_code == "SIGNATURE_INVALID"
    payload = sign(application_xml(name="АХМЕТОВА АЙГЕРИМ"), pki)
    body = envelope(payload).decode("utf-8").replace('encoding="UTF-8"', 'encoding="windows-1251"')
    assert post(gateway.url, body.encode("cp1251")).status_code == "SCSS001"


def test_the_registration_number_carries_the_year_in_astana(pki: Pki, tmp_path) -> None:  # noqa: ANN001
    from core.clock import ManualClock

    # 19:30 UTC on 31 December is 00:30 on 1 January in Astana (UTC+5).
    clock = ManualClock(datetime(2026, 12, 31, 19, 30, tzinfo=UTC))
    from pathlib import Path

    from gateway.config import parse_config
    from tests.intake.conftest import config_table

    table = config_table(pki, f"sqlite:///{tmp_path / 'ny.db'}")
    table["trust"]["revocation"] = "off"  # the test CRL's nextUpdate is a month from today
    app = create_app(parse_config(table, base_dir=Path.cwd()), clock=clock)
    with serve(app) as server:
        reply = post(server.url, envelope(sign(application_xml(), pki)))
    assert reply.status_code == "SCSS001"
    assert reply.receipt("registrationNumber").startswith("MED-2027-")
    assert reply.receipt("receivedAt") == "2027-01-01T00:30:00+05:00"


def test_each_soap_request_gets_one_log_line_and_is_counted(gateway, pki: Pki, caplog) -> None:  # noqa: ANN001
    """`POST /shep/sync` bypasses FastAPI's middleware (LicgateApp): its own request log line and metrics."""
    accepted_id, refused_id = str(uuid.uuid4()), str(uuid.uuid4())
    with caplog.at_level("INFO", logger="licgate"):
        ok = post(gateway.url, envelope(sign(application_xml(), pki), message_id=accepted_id))
        bad = post(gateway.url, envelope(sign(application_xml(), pki), message_id=refused_id, password="wrong"))
        media = post(gateway.url, b"<x/>", content_type="application/json")
    assert ok.status_code == "SCSS001" and bad.fault_code == "SENDER_AUTH_FAILED"
    assert media.fault_code == "MALFORMED_MESSAGE"
    lines = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "path", None) == "/shep/sync"]
    assert [(r.method, r.status, r.outcome) for r in lines] == [
        ("POST", 200, "SCSS001"), ("POST", 500, "SENDER_AUTH_FAILED"), ("POST", 500, "MALFORMED_MESSAGE")]
    assert lines[0].messageId == accepted_id and lines[0].senderId == "EGOV_PORTAL"
    assert re.fullmatch(r"MED-\d{4}-\d{6}", lines[0].registrationNumber)
    assert lines[1].messageId == refused_id and not hasattr(lines[1], "registrationNumber")
    assert all(r.ms >= 0 for r in lines)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'licgate_requests_total{code="SCSS001",endpoint="shep/sync"} 1.0' in metrics
    assert 'licgate_requests_total{code="SENDER_AUTH_FAILED",endpoint="shep/sync"} 1.0' in metrics
    assert 'licgate_request_seconds_count{endpoint="shep/sync"} 3.0' in metrics
    assert "licgate_soap_in_flight 0.0" in metrics
    # The WSDL is still FastAPI's, and logged by its middleware.
    assert httpx.get(f"{gateway.url}/shep/sync?wsdl").status_code == 200
