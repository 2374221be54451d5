"""Enveloped XML signatures as NCA RK-based software produces them (used by the mocks and for results).

The signature is the last child of the root, `Reference URI=""`, transforms enveloped-signature then the
chosen c14n, RSA-SHA256 or ECDSA-SHA256 (from the key), SHA-256 digest, the certificate in
`KeyInfo/X509Data/X509Certificate`. Layouts: `ds:` prefix or a default namespace, inclusive or exclusive
c14n, optionally the c14n-with-comments transform.

signxml makes the signatures without comments. It does not fit the `#WithComments` layout: it uses one
c14n for SignedInfo and the reference and it digests the comments of a `URI=""` reference, which
XMLDSig excludes (xmlsec1 rejects such a signature). That layout, the usual NCA one (SignedInfo inclusive
c14n, reference transform c14n#WithComments), is built here on the same canonicalization the verifier uses,
as is a document whose root carries an `Id` (signxml would then reference "#Id", not the whole document).
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree
from signxml import SignatureConstructionMethod, XMLSigner
from signxml import namespaces as sx_namespaces
from signxml.algorithms import CanonicalizationMethod

from core.xmlsafe import parse_xml
from signing import providers
from signing.xmldsig import (
    C14N,
    C14N_COMMENTS,
    DS,
    ENVELOPED,
    EXC_C14N,
    EXC_C14N_COMMENTS,
    canonicalize,
    canonicalize_enveloped,
    ds,
)

LAYOUTS = ("ds-prefix", "default-ns")
C14NS = ("inclusive", "exclusive")


def sign_enveloped(
    xml: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    layout: str = "ds-prefix",
    c14n: str = "inclusive",
    with_comments: bool = False,
) -> bytes:
    """Sign the whole document `xml` with an enveloped signature; returns the signed document (UTF-8)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if c14n not in C14NS:
        raise ValueError(f"c14n must be one of {C14NS}")
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA and ECDSA keys are supported")
    cert = x509.load_pem_x509_certificate(cert_pem)
    root = parse_xml(xml)
    # signxml would reference a root carrying an Id by "#Id" rather than URI="": our builder then.
    if with_comments or root.get("Id") is not None or root.get("ID") is not None:
        root = _sign_own(root, key, cert, layout=layout, exclusive=c14n == "exclusive", with_comments=with_comments)
    else:
        root = _sign_with_signxml(root, key, cert, layout=layout, exclusive=c14n == "exclusive")
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _signature_method(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return providers.RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else providers.ECDSA_SHA256


def _sign_with_signxml(root: etree._Element, key, cert: x509.Certificate, *, layout: str,  # noqa: ANN001
                       exclusive: bool) -> etree._Element:
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=(CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0 if exclusive
                        else CanonicalizationMethod.CANONICAL_XML_1_0),
    )
    if layout == "default-ns":
        signer.namespaces = {None: sx_namespaces.ds}
    return signer.sign(root, key=key, cert=[cert])


def _sign_raw(key, data: bytes) -> bytes:  # noqa: ANN001
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _sign_own(root: etree._Element, key, cert: x509.Certificate, *, layout: str,  # noqa: ANN001
              exclusive: bool, with_comments: bool) -> etree._Element:
    nsmap = {"ds": DS} if layout == "ds-prefix" else {None: DS}
    if with_comments:
        transform = EXC_C14N_COMMENTS if exclusive else C14N_COMMENTS
    else:
        transform = EXC_C14N if exclusive else C14N
    signed_info_c14n = EXC_C14N if exclusive else C14N
    signature = etree.SubElement(root, ds("Signature"), nsmap=nsmap)
    signed_info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=signed_info_c14n)
    etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=_signature_method(key))
    reference = etree.SubElement(signed_info, ds("Reference"), URI="")
    transforms = etree.SubElement(reference, ds("Transforms"))
    etree.SubElement(transforms, ds("Transform"), Algorithm=ENVELOPED)
    etree.SubElement(transforms, ds("Transform"), Algorithm=transform)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=providers.SHA256)
    digest_value = etree.SubElement(reference, ds("DigestValue"))
    signature_value = etree.SubElement(signature, ds("SignatureValue"))
    key_info = etree.SubElement(signature, ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, ds("X509Data"))
    cert_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
    etree.SubElement(x509_data, ds("X509Certificate")).text = cert_b64

    digest = providers.DEFAULT_REGISTRY.digest(providers.SHA256, canonicalize_enveloped(root, signature, transform))
    digest_value.text = base64.b64encode(digest).decode("ascii")
    signature_value.text = base64.b64encode(_sign_raw(key, canonicalize(signed_info, signed_info_c14n))).decode()
    return root
