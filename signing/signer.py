"""Enveloped XML signatures as NCA RK-based software produces them (used by the mocks and for results).

The signature is the last child of the root, `Reference URI=""`, transforms enveloped-signature then the
chosen c14n, RSA-SHA256, ECDSA-SHA256 or GOST 34.10-2015 (from the key: a test PKI's GOST key, signing.gostpki)
with the SHA-256 digest or for GOST the Streebog one of the key's size, the certificate in
`KeyInfo/X509Data/X509Certificate`. Layouts: `ds:` prefix or a default namespace, inclusive or exclusive
c14n, optionally the c14n-with-comments transform.

signxml makes the signatures without comments. It does not fit the `#WithComments` layout: it uses one
c14n for SignedInfo and the reference and it digests the comments of a `URI=""` reference, which
XMLDSig excludes (xmlsec1 rejects such a signature). That layout, the usual NCA one (SignedInfo inclusive
c14n, reference transform c14n#WithComments), is built here on the same canonicalization the verifier uses,
as is a document whose root carries an `Id` (signxml would then reference "#Id", not the whole document),
and XAdES (`xades="bes"` or `"t"`): a second Reference to `xades:SignedProperties` naming the signer's
certificate (SigningCertificateV2 or v1), and for XAdES-T a `SignatureTimeStamp` whose token `timestamp`
makes over the canonicalized `ds:SignatureValue` (a TSA: `signing.tsa`, or NCA's service over HTTP).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

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
from signing.gost import hash_streebog
from signing.gostpki import GostPrivateKey, is_gost_key, load_gost_key
from signing.xades import SIGNED_PROPERTIES_TYPE, XADES
from signing.xades import xades as xades_tag
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

Stamper = Callable[[bytes], bytes]  # the octets to timestamp -> a DER TimeStampToken

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
    xades: str | None = None,
    timestamp: Stamper | None = None,
    timestamp_c14n: str | None = None,
    signing_certificate: str = "v2",
) -> bytes:
    """Sign the whole document `xml` with an enveloped signature; returns the signed document (UTF-8).

    `xades` "bes" or "t" makes a XAdES signature (see the module docstring); "t" needs `timestamp`.
    `timestamp_c14n` is written into SignatureTimeStamp (None: not written, which means inclusive C14N)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if c14n not in C14NS:
        raise ValueError(f"c14n must be one of {C14NS}")
    if xades not in (None, "bes", "t") or (xades == "t") != (timestamp is not None):
        raise ValueError('xades must be None, "bes" or "t", and "t" goes with a timestamp')
    key = load_signing_key(key_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    root = parse_xml(xml)
    # signxml would reference a root carrying an Id by "#Id" rather than URI="", and cannot sign with GOST:
    # our builder then.
    if xades is not None or with_comments or root.get("Id") is not None or root.get("ID") is not None \
            or isinstance(key, GostPrivateKey):
        root = _sign_own(root, key, cert, layout=layout, exclusive=c14n == "exclusive", with_comments=with_comments,
                         properties=_Properties(signing_certificate, timestamp, timestamp_c14n) if xades else None)
    else:
        root = _sign_with_signxml(root, key, cert, layout=layout, exclusive=c14n == "exclusive")
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | GostPrivateKey


def load_signing_key(key_pem: bytes) -> SigningKey:
    """An RSA or ECDSA key (PKCS#8 PEM), or a GOST key of a test PKI (`signing.gostpki`)."""
    if is_gost_key(key_pem):
        return load_gost_key(key_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA, ECDSA and GOST keys are supported")
    return key


def signature_method(key: SigningKey) -> str:
    """The SignatureMethod that goes with `key`."""
    return _signature_method(key)


def _signature_method(key: SigningKey) -> str:
    if isinstance(key, GostPrivateKey):
        return providers.GOST2015_512_SIGNATURE if key.bits == 512 else providers.GOST2015_256_SIGNATURE
    return providers.RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else providers.ECDSA_SHA256


def digest_method(key: SigningKey) -> str:
    """The DigestMethod that goes with `key`: Streebog of its size for GOST (as KalkanCrypt does), else SHA-256."""
    if isinstance(key, GostPrivateKey):
        return providers.GOST2015_512_DIGEST if key.bits == 512 else providers.GOST2015_256_DIGEST
    return providers.SHA256


def digest(method: str, data: bytes) -> bytes:
    if method == providers.GOST2015_512_DIGEST:
        return hash_streebog(512, data)
    if method == providers.GOST2015_256_DIGEST:
        return hash_streebog(256, data)
    return providers.DEFAULT_REGISTRY.digest(method, data)


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


def sign_raw(key: SigningKey, data: bytes) -> bytes:
    """The XMLDSig SignatureValue bytes of `data` (RSA PKCS#1 v1.5, ECDSA r || s, GOST r || s little-endian)."""
    if isinstance(key, GostPrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


class _Properties:
    def __init__(self, signing_certificate: str, timestamp: Stamper | None, timestamp_c14n: str | None) -> None:
        if signing_certificate not in ("v1", "v2"):
            raise ValueError('signing_certificate must be "v1" or "v2"')
        self.signing_certificate = signing_certificate
        self.timestamp = timestamp
        self.timestamp_c14n = timestamp_c14n


def _sign_own(root: etree._Element, key, cert: x509.Certificate, *, layout: str,  # noqa: ANN001
              exclusive: bool, with_comments: bool, properties: _Properties | None = None) -> etree._Element:
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
    method = digest_method(key)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=method)
    digest_value = etree.SubElement(reference, ds("DigestValue"))
    signature_value = etree.SubElement(signature, ds("SignatureValue"))
    key_info = etree.SubElement(signature, ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, ds("X509Data"))
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    etree.SubElement(x509_data, ds("X509Certificate")).text = base64.b64encode(cert_der).decode("ascii")
    qualifying = _qualifying(signature, signed_info, cert, cert_der, properties, signed_info_c14n, method) \
        if properties is not None else None

    digest_value.text = base64.b64encode(digest(method, canonicalize_enveloped(root, signature, transform))).decode()
    signature_value.text = base64.b64encode(sign_raw(key, canonicalize(signed_info, signed_info_c14n))).decode()
    if qualifying is not None and properties is not None and properties.timestamp is not None:
        _add_timestamp(qualifying, signature_value, properties)
    return root


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _qualifying(signature: etree._Element, signed_info: etree._Element, cert: x509.Certificate, cert_der: bytes,
                properties: _Properties, c14n: str, method: str = providers.SHA256) -> etree._Element:
    """ds:Object/xades:QualifyingProperties with the SignedProperties, and their Reference in SignedInfo."""
    signature_id, properties_id = f"sig-{uuid.uuid4().hex}", f"xades-{uuid.uuid4().hex}"
    signature.set("Id", signature_id)
    obj = etree.SubElement(signature, ds("Object"))
    qualifying = etree.SubElement(obj, xades_tag("QualifyingProperties"), nsmap={"xades": XADES},
                                  Target=f"#{signature_id}")
    signed = etree.SubElement(qualifying, xades_tag("SignedProperties"), Id=properties_id)
    signature_properties = etree.SubElement(signed, xades_tag("SignedSignatureProperties"))
    etree.SubElement(signature_properties, xades_tag("SigningTime")).text = \
        datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    v2 = properties.signing_certificate == "v2"
    holder = etree.SubElement(signature_properties, xades_tag("SigningCertificateV2" if v2 else "SigningCertificate"))
    entry = etree.SubElement(holder, xades_tag("Cert"))
    cert_digest = etree.SubElement(entry, xades_tag("CertDigest"))
    etree.SubElement(cert_digest, ds("DigestMethod"), Algorithm=method)
    etree.SubElement(cert_digest, ds("DigestValue")).text = _b64(digest(method, cert_der))
    if not v2:
        issuer_serial = etree.SubElement(entry, xades_tag("IssuerSerial"))
        etree.SubElement(issuer_serial, ds("X509IssuerName")).text = cert.issuer.rfc4514_string()
        etree.SubElement(issuer_serial, ds("X509SerialNumber")).text = str(cert.serial_number)

    reference = etree.SubElement(signed_info, ds("Reference"), Type=SIGNED_PROPERTIES_TYPE, URI=f"#{properties_id}")
    transforms = etree.SubElement(reference, ds("Transforms"))
    etree.SubElement(transforms, ds("Transform"), Algorithm=c14n)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=method)
    etree.SubElement(reference, ds("DigestValue")).text = _b64(
        digest(method, canonicalize(signed, c14n, with_comments=False)))
    return qualifying


def _add_timestamp(qualifying: etree._Element, signature_value: etree._Element, properties: _Properties) -> None:
    """XAdES-T: UnsignedProperties with a SignatureTimeStamp over the canonical ds:SignatureValue."""
    assert properties.timestamp is not None
    unsigned = etree.SubElement(etree.SubElement(qualifying, xades_tag("UnsignedProperties")),
                                xades_tag("UnsignedSignatureProperties"))
    stamp = etree.SubElement(unsigned, xades_tag("SignatureTimeStamp"), Id=f"ts-{uuid.uuid4().hex}")
    method = properties.timestamp_c14n or C14N
    if properties.timestamp_c14n is not None:
        etree.SubElement(stamp, ds("CanonicalizationMethod"), Algorithm=properties.timestamp_c14n)
    token = properties.timestamp(canonicalize(signature_value, method))
    etree.SubElement(stamp, xades_tag("EncapsulatedTimeStamp")).text = _b64(token)
