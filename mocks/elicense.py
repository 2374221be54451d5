"""Mock of the e-license portal (elicense.kz): like the egov portal, but it sends its own payload
dialect, `LicenseApplication` in `urn:kz:elicense:medlicense:v1` (`schemas/elicense_medical_v1.xsd`,
docs/elicense.md), as SHEP sender `ELICENSE`, with application numbers like `KZ…`. Set
`[elicense] dialect = "egov"` to send the egov dialect instead (docs/shep.md allows both).

The control API and views are those of every front office (`mocks.frontoffice`).
"""

from __future__ import annotations

import base64
from xml.sax.saxutils import escape, quoteattr

from fastapi import FastAPI

from mocks.common import ApplicationForm, MockSettings, egov_application_xml, iso_local, run_mock
from mocks.frontoffice import create_office_app

NS = "urn:kz:elicense:medlicense:v1"
OPERATIONS = {"ISSUE": "NEW", "REISSUE": "REREGISTRATION", "DUPLICATE": "DUPLICATE"}


def elicense_application_xml(form: ApplicationForm) -> bytes:
    """The unsigned `LicenseApplication` of the e-license dialect for the same form."""
    kind, number = ("INDIVIDUAL", form.applicant_iin) if form.applicant_iin else ("LEGAL_ENTITY", form.applicant_bin)
    parts = [
        f'<LicenseApplication xmlns="{NS}">',
        f"<applicationNumber>{escape(form.request_number)}</applicationNumber>",
        f"<submittedAt>{iso_local(form.request_date)}</submittedAt>",
        f"<operation>{OPERATIONS[form.service_type]}</operation>",
    ]
    if form.licensor_bin:
        parts.append(f'<licensor bin="{form.licensor_bin}"/>')
    parts.append(f'<licensee type="{kind}" idNumber="{number}"><fullName>{escape(form.applicant_name)}</fullName>'
                 "</licensee>")
    parts.append("<activity>" + "".join(f"<subtype code={quoteattr(s)}/>" for s in form.subtypes) + "</activity>")
    if form.license_number:
        parts.append(f"<existingLicense number={quoteattr(form.license_number)}/>")
    parts.append("<attachments>")
    for d in form.documents:
        parts.append(
            f"<attachment kind={quoteattr(d.code)} name={quoteattr(d.file_name)} "
            f"contentType={quoteattr(d.mime_type)} sha256={quoteattr(d.sha256)}>"
            f"<content>{base64.b64encode(d.content).decode()}</content></attachment>"
        )
    parts.append("</attachments></LicenseApplication>")
    return "".join(parts).encode("utf-8")


def create_app(settings: MockSettings) -> FastAPI:
    build = elicense_application_xml if settings.elicense.dialect == "elicense" else egov_application_xml
    # elicense.kz's signer: default-namespace signature with exclusive c14n (another real-world layout).
    return create_office_app("elicense", settings, title="e-license portal mock", request_prefix="KZ",
                             build_payload=build, sign_layout={"layout": "default-ns", "c14n": "exclusive"})


def main(host: str = "127.0.0.1", port: int = 9103, config: str | None = None) -> int:
    return run_mock("elicense", create_app, host, port, config)
