"""Crypto providers: the algorithms behind XMLDSig URIs, as a registry the verifier and signers consult.

A provider says which SignatureMethod and DigestMethod URIs it implements and does the arithmetic. The
default provider does RSA (PKCS#1 v1.5) and ECDSA with SHA-2 through `cryptography`. The GOST URIs used
by NCA RK (docs/signing.md) are known by name, so a document signed with them is answered with
ALGORITHM_UNSUPPORTED naming the algorithm until a provider for them is installed.

Which providers a process uses is configuration, not code: `build_registry(names)` builds the registry of
`[trust] crypto_providers` (None: every provider that is installed), from the providers built in here
(`gost`: `signing.gostprovider`, available with the `gost` extra) and those other packages declare under
the entry point group `licgate.crypto_providers` (a callable returning a CryptoProvider, raising
ProviderUnavailable when what it needs is missing). The verifier is built from the trust configuration
(`signing.verifier.build_verifier`), in the serving process and in every intake worker alike, so all of them
answer the same algorithms. A later provider wins for the URIs it claims. SHA-1 based methods are
deliberately absent.

A provider may also verify X.509 signatures (certificates, CRLs, OCSP responses) of algorithms
`cryptography` cannot: it lists their OIDs in `x509_signature_algorithms` and implements
`verify_x509(algorithm_oid, issuer, signature, tbs) -> bool`.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from core.errors import AlgorithmUnsupported

log = logging.getLogger("licgate.signing")

# XMLDSig algorithm URIs (W3C XMLDSig, RFC 6931).
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

# NCA RK's GOST algorithms (docs/signing.md): recognised, not implemented by the default provider.
GOST34310_SIGNATURE = "http://www.w3.org/2001/04/xmldsig-more#gost34310-gost34311"
GOST34311_DIGEST = "http://www.w3.org/2001/04/xmldsig-more#gost34311"
_PKIGOVKZ = "urn:ietf:params:xml:ns:pkigovkz:xmlsec:algorithms:"
GOST2015_512_SIGNATURE = _PKIGOVKZ + "gostr34102015-gostr34112015-512"
GOST2015_256_SIGNATURE = _PKIGOVKZ + "gostr34102015-gostr34112015-256"
GOST2015_512_DIGEST = _PKIGOVKZ + "gostr34112015-512"
GOST2015_256_DIGEST = _PKIGOVKZ + "gostr34112015-256"

KNOWN_ALGORITHMS: dict[str, str] = {
    GOST34310_SIGNATURE: "GOST 34.310-2004 with GOST 34.311-95",
    GOST34311_DIGEST: "GOST 34.311-95",
    GOST2015_512_SIGNATURE: "GOST R 34.10-2015 with GOST R 34.11-2015 (512 bit)",
    GOST2015_256_SIGNATURE: "GOST R 34.10-2015 with GOST R 34.11-2015 (256 bit)",
    GOST2015_512_DIGEST: "GOST R 34.11-2015 (512 bit)",
    GOST2015_256_DIGEST: "GOST R 34.11-2015 (256 bit)",
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": "RSA with SHA-1 (not accepted: SHA-1 is broken)",
    "http://www.w3.org/2000/09/xmldsig#sha1": "SHA-1 (not accepted: SHA-1 is broken)",
    "http://www.w3.org/2000/09/xmldsig#hmac-sha1": "HMAC (not accepted: no shared keys)",
}


@runtime_checkable
class CryptoProvider(Protocol):
    """What a provider implements. `verify` returns False for a wrong signature (never raises for it)."""

    name: str
    signature_methods: frozenset[str]
    digest_methods: frozenset[str]

    def digest(self, method: str, data: bytes) -> bytes: ...

    def verify(self, method: str, certificate: x509.Certificate, signature: bytes, data: bytes) -> bool: ...


class X509Verifier(Protocol):
    """What a provider that verifies X.509 signatures adds (certificates, CRLs, OCSP responses)."""

    x509_signature_algorithms: frozenset[str]

    def verify_x509(self, algorithm_oid: str, issuer: x509.Certificate, signature: bytes, tbs: bytes) -> bool: ...


class ProviderUnavailable(Exception):
    """A provider that cannot work in this installation (e.g. its extra is not installed); says how to fix."""


class Hasher(Protocol):
    """A digest fed in pieces (hashlib's interface). A provider may offer `hasher(method) -> Hasher`; for
    one that does not, the registry joins the pieces and calls its `digest`."""

    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    RSA_SHA256: hashes.SHA256, RSA_SHA384: hashes.SHA384, RSA_SHA512: hashes.SHA512,
    ECDSA_SHA256: hashes.SHA256, ECDSA_SHA384: hashes.SHA384, ECDSA_SHA512: hashes.SHA512,
}
_DIGESTS = {SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}


class DefaultProvider:
    """RSA PKCS#1 v1.5 and ECDSA over SHA-2, through `cryptography`."""

    name = "cryptography"
    signature_methods = frozenset(_HASHES)
    digest_methods = frozenset(_DIGESTS)

    def digest(self, method: str, data: bytes) -> bytes:
        return hashlib.new(_DIGESTS[method], data).digest()

    def hasher(self, method: str) -> Hasher:
        return hashlib.new(_DIGESTS[method])

    def verify(self, method: str, certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
        try:
            key = certificate.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):  # a key cryptography cannot read (e.g. GOST)
            return False
        algorithm = _HASHES[method]()
        try:
            if "#rsa-" in method:
                if not isinstance(key, rsa.RSAPublicKey):
                    return False
                key.verify(signature, data, padding.PKCS1v15(), algorithm)
            else:
                if not isinstance(key, ec.EllipticCurvePublicKey):
                    return False
                # XMLDSig carries ECDSA as r || s, each as long as the curve's order (RFC 4050).
                size = (key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algorithm))
        except InvalidSignature:
            return False
        return True


