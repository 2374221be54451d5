"""Intake's examination: the checks of one SHEP SendMessage that need no storage, in the contract's order.

Well-formedness, envelope schema, sender, service, transport signature, payload schema, signature, timestamp,
certificate, identity binding, documents; the first failure is the examination's error. An application
that passes comes out verified (read only from what the signature covers) with its term, and with its
receipt and answer rendered around a one-off slot where its registration number goes, so that storing it
costs the serving process no rendering. Plain data in and out: it runs in the serving process or in an
intake worker process (`gateway.intake.pool`) alike.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from lxml import etree

from adapters import egov, elicense
from adapters.shep_sync import SUCCESS_CODE, RequestInfo, SyncRequest, envelope_schema, parse_envelope, render_response
from core import memory
from core.clock import Clock
from core.domain import ApplicantKind, Application, Positional, SignerIdentity
from core.errors import (
    BinInvalid,
    DocumentDigestMismatch,
    IinInvalid,
    InternalError,
    LicgateError,
    SchemaInvalid,
    SenderAuthFailed,
    SenderUnknown,
    ServiceNotAllowed,
    ServiceUnknown,
    SignatureMissing,
    TransportSignatureInvalid,
)
from core.identifiers import bin_problem, iin_problem
from gateway.binding import check_applicant_signer
from gateway.config import SERVICE_STATUS, SERVICE_SUBMIT, Config, SenderConfig
from gateway.regulation import Regulation
from signing.verifier import SignatureVerifier
from signing.wsse import verify_transport

log = logging.getLogger("licgate.intake")

INTAKE_REFUSED = "INTAKE_REFUSED"
ACCEPTED_MESSAGE = "Message has been processed successfully"
REFUSED_MESSAGE = "Package of documents is incomplete: application refused at intake"
_DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"
_WSSE_SECURITY = (
    "{http://schemas.xmlsoap.org/soap/envelope/}Header/"
    "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
)


@dataclass(frozen=True, slots=True)
class _Dialect:
    check_payload: Callable[[etree._Element], None]
    read_application: Callable[[etree._Element, tzinfo], Application]
    payload_schema: Callable[[], etree.XMLSchema]


_DIALECTS: dict[str, _Dialect] = {
    egov.APPLICATION: _Dialect(egov.check_payload, egov.read_application, egov.payload_schema),
    elicense.APPLICATION: _Dialect(elicense.check_payload, elicense.read_application, elicense.payload_schema),
}




def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class Examination(Positional):
    """What the storage-free checks found in one request body (`Examiner.examine`). Plain data, so that it
    can come back from another process: the verified application, or the first refusal and where in the
    contract's order it was found."""

    info: RequestInfo | None = None
    service: str | None = None  # SERVICE_SUBMIT or SERVICE_STATUS, once the sender may call it
    error: LicgateError | None = None
    # True when `error` was found among the payload's checks, which the contract orders after the replay
    # lookup and the capacity check: a replayed messageId is answered its first receipt whatever its payload.
    late: bool = False
    request_hash: str | None = None
    payload: bytes | memoryview | None = None  # the payload's bytes unless `payload_span` names them
    payload_span: tuple[int, int] | None = None  # (start, end) of the payload in the request body
    application: Application | None = None
    signer: SignerIdentity | None = None
    signed_at: datetime | None = None  # the signing time a verified XAdES-T timestamp proves
    provider_bin: str | None = None
    missing: tuple[str, ...] = ()
    status_number: str | None = None
    # For an application that passed: its term, and its receipt and answer rendered around the registration
    # number it will get (before, after), so that storing it costs the serving process no rendering.
    due_at: datetime | None = None
    receipt: tuple[bytes, bytes] | None = None
    response: tuple[bytes, bytes] | None = None
    # The transport signature's replay key (the digest of its SignatureValue) and until when it must not be
    # seen again; checked by the serving process, which sees every request of this instance.
    replay_key: tuple[bytes, datetime] | None = None
    # Revocation outcomes (source, outcome) seen by a worker process's verifier, for the serving process's
    # /metrics (in the serving process they are counted at once and this stays empty).
    observations: tuple[tuple[str, str], ...] = ()

    def ids(self) -> dict[str, str | None]:
        info = self.info
        return {"message_id": info.message_id if info else None, "sender_id": info.sender_id if info else None,
                "session_id": info.session_id if info else None}

    def payload_of(self, body: bytes) -> bytes | memoryview:
        if self.payload_span is not None:
            return memoryview(body)[self.payload_span[0]:self.payload_span[1]]
        assert self.payload is not None
        return self.payload

    def detach(self) -> Examination:
        """Ready to be pickled: a view of the body is named by its span (the caller holds the body)."""
        if isinstance(self.payload, memoryview):
            if self.payload_span is None:
                self.payload = bytes(self.payload)
            else:
                self.payload = None
        return self


