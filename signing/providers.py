"""Crypto providers: the algorithms behind XMLDSig URIs, as a registry the verifier and signers consult.

A provider says which SignatureMethod and DigestMethod URIs it implements and does the arithmetic. The
default provider does RSA (PKCS#1 v1.5) and ECDSA with SHA-2 through `cryptography`. The GOST URIs used
by NCA RK (docs/signing.md) are known by name, so a document signed with them is answered with
ALGORITHM_UNSUPPORTED naming the algorithm until a provider for them is registered:

    from signing.providers import DEFAULT_REGISTRY
    DEFAULT_REGISTRY.register(MyGostProvider())   # implements the CryptoProvider protocol below

A later registration wins for the URIs it claims. SHA-1 based methods are deliberately absent.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from core.errors import AlgorithmUnsupported

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
        for provider in providers:
            self.register(provider)

    def register(self, provider: CryptoProvider) -> None:
        for uri in provider.signature_methods:
            self._signature[uri] = provider
        for uri in provider.digest_methods:
            self._digest[uri] = provider

    def signature_provider(self, method: str) -> CryptoProvider:
        provider = self._signature.get(method)
        if provider is None:
            raise AlgorithmUnsupported(f"signature method {_describe(method)}: no crypto provider for it is installed")
        return provider

    def digest_provider(self, method: str) -> CryptoProvider:
        provider = self._digest.get(method)
        if provider is None:
            raise AlgorithmUnsupported(f"digest method {_describe(method)}: no crypto provider for it is installed")
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


def default_registry() -> ProviderRegistry:
    """A fresh registry holding the default provider."""
    return ProviderRegistry((DefaultProvider(),))


DEFAULT_REGISTRY = default_registry()
