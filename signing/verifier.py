"""Verification of the enveloped XML signature over a whole payload, then of its signer's certificate.

`SignatureVerifier.verify_enveloped(payload)` hands back the verified document and who signed it; callers
read the application only from `VerifiedDocument.root` (like signxml's `signed_xml`). The checks, in order,
each with its error code:

1. parse the bytes that arrived with the hardened parser (no re-serialisation anywhere after this);
2. shape: exactly one `Signature` (found by namespace, any prefix), the last element child of the root, with
   SignedInfo, SignatureValue, KeyInfo and at most one Object holding XAdES QualifyingProperties
   (`signing.xades`); the first Reference `URI=""` with the transforms enveloped-signature then optionally
   one c14n, and with XAdES a second one, of Type SignedProperties, naming this signature's own
   xades:SignedProperties; nothing else: SIGNATURE_MISSING / SIGNATURE_INVALID;
3. algorithms (c14n, SignatureMethod, DigestMethod) come from the provider registry:
   ALGORITHM_UNSUPPORTED names what is missing (e.g. GOST);
4. the digest of the document without the signature, comments excluded (a `URI=""` reference never
   covers comments, whatever the c14n says), the digest of SignedProperties, then the signature over the
   canonical SignedInfo with the key of the certificate in `KeyInfo/X509Data`, then XAdES'
   SigningCertificate(V2) digest against that certificate: SIGNATURE_INVALID;
5. the XAdES-T SignatureTimeStamp, when `trust.tsa_dir` is set (`signing.tsp`): TIMESTAMP_INVALID; a
   verified one proves the signing time (`genTime`);
6. the certificate, at the proven signing time or else now: validity period, path to a pinned root, key
   usage, revocation (revoked at or before that time, or for a key or CA compromise), then the NCA
   profile (IIN/BIN check digits) — see `check_certificate`.

Comments are not signed, so they are stripped from the returned tree: what the caller reads is exactly
what was signed, and a comment inside `<iin>` cannot split the number.

Why not signxml here: its verifier has no pluggable algorithm registry (GOST must be answered
ALGORITHM_UNSUPPORTED by name, and a GOST provider must be installable), it accepts shapes we must refuse
(several references, references by Id) unless configured per call, and it digests the comments of a
`URI=""` reference under `#WithComments`, which XMLDSig excludes and real NCA signers do not include.
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from core.clock import Clock
from core.domain import SignerIdentity
from core.errors import AlgorithmUnsupported, SignatureInvalid, SignatureMissing, TimestampInvalid
from core.xmlsafe import DEFAULT_MAX_BYTES, parse_xml
from signing import profile, xades
from signing.providers import DEFAULT_REGISTRY, ProviderRegistry, build_registry
from signing.revocation import CrlIndex, Observer, OcspChecker, Revocation
from signing.trust import TrustConfig, TrustStore, load_der_certificate
from signing.tsp import TimeStamp, TimestampVerifier, TsaTrust
from signing.xmldsig import (
    C14N,
    C14N_METHODS,
    C14N_UNSUPPORTED,
    ENVELOPED,
    LARGE_TEXT,
    canonicalize,
    canonicalize_enveloped,
    child_elements,
    decode_base64,
    digest_enveloped,
    ds,
    inclusive_prefixes,
)


@dataclass(frozen=True, slots=True)
class VerifiedDocument:
    root: etree._Element  # the verified document's root (comments removed); read the application from here
    signer: SignerIdentity
    certificate: x509.Certificate
    signature_method: str  # the SignatureMethod URI
    signed_at: datetime | None = None  # the genTime of a verified XAdES-T timestamp: the proven signing time
    timestamp: TimeStamp | None = None


class RevocationCheck(Protocol):
    """What the verifier needs from revocation (`Revocation`, `CrlIndex`, `OcspChecker`): raise CertRevoked
    or CertStatusUnknown, return for a good certificate. `at` is now (how fresh the data must be);
    `signed_at` the proven signing time, when there is one."""

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime, *,
              signed_at: datetime | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class _SignatureParts:
    signed_info: etree._Element
    c14n_method: str
    c14n_prefixes: list[str] | None
    signature_method: str
    reference_c14n: str
    reference_prefixes: list[str] | None
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    certificate: x509.Certificate
    signature_value_element: etree._Element
    properties: _PropertiesReference | None  # the XAdES SignedProperties reference and what it names
    qualifying: xades.Qualifying | None


@dataclass(frozen=True, slots=True)
class _PropertiesReference:
    target: etree._Element
    c14n: str
    prefixes: list[str] | None
    digest_method: str
    digest_value: bytes


# What may follow SignedInfo and SignatureValue in a Signature.
_TAILS = ([], [ds("KeyInfo")], [ds("Object")], [ds("KeyInfo"), ds("Object")])


def _b64(text: str | None, what: str) -> bytes:
    value = decode_base64(text)
    if value is None:
        raise SignatureInvalid(f"{what} is not base64")
    return value


def find_signature(root: etree._Element) -> etree._Element:
    """The one enveloped Signature: the last element child of the root, or SIGNATURE_MISSING / INVALID."""
    signatures = list(root.iter(ds("Signature")))
    if not signatures:
        raise SignatureMissing("the payload carries no XML signature (http://www.w3.org/2000/09/xmldsig#)")
    if len(signatures) > 1:
        raise SignatureInvalid(f"{len(signatures)} signatures: exactly one enveloped signature is accepted")
    signature = signatures[0]
    if signature.getparent() is not root:
        raise SignatureInvalid("the signature must be a child of the payload root (it signs the whole payload)")
    following = signature.getnext()
    while following is not None:
        if isinstance(following.tag, str):
            raise SignatureInvalid("the signature must be the last element of the payload root")
        following = following.getnext()
    return signature


class _CertificateCache:
    """Parsed certificates by DER, and what was learnt about them that does not depend on time.

    The same few thousand signers sign most documents: reusing the parsed object (cryptography caches its
    extensions) and its profile saves most of the per-document certificate cost. Failures are not cached.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, _CertificateFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, der: bytes) -> _CertificateFacts:
        with self._lock:
            facts = self._entries.get(der)
            if facts is not None:
                self._entries.move_to_end(der)
                return facts
        facts = _CertificateFacts(load_der_certificate(der))
        with self._lock:
            self._entries[der] = facts
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return facts

    def facts(self, cert: x509.Certificate) -> _CertificateFacts:
        return self.get(cert.public_bytes(serialization.Encoding.DER))


