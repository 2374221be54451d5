"""RFC 3161 timestamp tokens: parse one, verify it, and say when it proves the data existed (docs/signing.md).

A token is a CMS SignedData (RFC 5652) whose content is a TSTInfo. It proves `genTime` when:
- it parses (DER, `signing.der`) with exactly one SignerInfo, signed attributes whose contentType is id-ct-TSTInfo and
  whose messageDigest is the hash of the TSTInfo, and an ESS signing-certificate attribute naming the
  TSA's certificate;
- the signature over the signed attributes verifies with the TSA's certificate, through the provider
  registry (`signing.providers`), so a GOST TSA plugs in with the GOST provider;
- the TSA's certificate carries the timeStamping extended key usage, alone and critical (RFC 3161 2.3),
  and chains to a certificate pinned in `trust.tsa_dir` with every certificate of the path valid at
  `genTime`, and it was not revoked at `genTime` (keyCompromise and caCompromise at any date);
- its message imprint is the hash of the timestamped data, and `genTime` is not more than
  `FUTURE_TOLERANCE` after the moment of reception.
Any failure is TIMESTAMP_INVALID, except an algorithm no installed provider implements (ALGORITHM_UNSUPPORTED)
and a TSA certificate whose revocation status cannot be learnt now (CERT_STATUS_UNKNOWN: try again later).

CMS algorithms are named by OIDs; they are mapped here to the XMLDSig URIs the registry is keyed by.
A provider of other algorithms adds its OIDs with `register_cms_algorithm`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.errors import CertExpired, CertificateError, CertNotYetValid, CertRevoked, TimestampInvalid
from signing import der, providers
from signing.providers import ProviderRegistry
from signing.trust import TrustStore, load_certificates, load_der_certificate

FUTURE_TOLERANCE = timedelta(minutes=5)  # genTime may be this much after reception (clocks differ), no more

# Digest OIDs -> the registry's digest URIs.
DIGEST_OIDS: dict[str, str] = {
    "2.16.840.1.101.3.4.2.1": providers.SHA256,
    "2.16.840.1.101.3.4.2.2": providers.SHA384,
    "2.16.840.1.101.3.4.2.3": providers.SHA512,
    "1.2.398.3.10.1.3.3": providers.GOST2015_512_DIGEST,
    "1.2.398.3.10.1.3.2": providers.GOST2015_256_DIGEST,
}
# (signature algorithm OID, digest URI or None for "any") -> the registry's signature URI. rsaEncryption
# names the key only: the digest algorithm of the SignerInfo completes it.
_RSA = "1.2.840.113549.1.1.1"
_SIGNATURE_OIDS: dict[tuple[str, str | None], str] = {
    (_RSA, providers.SHA256): providers.RSA_SHA256,
    (_RSA, providers.SHA384): providers.RSA_SHA384,
    (_RSA, providers.SHA512): providers.RSA_SHA512,
    ("1.2.840.113549.1.1.11", None): providers.RSA_SHA256,
    ("1.2.840.113549.1.1.12", None): providers.RSA_SHA384,
    ("1.2.840.113549.1.1.13", None): providers.RSA_SHA512,
    ("1.2.840.10045.4.3.2", None): providers.ECDSA_SHA256,
    ("1.2.840.10045.4.3.3", None): providers.ECDSA_SHA384,
    ("1.2.840.10045.4.3.4", None): providers.ECDSA_SHA512,
    ("1.2.398.3.10.1.1.2.3.2", None): providers.GOST2015_512_SIGNATURE,
    ("1.2.398.3.10.1.1.2.3.1", None): providers.GOST2015_256_SIGNATURE,
}
_ECDSA_URIS = frozenset({providers.ECDSA_SHA256, providers.ECDSA_SHA384, providers.ECDSA_SHA512})


def register_cms_algorithm(signature_oid: str, uri: str, *, digest_uri: str | None = None) -> None:
    """Map a CMS signature algorithm OID (with a digest URI when the OID names the key only) to a registry URI."""
    _SIGNATURE_OIDS[(signature_oid, digest_uri)] = uri


def register_cms_digest(oid: str, uri: str) -> None:
    DIGEST_OIDS[oid] = uri


def _invalid(reason: str) -> TimestampInvalid:
    return TimestampInvalid(reason)


@dataclass(frozen=True, slots=True)
class TimeStamp:
    """What a verified token proves: the data's imprint existed at `gen_time`, said by `tsa`."""

    gen_time: datetime
    imprint_method: str  # digest URI
    imprint: bytes
    serial_number: int
    policy: str
    tsa: x509.Certificate


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The parts of a token the checks read; byte strings are as they came."""

    tst_bytes: bytes  # the TSTInfo's DER: what messageDigest is the hash of
    version: int
    policy: str
    imprint_oid: str
    imprint: bytes
    serial_number: int
    gen_time: datetime
    sid: tuple[int, bytes] | bytes  # (serial, issuer's Name DER) or a subject key identifier
    digest_oid: str
    signed_attributes: bytes  # their DER as the SET OF the signature covers (RFC 5652 5.4)
    attributes: dict[str, list[list[der.Element]]]  # attribute type -> the value sets of each instance
    signature_oid: str
    signature: bytes
    certificates: tuple[x509.Certificate, ...]


_SIGNED_DATA = "1.2.840.113549.1.7.2"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"


def parse_token(token: bytes) -> _Parsed:
    """The parts of a TimeStampToken (a ContentInfo), or TIMESTAMP_INVALID saying what is wrong."""
    try:
        return _parse(token)
    except der.DerError as exc:
        raise _invalid(f"the token does not parse: {exc}") from None


def _parse(token: bytes) -> _Parsed:
    content_info = der.parse(token).expect(der.SEQUENCE, "ContentInfo").children()
    if len(content_info) != 2 or content_info[0].oid() != _SIGNED_DATA or content_info[1].tag != 0xA0:
        raise _invalid("the token is not a CMS SignedData")
    (signed_data,) = _exactly(content_info[1].children(), 1, "SignedData")
    parts = signed_data.expect(der.SEQUENCE, "SignedData").children()
    if len(parts) < 4:
        raise der.DerError("SignedData is incomplete")
    parts[1].expect(der.SET, "digestAlgorithms")
    encap = parts[2].expect(der.SEQUENCE, "encapContentInfo").children()
    if len(encap) != 2 or encap[0].oid() != _TST_INFO or encap[1].tag != 0xA0:
        raise _invalid("the token's content is not a TSTInfo (id-ct-TSTInfo)")
    (octets,) = _exactly(encap[1].children(), 1, "eContent")
    tst_bytes = octets.octets()
    certificates: list[x509.Certificate] = []
    rest = parts[3:]
    if rest[0].tag == 0xA0:
        for choice in rest[0].children():
            if choice.tag == der.SEQUENCE:  # a Certificate; other choices (attribute certificates) are skipped
                certificates.append(_certificate(choice.raw))
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:  # CRLs: not read
        rest = rest[1:]
    if len(rest) != 1:
        raise der.DerError("SignedData has elements after its signerInfos")
    signer_infos = rest[0].expect(der.SET, "signerInfos").children()
    if len(signer_infos) != 1:
        raise _invalid(f"the token has {len(signer_infos)} SignerInfos, exactly one is required")
    info = signer_infos[0].expect(der.SEQUENCE, "SignerInfo").children()
    if len(info) < 5:
        raise der.DerError("SignerInfo is incomplete")
    sid_element = info[1]
    sid: tuple[int, bytes] | bytes
    if sid_element.tag == der.SEQUENCE:
        name, number = _exactly(sid_element.children(), 2, "issuerAndSerialNumber")
        sid = (number.integer(), name.expect(der.SEQUENCE, "issuer").raw)
    elif sid_element.tag == 0x80:
        sid = sid_element.value
    else:
        raise der.DerError("SignerInfo's sid is neither issuerAndSerialNumber nor a subject key identifier")
    digest_oid = info[2].expect(der.SEQUENCE, "digestAlgorithm").children()[0].oid()
    if info[3].tag != 0xA0:
        raise _invalid("the token's SignerInfo has no signed attributes")
    attrs = info[3]
    attributes: dict[str, list[list[der.Element]]] = {}
    for attribute in attrs.children():
        kind, values = _exactly(attribute.expect(der.SEQUENCE, "Attribute").children(), 2, "Attribute")
        attributes.setdefault(kind.oid(), []).append(values.expect(der.SET, "AttributeValues").children())
    signature_algorithm = info[4].expect(der.SEQUENCE, "signatureAlgorithm").children()[0].oid()
    signature = info[5].octets() if len(info) > 5 else b""
    if len(info) not in (6, 7) or (len(info) == 7 and info[6].tag != 0xA1):
        raise der.DerError("SignerInfo has unexpected elements")

    tst = der.parse(tst_bytes).expect(der.SEQUENCE, "TSTInfo").children()
    if len(tst) < 5:
        raise der.DerError("TSTInfo is incomplete")
    imprint_algorithm, imprint = _exactly(tst[2].expect(der.SEQUENCE, "messageImprint").children(), 2,
                                          "messageImprint")
    return _Parsed(
        tst_bytes=tst_bytes, version=tst[0].integer(), policy=tst[1].oid(),
        imprint_oid=imprint_algorithm.expect(der.SEQUENCE, "hashAlgorithm").children()[0].oid(),
        imprint=imprint.octets(), serial_number=tst[3].integer(), gen_time=tst[4].generalized_time(),
        sid=sid, digest_oid=digest_oid,
        # The signature covers the attributes' DER with the SET OF tag, not their [0] tag (RFC 5652 5.4).
        signed_attributes=b"\x31" + attrs.raw[1:], attributes=attributes,
        signature_oid=signature_algorithm, signature=signature, certificates=tuple(certificates),
    )


@lru_cache(maxsize=64)  # tokens of one TSA carry the same certificate: parsed once
def _certificate(data: bytes) -> x509.Certificate:
    try:
        return load_der_certificate(data)
    except ValueError:
        raise der.DerError("a certificate in the token does not parse") from None


@lru_cache(maxsize=64)
def _der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _exactly(elements: list[der.Element], count: int, what: str) -> list[der.Element]:
    if len(elements) != count:
        raise der.DerError(f"{what} has {len(elements)} elements, {count} expected")
    return elements


class TsaTrust:
    """The pinned TSA certificates of `trust.tsa_dir`: a TSA is trusted when its certificate is one of them,
    or chains to a root among them (intermediates taken from the same directory)."""

    def __init__(self, tsa_dir: Path) -> None:
        self.tsa_dir = Path(tsa_dir)
        pinned: list[x509.Certificate] = []
        for path in sorted(self.tsa_dir.iterdir()) if self.tsa_dir.is_dir() else ():
            if path.is_file() and not path.name.startswith("."):
                try:
                    pinned.extend(load_certificates(path.read_bytes()))
                except ValueError:
                    continue
        if not pinned:
            raise ValueError(f"no certificate in {self.tsa_dir}")
        self.certificates = tuple(pinned)
        self._pinned = {c.public_bytes(serialization.Encoding.DER) for c in pinned}
        try:
            self._store: TrustStore | None = TrustStore(self.tsa_dir)
        except ValueError:  # no root there: only the certificates themselves are trusted
            self._store = None

    def path(self, cert: x509.Certificate, at: datetime) -> tuple[x509.Certificate, ...]:
        """The TSA certificate's path valid at `at` (leaf first), or TIMESTAMP_INVALID."""
        try:
            if self._store is not None:
                return self._store.validate(cert, at)
        except CertificateError as exc:
            if cert.public_bytes(serialization.Encoding.DER) not in self._pinned:
                raise _invalid(f"the TSA certificate is not trusted at genTime: {exc.data}") from None
        if cert.public_bytes(serialization.Encoding.DER) not in self._pinned:
            raise _invalid(f"the TSA certificate ({cert.subject.rfc4514_string()[:120]}) is not in trust.tsa_dir")
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise _invalid("the TSA certificate was not valid at genTime")
        return (cert,)



