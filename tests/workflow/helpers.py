"""Shared helpers of the workflow tests: applications made directly through the storage API (intake is
another module's job), moments in Astana time."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

from core.domain import Applicant, ApplicantKind, Channel, Document, ServiceType, SignerIdentity, Status
from gateway.storage import ApplicationRecord, NewApplication, Storage

ALMATY = timezone(timedelta(hours=5))
PROVIDER_BIN = "051240001234"
OTHER_PROVIDER_BIN = "940140000385"
SENDERS = {Channel.PORTAL: "EGOV_PORTAL", Channel.CENTER: "CENTER_IS", Channel.ELICENSE: "ELICENSE"}


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ALMATY)


def applicant_signer() -> SignerIdentity:
    return SignerIdentity(common_name="АХМЕТОВА АЙГЕРІМ", iin="871008401427", bin=None,
                          roles=("1.2.398.3.3.4.1.1",), certificate_serial="0a1b2c", issuer="CN=test CA")


def new_application(*, channel: Channel = Channel.PORTAL, service_type: ServiceType = ServiceType.ISSUE,
                    provider_bin: str = PROVIDER_BIN, received_at: datetime | None = None,
                    due_at: datetime | None = None, documents: tuple[Document, ...] | None = None,
                    status: Status = Status.RECEIVED) -> NewApplication:
    received_at = (received_at or datetime.now(UTC)).astimezone(UTC)
    if documents is None:
        content = b"%PDF-1.4 application form"
        documents = (Document(code="APPLICATION_FORM", file_name="form.pdf", mime_type="application/pdf",
                              sha256=hashlib.sha256(content).hexdigest(), content=content),)
    return NewApplication(
        provider_bin=provider_bin, sender_id=SENDERS[channel], message_id=str(uuid.uuid4()),
        request_number=f"REQ-{uuid.uuid4().hex[:10]}", request_hash=hashlib.sha256(b"x").hexdigest(),
        channel=channel, service_type=service_type, dialect="egov",
        applicant=Applicant(kind=ApplicantKind.INDIVIDUAL, name="АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", iin="871008401427"),
        signer=applicant_signer(), activity_subtypes=("THERAPY",),
        license_number=None if service_type is ServiceType.ISSUE else "KZ18LAA00032760",
        received_at=received_at, due_at=due_at, status=status, payload=b"<MedicalLicenseApplication/>",
        documents=documents, session_id="{6F1C2A8E-4B7D-4E0A-9A51-3C2F0D9B7E11}",
        missing_documents=("FEE_RECEIPT",) if status is Status.INTAKE_REFUSED else (),
    )


def store(storage: Storage, **kwargs: object) -> ApplicationRecord:
    return storage.store_application(new_application(**kwargs), lambda number: f"<Receipt>{number}</Receipt>".encode())


def record(*, received_at: datetime, service_type: ServiceType = ServiceType.ISSUE,
           channel: Channel = Channel.PORTAL, due_at: datetime | None = None) -> ApplicationRecord:
    """An ApplicationRecord as storage would return it, for the pure deadline rules."""
    app = new_application(channel=channel, service_type=service_type, received_at=received_at, due_at=due_at)
    return ApplicationRecord(
        id="app-1", registration_number="MED-2026-000001", provider_bin=app.provider_bin,
        sender_id=app.sender_id, message_id=app.message_id, request_number=app.request_number,
        request_hash=app.request_hash, channel=app.channel, service_type=app.service_type, dialect=app.dialect,
        applicant=app.applicant, signer=app.signer, activity_subtypes=app.activity_subtypes,
        license_number=app.license_number, received_at=app.received_at, due_at=app.due_at, status=app.status,
        last_step=None, documents=(), missing_documents=(), receipt=b"",
    )
