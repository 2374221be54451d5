"""`licgate verify FILE`: RSA and GOST documents, each refusal code, `--at`, `--json`, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from signing.pki import Pki
from signing.signer import sign_enveloped
from tests.signing.conftest import application
from tests.signing.stamps import mock_stamper

ROOT = Path(__file__).resolve().parents[2]
KALKAN = ROOT / "tests" / "data" / "kalkan"
GOST_34310 = b"http://www.w3.org/2001/04/xmldsig-more#gost34310-gost34311"
RSA_SHA256 = b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


def signed(pki: Pki, party: str = "individual", xml: bytes | None = None, **kw: object) -> bytes:
    p = pki.party(party)
    return sign_enveloped(xml or application(f"<iin>{p.iin or '871008401427'}</iin>"), p.key_pem, p.cert_pem,
                          **kw)  # type: ignore[arg-type]


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, document: bytes, *options: str) -> tuple[int, str]:
    path = tmp_path / "document.xml"
    path.write_bytes(document)
    code = main(["verify", str(path), *options])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, document: bytes, *options: str) -> tuple[int, dict]:
    code, out = run(capsys, tmp_path, document, *options, "--json")
    return code, json.loads(out)


def trust(pki: Pki) -> tuple[str, ...]:
    return ("--ca-dir", str(pki.ca_dir), "--crl-dir", str(pki.crl_dir))


@pytest.mark.parametrize(("party", "method"), [
    ("individual", "xmldsig-more#rsa-sha256"),
    ("gost_individual", "gostr34102015-gostr34112015-512"),
    ("gost_individual_256", "gostr34102015-gostr34112015-256"),
])
def test_a_good_document_is_ok_with_its_signer_and_algorithms(pki: Pki, tmp_path: Path, capsys, party: str,
                                                               method: str) -> None:  # noqa: ANN001
    code, out = run(capsys, tmp_path, signed(pki, party), *trust(pki))
    assert code == 0
    assert out.startswith("OK")
    p = pki.party(party)
    assert p.iin in out and p.serial in out and "individual (1.2.398.3.3.4.1.1)" in out
    assert method in out
    assert "not proven" in out


def test_json_names_the_signer_roles_and_serial(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, report = run_json(capsys, tmp_path, signed(pki, "gost_le_head", xades="bes"), *trust(pki))
    assert code == 0
    assert report["verdict"] == "OK" and report["errorCode"] is None and report["signedAt"] is None
    signer = report["signer"]
    assert signer["iin"] == "830717350867" and signer["bin"] == "940140000385"
    assert "1.2.398.3.3.4.1.2.1" in signer["roles"] and "first head" in signer["roleNames"]
    assert signer["certificate_serial"] == pki.party("gost_le_head").serial
    assert report["algorithms"]["signature"].endswith("gostr34102015-gostr34112015-512")
    assert report["signerVerified"] is True


def _refusals(pki: Pki) -> dict[str, bytes]:
    unsigned = application()
    good = signed(pki, "gost_individual")
    return {
        "SIGNATURE_MISSING": unsigned,
        "SIGNATURE_INVALID": good.replace(b"DENTISTRY", b"DENTISTRX"),
        "ALGORITHM_UNSUPPORTED": signed(pki).replace(RSA_SHA256, GOST_34310),
        "CERT_UNTRUSTED": signed(pki, "foreign"),
        "CERT_EXPIRED": signed(pki, "gost_expired"),
        "CERT_NOT_YET_VALID": signed(pki, "not_yet_valid"),
        "CERT_REVOKED": signed(pki, "gost_revoked"),
        "CERT_NOT_FOR_SIGNING": signed(pki, "individual_auth"),
        "MALFORMED_MESSAGE": b"<not xml",
    }


@pytest.mark.parametrize("code", ["SIGNATURE_MISSING", "SIGNATURE_INVALID", "ALGORITHM_UNSUPPORTED", "CERT_UNTRUSTED",
                                  "CERT_EXPIRED", "CERT_NOT_YET_VALID", "CERT_REVOKED", "CERT_NOT_FOR_SIGNING",
                                  "MALFORMED_MESSAGE"])
def test_each_refusal_exits_1_with_its_code(pki: Pki, tmp_path: Path, capsys, code: str) -> None:  # noqa: ANN001
    document = _refusals(pki)[code]
    exit_code, out = run(capsys, tmp_path, document, *trust(pki))
    assert exit_code == 1
    assert out.startswith(f"{code}: "), out
    exit_code, report = run_json(capsys, tmp_path, document, *trust(pki))
    assert exit_code == 1 and report["verdict"] == code and report["errorCode"] == code and report["errorMessage"]


def test_a_refused_signers_certificate_is_shown_but_marked_unverified(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, report = run_json(capsys, tmp_path, signed(pki, "gost_revoked"), *trust(pki))
    assert code == 1 and report["errorCode"] == "CERT_REVOKED"
    assert report["signer"]["certificate_serial"] == pki.party("gost_revoked").serial
    assert report["signerVerified"] is False


def test_without_crls_of_the_issuer_the_status_is_unknown(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    empty = tmp_path / "no-crls"
    empty.mkdir()
    code, report = run_json(capsys, tmp_path, signed(pki, "gost_individual"), "--ca-dir", str(pki.ca_dir),
                            "--crl-dir", str(empty))
    assert code == 1 and report["errorCode"] == "CERT_STATUS_UNKNOWN"


def test_revocation_off_does_not_look_at_crls(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, out = run(capsys, tmp_path, signed(pki, "gost_revoked"), *trust(pki), "--revocation", "off")
    assert code == 0 and "revocation      not checked" in out


def test_a_timestamp_that_does_not_verify_is_timestamp_invalid(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    document = signed(pki, "individual", xades="t", timestamp=mock_stamper(pki, party="tsa_foreign"))
    code, report = run_json(capsys, tmp_path, document, *trust(pki), "--tsa-dir", str(pki.tsa_dir))
    assert code == 1 and report["errorCode"] == "TIMESTAMP_INVALID"


# --- --at and the proven signing time -------------------------------------------------------------------


def test_at_judges_an_old_document_when_its_certificate_was_valid(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    document = signed(pki, "gost_expired")
    assert run(capsys, tmp_path, document, *trust(pki))[0] == 1
    when = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    code, report = run_json(capsys, tmp_path, document, *trust(pki), "--at", when)
    assert code == 0 and report["verdict"] == "OK"
    assert report["judgedBy"] == "--at" and report["signedAt"] is None
    assert datetime.fromisoformat(report["judgedAt"]) == datetime.fromisoformat(when)


def test_at_without_a_zone_is_almaty_time(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    when = (datetime.now(UTC) - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%S")
    code, report = run_json(capsys, tmp_path, signed(pki, "expired"), *trust(pki), "--at", when)
    assert code == 0 and report["judgedAt"].endswith("+05:00")


def test_a_verified_timestamp_wins_over_at(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    gen_time = (datetime.now(UTC) - timedelta(days=60)).replace(microsecond=0)
    document = signed(pki, "expired", xades="t", timestamp=mock_stamper(pki, gen_time=gen_time))
    code, report = run_json(capsys, tmp_path, document, *trust(pki), "--tsa-dir", str(pki.tsa_dir),
                            "--at", datetime.now(UTC).isoformat())
    assert code == 0, report
    assert datetime.fromisoformat(report["signedAt"]) == gen_time and report["judgedBy"] == "timestamp"
    code, out = run(capsys, tmp_path, document, *trust(pki), "--tsa-dir", str(pki.tsa_dir))
    assert code == 0 and "proven by a verified timestamp" in out


@pytest.fixture
def nca_test_cas(tmp_path: Path) -> Path:
    """NCA's RSA and GOST 2022 test roots and intermediates, pinned together in one directory."""
    ca = tmp_path / "ca"
    ca.mkdir()
    for name in ("nca-gost2022-test-root.cer", "nca-gost2022-test-intermediate.cer", "nca-rsa-test-root.crt",
                 "nca-rsa-test-intermediate.crt"):
        shutil.copy(KALKAN / name, ca / name)
    return ca


