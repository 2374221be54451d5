"""The payload dialects: both become the same internal application; the answers pass the payload schema."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from adapters import egov, elicense
from core.domain import ApplicantKind, Channel, ServiceType
from core.errors import SchemaInvalid
from tests.intake.helpers import Doc, application_xml, docs_for, elicense_xml

TZ = ZoneInfo("Asia/Almaty")
AT = datetime(2026, 11, 27, 6, 2, 17, tzinfo=UTC)


def test_egov_application_is_read_into_the_internal_model() -> None:
    docs = [Doc("APPLICATION_FORM", b"%PDF form", "өтініш.pdf"), Doc("FEE_RECEIPT", b"%PDF fee")]
    root = etree.fromstring(application_xml("002145778812", service_type="DUPLICATE", documents=docs,
                                            licensor_bin="051240001234"))
    egov.check_payload(root)
    app = egov.read_application(root, TZ)
    assert app.request_number == "002145778812"
    assert app.request_date == datetime(2026, 11, 27, 6, 1, 55, tzinfo=UTC)
    assert (app.channel, app.service_type) == (Channel.PORTAL, ServiceType.DUPLICATE)
    assert app.applicant.kind is ApplicantKind.INDIVIDUAL and app.applicant.iin == "871008401427"
    assert app.licensor_bin == "051240001234" and app.license_number == "KZ18LAA00032760"
    assert [(d.code, d.file_name, d.content) for d in app.documents] == [
        ("APPLICATION_FORM", "өтініш.pdf", b"%PDF form"), ("FEE_RECEIPT", "doc.pdf", b"%PDF fee")]
    assert app.activity_subtypes == ("PRIMARY_HEALTH_CARE",)


def test_elicense_application_becomes_the_same_application() -> None:
    docs = docs_for("ISSUE")
    mine = elicense.read_application(etree.fromstring(elicense_xml("KZ26000001", documents=docs)), TZ)
    theirs = egov.read_application(etree.fromstring(application_xml("KZ26000001", channel="ELICENSE",
                                                                    documents=docs)), TZ)
    assert mine.dialect == "elicense"
    for name in ("request_number", "channel", "service_type", "documents", "activity_subtypes"):
        assert getattr(mine, name) == getattr(theirs, name), name
    assert mine.applicant.iin == theirs.applicant.iin


def test_elicense_legal_entity_and_reregistration() -> None:
    root = etree.fromstring(elicense_xml(operation="REREGISTRATION", kind="LEGAL_ENTITY", idnumber="940140000385"))
    elicense.check_payload(root)
    app = elicense.read_application(root, TZ)
    assert app.service_type is ServiceType.REISSUE and app.license_number == "KZ18LAA00032760"
    assert app.applicant.kind is ApplicantKind.LEGAL_ENTITY and app.applicant.bin == "940140000385"


@pytest.mark.parametrize("service_type", ["REISSUE", "DUPLICATE"])
def test_license_number_is_required_for_reissue_and_duplicate(service_type: str) -> None:
    xml = application_xml(service_type=service_type).replace(b"<licenseNumber>KZ18LAA00032760</licenseNumber>", b"")
    with pytest.raises(SchemaInvalid) as err:
        egov.check_payload(etree.fromstring(xml))
    assert "licenseNumber" in str(err.value.data)


def test_children_out_of_order_fail_the_payload_schema_naming_the_element() -> None:
    xml = application_xml().replace(b"<channel>PORTAL</channel><serviceType>ISSUE</serviceType>",
                                    b"<serviceType>ISSUE</serviceType><channel>PORTAL</channel>")
    with pytest.raises(SchemaInvalid) as err:
        egov.check_payload(etree.fromstring(xml))
    assert "serviceType" in str(err.value.data)


def test_uppercase_digest_fails_the_payload_schema() -> None:
    doc = Doc("APPLICATION_FORM", b"x", sha256="A" * 64)
    with pytest.raises(SchemaInvalid):
        egov.check_payload(etree.fromstring(application_xml(documents=[doc])))


def _valid(document: bytes) -> None:
    schema = egov.payload_schema()
    assert schema.validate(etree.fromstring(document)), schema.error_log


def test_receipt_is_the_samples_shape() -> None:
    receipt = egov.render_receipt("MED-2026-000731", AT, datetime(2026, 12, 17, 13, 30, tzinfo=UTC), TZ)
    _valid(receipt)
    root = etree.fromstring(receipt)
    assert [etree.QName(c).localname for c in root] == [
        "registrationNumber", "status", "statusKk", "statusRu", "receivedAt", "dueAt"]
    assert root.findtext(f"{{{egov.NS}}}dueAt") == "2026-12-17T18:30:00+05:00"
    assert root.findtext(f"{{{egov.NS}}}statusKk") == "Қабылданды"


def test_intake_refusal_lists_missing_documents_in_both_languages() -> None:
    refusal = egov.render_intake_refusal("MED-2026-000001", AT, ["FEE_RECEIPT", "REISSUE_GROUNDS"], TZ)
    _valid(refusal)
    root = etree.fromstring(refusal)
    codes = [d.get("code") for d in root.iterfind(f"{{{egov.NS}}}missingDocuments/{{{egov.NS}}}document")]
    assert codes == ["FEE_RECEIPT", "REISSUE_GROUNDS"]
    assert "лицензионного сбора" in root.findtext(f"{{{egov.NS}}}reasonRu")
    assert "алымның" in root.findtext(f"{{{egov.NS}}}reasonKk")


def test_status_response_carries_the_signed_result_unchanged() -> None:
    result = (f'<?xml version="1.0"?>\n<LicenseDecision xmlns="{egov.NS}"><registrationNumber>MED-1'
              "</registrationNumber><decision>GRANTED</decision><issuedAt>2026-12-09T16:30:00+05:00</issuedAt>"
              "</LicenseDecision>").encode()
    body = egov.render_status_response(request_number="R1", registration_number="MED-1", status="GRANTED",
                                       status_texts=("Қанағаттандырылды", "Удовлетворено"), tz=TZ,
                                       received_at=AT, result=result)
    _valid(body)
    assert result.split(b"\n", 1)[1] in body