class _CertificateFacts:
    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.fingerprint = cert.fingerprint(hashes.SHA256())
        self.purposes_ok: set[str] = set()
        self.identity: SignerIdentity | None = None


def read_certificates(key_info: etree._Element | None, cache: _CertificateCache) -> list[x509.Certificate]:
    if key_info is None:
        return []
    certs = []
    for node in key_info.findall(f"{ds('X509Data')}/{ds('X509Certificate')}"):
        try:
            certs.append(cache.get(_b64(node.text, "X509Certificate")).cert)
        except ValueError:
            raise SignatureInvalid("KeyInfo/X509Data/X509Certificate is not a certificate") from None
    return certs


def signer_certificate(certs: list[x509.Certificate]) -> x509.Certificate:
    """The signer's certificate among those in X509Data: the one that issued none of the others."""
    if not certs:
        raise SignatureInvalid("no signer certificate in KeyInfo/X509Data/X509Certificate")
    if len(certs) == 1:
        return certs[0]
    leaves = [c for c in certs if not any(o is not c and o.issuer == c.subject for o in certs)]
    if len(leaves) != 1:
        raise SignatureInvalid("KeyInfo/X509Data holds several certificates and no single signer among them")
    return leaves[0]


class SignatureVerifier:
    """Verifies enveloped signatures and signers' certificates against one trust configuration."""

    def __init__(
        self,
        trust: TrustStore,
        clock: Clock,
        *,
        revocation: RevocationCheck | None = None,
        registry: ProviderRegistry = DEFAULT_REGISTRY,
        max_bytes: int = DEFAULT_MAX_BYTES,
        tsa: TsaTrust | None = None,
    ) -> None:
        self.trust = trust
        self.clock = clock
        self.revocation = revocation
        self.registry = registry
        self.max_bytes = max_bytes
        self._certificates = _CertificateCache()
        # Without trust.tsa_dir a timestamp is ignored (the contract): the certificate is judged at reception.
        self.timestamps = None if tsa is None else TimestampVerifier(
            tsa, registry, revocation=self._tsa_revocation if revocation is not None else None)

    @property
    def crl_index(self) -> CrlIndex | None:
        """The CRL index revocation uses (as its source or its fallback), if any."""
        revocation = self.revocation
        if isinstance(revocation, Revocation):
            for source in (revocation.source, revocation.fallback):
                if isinstance(source, CrlIndex):
                    return source
        return revocation if isinstance(revocation, CrlIndex) else None

    def _tsa_revocation(self, cert: x509.Certificate, issuer: x509.Certificate, gen_time: datetime) -> None:
        assert self.revocation is not None
        self.revocation.check(cert, issuer, self.clock.now(), signed_at=gen_time)

    # --- the whole payload ----------------------------------------------------------------------------

    def verify_enveloped(self, payload: bytes | memoryview, *, received_at: datetime | None = None,
                         at: datetime | None = None, strict_numbers: bool = True) -> VerifiedDocument:
        """Verify the enveloped signature over `payload` (a standalone XML document) and its signer.

        `received_at` is when the payload arrived (default now): a timestamp's genTime may not be later.
        `at` judges the certificate at that time when no timestamp proves the signing time (default now).
        `strict_numbers=False` (`licgate verify`, no application bound) does not refuse an IIN or BIN whose
        check digit fails; the caller warns about it."""
        received_at = received_at or self.clock.now()
        root = parse_xml(payload, max_bytes=self.max_bytes)
        signature = find_signature(root)
        parts = self._read_signature(signature)

        try:
            if len(payload) >= LARGE_TEXT:
                # A text node this long may be in it: canonicalized and digested in pieces (memory).
                hasher = self.registry.hasher(parts.digest_method)
                digest_enveloped(root, signature, parts.reference_c14n, hasher.update, parts.reference_prefixes)
                digest = hasher.digest()
            else:
                octets = canonicalize_enveloped(root, signature, parts.reference_c14n, parts.reference_prefixes)
                digest = self.registry.digest(parts.digest_method, octets)
            signed_info = canonicalize(parts.signed_info, parts.c14n_method, prefixes=parts.c14n_prefixes)
            properties = parts.properties
            properties_digest = None if properties is None else self.registry.digest(
                properties.digest_method,
                # A same-document "#Id" reference never covers comments either (XMLDSig 4.3.3.3).
                canonicalize(properties.target, properties.c14n, with_comments=False, prefixes=properties.prefixes))
        except etree.C14NError:  # e.g. a relative namespace URI, which C14N forbids
            raise SignatureInvalid("the payload cannot be canonicalized (relative namespace URI?)") from None
        if not hmac.compare_digest(digest, parts.digest_value):
            raise SignatureInvalid("the payload does not match the digest in its signature (changed after signing)")
        if properties is not None and not hmac.compare_digest(properties_digest or b"", properties.digest_value):
            raise SignatureInvalid("xades:SignedProperties do not match their digest (changed after signing)")
        if not self.registry.verify(parts.signature_method, parts.certificate, parts.signature_value, signed_info):
            raise SignatureInvalid("the signature value does not verify with the signer's certificate")
        if parts.qualifying is not None:
            xades.check_signing_certificate(parts.qualifying.signed_properties, parts.certificate, self.registry)

        stamp = self._timestamp(parts, received_at)
        signed_at = stamp.gen_time if stamp is not None else None
        signer = self.check_certificate(parts.certificate, at=at, signed_at=signed_at, strict_numbers=strict_numbers)
        etree.strip_tags(root, etree.Comment)  # comments were not signed: the caller must not read them
        return VerifiedDocument(root=root, signer=signer, certificate=parts.certificate,
                                signature_method=parts.signature_method, signed_at=signed_at, timestamp=stamp)

    def _timestamp(self, parts: _SignatureParts, received_at: datetime) -> TimeStamp | None:
        """The verified XAdES-T timestamp over the SignatureValue, None without one (or without tsa_dir)."""
        if self.timestamps is None or parts.qualifying is None or not parts.qualifying.timestamps:
            return None
        if len(parts.qualifying.timestamps) > 1:
            raise TimestampInvalid(f"{len(parts.qualifying.timestamps)} SignatureTimeStamps: at most one is accepted")
        stamp = xades.read_timestamp(parts.qualifying.timestamps[0])
        try:
            stamped = canonicalize(parts.signature_value_element, stamp.c14n_method)
        except etree.C14NError:
            raise TimestampInvalid("ds:SignatureValue cannot be canonicalized") from None
        return self.timestamps.verify(stamp.token, stamped, received_at)

    def _read_signature(self, signature: etree._Element) -> _SignatureParts:
        children = child_elements(signature)
        names = [c.tag for c in children]
        if names[:2] != [ds("SignedInfo"), ds("SignatureValue")] or names[2:] not in _TAILS:
            found = ", ".join(etree.QName(n).localname for n in names)
            raise SignatureInvalid("Signature must hold SignedInfo, SignatureValue, KeyInfo and at most one Object "
                                   f"(XAdES), not: {found}")
        signed_info, signature_value = children[0], children[1]
        key_info = next((c for c in children[2:] if c.tag == ds("KeyInfo")), None)
        obj = next((c for c in children[2:] if c.tag == ds("Object")), None)
        qualifying = xades.read_object(signature, obj) if obj is not None else None

        info = child_elements(signed_info)
        if [c.tag for c in info[:2]] != [ds("CanonicalizationMethod"), ds("SignatureMethod")]:
            raise SignatureInvalid("SignedInfo must start with CanonicalizationMethod and SignatureMethod")
        references = info[2:]
        if not 1 <= len(references) <= 2 or any(r.tag != ds("Reference") for r in references):
            raise SignatureInvalid(f"one Reference (two with XAdES SignedProperties) is accepted, found "
                                   f"{len(references)} elements after SignatureMethod")
        if len(references) == 2 and references[1].get("Type") != xades.SIGNED_PROPERTIES_TYPE:
            raise SignatureInvalid("a second Reference must be the XAdES SignedProperties one (Type "
                                   f"{xades.SIGNED_PROPERTIES_TYPE})")
        if qualifying is not None and len(references) != 2:
            raise SignatureInvalid("the XAdES SignedProperties are not signed (no Reference of Type SignedProperties)")
        c14n_method = self._c14n_method(info[0].get("Algorithm"))
        signature_method = info[1].get("Algorithm") or ""
        if child_elements(info[1]):
            raise SignatureInvalid("SignatureMethod parameters (e.g. HMACOutputLength) are not accepted")
        self.registry.signature_provider(signature_method)  # ALGORITHM_UNSUPPORTED before any work

        reference = references[0]
        if reference.get("Type") == xades.SIGNED_PROPERTIES_TYPE:
            raise SignatureInvalid("the first Reference must cover the whole payload, not the SignedProperties")
        uri = reference.get("URI")
        if uri != "":
            shown = "no URI" if uri is None else f"URI={uri[:80]!r}"
            raise SignatureInvalid(f"the reference must cover the whole payload (URI=\"\"), not {shown}")
        ref_children = child_elements(reference)
        if [c.tag for c in ref_children] != [ds("Transforms"), ds("DigestMethod"), ds("DigestValue")]:
            raise SignatureInvalid("Reference must hold Transforms, DigestMethod and DigestValue")
        transforms, digest_method_el, digest_value_el = ref_children
        reference_c14n, reference_prefixes = self._transforms(transforms)
        digest_method = digest_method_el.get("Algorithm") or ""
        self.registry.digest_provider(digest_method)

        properties = self._properties_reference(references[1], qualifying) if len(references) == 2 else None
        certificate = signer_certificate(read_certificates(key_info, self._certificates))
        return _SignatureParts(
            signed_info=signed_info,
            c14n_method=c14n_method,
            c14n_prefixes=inclusive_prefixes(info[0]),
            signature_method=signature_method,
            reference_c14n=reference_c14n,
            reference_prefixes=reference_prefixes,
            digest_method=digest_method,
            digest_value=_b64(digest_value_el.text, "DigestValue"),
            signature_value=_b64(signature_value.text, "SignatureValue"),
            certificate=certificate,
            signature_value_element=signature_value,
            properties=properties,
            qualifying=qualifying,
        )

    def _properties_reference(self, reference: etree._Element,
                              qualifying: xades.Qualifying | None) -> _PropertiesReference:
        target = xades.resolve_signed_properties(reference, qualifying)
        ref_children = child_elements(reference)
        tags = [c.tag for c in ref_children]
        if tags == [ds("Transforms"), ds("DigestMethod"), ds("DigestValue")]:
            steps = child_elements(ref_children[0])
            if len(steps) != 1 or steps[0].tag != ds("Transform"):
                raise SignatureInvalid("the SignedProperties reference may carry one transform, a canonicalization")
            method, prefixes = self._c14n_method(steps[0].get("Algorithm")), inclusive_prefixes(steps[0])
            ref_children = ref_children[1:]
        elif tags == [ds("DigestMethod"), ds("DigestValue")]:
            method, prefixes = C14N, None  # a node-set becomes octets by inclusive C14N
        else:
            raise SignatureInvalid("the SignedProperties Reference must hold [Transforms,] DigestMethod, DigestValue")
        digest_method = ref_children[0].get("Algorithm") or ""
        self.registry.digest_provider(digest_method)
        return _PropertiesReference(target=target, c14n=method, prefixes=prefixes, digest_method=digest_method,
                                    digest_value=_b64(ref_children[1].text, "DigestValue"))

    @staticmethod
    def _c14n_method(algorithm: str | None) -> str:
        if algorithm in C14N_METHODS:
            return algorithm
        if algorithm in C14N_UNSUPPORTED:
            raise AlgorithmUnsupported(f"canonicalization {algorithm}: not implemented")
        raise AlgorithmUnsupported(f"canonicalization {str(algorithm)[:200]!r}: unknown")

    def _transforms(self, transforms: etree._Element) -> tuple[str, list[str] | None]:
        """(the reference's c14n method, its InclusiveNamespaces) for [enveloped] or [enveloped, c14n]."""
        steps = child_elements(transforms)
        if any(step.tag != ds("Transform") for step in steps):
            raise SignatureInvalid("Transforms may hold Transform elements only")
        algorithms = [step.get("Algorithm") for step in steps]
        if not algorithms or algorithms[0] != ENVELOPED:
            raise SignatureInvalid("the first transform must be enveloped-signature (the signature is enveloped)")
        if len(algorithms) == 1:
            return C14N, None  # XMLDSig: a node-set becomes octets by inclusive C14N
        if len(algorithms) == 2 and (algorithms[1] in C14N_METHODS or algorithms[1] in C14N_UNSUPPORTED):
            method = self._c14n_method(algorithms[1])
            return method, inclusive_prefixes(steps[1])
        raise SignatureInvalid("only enveloped-signature followed by one canonicalization is accepted as transforms")

    # --- the certificate ------------------------------------------------------------------------------

    def check_certificate(self, cert: x509.Certificate, *, purpose: str = "signing", at: datetime | None = None,
                          signed_at: datetime | None = None, strict_numbers: bool = True) -> SignerIdentity:
        """Validity, path to a pinned root, key purpose, revocation and the NCA profile of `cert`.

        `purpose` is "signing" (documents: CERT_NOT_FOR_SIGNING for authentication keys) or "transport"
        (WS-Security keys: digitalSignature only). `signed_at` is a proven signing time: the path must be
        valid then, and only a revocation that counts for it refuses (`signing.revocation.judge`); without
        it the certificate is judged at `at` (default now). Revocation data must be current either way.
        """
        now = self.clock.now()
        judged_at = signed_at or at or now
        facts = self._certificates.facts(cert)
        chain = self.trust.validate(facts.cert, judged_at, fingerprint=facts.fingerprint)
        if purpose not in facts.purposes_ok:
            if purpose == "signing":
                profile.check_signing_key(cert)
            else:
                profile.check_transport_key(cert)
            facts.purposes_ok.add(purpose)
        if self.revocation is not None:
            self.revocation.check(cert, chain[1] if len(chain) > 1 else chain[0], now,
                                  signed_at=signed_at if signed_at is not None else at)
        if not strict_numbers:
            return facts.identity or profile.signer_identity(cert, strict=False)
        if facts.identity is None:
            facts.identity = profile.signer_identity(cert)
        return facts.identity


