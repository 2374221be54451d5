"""Every error code of docs/shep.md, provoked with real bytes over loopback against the running app.

Each test names the rule; each checks the fault's errorCode (and faultcode where it matters)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.storage import StorageUnavailable
from gateway.storage.sqlite import SqliteStorage
from signing.pki import Pki
from tests.intake.conftest import make_config
from tests.intake.helpers import Doc, Reply, application_xml, docs_for, envelope, post, sign
from tests.signing.stamps import mock_stamper
from tests.support.server import ServerThread, serve


def assert_fault(reply: Reply, code: str, faultcode: str = "soapenv:Client") -> None:
    # Every fault is HTTP 500 (SOAP 1.1), but back-pressure: 503 with Retry-After, as HTTP says "later".
    if code == "OVERLOADED":
        assert (reply.http_status, reply.retry_after) == (503, "1"), reply.body[:500]
    else:
        assert reply.http_status == 500 and reply.retry_after is None, reply.body[:500]
    assert reply.fault_code == code, reply.body[:1000]
    assert reply.root.findtext(".//faultcode") == faultcode
    assert b"Traceback" not in reply.body


def submit(gateway: ServerThread, pki: Pki, *, party: str = "individual", sender: str = "EGOV_PORTAL",
           **app_kw: object) -> Reply:
    channel = {"EGOV_PORTAL": "PORTAL", "CENTER_IS": "CENTER", "ELICENSE": "ELICENSE"}.get(sender, "PORTAL")
    app_kw.setdefault("channel", channel)
    return post(gateway.url, envelope(sign(application_xml(**app_kw), pki, party), sender=sender))


# -- size, well-formedness, envelope schema --------------------------------------------------------------

def test_malformed_message_not_well_formed(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, b"<soapenv:Envelope"), "MALFORMED_MESSAGE")


def test_malformed_message_doctype(gateway: ServerThread) -> None:
    body = b'<!DOCTYPE x [<!ENTITY e "y">]>' + envelope(application_xml()).split(b"?>", 1)[1]
    assert_fault(post(gateway.url, body), "MALFORMED_MESSAGE")


def test_malformed_message_doctype_inside_an_escaped_payload_comes_before_sender_checks(
        gateway: ServerThread) -> None:
    # The escaped document is part of the message: a DTD there is refused at the well-formedness stage,
    # before the (unknown) sender is looked at.
    hostile = b'<!DOCTYPE x [<!ENTITY e "boom">]><MedicalLicenseApplication xmlns="urn:kz:egov:medlicense:v1"/>'
    reply = post(gateway.url, envelope(hostile, sender="NOBODY", as_string=True))
    assert reply.fault_code == "MALFORMED_MESSAGE"
    broken = post(gateway.url, envelope(b"<MedicalLicenseApplication>", sender="NOBODY", as_string=True))
    assert broken.fault_code == "MALFORMED_MESSAGE"


def test_a_comment_cannot_hide_the_service_type_that_needs_a_licence_number(gateway: ServerThread, pki: Pki) -> None:
    # Comments are not signed: "RE<!-- -->ISSUE" is REISSUE for every check, so licenseNumber is required.
    xml = application_xml(service_type="REISSUE", license_number="")
    commented = xml.replace(b"<serviceType>REISSUE</serviceType>", b"<serviceType>RE<!-- -->ISSUE</serviceType>")
    assert b"<licenseNumber>" not in commented
    assert_fault(post(gateway.url, envelope(sign(commented, pki))), "SCHEMA_INVALID")


def test_a_comment_before_request_is_not_an_internal_error(gateway: ServerThread, pki: Pki) -> None:
    body = envelope(sign(application_xml(), pki)).replace(b"<typ:SendMessage><request>",
                                                          b"<typ:SendMessage><!-- relayed --><request>")
    assert post(gateway.url, body).status_code == "SCSS001"


def test_malformed_message_unknown_operation(gateway: ServerThread) -> None:
    body = envelope(application_xml()).replace(b"typ:SendMessage>", b"typ:GetMessage>")
    assert_fault(post(gateway.url, body), "MALFORMED_MESSAGE")


def test_malformed_message_soapaction_of_another_operation(gateway: ServerThread) -> None:
    reply = post(gateway.url, envelope(application_xml()), headers={"SOAPAction": '"urn:getMessages"'})
    assert_fault(reply, "MALFORMED_MESSAGE")


def test_malformed_message_wrong_content_type(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml()), content_type="application/json"),
                 "MALFORMED_MESSAGE")


def test_message_too_large_declared_length(gateway: ServerThread) -> None:
    body = envelope(b"<x>" + b"A" * (3 * 1024 * 1024) + b"</x>")
    assert_fault(post(gateway.url, body), "MESSAGE_TOO_LARGE")


def test_message_too_large_chunked_without_length(gateway: ServerThread) -> None:
    def chunks() -> Iterator[bytes]:
        yield envelope(b"")[:200]
        for _ in range(40):
            yield b"A" * (64 * 1024)

    r = httpx.post(gateway.url + "/shep/sync", content=chunks(), headers={"Content-Type": "text/xml"}, timeout=30)
    assert r.status_code == 500 and b"<errorCode>MESSAGE_TOO_LARGE</errorCode>" in r.content


def test_schema_invalid_envelope_names_the_element(gateway: ServerThread) -> None:
    body = envelope(application_xml()).replace(b"<serviceId>MED_LICENSE</serviceId>", b"")
    reply = post(gateway.url, body)
    assert_fault(reply, "SCHEMA_INVALID")
    assert "serviceId" in (reply.error_data or "") or "messageDate" in (reply.error_data or "")


# -- sender and service --------------------------------------------------------------------------------

def test_sender_unknown(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml(), sender="SOMEONE")), "SENDER_UNKNOWN")


def test_sender_auth_failed_wrong_password(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml(), password="portal-secreT")), "SENDER_AUTH_FAILED")


def test_sender_auth_failed_without_password(gateway: ServerThread) -> None:
    body = envelope(application_xml()).replace(b"<password>portal-secret</password>", b"")
    assert_fault(post(gateway.url, body), "SENDER_AUTH_FAILED")


def test_service_unknown(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml(), service="TAX_RETURN")), "SERVICE_UNKNOWN")


def test_service_not_allowed(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml(), sender="STATUS_ONLY")), "SERVICE_NOT_ALLOWED")


def test_transport_signature_required_but_missing(gateway: ServerThread, pki: Pki) -> None:
    body = envelope(sign(application_xml(), pki), sender="WSSE_PORTAL")
    assert_fault(post(gateway.url, body), "TRANSPORT_SIGNATURE_INVALID")


# -- payload schema and signature ------------------------------------------------------------------------

def test_schema_invalid_payload_names_the_element(gateway: ServerThread, pki: Pki) -> None:
    xml = application_xml().replace(b"<serviceType>ISSUE</serviceType>", b"<serviceType>RENEW</serviceType>")
    reply = post(gateway.url, envelope(sign(xml, pki)))
    assert_fault(reply, "SCHEMA_INVALID")
    assert "serviceType" in (reply.error_data or "")


def test_schema_invalid_payload_of_an_unknown_kind(gateway: ServerThread) -> None:
    reply = post(gateway.url, envelope(b'<Invoice xmlns="urn:other"/>'))
    assert_fault(reply, "SCHEMA_INVALID")
    assert "Invoice" in (reply.error_data or "")


def test_signature_missing(gateway: ServerThread) -> None:
    assert_fault(post(gateway.url, envelope(application_xml())), "SIGNATURE_MISSING")


def test_signature_invalid_when_content_changed_after_signing(gateway: ServerThread, pki: Pki) -> None:
    signed = sign(application_xml(), pki).replace(b"PRIMARY_HEALTH_CARE", b"DENTISTRY_SURGERY__")
    assert_fault(post(gateway.url, envelope(signed)), "SIGNATURE_INVALID")


def test_algorithm_unsupported_gost(gateway: ServerThread, pki: Pki) -> None:
    signed = sign(application_xml(), pki).replace(
        b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        b"http://www.w3.org/2001/04/xmldsig-more#gost34310-gost34311")
    assert_fault(post(gateway.url, envelope(signed)), "ALGORITHM_UNSUPPORTED")


# -- timestamp --------------------------------------------------------------------------------------------

def _stamped(gateway: ServerThread, pki: Pki, stamper: object, party: str = "individual", **app_kw: object) -> Reply:
    return post(gateway.url, envelope(sign(application_xml(**app_kw), pki, party, xades="t", timestamp=stamper)))


def test_timestamp_invalid_untrusted_tsa(gateway: ServerThread, pki: Pki) -> None:
    reply = _stamped(gateway, pki, mock_stamper(pki, party="tsa_foreign"))
    assert_fault(reply, "TIMESTAMP_INVALID")
    assert "TSA" in (reply.error_data or "")


def test_timestamp_invalid_comes_before_the_certificate(gateway: ServerThread, pki: Pki) -> None:
    """An expired signer with a timestamp over other bytes: the timestamp is checked first (the contract's order)."""
    reply = _stamped(gateway, pki, mock_stamper(pki, over=b"something else"), "expired", iin="790103300220")
    assert_fault(reply, "TIMESTAMP_INVALID")


def test_a_valid_timestamp_does_not_save_a_certificate_expired_before_it(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(_stamped(gateway, pki, mock_stamper(pki), "expired", iin="790103300220"), "CERT_EXPIRED")


# -- certificate ------------------------------------------------------------------------------------------

def test_cert_untrusted(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="foreign"), "CERT_UNTRUSTED")


def test_cert_expired(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="expired", iin="790103300220"), "CERT_EXPIRED")