@pytest.mark.filterwarnings("ignore:Attribute's length")
@pytest.mark.parametrize(("document", "at", "method", "bin_"), [
    ("gost2015-legal-entity.xml", "2023-06-01T12:00:00+05:00", "gostr34102015-gostr34112015-512", "123456789021"),
    ("rsa-individual.xml", "2021-06-01T12:00:00+06:00", "xmldsig-more#rsa-sha256", None),
])
def test_real_kalkan_documents_verify_at_their_time_with_warnings_for_ncas_test_numbers(
        tmp_path: Path, capsys, nca_test_cas: Path, document: str, at: str, method: str,  # noqa: ANN001
        bin_: str | None) -> None:
    data = (KALKAN / document).read_bytes()
    code, report = run_json(capsys, tmp_path, data, "--ca-dir", str(nca_test_cas), "--at", at)
    assert code == 0, report
    assert report["algorithms"]["signature"].endswith(method)
    assert report["signer"]["iin"] == "123456789011" and report["signer"]["bin"] == bin_
    warned = " ".join(report["warnings"])
    assert "IIN_INVALID" in warned and ("BIN_INVALID" in warned) == (bin_ is not None)
    assert run_json(capsys, tmp_path, data, "--ca-dir", str(nca_test_cas))[1]["errorCode"] == "CERT_EXPIRED"
    changed = data.replace(b"<message>Hello<", b"<message>Hallo<").replace(b"<b>test</b>", b"<b>tost</b>")
    assert changed != data
    assert run_json(capsys, tmp_path, changed, "--ca-dir", str(nca_test_cas), "--at", at)[1]["errorCode"] == \
        "SIGNATURE_INVALID"


