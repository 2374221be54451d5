"""GOST keys and signatures inside X.509: the public key of a certificate, and the signature on a certificate,
CRL or OCSP response.

`cryptography` parses GOST certificates but not their keys, so the SubjectPublicKeyInfo is read here from
the tbsCertificate with a minimal DER reader:

    SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE { OID, SEQUENCE { curve OID, digest OID? } },
                                        subjectPublicKey BIT STRING (an OCTET STRING: X || Y, little-endian) }

NCA's certificates sign with r || s, each little-endian, as the signature BIT STRING (the order of the
XMLDSig SignatureValue; checked on NCA's GOST 2022 test root, intermediate and a user certificate).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from signing.gost.curves import (
    DIGEST_ALGORITHMS,
    KEY_ALGORITHMS,
    LEGACY_KEY_ALGORITHMS,
    SIGNATURE_ALGORITHMS,
    Curve,
    UnknownCurve,
    curve_for_oid,
)
from signing.gost.signature import check_public_key, verify
from signing.gost.streebog import hash_streebog

__all__ = ["UnsupportedKey", "CertificateKey", "public_key_from_certificate", "public_key_from_spki",
           "verify_signed_data", "verify_certificate_signature", "encode_spki"]


class UnsupportedKey(ValueError):
    """A certificate whose key is not a GOST R 34.10-2012/2015 key this package can use."""


@dataclass(frozen=True)
class CertificateKey:
    """A GOST public key as a certificate carries it: its curve, X || Y little-endian, and OIDs."""

    curve: Curve
    public_key: bytes
    algorithm_oid: str
    digest_oid: str | None

    @property
    def bits(self) -> int:
        return self.curve.bits


# --- a minimal DER reader (definite lengths only, as DER requires) -----------------------------------------

def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the element at `offset`."""
    if offset + 2 > len(data):
        raise UnsupportedKey("truncated DER")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(data):
            raise UnsupportedKey("bad DER length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise UnsupportedKey("truncated DER")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, offset, start of contents, end) of each element between `start` and `end`."""
    out = []
    while start < end:
        tag, c_start, c_end = _tlv(data, start)
        out.append((tag, start, c_start, c_end))
        start = c_end
    if start != end:
        raise UnsupportedKey("bad DER nesting")
    return out


def _oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise UnsupportedKey("bad OID")
    arcs, value = [], 0
    for byte in content:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def encode_oid(oid: str) -> bytes:
    """An OBJECT IDENTIFIER, DER-encoded with its tag and length."""
    arcs = [int(a) for a in oid.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(arc & 0x7F | 0x80)
            arc >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


_SEQUENCE, _OID, _BIT_STRING, _OCTET_STRING = 0x30, 0x06, 0x03, 0x04


def public_key_from_spki(spki: bytes) -> CertificateKey:
    """Decode and validate a DER SubjectPublicKeyInfo holding a GOST R 34.10-2012/2015 key."""
    tag, start, end = _tlv(spki, 0)
    parts = _children(spki, start, end) if tag == _SEQUENCE and end == len(spki) else []
    if len(parts) != 2 or parts[0][0] != _SEQUENCE or parts[1][0] != _BIT_STRING:
        raise UnsupportedKey("not a SubjectPublicKeyInfo")
    algorithm = _children(spki, parts[0][2], parts[0][3])
    if not algorithm or algorithm[0][0] != _OID:
        raise UnsupportedKey("no key algorithm")
    key_oid = _oid(spki[algorithm[0][2]:algorithm[0][3]])
    if key_oid in LEGACY_KEY_ALGORITHMS:
        raise UnsupportedKey(f"{LEGACY_KEY_ALGORITHMS[key_oid]} keys ({key_oid}) are retired and not supported")
    bits = KEY_ALGORITHMS.get(key_oid)
    if bits is None:
        raise UnsupportedKey(f"{key_oid} is not a GOST R 34.10-2012/2015 key algorithm")
    if len(algorithm) < 2 or algorithm[1][0] != _SEQUENCE:
        raise UnsupportedKey("a GOST key must name its curve in its parameters")
    params = [spki[c_start:c_end] for tag, _, c_start, c_end in _children(spki, algorithm[1][2], algorithm[1][3])
              if tag == _OID]
    if not params:
        raise UnsupportedKey("bad GOST key parameters")
    try:
        curve = curve_for_oid(_oid(params[0]))
    except UnknownCurve as exc:
        raise UnsupportedKey(str(exc)) from None
    if curve.bits != bits:
        raise UnsupportedKey(f"a {bits}-bit key algorithm with the {curve.bits}-bit curve {curve.name}")
    digest_oid = _oid(params[1]) if len(params) > 1 else None
    if digest_oid is not None and DIGEST_ALGORITHMS.get(digest_oid) != bits:
        raise UnsupportedKey(f"digest {digest_oid} does not go with a {bits}-bit GOST key")
    bit_string = spki[parts[1][2]:parts[1][3]]
    if not bit_string or bit_string[0] != 0:
        raise UnsupportedKey("bad public key BIT STRING")
    tag, start, end = _tlv(bit_string, 1)
    if tag != _OCTET_STRING or end != len(bit_string):
        raise UnsupportedKey("a GOST public key is an OCTET STRING inside the BIT STRING")
    public_key = bit_string[start:end]
    check_public_key(curve, public_key)
    return CertificateKey(curve, public_key, key_oid, digest_oid)


def _spki_of(tbs: bytes) -> bytes:
    tag, start, end = _tlv(tbs, 0)
    fields = _children(tbs, start, end) if tag == _SEQUENCE else []
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(fields) < 6 or fields[5][0] != _SEQUENCE:
        raise UnsupportedKey("not a tbsCertificate")
    _, offset, _, end = fields[5]
    return tbs[offset:end]


def _certificate(certificate: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    return x509.load_der_x509_certificate(bytes(certificate))


def public_key_from_certificate(certificate: bytes | x509.Certificate) -> CertificateKey:
    """The GOST public key of a certificate (DER bytes or a `cryptography` certificate).

    Raises UnsupportedKey when the key is not GOST R 34.10-2012/2015 (an RSA key, a retired GOST
    34.310-2004 key, an unknown curve), InvalidKey when the point is not a valid key (both are ValueErrors,
    as is `cryptography`'s error for bytes that are not a DER certificate)."""
    return public_key_from_spki(_spki_of(_certificate(certificate).tbs_certificate_bytes))


def verify_signed_data(key: CertificateKey, algorithm_oid: str, data: bytes, signature: bytes) -> bool:
    """Whether `signature` (an X.509 signature BIT STRING's bytes: r || s, little-endian) over `data` (a
    tbsCertificate, tbsCertList or tbsResponseData) is valid for `key` under `algorithm_oid`.

    False also when the algorithm is not a GOST signature algorithm or its size does not match the key's
    (a 256-bit signature method with a 512-bit key is simply not a valid signature by that key)."""
    bits = SIGNATURE_ALGORITHMS.get(algorithm_oid)
    if bits is None or bits != key.bits:
        return False
    return verify(key.curve, key.public_key, hash_streebog(bits, data), signature)


def verify_certificate_signature(certificate: bytes | x509.Certificate, issuer: CertificateKey) -> bool:
    """Whether `certificate` carries a valid GOST signature by `issuer`'s key."""
    cert = _certificate(certificate)
    return verify_signed_data(issuer, cert.signature_algorithm_oid.dotted_string, cert.tbs_certificate_bytes,
                              cert.signature)


def encode_spki(curve: Curve, public_key: bytes, *, nca: bool = True) -> bytes:
    """The DER SubjectPublicKeyInfo for a GOST key, with NCA's OIDs (or the standard 1.2.643.* ones), for
    building test certificates."""
    check_public_key(curve, public_key)
    family = "1.2.398." if nca else "1.2.643."
    key_oid = next(oid for oid, bits in KEY_ALGORITHMS.items() if bits == curve.bits and oid.startswith(family))
    digest_oid = next(oid for oid, bits in DIGEST_ALGORITHMS.items()
                      if bits == curve.bits and oid.startswith(family))
    curve_oid = next((oid for oid in curve.oids if oid.startswith(family)), None)
    if curve_oid is None:
        raise UnsupportedKey(f"{curve.name} has no OID under {family}*")
    algorithm = _der(_SEQUENCE, encode_oid(key_oid) + _der(_SEQUENCE, encode_oid(curve_oid)
                                                             + encode_oid(digest_oid)))
    return _der(_SEQUENCE, algorithm + _der(_BIT_STRING, b"\x00" + _der(_OCTET_STRING, bytes(public_key))))
