"""The NCA RK certificate profile (docs/signing.md): who a certificate names and what its key is for.

Identity: IIN from the subject SERIALNUMBER ("IIN" + 12 digits), BIN from OU ("BIN" + 12 digits) or from a
SERIALNUMBER "BIN…", names from CN / SURNAME / GIVENNAME / O, roles from the extended key usage OIDs. Both
numbers are checked with their check digit (IIN_INVALID / BIN_INVALID).

Purpose: a signing key carries emailProtection and keyUsage digitalSignature + nonRepudiation; an
authentication key (clientAuth) must not be accepted as a signature (CERT_NOT_FOR_SIGNING), even when its
extended key usage lists emailProtection too.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.domain import SignerIdentity
from core.errors import BinInvalid, CertNotForSigning, IinInvalid
from core.identifiers import bin_problem, iin_problem


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _numbers(subject: x509.Name) -> tuple[str | None, str | None]:
    """(IIN, BIN) as written in the subject, without the "IIN"/"BIN" markers."""
    iin = bin_ = None
    for attr in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attr.value).strip()
        if value.upper().startswith("IIN"):
            iin = value[3:]
        elif value.upper().startswith("BIN"):
            bin_ = value[3:]
    for attr in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = str(attr.value).strip()
        if value.upper().startswith("BIN"):
            if bin_ is not None and bin_ != value[3:]:
                raise BinInvalid(f"the certificate names two BINs: {bin_} and {value[3:]}")
            bin_ = value[3:]
    return iin, bin_


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def signer_identity(cert: x509.Certificate, *, strict: bool = True) -> SignerIdentity:
    """The identity a certificate names; raises IinInvalid / BinInvalid for a number with a bad check digit.

    `strict=False` describes a certificate pinned by configuration (a transport key) without judging it.
    """
    subject = cert.subject
    iin, bin_ = _numbers(subject)
    if strict:
        if iin is not None and (problem := iin_problem(iin)):
            raise IinInvalid(f"the certificate's IIN {iin!r}: {problem}")
        if bin_ is not None and (problem := bin_problem(bin_)):
            raise BinInvalid(f"the certificate's BIN {bin_!r}: {problem}")
        if iin is None and bin_ is None:
            raise IinInvalid("the certificate names neither an IIN nor a BIN (not an NCA RK certificate)")
    eku = _eku(cert) or []
    return SignerIdentity(
        common_name=_attr(subject, NameOID.COMMON_NAME) or "",
        iin=iin,
        bin=bin_,
        roles=tuple(oid.dotted_string for oid in eku),
        certificate_serial=format(cert.serial_number, "x"),
        issuer=cert.issuer.rfc4514_string(),
        organization=_attr(subject, NameOID.ORGANIZATION_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
    )


def check_signing_key(cert: x509.Certificate) -> None:
    """CERT_NOT_FOR_SIGNING unless the key is meant for signatures (not authentication): keyUsage must
    include nonRepudiation, and an extended key usage naming clientAuth marks an authentication key."""
    eku = _eku(cert)
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH in eku:
        raise CertNotForSigning("an authentication key: the extended key usage names clientAuth")
    if eku is not None and not ({ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                                & set(eku)):
        raise CertNotForSigning("not a signing key: the extended key usage lacks emailProtection")
    usage = _key_usage(cert)
    if usage is not None and not usage.content_commitment:
        raise CertNotForSigning("not a signing key: keyUsage lacks nonRepudiation")


def check_transport_key(cert: x509.Certificate) -> None:
    """A WS-Security transport key needs digitalSignature (any extended key usage)."""
    usage = _key_usage(cert)
    if usage is not None and not usage.digital_signature:
        raise CertNotForSigning("the transport certificate's keyUsage lacks digitalSignature")
