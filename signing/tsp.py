"""RFC 3161 timestamp tokens: parse one, verify it, and say when it proves the data existed (docs/signing.md).

A token is a CMS SignedData (RFC 5652) whose content is a TSTInfo. It proves `genTime` when:
- it parses (DER) with exactly one SignerInfo, signed attributes whose contentType is id-ct-TSTInfo and
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
from pathlib import Path

from asn1crypto import cms, core
from asn1crypto import tsp as asn1_tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.errors import CertExpired, CertificateError, CertNotYetValid, CertRevoked, TimestampInvalid
from signing import providers
from signing.providers import ProviderRegistry
from signing.trust import TrustStore, load_certificates

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
_SHA1 = "1.3.14.3.2.26"  # ESS signing-certificate (v1) names the certificate by its SHA-1: an identifier only


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
    tst_info: asn1_tsp.TSTInfo
    tst_bytes: bytes
    signer_info: cms.SignerInfo
    certificates: tuple[x509.Certificate, ...]


def parse_token(der: bytes) -> _Parsed:
    """The parts of a TimeStampToken (a ContentInfo), or TIMESTAMP_INVALID saying what is wrong."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise _invalid(f"the token is a {info['content_type'].native}, not a CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].dotted != "1.2.840.113549.1.9.16.1.4":
            raise _invalid("the token's content is not a TSTInfo (id-ct-TSTInfo)")
        content = encap["content"]
        if content is None or isinstance(content, core.Void):
            raise _invalid("the token carries no TSTInfo")
        tst_bytes = content.contents
        tst_info = asn1_tsp.TSTInfo.load(tst_bytes, strict=True)
        tst_info.native  # noqa: B018 - parses every field now, so a broken one is refused here
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise _invalid(f"the token has {len(signer_infos)} SignerInfos, exactly one is required")
        certificates = []
        for choice in signed["certificates"] or []:
            if choice.name == "certificate":
                certificates.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        return _Parsed(tst_info, tst_bytes, signer_infos[0], tuple(certificates))
    except TimestampInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise _invalid(f"the token does not parse: {str(exc)[:160]}") from None


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
        tst = parsed.tst_info
        if tst["version"].native != "v1":
            raise _invalid(f"TSTInfo version {tst['version'].native}, not v1")
        gen_time: datetime = tst["gen_time"].native
        if gen_time.tzinfo is None:
            raise _invalid("genTime has no time zone")
        signer_info = parsed.signer_info
        tsa = self._tsa_certificate(parsed)
        digest_method = self._digest_method(signer_info["digest_algorithm"]["algorithm"].dotted)
        self._check_signed_attributes(parsed, digest_method, tsa)
        self._check_signature(signer_info, digest_method, tsa)
        imprint = tst["message_imprint"]
        imprint_method = self._digest_method(imprint["hash_algorithm"]["algorithm"].dotted)
        if not hmac.compare_digest(self.registry.digest(imprint_method, data), imprint["hashed_message"].native):
            raise _invalid("the token's message imprint is not the hash of this signature's SignatureValue")
        if gen_time > received_at + FUTURE_TOLERANCE:
            raise _invalid(f"genTime {gen_time.isoformat()} is more than {FUTURE_TOLERANCE} after reception "
                           f"({received_at.isoformat()})")
        self._check_tsa(tsa, gen_time)
        return TimeStamp(gen_time=gen_time, imprint_method=imprint_method, imprint=imprint["hashed_message"].native,
                         serial_number=tst["serial_number"].native, policy=tst["policy"].dotted, tsa=tsa)

    def _digest_method(self, oid: str) -> str:
        uri = DIGEST_OIDS.get(oid)
        if uri is None:
            raise _invalid(f"digest algorithm {oid} is not known")
        self.registry.digest_provider(uri)  # ALGORITHM_UNSUPPORTED when no provider implements it
        return uri

    def _tsa_certificate(self, parsed: _Parsed) -> x509.Certificate:
        sid = parsed.signer_info["sid"]
        if sid.name == "issuer_and_serial_number":
            serial, issuer_der, key_id = sid.chosen["serial_number"].native, sid.chosen["issuer"].dump(), None
        else:
            serial, issuer_der, key_id = None, None, sid.chosen.native
        for cert in (*parsed.certificates, *self.trust.certificates):
            if key_id is not None:
                if _key_id(cert) == key_id:
                    return cert
            elif cert.serial_number == serial and cert.issuer.public_bytes() == issuer_der:
                return cert
        raise _invalid("the token names a TSA certificate that is neither in the token nor in trust.tsa_dir")

    def _check_signed_attributes(self, parsed: _Parsed, digest_method: str, tsa: x509.Certificate) -> None:
        attrs = parsed.signer_info["signed_attrs"]
        if not attrs or isinstance(attrs, core.Void):
            raise _invalid("the token's SignerInfo has no signed attributes")
        found: dict[str, list] = {}
        for attr in attrs:
            found.setdefault(attr["type"].dotted, []).append(attr["values"])
        content_type = found.get("1.2.840.113549.1.9.3")
        if not content_type or len(content_type) != 1 or content_type[0][0].dotted != "1.2.840.113549.1.9.16.1.4":
            raise _invalid("the signed contentType attribute is not id-ct-TSTInfo")
        digests = found.get("1.2.840.113549.1.9.4")
        if not digests or len(digests) != 1 or len(digests[0]) != 1:
            raise _invalid("the token has no single messageDigest attribute")
        if not hmac.compare_digest(digests[0][0].native, self.registry.digest(digest_method, parsed.tst_bytes)):
            raise _invalid("the messageDigest attribute is not the hash of the TSTInfo (the token was altered)")
        v1 = found.get("1.2.840.113549.1.9.16.2.12")
        v2 = found.get("1.2.840.113549.1.9.16.2.47")
        if not v1 and not v2:
            raise _invalid("the token has no ESS signing-certificate attribute naming the TSA certificate")
        der = tsa.public_bytes(serialization.Encoding.DER)
        if v2:
            first = v2[0][0]["certs"][0]
            method = self._digest_method(first["hash_algorithm"]["algorithm"].dotted)
            expected = self.registry.digest(method, der)
        else:
            first = v1[0][0]["certs"][0]
            expected = hashlib.sha1(der, usedforsecurity=False).digest()
        if not hmac.compare_digest(first["cert_hash"].native, expected):
            raise _invalid("the ESS signing-certificate attribute names another certificate than the signer's")

    def _check_signature(self, signer_info: cms.SignerInfo, digest_method: str, tsa: x509.Certificate) -> None:
        algorithm = signer_info["signature_algorithm"]["algorithm"].dotted
        method = _SIGNATURE_OIDS.get((algorithm, None)) or _SIGNATURE_OIDS.get((algorithm, digest_method))
        if method is None:
            raise _invalid(f"signature algorithm {algorithm} (with {digest_method}) is not known")
        self.registry.signature_provider(method)
        # The signature covers the DER of the attributes as a SET OF (RFC 5652 5.4), not their [0] tag.
        signed = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        signature = signer_info["signature"].native
        if method in _ECDSA_URIS:
            signature = _ecdsa_raw(signature, tsa)
            if signature is None:
                raise _invalid("the token's ECDSA signature is not a DER (r, s) pair")
        if not self.registry.verify(method, tsa, signature, signed):
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