def test_config_supplies_the_trust(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from tests.config.test_config import base_toml

    text = base_toml(tmp_path).replace('ca_dir = "./pki/ca"', f'ca_dir = "{pki.ca_dir}"', 1).replace(
        'crl_dir = "./pki/crl"', f'crl_dir = "{pki.crl_dir}"', 1)
    config = tmp_path / "licgate.toml"
    config.write_text(text, encoding="utf-8")
    assert run(capsys, tmp_path, signed(pki, "gost_individual"), "--config", str(config))[0] == 0
    assert run(capsys, tmp_path, signed(pki, "gost_revoked"), "--config", str(config))[0] == 1


# --- exit 2 --------------------------------------------------------------------------------------------------


def test_bad_usage_exits_2(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    document = tmp_path / "d.xml"
    document.write_bytes(signed(pki))
    assert main(["verify", str(document)]) == 2  # neither --config nor --ca-dir
    assert "--ca-dir" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.xml"), "--ca-dir", str(pki.ca_dir)]) == 2
    assert main(["verify", str(document), "--ca-dir", str(pki.ca_dir), "--at", "yesterday"]) == 2
    assert main(["verify", str(document), "--ca-dir", str(tmp_path / "nowhere")]) == 2
    assert main(["verify", str(document), "--ca-dir", str(tmp_path)]) == 2  # no root in it
    with pytest.raises(SystemExit) as caught:  # argparse: both trust sources at once
        main(["verify", str(document), "--ca-dir", str(pki.ca_dir), "--config", "x.toml"])
    assert caught.value.code == 2


def test_the_installed_command_exits_0_1_and_2(pki: Pki, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_bytes(signed(pki, "gost_individual"))
    bad.write_bytes(signed(pki, "gost_revoked"))
    command = [sys.executable, "-m", "gateway", "verify"]
    for path, expected in ((good, 0), (bad, 1), (tmp_path / "missing.xml", 2)):
        done = subprocess.run([*command, str(path), *trust(pki)], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == expected, done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_revocation_by_ocsp_asks_the_responder(pki: Pki, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """--revocation ocsp: the certificates' AIA names the NCA mock's address; here the responder is reached
    through --config's ocsp_url (a GOST-signed answer for GOST certificates)."""
    from mocks.nca import create_app
    from tests.config.test_config import base_toml
    from tests.support.server import serve

    app = create_app(pki.dir)
    with serve(app) as nca:
        text = base_toml(tmp_path).replace('ca_dir = "./pki/ca"', f'ca_dir = "{pki.ca_dir}"', 1).replace(
            'ocsp_url = ""', f'ocsp_url = "{nca.url}/ocsp"\nrevocation_fallback = "none"', 1)
        config = tmp_path / "licgate.toml"
        config.write_text(text, encoding="utf-8")
        options = ("--config", str(config), "--revocation", "ocsp")
        assert run_json(capsys, tmp_path, signed(pki, "gost_individual"), *options)[0] == 0
        code, report = run_json(capsys, tmp_path, signed(pki, "gost_revoked"), *options)
        assert code == 1 and report["errorCode"] == "CERT_REVOKED" and "OCSP" in report["errorMessage"]
        assert app.state.nca.ocsp_requests >= 2