def build_verifier(
    trust_config: TrustConfig,
    clock: Clock,
    *,
    http_client: httpx.Client | None = None,
    registry: ProviderRegistry | None = None,
    crl_recheck_seconds: float = 1.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    observe: Observer | None = None,
) -> SignatureVerifier:
    """The verifier for a `[trust]` configuration: pinned CAs from `ca_dir`, revocation by `revocation`
    ("crl": `crl_dir`; "ocsp": AIA or `ocsp_url`, through `http_client` or a client of its own, with the
    CRLs of `crl_dir` behind it when `revocation_fallback = "crl"`; "off"), TSAs from `tsa_dir` (unset:
    timestamps are ignored). `observe(source, outcome)` hears every revocation outcome (for /metrics).
    The algorithms are those of `crypto_providers` (`signing.providers.build_registry`) unless a `registry`
    is given: built from the configuration, they are the same in every process that builds a verifier."""
    if registry is None:
        registry = build_registry(trust_config.crypto_providers)
    trust = TrustStore(trust_config.ca_dir, registry=registry)
    revocation: Revocation | None = None

    def crl_index() -> CrlIndex:
        index = CrlIndex(trust_config.crl_dir, trust, recheck_seconds=crl_recheck_seconds)
        index.refresh(wait=True)  # index now, not on the first request
        return index

    if trust_config.revocation == "crl":
        revocation = Revocation(crl_index(), observe=observe)
    elif trust_config.revocation == "ocsp":
        client = http_client or httpx.Client(timeout=trust_config.ocsp_timeout_seconds)
        ocsp = OcspChecker(trust, client, url=trust_config.ocsp_url, timeout=trust_config.ocsp_timeout_seconds,
                           max_age=timedelta(seconds=trust_config.ocsp_max_age_seconds))
        fallback = crl_index() if trust_config.revocation_fallback == "crl" else None
        revocation = Revocation(ocsp, fallback=fallback, observe=observe)
    elif trust_config.revocation != "off":
        raise ValueError(f"trust.revocation must be crl, ocsp or off, not {trust_config.revocation!r}")
    tsa = TsaTrust(trust_config.tsa_dir) if trust_config.tsa_dir is not None else None
    return SignatureVerifier(trust, clock, revocation=revocation, registry=registry, max_bytes=max_bytes, tsa=tsa)
