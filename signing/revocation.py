"""Revocation of certificates: CRLs from a directory, OCSP, and OCSP with the CRLs as its fallback
(docs/signing.md).

Sources report facts (`lookup`: revoked when, for what reason, or not listed) and `judge` decides: a
certificate is CERT_REVOKED when it was revoked at or before the moment it is judged at (the proven
signing time, or now), or for keyCompromise / caCompromise at any date (the key may have been in other
hands before the revocation was published). A source that cannot answer (no CRL of the issuer, a CRL
past its nextUpdate, an OCSP responder that is down, answers "tryLater" or "unknown", or whose answer does
not verify) gives CERT_STATUS_UNKNOWN, never "good"; `Revocation` then asks its fallback (the CRLs
behind OCSP, `trust.revocation_fallback = "crl"`) when it has one.

CRLs (`trust.crl_dir`, PEM or DER): each file is read, its signature verified with its issuer's pinned
certificate, and indexed ONCE into a set of revoked serial numbers per issuing CA key (its DN and the pinned
CA certificate's public key that verifies it: two pinned CAs may share a DN across a re-keying), so a lookup
is one set membership test however long the list; the date and reason of a listed serial are read from the
CRL itself on a hit (rare). A delta CRL (Delta CRL Indicator) is applied on top of the newest full CRL of its
issuer whose number is at least the delta's base and below the delta's own number; its entries win, and
removeFromCRL takes a serial off. A certificate is looked up under the key of the issuer its validated path
goes through. The directory is re-listed at most every `recheck_seconds`; a file whose name, size or mtime
changed is indexed again, alone (a new delta does not re-read the full CRL), and a large one (a full CRL
of NCA's size) in a background thread while the index it replaces keeps answering, so that a refresh does
not stall the requests of the process. Files whose name starts with "." (a download in progress) are not
read. Only the leaf is checked: the intermediates are pinned by the operator in `trust.ca_dir`.

OCSP: the responder from the certificate's AIA (or `trust.ocsp_url`), one request per certificate through
one `httpx.Client` (tests swap its transport). The response's signature is verified, and its signer must be
the issuer itself or a responder certificate the issuer issued for OCSP signing; the answer is cached
until its nextUpdate. A GOOD answer without nextUpdate is believed only while its thisUpdate and producedAt
are at most `max_age` old (`trust.ocsp_max_age_seconds`), and cached no longer than that.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.errors import CertRevoked, CertStatusUnknown
from signing import der
from signing.providers import DEFAULT_REGISTRY, ProviderRegistry
from signing.trust import TrustStore, public_key_bits, signed_by, spki_bytes

log = logging.getLogger("licgate.signing")

CLOCK_SKEW = timedelta(minutes=5)
COMPROMISE = frozenset({x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise})
# Changed CRL files up to this size in all are indexed at once, in the request that notices them; larger
# ones in a background thread (a full CRL of 500,000 serials takes about half a second).
SYNC_INDEX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Revoked:
    """A revocation as a source reports it."""

    at: datetime
    reason: x509.ReasonFlags | None
    detail: str


def judge(revoked: Revoked | None, signed_at: datetime | None) -> None:
    """CERT_REVOKED for a revocation that counts for a signature made at `signed_at` (None: judged now)."""
    if revoked is None:
        return
    if signed_at is not None and revoked.at > signed_at and revoked.reason not in COMPROMISE:
        return  # revoked after the proven signing time, for a reason that does not reach back
    if signed_at is not None and revoked.at > signed_at:
        raise CertRevoked(f"{revoked.detail}: after the signing time {signed_at.isoformat()}, but a key or CA "
                          "compromise counts whenever it was published")
    raise CertRevoked(revoked.detail)


class RevocationSource(Protocol):
    name: str  # "crl" | "ocsp": the label of its outcomes in /metrics

    def lookup(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Revoked | None:
        """The certificate's revocation, None when it is not revoked; CertStatusUnknown when not known."""
        ...


Observer = Callable[[str, str], None]  # (source: ocsp | crl | fallback, outcome: good | revoked | unknown | ...)


