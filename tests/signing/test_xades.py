"""XAdES-BES shapes: the SignedProperties reference and SigningCertificate(V2), and signature wrapping
through the places XAdES opens (ds:Object, a second Reference, Ids)."""

from __future__ import annotations

import base64
import copy

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from core.clock import Clock
from core.errors import SignatureInvalid
from signing import providers
from signing.signer import sign_enveloped, sign_raw
from signing.trust import TrustConfig
from signing.verifier import build_verifier
from signing.xades import SIGNED_PROPERTIES_TYPE, XADES
from signing.xmldsig import C14N, canonicalize
from tests.signing.conftest import MEDLICENSE, application
from tests.signing.stamps import mock_stamper

NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": XADES, "m": MEDLICENSE}


def bes(pki, party: str = "individual", **layout) -> bytes:  # noqa: ANN001
    p = pki.party(party)
    return sign_enveloped(application(), p.key_pem, p.cert_pem, xades="bes", **layout)


@pytest.fixture(scope="module")
def verifier(pki):  # noqa: ANN001, ANN201
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=pki.crl_dir,
                                      tsa_dir=pki.tsa_dir), Clock())


def resign(pki, root: etree._Element, party: str = "individual") -> bytes:  # noqa: ANN001
    """Recompute the SignedProperties digest and the signature value after a test changed the properties
    (so that only the property under test is wrong, not the signature)."""
    signature = root.find("ds:Signature", NS)
    reference = signature.find(f"ds:SignedInfo/ds:Reference[@Type='{SIGNED_PROPERTIES_TYPE}']", NS)
    target = signature.find(".//xades:SignedProperties", NS)
    digest = providers.DEFAULT_REGISTRY.digest(providers.SHA256, canonicalize(target, C14N, with_comments=False))
    reference.find("ds:DigestValue", NS).text = base64.b64encode(digest).decode()
    key = serialization.load_pem_private_key(pki.party(party).key_pem, None)
    value = sign_raw(key, canonicalize(signature.find("ds:SignedInfo", NS), C14N))
    signature.find("ds:SignatureValue", NS).text = base64.b64encode(value).decode()
    return etree.tostring(root)


@pytest.mark.parametrize("layout", [{}, {"signing_certificate": "v1"}, {"c14n": "exclusive"},
                                    {"layout": "default-ns", "with_comments": True}])
def test_xades_bes_verifies(pki, verifier, layout):
    verified = verifier.verify_enveloped(bes(pki, **layout))
    assert verified.signer.iin == "871008401427" and verified.signed_at is None


def test_the_resign_helper_keeps_a_valid_signature(pki, verifier):
    """The helper below re-signs exactly: an unchanged document re-signed still verifies."""
    verifier.verify_enveloped(resign(pki, etree.fromstring(bes(pki))))


def test_a_signing_certificate_of_another_certificate_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    other = x509.load_pem_x509_certificate(pki.party("individual2").cert_pem)
    value = root.find(".//xades:CertDigest/ds:DigestValue", NS)
    value.text = base64.b64encode(providers.DEFAULT_REGISTRY.digest(
        providers.SHA256, other.public_bytes(serialization.Encoding.DER))).decode()
    with pytest.raises(SignatureInvalid, match="does not name the signer's certificate"):
        verifier.verify_enveloped(resign(pki, root))


def test_a_signing_certificate_with_another_serial_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki, signing_certificate="v1"))
    root.find(".//xades:IssuerSerial/ds:X509SerialNumber", NS).text = "12345"
    with pytest.raises(SignatureInvalid, match="serial"):
        verifier.verify_enveloped(resign(pki, root))


def test_no_signing_certificate_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    holder = root.find(".//xades:SigningCertificateV2", NS)
    holder.getparent().remove(holder)
    with pytest.raises(SignatureInvalid, match="SigningCertificate"):
        verifier.verify_enveloped(resign(pki, root))


def test_changed_signed_properties_are_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    root.find(".//xades:SigningTime", NS).text = "2020-01-01T00:00:00Z"
    with pytest.raises(SignatureInvalid, match="SignedProperties do not match"):
        verifier.verify_enveloped(etree.tostring(root))


def test_qualifying_properties_without_their_reference_are_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    reference = root.find(f".//ds:Reference[@Type='{SIGNED_PROPERTIES_TYPE}']", NS)
    reference.getparent().remove(reference)
    with pytest.raises(SignatureInvalid, match="not signed"):
        verifier.verify_enveloped(resign_without_properties(pki, root))


