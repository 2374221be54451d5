"""The signer's certificate: path to a pinned root, validity, key purpose, revocation (CRL and OCSP), profile."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.clock import Clock, ManualClock
from core.domain import Role
from core.errors import (
    BinInvalid,
    CertExpired,
    CertNotForSigning,
    CertNotYetValid,
    CertRevoked,
    CertStatusUnknown,
    CertUntrusted,
    IinInvalid,
)
from mocks.nca import create_app
from signing.pki import CRL_NAME, PartySpec, build_crl, load_ca, mint_certificate
from signing.signer import sign_enveloped
from signing.trust import TrustConfig
from signing.verifier import build_verifier
from tests.signing.conftest import application
from tests.support.server import serve


def signed_by(pki, party: str) -> bytes:  # noqa: ANN001
    p = pki.party(party)
    return sign_enveloped(application(), p.key_pem, p.cert_pem)


# --- path and validity -------------------------------------------------------------------------------------


def test_an_authentication_key_is_not_for_signing(pki, crl_verifier):
    with pytest.raises(CertNotForSigning, match="authentication"):
        crl_verifier.verify_enveloped(signed_by(pki, "individual_auth"))


def test_an_authentication_key_listing_email_protection_too_is_not_for_signing(pki, crl_verifier):
    """An NCA-style AUTH key (EKU clientAuth + emailProtection, keyUsage digitalSignature + keyEncipherment)."""
    roles = (ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string, Role.INDIVIDUAL.value)  # appended to clientAuth
    key_pem, cert_pem = mint_certificate(pki.dir, PartySpec("АХМЕТОВА", "АЙГЕРІМ", "САПАРҚЫЗЫ", iin="871008401427",
                                                            roles=roles, purpose="auth"))
    cert = x509.load_pem_x509_certificate(cert_pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION} <= set(eku)
    assert usage.digital_signature and usage.key_encipherment and not usage.content_commitment
    with pytest.raises(CertNotForSigning, match="authentication"):
        crl_verifier.verify_enveloped(sign_enveloped(application(), key_pem, cert_pem))


def test_a_signing_key_without_non_repudiation_is_not_for_signing(pki, crl_verifier):
    """emailProtection without clientAuth does not make a signing key: keyUsage must include nonRepudiation."""
    roles = (ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string, Role.INDIVIDUAL.value)
    key_pem, cert_pem = mint_certificate(pki.dir, PartySpec("АХМЕТОВА", "АЙГЕРІМ", "САПАРҚЫЗЫ", iin="871008401427",
                                                            roles=roles, purpose="ocsp"))  # keyUsage: only DS
    usage = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.content_commitment
    with pytest.raises(CertNotForSigning, match="nonRepudiation"):
        crl_verifier.verify_enveloped(sign_enveloped(application(), key_pem, cert_pem))


def test_an_expired_certificate_is_cert_expired(pki, crl_verifier):
    with pytest.raises(CertExpired):
        crl_verifier.verify_enveloped(signed_by(pki, "expired"))


def test_a_not_yet_valid_certificate_is_cert_not_yet_valid(pki, crl_verifier):
    with pytest.raises(CertNotYetValid):
        crl_verifier.verify_enveloped(signed_by(pki, "not_yet_valid"))


def test_a_certificate_of_an_unknown_issuer_is_cert_untrusted(pki, crl_verifier):
    with pytest.raises(CertUntrusted, match="trusted NCA root"):
        crl_verifier.verify_enveloped(signed_by(pki, "foreign"))


def test_validity_is_judged_by_the_gateway_clock(pki):
    """A certificate valid today is expired on a clock moved past its notAfter."""
    clock = ManualClock(datetime.now(UTC) + timedelta(days=400))
    verifier = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="off"), clock)
    with pytest.raises(CertExpired):
        verifier.verify_enveloped(signed_by(pki, "individual"))


def test_a_path_without_its_intermediate_is_cert_untrusted(pki, tmp_path):
    only_root = tmp_path / "ca"
    only_root.mkdir()
    (only_root / "root.pem").write_bytes(pki.root_cert_path.read_bytes())
    verifier = build_verifier(TrustConfig(ca_dir=only_root, revocation="off"), Clock())
    with pytest.raises(CertUntrusted):
        verifier.verify_enveloped(signed_by(pki, "individual"))


def test_a_self_signed_certificate_with_the_ncas_name_is_cert_untrusted(pki, crl_verifier):
    """An impostor CA using the intermediate's exact name: the path is checked by signatures, not names."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from signing.pki import issue_certificate

    real_intermediate, _ = load_ca(pki.dir)
    fake_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spec = PartySpec("АХМЕТОВА", "АЙГЕРІМ", "САПАРҚЫЗЫ", iin="871008401427", roles=(Role.INDIVIDUAL.value,))
    cert = issue_certificate(spec, leaf_key.public_key(), real_intermediate, fake_key)
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    signed = sign_enveloped(application(), key_pem, cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CertUntrusted):
        crl_verifier.verify_enveloped(signed)


