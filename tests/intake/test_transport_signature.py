"""WS-Security per sender (`wsse` = required | optional | off): a valid transport signature by the sender's
own key passes; missing (when required), broken, or by another organisation's key is
TRANSPORT_SIGNATURE_INVALID; the payload's own signature still verifies inside a signed envelope."""

from __future__ import annotations

from signing.pki import Pki
from signing.wsse import sign_wsse
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.server import ServerThread


def _signed_envelope(pki: Pki, party: str = "portal_transport", sender: str = "WSSE_PORTAL",
                     key_ref: str = "bst", **kw: object) -> bytes:
    body = envelope(sign(application_xml(), pki), sender=sender, **kw)  # type: ignore[arg-type]
    transport = pki.party(party)
    return sign_wsse(body, transport.key_pem, transport.cert_pem, key_ref=key_ref)


def test_valid_transport_signature_by_the_senders_key_is_accepted(gateway: ServerThread, pki: Pki) -> None:
    reply = post(gateway.url, _signed_envelope(pki))
    assert reply.status_code == "SCSS001", reply.body[:1500]


def test_transport_signature_with_the_payload_as_a_string(gateway: ServerThread, pki: Pki) -> None:
    assert post(gateway.url, _signed_envelope(pki, as_string=True)).status_code == "SCSS001"


def test_transport_signature_by_another_organisations_key(gateway: ServerThread, pki: Pki) -> None:
    reply = post(gateway.url, _signed_envelope(pki, party="elicense_transport"))
    assert reply.fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_body_changed_after_the_transport_signature(gateway: ServerThread, pki: Pki) -> None:
    body = _signed_envelope(pki).replace(b"2026-11-27T11:02:17+05:00", b"2026-11-27T11:02:18+05:00")
    assert post(gateway.url, body).fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_transport_signature_checked_before_the_payload(gateway: ServerThread, pki: Pki) -> None:
    # An unsigned payload in an envelope without the required WS-Security: the transport check comes first.
    body = envelope(application_xml(), sender="WSSE_PORTAL")
    assert post(gateway.url, body).fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_sender_with_wsse_off_is_not_refused_for_carrying_a_header(gateway: ServerThread, pki: Pki) -> None:
    body = envelope(sign(application_xml(), pki))
    transport = pki.party("portal_transport")
    assert post(gateway.url, sign_wsse(body, transport.key_pem, transport.cert_pem)).status_code == "SCSS001"


def test_optional_wsse_accepts_an_unsigned_envelope(gateway: ServerThread, pki: Pki) -> None:
    assert post(gateway.url, envelope(sign(application_xml(), pki), sender="WSSE_OPTIONAL")).status_code == "SCSS001"


def test_optional_wsse_refuses_a_broken_signature(gateway: ServerThread, pki: Pki) -> None:
    body = _signed_envelope(pki, sender="WSSE_OPTIONAL").replace(b"11:02:17+05:00", b"11:02:18+05:00")
    assert post(gateway.url, body).fault_code == "TRANSPORT_SIGNATURE_INVALID"


def test_pinned_certificate_named_by_issuer_serial(gateway: ServerThread, pki: Pki) -> None:
    body = _signed_envelope(pki, sender="WSSE_PINNED", key_ref="issuer-serial")
    assert post(gateway.url, body).status_code == "SCSS001"


def test_pinned_certificate_refuses_another_key(gateway: ServerThread, pki: Pki) -> None:
    body = _signed_envelope(pki, party="center_transport", sender="WSSE_PINNED")
    assert post(gateway.url, body).fault_code == "TRANSPORT_SIGNATURE_INVALID"
