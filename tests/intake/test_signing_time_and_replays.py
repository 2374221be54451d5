"""Over loopback: a XAdES-T application's receipt and provider view carry signedAt; a certificate expired
since its timestamp is accepted; the WS-Security replay window (a signed wsu:Timestamp, Created within the
window, a SignatureValue accepted once)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from lxml import etree

from core.clock import ManualClock
from gateway.app import create_app
from signing.pki import CRL_NAME, DELTA_CRL_NAME, Pki, build_crl, init_pki, load_ca, load_pki
from signing.wsse import WSU, sign_wsse
from tests.intake.conftest import make_config
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.signing.stamps import openssl_stamper
from tests.support.server import ServerThread, serve

TOKEN = "provider-token-0123456789"


def _lease(server: ServerThread) -> list[dict]:
    answer = httpx.post(f"{server.url}/provider/v1/leases", json={"max": 10},
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["applications"]


def test_the_receipt_and_the_provider_view_carry_the_proven_signing_time(gateway: ServerThread, pki: Pki,
                                                                         tmp_path: Path) -> None:
    signed = sign(application_xml(), pki, xades="t", timestamp=openssl_stamper(pki, tmp_path / "ts"))
    reply = post(gateway.url, envelope(signed))
    assert reply.status_code == "SCSS001", reply.body[:1000]
    signed_at = reply.receipt("signedAt")
    assert signed_at is not None and signed_at.endswith("+05:00")
    when = datetime.fromisoformat(signed_at)
    assert abs(when - datetime.now(UTC)) < timedelta(minutes=1)
    leased = _lease(gateway)
    assert [datetime.fromisoformat(a["signed_at"]) for a in leased] == [when]
    view = httpx.get(f"{gateway.url}/provider/v1/applications/{leased[0]['id']}",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    assert datetime.fromisoformat(view["signed_at"]) == when


def test_without_a_timestamp_there_is_no_signed_at(gateway: ServerThread, pki: Pki) -> None:
    reply = post(gateway.url, envelope(sign(application_xml(), pki, xades="bes")))
    assert reply.status_code == "SCSS001"
    assert reply.receipt("signedAt") is None
    assert [a["signed_at"] for a in _lease(gateway)] == [None]


def test_an_application_whose_certificate_expired_since_its_timestamp_is_accepted(tmp_path: Path) -> None:
    """A year later (the gateway's clock moved; the CRL current for two years): judged at genTime."""
    pki = load_pki(init_pki(tmp_path / "pki"))
    issuer, key = load_ca(pki.dir)
    (pki.crl_dir / DELTA_CRL_NAME).unlink()
    (pki.crl_dir / CRL_NAME).write_bytes(build_crl(issuer, key, [], next_update=timedelta(days=730), number=3))
    signed = sign(application_xml(), pki, xades="t", timestamp=openssl_stamper(pki, tmp_path / "ts"))
    plain = sign(application_xml(), pki)
    clock = ManualClock(datetime.now(UTC) + timedelta(days=400))
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    with serve(app) as server:
        assert post(server.url, envelope(plain)).fault_code == "CERT_EXPIRED"
        reply = post(server.url, envelope(signed))
        assert reply.status_code == "SCSS001", reply.body[:1000]
        assert reply.receipt("signedAt") is not None


# --- the WS-Security replay window ----------------------------------------------------------------------


def _transport(pki: Pki, body: bytes, **kw: object) -> bytes:
    party = pki.party("portal_transport")
    return sign_wsse(body, party.key_pem, party.cert_pem, **kw)  # type: ignore[arg-type]


def test_a_replayed_ws_security_message_is_transport_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    message = _transport(pki, envelope(sign(application_xml(), pki), sender="WSSE_PORTAL"))
    assert post(gateway.url, message).status_code == "SCSS001"
    replay = post(gateway.url, message)
    assert replay.fault_code == "TRANSPORT_SIGNATURE_INVALID"
    assert "replayed" in (replay.error_data or "")


def test_a_replayed_status_request_is_refused_too(gateway: ServerThread, pki: Pki) -> None:
    status = (b'<StatusRequest xmlns="urn:kz:egov:medlicense:v1"><requestNumber>REQ-1</requestNumber>'
              b"</StatusRequest>")
    message = _transport(pki, envelope(status, sender="WSSE_PORTAL", service="MED_LICENSE_STATUS"))
    assert post(gateway.url, message).status_code == "SCSS001"
    assert post(gateway.url, message).fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_the_same_application_signed_again_is_not_a_replay(gateway: ServerThread, pki: Pki) -> None:
    """A sender's retry is a new transport signature (a new Timestamp): answered with the first receipt."""
    body = envelope(sign(application_xml(), pki), sender="WSSE_PORTAL")
    first, second = post(gateway.url, _transport(pki, body)), post(gateway.url, _transport(pki, body))
    assert (first.status_code, second.status_code) == ("SCSS001", "SCSS001")
    assert first.receipt("registrationNumber") == second.receipt("registrationNumber")


def test_a_timestamp_created_before_the_window_is_transport_signature_invalid(gateway: ServerThread,
                                                                              pki: Pki) -> None:
    body = envelope(sign(application_xml(), pki), sender="WSSE_PORTAL")
    old = post(gateway.url, _transport(pki, body, now=datetime.now(UTC) - timedelta(minutes=7)))
    assert old.fault_code == "TRANSPORT_SIGNATURE_INVALID" and "ago" in (old.error_data or "")
    ahead = post(gateway.url, _transport(pki, body, now=datetime.now(UTC) + timedelta(minutes=3)))
    assert ahead.fault_code == "TRANSPORT_SIGNATURE_INVALID" and "ahead" in (ahead.error_data or "")
    recent = post(gateway.url, _transport(pki, body, now=datetime.now(UTC) - timedelta(minutes=4)))
    assert recent.status_code == "SCSS001", recent.body[:800]


def test_the_window_is_configurable(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = replace(config, trust=replace(config.trust, wsse_window_seconds=30.0, wsse_clock_skew_seconds=5.0))
    with serve(create_app(config)) as server:
        body = envelope(sign(application_xml(), pki), sender="WSSE_PORTAL")
        late = post(server.url, _transport(pki, body, now=datetime.now(UTC) - timedelta(seconds=60)))
        assert late.fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_a_transport_signature_without_a_signed_timestamp_is_transport_signature_invalid(
        gateway: ServerThread, pki: Pki) -> None:
    root = etree.fromstring(_transport(pki, envelope(sign(application_xml(), pki), sender="WSSE_PORTAL")))
    ns = {"wsu": WSU, "ds": "http://www.w3.org/2000/09/xmldsig#"}
    stamp_id = root.find(".//wsu:Timestamp", ns).get(f"{{{WSU}}}Id")
    reference = root.find(f".//ds:Reference[@URI='#{stamp_id}']", ns)
    reference.getparent().remove(reference)  # the signature no longer covers the Timestamp
    reply = post(gateway.url, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert reply.fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_an_optional_sender_without_a_security_header_keeps_working(gateway: ServerThread, pki: Pki) -> None:
    plain = envelope(sign(application_xml(), pki), sender="WSSE_OPTIONAL")
    assert post(gateway.url, plain).status_code == "SCSS001"