def resign_without_properties(pki, root: etree._Element) -> bytes:  # noqa: ANN001
    signature = root.find("ds:Signature", NS)
    key = serialization.load_pem_private_key(pki.party("individual").key_pem, None)
    value = sign_raw(key, canonicalize(signature.find("ds:SignedInfo", NS), C14N))
    signature.find("ds:SignatureValue", NS).text = base64.b64encode(value).decode()
    return etree.tostring(root)


# --- wrapping -------------------------------------------------------------------------------------------


def test_signed_properties_moved_into_the_payload_and_a_forged_copy_left_are_signature_invalid(pki, verifier):
    """XSW: the signed SignedProperties moved out of the signature (where the reference still finds it by Id)
    and another put in its place: the reference must name the signature's own properties."""
    root = etree.fromstring(bes(pki))
    signed = root.find(".//xades:SignedProperties", NS)
    forged = copy.deepcopy(signed)
    forged.set("Id", "forged")
    signed.addprevious(forged)
    root.find("m:documents", NS).append(signed)
    with pytest.raises(SignatureInvalid, match="another element than the signature's own"):
        verifier.verify_enveloped(etree.tostring(root))


def test_a_second_element_with_the_properties_id_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    properties_id = root.find(".//xades:SignedProperties", NS).get("Id")
    etree.SubElement(root.find("m:activity", NS), f"{{{MEDLICENSE}}}note", Id=properties_id)
    with pytest.raises(SignatureInvalid, match="names 2 elements"):
        verifier.verify_enveloped(etree.tostring(root))


def test_a_forged_application_beside_the_qualifying_properties_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    obj = root.find(".//ds:Object", NS)
    obj.append(etree.fromstring(application()))
    with pytest.raises(SignatureInvalid, match="Object may hold one"):
        verifier.verify_enveloped(etree.tostring(root))


def test_a_second_object_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    obj = root.find(".//ds:Object", NS)
    obj.addnext(copy.deepcopy(obj))
    with pytest.raises(SignatureInvalid, match="at most one Object"):
        verifier.verify_enveloped(etree.tostring(root))


def test_the_properties_reference_first_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    signed_info = root.find(".//ds:SignedInfo", NS)
    whole, properties = signed_info.findall("ds:Reference", NS)
    properties.addnext(whole)  # order swapped: the payload reference second
    with pytest.raises(SignatureInvalid):
        verifier.verify_enveloped(resign_without_properties(pki, root))


def test_a_second_reference_to_the_payload_is_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    properties = root.find(f".//ds:Reference[@Type='{SIGNED_PROPERTIES_TYPE}']", NS)
    properties.set("URI", "")
    with pytest.raises(SignatureInvalid, match="by Id"):
        verifier.verify_enveloped(resign_without_properties(pki, root))


def test_a_properties_reference_to_a_payload_element_is_signature_invalid(pki, verifier):
    """The Type says SignedProperties, the URI names an element of the payload (a partial signature)."""
    root = etree.fromstring(bes(pki))
    root.find("m:applicant", NS).set("Id", "applicant")
    root.find(f".//ds:Reference[@Type='{SIGNED_PROPERTIES_TYPE}']", NS).set("URI", "#applicant")
    with pytest.raises(SignatureInvalid, match="another element than the signature's own"):
        verifier.verify_enveloped(resign_without_properties(pki, root))


def test_qualifying_properties_of_another_signature_are_signature_invalid(pki, verifier):
    root = etree.fromstring(bes(pki))
    root.find(".//xades:QualifyingProperties", NS).set("Target", "#someone-else")
    with pytest.raises(SignatureInvalid, match="targets another signature"):
        verifier.verify_enveloped(etree.tostring(root))


def test_an_unsigned_property_other_than_a_timestamp_is_signature_invalid(pki, verifier):
    p = pki.party("individual")
    root = etree.fromstring(sign_enveloped(application(), p.key_pem, p.cert_pem, xades="t",
                                           timestamp=mock_stamper(pki)))
    unsigned = root.find(".//xades:UnsignedSignatureProperties", NS)
    etree.SubElement(unsigned, f"{{{XADES}}}CertificateValues")
    with pytest.raises(SignatureInvalid, match="CertificateValues"):
        verifier.verify_enveloped(etree.tostring(root))


def test_the_application_read_is_the_signed_one(pki, verifier):
    """Whatever XAdES adds, the verified root holds what the first reference covers: the payload."""
    verified = verifier.verify_enveloped(bes(pki))
    assert verified.root.find("m:applicant/m:iin", NS).text == "871008401427"
    assert verified.root.find(".//xades:SignedProperties", NS) is not None  # inside the Signature only
    assert len(verified.root.findall("m:applicant", NS)) == 1
