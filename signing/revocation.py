"""Revocation of signers' certificates: CRLs from a directory, or OCSP (docs/signing.md).

A revocation source that cannot answer (no CRL of the issuer, an expired CRL, an OCSP responder that is
down, answers "unknown", or whose answer does not verify) gives CERT_STATUS_UNKNOWN, never "good".

CRLs (`trust.crl_dir`, PEM or DER): each file is read, its signature verified with its issuer's pinned
certificate, and indexed ONCE into a set of revoked serial numbers per issuing CA key (its DN and the pinned
CA certificate's public key that verifies it: two pinned CAs may share a DN across a re-keying), so a lookup
is one set membership test however long the list. A certificate is looked up under the key of the issuer
its validated path goes through. The directory is re-listed at most every `recheck_seconds` and
re-indexed when a file's name, size or mtime changed. Only the leaf is checked: the intermediates are
pinned by the operator in `trust.ca_dir`.

OCSP: the responder from the certificate's AIA (or `trust.ocsp_url`), one request per certificate through
one `httpx.Client` (tests swap its transport). The response's signature is verified, and its signer must be
the issuer itself or a responder certificate the issuer issued for OCSP signing; the answer is cached
until its nextUpdate. A GOOD answer without nextUpdate is believed only while its thisUpdate and producedAt
are at most `max_age` old (`trust.ocsp_max_age_seconds`), and cached no longer than that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.errors import CertRevoked, CertStatusUnknown
from signing.trust import TrustStore

log = logging.getLogger("licgate.signing")

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class _IndexedCrl:
    serials: frozenset[int]
    this_update: datetime
    next_update: datetime | None
    source: str


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN X509 CRL-----" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


class CrlIndex:
    """Revoked serials per issuer, from the CRL files of one directory."""

    def __init__(self, crl_dir: Path, trust: TrustStore, *, recheck_seconds: float = 1.0) -> None:
        self.crl_dir = Path(crl_dir)
        self.trust = trust
        self.recheck_seconds = recheck_seconds
        self._listing: tuple[tuple[str, int, int], ...] | None = None
        self._checked_at = float("-inf")
        self._by_issuer: dict[tuple[bytes, bytes], _IndexedCrl] = {}
        self._lock = threading.Lock()

    def _list(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = [e for e in os.scandir(self.crl_dir) if e.is_file()]
        except OSError:
            return ()
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries))

    def refresh(self) -> None:
        """Re-index if the directory changed (at most every `recheck_seconds`)."""
        now = time.monotonic()
        if now - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            self._checked_at = now
            listing = self._list()
            if listing == self._listing:
                return
            self._by_issuer = self._index(listing)
            self._listing = listing

    def _index(self, listing: tuple[tuple[str, int, int], ...]) -> dict[tuple[bytes, bytes], _IndexedCrl]:
        index: dict[tuple[bytes, bytes], _IndexedCrl] = {}
        for name, _mtime, _size in listing:
            path = self.crl_dir / name
            try:
                crl = load_crl(path.read_bytes())
            except (OSError, ValueError):
                log.warning("not a CRL, ignored: %s", path)
                continue
            if _is_delta(crl):
                continue  # delta CRLs are not used: full CRLs are published as often
            # Every pinned CA of that DN whose key verifies the CRL (a re-issued CA certificate may keep its key).
            keys = {_ca_key(ca) for ca in self.trust.issuers_of_name(crl.issuer)
                    if crl.is_signature_valid(ca.public_key())}
            if not keys:
                log.warning("CRL not signed by a pinned CA, ignored: %s", path)
                continue
            indexed: _IndexedCrl | None = None
            for ca_key in keys:
                key = (crl.issuer.public_bytes(), ca_key)
                current = index.get(key)
                if current is not None and current.this_update >= crl.last_update_utc:
                    continue  # keep the newest CRL of each issuing key
                if indexed is None:
                    indexed = _IndexedCrl(
                        serials=frozenset(r.serial_number for r in crl),
                        this_update=crl.last_update_utc,
                        next_update=crl.next_update_utc,
                        source=name,
                    )
                index[key] = indexed
        return index

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> None:
        """`issuer` is the certificate's issuer in its validated path: only a CRL signed by that key answers."""
        self.refresh()
        crl = self._by_issuer.get((cert.issuer.public_bytes(), _ca_key(issuer)))
        if crl is None:
            raise CertStatusUnknown(f"no CRL of {cert.issuer.rfc4514_string()[:120]} (signed by the key of the "
                                    f"validated issuer) in the CRL directory")
        if crl.next_update is not None and at > crl.next_update + CLOCK_SKEW:
            raise CertStatusUnknown(f"the CRL {crl.source} expired at {crl.next_update.isoformat()}")
        if cert.serial_number in crl.serials:
            raise CertRevoked(f"certificate {cert.serial_number:x} is listed in the CRL {crl.source}")


def _ca_key(ca: x509.Certificate) -> bytes:
    """SHA-256 of a CA certificate's SubjectPublicKeyInfo: which key signs its CRLs."""
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _is_delta(crl: x509.CertificateRevocationList) -> bool:
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    except x509.ExtensionNotFound:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _OcspAnswer:
    revoked: bool
    next_update: datetime
    detail: str