def test_cert_not_yet_valid(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="not_yet_valid", iin="790103300220"), "CERT_NOT_YET_VALID")


def test_cert_revoked(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="revoked", iin="790103300220"), "CERT_REVOKED")


def test_cert_not_for_signing_authentication_key(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="individual_auth"), "CERT_NOT_FOR_SIGNING")


def test_cert_status_unknown_without_a_crl(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "no-crls").mkdir()
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    from dataclasses import replace

    config = replace(config, trust=replace(config.trust, crl_dir=tmp_path / "no-crls"))
    with serve(create_app(config)) as server:
        assert_fault(submit(server, pki), "CERT_STATUS_UNKNOWN")


# -- identity binding --------------------------------------------------------------------------------------

def test_iin_invalid_applicant(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, iin="123456789011"), "IIN_INVALID")


def test_bin_invalid_applicant(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="le_head", iin=None, bin_="940140000386"), "BIN_INVALID")


def test_iin_mismatch_signer_is_not_the_applicant(gateway: ServerThread, pki: Pki) -> None:
    reply = submit(gateway, pki, party="individual2")
    assert_fault(reply, "IIN_MISMATCH")
    assert "760212350620" in (reply.error_data or "")


def test_bin_mismatch_signer_of_another_entity(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="provider_head", iin=None, bin_="940140000385"), "BIN_MISMATCH")