# --- the NCA profile -----------------------------------------------------------------------------------------


def test_a_legal_entitys_signer_carries_iin_bin_and_roles(pki, crl_verifier):
    signer = crl_verifier.verify_enveloped(signed_by(pki, "le_head")).signer
    assert (signer.iin, signer.bin) == ("830717350867", "940140000385")
    assert signer.has_role(Role.FIRST_HEAD) and signer.has_role(Role.LEGAL_ENTITY)
    assert signer.organization == 'ТОО "Медицинский центр Шипагер"'
    assert signer.common_name == "ОМАРОВ ҒАЛЫМЖАН"
    assert signer.certificate_serial == pki.party("le_head").serial


def test_a_certificate_iin_with_a_wrong_check_digit_is_iin_invalid(pki, crl_verifier):
    spec = PartySpec("ТЕСТ", "ТЕСТ", None, iin="123456789011", roles=(Role.INDIVIDUAL.value,))
    key_pem, cert_pem = mint_certificate(pki.dir, spec)
    with pytest.raises(IinInvalid):
        crl_verifier.verify_enveloped(sign_enveloped(application(), key_pem, cert_pem))


def test_a_certificate_bin_with_a_wrong_check_digit_is_bin_invalid(pki, crl_verifier):
    spec = PartySpec("ТЕСТ", "ТЕСТ", None, iin="871008401427", bin="940140000386", organization="X",
                     roles=(Role.LEGAL_ENTITY.value, Role.FIRST_HEAD.value))
    key_pem, cert_pem = mint_certificate(pki.dir, spec)
    with pytest.raises(BinInvalid):
        crl_verifier.verify_enveloped(sign_enveloped(application(), key_pem, cert_pem))


# --- CRLs ------------------------------------------------------------------------------------------------------


def test_a_certificate_listed_in_the_crl_is_cert_revoked(pki, crl_verifier):
    with pytest.raises(CertRevoked):
        crl_verifier.verify_enveloped(signed_by(pki, "revoked"))


def test_a_crl_replaced_on_disk_is_reloaded(fresh_pki):
    verifier = build_verifier(TrustConfig(ca_dir=fresh_pki.ca_dir, revocation="crl", crl_dir=fresh_pki.crl_dir),
                              Clock(), crl_recheck_seconds=0)
    document = signed_by(fresh_pki, "individual")
    verifier.verify_enveloped(document)
    issuer, key = load_ca(fresh_pki.dir)
    crl_path = fresh_pki.crl_dir / CRL_NAME
    crl_path.write_bytes(build_crl(issuer, key, [int(fresh_pki.party("individual").serial, 16)]))
    stat = crl_path.stat()
    os.utime(crl_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a visibly newer file
    with pytest.raises(CertRevoked):
        verifier.verify_enveloped(document)


def test_no_crl_of_the_issuer_is_cert_status_unknown(fresh_pki):
    (fresh_pki.crl_dir / CRL_NAME).unlink()
    verifier = build_verifier(TrustConfig(ca_dir=fresh_pki.ca_dir, revocation="crl", crl_dir=fresh_pki.crl_dir),
                              Clock())
    with pytest.raises(CertStatusUnknown):
        verifier.verify_enveloped(signed_by(fresh_pki, "individual"))


def test_an_expired_crl_is_cert_status_unknown(pki):
    clock = ManualClock(datetime.now(UTC) + timedelta(days=45))  # the CRL's nextUpdate is 30 days out
    verifier = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=pki.crl_dir), clock)
    with pytest.raises(CertStatusUnknown, match="expired"):
        verifier.verify_enveloped(signed_by(pki, "individual"))


