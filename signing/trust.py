"""Certificate path validation to a pinned NCA root (docs/signing.md: build the whole path).

`trust.ca_dir` holds the pinned roots (self-signed) and the intermediates, PEM or DER, several per file
allowed. The path is built and checked by `cryptography.x509.verification` (RFC 5280 path building with
signature, validity, basic constraints and name chaining on every link). Its web-PKI profile is bent in one
place only: the end-entity extension policy accepts any extended key usage, because NCA certificates
carry role OIDs and emailProtection, not serverAuth; the signing-purpose check is ours (`profile.py`).

The leaf's own validity period is checked first so that an expired or not-yet-valid signer gets its
precise code; any other path failure is CERT_UNTRUSTED. Validated paths are cached per certificate;
a cached path is re-checked against the clock (validity periods) on every use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from core.errors import CertExpired, CertNotYetValid, CertUntrusted

_CACHE_SIZE = 4096


@dataclass(frozen=True)
class TrustConfig:
    ca_dir: Path = Path("./pki/ca")
    revocation: str = "crl"  # ocsp | crl | off
    crl_dir: Path = Path("./pki/crl")
    ocsp_url: str = ""
    ocsp_timeout_seconds: float = 5.0
    ocsp_max_age_seconds: float = 300.0  # a GOOD answer without nextUpdate older than this is not believed
    revocation_fallback: str = "crl"  # crl | none: who answers with revocation = "ocsp" when the responder fails
    tsa_dir: Path | None = None  # trusted TSAs; None: timestamps are ignored
    crl_urls: tuple[str, ...] = ()  # CRLs (full and delta) downloaded into crl_dir
    crl_refresh_seconds: float = 3600.0
    wsse_window_seconds: float = 300.0  # a WS-Security Timestamp Created longer ago than this is refused
    wsse_clock_skew_seconds: float = 60.0  # ... allowing this much difference between the clocks


def load_der_certificate(data: bytes) -> x509.Certificate:
    """A DER certificate from a message, read whole: `cryptography` parses the subject, issuer and
    extensions lazily, so a certificate whose subject does not parse would load and then fail wherever its
    name is first read (a fuzzed subject once reached the trust check's error message as INTERNAL_ERROR).
    Raises ValueError for anything that is not a certificate."""
    try:
        cert = x509.load_der_x509_certificate(data)
        cert.subject, cert.issuer, cert.extensions  # noqa: B018 - parsed now, so that they fail here
    except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType) as exc:
        raise ValueError(f"not a certificate: {exc}") from None
    return cert


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in `data`: one or more PEM blocks, or one DER certificate."""
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _is_self_issued(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure means "not self-signed"
        return False
    return True


class TrustStore:
    """The pinned roots and intermediates of `ca_dir`, and path validation against them."""

    def __init__(self, ca_dir: Path) -> None:
        self.ca_dir = Path(ca_dir)
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for path in sorted(self.ca_dir.iterdir()) if self.ca_dir.is_dir() else ():
            if not path.is_file():
                continue
            try:
                certs = load_certificates(path.read_bytes())
            except ValueError:
                continue  # not a certificate file (a README, a key): ignored, as a CA directory may hold them
            for cert in certs:
                (roots if _is_self_issued(cert) else intermediates).append(cert)
        if not roots:
            raise ValueError(f"no trusted root certificate (self-signed) in {self.ca_dir}")
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        self._store = Store(list(roots))
        self._cache: OrderedDict[bytes, tuple[x509.Certificate, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def issuers_of_name(self, name: x509.Name) -> list[x509.Certificate]:
        """The pinned CA certificates (intermediates and roots) whose subject is `name`."""
        return [c for c in (*self.intermediates, *self.roots) if c.subject == name]

    def validate(self, cert: x509.Certificate, at: datetime, *,
                 fingerprint: bytes | None = None) -> tuple[x509.Certificate, ...]:
        """The validated path, leaf first and the pinned root last, at time `at`.

        Raises CertExpired / CertNotYetValid for the leaf's own validity period, CertUntrusted otherwise.
        """
        check_validity(cert, at)
        key = fingerprint or cert.fingerprint(hashes.SHA256())
        with self._lock:
            chain = self._cache.get(key)
            if chain is not None:
                self._cache.move_to_end(key)
        if chain is not None:
            for ca in chain[1:]:
                if not ca.not_valid_before_utc <= at <= ca.not_valid_after_utc:
                    chain = None  # a CA of the cached path is out of its validity: validate afresh
                    break
        if chain is None:
            chain = self._build(cert, at)
            with self._lock:
                self._cache[key] = chain
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return chain

    def _build(self, cert: x509.Certificate, at: datetime) -> tuple[x509.Certificate, ...]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(cert, list(self.intermediates))
        except VerificationError as exc:
            raise CertUntrusted(f"no valid path to a trusted NCA root for {_describe(cert)}: {exc}") from None
        return tuple(verified.chain)


def check_validity(cert: x509.Certificate, at: datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertNotYetValid(f"{_describe(cert)} is valid from {cert.not_valid_before_utc.isoformat()}")
    if at > cert.not_valid_after_utc:
        raise CertExpired(f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}")


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {cert.serial_number:x} ({cert.subject.rfc4514_string()[:120]})"
