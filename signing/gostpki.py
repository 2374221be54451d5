"""GOST 34.10-2015 keys, certificates, CRLs and OCSP responses for test PKIs and the mocks, as NCA RK issues them.

`cryptography` builds X.509 structures but cannot sign with (or hold) a GOST key, so each structure is built by
`cryptography` around a throw-away ECDSA key and then rewritten here: the signature AlgorithmIdentifier becomes
NCA's GOST one (1.2.398.3.10.1.1.2.3.2 for 512-bit issuers, .3.1 for 256-bit ones, with NULL parameters as on
NCA's certificates), the SubjectPublicKeyInfo becomes the GOST key (NCA's OIDs, X || Y little-endian), and the
signature is made by `signing.gost` over the rewritten tbs (r || s, little-endian). Key identifiers (SKI, AKI)
are the SHA-1 of the GOST key's BIT STRING, given to the builder explicitly.

A GOST private key is written as PEM "LICGATE GOST PRIVATE KEY": DER SEQUENCE { curve OID, INTEGER d }. It is a
test-PKI format of this project, not an interchange format.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from signing import der, gost
from signing.gost.certificate import encode_oid
from signing.gost.curves import Curve

PEM_LABEL = "LICGATE GOST PRIVATE KEY"
_PEM = re.compile(rb"-----BEGIN " + PEM_LABEL.encode() + rb"-----\s*(.+?)\s*-----END " + PEM_LABEL.encode()
                  + rb"-----", re.S)
# NCA's certificate signature algorithms by the issuer's key size.
SIGNATURE_OIDS = {512: "1.2.398.3.10.1.1.2.3.2", 256: "1.2.398.3.10.1.1.2.3.1"}
NCA_CURVES = {512: "1.2.398.3.10.1.1.2.2.1", 256: "1.2.398.3.10.1.1.2.1.1"}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _tlv(der.INTEGER, body)


@dataclass(frozen=True)
class GostPrivateKey:
    """A GOST R 34.10-2015 private key d on `curve`."""

    curve: Curve
    d: int

    @classmethod
    def generate(cls, bits: int = 512) -> GostPrivateKey:
        curve = gost.curve_for_oid(NCA_CURVES[bits])
        return cls(curve, gost.generate_private_key(curve))

    @property
    def bits(self) -> int:
        return self.curve.bits

    @property
    def public_key(self) -> bytes:
        """X || Y, little-endian."""
        return _public_key(self.curve, self.d)

    def spki(self) -> bytes:
        return gost.encode_spki(self.curve, self.public_key)

    def key_identifier(self) -> bytes:
        """SHA-1 of the subjectPublicKey BIT STRING's contents (RFC 5280 method 1)."""
        return hashlib.sha1(_tlv(der.OCTET_STRING, self.public_key)).digest()  # noqa: S324 - an identifier

    def sign(self, data: bytes) -> bytes:
        """r || s, little-endian, over Streebog of `data` (the size of the key)."""
        return gost.sign(self.curve, self.d, gost.hash_streebog(self.bits, data))

    def pem(self) -> bytes:
        oid = NCA_CURVES[self.bits]
        body = base64.encodebytes(_tlv(der.SEQUENCE, encode_oid(oid) + _integer(self.d))).replace(b"\n", b"")
        lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        label = PEM_LABEL.encode()
        return b"-----BEGIN " + label + b"-----\n" + lines + b"\n-----END " + label + b"-----\n"


@lru_cache(maxsize=256)
def _public_key(curve: Curve, d: int) -> bytes:
    return gost.public_key(curve, d)


def is_gost_key(pem: bytes) -> bool:
    return _PEM.search(pem) is not None


def load_gost_key(pem: bytes) -> GostPrivateKey:
    found = _PEM.search(pem)
    if found is None:
        raise ValueError(f"not a {PEM_LABEL}")
    root = der.parse(base64.b64decode(found.group(1))).expect(der.SEQUENCE, "GOST key").children()
    if len(root) != 2:
        raise ValueError(f"a {PEM_LABEL} is SEQUENCE {{ curve OID, INTEGER d }}")
    return GostPrivateKey(gost.curve_for_oid(root[0].oid()), root[1].integer())