class Revocation:
    """A source, and optionally a fallback asked when the source cannot answer; reports each outcome to
    `observe` (for /metrics): source "ocsp", "crl" or "fallback", outcome "good", "revoked",
    "revoked_after_signing" (listed, but after the proven signing time: accepted) or "unknown"."""

    def __init__(self, source: RevocationSource, *, fallback: RevocationSource | None = None,
                 observe: Observer | None = None) -> None:
        self.source = source
        self.fallback = fallback
        self.observe = observe

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime, *,
              signed_at: datetime | None = None) -> None:
        label = self.source.name
        try:
            revoked = self.source.lookup(cert, issuer, now)
        except CertStatusUnknown as exc:
            if self.fallback is None:
                self._observe(label, "unknown")
                raise
            label = "fallback"
            try:
                revoked = self.fallback.lookup(cert, issuer, now)
            except CertStatusUnknown as second:
                self._observe(label, "unknown")
                raise CertStatusUnknown(f"{exc.data}; the {self.fallback.name.upper()} fallback: {second.data}") \
                    from None
            log.info("revocation answered by the %s fallback: %s", self.fallback.name, exc.data)
        try:
            judge(revoked, signed_at)
        except CertRevoked:
            self._observe(label, "revoked")
            raise
        self._observe(label, "good" if revoked is None else "revoked_after_signing")

    def _observe(self, source: str, outcome: str) -> None:
        if self.observe is not None:
            self.observe(source, outcome)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN X509 CRL-----" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


@dataclass(frozen=True, slots=True)
class _IndexedCrl:
    """One CRL file, indexed: the serials it lists (a set), and the CRL itself for the date and reason of a hit."""

    name: str
    issuer: bytes  # DER of the issuer's name
    ca_keys: frozenset[bytes]
    this_update: datetime
    next_update: datetime | None
    number: int | None
    delta_base: int | None  # the BaseCRLNumber of a delta CRL; None for a full CRL
    serials: AbstractSet[int]  # never changed once built
    crl: x509.CertificateRevocationList

    def entry(self, serial: int) -> Revoked | None:
        if serial not in self.serials:
            return None
        revoked = self.crl.get_revoked_certificate_by_serial_number(serial)
        if revoked is None:
            return None
        try:
            reason: x509.ReasonFlags | None = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        when = revoked.revocation_date_utc
        return Revoked(when, reason, f"certificate {serial:x} is listed in the CRL {self.name} (revoked "
                                     f"{when.isoformat()}, reason {reason.value if reason else 'unspecified'})")

    def stale(self, now: datetime) -> bool:
        return self.next_update is not None and now > self.next_update + CLOCK_SKEW


@dataclass(frozen=True, slots=True)
class CrlState:
    """What the index holds of one CRL file (for /metrics and operators)."""

    name: str
    issuer: str
    delta: bool
    this_update: datetime
    next_update: datetime | None


_Listing = dict[str, tuple[int, int]]  # name -> (mtime_ns, size)


