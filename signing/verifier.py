"""Verification of the enveloped XML signature over a whole payload, then of its signer's certificate.

`SignatureVerifier.verify_enveloped(payload)` hands back the verified document and who signed it; callers
read the application only from `VerifiedDocument.root` (like signxml's `signed_xml`). The checks, in order,
each with its error code:

1. parse the bytes that arrived with the hardened parser (no re-serialisation anywhere after this);
2. shape: exactly one `Signature` (found by namespace, any prefix), the last element child of the root, with
   SignedInfo, SignatureValue, KeyInfo and nothing else (no Object), exactly one Reference, `URI=""`,
   transforms enveloped-signature then optionally one c14n: SIGNATURE_MISSING / SIGNATURE_INVALID;
3. algorithms (c14n, SignatureMethod, DigestMethod) come from the provider registry:
   ALGORITHM_UNSUPPORTED names what is missing (e.g. GOST);
4. the digest of the document without the signature, comments excluded (a `URI=""` reference never
   covers comments, whatever the c14n says), then the signature over the canonical SignedInfo with the key
   of the certificate in `KeyInfo/X509Data`: SIGNATURE_INVALID;
5. the certificate: validity period, path to a pinned root, key usage, revocation, then the NCA profile
   (IIN/BIN check digits) — see `check_certificate`.

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
from core.errors import AlgorithmUnsupported, SignatureInvalid, SignatureMissing
from core.xmlsafe import DEFAULT_MAX_BYTES, parse_xml
from signing import profile
from signing.providers import DEFAULT_REGISTRY, ProviderRegistry
from signing.revocation import CrlIndex, OcspChecker
from signing.trust import TrustConfig, TrustStore
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


class RevocationCheck(Protocol):
    """What the verifier needs from a revocation source (`CrlIndex`, `OcspChecker`): raise CertRevoked or
    CertStatusUnknown, return for a good certificate."""

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> None: ...


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
        facts = _CertificateFacts(x509.load_der_x509_certificate(der))
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
    ) -> None:
        self.trust = trust
        self.clock = clock
        self.revocation = revocation
        self.registry = registry
        self.max_bytes = max_bytes
        self._certificates = _CertificateCache()

    # --- the whole payload ----------------------------------------------------------------------------

    def verify_enveloped(self, payload: bytes | memoryview) -> VerifiedDocument:
        """Verify the enveloped signature over `payload` (a standalone XML document) and its signer."""
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
        except etree.C14NError:  # e.g. a relative namespace URI, which C14N forbids
            raise SignatureInvalid("the payload cannot be canonicalized (relative namespace URI?)") from None
        if not hmac.compare_digest(digest, parts.digest_value):
            raise SignatureInvalid("the payload does not match the digest in its signature (changed after signing)")
        if not self.registry.verify(parts.signature_method, parts.certificate, parts.signature_value, signed_info):
            raise SignatureInvalid("the signature value does not verify with the signer's certificate")

        signer = self.check_certificate(parts.certificate)
        etree.strip_tags(root, etree.Comment)  # comments were not signed: the caller must not read them
        return VerifiedDocument(root=root, signer=signer, certificate=parts.certificate,
                                signature_method=parts.signature_method)

    def _read_signature(self, signature: etree._Element) -> _SignatureParts:
        children = child_elements(signature)
        names = [c.tag for c in children]
        if names[:2] != [ds("SignedInfo"), ds("SignatureValue")] or names[2:] not in ([], [ds("KeyInfo")]):
            found = ", ".join(etree.QName(n).localname for n in names)
            raise SignatureInvalid(f"Signature must hold SignedInfo, SignatureValue and KeyInfo only, not: {found}")
        signed_info, signature_value = children[0], children[1]
        key_info = children[2] if len(children) > 2 else None

        info = child_elements(signed_info)
        if [c.tag for c in info[:2]] != [ds("CanonicalizationMethod"), ds("SignatureMethod")]:
            raise SignatureInvalid("SignedInfo must start with CanonicalizationMethod and SignatureMethod")
        references = info[2:]
        if len(references) != 1 or references[0].tag != ds("Reference"):
            raise SignatureInvalid(f"exactly one Reference is accepted, found {len(references)} elements after "
                                   "SignatureMethod")
        c14n_method = self._c14n_method(info[0].get("Algorithm"))
        signature_method = info[1].get("Algorithm") or ""
        if child_elements(info[1]):
            raise SignatureInvalid("SignatureMethod parameters (e.g. HMACOutputLength) are not accepted")
        self.registry.signature_provider(signature_method)  # ALGORITHM_UNSUPPORTED before any work

        reference = references[0]
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
        )

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

    def check_certificate(self, cert: x509.Certificate, *, purpose: str = "signing") -> SignerIdentity:
        """Validity, path to a pinned root, key purpose, revocation and the NCA profile of `cert`.

        `purpose` is "signing" (documents: CERT_NOT_FOR_SIGNING for authentication keys) or "transport"
        (WS-Security keys: digitalSignature only).
        """
        now = self.clock.now()
        facts = self._certificates.facts(cert)
        chain = self.trust.validate(facts.cert, now, fingerprint=facts.fingerprint)
        if purpose not in facts.purposes_ok:
            if purpose == "signing":
                profile.check_signing_key(cert)
            else:
                profile.check_transport_key(cert)
            facts.purposes_ok.add(purpose)
        if self.revocation is not None:
            self.revocation.check(cert, chain[1] if len(chain) > 1 else chain[0], now)
        if facts.identity is None:
            facts.identity = profile.signer_identity(cert)
        return facts.identity


def build_verifier(
    trust_config: TrustConfig,
    clock: Clock,
    *,
    http_client: httpx.Client | None = None,
    registry: ProviderRegistry = DEFAULT_REGISTRY,
    crl_recheck_seconds: float = 1.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> SignatureVerifier:
    """The verifier for a `[trust]` configuration: pinned CAs from `ca_dir`, revocation by `revocation`
    ("crl": `crl_dir`; "ocsp": AIA or `ocsp_url`, through `http_client` or a client of its own; "off")."""
    trust = TrustStore(trust_config.ca_dir)
    revocation: RevocationCheck | None = None
    if trust_config.revocation == "crl":
        revocation = CrlIndex(trust_config.crl_dir, trust, recheck_seconds=crl_recheck_seconds)
        revocation.refresh()  # index now, not on the first request
    elif trust_config.revocation == "ocsp":
        client = http_client or httpx.Client(timeout=trust_config.ocsp_timeout_seconds)
        revocation = OcspChecker(trust, client, url=trust_config.ocsp_url,
                                 timeout=trust_config.ocsp_timeout_seconds,
                                 max_age=timedelta(seconds=trust_config.ocsp_max_age_seconds))
    elif trust_config.revocation != "off":
        raise ValueError(f"trust.revocation must be crl, ocsp or off, not {trust_config.revocation!r}")
    return SignatureVerifier(trust, clock, revocation=revocation, registry=registry, max_bytes=max_bytes)
