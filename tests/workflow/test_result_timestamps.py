"""The provider's signed result with a XAdES-T timestamp, uploaded over HTTP: judged at genTime like an
application (docs/signing.md), TIMESTAMP_INVALID for a timestamp that proves nothing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from core.domain import Role
from signing.pki import (
    CRL_NAME,
    DELTA_CRL_NAME,
    PartySpec,
    Pki,
    build_crl,
    init_pki,
    load_ca,
    load_pki,
    mint_certificate,
)
from signing.signer import sign_enveloped
from signing.xades import XADES
from tests.signing.stamps import mock_stamper
from tests.workflow.conftest import GatewayFactory, decision_xml
from tests.workflow.helpers import PROVIDER_BIN, store

STEPS_BEFORE_RESULT = ("REGISTERED", "SENT_TO_MANAGEMENT", "RETURNED_FOR_PREPARATION", "RESULT_PREPARED")
NS = {"xades": XADES}


def provider_signer(pki: Pki, validity: str = "valid") -> tuple[bytes, bytes]:
    spec = PartySpec("НҰРЛАНОВА", "ӘСЕЛ", "ҚАЙРАТҚЫЗЫ", iin="881102400665", bin=PROVIDER_BIN,
                     organization="Денсаулық сақтау басқармасы",
                     roles=(Role.LEGAL_ENTITY.value, Role.RIGHT_TO_SIGN.value), validity=validity)
    return mint_certificate(pki.dir, spec)


def prepared(api):  # noqa: ANN001, ANN201
    app = store(api.gw.storage)
    for step in STEPS_BEFORE_RESULT:
        assert api.step(app.id, step).status_code == 200
    return app


def stamped_result(registration_number: str, key_pem: bytes, cert_pem: bytes, stamper) -> bytes:  # noqa: ANN001
    return sign_enveloped(decision_xml(registration_number), key_pem, cert_pem, xades="t", timestamp=stamper)


def refused(answer, code: str) -> None:  # noqa: ANN001
    assert answer.status_code == 422, answer.text
    assert answer.json()["errorCode"] == code, answer.text


def test_a_result_signed_by_a_certificate_expired_since_its_timestamp_is_accepted(
        gateway_factory: GatewayFactory, sqlite_url: str, pki: Pki) -> None:
    api = gateway_factory(sqlite_url)
    app = prepared(api)
    key, cert = provider_signer(pki, "expired")
    signed_at = datetime.now(UTC) - timedelta(days=60)  # the certificate was valid then, expired 30 days ago
    unstamped = sign_enveloped(decision_xml(app.registration_number), key, cert, xades="bes")
    refused(api.put_result(app.id, unstamped), "CERT_EXPIRED")
    answer = api.put_result(app.id, stamped_result(app.registration_number, key, cert,
                                                   mock_stamper(pki, gen_time=signed_at)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "GRANTED"


@pytest.mark.parametrize("case", ["untrusted", "other_bytes", "future", "two"])
def test_a_result_whose_timestamp_proves_nothing_is_timestamp_invalid(gateway_factory: GatewayFactory,
                                                                      sqlite_url: str, pki: Pki, case: str) -> None:
    api = gateway_factory(sqlite_url)
    app = prepared(api)
    p = pki.party("provider_signer")
    stamper = {
        "untrusted": mock_stamper(pki, party="tsa_foreign"),
        "other_bytes": mock_stamper(pki, over=b"another signature"),
        "future": mock_stamper(pki, gen_time=datetime.now(UTC) + timedelta(minutes=10)),
        "two": mock_stamper(pki),
    }[case]
    body = stamped_result(app.registration_number, p.key_pem, p.cert_pem, stamper)
    if case == "two":
        root = etree.fromstring(body)
        stamp = root.find(".//xades:SignatureTimeStamp", NS)
        stamp.addnext(copy.deepcopy(stamp))
        body = etree.tostring(root)
    refused(api.put_result(app.id, body), "TIMESTAMP_INVALID")
    view = api.get(f"/provider/v1/applications/{app.id}").json()
    assert view["last_step"] == "RESULT_PREPARED"


@pytest.fixture
def own_pki(tmp_path: Path) -> Pki:
    return load_pki(init_pki(tmp_path / "pki"))


def _revoke(pki: Pki, cert_pem: bytes, when: datetime, reason: x509.ReasonFlags) -> None:
    issuer, issuer_key = load_ca(pki.dir)
    serial = x509.load_pem_x509_certificate(cert_pem).serial_number
    (pki.crl_dir / DELTA_CRL_NAME).unlink()
    (pki.crl_dir / CRL_NAME).write_bytes(build_crl(issuer, issuer_key, [(serial, when, reason)], number=9))


@pytest.mark.parametrize(("reason", "status"), [(x509.ReasonFlags.superseded, 200),
                                                (x509.ReasonFlags.key_compromise, 422)])
def test_a_result_signer_revoked_after_the_timestamp(gateway_factory: GatewayFactory, sqlite_url: str,
                                                     own_pki: Pki, reason: x509.ReasonFlags, status: int) -> None:
    key, cert = provider_signer(own_pki)
    now = datetime.now(UTC)
    _revoke(own_pki, cert, now - timedelta(days=1), reason)
    api = gateway_factory(sqlite_url, trust=own_pki)
    app = prepared(api)
    answer = api.put_result(app.id, stamped_result(app.registration_number, key, cert,
                                                   mock_stamper(own_pki, gen_time=now - timedelta(days=2))))
    assert answer.status_code == status, answer.text
    if status == 422:
        assert answer.json()["errorCode"] == "CERT_REVOKED"


def test_a_result_signer_revoked_before_the_timestamp_is_cert_revoked(gateway_factory: GatewayFactory,
                                                                      sqlite_url: str, own_pki: Pki) -> None:
    key, cert = provider_signer(own_pki)
    now = datetime.now(UTC)
    _revoke(own_pki, cert, now - timedelta(days=3), x509.ReasonFlags.superseded)
    api = gateway_factory(sqlite_url, trust=own_pki)
    app = prepared(api)
    answer = api.put_result(app.id, stamped_result(app.registration_number, key, cert,
                                                   mock_stamper(own_pki, gen_time=now - timedelta(days=2))))
    refused(answer, "CERT_REVOKED")
