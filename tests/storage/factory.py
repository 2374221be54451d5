"""Builds the values storage tests feed in: applications as intake would hand them over, steps, messages."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from core.domain import (
    Applicant,
    ApplicantKind,
    Channel,
    Document,
    ServiceType,
    SignerIdentity,
    Status,
    Step,
)
from gateway.storage import MessageLogEntry, NewApplication, StepRecord

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
PROVIDER = "051240001234"
OTHER_PROVIDER = "940140000385"

SIGNER = SignerIdentity(
    common_name="АХМЕТОВА АЙГЕРІМ", iin="871008401427", bin=None,
    roles=("1.2.398.3.3.4.1.1",), certificate_serial="0a1b2c", issuer="CN=ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (GOST)",
    organization=None, not_before=datetime(2026, 1, 1, tzinfo=UTC), not_after=datetime(2027, 1, 1, tzinfo=UTC),
    certificate_der=b"\x30\x82\x01\x00fake-der",
)


def receipt_for(number: str) -> bytes:
    return f"<receipt>{number}</receipt>".encode()


def new_application(
    n: int,
    *,
    provider_bin: str = PROVIDER,
    sender_id: str = "EGOV_PORTAL",
    status: Status = Status.RECEIVED,
    received_at: datetime = T0,
    message_id: str | None = None,
    request_number: str | None = None,
    documents: int = 2,
) -> NewApplication:
    docs = tuple(
        Document(code=f"DOC_{i}", file_name=f"файл-{i}.pdf", mime_type="application/pdf",
                 sha256=hashlib.sha256(b"%d-%d" % (n, i)).hexdigest(), content=b"%%PDF-%d-%d\x00\xff" % (n, i))
        for i in range(documents)
    )
    payload = f"<Application n='{n}'>заявка</Application>".encode()
    return NewApplication(
        provider_bin=provider_bin, sender_id=sender_id, message_id=message_id or f"msg-{n}",
        request_number=request_number or f"REQ-{n}", request_hash=hashlib.sha256(payload).hexdigest(),
        channel=Channel.PORTAL, service_type=ServiceType.ISSUE, dialect="egov",
        applicant=Applicant(kind=ApplicantKind.INDIVIDUAL, name="АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", iin="871008401427"),
        signer=SIGNER, activity_subtypes=("01.01", "02.03"), license_number=None, received_at=received_at,
        due_at=datetime(2026, 12, 15, 13, 30, tzinfo=UTC), status=status, payload=payload, documents=docs,
        missing_documents=("STAFF_QUALIFICATION",) if status is Status.INTAKE_REFUSED else (),
        session_id=f"session-{n}",
    )


def log_entry(message_id: str, *, verdict: str = "SCSS001", application_id: str | None = None,
              direction: str = "in", at: datetime = T0) -> MessageLogEntry:
    body = f"<Envelope id='{message_id}'/>".encode()
    return MessageLogEntry(direction=direction, endpoint="shep/sync", message_id=message_id, sender_id="EGOV_PORTAL",
                           verdict=verdict, body=body, sha256=hashlib.sha256(body).hexdigest(), at=at,
                           correlation_id=None, application_id=application_id)


def step(s: Step, at: datetime = T0) -> StepRecord:
    return StepRecord(step=s, actor="880101300123", at=at, source=f"provider-api:{PROVIDER}")
