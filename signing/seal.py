"""The gateway's seal: the key that signs the message log's checkpoints (docs/audit.md), RSA or EC, and
the check of such a signature with the seal's certificate alone (an evidence bundle is checked offline).

RSA signs with PKCS#1 v1.5 and SHA-256, EC with ECDSA and SHA-256 (DER-encoded signature). GOST seal keys
are not supported yet: `Seal` refuses them with a clear error.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


class SealError(ValueError):
    """The seal key or certificate cannot be used."""


class Seal:
    """A private key and its certificate (PEM)."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SealError(f"not a PEM private key without a passphrase ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - cryptography's unsupported-algorithm errors vary
            raise SealError(f"unsupported key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SealError("the seal key must be RSA or EC")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise SealError(f"not a PEM certificate ({exc})") from None
        if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo):
            raise SealError("the certificate is not the key's")
        self._key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_id = key_id(self.cert_pem)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def key_id(cert_pem: bytes) -> str:
    """The first 8 hex digits of the SHA-256 of the certificate's DER: names the key in a signature line."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()[:8]


def verify_seal(cert_pem: bytes, data: bytes, signature: bytes) -> bool:
    """True when `signature` over `data` verifies with the certificate's key."""
    try:
        public = x509.load_pem_x509_certificate(cert_pem).public_key()
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):  # a foreign certificate too: no
        return False
    return True


def make_seal(common_name: str = "licgate audit seal") -> tuple[bytes, bytes]:
    """A new EC P-256 key and a self-signed certificate for it (ten years), both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
