"""What the mocks produce and check on their own: payloads valid against the project's schemas, the front
offices' verification of the provider's signed result, the provider's decision rules, the settings file,
and `licgate mock NAME` serving over loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapters import egov, elicense
from core.xmlsafe import parse_xml
from mocks.common import (
    ActionLog,
    ApplicationForm,
    MockSettings,
    Pki,
    ProviderRule,
    SettingsError,
    egov_application_xml,
    free_port,
    load_settings,
    make_documents,
    sign_payload,
)
from mocks.elicense import elicense_application_xml
from mocks.frontoffice import verify_decision
from mocks.provider import Case, ProviderState, _decide, decision_xml

PROVIDER_BIN = "051240001234"


def _form(service_type: str = "ISSUE", **kw: object) -> ApplicationForm:
    form = ApplicationForm(request_number="KZ26112700001", channel="ELICENSE", service_type=service_type,
                           applicant_name="АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", applicant_iin="871008401427", **kw)
    form.documents = make_documents(["APPLICATION_FORM", "FEE_RECEIPT"], form.request_number)
    return form


def _case(decision: str = "GRANTED") -> Case:
    case = Case(id="1", registration_number="MED-2026-000001", channel="PORTAL", service_type="ISSUE",
                applicant={"kind": "INDIVIDUAL", "iin": "871008401427"})
    case.decision, case.license_number = decision, "KZ41LAA00001873"
    case.reason_kk, case.reason_ru = "себебі", "причина"
    return case


def test_portal_payload_is_valid_against_the_medlicense_schema() -> None:
    schema = egov.payload_schema()
    for form in (_form(), _form("DUPLICATE", license_number="KZ41LAA00000977")):
        assert schema.validate(parse_xml(egov_application_xml(form))), schema.error_log


def test_elicense_payload_is_valid_against_the_elicense_schema() -> None:
    schema = elicense.payload_schema()
    for form in (_form(), _form("REISSUE", license_number="KZ41LAA00000412")):
        assert schema.validate(parse_xml(elicense_application_xml(form))), schema.error_log


def test_document_digests_match_their_content() -> None:
    import base64
    import hashlib

    root = parse_xml(egov_application_xml(_form()))
    docs = root.findall("{urn:kz:egov:medlicense:v1}documents/{urn:kz:egov:medlicense:v1}document")
    assert len(docs) == 2
    for d in docs:
        assert hashlib.sha256(base64.b64decode(d.text)).hexdigest() == d.get("sha256")


def test_signed_decision_of_the_provider_head_is_accepted_by_the_offices(pki_dir: Path) -> None:
    pki = Pki(pki_dir)
    for decision in ("GRANTED", "REFUSED"):
        signed = sign_payload(decision_xml(_case(decision), "2026-11-27T11:00:00+05:00"), pki.party("provider_head"))
        assert "under BIN 051240001234" in verify_decision(signed, pki, PROVIDER_BIN)


def test_tampered_decision_is_rejected_by_the_offices(pki_dir: Path) -> None:
    pki = Pki(pki_dir)
    signed = sign_payload(decision_xml(_case(), "2026-11-27T11:00:00+05:00"), pki.party("provider_head"))
    forged = signed.replace(b"KZ41LAA00001873", b"KZ41LAA00009999")
    with pytest.raises(Exception, match="(?i)digest|signature"):
        verify_decision(forged, pki, PROVIDER_BIN)


def test_decision_signed_under_another_bin_or_without_signing_rights_is_rejected(pki_dir: Path) -> None:
    pki = Pki(pki_dir)
    xml = decision_xml(_case(), "2026-11-27T11:00:00+05:00")
    with pytest.raises(ValueError, match="not the provider's"):
        verify_decision(sign_payload(xml, pki.party("le_head")), pki, PROVIDER_BIN)
    with pytest.raises(ValueError, match="neither the provider's first head"):
        verify_decision(sign_payload(xml, pki.party("provider_employee")), pki, PROVIDER_BIN)


def test_decision_from_an_untrusted_ca_is_rejected(pki_dir: Path) -> None:
    pki = Pki(pki_dir)
    signed = sign_payload(decision_xml(_case(), "2026-11-27T11:00:00+05:00"), pki.party("foreign"))
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises its own error types for a broken chain
        verify_decision(signed, pki, PROVIDER_BIN)


def test_provider_refuses_where_a_rule_says_so_and_keeps_the_number_of_a_duplicate() -> None:
    state = ProviderState(settings=MockSettings(), log=ActionLog("provider"),
                          rules=[ProviderRule(decision="REFUSED", applicant="760212350620")], next_license=5)
    refused = Case(id="1", registration_number="R1", channel="ELICENSE", service_type="ISSUE",
                   applicant={"iin": "760212350620"})
    granted = Case(id="2", registration_number="R2", channel="PORTAL", service_type="ISSUE",
                   applicant={"iin": "871008401427"})
    duplicate = Case(id="3", registration_number="R3", channel="CENTER", service_type="DUPLICATE",
                     applicant={"iin": "871008401427"}, license_number_in="KZ41LAA00000977")
    one = Case(id="4", registration_number="R4", channel="PORTAL", service_type="ISSUE",
               applicant={"iin": "871008401427"}, request_number="002126112700009")
    state.rules.append(ProviderRule(decision="REFUSED", request_number="002126112700009"))
    for case in (refused, granted, duplicate, one):
        _decide(state, case)
    assert one.decision == "REFUSED"
    assert (refused.decision, bool(refused.reason_kk and refused.reason_ru)) == ("REFUSED", True)
    assert (granted.decision, granted.license_number) == ("GRANTED", "KZ41LAA00000005")
    assert (duplicate.decision, duplicate.license_number) == ("GRANTED", "KZ41LAA00000977")


def test_settings_file_sets_urls_delays_and_a_relative_pki_dir(tmp_path: Path) -> None:
    path = tmp_path / "mocks.toml"
    path.write_text('pki_dir = "pki"\n[urls]\ngateway = "http://127.0.0.1:18080"\n'
                    '[provider]\ntoken = "t0123456789abcdef"\ndelays = { REGISTERED = 5 }\n'
                    '[[provider.rules]]\napplicant = "760212350620"\ndecision = "REFUSED"\n', encoding="utf-8")
    settings = load_settings(path)
    assert settings.pki_dir == tmp_path / "pki"
    assert settings.urls.gateway == "http://127.0.0.1:18080"
    assert settings.provider.delays["REGISTERED"] == 5.0 and settings.provider.delays["ISSUED"] > 0
    assert settings.provider.rules[0].decision == "REFUSED"


def test_settings_file_with_an_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "mocks.toml"
    path.write_text("[shep]\npush_atempts = 3\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="shep.push_atempts: unknown key"):
        load_settings(path)


@pytest.mark.parametrize("name", ["shep", "portal", "center", "elicense", "provider"])
def test_licgate_mock_name_serves_over_loopback(name: str, pki_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "mocks.toml"
    config.write_text(f'pki_dir = "{pki_dir}"\n[urls]\ngateway = "http://127.0.0.1:{free_port()}"\n',
                      encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "mock", name, "--port", str(port),
                             "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/log", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()[-1000:] if proc.stderr else ""
                assert time.monotonic() < deadline, "the mock did not start"
                time.sleep(0.1)
        assert answer.status_code == 200 and isinstance(answer.json(), list)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_settings_file_keeps_each_offices_defaults_where_it_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "mocks.toml"
    path.write_text('[portal]\npassword = "p"\n[center]\npassword = "c"\n', encoding="utf-8")
    settings = load_settings(path)
    assert (settings.portal.sender_id, settings.portal.password) == ("EGOV_PORTAL", "p")
    assert (settings.center.sender_id, settings.center.signer) == ("CENTER_IS", "center_operator")


def test_licgate_mock_without_a_test_pki_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "mocks.toml"
    config.write_text(f'pki_dir = "{tmp_path / "nowhere"}"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway", "mock", "portal", "--port", str(free_port()),
                           "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("licgate mock portal: no test PKI at") and len(
        done.stderr.strip().splitlines()) == 1
