"""GOST cryptography for NCA RK signatures: Streebog (GOST R 34.11-2012/2015) and GOST R 34.10-2012/2015
signatures on the 256- and 512-bit TC26/CryptoPro curves. A pure library: standard library only, plus
`cryptography` to read certificates and, when installed (`pip install 'licgate[gost]'`), gmpy2 for speed.

The calls a crypto provider makes:

    hash_streebog(512, data) -> bytes                 # or new_streebog(512) for a running hash
    key = public_key_from_certificate(cert_der)       # CertificateKey(curve, public_key, ...)
    verify(key.curve, key.public_key, digest, signature_value) -> bool
    verify_signed_data(issuer_key, algorithm_oid, tbs_bytes, signature_bits) -> bool   # certs, CRLs, OCSP
    curve_for_oid("1.2.398.3.10.1.1.2.2.1")           # NCA's and the standard's OIDs alike

and for test PKIs and mocks: generate_private_key(curve), public_key(curve, d), sign(curve, d, digest),
encode_spki(curve, public_key).

Conventions, as found to match KalkanCrypt (tests/signing/gost: the real KalkanCrypt XML signature
tests/data/kalkan/gost2015-legal-entity.xml and NCA's GOST 2022 test root and intermediate):

- A Streebog digest is the standard's vector written little-endian (RFC 6986's printed examples reversed);
  KalkanCrypt's DigestValue is exactly `hash_streebog(512, canonical_bytes)`, base64-encoded.
- The XMLDSig SignatureValue of `...:gostr34102015-gostr34112015-512` is 128 bytes: r (64 bytes,
  little-endian) then s (64 bytes, little-endian), over `hash_streebog(512, c14n(SignedInfo))` read as a
  little-endian integer. No reversal of the whole value and no s-before-r, unlike some GOST XMLDSig
  conventions elsewhere (e.g. RFC 4491's certificate signatures).
- A certificate's public key (key OID 1.2.398.3.10.1.1.2.2, curve 1.2.398.3.10.1.1.2.2.1 = TC26 512
  paramSetA, digest 1.2.398.3.10.1.3.3) is an OCTET STRING inside the BIT STRING: X (64 bytes,
  little-endian) then Y (64 bytes, little-endian).
- A certificate's signature (1.2.398.3.10.1.1.2.3.2) is the BIT STRING's 128 bytes read the same way as
  the SignatureValue, r then s little-endian, over `hash_streebog(512, tbsCertificate)`: the root's
  self-signature, the intermediate's by the root and the signer's by the intermediate all verify so.
- The pure-Python `gostcrypto` package reads every value big-endian; it verifies these signatures once the
  digest, each coordinate and each of r and s are byte-reversed (the tests cross-check both ways).

256-bit keys: NCA's curve 1.2.398.3.10.1.1.2.1.1 is TC26 256 paramSetA (curves.py says how sure that is),
hashed with Streebog-256; everything else is the same with 32-byte halves.
"""

from signing.gost.certificate import (
    CertificateKey,
    UnsupportedKey,
    encode_spki,
    public_key_from_certificate,
    public_key_from_spki,
    verify_certificate_signature,
    verify_signed_data,
)
from signing.gost.curves import CURVES, TC26_256_A, TC26_512_A, Curve, UnknownCurve, curve_for_oid
from signing.gost.signature import InvalidKey, generate_private_key, public_key, sign, verify
from signing.gost.streebog import (
    Hasher,
    Streebog,
    hash_streebog,
    native_streebog,
    new_streebog,
    streebog_implementation,
)

__all__ = [
    "CURVES", "TC26_256_A", "TC26_512_A", "CertificateKey", "Curve", "Hasher", "InvalidKey", "Streebog",
    "UnknownCurve", "UnsupportedKey", "curve_for_oid", "encode_spki", "generate_private_key", "hash_streebog",
    "native_streebog", "new_streebog", "public_key", "public_key_from_certificate", "public_key_from_spki",
    "sign", "streebog_implementation", "verify", "verify_certificate_signature", "verify_signed_data",
]