class OcspChecker:
    """Certificate status from OCSP responders, verified, cached until nextUpdate."""

    def __init__(self, trust: TrustStore, http: httpx.Client, *, url: str = "", timeout: float = 5.0,
                 max_age: timedelta = timedelta(seconds=300), cache_size: int = 65536) -> None:
        self.trust = trust
        self.max_age = max_age
        self.http = http
        self.url = url
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[bytes, int], _OcspAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def responder_url(self, cert: x509.Certificate) -> str:
        if self.url:
            return self.url
        try:
            aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        except x509.ExtensionNotFound:
            aia = []
        for description in aia:
            if description.access_method == x509.AuthorityInformationAccessOID.OCSP:
                return str(description.access_location.value)
        raise CertStatusUnknown("the certificate names no OCSP responder and trust.ocsp_url is not set")

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> None:
        key = (issuer.fingerprint(hashes.SHA256()), cert.serial_number)
        with self._lock:
            answer = self._cache.get(key)
        if answer is None or at >= answer.next_update:
            answer = self._ask(cert, issuer, at)
            if answer.next_update > at:
                with self._lock:
                    self._cache[key] = answer
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        if answer.revoked:
            raise CertRevoked(answer.detail)

    def _ask(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> _OcspAnswer:
        url = self.responder_url(cert)
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        try:
            reply = self.http.post(
                url, content=request.public_bytes(serialization.Encoding.DER),
                headers={"Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise CertStatusUnknown(f"OCSP responder {url} unreachable: {type(exc).__name__}") from None
        if reply.status_code != 200:
            raise CertStatusUnknown(f"OCSP responder {url} answered HTTP {reply.status_code}")
        try:
            response = ocsp.load_der_ocsp_response(reply.content)
        except ValueError:
            raise CertStatusUnknown(f"OCSP responder {url} sent something that is not an OCSP response") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise CertStatusUnknown(f"OCSP responder {url} answered {response.response_status.name}")
        self._verify_signature(response, issuer, at)
        return self._status(response, cert, issuer, at)

    def _verify_signature(self, response: ocsp.OCSPResponse, issuer: x509.Certificate, at: datetime) -> None:
        signer = self._responder(response, issuer, at)
        key = signer.public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                           response.signature_hash_algorithm)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(response.signature, response.tbs_response_bytes,
                           ec.ECDSA(response.signature_hash_algorithm))
            else:
                raise CertStatusUnknown("the OCSP responder's key type is not supported")
        except InvalidSignature:
            raise CertStatusUnknown("the OCSP response's signature does not verify") from None

    def _responder(self, response: ocsp.OCSPResponse, issuer: x509.Certificate, at: datetime) -> x509.Certificate:
        """The certificate that signed `response`: the issuer, or a delegated responder it issued."""
        if _names_responder(response, issuer):
            return issuer
        for candidate in response.certificates:
            if not _names_responder(response, candidate):
                continue
            try:
                candidate.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                raise CertStatusUnknown("the OCSP responder certificate is not issued by the certificate's CA") \
                    from None
            try:
                eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = []
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                raise CertStatusUnknown("the OCSP responder certificate is not authorised for OCSP signing")
            if not candidate.not_valid_before_utc <= at <= candidate.not_valid_after_utc:
                raise CertStatusUnknown("the OCSP responder certificate is out of its validity period")
            return candidate
        raise CertStatusUnknown("the OCSP response is signed by neither the CA nor a responder it authorised")

    def _status(self, response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate,
                at: datetime) -> _OcspAnswer:
        issuer_key_hash = _key_hash(issuer)
        for single in response.responses:
            if single.serial_number != cert.serial_number:
                continue
            if single.hash_algorithm.name != "sha1" or single.issuer_key_hash != issuer_key_hash:
                continue
            if single.this_update_utc > at + CLOCK_SKEW:
                raise CertStatusUnknown("the OCSP response is dated in the future")
            next_update = single.next_update_utc
            if next_update is not None and at > next_update + CLOCK_SKEW:
                raise CertStatusUnknown(f"the OCSP response expired at {next_update.isoformat()}")
            if next_update is not None:
                until = next_update
            else:
                # Without nextUpdate the answer is only as fresh as it is young: a GOOD answer older than
                # max_age could be a replay from before a revocation; it is cached until it reaches max_age.
                issued = min(single.this_update_utc, response.produced_at_utc)
                until = issued + self.max_age
            if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
                if next_update is None and at > until:
                    raise CertStatusUnknown(f"the OCSP answer without nextUpdate is older than "
                                            f"{self.max_age.total_seconds():g}s (thisUpdate "
                                            f"{single.this_update_utc.isoformat()}, producedAt "
                                            f"{response.produced_at_utc.isoformat()})")
                return _OcspAnswer(False, until, "good")
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                when = single.revocation_time_utc.isoformat() if single.revocation_time_utc else "?"
                return _OcspAnswer(True, until, f"certificate {cert.serial_number:x} revoked at {when} (OCSP)")
            raise CertStatusUnknown(f"the OCSP responder does not know certificate {cert.serial_number:x}")
        raise CertStatusUnknown("the OCSP response does not answer for this certificate")


def _key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subject public key's BIT STRING (RFC 6960 CertID.issuerKeyHash and ResponderID byKey):
    the same value as RFC 5280's key identifier method 1, which cryptography computes."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    return response.responder_key_hash == _key_hash(cert)
