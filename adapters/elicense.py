"""The e-license portal's dialect (`urn:kz:elicense:medlicense:v1`, `schemas/elicense_medical_v1.xsd`,
documented in docs/elicense.md): `LicenseApplication` -> the same internal `Application` as the egov
dialect. The channel is always ELICENSE; answers are the egov dialect's Receipt / IntakeRefusal /
StatusResponse.
"""

from __future__ import annotations

from datetime import tzinfo
from functools import lru_cache

from lxml import etree

import schemas
from adapters.egov import take_content
from adapters.xml import ELICENSE, parse_lenient_datetime, schema_error, text_of
from core.domain import Applicant, ApplicantKind, Application, Channel, Document, ServiceType
from core.errors import SchemaInvalid
from core.xmlsafe import load_schema

NS = ELICENSE
APPLICATION = f"{{{NS}}}LicenseApplication"

OPERATIONS: dict[str, ServiceType] = {
    "NEW": ServiceType.ISSUE,
    "REREGISTRATION": ServiceType.REISSUE,
    "DUPLICATE": ServiceType.DUPLICATE,
}
LICENSEE_TYPES: dict[str, ApplicantKind] = {
    "INDIVIDUAL": ApplicantKind.INDIVIDUAL,
    "LEGAL_ENTITY": ApplicantKind.LEGAL_ENTITY,
}


@lru_cache(maxsize=1)
def payload_schema() -> etree.XMLSchema:
    return load_schema(schemas.path("elicense_medical_v1.xsd"))


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def check_payload(root: etree._Element) -> None:
    """The payload-schema stage: the XSD, then existingLicense where the operation needs one."""
    schema = payload_schema()
    if not schema.validate(root):
        raise SchemaInvalid(schema_error(schema.error_log))
    operation = text_of(root.find(_q("operation")))
    if operation in ("REREGISTRATION", "DUPLICATE") and root.find(_q("existingLicense")) is None:
        raise SchemaInvalid(f"/LicenseApplication/existingLicense: required for {operation}")


def read_application(root: etree._Element, tz: tzinfo) -> Application:
    """The application in a verified, schema-valid `LicenseApplication` element."""
    licensee = root.find(_q("licensee"))
    assert licensee is not None  # schema-valid
    kind = LICENSEE_TYPES[licensee.get("type", "")]
    number = licensee.get("idNumber", "")
    applicant = Applicant(
        kind=kind,
        name=text_of(licensee.find(_q("fullName"))) or "",
        iin=number if kind is ApplicantKind.INDIVIDUAL else None,
        bin=number if kind is ApplicantKind.LEGAL_ENTITY else None,
    )
    licensor = root.find(_q("licensor"))
    existing = root.find(_q("existingLicense"))
    return Application(
        request_number=text_of(root.find(_q("applicationNumber"))) or "",
        request_date=parse_lenient_datetime(text_of(root.find(_q("submittedAt"))) or "", tz),
        channel=Channel.ELICENSE,
        service_type=OPERATIONS[text_of(root.find(_q("operation"))) or ""],
        applicant=applicant,
        activity_subtypes=tuple(s.get("code", "") for s in root.iterfind(f"{_q('activity')}/{_q('subtype')}")),
        documents=tuple(
            Document(
                code=a.get("kind", ""),
                file_name=a.get("name", ""),
                mime_type=a.get("contentType", ""),
                sha256=a.get("sha256", ""),
                content=take_content(a.find(_q("content"))),
            )
            for a in root.iterfind(f"{_q('attachments')}/{_q('attachment')}")
        ),
        licensor_bin=licensor.get("bin") if licensor is not None else None,
        license_number=existing.get("number") if existing is not None else None,
        dialect="elicense",
    )
