"""The five scenarios of docs/testing.md, end to end over real HTTP: `licgate serve` as a child process
(fresh SQLite file, fresh test PKI, OCSP from the NCA mock when installed) and every mock on loopback.
The same `Stack` and scenarios as `licgate demo`; each test asserts its scenario's real outcome."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from mocks.demo import SCENARIOS, Outcome, Stack, run_scenarios

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(Path(tmp_path_factory.mktemp("demo"))).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def outcomes(stack: Stack) -> dict[str, Outcome]:
    return {o.key: o for o in run_scenarios(stack, timeout=90)}


def _passed(out: Outcome) -> None:
    failed = [f"{name} ({detail})" for name, passed, detail in out.checks if not passed]
    assert out.ok, f"{out.key}: {out.error or ''} failed checks: {failed}"


def _cabinet(stack: Stack, office: str, request_number: str) -> dict:
    return stack.get(office, f"/cabinet/{request_number}")


def test_portal_issue_for_an_individual_is_granted_and_the_verified_licence_reaches_the_portal(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["portal-issue"]
    _passed(out)
    record = _cabinet(stack, "portal", out.request_number)
    assert record["status"] == "GRANTED" and record["result_verified"]
    assert [n["status"] for n in record["notifications"]][-1] == "GRANTED"
    assert record["decision"]["licenseNumber"].startswith("KZ41LAA")


def test_center_reissue_with_an_incomplete_package_is_refused_at_intake_and_never_queued(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["center-reissue-incomplete"]
    _passed(out)
    record = _cabinet(stack, "center", out.request_number)
    assert [m["code"] for m in record["missing_documents"]] == ["REISSUE_GROUNDS"]
    assert record["status_kk"] == "Өтінішті қабылдаудан бас тартылды"
    assert record["status_ru"] == "Отказано в приеме заявления"
    provider_cases = stack.get("provider", "/applications")
    assert out.registration_number not in {c["registration_number"] for c in provider_cases}
    assert record["notifications"] == []  # nothing about it was ever sent back


def test_center_duplicate_is_granted_handed_over_and_recorded_as_delivered(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["center-duplicate"]
    _passed(out)
    record = _cabinet(stack, "center", out.request_number)
    assert record["handed_over_at"]
    assert record["decision"]["licenseNumber"] == "KZ41LAA00000977"  # a duplicate keeps the licence's number
    case = stack.get("provider", f"/applications/{out.registration_number}")
    view = stack.gateway_application(case["id"])
    assert view is not None and [t["step"] for t in view["timeline"]][-1] == "DELIVERED"


def test_elicense_issue_is_refused_with_a_signed_motivated_refusal_in_both_languages(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["elicense-issue-refused"]
    _passed(out)
    record = _cabinet(stack, "elicense", out.request_number)
    assert record["status"] == "REFUSED" and record["result_verified"]
    assert "10" in record["decision"]["reasonKk"] and "10" in record["decision"]["reasonRu"]
    download = httpx.get(f"{stack.url('elicense')}/cabinet/{out.request_number}/result")
    assert download.status_code == 200 and b"<decision>REFUSED</decision>" in download.content


def test_legal_entity_application_signed_by_its_first_head_is_granted(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["portal-legal-entity"]
    _passed(out)
    record = _cabinet(stack, "portal", out.request_number)
    assert record["applicant"]["bin"] == "940140000385" and not record["applicant"]["iin"]
    assert record["signer"] == "le_head"


def test_an_application_signed_with_a_gost_key_is_granted(stack: Stack, outcomes: dict[str, Outcome]) -> None:
    out = outcomes["portal-gost"]
    _passed(out)
    record = _cabinet(stack, "portal", out.request_number)
    assert record["signer"] == "gost_individual" and record["status"] == "GRANTED"
    signer = x509.load_pem_x509_certificate(
        stack.settings.pki_dir.joinpath("parties", "gost_individual.cert.pem").read_bytes())
    assert signer.signature_algorithm_oid.dotted_string == "1.2.398.3.10.1.1.2.3.2"  # NCA's GOST 2015 (512)
    messages = stack.get("shep", "/shep/messages")
    assert [m["message_type"] for m in messages if m["correlation_id"] == record["message_id"]][-1] == "RESPONSE"


def test_an_application_signed_long_ago_by_a_certificate_expired_since_is_granted_with_its_signed_at(
        stack: Stack, outcomes: dict[str, Outcome]) -> None:
    from datetime import UTC, datetime, timedelta

    out = outcomes["portal-signed-long-ago"]
    _passed(out)
    record = _cabinet(stack, "portal", out.request_number)
    signed_at = datetime.fromisoformat(record["signed_at"])
    assert abs(signed_at - (datetime.now(UTC) - timedelta(days=60))) < timedelta(hours=1)
    signer = x509.load_pem_x509_certificate(stack.settings.pki_dir.joinpath("parties", "expired.cert.pem").read_bytes())
    assert signer.not_valid_before_utc < signed_at < signer.not_valid_after_utc < datetime.now(UTC)
    case = stack.get("provider", f"/applications/{out.registration_number}")
    view = stack.gateway_application(case["id"])
    # The receipt says it to the second (as receivedAt), the provider API with its fraction.
    assert view is not None and datetime.fromisoformat(view["signed_at"]).replace(microsecond=0) == signed_at
    assert stack.servers["nca"].app.state.nca.tsp_requests >= 1


def test_every_notification_was_delivered_by_shep_to_its_own_office(stack: Stack, outcomes: dict) -> None:
    messages = stack.get("shep", "/shep/messages")
    assert messages and all(m["state"] == "DELIVERED" for m in messages)
    expected = {"portal-issue": "EGOV_PORTAL", "center-duplicate": "CENTER_IS", "elicense-issue-refused": "ELICENSE",
                "portal-legal-entity": "EGOV_PORTAL"}
    for key, sender in expected.items():
        office = next(s.office for s in SCENARIOS if s.key == key)
        record = _cabinet(stack, office, outcomes[key].request_number)
        correlated = [m for m in messages if m["correlation_id"] == record["message_id"]]
        assert correlated and {m["recipient"] for m in correlated} == {sender}
        assert [m["message_type"] for m in correlated][-1] == "RESPONSE"


def test_a_wrong_password_at_the_gateway_comes_back_through_shep_as_a_fault(stack: Stack) -> None:
    stack.settings.portal.password, good = "wrong-password", stack.settings.portal.password
    try:
        answer = stack.post("portal", "/applications", {"applicant": "individual"})
    finally:
        stack.settings.portal.password = good
    record = answer.json()
    assert record["answer_fault"] and record["answer_code"] == "SENDER_AUTH_FAILED"


def test_the_demo_writes_mock_settings_that_load_back_to_the_same_wiring(stack: Stack) -> None:
    from mocks.common import load_settings

    again = load_settings(stack.workdir / "mocks.toml")
    assert again.urls == stack.settings.urls
    assert again.provider.token == stack.settings.provider.token
    assert again.center.signer == "center_operator" and again.elicense.dialect == "elicense"
    assert again.portal.password == stack.settings.portal.password


def test_elicense_requests_without_their_ws_security_signature_are_refused_by_the_gateway(stack: Stack) -> None:
    office = stack.settings.elicense
    office.transport, kept = "", office.transport
    try:
        answer = stack.post("elicense", "/applications", {"applicant": "individual2"})
    finally:
        office.transport = kept
    record = answer.json()
    assert record["answer_fault"] and record["answer_code"] == "TRANSPORT_SIGNATURE_INVALID"


def test_the_cabinet_page_shows_the_status_in_both_languages(stack: Stack, outcomes: dict[str, Outcome]) -> None:
    page = httpx.get(f"{stack.url('portal')}/cabinet/{outcomes['portal-issue'].request_number}/page")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Қанағаттандырылды / Удовлетворено" in page.text and "KZ41LAA" in page.text


def test_a_result_signed_without_signing_rights_is_refused_and_the_scenario_reported_failed(stack: Stack) -> None:
    """The demo does not fake outcomes: when the provider's IS signs with an employee's key, the gateway
    refuses the upload (SIGNER_NOT_AUTHORIZED), nothing final reaches the portal, the scenario fails."""
    stack.settings.provider.signer, kept = "provider_employee", stack.settings.provider.signer
    try:
        [out] = run_scenarios(stack, timeout=8, scenarios=(SCENARIOS[0],))
    finally:
        stack.settings.provider.signer = kept
    assert not out.ok and "did not finish" in out.error
    case = stack.get("provider", f"/applications/{out.registration_number}")
    assert case["result_status"] == 422 and "SIGNER_NOT_AUTHORIZED" in case["result_error"]
    assert _cabinet(stack, "portal", out.request_number)["status"] == "IN_REVIEW"


def test_licgate_demo_exits_0_and_keeps_its_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    keep = tmp_path / "kept"
    done = subprocess.run([sys.executable, "-m", "gateway", "demo", "--keep", str(keep)], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.count("| PASS ") == len(SCENARIOS) == 7 and "ALL SCENARIOS PASSED" in done.stdout
    assert "Қанағаттандырылды" in done.stdout and "Отказано в приеме заявления" in done.stdout
    for name in ("licgate.toml", "mocks.toml", "licgate.db", "gateway.log", "mocks.log", "pki/pki.json"):
        assert (keep / name).exists(), name
    again = subprocess.run([sys.executable, "-m", "gateway", "demo", "--keep", str(keep)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_an_application_signed_by_someone_else_is_refused_with_iin_mismatch(stack: Stack) -> None:
    record = stack.post("portal", "/applications", {"applicant": "individual", "signer": "individual2"}).json()
    assert record["answer_fault"] and record["answer_code"] == "IIN_MISMATCH"
    assert "760212350620" in record["answer_error_data"]