class Examiner:
    """The CPU-bound part of intake, with no storage: the envelope, the sender, the service, the transport
    signature, and for MED_LICENSE the payload's schema, signature, certificate, identity binding and
    documents. One per process (its verifier holds the trust store and revocation caches)."""

    def __init__(self, config: Config, verifier: SignatureVerifier, regulation: Regulation, clock: Clock) -> None:
        self.config = config
        self.verifier = verifier
        self.regulation = regulation
        self.clock = clock
        self.tz = regulation.calendar.timezone
        # Compiled now, once, rather than by the first requests, which may be examined in several threads
        # at once (in the serving process: with no worker processes, and for large messages).
        envelope_schema()
        for dialect in _DIALECTS.values():
            dialect.payload_schema()

    def examine(self, body: bytes, received_at: datetime) -> Examination:
        """Never raises: a refusal is the examination's `error`. `received_at` is when the body was read."""
        exam = Examination()
        try:
            self._examine(body, received_at, exam)
        except LicgateError as exc:
            exam.error = exc
        except Exception:  # noqa: BLE001 - the one place an unexpected failure becomes INTERNAL_ERROR
            log.exception("intake failed", extra={"messageId": exam.info.message_id if exam.info else None})
            exam.error = InternalError()
        if len(body) >= memory.LARGE_BYTES:
            memory.release_soon()
        return exam

    def _examine(self, body: bytes, received_at: datetime, exam: Examination) -> None:
        request = parse_envelope(body, max_bytes=self.config.server.max_message_bytes)
        exam.info = request.info
        sender = self._check_sender(request.info.sender_id, request.info.password)
        service = self._check_service(sender, request.info.service_id)
        exam.replay_key = self._check_transport(sender, request)
        exam.service = service
        if service == SERVICE_STATUS:
            exam.status_number = self._status_request(request)
            return
        assert service == SERVICE_SUBMIT
        payload = request.raw_payload  # a view into `body` when inline: hashed, parsed and stored, never copied
        exam.request_hash = sha256_hex(payload)
        exam.late = True
        self._check_payload(request, sender, payload, exam, received_at)
        exam.payload, exam.payload_span = payload, request.payload_span
        self._prepare_answer(exam, received_at)

    def _prepare_answer(self, exam: Examination, received_at: datetime) -> None:
        """The term, the receipt and the answer of an application about to be stored, rendered here (in a
        worker process when there are workers) around a one-off slot where its registration number goes."""
        info, application = exam.info, exam.application
        assert info is not None and application is not None
        slot = secrets.token_hex(12)
        if exam.missing:
            receipt = egov.render_intake_refusal(slot, received_at, list(exam.missing), self.tz)
            code, message = INTAKE_REFUSED, REFUSED_MESSAGE
        else:
            exam.due_at = self.regulation.term_due(received_at, application.service_type)
            receipt = egov.render_receipt(slot, received_at, exam.due_at, self.tz, exam.signed_at)
            code, message = SUCCESS_CODE, ACCEPTED_MESSAGE
        response = render_response(correlation_id=info.message_id, response_date=self.clock.now(), tz=self.tz,
                                   data=receipt, code=code, message=message, session_id=info.session_id)
        exam.receipt, exam.response = _around(receipt, slot), _around(response, slot)

    # -- sender, service, transport -----------------------------------------------------------------

    def _check_sender(self, sender_id: str, password: str | None) -> SenderConfig:
        sender = self.config.sender(sender_id)
        if sender is None:
            raise SenderUnknown(f"senderId {sender_id!r} is not configured")
        # Constant time, so the answer's timing says nothing about how much of the password matched.
        if not hmac.compare_digest((password or "").encode(), sender.password.encode()):
            raise SenderAuthFailed(f"wrong password for senderId {sender_id}")
        return sender

    def _check_service(self, sender: SenderConfig, service_id: str) -> str:
        service = self.config.service(service_id)
        if service is None:
            raise ServiceUnknown(f"serviceId {service_id!r} is not offered")
        allowed = service_id in sender.services or any(self.config.service(s) == service for s in sender.services)
        if not allowed:
            raise ServiceNotAllowed(f"senderId {sender.id} may not call {service_id}")
        return service

    def _check_transport(self, sender: SenderConfig, request: SyncRequest) -> tuple[bytes, datetime] | None:
        """The transport signature's checks but the replay (see `Examination.replay_key`)."""
        if sender.wsse == "off":
            return None
        if request.envelope.find(_WSSE_SECURITY) is None:
            if sender.wsse == "required":
                raise TransportSignatureInvalid("WS-Security is required for this sender and is missing")
            return None
        try:
            trust = self.config.trust
            verified = verify_transport(request.envelope, sender_bin=sender.bin or None,
                                        sender_cert_pem=sender.cert_pem, verifier=self.verifier,
                                        window=timedelta(seconds=trust.wsse_window_seconds),
                                        skew=timedelta(seconds=trust.wsse_clock_skew_seconds))
        except TransportSignatureInvalid:
            raise
        except LicgateError as exc:
            # Certificate problems of the transport key are the transport signature's failure.
            raise TransportSignatureInvalid(f"{exc.code}: {exc.data or ''}".strip(": ")) from None
        return verified.replay_key, verified.replay_until

    # -- MED_LICENSE ----------------------------------------------------------------------------------

    def _check_payload(self, request: SyncRequest, sender: SenderConfig, payload: bytes | memoryview,
                       exam: Examination, received_at: datetime) -> None:
        # Payload schema: on the inline element as parsed with the envelope, or on the string's document.
        root = request.element
        dialect = _DIALECTS.get(root.tag)
        if dialect is None:
            raise SchemaInvalid(f"/{etree.QName(root).localname}: not an application payload "
                                f"(expected MedicalLicenseApplication in {egov.NS} or LicenseApplication in "
                                f"{elicense.NS})")
        dialect.check_payload(root)
        if next(root.iter(_DS_SIGNATURE), None) is None:
            raise SignatureMissing("the payload carries no enveloped XML signature")
        del root
        request.release()

        # Signature and certificate: the application is read ONLY from what the verifier hands back.
        verified = self.verifier.verify_enveloped(payload, received_at=received_at)
        application = dialect.read_application(verified.root, self.tz)
        signer, exam.signed_at = verified.signer, verified.signed_at
        del verified  # the verified tree is not needed once read (a large payload is not held twice)

        self._check_applicant_numbers(application)
        if application.channel is not sender.channel:
            raise SchemaInvalid(f"/channel: {application.channel.value} is not the sender's channel "
                                f"{sender.channel.value}")
        check_applicant_signer(sender.channel, application.applicant, signer, sender.bin or None)
        exam.provider_bin = self._provider_bin(application.licensor_bin)
        exam.missing = tuple(self._check_documents(application))
        exam.application, exam.signer = application, signer

    def _check_applicant_numbers(self, application: Application) -> None:
        applicant = application.applicant
        if applicant.kind is ApplicantKind.INDIVIDUAL:
            if problem := iin_problem(applicant.iin or ""):
                raise IinInvalid(f"applicant/iin {applicant.iin}: {problem}")
        elif problem := bin_problem(applicant.bin or ""):
            raise BinInvalid(f"applicant/bin {applicant.bin}: {problem}")

    def _provider_bin(self, licensor_bin: str | None) -> str:
        providers = self.config.providers
        if licensor_bin is None:
            if len(providers) == 1:
                return providers[0].bin
            raise SchemaInvalid("/licensorBin: required when the gateway serves several providers")
        if problem := bin_problem(licensor_bin):
            raise BinInvalid(f"licensorBin {licensor_bin}: {problem}")
        if self.config.provider(licensor_bin) is None:
            raise SchemaInvalid(f"/licensorBin: {licensor_bin} is not a provider served here")
        return licensor_bin

    def _check_documents(self, application: Application) -> list[str]:
        """Digests first (DOCUMENT_DIGEST_MISMATCH), then the checklist: the missing codes, in its order."""
        for index, doc in enumerate(application.documents):
            actual = sha256_hex(doc.content)
            if not hmac.compare_digest(actual, doc.sha256):
                raise DocumentDigestMismatch(f"document {index + 1} ({doc.code}): declared sha256 {doc.sha256}, "
                                             f"content has {actual}")
        present = {doc.code for doc in application.documents}
        required = self.config.checklists.get(application.service_type.value, ())
        return [code for code in required if code not in present]

    # -- MED_LICENSE_STATUS ----------------------------------------------------------------------------

    @staticmethod
    def _status_request(request: SyncRequest) -> str:
        root = request.element
        if root.tag != egov.STATUS_REQUEST:
            raise SchemaInvalid(f"/{etree.QName(root).localname}: expected StatusRequest in {egov.NS}")
        egov.validate(root)
        return egov.read_status_request(root)


def _around(rendered: bytes, slot: str) -> tuple[bytes, bytes]:
    before, found, after = rendered.partition(slot.encode())
    # The slot is random and the rest is ours or escaped sender text: it cannot be missing or there twice.
    if not found or slot.encode() in after:
        raise RuntimeError("the registration number's place in a rendered answer is not there exactly once")
    return before, after