class CrlIndex:
    """Revoked serials per issuer, from the CRL files of one directory (see the module docstring)."""

    name = "crl"

    def __init__(self, crl_dir: Path, trust: TrustStore, *, recheck_seconds: float = 1.0,
                 sync_index_bytes: int = SYNC_INDEX_BYTES) -> None:
        self.crl_dir = Path(crl_dir)
        self.trust = trust
        self.recheck_seconds = recheck_seconds
        self.sync_index_bytes = sync_index_bytes
        self._listing: _Listing | None = None
        self._files: dict[str, tuple[tuple[int, int], _IndexedCrl | None]] = {}
        # (issuer DN, CA key) -> (the newest full CRL, the delta that applies to it): what a lookup reads
        self._current: dict[tuple[bytes, bytes], tuple[_IndexedCrl, _IndexedCrl | None]] = {}
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._building: threading.Thread | None = None

    def _list(self) -> _Listing:
        try:
            entries = [e for e in os.scandir(self.crl_dir) if not e.name.startswith(".") and e.is_file()]
        except OSError:
            return {}
        listing = {}
        for entry in entries:
            try:
                stat = entry.stat()
            except OSError:  # replaced or removed meanwhile: seen at the next listing
                continue
            listing[entry.name] = (stat.st_mtime_ns, stat.st_size)
        return listing

    def refresh(self, *, wait: bool = False) -> None:
        """Re-index what changed in the directory (at most every `recheck_seconds`); `wait` indexes even
        large files before returning (start-up, tests)."""
        now = time.monotonic()
        if not wait and now - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            self._checked_at = now
            listing = self._list()
            if listing == self._listing:
                return
            if self._building is not None and self._building.is_alive():
                if not wait:
                    return  # the build under way is followed by another look at the directory
                self._building.join()
            changed = {n: s for n, s in listing.items() if self._files.get(n, (None,))[0] != s}
            if wait or self._listing is None or sum(size for _, size in changed.values()) <= self.sync_index_bytes:
                self._apply(listing, changed)
                return
            self._building = threading.Thread(target=self._build, args=(listing, changed), daemon=True,
                                              name="licgate-crl-index")
            self._building.start()

    def look_again(self) -> None:
        """The directory changed (this process wrote a file): the next refresh re-lists it."""
        self._checked_at = float("-inf")

    def _build(self, listing: _Listing, changed: _Listing) -> None:
        try:
            self._apply(listing, changed, gentle=True)
        except Exception:  # noqa: BLE001 - the old index keeps answering; the next refresh tries again
            log.exception("indexing the CRL directory %s failed", self.crl_dir)
        self._checked_at = float("-inf")  # look again at once: a file may have changed during the build

    def _apply(self, listing: _Listing, changed: _Listing, *, gentle: bool = False) -> None:
        fresh = {name: (stamp, self._read(name, gentle=gentle)) for name, stamp in changed.items()}
        files = {name: self._files[name] for name in listing if name not in changed and name in self._files}
        files.update(fresh)
        current = _currents([crl for _, crl in files.values() if crl is not None])
        # Lookups read `_current` alone: one assignment, so they see the old index or the new one, never half.
        self._files, self._current = files, current
        self._listing = listing

    def _read(self, name: str, *, gentle: bool = False) -> _IndexedCrl | None:
        path = self.crl_dir / name
        try:
            data = path.read_bytes()
            crl = load_crl(data)
        except (OSError, ValueError):
            log.warning("not a CRL, ignored: %s", path)
            return None
        # Every pinned CA of that DN whose key verifies the CRL (a re-issued CA certificate may keep its key).
        keys = frozenset(_ca_key(ca) for ca in self.trust.issuers_of_name(crl.issuer)
                         if _signed_by(crl, ca, data if not data.startswith(b"-----") else None,
                                       self.trust.registry))
        if not keys:
            log.warning("CRL not signed by a pinned CA, ignored: %s", path)
            return None
        return _IndexedCrl(
            name=name, issuer=crl.issuer.public_bytes(), ca_keys=keys, this_update=crl.last_update_utc,
            next_update=crl.next_update_utc, number=_crl_number(crl), delta_base=_delta_base(crl),
            serials=_serials_gently(crl) if gentle else frozenset(r.serial_number for r in crl), crl=crl,
        )

    def lookup(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Revoked | None:
        """`issuer` is the certificate's issuer in its validated path: only a CRL signed by that key answers."""
        self.refresh()
        # The validated path guarantees cert.issuer == issuer.subject: the pinned CA object's cached key.
        full, delta = self._current.get(_issuer_key(issuer), (None, None))
        if full is None:
            raise CertStatusUnknown(f"no CRL of {cert.issuer.rfc4514_string()[:120]} (signed by the key of the "
                                    f"validated issuer) in the CRL directory")
        if full.stale(now):
            raise CertStatusUnknown(f"the CRL {full.name} expired at {full.next_update.isoformat()}")  # type: ignore[union-attr]
        serial = cert.serial_number
        if delta is not None and not delta.stale(now) and serial in delta.serials:
            listed = delta.entry(serial)
            if listed is not None and listed.reason is x509.ReasonFlags.remove_from_crl:
                return None
            return listed
        return full.entry(serial)

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime, *,
              signed_at: datetime | None = None) -> None:
        judge(self.lookup(cert, issuer, at), signed_at)

    def states(self) -> list[CrlState]:
        """Every CRL indexed now, with its issuer and validity."""
        self.refresh()
        out = []
        for _, crl in self._files.values():
            if crl is not None:
                out.append(CrlState(name=crl.name, issuer=crl.crl.issuer.rfc4514_string(),
                                    delta=crl.delta_base is not None, this_update=crl.this_update,
                                    next_update=crl.next_update))
        return sorted(out, key=lambda s: s.name)