def test_signer_not_authorized_plain_employee(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="le_employee", iin=None, bin_="940140000385"), "SIGNER_NOT_AUTHORIZED")


def test_center_application_signed_by_someone_outside_the_center(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(submit(gateway, pki, party="individual", sender="CENTER_IS"), "BIN_MISMATCH")


# -- documents and idempotency ------------------------------------------------------------------------------

def test_document_digest_mismatch(gateway: ServerThread, pki: Pki) -> None:
    docs = docs_for("ISSUE")
    docs[1] = Doc(docs[1].code, b"the real content", sha256="0" * 64)
    reply = submit(gateway, pki, documents=docs)
    assert_fault(reply, "DOCUMENT_DIGEST_MISMATCH")
    assert "FEE_RECEIPT" in (reply.error_data or "")


def test_message_id_conflict_same_id_other_content(gateway: ServerThread, pki: Pki) -> None:
    message_id = str(uuid.uuid4())
    first = post(gateway.url, envelope(sign(application_xml(), pki), message_id=message_id))
    assert first.status_code == "SCSS001"
    second = post(gateway.url, envelope(sign(application_xml(), pki), message_id=message_id))
    assert_fault(second, "MESSAGE_ID_CONFLICT")


# -- the gateway's own side ----------------------------------------------------------------------------------

def test_overloaded_when_the_queue_is_full(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    from dataclasses import replace

    config = replace(config, storage=replace(config.storage, max_queue_depth=1))
    app = create_app(config)
    with serve(app) as server:
        assert submit(server, pki).status_code == "SCSS001"
        reply = submit(server, pki)
        assert_fault(reply, "OVERLOADED", "soapenv:Server")
        assert app.state.services.storage.queue_depth() == 1


class _UnavailableStorage(SqliteStorage):
    def _write_grouped_many(self, works):  # noqa: ANN001, ANN201
        raise StorageUnavailable("connection refused")


def test_overloaded_when_storage_is_unavailable_and_nothing_is_accepted(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage = _UnavailableStorage(str(tmp_path / "db.sqlite"))
    with serve(create_app(config, storage=storage)) as server:
        reply = submit(server, pki)
        assert_fault(reply, "OVERLOADED", "soapenv:Server")
        assert storage.queue_depth() == 0


class _DepthUnknownStorage(SqliteStorage):
    def queue_depth(self, provider_bin=None):  # noqa: ANN001, ANN201
        raise StorageUnavailable("the database went away")


def test_overloaded_when_the_queue_depth_cannot_be_read(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage = _DepthUnknownStorage(str(tmp_path / "db.sqlite"))
    with serve(create_app(config, storage=storage)) as server:
        assert_fault(submit(server, pki), "OVERLOADED", "soapenv:Server")


class _SlowStorage(SqliteStorage):
    def store_applications(self, items):  # noqa: ANN001, ANN201
        time.sleep(1.5)
        return super().store_applications(items)


def test_overloaded_at_once_past_max_in_flight(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", max_in_flight=1)
    app = create_app(config, storage=_SlowStorage(str(tmp_path / "db.sqlite")))
    bodies = [envelope(sign(application_xml(), pki)) for _ in range(2)]
    with serve(app) as server, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server.url, bodies[0])
        time.sleep(0.5)  # the first is now inside the slow store
        second = post(server.url, bodies[1])
        assert_fault(second, "OVERLOADED", "soapenv:Server")
        assert first.result().status_code == "SCSS001"


class _BrokenStorage(SqliteStorage):
    def store_applications(self, items):  # noqa: ANN001, ANN201
        raise RuntimeError("secret internal detail /etc/licgate")


def test_internal_error_carries_no_stack_trace(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    app = create_app(config, storage=_BrokenStorage(str(tmp_path / "db.sqlite")))
    with serve(app) as server:
        reply = submit(server, pki)
    assert_fault(reply, "INTERNAL_ERROR", "soapenv:Server")
    assert b"secret internal detail" not in reply.body and b"RuntimeError" not in reply.body


def test_every_contract_code_has_a_test_here() -> None:
    from core.errors import ALL_CODES

    source = Path(__file__).read_text()
    missing = [code for code in ALL_CODES if f'"{code}"' not in source]
    assert missing == []