@lru_cache(maxsize=1)
def _placeholder() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def placeholder_public_key() -> ec.EllipticCurvePublicKey:
    """The key to hand a cryptography builder in place of the GOST key (replaced before signing)."""
    return _placeholder().public_key()


def _algorithm(bits: int) -> bytes:
    return _tlv(der.SEQUENCE, encode_oid(SIGNATURE_OIDS[bits]) + _tlv(der.NULL, b""))


def _signed(tbs: bytes, issuer: GostPrivateKey) -> bytes:
    """SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature } (certificates, CRLs, BasicOCSPResponse)."""
    return _tlv(der.SEQUENCE, tbs + _algorithm(issuer.bits) + _tlv(0x03, b"\x00" + issuer.sign(tbs)))


def sign_certificate(builder: x509.CertificateBuilder, subject_spki: bytes, issuer: GostPrivateKey) -> x509.Certificate:
    """The certificate `builder` describes (built around `placeholder_public_key()`), with `subject_spki` as its
    key, signed by the GOST key `issuer`."""
    draft = builder.sign(_placeholder(), hashes.SHA256())
    fields = der.parse(draft.tbs_certificate_bytes).children()
    offset = 1 if fields[0].tag == 0xA0 else 0
    raws = [f.raw for f in fields]
    raws[offset + 1] = _algorithm(issuer.bits)  # signature
    raws[offset + 5] = subject_spki  # subjectPublicKeyInfo
    tbs = _tlv(der.SEQUENCE, b"".join(raws))
    return x509.load_der_x509_certificate(_signed(tbs, issuer))


def sign_crl(builder: x509.CertificateRevocationListBuilder, issuer: GostPrivateKey) -> bytes:
    """The DER CRL `builder` describes, signed by the GOST key `issuer`."""
    draft = builder.sign(_placeholder(), hashes.SHA256())
    fields = der.parse(draft.tbs_certlist_bytes).children()
    offset = 1 if fields[0].tag == der.INTEGER else 0
    raws = [f.raw for f in fields]
    raws[offset] = _algorithm(issuer.bits)
    return _signed(_tlv(der.SEQUENCE, b"".join(raws)), issuer)


def sign_ocsp_response(builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate,
                       responder_key: GostPrivateKey) -> bytes:
    """The DER OCSPResponse `builder` describes (its single responses; no responder set yet), by the GOST
    responder certificate `responder` (named by its name, and included), signed with `responder_key`."""
    # cryptography wants a responder certificate whose key it can use: one of the same name stands in.
    stand_in = (x509.CertificateBuilder().subject_name(responder.subject).issuer_name(responder.subject)
                .public_key(placeholder_public_key()).serial_number(1)
                .not_valid_before(responder.not_valid_before_utc).not_valid_after(responder.not_valid_after_utc)
                .sign(_placeholder(), hashes.SHA256()))
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, stand_in).certificates([stand_in])
    draft = builder.sign(_placeholder(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    status, wrapped = der.parse(draft).children()
    (response_bytes,) = wrapped.children()
    kind, octets = response_bytes.children()
    basic = der.parse(octets.value).children()  # tbsResponseData, signatureAlgorithm, signature, [0] certs
    tbs = basic[0].raw
    certs = _tlv(0xA0, _tlv(der.SEQUENCE, responder.public_bytes(serialization.Encoding.DER)))
    signed = _tlv(der.SEQUENCE, tbs + _algorithm(responder_key.bits)
                  + _tlv(0x03, b"\x00" + responder_key.sign(tbs)) + certs)
    response_bytes_der = _tlv(der.SEQUENCE, kind.raw + _tlv(der.OCTET_STRING, signed))
    return _tlv(der.SEQUENCE, status.raw + _tlv(0xA0, response_bytes_der))