GENTLE_CHUNK = 500  # entries read between pauses by a background index build (about a millisecond)


def _serials_gently(crl: x509.CertificateRevocationList) -> AbstractSet[int]:
    """The CRL's serials, read in chunks with a pause twice as long as each chunk took: a background build
    holds the interpreter lock at most a third of the time, in slices of about a millisecond, so the
    requests of the process (intake examinations in a worker process, whose switch interval is 5 ms) are
    slowed, not stalled, while it runs; it takes about three times as long (docs/performance.md)."""
    serials: set[int] = set()
    entries = iter(crl)
    while True:
        started = time.perf_counter()
        chunk = [r.serial_number for r in itertools.islice(entries, GENTLE_CHUNK)]
        serials.update(chunk)
        if len(chunk) < GENTLE_CHUNK:
            return serials  # not copied into a frozenset: that would hold the lock for the whole set at once
        time.sleep(2 * (time.perf_counter() - started))


def _currents(crls: list[_IndexedCrl]) -> dict[tuple[bytes, bytes], tuple[_IndexedCrl, _IndexedCrl | None]]:
    """Per issuing key: the newest full CRL, and the newest delta whose base it satisfies (its number at
    least the delta's base and below the delta's own number)."""
    out: dict[tuple[bytes, bytes], tuple[_IndexedCrl, _IndexedCrl | None]] = {}
    keys = {(c.issuer, k) for c in crls for k in c.ca_keys}
    for issuer, ca_key in keys:
        mine = [c for c in crls if c.issuer == issuer and ca_key in c.ca_keys]
        fulls = [c for c in mine if c.delta_base is None]
        if not fulls:
            continue
        full = max(fulls, key=lambda c: (c.number or -1, c.this_update))
        deltas = [c for c in mine if c.delta_base is not None and full.number is not None
                  and c.delta_base <= full.number and (c.number or -1) > full.number]
        out[(issuer, ca_key)] = (full, max(deltas, key=lambda c: (c.number or -1, c.this_update)) if deltas else None)
    return out


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate, data: bytes | None = None,
               registry: ProviderRegistry = DEFAULT_REGISTRY) -> bool:
    return crl_signature_valid(crl, ca, data, registry=registry)


_HASHLIB = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
_PREHASHABLE = frozenset({
    x509.SignatureAlgorithmOID.RSA_WITH_SHA256, x509.SignatureAlgorithmOID.RSA_WITH_SHA384,
    x509.SignatureAlgorithmOID.RSA_WITH_SHA512, x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384, x509.SignatureAlgorithmOID.ECDSA_WITH_SHA512,
})


