"""The gateway's live revocation data and its operator signals, over loopback: CRLs downloaded from the NCA
mock at start into an empty crl_dir, revocation outcomes by source in /metrics (also from the intake worker
processes), each CRL's seconds to nextUpdate, pinned and transport certificates' seconds to expiry, the
OCSP fallback at the gateway."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from mocks.nca import create_app as create_nca
from signing.pki import CRL_NAME, DELTA_CRL_NAME, Pki, init_pki, load_pki
from tests.intake.conftest import make_config
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.server import serve


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return load_pki(init_pki(tmp_path / "pki"))


def metric(text: str, name: str, **labels: str) -> list[float]:
    """The values of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match[1] for k, v in labels.items()):
            found.append(float(match[2]))
    return found


def test_crls_are_fetched_at_start_and_every_signal_is_in_metrics(pki: Pki, tmp_path: Path) -> None:
    fetched = tmp_path / "crl-fetched"
    fetched.mkdir()
    with serve(create_nca(pki.dir)) as nca:
        config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=1)
        config = replace(config, trust=replace(config.trust, crl_dir=fetched, crl_urls=(
            f"{nca.url}/crl/{CRL_NAME}", f"{nca.url}/crl/{DELTA_CRL_NAME}")))
        with serve(create_app(config)) as gateway:
            assert sorted(p.name for p in fetched.iterdir() if not p.name.startswith(".")) == \
                sorted([CRL_NAME, DELTA_CRL_NAME])
            assert post(gateway.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
            revoked = post(gateway.url, envelope(sign(application_xml(iin="790103300220"), pki, "revoked")))
            assert revoked.fault_code == "CERT_REVOKED"
            text = httpx.get(gateway.url + "/metrics").text
    # Counted in the intake worker process, reported with each examination to the serving process.
    assert metric(text, "licgate_revocation_checks_total", source="crl", outcome="good") == [1.0]
    assert metric(text, "licgate_revocation_checks_total", source="crl", outcome="revoked") == [1.0]
    full = metric(text, "licgate_crl_next_update_seconds", crl=CRL_NAME)
    delta = metric(text, "licgate_crl_next_update_seconds", crl=DELTA_CRL_NAME)
    assert len(full) == 1 and 29 * 86400 < full[0] <= 30 * 86400
    assert len(delta) == 1 and 0 < delta[0] <= 86400
    assert len(metric(text, "licgate_certificate_expiry_seconds", kind="ca")) == 4  # RSA and GOST root, intermediate
    assert len(metric(text, "licgate_certificate_expiry_seconds", kind="tsa")) == 3  # tsa, root, intermediate
    assert all(v > 0 for v in metric(text, "licgate_certificate_expiry_seconds"))


def test_an_ocsp_outage_at_the_gateway_is_answered_by_the_crl_fallback(pki: Pki, tmp_path: Path) -> None:
    app = create_nca(pki.dir)
    with serve(app) as nca:
        config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0)
        config = replace(config, trust=replace(config.trust, revocation="ocsp", ocsp_url=f"{nca.url}/ocsp"))
        with serve(create_app(config)) as gateway:
            assert post(gateway.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
            app.state.nca.try_later = True  # another signer: the first answer is cached until its nextUpdate
            other = envelope(sign(application_xml(iin="760212350620"), pki, "individual2"))
            assert post(gateway.url, other).status_code == "SCSS001"
            text = httpx.get(gateway.url + "/metrics").text
            none = replace(config, trust=replace(config.trust, revocation_fallback="none"),
                           storage=replace(config.storage, url=f"sqlite:///{tmp_path / 'other.sqlite'}"))
            with serve(create_app(none)) as strict:
                reply = post(strict.url, envelope(sign(application_xml(), pki)))
                assert reply.fault_code == "CERT_STATUS_UNKNOWN" and "TRY_LATER" in (reply.error_data or "")
    assert metric(text, "licgate_revocation_checks_total", source="ocsp", outcome="good") == [1.0]
    assert metric(text, "licgate_revocation_checks_total", source="fallback", outcome="good") == [1.0]


def test_a_fetch_that_fails_at_start_does_not_keep_the_gateway_from_starting(pki: Pki, tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.server import free_port

    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0)
    config = replace(config, trust=replace(config.trust, crl_urls=(f"http://127.0.0.1:{free_port()}/crl/x.crl",)))
    with serve(create_app(config)) as gateway:  # the PKI's own CRLs in crl_dir keep answering
        assert post(gateway.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
    assert "CRL download failed" in caplog.text
