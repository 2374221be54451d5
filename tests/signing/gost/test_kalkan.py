"""The real KalkanCrypt GOST 2015 XML signature and NCA's GOST 2022 test CA certificates, checked at the
primitive level: the byte orders the package docstring documents are the ones that verify."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from gostcrypto import gostsignature
from lxml import etree

from signing.gost import (
    TC26_256_A,
    TC26_512_A,
    InvalidKey,
    UnsupportedKey,
    encode_spki,
    generate_private_key,
    hash_streebog,
    public_key,
    public_key_from_certificate,
    public_key_from_spki,
    verify,
    verify_certificate_signature,
    verify_signed_data,
)

DS = "{http://www.w3.org/2000/09/xmldsig#}"


def _parse(data: bytes) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.ElementTree(etree.fromstring(data, parser))


@pytest.fixture(scope="module")
def document(kalkan: Path) -> etree._ElementTree:
    return _parse((kalkan / "gost2015-legal-entity.xml").read_bytes())


@pytest.fixture(scope="module")
def signer(document: etree._ElementTree) -> bytes:
    return base64.b64decode(document.find(f".//{DS}X509Certificate").text)


@pytest.fixture(scope="module")
def root(kalkan: Path) -> bytes:
    return (kalkan / "nca-gost2022-test-root.cer").read_bytes()


@pytest.fixture(scope="module")
def intermediate(kalkan: Path) -> bytes:
    return (kalkan / "nca-gost2022-test-intermediate.cer").read_bytes()


def _signed_info(document: etree._ElementTree) -> bytes:
    signed_info = document.find(f".//{DS}SignedInfo")
    method = signed_info.find(f"{DS}CanonicalizationMethod").get("Algorithm")
    assert method == "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"  # inclusive, without comments
    return etree.tostring(signed_info, method="c14n")


def _signature_value(document: etree._ElementTree) -> bytes:
    return base64.b64decode(document.find(f".//{DS}SignatureValue").text)


def test_the_signers_key_is_ncas_512_bit_gost_2015_key(signer: bytes) -> None:
    key = public_key_from_certificate(signer)
    assert (key.curve, key.algorithm_oid, key.digest_oid) == (TC26_512_A, "1.2.398.3.10.1.1.2.2", "1.2.398.3.10.1.3.3")


def test_the_reference_digest_is_streebog_512_of_the_canonical_document(
        document: etree._ElementTree, kalkan: Path) -> None:
    """Transforms: enveloped-signature, then inclusive c14n with comments; DigestValue is the digest's bytes."""
    payload = _parse((kalkan / "gost2015-legal-entity.xml").read_bytes()).getroot()
    payload.remove(payload.find(f"{DS}Signature"))
    canonical = etree.tostring(payload, method="c14n", with_comments=True)
    digest_value = base64.b64decode(document.find(f".//{DS}DigestValue").text)
    assert hash_streebog(512, canonical) == digest_value
    assert hash_streebog(512, canonical)[::-1] != digest_value


def test_the_signature_value_is_r_then_s_little_endian_over_the_signed_info(
        document: etree._ElementTree, signer: bytes) -> None:
    key = public_key_from_certificate(signer)
    digest = hash_streebog(512, _signed_info(document))
    value = _signature_value(document)
    assert verify(key.curve, key.public_key, digest, value)
    # none of the other conventions GOST XMLDSig implementations use elsewhere verifies
    for other in (value[::-1], value[64:] + value[:64], value[:64][::-1] + value[64:][::-1]):
        assert not verify(key.curve, key.public_key, digest, other)
    assert not verify(key.curve, key.public_key, digest[::-1], value)


def test_a_changed_signed_info_does_not_verify(document: etree._ElementTree, signer: bytes) -> None:
    key = public_key_from_certificate(signer)
    tampered = _signed_info(document).replace(b"UX1fM667", b"UX1fM668")
    assert not verify(key.curve, key.public_key, hash_streebog(512, tampered), _signature_value(document))


def test_gostcrypto_verifies_the_kalkan_signature_once_every_value_is_byte_reversed(
        document: etree._ElementTree, signer: bytes) -> None:
    key = public_key_from_certificate(signer)
    curve = key.curve
    theirs = gostsignature.new(gostsignature.MODE_512, dict(p=curve.p, a=curve.a, b=curve.b, m=curve.q, q=curve.q,
                                                            x=curve.x, y=curve.y))
    value, digest = _signature_value(document), hash_streebog(512, _signed_info(document))
    their_key = bytearray(key.public_key[:64][::-1] + key.public_key[64:][::-1])
    their_signature = bytearray(value[:64][::-1] + value[64:][::-1])
    assert theirs.verify(their_key, bytearray(digest[::-1]), their_signature)


def test_the_chain_signatures_verify_with_the_issuers_keys(root: bytes, intermediate: bytes, signer: bytes) -> None:
    root_key, intermediate_key = public_key_from_certificate(root), public_key_from_certificate(intermediate)
    assert verify_certificate_signature(root, root_key)
    assert verify_certificate_signature(intermediate, root_key)
    assert verify_certificate_signature(signer, intermediate_key)