class ProviderRegistry:
    """URI -> provider. Unknown and unimplemented URIs raise AlgorithmUnsupported naming the algorithm."""

    def __init__(self, providers: tuple[CryptoProvider, ...] = ()) -> None:
        self._signature: dict[str, CryptoProvider] = {}
        self._digest: dict[str, CryptoProvider] = {}
        self._x509: dict[str, X509Verifier] = {}
        self.names: tuple[str, ...] = ()
        for provider in providers:
            self.register(provider)

    def register(self, provider: CryptoProvider) -> None:
        for uri in provider.signature_methods:
            self._signature[uri] = provider
        for uri in provider.digest_methods:
            self._digest[uri] = provider
        for oid in getattr(provider, "x509_signature_algorithms", ()):
            self._x509[oid] = provider  # type: ignore[assignment]
        if provider.name not in self.names:
            self.names = (*self.names, provider.name)

    def verifies_x509(self, algorithm_oid: str) -> bool:
        """Whether a provider here verifies X.509 signatures of `algorithm_oid` (cryptography does the rest)."""
        return algorithm_oid in self._x509

    def verify_x509(self, algorithm_oid: str, issuer: x509.Certificate, signature: bytes, tbs: bytes) -> bool:
        """Whether `issuer`'s key made `signature` (an X.509 signature BIT STRING's bytes) over `tbs`."""
        provider = self._x509.get(algorithm_oid)
        if provider is None:
            raise AlgorithmUnsupported(f"X.509 signature algorithm {algorithm_oid}: no crypto provider for it")
        return provider.verify_x509(algorithm_oid, issuer, signature, tbs)

    def signature_provider(self, method: str) -> CryptoProvider:
        provider = self._signature.get(method)
        if provider is None:
            raise AlgorithmUnsupported(f"signature method {_describe(method)}: {_missing(method)}")
        return provider

    def digest_provider(self, method: str) -> CryptoProvider:
        provider = self._digest.get(method)
        if provider is None:
            raise AlgorithmUnsupported(f"digest method {_describe(method)}: {_missing(method)}")
        return provider

    def digest(self, method: str, data: bytes) -> bytes:
        return self.digest_provider(method).digest(method, data)

    def hasher(self, method: str) -> Hasher:
        """A digest of `method` to feed in pieces."""
        provider = self.digest_provider(method)
        make = getattr(provider, "hasher", None)
        return make(method) if make is not None else _Joining(provider, method)

    def verify(self, method: str, certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
        return self.signature_provider(method).verify(method, certificate, signature, data)


class _Joining:
    """The Hasher of a provider that digests whole byte strings only."""

    def __init__(self, provider: CryptoProvider, method: str) -> None:
        self._provider = provider
        self._method = method
        self._pieces: list[bytes] = []

    def update(self, data: bytes, /) -> None:
        self._pieces.append(bytes(data))

    def digest(self) -> bytes:
        return self._provider.digest(self._method, b"".join(self._pieces))


def _describe(uri: str) -> str:
    name = KNOWN_ALGORITHMS.get(uri)
    return f"{name} ({uri})" if name else repr(uri[:200])


_RETIRED = frozenset({GOST34310_SIGNATURE, GOST34311_DIGEST})
_GOST_2015 = frozenset({GOST2015_512_SIGNATURE, GOST2015_256_SIGNATURE, GOST2015_512_DIGEST, GOST2015_256_DIGEST})


def _missing(uri: str) -> str:
    if uri in _RETIRED:
        return "retired by NCA RK, not supported"
    if uri in _GOST_2015:
        return "no crypto provider for it is installed (GOST needs the `gost` extra: pip install 'licgate[gost]')"
    return "no crypto provider for it is installed"


def default_registry() -> ProviderRegistry:
    """A fresh registry holding the default provider (RSA and ECDSA) only."""
    return ProviderRegistry((DefaultProvider(),))


DEFAULT_REGISTRY = default_registry()
"""RSA and ECDSA only: what signers of this project use for SHA-2 digests. Verifiers take theirs from
`build_registry` (the configuration)."""

ENTRY_POINT_GROUP = "licgate.crypto_providers"
# Providers that come with licgate (their extra may still be missing): name -> "module:callable".
BUILTIN_PROVIDERS: dict[str, str] = {"gost": "signing.gostprovider:load"}

_registries: dict[tuple[str, ...] | None, ProviderRegistry] = {}
_registries_lock = threading.Lock()


def _factories() -> dict[str, Callable[[], CryptoProvider]]:
    """Every provider known by name: the built-in ones, then the entry points of installed packages."""
    found: dict[str, Callable[[], CryptoProvider]] = {}

    def builtin(target: str) -> Callable[[], CryptoProvider]:
        def load() -> CryptoProvider:
            module, _, attribute = target.partition(":")
            return getattr(importlib.import_module(module), attribute)()
        return load

    for name, target in BUILTIN_PROVIDERS.items():
        found[name] = builtin(target)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found and entry.value == BUILTIN_PROVIDERS.get(entry.name):
            continue  # licgate's own entry point for a built-in provider
        found[entry.name] = lambda entry=entry: entry.load()()
    return found


def available_providers() -> dict[str, str]:
    """name -> "available" or why not, for every provider known (built in or by entry point)."""
    out: dict[str, str] = {DefaultProvider.name: "available"}
    for name, factory in _factories().items():
        try:
            factory()
        except ProviderUnavailable as exc:
            out[name] = str(exc)
        else:
            out[name] = "available"
    return out


def build_registry(names: tuple[str, ...] | None = None) -> ProviderRegistry:
    """The registry of the providers named (`[trust] crypto_providers`), on top of the default provider.

    `names=None` takes every known provider that is available (the default: installing the `gost` extra
    is enough); a named provider that is unknown or unavailable raises ValueError saying why. One registry
    per name list per process (providers keep caches of decoded keys)."""
    key = tuple(names) if names is not None else None
    with _registries_lock:
        registry = _registries.get(key)
        if registry is not None:
            return registry
        factories = _factories()
        providers: list[CryptoProvider] = [DefaultProvider()]
        for name in (factories if names is None else names):
            if name == DefaultProvider.name:
                continue
            factory = factories.get(name)
            if factory is None:
                known = ", ".join(sorted({DefaultProvider.name, *factories}))
                raise ValueError(f"unknown crypto provider {name!r} (known: {known})")
            try:
                providers.append(factory())
            except ProviderUnavailable as exc:
                if names is not None:
                    raise ValueError(f"crypto provider {name!r} is not available: {exc}") from None
                log.debug("crypto provider %s not available: %s", name, exc)
        registry = _registries[key] = ProviderRegistry(tuple(providers))
        return registry