def crl_signature_valid(crl: x509.CertificateRevocationList, ca: x509.Certificate, data: bytes | None = None, *,
                        registry: ProviderRegistry = DEFAULT_REGISTRY) -> bool:
    """Whether `ca`'s key signed `crl` (`data`: its DER, when at hand).

    An algorithm a crypto provider of `registry` claims (GOST) is verified by that provider over the
    tbsCertList as it came.

    With the DER, an RSA PKCS#1 v1.5 or ECDSA signature is checked over the tbsCertList as it came, hashed by
    hashlib, which lets go of the interpreter lock while it hashes: cryptography's `is_signature_valid`
    holds it for 0.35 s on a CRL of 500,000 serials (it encodes the tbsCertList again), a stall of every
    request of the process. Anything else goes to `is_signature_valid`."""
    oid = crl.signature_algorithm_oid.dotted_string
    if registry.verifies_x509(oid):
        return registry.verify_x509(oid, ca, crl.signature, crl.tbs_certlist_bytes)
    try:
        key = ca.public_key()
    except (TypeError, ValueError, UnsupportedAlgorithm):  # a GOST CA and no provider for it
        return False
    hash_algorithm = crl.signature_hash_algorithm
    name = _HASHLIB.get(hash_algorithm.name) if hash_algorithm is not None else None
    if data is not None and name is not None and isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) \
            and crl.signature_algorithm_oid in _PREHASHABLE:
        try:
            tbs, _, signature = der.parse(data).expect(der.SEQUENCE, "CertificateList").children()
            bits = signature.expect(0x03, "signatureValue").value
        except (der.DerError, ValueError):
            return False
        digest = hashlib.new(name, memoryview(data)[tbs.start:tbs.end]).digest()
        prehashed = utils.Prehashed(hash_algorithm)
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(bits[1:], digest, padding.PKCS1v15(), prehashed)
            else:
                key.verify(bits[1:], digest, ec.ECDSA(prehashed))
        except InvalidSignature:
            return False
        return True
    try:
        return crl.is_signature_valid(key)
    except (TypeError, ValueError):  # a key cryptography cannot use (GOST): no such CRL is trusted here
        return False


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _delta_base(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        return None


_ISSUER_KEYS: dict[int, tuple[x509.Certificate, tuple[bytes, bytes]]] = {}


def _issuer_key(ca: x509.Certificate) -> tuple[bytes, bytes]:
    """(subject DER, `_ca_key`) of an issuing CA certificate, remembered per object: the issuers of
    validated paths are the trust store's few pinned objects, and computing both costs more than the rest
    of a lookup (hashing a certificate object, to cache by value, costs as much)."""
    entry = _ISSUER_KEYS.get(id(ca))
    if entry is not None and entry[0] is ca:
        return entry[1]
    if len(_ISSUER_KEYS) >= 256:
        _ISSUER_KEYS.clear()
    key = (ca.subject.public_bytes(), _ca_key(ca))
    _ISSUER_KEYS[id(ca)] = (ca, key)  # holding `ca` keeps its id from being reused
    return key


def _ca_key(ca: x509.Certificate) -> bytes:
    """SHA-256 of a CA certificate's SubjectPublicKeyInfo: which key signs its CRLs."""
    try:
        spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    except (TypeError, ValueError, UnsupportedAlgorithm):  # a key cryptography cannot load (GOST)
        spki = spki_bytes(ca)
    return hashlib.sha256(spki).digest()


@dataclass(frozen=True, slots=True)
class _OcspAnswer:
    revoked: Revoked | None
    next_update: datetime


class OcspChecker:
    """Certificate status from OCSP responders, verified, cached until nextUpdate."""

    name = "ocsp"

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

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime, *,
              signed_at: datetime | None = None) -> None:
        judge(self.lookup(cert, issuer, at), signed_at)

    def lookup(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> Revoked | None:
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
        return answer.revoked

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
        oid = response.signature_algorithm_oid.dotted_string
        registry = self.trust.registry
        if registry.verifies_x509(oid):
            if not registry.verify_x509(oid, signer, response.signature, response.tbs_response_bytes):
                raise CertStatusUnknown("the OCSP response's signature does not verify")
            return
        try:
            key = signer.public_key()
        except (TypeError, ValueError, UnsupportedAlgorithm):
            raise CertStatusUnknown("the OCSP responder's key type is not supported") from None
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
            if candidate.issuer != issuer.subject or not signed_by(candidate, issuer, self.trust.registry):
                raise CertStatusUnknown("the OCSP responder certificate is not issued by the certificate's CA")
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
                return _OcspAnswer(None, until)
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                when = single.revocation_time_utc or single.this_update_utc
                reason = single.revocation_reason
                return _OcspAnswer(Revoked(when, reason, f"certificate {cert.serial_number:x} revoked at "
                                                       f"{when.isoformat()}, reason "
                                                       f"{reason.value if reason else 'unspecified'} (OCSP)"), until)
            raise CertStatusUnknown(f"the OCSP responder does not know certificate {cert.serial_number:x}")
        raise CertStatusUnknown("the OCSP response does not answer for this certificate")


def _key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subject public key's BIT STRING (RFC 6960 CertID.issuerKeyHash and ResponderID byKey):
    the same value as RFC 5280's key identifier method 1, which cryptography computes."""
    return hashlib.sha1(public_key_bits(cert)).digest()  # noqa: S324 - the CertID's hash, not a security hash


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    return response.responder_key_hash == _key_hash(cert)
