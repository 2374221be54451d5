"""GOST 34.10-2015 applications over loopback, as NCA RK's GOST certificates sign them: accepted (512 and 256
bit, in the serving process and in an intake worker), refused for every way a signature can be wrong, revoked
by CRL and by OCSP (a GOST-signed OCSP answer of the NCA mock), and a signature made by an independent GOST
implementation (gostcrypto), not by this project's signer."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from gostcrypto import gosthash, gostsignature
from lxml import etree

from gateway.app import create_app
from gateway.config import parse_config
from mocks.nca import create_app as nca_app
from signing.gost import CURVES, TC26_512_A, Curve
from signing.gostpki import GostPrivateKey, load_gost_key, sign_certificate
from signing.pki import PARTIES, Pki, issue_gost_certificate, load_ca, party_builder
from signing.providers import GOST2015_256_SIGNATURE, GOST2015_512_DIGEST, GOST2015_512_SIGNATURE
from signing.xmldsig import C14N, DS, ENVELOPED, canonicalize
from tests.intake.conftest import config_table, make_config
from tests.intake.helpers import Reply, application_xml, envelope, post, sign
from tests.support.server import ServerThread, serve

ENTITY_BIN = "940140000385"


def assert_fault(reply: Reply, code: str) -> None:
    assert reply.http_status == 500, reply.body[:500]
    assert reply.fault_code == code, reply.body[:1000]
    assert b"Traceback" not in reply.body


def assert_accepted(reply: Reply) -> None:
    assert reply.http_status == 200 and reply.status_code == "SCSS001", reply.body[:1500]


@pytest.fixture(params=[0, 1], ids=["in-process", "intake-worker"])
def gost_gateway(request: pytest.FixtureRequest, pki: Pki, tmp_path: Path) -> Iterator[ServerThread]:
    """A gateway examining in its own process, and one examining in an intake worker process (which builds
    its verifier, and so its crypto providers, from the configuration)."""
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=request.param))
    with serve(app) as server:
        yield server


@pytest.mark.parametrize(("party", "method"), [("gost_individual", GOST2015_512_SIGNATURE),
                                               ("gost_individual_256", GOST2015_256_SIGNATURE)])
def test_a_gost_application_is_accepted(gost_gateway: ServerThread, pki: Pki, party: str, method: str) -> None:
    iin = pki.party(party).iin
    payload = sign(application_xml(iin=iin), pki, party)
    assert method.encode() in payload
    reply = post(gost_gateway.url, envelope(payload))
    assert_accepted(reply)


def test_a_legal_entity_signing_through_its_gost_first_head_is_accepted(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(bin_=ENTITY_BIN, name='ТОО "Медицинский центр Шипагер"'), pki, "gost_le_head",
                   xades="bes")
    assert_accepted(post(gateway.url, envelope(payload)))


def test_a_gost_application_as_an_escaped_string_with_comments_is_accepted(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(comment=True), pki, "gost_individual", with_comments=True)
    assert_accepted(post(gateway.url, envelope(payload, as_string=True)))


# --- SIGNATURE_INVALID ------------------------------------------------------------------------------------


def _resign(payload: bytes, key: GostPrivateKey, *, method: str | None = None,
            certificate_pem: bytes | None = None) -> bytes:
    """The signed payload with its SignatureMethod (and certificate) replaced and SignedInfo signed again by
    `key`: only the thing under test is wrong, the signature value is real."""
    root = etree.fromstring(payload)
    signature = root.find(f"{{{DS}}}Signature")
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    if method is not None:
        signed_info.find(f"{{{DS}}}SignatureMethod").set("Algorithm", method)
    if certificate_pem is not None:
        der = base64.b64decode(b"".join(certificate_pem.strip().splitlines()[1:-1]))
        signature.find(f".//{{{DS}}}X509Certificate").text = base64.b64encode(der).decode()
    value = key.sign(canonicalize(signed_info, C14N))
    signature.find(f"{{{DS}}}SignatureValue").text = base64.b64encode(value).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_changed_gost_application_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "gost_individual")
    assert_fault(post(gateway.url, envelope(payload.replace(b"PRIMARY_HEALTH_CARE", b"DENTISTRY_AND_MORE__"))),
                 "SIGNATURE_INVALID")


def test_a_signature_by_another_gost_key_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "gost_individual")
    other = load_gost_key(pki.party("gost_le_head").key_pem)  # a valid key of the same PKI, not the signer's
    assert_fault(post(gateway.url, envelope(_resign(payload, other))), "SIGNATURE_INVALID")


def test_a_512_bit_method_signed_with_a_256_bit_key_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(iin="760212350620"), pki, "gost_individual_256")
    key = load_gost_key(pki.party("gost_individual_256").key_pem)
    assert_fault(post(gateway.url, envelope(_resign(payload, key, method=GOST2015_512_SIGNATURE))),
                 "SIGNATURE_INVALID")


def test_a_256_bit_method_with_a_512_bit_key_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "gost_individual")
    key = load_gost_key(pki.party("gost_individual").key_pem)
    assert_fault(post(gateway.url, envelope(_resign(payload, key, method=GOST2015_256_SIGNATURE))),
                 "SIGNATURE_INVALID")


def test_an_rsa_method_with_a_gost_key_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "gost_individual")
    key = load_gost_key(pki.party("gost_individual").key_pem)
    method = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert_fault(post(gateway.url, envelope(_resign(payload, key, method=method))), "SIGNATURE_INVALID")


def test_a_gost_method_with_an_rsa_key_is_signature_invalid(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "individual").replace(
        b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", GOST2015_512_SIGNATURE.encode())
    assert_fault(post(gateway.url, envelope(payload)), "SIGNATURE_INVALID")


def _other_512_curve() -> Curve:
    return next(c for c in CURVES if c.bits == 512 and c is not TC26_512_A and c.cofactor == 1)


def test_a_signature_made_on_another_curve_than_the_certificates_is_signature_invalid(
        gateway: ServerThread, pki: Pki) -> None:
    """The same private number d, the certificate's key on another 512-bit curve (issued by the trusted GOST
    intermediate, so the path is good): the signature made on TC26 512 A does not verify."""
    other = _other_512_curve()
    d = load_gost_key(pki.party("gost_individual").key_pem).d % other.q
    certified = GostPrivateKey(other, d)
    inter, inter_key = load_ca(pki.dir, "gost_intermediate")
    spec = PARTIES["individual"]
    from signing import gost
    spki = gost.encode_spki(other, certified.public_key, nca=False)
    builder = party_builder(spec, _placeholder(), inter.subject, subject_key_id=certified.key_identifier(),
                            authority_key_id=inter_key.key_identifier(), crl_name="nca_gost.crl")
    cert = sign_certificate(builder, spki, inter_key)
    from cryptography.hazmat.primitives import serialization
    pem = cert.public_bytes(serialization.Encoding.PEM)
    payload = sign(application_xml(), pki, "gost_individual")
    assert_fault(post(gateway.url, envelope(_resign(payload, GostPrivateKey(TC26_512_A, d), certificate_pem=pem))),
                 "SIGNATURE_INVALID")
    # The same certificate with a signature made on its own curve is accepted: only the curve was wrong.
    assert_accepted(post(gateway.url, envelope(_resign(payload, certified, certificate_pem=pem))))


def _placeholder():  # noqa: ANN202
    from signing.gostpki import placeholder_public_key
    return placeholder_public_key()


def test_gost_34310_is_algorithm_unsupported(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(), pki, "gost_individual").replace(
        GOST2015_512_SIGNATURE.encode(), b"http://www.w3.org/2001/04/xmldsig-more#gost34310-gost34311")
    reply = post(gateway.url, envelope(payload))
    assert_fault(reply, "ALGORITHM_UNSUPPORTED")


# --- certificates ---------------------------------------------------------------------------------------


def test_a_revoked_gost_certificate_is_cert_revoked_by_the_gost_crl(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(iin="790103300220", name="ЕСКІ БОЛАТ"), pki, "gost_revoked")
    reply = post(gateway.url, envelope(payload))
    assert_fault(reply, "CERT_REVOKED")
    assert "nca_gost.crl" in (reply.error_data or "") or "nca_gost.crl" in reply.body.decode()


def test_an_expired_gost_certificate_is_cert_expired(gateway: ServerThread, pki: Pki) -> None:
    payload = sign(application_xml(iin="790103300220", name="ЕСКІ БОЛАТ"), pki, "gost_expired")
    assert_fault(post(gateway.url, envelope(payload)), "CERT_EXPIRED")


def test_a_gost_certificate_of_an_untrusted_gost_ca_is_cert_untrusted(gateway: ServerThread, pki: Pki,
                                                                     tmp_path: Path) -> None:
    """A GOST CA of the same name but another key (not pinned): no path."""
    from cryptography.hazmat.primitives import serialization

    inter, _ = load_ca(pki.dir, "gost_intermediate")
    rogue = GostPrivateKey.generate(512)
    key = GostPrivateKey.generate(512)
    cert = issue_gost_certificate(PARTIES["individual"], key, inter, rogue)
    payload = sign_with(application_xml(), key, cert.public_bytes(serialization.Encoding.PEM))
    assert_fault(post(gateway.url, envelope(payload)), "CERT_UNTRUSTED")


def sign_with(xml: bytes, key: GostPrivateKey, cert_pem: bytes) -> bytes:
    from signing.signer import sign_enveloped
    return sign_enveloped(xml, key.pem(), cert_pem)


@pytest.fixture
def ocsp_gateway(pki: Pki, tmp_path: Path) -> Iterator[ServerThread]:
    """A gateway asking the NCA mock's OCSP responder (no CRL fallback), GOST answers for GOST certificates."""
    with serve(nca_app(pki.dir)) as nca:
        table = config_table(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
        table["trust"].update(revocation="ocsp", ocsp_url=nca.url + "/ocsp", revocation_fallback="none")
        app = create_app(parse_config(table, base_dir=Path.cwd()))
        with serve(app) as server:
            yield server


def test_by_ocsp_a_good_gost_certificate_is_accepted_and_a_revoked_one_is_cert_revoked(
        ocsp_gateway: ServerThread, pki: Pki) -> None:
    assert_accepted(post(ocsp_gateway.url, envelope(sign(application_xml(), pki, "gost_individual"))))
    revoked = sign(application_xml(iin="790103300220", name="ЕСКІ БОЛАТ"), pki, "gost_revoked")
    reply = post(ocsp_gateway.url, envelope(revoked))
    assert_fault(reply, "CERT_REVOKED")
    assert "OCSP" in reply.body.decode()


# --- an independent implementation ------------------------------------------------------------------------


def gostcrypto_signed(xml: bytes, key: GostPrivateKey, cert_pem: bytes) -> bytes:
    """An enveloped GOST signature built here with lxml's C14N and gostcrypto's Streebog and GOST R 34.10,
    in KalkanCrypt's layout and byte order (r then s, each little-endian; gostcrypto works big-endian)."""
    root = etree.fromstring(xml)
    signature = etree.SubElement(root, f"{{{DS}}}Signature", nsmap={"ds": DS})
    signed_info = etree.SubElement(signature, f"{{{DS}}}SignedInfo")
    etree.SubElement(signed_info, f"{{{DS}}}CanonicalizationMethod", Algorithm=C14N)
    etree.SubElement(signed_info, f"{{{DS}}}SignatureMethod", Algorithm=GOST2015_512_SIGNATURE)
    reference = etree.SubElement(signed_info, f"{{{DS}}}Reference", URI="")
    transforms = etree.SubElement(reference, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=ENVELOPED)
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=C14N)
    etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=GOST2015_512_DIGEST)
    digest_value = etree.SubElement(reference, f"{{{DS}}}DigestValue")
    value = etree.SubElement(signature, f"{{{DS}}}SignatureValue")
    x509_data = etree.SubElement(etree.SubElement(signature, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    der = base64.b64decode(b"".join(cert_pem.strip().splitlines()[1:-1]))
    etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = base64.b64encode(der).decode()

    # The document without the signature, canonicalized by lxml (not this project's canonicalize).
    unsigned = etree.fromstring(xml)
    document = etree.tostring(unsigned, method="c14n", exclusive=False, with_comments=False)
    digest_value.text = base64.b64encode(bytes(gosthash.new("streebog512", data=document).digest())).decode()
    signed_info_octets = etree.tostring(signed_info, method="c14n", exclusive=False, with_comments=False)
    digest = bytes(gosthash.new("streebog512", data=signed_info_octets).digest())
    curve = key.curve
    engine = gostsignature.new(gostsignature.MODE_512, dict(p=curve.p, a=curve.a, b=curve.b, m=curve.q * curve.cofactor,
                                                              q=curve.q, x=curve.x, y=curve.y))
    theirs = bytes(engine.sign(bytearray(key.d.to_bytes(64, "big")), bytearray(digest[::-1])))
    value.text = base64.b64encode(theirs[:64][::-1] + theirs[64:][::-1]).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_signature_made_by_gostcrypto_is_accepted(gost_gateway: ServerThread, pki: Pki) -> None:
    party = pki.party("gost_individual")
    payload = gostcrypto_signed(application_xml(), load_gost_key(party.key_pem), party.cert_pem)
    assert_accepted(post(gost_gateway.url, envelope(payload)))
    # The same bytes with one changed character are not.
    assert_fault(post(gost_gateway.url, envelope(payload.replace(b"PRIMARY_HEALTH_CARE", b"PRIMARY_HEALTH_CARX"))),
                 "SIGNATURE_INVALID")


# --- WS-Security with a GOST transport key ----------------------------------------------------------------


def _gost_wsse(pki: Pki, party: str = "gost_portal_transport") -> bytes:
    from signing.wsse import sign_wsse

    body = envelope(sign(application_xml(), pki, "gost_individual"), sender="WSSE_PORTAL")
    transport = pki.party(party)
    return sign_wsse(body, transport.key_pem, transport.cert_pem)


def test_a_gost_transport_signature_is_accepted(gost_gateway: ServerThread, pki: Pki) -> None:
    signed = _gost_wsse(pki)
    assert GOST2015_512_SIGNATURE.encode() in signed and GOST2015_512_DIGEST.encode() in signed
    assert_accepted(post(gost_gateway.url, signed))


def test_a_changed_body_under_a_gost_transport_signature_is_refused(gateway: ServerThread, pki: Pki) -> None:
    body = _gost_wsse(pki).replace(b"2026-11-27T11:02:17+05:00", b"2026-11-27T11:02:18+05:00")
    assert_fault(post(gateway.url, body), "TRANSPORT_SIGNATURE_INVALID")


def test_a_gost_transport_key_of_another_organisation_is_refused(gateway: ServerThread, pki: Pki) -> None:
    assert_fault(post(gateway.url, _gost_wsse(pki, "gost_le_head")), "TRANSPORT_SIGNATURE_INVALID")


# --- revocation data that does not verify -----------------------------------------------------------------


def test_a_gost_crl_not_signed_by_the_gost_ca_is_not_believed(pki: Pki, tmp_path: Path) -> None:
    """The GOST intermediate's CRL re-signed by another GOST key: ignored, so the certificate's status is
    unknown (never a silent pass)."""
    import shutil

    from core.clock import Clock
    from core.errors import CertStatusUnknown
    from signing.pki import build_crl
    from signing.signer import sign_enveloped
    from signing.trust import TrustConfig
    from signing.verifier import build_verifier

    inter, _ = load_ca(pki.dir, "gost_intermediate")
    crl_dir = tmp_path / "crl"
    shutil.copytree(pki.crl_dir, crl_dir)
    for name in ("nca_gost.crl", "nca_gost_delta.crl"):
        (crl_dir / name).unlink()
    (crl_dir / "nca_gost.crl").write_bytes(build_crl(inter, GostPrivateKey.generate(512), []))
    verifier = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=crl_dir), Clock())
    party = pki.party("gost_individual")
    with pytest.raises(CertStatusUnknown):
        verifier.verify_enveloped(sign_enveloped(application_xml(), party.key_pem, party.cert_pem))
    rsa = pki.party("individual")
    assert verifier.verify_enveloped(sign_enveloped(application_xml(), rsa.key_pem, rsa.cert_pem)).signer.iin


