"""XAdES-BES and XAdES-T inside an enveloped XML signature (XAdES 1.3.2, docs/signing.md): the shape rules.

What is accepted in the Signature, beside SignedInfo, SignatureValue and KeyInfo: at most one `ds:Object`
holding one `xades:QualifyingProperties` that targets this signature, with
- `SignedProperties` (signed by the second Reference of SignedInfo, of Type `SIGNED_PROPERTIES_TYPE`): its
  `SignedSignatureProperties` must name the signer's certificate in `SigningCertificate` or
  `SigningCertificateV2` (a `Cert` whose digest is the certificate's); other signed properties
  (SigningTime, a policy, a production place, data object formats) are read by no one and allowed;
- optionally `UnsignedProperties/UnsignedSignatureProperties` holding `SignatureTimeStamp` elements only
  (XAdES-T). Other unsigned properties (XAdES-C, -X, -XL, -A) are refused: nothing unsigned is read but
  the timestamp, and a signature carrying what it cannot judge is not half-accepted.
Every violation is SIGNATURE_INVALID; more than one timestamp is TIMESTAMP_INVALID, reported in its place
in the order of checks (after the signature value), which is the verifier's business.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from core.errors import SignatureInvalid, TimestampInvalid
from signing.providers import ProviderRegistry
from signing.xmldsig import C14N, C14N_METHODS, child_elements, decode_base64, ds

XADES = "http://uri.etsi.org/01903/v1.3.2#"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
DER_ENCODING = "http://uri.etsi.org/01903/v1.2.2#DER"


def xades(local: str) -> str:
    return f"{{{XADES}}}{local}"


@dataclass(frozen=True, slots=True)
class Qualifying:
    """The XAdES properties of one signature, as found (nothing judged yet but their shape)."""

    signed_properties: etree._Element
    timestamps: tuple[etree._Element, ...]


def read_object(signature: etree._Element, obj: etree._Element) -> Qualifying:
    """The QualifyingProperties of the signature's one `ds:Object`, or SIGNATURE_INVALID."""
    inside = child_elements(obj)
    if len(inside) != 1 or inside[0].tag != xades("QualifyingProperties") or (obj.text or "").strip():
        raise SignatureInvalid("ds:Object may hold one xades:QualifyingProperties (XAdES 1.3.2) and nothing else")
    qualifying = inside[0]
    target = qualifying.get("Target")
    signature_id = signature.get("Id")
    if target is not None and (not signature_id or target != f"#{signature_id}"):
        raise SignatureInvalid("xades:QualifyingProperties targets another signature than this one")
    parts = child_elements(qualifying)
    tags = [p.tag for p in parts]
    if tags not in ([xades("SignedProperties")], [xades("SignedProperties"), xades("UnsignedProperties")]):
        raise SignatureInvalid("QualifyingProperties must hold SignedProperties, then optionally UnsignedProperties")
    signed = parts[0]
    timestamps: list[etree._Element] = []
    if len(parts) == 2:
        unsigned = child_elements(parts[1])
        if [u.tag for u in unsigned] != [xades("UnsignedSignatureProperties")]:
            raise SignatureInvalid("UnsignedProperties may hold UnsignedSignatureProperties only")
        for prop in child_elements(unsigned[0]):
            if prop.tag != xades("SignatureTimeStamp"):
                raise SignatureInvalid(f"unsigned property {etree.QName(prop).localname} is not accepted "
                                       "(only SignatureTimeStamp, XAdES-T)")
            timestamps.append(prop)
    return Qualifying(signed_properties=signed, timestamps=tuple(timestamps))


