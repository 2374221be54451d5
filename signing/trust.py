"""Certificate path validation to a pinned NCA root (docs/signing.md: build the whole path).

`trust.ca_dir` holds the pinned roots (self-signed) and the intermediates, PEM or DER, several per file
allowed. The path is built and checked by `cryptography.x509.verification` (RFC 5280 path building with
signature, validity, basic constraints and name chaining on every link). Its web-PKI profile is bent in one
place only: the end-entity extension policy accepts any extended key usage, because NCA certificates
carry role OIDs and emailProtection, not serverAuth; the signing-purpose check is ours (`profile.py`).

The leaf's own validity period is checked first so that an expired or not-yet-valid signer gets its
precise code; any other path failure is CERT_UNTRUSTED. Validated paths are cached per certificate;
a cached path is re-checked against the clock (validity periods) on every use.

Paths whose signatures `cryptography` cannot verify (GOST R 34.10-2015, NCA's CAs since 2022) are built
here instead, with the crypto provider that claims the signature algorithm (`ProviderRegistry.verify_x509`):
every link's signature by its issuer's key, issuer name = subject name, every certificate valid at the
judged time, each CA certificate with basicConstraints cA (critical, as the web-PKI profile the RSA path
uses demands), keyCertSign when it has a keyUsage, a pathLenConstraint honoured, at most 8 links, ending
at a pinned root (whose self-signature was verified when ca_dir was read).
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
from signing import der
from signing.providers import DEFAULT_REGISTRY, ProviderRegistry

_CACHE_SIZE = 4096
_MAX_LINKS = 8


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
    # The crypto providers beside the default one (`signing.providers.build_registry`); None: every one
    # installed (the `gost` extra brings "gost").
    crypto_providers: tuple[str, ...] | None = None


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


def spki_bytes(cert: x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of `cert` as it is written in the certificate (also for keys that
    `cryptography` cannot load, such as GOST ones)."""
    tbs = der.parse(cert.tbs_certificate_bytes).expect(der.SEQUENCE, "tbsCertificate").children()
    if tbs and tbs[0].tag == 0xA0:  # [0] EXPLICIT version
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise der.DerError("not a tbsCertificate")
    return tbs[5].expect(der.SEQUENCE, "subjectPublicKeyInfo").raw


def public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (without its unused-bits octet): what RFC 5280 key
    identifiers and RFC 6960 key hashes are computed over."""
    parts = der.parse(spki_bytes(cert)).children()
    return parts[1].expect(0x03, "subjectPublicKey").value[1:]


def signed_by(cert: x509.Certificate, issuer: x509.Certificate, registry: ProviderRegistry) -> bool:
    """Whether `issuer`'s key signed `cert`: by a crypto provider for the algorithms it claims (GOST), else
    by `cryptography`. Names are not compared here."""
    oid = cert.signature_algorithm_oid.dotted_string
    if registry.verifies_x509(oid):
        return registry.verify_x509(oid, issuer, cert.signature, cert.tbs_certificate_bytes)
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - any failure (wrong key, unsupported algorithm, names) means "no"
        return False
    return True


def _is_self_issued(cert: x509.Certificate, registry: ProviderRegistry = DEFAULT_REGISTRY) -> bool:
    if cert.subject != cert.issuer:
        return False
    return signed_by(cert, cert, registry)


class TrustStore:
    """The pinned roots and intermediates of `ca_dir`, and path validation against them."""

    def __init__(self, ca_dir: Path, *, registry: ProviderRegistry = DEFAULT_REGISTRY) -> None:
        self.ca_dir = Path(ca_dir)
        self.registry = registry
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
                (roots if _is_self_issued(cert, registry) else intermediates).append(cert)
        if not roots:
            raise ValueError(f"no trusted root certificate (self-signed) in {self.ca_dir}")
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        # cryptography's path builder gets the CAs it can verify; the others' paths are built by _build_own.
        ours = [c for c in roots if not self._provided(c)]
        self._store = Store(ours) if ours else None
        self._intermediates = [c for c in intermediates if not self._provided(c)]
        self._root_set = {c.fingerprint(hashes.SHA256()) for c in roots}
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

    def _provided(self, cert: x509.Certificate) -> bool:
        """Whether `cert`'s signature is one a crypto provider verifies (not cryptography)."""
        return self.registry.verifies_x509(cert.signature_algorithm_oid.dotted_string)

    def _build(self, cert: x509.Certificate, at: datetime) -> tuple[x509.Certificate, ...]:
        if self._provided(cert):
            return self._build_own(cert, at)
        if self._store is None:
            raise CertUntrusted(f"no valid path to a trusted NCA root for {_describe(cert)}: no pinned root "
                                "of its algorithm")
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(cert, self._intermediates)
        except VerificationError as exc:
            raise CertUntrusted(f"no valid path to a trusted NCA root for {_describe(cert)}: {exc}") from None
        return tuple(verified.chain)

    def _build_own(self, cert: x509.Certificate, at: datetime) -> tuple[x509.Certificate, ...]:
        """The path of a certificate signed with a provider's algorithm (the module docstring's checks)."""
        problems: list[str] = []

        def extend(path: list[x509.Certificate]) -> tuple[x509.Certificate, ...] | None:
            current = path[-1]
            for ca in self.issuers_of_name(current.issuer):
                if any(ca is c for c in path):
                    continue
                problem = self._link_problem(current, ca, at, intermediates_below=len(path) - 1)
                if problem:
                    problems.append(problem)
                    continue
                if ca.fingerprint(hashes.SHA256()) in self._root_set:
                    return (*path, ca)
                if len(path) < _MAX_LINKS:
                    found = extend([*path, ca])
                    if found is not None:
                        return found
                else:
                    problems.append("the path is longer than 8 certificates")
            return None

        chain = extend([cert])
        if chain is None:
            reason = problems[0] if problems else f"no pinned CA named {cert.issuer.rfc4514_string()[:120]}"
            raise CertUntrusted(f"no valid path to a trusted NCA root for {_describe(cert)}: {reason}")
        return chain

    def _link_problem(self, cert: x509.Certificate, ca: x509.Certificate, at: datetime, *,
                      intermediates_below: int) -> str | None:
        """Why `ca` cannot be the issuer of `cert` in a path judged at `at` (None: it can)."""
        if not signed_by(cert, ca, self.registry):
            return f"the signature of {_describe(cert)} does not verify with the key of {_describe(ca)}"
        if not ca.not_valid_before_utc <= at <= ca.not_valid_after_utc:
            return f"the CA {_describe(ca)} is not valid at {at.isoformat()}"
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            return f"the CA {_describe(ca)} has no basicConstraints"
        if not constraints.value.ca or not constraints.critical:
            return f"{_describe(ca)} is not a CA (basicConstraints cA, critical)"
        path_length = constraints.value.path_length
        if path_length is not None and intermediates_below > path_length:
            return f"the pathLenConstraint of {_describe(ca)} is exceeded"
        try:
            usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            return f"the keyUsage of the CA {_describe(ca)} lacks keyCertSign"
        return None


def check_validity(cert: x509.Certificate, at: datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertNotYetValid(f"{_describe(cert)} is valid from {cert.not_valid_before_utc.isoformat()}")
    if at > cert.not_valid_after_utc:
        raise CertExpired(f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}")


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {cert.serial_number:x} ({cert.subject.rfc4514_string()[:120]})"