def test_a_certificate_does_not_verify_with_another_key(root: bytes, intermediate: bytes, signer: bytes) -> None:
    assert not verify_certificate_signature(signer, public_key_from_certificate(root))
    assert not verify_certificate_signature(intermediate, public_key_from_certificate(intermediate))


def test_a_certificate_signature_is_r_then_s_little_endian_over_the_tbs(root: bytes, intermediate: bytes) -> None:
    cert = x509.load_der_x509_certificate(intermediate)
    key = public_key_from_certificate(root)
    digest = hash_streebog(512, cert.tbs_certificate_bytes)
    assert verify(key.curve, key.public_key, digest, cert.signature)
    assert not verify(key.curve, key.public_key, digest, cert.signature[::-1])
    assert not verify(key.curve, key.public_key, digest, cert.signature[64:] + cert.signature[:64])


def test_a_changed_tbs_certificate_does_not_verify(root: bytes, intermediate: bytes) -> None:
    cert = x509.load_der_x509_certificate(intermediate)
    tbs = bytearray(cert.tbs_certificate_bytes)
    tbs[-10] ^= 1
    assert not verify_signed_data(public_key_from_certificate(root), "1.2.398.3.10.1.1.2.3.2", bytes(tbs),
                                  cert.signature)


def test_a_signature_method_not_matching_the_key_size_is_invalid(root: bytes, intermediate: bytes) -> None:
    cert = x509.load_der_x509_certificate(intermediate)
    key = public_key_from_certificate(root)
    assert verify_signed_data(key, "1.2.398.3.10.1.1.2.3.2", cert.tbs_certificate_bytes, cert.signature)
    assert not verify_signed_data(key, "1.2.398.3.10.1.1.2.3.1", cert.tbs_certificate_bytes, cert.signature)
    assert not verify_signed_data(key, "1.2.840.113549.1.1.11", cert.tbs_certificate_bytes, cert.signature)


def test_our_spki_encoding_is_byte_for_byte_ncas(signer: bytes) -> None:
    key = public_key_from_certificate(signer)
    spki = encode_spki(key.curve, key.public_key)
    assert spki in signer
    assert public_key_from_spki(spki) == key


def test_a_256_bit_key_round_trips_with_ncas_and_the_standards_oids() -> None:
    d = generate_private_key(TC26_256_A)
    key = public_key(TC26_256_A, d)
    nca = public_key_from_spki(encode_spki(TC26_256_A, key))
    standard = public_key_from_spki(encode_spki(TC26_256_A, key, nca=False))
    assert (nca.algorithm_oid, nca.digest_oid) == ("1.2.398.3.10.1.1.2.1", "1.2.398.3.10.1.3.2")
    assert (standard.algorithm_oid, standard.digest_oid) == ("1.2.643.7.1.1.1.1", "1.2.643.7.1.1.2.2")
    assert nca.curve is standard.curve is TC26_256_A and nca.public_key == standard.public_key == key


def _replace_oid(spki: bytes, old: str, new: str) -> bytes:
    from signing.gost.certificate import encode_oid
    return spki.replace(encode_oid(old), encode_oid(new))


def test_a_retired_gost_34310_2004_key_is_refused_by_name(signer: bytes) -> None:
    spki = encode_spki(TC26_512_A, public_key_from_certificate(signer).public_key)
    legacy = _replace_oid(spki, "1.2.398.3.10.1.1.2.2", "1.2.398.3.10.1.1.1.1")
    assert legacy != spki and len(legacy) == len(spki)  # same length: no DER length to fix
    with pytest.raises(UnsupportedKey, match="GOST 34.310-2004"):
        public_key_from_spki(legacy)


def test_a_key_on_a_curve_of_the_wrong_size_is_refused(signer: bytes) -> None:
    spki = encode_spki(TC26_512_A, public_key_from_certificate(signer).public_key)
    with pytest.raises(UnsupportedKey, match="512-bit key algorithm with the 256-bit curve"):
        public_key_from_spki(_replace_oid(spki, "1.2.398.3.10.1.1.2.2.1", "1.2.398.3.10.1.1.2.1.1"))


def test_a_certificate_key_off_the_curve_is_invalid(signer: bytes) -> None:
    key = public_key_from_certificate(signer).public_key
    spki = encode_spki(TC26_512_A, key)
    broken = spki.replace(key, key[:-1] + bytes([key[-1] ^ 1]))
    with pytest.raises(InvalidKey, match="not a point"):
        public_key_from_spki(broken)


def test_an_rsa_certificate_has_no_gost_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(private, hashes.SHA256()))
    with pytest.raises(UnsupportedKey, match="1.2.840.113549.1.1.1 is not a GOST"):
        public_key_from_certificate(cert)


def test_truncated_der_is_refused() -> None:
    for data in (b"", b"\x30", b"\x30\x10\x30\x00", b"\x30\x84\xff\xff\xff\xff", b"\x30\x06\x30\x02\x06\x00\x03\x00",
                 b"\x30\x07\x30\x03\x06\x01\x81\x03\x00"):
        with pytest.raises(UnsupportedKey):
            public_key_from_spki(data)