def test_a_crl_not_signed_by_the_issuer_is_ignored(fresh_pki):
    """A forged CRL (signed by another key) cannot vouch for anything: the status is unknown."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    issuer, _ = load_ca(fresh_pki.dir)
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (fresh_pki.crl_dir / CRL_NAME).write_bytes(build_crl(issuer, forged_key, []))
    verifier = build_verifier(TrustConfig(ca_dir=fresh_pki.ca_dir, revocation="crl", crl_dir=fresh_pki.crl_dir),
                              Clock())
    with pytest.raises(CertStatusUnknown):
        verifier.verify_enveloped(signed_by(fresh_pki, "revoked"))


def test_a_newer_crl_of_a_re_keyed_ca_with_the_same_dn_does_not_hide_a_revocation(fresh_pki):
    """Two pinned CAs share a DN (a re-keyed NCA): each key's CRL answers only for the certificates it issued."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from signing.pki import _ca_cert

    root, root_key = load_ca(fresh_pki.dir, "root")
    issuer, _ = load_ca(fresh_pki.dir)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    re_keyed = _ca_cert(issuer.subject, new_key, root.subject, root_key, now - timedelta(days=1),
                        now + timedelta(days=3650), 0)
    (fresh_pki.ca_dir / "intermediate-rekeyed.pem").write_bytes(re_keyed.public_bytes(serialization.Encoding.PEM))
    (fresh_pki.crl_dir / "nca_rsa_rekeyed.crl").write_bytes(
        build_crl(re_keyed, new_key, [], now=now + timedelta(minutes=1)))  # newer, and empty
    config = TrustConfig(ca_dir=fresh_pki.ca_dir, revocation="crl", crl_dir=fresh_pki.crl_dir)
    document = signed_by(fresh_pki, "revoked")
    with pytest.raises(CertRevoked):
        build_verifier(config, Clock()).verify_enveloped(document)
    (fresh_pki.crl_dir / CRL_NAME).unlink()  # only the other key's CRL is left: it cannot vouch for this one
    with pytest.raises(CertStatusUnknown):
        build_verifier(config, Clock()).verify_enveloped(document)


# --- OCSP through the real NCA mock over loopback -------------------------------------------------------------


@pytest.fixture(scope="module")
def nca(pki):  # noqa: ANN001, ANN201
    with serve(create_app(pki.dir)) as server:
        yield server


def ocsp_verifier(pki, url: str, clock=None):  # noqa: ANN001, ANN201
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="ocsp", ocsp_url=url), clock or Clock())


def test_ocsp_good_answer_accepts_the_signer(pki, nca):
    result = ocsp_verifier(pki, nca.url + "/ocsp").verify_enveloped(signed_by(pki, "individual"))
    assert result.signer.iin == "871008401427"


def test_ocsp_revoked_answer_is_cert_revoked(pki, nca):
    with pytest.raises(CertRevoked, match="OCSP"):
        ocsp_verifier(pki, nca.url + "/ocsp").verify_enveloped(signed_by(pki, "revoked"))


def test_ocsp_unknown_answer_is_cert_status_unknown(pki, nca):
    spec = PartySpec("ЖАҢА", "АДАМ", None, iin="760212350620", roles=(Role.INDIVIDUAL.value,))
    key_pem, cert_pem = mint_certificate(pki.dir, spec)  # issued, but not in the responder's records
    with pytest.raises(CertStatusUnknown, match="does not know"):
        ocsp_verifier(pki, nca.url + "/ocsp").verify_enveloped(sign_enveloped(application(), key_pem, cert_pem))


def test_an_unreachable_ocsp_responder_is_cert_status_unknown(pki):
    from tests.support.server import free_port

    with pytest.raises(CertStatusUnknown, match="unreachable"):
        ocsp_verifier(pki, f"http://127.0.0.1:{free_port()}/ocsp").verify_enveloped(signed_by(pki, "individual"))


def test_the_ocsp_address_comes_from_the_certificates_aia(tmp_path):
    """Without trust.ocsp_url the responder named in the certificate is asked (the mock listens there)."""
    from signing.pki import init_pki, load_pki
    from tests.support.server import free_port

    port = free_port()
    pki = load_pki(init_pki(tmp_path / "pki", base_url=f"http://127.0.0.1:{port}"))
    with serve(create_app(pki.dir), port=port):
        result = ocsp_verifier(pki, "").verify_enveloped(signed_by(pki, "individual"))
    assert result.signer.iin == "871008401427"


# --- OCSP response checks (unit tests of the outbound client, respx at the transport) --------------------------


