"""Every refusal licgate can give, one exception class per error code of docs/shep.md.

A refusal is raised where it is detected (adapters, signing, intake, workflow) and turned into a SOAP
Fault or an HTTP error in exactly one place each (the SOAP endpoint and the provider API). The
applicant-facing message comes from the bilingual catalogue in `core.texts`; `data` is the technical
detail for integrators (never a stack trace, never a secret, never document content).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.texts import error_message

if TYPE_CHECKING:
    from core.domain import Step


class LicgateError(Exception):
    """A refusal with its error code (docs/shep.md)."""

    code: str = "INTERNAL_ERROR"
    http_status: int = 422

    def __init__(self, data: str | None = None) -> None:
        super().__init__(f"{self.code}: {data}" if data else self.code)
        self.data = data

    def __reduce__(self) -> tuple:
        # Refusals found in an intake worker process travel back pickled; `args` holds the formatted text.
        return (type(self), (self.data,))

    @property
    def message(self) -> str:
        """The bilingual (Kazakh / Russian) message for this code."""
        return error_message(self.code)


class MalformedMessage(LicgateError):
    code = "MALFORMED_MESSAGE"
    http_status = 400


class MessageTooLarge(LicgateError):
    code = "MESSAGE_TOO_LARGE"
    http_status = 413


class SchemaInvalid(LicgateError):
    code = "SCHEMA_INVALID"
    http_status = 422


class SenderUnknown(LicgateError):
    code = "SENDER_UNKNOWN"
    http_status = 403


class SenderAuthFailed(LicgateError):
    code = "SENDER_AUTH_FAILED"
    http_status = 403


class ServiceNotAllowed(LicgateError):
    code = "SERVICE_NOT_ALLOWED"
    http_status = 403


class ServiceUnknown(LicgateError):
    code = "SERVICE_UNKNOWN"
    http_status = 404


class TransportSignatureInvalid(LicgateError):
    code = "TRANSPORT_SIGNATURE_INVALID"


class SignatureMissing(LicgateError):
    code = "SIGNATURE_MISSING"


class SignatureInvalid(LicgateError):
    code = "SIGNATURE_INVALID"


class AlgorithmUnsupported(LicgateError):
    code = "ALGORITHM_UNSUPPORTED"


class TimestampInvalid(LicgateError):
    """A XAdES SignatureTimeStamp that does not parse or verify, or does not prove a time (docs/signing.md)."""

    code = "TIMESTAMP_INVALID"


class CertificateError(LicgateError):
    """Base of the certificate path, validity and revocation refusals."""

    code = "CERT_UNTRUSTED"


class CertUntrusted(CertificateError):
    code = "CERT_UNTRUSTED"


class CertExpired(CertificateError):
    code = "CERT_EXPIRED"


class CertNotYetValid(CertificateError):
    code = "CERT_NOT_YET_VALID"


class CertRevoked(CertificateError):
    code = "CERT_REVOKED"


class CertStatusUnknown(CertificateError):
    code = "CERT_STATUS_UNKNOWN"


class CertNotForSigning(CertificateError):
    code = "CERT_NOT_FOR_SIGNING"


class IinInvalid(LicgateError):
    code = "IIN_INVALID"


class BinInvalid(LicgateError):
    code = "BIN_INVALID"


class IinMismatch(LicgateError):
    code = "IIN_MISMATCH"


class BinMismatch(LicgateError):
    code = "BIN_MISMATCH"


class SignerNotAuthorized(LicgateError):
    code = "SIGNER_NOT_AUTHORIZED"


class DocumentDigestMismatch(LicgateError):
    code = "DOCUMENT_DIGEST_MISMATCH"


class MessageIdConflict(LicgateError):
    code = "MESSAGE_ID_CONFLICT"
    http_status = 409


class Overloaded(LicgateError):
    code = "OVERLOADED"
    http_status = 503
    retry_after = 1  # seconds: what the SOAP endpoint sends as Retry-After with its HTTP 503


class InternalError(LicgateError):
    code = "INTERNAL_ERROR"
    http_status = 500


# -- refusals of the provider's JSON API only (HTTP, never a SOAP fault) ------------------------------


class Unauthorized(LicgateError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(LicgateError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(LicgateError):
    code = "NOT_FOUND"
    http_status = 404


class UnsupportedMediaType(LicgateError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class StepOutOfOrder(LicgateError):
    """A step that is not the next one of the application (or SIGNED posted as a step)."""

    code = "STEP_OUT_OF_ORDER"
    http_status = 409

    def __init__(self, data: str, allowed: tuple[Step, ...]) -> None:
        super().__init__(data)
        self.allowed = allowed

    def __reduce__(self) -> tuple:
        return (type(self), (self.data, self.allowed))


class StepTimeInvalid(LicgateError):
    """A step time in the future or before the previous step."""

    code = "STEP_TIME_INVALID"
    http_status = 422


ALL_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        MalformedMessage, MessageTooLarge, SchemaInvalid, SenderUnknown, SenderAuthFailed,
        ServiceNotAllowed, ServiceUnknown, TransportSignatureInvalid, SignatureMissing, SignatureInvalid,
        AlgorithmUnsupported, TimestampInvalid, CertUntrusted, CertExpired, CertNotYetValid, CertRevoked,
        CertStatusUnknown, CertNotForSigning, IinInvalid, BinInvalid, IinMismatch, BinMismatch, SignerNotAuthorized,
        DocumentDigestMismatch, MessageIdConflict, Overloaded, InternalError,
    )
)
