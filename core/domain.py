"""The one internal model of licgate: applications, applicants, signers, statuses and the regulation's steps.

Every adapter translates its outside dialect to and from these types; storage persists them; the
workflow moves them through the steps of the regulation (docs/provider-api.md). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Positional:
    """For slotted dataclasses that cross a process boundary (intake worker to serving process): pickled as
    their constructor's arguments. The state functions `dataclass(slots=True)` generates look the fields up
    on every call, which cost the serving process more per application than the storage did."""

    __slots__ = ()

    def __reduce__(self) -> tuple:
        return (type(self), tuple([getattr(self, name) for name in self.__match_args__]))  # type: ignore[attr-defined]


class ServiceType(StrEnum):
    ISSUE = "ISSUE"  # a new licence and/or annex
    REISSUE = "REISSUE"  # re-registration of a licence
    DUPLICATE = "DUPLICATE"  # a duplicate of a licence


class Channel(StrEnum):
    PORTAL = "PORTAL"  # egov.kz
    CENTER = "CENTER"  # the Public Service Center (ЦОН)
    ELICENSE = "ELICENSE"  # elicense.kz (and the provider's office)


class ApplicantKind(StrEnum):
    INDIVIDUAL = "INDIVIDUAL"  # identified by IIN
    LEGAL_ENTITY = "LEGAL_ENTITY"  # identified by BIN


class Status(StrEnum):
    """The applicant-facing status of an application (docs/provider-api.md, status texts)."""

    RECEIVED = "RECEIVED"
    INTAKE_REFUSED = "INTAKE_REFUSED"
    REGISTERED = "REGISTERED"
    IN_REVIEW = "IN_REVIEW"
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"

    @property
    def is_final(self) -> bool:
        return self in (Status.INTAKE_REFUSED, Status.GRANTED, Status.REFUSED)


class Step(StrEnum):
    """The regulation's steps at the provider, in order (docs/provider-api.md)."""

    REGISTERED = "REGISTERED"  # authorized employee registers (10 minutes)
    SENT_TO_MANAGEMENT = "SENT_TO_MANAGEMENT"  # ... and forwards to management (same 10 minutes)
    RETURNED_FOR_PREPARATION = "RETURNED_FOR_PREPARATION"  # management reviews (30 minutes)
    RESULT_PREPARED = "RESULT_PREPARED"  # employee prepares the result (the Standard's term)
    SIGNED = "SIGNED"  # management signs (within the working day); recorded by the result upload
    ISSUED = "ISSUED"  # employee issues / publishes / sends to the Center (10 minutes)
    DELIVERED = "DELIVERED"  # the Center hands it over (Center applications only)


class Decision(StrEnum):
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"


# Extended key usage OIDs of NCA RK certificates (docs/signing.md).
class Role(StrEnum):
    INDIVIDUAL = "1.2.398.3.3.4.1.1"
    LEGAL_ENTITY = "1.2.398.3.3.4.1.2"
    FIRST_HEAD = "1.2.398.3.3.4.1.2.1"
    RIGHT_TO_SIGN = "1.2.398.3.3.4.1.2.2"
    RIGHT_TO_SIGN_FINANCIAL = "1.2.398.3.3.4.1.2.3"
    HR = "1.2.398.3.3.4.1.2.4"
    EMPLOYEE = "1.2.398.3.3.4.1.2.5"


@dataclass(frozen=True, slots=True)
class Applicant(Positional):
    kind: ApplicantKind
    name: str
    iin: str | None = None
    bin: str | None = None

    @property
    def number(self) -> str:
        """The applicant's identifying number: IIN for an individual, BIN for a legal entity."""
        return (self.iin if self.kind is ApplicantKind.INDIVIDUAL else self.bin) or ""


@dataclass(frozen=True, slots=True)
class Document(Positional):
    code: str  # checklist code, e.g. APPLICATION_FORM
    file_name: str
    mime_type: str
    sha256: str  # lower-case hex, as declared by the sender and checked against content
    content: bytes


@dataclass(frozen=True, slots=True)
class SignerIdentity(Positional):
    """Who signed, as read from a verified certificate (never from the unsigned parts of a message)."""

    common_name: str
    iin: str | None
    bin: str | None
    roles: tuple[str, ...]  # EKU OIDs (see Role); unknown OIDs are kept as they are
    certificate_serial: str  # hex, lower-case
    issuer: str
    organization: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    certificate_der: bytes = field(default=b"", repr=False)

    def has_role(self, role: Role) -> bool:
        return role.value in self.roles


@dataclass(frozen=True, slots=True)
class Application(Positional):
    """An application as read from the verified payload of any dialect."""

    request_number: str
    request_date: datetime | None
    channel: Channel
    service_type: ServiceType
    applicant: Applicant
    activity_subtypes: tuple[str, ...]
    documents: tuple[Document, ...]
    licensor_bin: str | None = None
    license_number: str | None = None
    dialect: str = "egov"  # which adapter read it


@dataclass(frozen=True, slots=True)
class LicenseDecision:
    """A provider's signed result, as read from the verified `LicenseDecision` document."""

    registration_number: str
    decision: Decision
    issued_at: datetime
    license_number: str | None = None
    reason_kk: str | None = None
    reason_ru: str | None = None
