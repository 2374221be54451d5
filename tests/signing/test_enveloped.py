"""Enveloped signatures over the whole payload: every conformant layout verifies, every other shape is refused."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from core.errors import (
    AlgorithmUnsupported,
    MalformedMessage,
    SignatureInvalid,
    SignatureMissing,
)
from gateway.binding import full_text
from signing import providers
from signing.signer import sign_enveloped
from signing.xmldsig import DS
from tests.signing.conftest import MEDLICENSE, application

NS = {"m": MEDLICENSE, "ds": DS}

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_COMMENTS = C14N + "#WithComments"
EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def sign(pki, party="individual", doc=None, **kw) -> bytes:  # noqa: ANN001
    p = pki.party(party)
    return sign_enveloped(doc or application(), p.key_pem, p.cert_pem, **kw)


def xmlsec_template(*, prefix: str, signed_info_c14n: str, transforms: list[str], method: str = RSA_SHA256,
                    body: bytes | None = None) -> bytes:
    """An application with an empty signature for xmlsec1 to fill in (written by hand, as producers do)."""
    p = f"{prefix}:" if prefix else ""
    decl = f'xmlns:{prefix}="{DS}"' if prefix else f'xmlns="{DS}"'
    steps = "".join(
        f'<{p}Transform Algorithm="{t}">'
        + (f'<ec:InclusiveNamespaces xmlns:ec="{EXC}" PrefixList="m"/>' if t == EXC and prefix else "")
        + f"</{p}Transform>"
        for t in transforms
    )
    signature = (
        f"<{p}Signature {decl}>\n  <{p}SignedInfo>\n    <{p}CanonicalizationMethod Algorithm=\"{signed_info_c14n}\"/>\n"
        f"    <{p}SignatureMethod Algorithm=\"{method}\"/>\n    <{p}Reference URI=\"\">\n"
        f"      <{p}Transforms>{steps}</{p}Transforms>\n      <{p}DigestMethod Algorithm=\"{SHA256}\"/>\n"
        f"      <{p}DigestValue/>\n    </{p}Reference>\n  </{p}SignedInfo>\n  <{p}SignatureValue/>\n"
        f"  <{p}KeyInfo><{p}X509Data/></{p}KeyInfo>\n</{p}Signature>\n"
    )
    doc = (body or application()).decode()
    return doc.replace("</MedicalLicenseApplication>", signature + "</MedicalLicenseApplication>").encode()


# --- accepted layouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["ds-prefix", "default-ns"])
@pytest.mark.parametrize("c14n", ["inclusive", "exclusive"])
@pytest.mark.parametrize("with_comments", [False, True])
@pytest.mark.parametrize("party", ["individual", "individual_ec"])
def test_every_conformant_layout_of_our_signer_verifies(pki, crl_verifier, layout, c14n, with_comments, party):
    signed = sign(pki, party, layout=layout, c14n=c14n, with_comments=with_comments)
    result = crl_verifier.verify_enveloped(signed)
    assert result.signer.iin == "871008401427"
    assert result.signature_method == (ECDSA_SHA256 if party == "individual_ec" else RSA_SHA256)
    assert result.root.findtext("m:requestNumber", namespaces=NS) == "EGOV-2026-000123"


@pytest.mark.xmlsec1
@pytest.mark.parametrize("layout", ["ds-prefix", "default-ns"])
@pytest.mark.parametrize("c14n", ["inclusive", "exclusive"])
@pytest.mark.parametrize("with_comments", [False, True])
@pytest.mark.parametrize("party", ["individual", "individual_ec"])
def test_xmlsec1_accepts_signatures_made_by_licgate(pki, xmlsec_verify, layout, c14n, with_comments, party):
    signed = sign(pki, party, layout=layout, c14n=c14n, with_comments=with_comments)
    done = xmlsec_verify(signed, pki.party(party).cert_path)
    assert done.returncode == 0, done.stderr[-500:]


XMLSEC_LAYOUTS = {
    "default-namespace": dict(prefix="", signed_info_c14n=C14N, transforms=[ENVELOPED]),
    "ds-prefix-enveloped-c14n-with-comments": dict(prefix="ds", signed_info_c14n=C14N,
                                                   transforms=[ENVELOPED, C14N_COMMENTS]),
    "exclusive-c14n": dict(prefix="ds", signed_info_c14n=EXC, transforms=[ENVELOPED, EXC]),
    "default-namespace-exclusive-with-comments": dict(prefix="", signed_info_c14n=EXC,
                                                      transforms=[ENVELOPED, EXC + "WithComments"]),
    "ecdsa-default-namespace": dict(prefix="", signed_info_c14n=C14N, transforms=[ENVELOPED, C14N],
                                    method=ECDSA_SHA256),
}


@pytest.mark.xmlsec1
@pytest.mark.parametrize("name", list(XMLSEC_LAYOUTS))
def test_signatures_made_by_xmlsec1_verify(pki, crl_verifier, xmlsec_sign, name):
    party = "individual_ec" if "ecdsa" in name else "individual"
    signed = xmlsec_sign(xmlsec_template(**XMLSEC_LAYOUTS[name]), party, pki)
    assert b"X509Certificate" in signed
    result = crl_verifier.verify_enveloped(signed)
    assert result.signer.iin == "871008401427"


@pytest.mark.xmlsec1
def test_xmlsec1_signature_over_a_document_changed_afterwards_is_refused(pki, crl_verifier, xmlsec_sign):
    signed = xmlsec_sign(xmlsec_template(**XMLSEC_LAYOUTS["ds-prefix-enveloped-c14n-with-comments"]), "individual",
                         pki)
    with pytest.raises(SignatureInvalid):
        crl_verifier.verify_enveloped(signed.replace(b"DENTISTRY", b"SURGERY"))


def test_verified_root_is_the_document_that_was_given(pki, crl_verifier):
    signed = sign(pki)
    result = crl_verifier.verify_enveloped(signed)
    assert result.root.tag == f"{{{MEDLICENSE}}}MedicalLicenseApplication"
    assert result.certificate.serial_number == int(pki.party("individual").serial, 16)


# --- missing and broken signatures ---------------------------------------------------------------------


def test_a_payload_without_signature_is_signature_missing(crl_verifier):
    with pytest.raises(SignatureMissing):
        crl_verifier.verify_enveloped(application())


def test_a_signature_without_the_xmldsig_namespace_is_not_a_signature(crl_verifier):
    doc = application().replace(b"</MedicalLicenseApplication>", b"<Signature/></MedicalLicenseApplication>")
    with pytest.raises(SignatureMissing):
        crl_verifier.verify_enveloped(doc)


@pytest.mark.parametrize("old,new", [
    (b"EGOV-2026-000123", b"EGOV-2026-000124"),  # element text
    (b'code="APPLICATION_FORM"', b'code="FEE_RECEIPT"'),  # attribute
    (b"<channel>PORTAL</channel>", b"<channel>PORTAL</channel><extra/>"),  # an added element
])
def test_a_document_changed_after_signing_is_signature_invalid(pki, crl_verifier, old, new):
    signed = sign(pki)
    assert old in signed
    with pytest.raises(SignatureInvalid, match="digest"):
        crl_verifier.verify_enveloped(signed.replace(old, new))


def test_a_changed_signature_value_is_signature_invalid(pki, crl_verifier):
    signed = sign(pki)
    root = etree.fromstring(signed)
    value = root.find(".//ds:SignatureValue", NS)
    raw = bytearray(__import__("base64").b64decode("".join(value.text.split())))
    raw[10] ^= 1
    value.text = __import__("base64").b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureInvalid, match="signature value"):
        crl_verifier.verify_enveloped(etree.tostring(root))


def test_a_certificate_swapped_for_another_partys_is_signature_invalid(pki, crl_verifier):
    """Putting the applicant's certificate next to someone else's signature does not make it theirs."""
    signed = sign(pki, "individual2")
    root = etree.fromstring(signed)
    cert_el = root.find(".//ds:X509Certificate", NS)
    pem = pki.party("individual").cert_pem.decode()
    cert_el.text = "".join(pem.strip().splitlines()[1:-1])
    with pytest.raises(SignatureInvalid):
        crl_verifier.verify_enveloped(etree.tostring(root))


def test_a_signature_without_certificate_is_signature_invalid(pki, crl_verifier):
    root = etree.fromstring(sign(pki))
    key_info = root.find(".//ds:KeyInfo", NS)
    key_info.getparent().remove(key_info)
    with pytest.raises(SignatureInvalid, match="certificate"):
        crl_verifier.verify_enveloped(etree.tostring(root))


def test_a_dtd_in_the_payload_is_malformed(pki, crl_verifier):
    signed = sign(pki).replace(b"<MedicalLicenseApplication",
                               b'<!DOCTYPE x [<!ENTITY e "x">]>\n<MedicalLicenseApplication', 1)
    with pytest.raises(MalformedMessage):
        crl_verifier.verify_enveloped(signed)


# --- signature wrapping and shapes that do not cover the whole payload -----------------------------------


def test_a_signature_over_a_sub_element_is_signature_invalid(pki, crl_verifier):
    """A reference by Id signs only part of the payload: refused even though the digest is right."""
    p = pki.party("individual")
    from signxml import XMLSigner

    root = etree.fromstring(application(comment=False))
    applicant = root.find("m:applicant", NS)
    applicant.set("Id", "a1")
    signed = XMLSigner(c14n_algorithm=C14N).sign(root, key=p.key_pem, cert=p.cert_pem.decode(), reference_uri="#a1")
    with pytest.raises(SignatureInvalid, match='URI=""'):
        crl_verifier.verify_enveloped(etree.tostring(signed))


def test_two_signatures_are_signature_invalid(pki, crl_verifier):
    once = sign(pki)
    twice = sign(pki, "individual2", doc=once)
    with pytest.raises(SignatureInvalid, match="2 signatures"):
        crl_verifier.verify_enveloped(twice)


def test_a_signed_document_wrapped_in_another_root_is_signature_invalid(pki, crl_verifier):
    """XSW: the genuine signed application moved inside a forged one; the signature is no longer the
    last child of the root it signs."""
    signed = etree.fromstring(sign(pki))
    forged = etree.fromstring(application(comment=False).replace(b"871008401427", b"760212350620"))
    forged.append(signed)
    with pytest.raises(SignatureInvalid):
        crl_verifier.verify_enveloped(etree.tostring(forged))


def test_a_forged_application_with_the_genuine_signature_moved_into_it_is_signature_invalid(pki, crl_verifier):
    """XSW: the genuine Signature element re-parented onto a forged application."""
    signed = etree.fromstring(sign(pki))
    signature = signed.find("ds:Signature", NS)
    forged = etree.fromstring(application(comment=False).replace(b"871008401427", b"760212350620"))
    forged.append(signature)
    with pytest.raises(SignatureInvalid, match="digest"):
        crl_verifier.verify_enveloped(etree.tostring(forged))


def test_an_element_after_the_signature_is_signature_invalid(pki, crl_verifier):
    signed = sign(pki).replace(b"</MedicalLicenseApplication>",
                               b"<applicant><iin>760212350620</iin></applicant></MedicalLicenseApplication>")
    with pytest.raises(SignatureInvalid, match="last element"):
        crl_verifier.verify_enveloped(signed)


def test_a_signature_carrying_an_object_with_content_is_signature_invalid(pki, crl_verifier):
    """XSW: a forged application hidden in ds:Object (removed by the enveloped transform, so unsigned)."""
    root = etree.fromstring(sign(pki))
    signature = root.find("ds:Signature", NS)
    obj = etree.SubElement(signature, f"{{{DS}}}Object")
    obj.append(etree.fromstring(application(comment=False).replace(b"871008401427", b"760212350620")))
    with pytest.raises(SignatureInvalid, match="Object"):
        crl_verifier.verify_enveloped(etree.tostring(root))


def test_a_second_reference_is_signature_invalid(pki, crl_verifier):
    root = etree.fromstring(sign(pki))
    reference = root.find(".//ds:Reference", NS)
    reference.addnext(etree.fromstring(etree.tostring(reference)))
    with pytest.raises(SignatureInvalid, match="second Reference must be the XAdES SignedProperties"):
        crl_verifier.verify_enveloped(etree.tostring(root))


def test_a_reference_without_the_enveloped_transform_is_signature_invalid(pki, crl_verifier):
    signed = sign(pki).replace(ENVELOPED.encode(), C14N.encode())
    with pytest.raises(SignatureInvalid, match="enveloped"):
        crl_verifier.verify_enveloped(signed)


def test_an_xpath_transform_is_signature_invalid(pki, crl_verifier):
    signed = sign(pki, c14n="exclusive").replace(
        f'<ds:Transform Algorithm="{EXC}"/>'.encode(),
        b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>1</ds:XPath>'
        b"</ds:Transform>")
    assert b"REC-xpath" in signed
    with pytest.raises(SignatureInvalid):
        crl_verifier.verify_enveloped(signed)


# --- comments: never signed, never read ------------------------------------------------------------------


def test_a_comment_injected_inside_the_iin_does_not_split_it(pki, crl_verifier):
    """Comments are outside what a URI="" reference signs, so an intermediary may add them; what the
    caller reads must still be the whole signed number."""
    signed = sign(pki, with_comments=True)
    injected = signed.replace(b"<iin>871008401427</iin>", b"<iin>8710<!-- 760212350620 -->08401427</iin>")
    assert injected != signed
    result = crl_verifier.verify_enveloped(injected)
    iin = result.root.find("m:applicant/m:iin", NS)
    assert iin.text == "871008401427"
    assert full_text(iin) == "871008401427"


def test_a_signature_made_over_a_split_iin_reads_as_the_whole_number(pki, crl_verifier):
    signed = sign(pki, doc=application("<iin>8710<!-- x -->08401427</iin>"), with_comments=True)
    result = crl_verifier.verify_enveloped(signed)
    assert full_text(result.root.find("m:applicant/m:iin", NS)) == "871008401427"


def test_text_hidden_from_the_signature_by_comments_cannot_change_the_iin(pki, crl_verifier):
    signed = sign(pki)
    changed = signed.replace(b"<iin>871008401427</iin>", b"<iin>76021235062<!-- -->0</iin>")
    with pytest.raises(SignatureInvalid):
        crl_verifier.verify_enveloped(changed)


# --- algorithms --------------------------------------------------------------------------------------------


GOST_2015_SIGNATURES = [providers.GOST2015_512_SIGNATURE, providers.GOST2015_256_SIGNATURE]
GOST_2015_DIGESTS = [providers.GOST2015_512_DIGEST, providers.GOST2015_256_DIGEST]


@pytest.mark.parametrize("uri", [providers.GOST34310_SIGNATURE, providers.GOST34311_DIGEST])
def test_gost_34310_stays_algorithm_unsupported_and_named(pki, crl_verifier, uri):
    old = RSA_SHA256 if uri == providers.GOST34310_SIGNATURE else SHA256
    signed = sign(pki).replace(old.encode(), uri.encode())
    with pytest.raises(AlgorithmUnsupported, match="GOST 34.310-2004|GOST 34.311-95") as caught:
        crl_verifier.verify_enveloped(signed)
    assert uri in str(caught.value.data)
    assert "retired" in str(caught.value.data)


def _without_gost(pki):
    from core.clock import Clock
    from signing.providers import default_registry
    from signing.trust import TrustConfig
    from signing.verifier import build_verifier
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="off"), Clock(), registry=default_registry())


@pytest.mark.parametrize("uri", GOST_2015_SIGNATURES + GOST_2015_DIGESTS)
def test_without_the_gost_provider_gost_2015_is_algorithm_unsupported_and_says_how_to_install(pki, uri):
    old = RSA_SHA256 if "gostr34102015" in uri else SHA256
    signed = sign(pki).replace(old.encode(), uri.encode())
    with pytest.raises(AlgorithmUnsupported, match="GOST") as caught:
        _without_gost(pki).verify_enveloped(signed)
    assert uri in str(caught.value.data)
    assert "licgate[gost]" in str(caught.value.data)


@pytest.mark.parametrize("uri", GOST_2015_SIGNATURES)
def test_a_gost_signature_method_with_an_rsa_key_is_signature_invalid(pki, crl_verifier, uri):
    signed = sign(pki).replace(RSA_SHA256.encode(), uri.encode())
    with pytest.raises(SignatureInvalid, match="signature value"):
        crl_verifier.verify_enveloped(signed)


@pytest.mark.parametrize("uri", GOST_2015_DIGESTS)
def test_a_gost_digest_method_over_a_sha256_digest_is_signature_invalid(pki, crl_verifier, uri):
    signed = sign(pki).replace(SHA256.encode(), uri.encode())
    with pytest.raises(SignatureInvalid, match="digest"):
        crl_verifier.verify_enveloped(signed)


def test_rsa_sha1_is_algorithm_unsupported(pki, crl_verifier):
    signed = sign(pki).replace(RSA_SHA256.encode(), b"http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    with pytest.raises(AlgorithmUnsupported, match="SHA-1"):
        crl_verifier.verify_enveloped(signed)


def test_an_installed_provider_answers_for_its_algorithms(pki):
    """The registry is pluggable: a provider registered for a GOST URI is consulted instead of refusing."""
    from core.clock import Clock
    from signing.providers import ProviderRegistry, default_registry
    from signing.trust import TrustStore
    from signing.verifier import SignatureVerifier

    calls = []

    class FakeGost:
        name = "fake-gost"
        signature_methods = frozenset({providers.GOST2015_512_SIGNATURE})
        digest_methods = frozenset()

        def digest(self, method, data):  # noqa: ANN001, ANN202
            raise AssertionError("not used")

        def verify(self, method, certificate, signature, data):  # noqa: ANN001, ANN202
            calls.append(method)
            return False

    registry: ProviderRegistry = default_registry()
    registry.register(FakeGost())
    verifier = SignatureVerifier(TrustStore(pki.ca_dir), Clock(), registry=registry)
    signed = sign(pki).replace(RSA_SHA256.encode(), providers.GOST2015_512_SIGNATURE.encode())
    with pytest.raises(SignatureInvalid):
        verifier.verify_enveloped(signed)
    assert calls == [providers.GOST2015_512_SIGNATURE]


def test_an_unknown_canonicalization_is_algorithm_unsupported(pki, crl_verifier):
    signed = re.sub(rb'CanonicalizationMethod Algorithm="[^"]+"',
                    b'CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"', sign(pki))
    with pytest.raises(AlgorithmUnsupported):
        crl_verifier.verify_enveloped(signed)


@pytest.mark.parametrize("with_comments", [False, True])
def test_a_root_carrying_an_id_is_still_signed_whole(pki, crl_verifier, with_comments):
    doc = application().replace(b"<MedicalLicenseApplication ", b'<MedicalLicenseApplication Id="app-1" ', 1)
    signed = sign(pki, doc=doc, with_comments=with_comments)
    assert b'URI=""' in signed
    assert crl_verifier.verify_enveloped(signed).signer.iin == "871008401427"


def test_a_payload_that_cannot_be_canonicalized_is_signature_invalid(pki, crl_verifier):
    signed = sign(pki).replace(b"<requestNumber>", b'<requestNumber xmlns:r="relative/uri">', 1)
    with pytest.raises(SignatureInvalid, match="canonicalized"):
        crl_verifier.verify_enveloped(signed)