def resolve_signed_properties(reference: etree._Element, qualifying: Qualifying | None) -> etree._Element:
    """The element the SignedProperties reference names: it must be this signature's SignedProperties, named
    by an Id no other element of the document carries (no second element can stand in for it)."""
    uri = reference.get("URI") or ""
    if qualifying is None:
        raise SignatureInvalid("a SignedProperties reference without xades:QualifyingProperties in a ds:Object")
    if not uri.startswith("#") or len(uri) < 2:
        raise SignatureInvalid(f"the SignedProperties reference must name it by Id (#...), not {uri[:80]!r}")
    wanted = uri[1:]
    named = reference.getroottree().xpath("//*[@Id=$v or @ID=$v or @id=$v or @xml:id=$v]", v=wanted)
    if len(named) != 1:
        raise SignatureInvalid(f"the Id {wanted[:80]!r} names {len(named)} elements (exactly one is required)")
    if named[0] is not qualifying.signed_properties:
        raise SignatureInvalid("the SignedProperties reference names another element than the signature's own "
                               "xades:SignedProperties")
    return named[0]


def check_signing_certificate(signed_properties: etree._Element, cert: x509.Certificate,
                              registry: ProviderRegistry) -> None:
    """SIGNATURE_INVALID unless SigningCertificate(V2) names `cert` by its digest."""
    properties = signed_properties.find(xades("SignedSignatureProperties"))
    if properties is None:
        raise SignatureInvalid("xades:SignedProperties has no SignedSignatureProperties")
    holders = [e for e in child_elements(properties)
               if e.tag in (xades("SigningCertificate"), xades("SigningCertificateV2"))]
    if len(holders) != 1:
        raise SignatureInvalid("SignedSignatureProperties must hold one SigningCertificate or SigningCertificateV2")
    certs = holders[0].findall(xades("Cert"))
    if not certs:
        raise SignatureInvalid(f"{etree.QName(holders[0]).localname} names no Cert")
    der = cert.public_bytes(serialization.Encoding.DER)
    for entry in certs:
        digest = entry.find(xades("CertDigest"))
        method = digest.find(ds("DigestMethod")) if digest is not None else None
        value = digest.find(ds("DigestValue")) if digest is not None else None
        if method is None or value is None:
            raise SignatureInvalid("a xades:Cert must hold CertDigest with ds:DigestMethod and ds:DigestValue")
        expected = decode_base64("".join(value.itertext()))
        if expected is None:
            raise SignatureInvalid("CertDigest/DigestValue is not base64")
        if hmac.compare_digest(registry.digest(method.get("Algorithm") or "", der), expected):
            serial = entry.find(f"{xades('IssuerSerial')}/{ds('X509SerialNumber')}")
            text = "".join(serial.itertext()).strip() if serial is not None else None
            if text is not None and (not text.isdigit() or int(text) != cert.serial_number):
                raise SignatureInvalid("SigningCertificate's IssuerSerial names another serial number")
            return
    raise SignatureInvalid("SigningCertificate does not name the signer's certificate (its digest differs)")


@dataclass(frozen=True, slots=True)
class StampInput:
    token: bytes  # the DER TimeStampToken of EncapsulatedTimeStamp
    c14n_method: str  # how ds:SignatureValue is canonicalized into the stamped octets


def read_timestamp(timestamp: etree._Element) -> StampInput:
    """The token and canonicalization of one SignatureTimeStamp, or TIMESTAMP_INVALID."""
    method = C14N
    tokens: list[etree._Element] = []
    for child in child_elements(timestamp):
        if child.tag == ds("CanonicalizationMethod") and not tokens:
            method = child.get("Algorithm") or ""
            if method not in C14N_METHODS:
                raise TimestampInvalid(f"SignatureTimeStamp canonicalization {method[:100]!r} is not accepted")
        elif child.tag == xades("EncapsulatedTimeStamp"):
            tokens.append(child)
        else:
            raise TimestampInvalid(f"SignatureTimeStamp may not hold {etree.QName(child).localname}")
    if len(tokens) != 1:
        raise TimestampInvalid("SignatureTimeStamp must hold exactly one EncapsulatedTimeStamp")
    encoding = tokens[0].get("Encoding")
    if encoding is not None and encoding != DER_ENCODING:
        raise TimestampInvalid(f"EncapsulatedTimeStamp must be DER encoded, not {encoding[:80]!r}")
    token = decode_base64("".join(tokens[0].itertext()))
    if not token:
        raise TimestampInvalid("EncapsulatedTimeStamp is not base64")
    return StampInput(token=token, c14n_method=method)