def _ocsp_response(pki, party: str, *, signer: str = "ocsp", status=ocsp.OCSPCertStatus.GOOD,  # noqa: ANN001
                   next_update: timedelta | None = timedelta(hours=1), age: timedelta = timedelta(minutes=1)) -> bytes:
    cert = x509.load_pem_x509_certificate(pki.party(party).cert_pem)
    issuer, issuer_key = load_ca(pki.dir)
    responder = x509.load_pem_x509_certificate(pki.party(signer).cert_pem)
    key = serialization.load_pem_private_key(pki.party(signer).key_pem, None)
    now = datetime.now(UTC)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer, algorithm=hashes.SHA1(), cert_status=status, this_update=now - age,
        next_update=None if next_update is None else now + next_update, revocation_time=None, revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _respx_verifier(pki, clock=None):  # noqa: ANN001, ANN202
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="ocsp", ocsp_url="http://ocsp.test/ocsp"),
                          clock or Clock(), http_client=httpx.Client())


@respx.mock
def test_an_ocsp_response_signed_by_an_unauthorised_key_is_cert_status_unknown(pki):
    """A "good" answer signed by a certificate the CA issued but not for OCSP signing is not believed."""
    respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=_ocsp_response(pki, "individual", signer="individual2")))
    with pytest.raises(CertStatusUnknown, match="OCSP signing"):
        _respx_verifier(pki).verify_enveloped(signed_by(pki, "individual"))


@respx.mock
def test_an_ocsp_response_with_a_broken_signature_is_cert_status_unknown(pki):
    body = bytearray(_ocsp_response(pki, "individual"))
    body[-300] ^= 0xFF  # inside the signature value (the responder certificate follows it)
    respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(200, content=bytes(body)))
    with pytest.raises(CertStatusUnknown):
        _respx_verifier(pki).verify_enveloped(signed_by(pki, "individual"))


@respx.mock
def test_an_ocsp_answer_is_cached_until_its_next_update(pki):
    route = respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=_ocsp_response(pki, "individual", next_update=timedelta(minutes=30))))
    clock = ManualClock(datetime.now(UTC))
    verifier = _respx_verifier(pki, clock)
    document = signed_by(pki, "individual")
    verifier.verify_enveloped(document)
    verifier.verify_enveloped(document)
    assert route.call_count == 1
    clock.advance(timedelta(minutes=31))
    verifier.verify_enveloped(document)
    assert route.call_count == 2


@respx.mock
def test_an_old_ocsp_answer_without_next_update_is_cert_status_unknown(pki):
    """A GOOD answer without nextUpdate, 20 days old (a replay from before a revocation), is not believed."""
    respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=_ocsp_response(pki, "individual", next_update=None, age=timedelta(days=20))))
    with pytest.raises(CertStatusUnknown, match="older than 300s"):
        _respx_verifier(pki).verify_enveloped(signed_by(pki, "individual"))


@respx.mock
def test_a_fresh_ocsp_answer_without_next_update_is_believed_and_cached_until_its_max_age(pki):
    route = respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=_ocsp_response(pki, "individual", next_update=None, age=timedelta(seconds=10))))
    clock = ManualClock(datetime.now(UTC))
    verifier = _respx_verifier(pki, clock)
    document = signed_by(pki, "individual")
    verifier.verify_enveloped(document)
    clock.advance(timedelta(seconds=200))
    verifier.verify_enveloped(document)
    assert route.call_count == 1
    clock.advance(timedelta(seconds=100))  # past thisUpdate + 300 s: asked again, and the same answer is now stale
    with pytest.raises(CertStatusUnknown, match="older than"):
        verifier.verify_enveloped(document)
    assert route.call_count == 2


@respx.mock
def test_an_ocsp_error_status_is_cert_status_unknown(pki):
    respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
            serialization.Encoding.DER)))
    with pytest.raises(CertStatusUnknown, match="TRY_LATER"):
        _respx_verifier(pki).verify_enveloped(signed_by(pki, "individual"))


@respx.mock
def test_an_ocsp_answer_about_another_certificate_is_cert_status_unknown(pki):
    respx.post("http://ocsp.test/ocsp").mock(return_value=httpx.Response(
        200, content=_ocsp_response(pki, "individual2")))
    with pytest.raises(CertStatusUnknown, match="does not answer"):
        _respx_verifier(pki).verify_enveloped(signed_by(pki, "individual"))


def test_the_nca_mock_serves_the_crl_at_the_certificates_distribution_point(pki, nca):
    cert = x509.load_pem_x509_certificate(pki.party("individual").cert_pem)
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    path = httpx.URL(cdp[0].full_name[0].value).path
    crl = x509.load_der_x509_crl(httpx.get(nca.url + path).content)
    issuer, _ = load_ca(pki.dir)
    assert crl.is_signature_valid(issuer.public_key())
    assert crl.get_revoked_certificate_by_serial_number(int(pki.party("revoked").serial, 16)) is not None