def test_a_gost_ocsp_answer_with_a_broken_signature_is_cert_status_unknown(pki: Pki) -> None:
    import httpx

    from core.clock import Clock
    from core.errors import CertStatusUnknown
    from signing.signer import sign_enveloped
    from signing.trust import TrustConfig
    from signing.verifier import build_verifier

    app = nca_app(pki.dir)
    answer = app.state.nca.answer

    def broken(request):  # noqa: ANN001, ANN202 - the GOST answer with one byte of its signature flipped
        from signing import der

        data = bytearray(answer(request))
        _, wrapped = der.parse(bytes(data)).children()
        (response_bytes,) = wrapped.children()
        _, octets = response_bytes.children()
        signature = der.parse(octets.value).children()[2]
        assert signature.tag == 0x03 and len(signature.value) == 129  # r || s of GOST-512 after the unused-bits byte
        data[octets.content + signature.content + 10] ^= 1
        return bytes(data)

    app.state.nca.answer = broken
    with serve(app) as nca:
        client = httpx.Client()
        verifier = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="ocsp", ocsp_url=nca.url + "/ocsp",
                                              revocation_fallback="none"), Clock(), http_client=client)
        party = pki.party("gost_individual")
        with pytest.raises(CertStatusUnknown, match="signature does not verify"):
            verifier.verify_enveloped(sign_enveloped(application_xml(), party.key_pem, party.cert_pem))


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "intake-worker"])
def test_crypto_providers_empty_turns_gost_off_in_the_workers_too(pki: Pki, tmp_path: Path, processes: int) -> None:
    """The configuration chooses the providers, and an intake worker process builds the same ones: with
    `crypto_providers = []` a GOST application is ALGORITHM_UNSUPPORTED wherever it is examined."""
    table = config_table(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=processes)
    table["trust"]["crypto_providers"] = []
    app = create_app(parse_config(table, base_dir=Path.cwd()))
    with serve(app) as server:
        if processes:
            assert app.state.services.intake.pool is not None
        reply = post(server.url, envelope(sign(application_xml(), pki, "gost_individual")))
        assert_fault(reply, "ALGORITHM_UNSUPPORTED")
        assert b"licgate[gost]" in reply.body
        assert_accepted(post(server.url, envelope(sign(application_xml(), pki, "individual"))))