def _key_id(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


RevocationJudge = Callable[[x509.Certificate, x509.Certificate, datetime], None]


class TimestampVerifier:
    """Verifies tokens against the TSAs of one `tsa_dir`; `revocation(cert, issuer, gen_time)` raises
    CertRevoked / CertStatusUnknown for the TSA certificate (None: revocation is off)."""

    def __init__(self, trust: TsaTrust, registry: ProviderRegistry, *,
                 revocation: RevocationJudge | None = None) -> None:
        self.trust = trust
        self.registry = registry
        self.revocation = revocation

    def verify(self, token: bytes, data: bytes, received_at: datetime) -> TimeStamp:
        """Verify `token` as a timestamp over `data` received at `received_at` (see the module docstring)."""
        parsed = parse_token(token)
        if parsed.version != 1:
            raise _invalid(f"TSTInfo version {parsed.version}, not 1")
        tsa = self._tsa_certificate(parsed)
        digest_method = self._digest_method(parsed.digest_oid)
        try:
            self._check_signed_attributes(parsed, digest_method, tsa)
        except der.DerError as exc:
            raise _invalid(f"the token's signed attributes do not parse: {exc}") from None
        self._check_signature(parsed, digest_method, tsa)
        imprint_method = self._digest_method(parsed.imprint_oid)
        if not hmac.compare_digest(self.registry.digest(imprint_method, data), parsed.imprint):
            raise _invalid("the token's message imprint is not the hash of this signature's SignatureValue")
        gen_time = parsed.gen_time
        if gen_time > received_at + FUTURE_TOLERANCE:
            raise _invalid(f"genTime {gen_time.isoformat()} is more than {FUTURE_TOLERANCE} after reception "
                           f"({received_at.isoformat()})")
        self._check_tsa(tsa, gen_time)
        return TimeStamp(gen_time=gen_time, imprint_method=imprint_method, imprint=parsed.imprint,
                         serial_number=parsed.serial_number, policy=parsed.policy, tsa=tsa)

    def _digest_method(self, oid: str) -> str:
        uri = DIGEST_OIDS.get(oid)
        if uri is None:
            raise _invalid(f"digest algorithm {oid} is not known")
        self.registry.digest_provider(uri)  # ALGORITHM_UNSUPPORTED when no provider implements it
        return uri

    def _tsa_certificate(self, parsed: _Parsed) -> x509.Certificate:
        for cert in (*parsed.certificates, *self.trust.certificates):
            if isinstance(parsed.sid, bytes):
                if _key_id(cert) == parsed.sid:
                    return cert
            elif cert.serial_number == parsed.sid[0] and cert.issuer.public_bytes() == parsed.sid[1]:
                return cert
        raise _invalid("the token names a TSA certificate that is neither in the token nor in trust.tsa_dir")

    def _check_signed_attributes(self, parsed: _Parsed, digest_method: str, tsa: x509.Certificate) -> None:
        found = parsed.attributes
        content_type = found.get("1.2.840.113549.1.9.3")
        if not content_type or len(content_type) != 1 or len(content_type[0]) != 1 \
                or content_type[0][0].oid() != _TST_INFO:
            raise _invalid("the signed contentType attribute is not id-ct-TSTInfo")
        digests = found.get("1.2.840.113549.1.9.4")
        if not digests or len(digests) != 1 or len(digests[0]) != 1:
            raise _invalid("the token has no single messageDigest attribute")
        if not hmac.compare_digest(digests[0][0].octets(), self.registry.digest(digest_method, parsed.tst_bytes)):
            raise _invalid("the messageDigest attribute is not the hash of the TSTInfo (the token was altered)")
        v1 = found.get("1.2.840.113549.1.9.16.2.12")
        v2 = found.get("1.2.840.113549.1.9.16.2.47")
        if not v1 and not v2:
            raise _invalid("the token has no ESS signing-certificate attribute naming the TSA certificate")
        cert_der = _der_of(tsa)
        # SigningCertificate(V2) ::= SEQUENCE { certs SEQUENCE OF ESSCertID(v2), policies OPTIONAL }
        holder = (v2 or v1)[0][0].expect(der.SEQUENCE, "SigningCertificate").children()  # type: ignore[index]
        first = holder[0].expect(der.SEQUENCE, "certs").children()[0].expect(der.SEQUENCE, "ESSCertID").children()
        if v2:
            # ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash OCTET STRING, issuerSerial OPT }
            method = providers.SHA256
            if first[0].tag == der.SEQUENCE:
                method = self._digest_method(first[0].children()[0].oid())
                first = first[1:]
            expected = self.registry.digest(method, cert_der)
        else:
            expected = hashlib.sha1(cert_der, usedforsecurity=False).digest()
        if not hmac.compare_digest(first[0].octets(), expected):
            raise _invalid("the ESS signing-certificate attribute names another certificate than the signer's")

    def _check_signature(self, parsed: _Parsed, digest_method: str, tsa: x509.Certificate) -> None:
        algorithm = parsed.signature_oid
        method = _SIGNATURE_OIDS.get((algorithm, None)) or _SIGNATURE_OIDS.get((algorithm, digest_method))
        if method is None:
            raise _invalid(f"signature algorithm {algorithm} (with {digest_method}) is not known")
        self.registry.signature_provider(method)
        signature = parsed.signature
        if method in _ECDSA_URIS:
            signature = _ecdsa_raw(signature, tsa)
            if signature is None:
                raise _invalid("the token's ECDSA signature is not a DER (r, s) pair")
        if not self.registry.verify(method, tsa, signature, parsed.signed_attributes):
            raise _invalid("the token's signature does not verify with the TSA certificate")

    def _check_tsa(self, tsa: x509.Certificate, gen_time: datetime) -> None:
        try:
            eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            raise _invalid("the TSA certificate has no extended key usage (timeStamping required)") from None
        if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
            raise _invalid("the TSA certificate's extended key usage must be timeStamping alone, marked critical")
        chain = self.trust.path(tsa, gen_time)
        if self.revocation is not None and len(chain) > 1:
            try:
                self.revocation(tsa, chain[1], gen_time)
            except CertRevoked as exc:
                raise _invalid(f"the TSA certificate is revoked: {exc.data}") from None
            except (CertExpired, CertNotYetValid) as exc:
                raise _invalid(f"the TSA certificate: {exc.data}") from None


def _ecdsa_raw(signature: bytes, cert: x509.Certificate) -> bytes | None:
    """A DER ECDSA signature as r || s (the XMLDSig form the registry's ECDSA methods take)."""
    try:
        r, s = decode_dss_signature(signature)
        size = (cert.public_key().key_size + 7) // 8  # type: ignore[union-attr]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    except (ValueError, AttributeError, OverflowError):
        return None
