"""The GOST crypto provider: GOST R 34.10-2015 (256 and 512 bit) with Streebog, as NCA RK issues it.

It implements the `pkigovkz` SignatureMethod and DigestMethod URIs of XMLDSig (payloads, results,
WS-Security, XAdES properties) and the GOST signature OIDs of X.509 (certificates, CRLs, OCSP responses),
with the arithmetic of `signing.gost`. It is named `gost` (`[trust] crypto_providers`) and needs the `gost`
extra (gmpy2, `pip install 'licgate[gost]'`): without it `load()` raises ProviderUnavailable and GOST stays
ALGORITHM_UNSUPPORTED. (signing.gost also runs on plain Python ints, about 2.5 times slower; the extra is
what makes the provider fit for a gateway, so it is what turns it on.)

A signature method whose size does not match the certificate's key (a -256 method with a 512-bit key), a
GOST method with an RSA key, or a key on a curve of another size: not a valid signature (False, which the
verifier answers SIGNATURE_INVALID). A retired GOST 34.310-2004 key is never a GOST 2015 key either.
"""

from __future__ import annotations

from cryptography import x509

from signing import gost
from signing.gost.curves import SIGNATURE_ALGORITHMS
from signing.providers import (
    GOST2015_256_DIGEST,
    GOST2015_256_SIGNATURE,
    GOST2015_512_DIGEST,
    GOST2015_512_SIGNATURE,
    Hasher,
    ProviderUnavailable,
)

_SIGNATURE_BITS = {GOST2015_512_SIGNATURE: 512, GOST2015_256_SIGNATURE: 256}
_DIGEST_BITS = {GOST2015_512_DIGEST: 512, GOST2015_256_DIGEST: 256}


class GostProvider:
    """GOST R 34.10-2015 / Streebog for XMLDSig URIs and X.509 signature OIDs (NCA's and TC26's)."""

    name = "gost"
    signature_methods = frozenset(_SIGNATURE_BITS)
    digest_methods = frozenset(_DIGEST_BITS)
    x509_signature_algorithms = frozenset(SIGNATURE_ALGORITHMS)

    def digest(self, method: str, data: bytes) -> bytes:
        return gost.hash_streebog(_DIGEST_BITS[method], data)

    def hasher(self, method: str) -> Hasher:
        return gost.new_streebog(_DIGEST_BITS[method])

    @staticmethod
    def _key(certificate: x509.Certificate) -> gost.CertificateKey | None:
        try:
            return gost.public_key_from_certificate(certificate)
        except ValueError:  # not a GOST 2015 key (RSA, retired 34.310, unknown curve) or not a valid point
            return None

    def verify(self, method: str, certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
        bits = _SIGNATURE_BITS[method]
        key = self._key(certificate)
        if key is None or key.bits != bits:
            return False
        return gost.verify(key.curve, key.public_key, gost.hash_streebog(bits, data), signature)

    def verify_x509(self, algorithm_oid: str, issuer: x509.Certificate, signature: bytes, tbs: bytes) -> bool:
        key = self._key(issuer)
        return key is not None and gost.verify_signed_data(key, algorithm_oid, tbs, signature)


def load() -> GostProvider:
    """The provider, or ProviderUnavailable when the `gost` extra is not installed."""
    try:
        import gmpy2  # noqa: F401 - the extra's dependency
    except ImportError:
        raise ProviderUnavailable("the `gost` extra is not installed (pip install 'licgate[gost]')") from None
    return GostProvider()
