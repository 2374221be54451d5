"""Revocation data as NCA publishes it: OCSP that answers "tryLater" with the CRLs behind it, delta CRLs on
top of their base, stale CRLs, and CRLs downloaded from the NCA mock over loopback into crl_dir."""

from __future__ import annotations

import multiprocessing
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from core.clock import Clock, ManualClock
from core.errors import CertRevoked, CertStatusUnknown
from mocks.nca import create_app
from signing.crlfetch import LOCK_NAME, CrlFetcher
from signing.pki import CRL_NAME, DELTA_CRL_NAME, Pki, build_crl, init_pki, load_ca, load_pki
from signing.revocation import CrlIndex
from signing.signer import sign_enveloped
from signing.trust import TrustConfig, TrustStore
from signing.verifier import build_verifier
from tests.signing.conftest import application
from tests.support.server import serve


def signed_by(pki: Pki, party: str = "individual") -> bytes:
    p = pki.party(party)
    return sign_enveloped(application(), p.key_pem, p.cert_pem)


def serial(pki: Pki, party: str) -> int:
    return int(pki.party(party).serial, 16)


# --- OCSP with the CRL fallback -----------------------------------------------------------------------------


@pytest.fixture
def nca(fresh_pki: Pki):  # noqa: ANN201
    app = create_app(fresh_pki.dir)
    with serve(app) as server:
        server.nca = app.state.nca  # type: ignore[attr-defined]
        yield server


def ocsp(pki: Pki, url: str, fallback: str, observed: list | None = None):  # noqa: ANN201
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="ocsp", ocsp_url=url, crl_dir=pki.crl_dir,
                                      revocation_fallback=fallback), Clock(),
                          observe=(lambda s, o: observed.append((s, o))) if observed is not None else None)


def test_an_ocsp_outage_falls_back_to_the_crls(fresh_pki: Pki, nca) -> None:  # noqa: ANN001
    observed: list[tuple[str, str]] = []
    verifier = ocsp(fresh_pki, nca.url + "/ocsp", "crl", observed)
    verifier.verify_enveloped(signed_by(fresh_pki))
    httpx.post(nca.url + "/control/ocsp", json={"try_later": True})
    assert verifier.verify_enveloped(signed_by(fresh_pki, "individual2")).signer.iin == "760212350620"
    with pytest.raises(CertRevoked, match="CRL"):  # the fallback's CRL still knows the revoked one
        verifier.verify_enveloped(signed_by(fresh_pki, "revoked"))
    assert observed == [("ocsp", "good"), ("fallback", "good"), ("fallback", "revoked")]


def test_without_the_fallback_an_ocsp_outage_is_cert_status_unknown(fresh_pki: Pki, nca) -> None:  # noqa: ANN001
    httpx.post(nca.url + "/control/ocsp", json={"try_later": True})
    with pytest.raises(CertStatusUnknown, match="TRY_LATER"):
        ocsp(fresh_pki, nca.url + "/ocsp", "none").verify_enveloped(signed_by(fresh_pki))


def test_an_intermittent_responder_is_absorbed_by_the_fallback(fresh_pki: Pki, nca) -> None:  # noqa: ANN001
    nca.nca.try_later_every = 2  # every second request "tryLater", as NCA's responder does at times
    verifier = ocsp(fresh_pki, nca.url + "/ocsp", "crl")
    for party in ("individual", "individual2", "le_head", "le_signer"):
        verifier.verify_enveloped(signed_by(fresh_pki, party))
    assert nca.nca.ocsp_requests == 4


def test_the_fallback_needs_current_crls_too(fresh_pki: Pki, nca) -> None:  # noqa: ANN001
    (fresh_pki.crl_dir / CRL_NAME).unlink()
    httpx.post(nca.url + "/control/ocsp", json={"try_later": True})
    with pytest.raises(CertStatusUnknown, match="CRL fallback"):
        ocsp(fresh_pki, nca.url + "/ocsp", "crl").verify_enveloped(signed_by(fresh_pki))


# --- delta CRLs and stale CRLs ----------------------------------------------------------------------------


def write_crls(pki: Pki, full: list, delta: list | None, *, full_number: int = 10, delta_number: int = 11,
               base: int = 10, delta_next: timedelta = timedelta(days=1)) -> None:
    issuer, key = load_ca(pki.dir)
    (pki.crl_dir / CRL_NAME).write_bytes(build_crl(issuer, key, full, number=full_number))
    if delta is None:
        (pki.crl_dir / DELTA_CRL_NAME).unlink(missing_ok=True)
    else:
        (pki.crl_dir / DELTA_CRL_NAME).write_bytes(build_crl(issuer, key, delta, number=delta_number, delta_of=base,
                                                             next_update=delta_next))


def crl_verifier(pki: Pki, clock: Clock | None = None):  # noqa: ANN201
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=pki.crl_dir), clock or Clock(),
                          crl_recheck_seconds=0)


def test_a_delta_crl_revokes_on_top_of_its_base(fresh_pki: Pki) -> None:
    write_crls(fresh_pki, [], [serial(fresh_pki, "individual")])
    with pytest.raises(CertRevoked, match=DELTA_CRL_NAME):
        crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki))
    crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki, "individual2"))


def test_remove_from_crl_in_a_delta_lifts_a_hold_of_the_base(fresh_pki: Pki) -> None:
    held = (serial(fresh_pki, "individual"), datetime.now(UTC) - timedelta(days=2), x509.ReasonFlags.certificate_hold)
    write_crls(fresh_pki, [held], None)
    with pytest.raises(CertRevoked, match="certificateHold"):
        crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki))
    lifted = (serial(fresh_pki, "individual"), datetime.now(UTC) - timedelta(hours=1), x509.ReasonFlags.remove_from_crl)
    write_crls(fresh_pki, [held], [lifted])
    crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki))


def test_a_delta_of_another_base_is_not_applied(fresh_pki: Pki) -> None:
    """A delta whose base is newer than the full CRL we have, or that is older than it, says nothing."""
    write_crls(fresh_pki, [], [serial(fresh_pki, "individual")], full_number=10, base=12, delta_number=13)
    crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki))
    write_crls(fresh_pki, [], [serial(fresh_pki, "individual")], full_number=20, base=10, delta_number=15)
    crl_verifier(fresh_pki).verify_enveloped(signed_by(fresh_pki))


def test_a_stale_full_crl_is_cert_status_unknown(fresh_pki: Pki) -> None:
    write_crls(fresh_pki, [], [], delta_next=timedelta(days=90))
    later = ManualClock(datetime.now(UTC) + timedelta(days=45))  # the full CRL is current for 30 days
    with pytest.raises(CertStatusUnknown, match="expired"):
        crl_verifier(fresh_pki, later).verify_enveloped(signed_by(fresh_pki))


def test_a_stale_delta_counts_as_absent(fresh_pki: Pki) -> None:
    """The delta (current for a day) listed the signer; two days on it says nothing and the full CRL answers."""
    write_crls(fresh_pki, [], [serial(fresh_pki, "individual")])
    later = ManualClock(datetime.now(UTC) + timedelta(days=2))
    crl_verifier(fresh_pki, later).verify_enveloped(signed_by(fresh_pki))


def test_a_large_crl_is_indexed_in_the_background_while_the_old_index_answers(fresh_pki: Pki) -> None:
    trust = TrustStore(fresh_pki.ca_dir)
    index = CrlIndex(fresh_pki.crl_dir, trust, recheck_seconds=0, sync_index_bytes=100)
    index.refresh(wait=True)
    cert = x509.load_pem_x509_certificate(fresh_pki.party("individual").cert_pem)
    issuer, _ = load_ca(fresh_pki.dir)
    now = datetime.now(UTC)
    assert index.lookup(cert, issuer, now) is None
    write_crls(fresh_pki, [serial(fresh_pki, "individual")], None)
    assert index.lookup(cert, issuer, now) is None  # the old index answers while the new one is built
    index.refresh(wait=True)
    assert index.lookup(cert, issuer, now) is not None


# --- CRLs downloaded from the NCA mock --------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path):  # noqa: ANN201
    """A PKI whose CRLs the NCA mock serves, and an empty crl_dir the fetcher fills."""
    pki = load_pki(init_pki(tmp_path / "pki"))
    target = tmp_path / "fetched"
    target.mkdir()
    with serve(create_app(pki.dir)) as server:
        yield pki, server, target


def fetcher(pki: Pki, server, target: Path, clock: Clock | None = None) -> CrlFetcher:  # noqa: ANN001
    urls = (f"{server.url}/crl/{CRL_NAME}", f"{server.url}/crl/{DELTA_CRL_NAME}")
    return CrlFetcher(urls, target, TrustStore(pki.ca_dir), clock or Clock(), refresh_seconds=3600)


def test_crls_are_downloaded_full_and_delta_and_answer(served) -> None:  # noqa: ANN001
    pki, server, target = served
    with pytest.raises(CertStatusUnknown):  # nothing downloaded yet
        crl_verifier(pki_with(pki, target)).verify_enveloped(signed_by(pki))
    f = fetcher(pki, server, target)
    f.fetch_all()
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == sorted([CRL_NAME, DELTA_CRL_NAME])
    verifier = crl_verifier(pki_with(pki, target))
    verifier.verify_enveloped(signed_by(pki))
    with pytest.raises(CertRevoked):
        verifier.verify_enveloped(signed_by(pki, "revoked"))
    # NCA publishes a new delta: the next round brings it, the running index applies it.
    issuer, key = load_ca(pki.dir)
    (pki.crl_dir / DELTA_CRL_NAME).write_bytes(build_crl(issuer, key, [serial(pki, "individual")], number=3,
                                                         delta_of=1))
    f.fetch_all()
    with pytest.raises(CertRevoked, match=DELTA_CRL_NAME):
        verifier.verify_enveloped(signed_by(pki))


def test_a_download_is_seen_at_once_by_the_index_of_its_process(served) -> None:  # noqa: ANN001
    """The serving process's index had listed the empty directory: without the fetcher's word it would not
    look again before its next re-listing (an hour here), and a scrape would report no CRL."""
    pki, server, target = served
    index = CrlIndex(target, TrustStore(pki.ca_dir), recheck_seconds=3600)
    index.refresh(wait=True)
    assert index.states() == []
    urls = (f"{server.url}/crl/{CRL_NAME}", f"{server.url}/crl/{DELTA_CRL_NAME}")
    CrlFetcher(urls, target, TrustStore(pki.ca_dir), Clock(), on_replaced=index.look_again).fetch_all()
    assert [s.name for s in index.states()] == sorted([CRL_NAME, DELTA_CRL_NAME])


def pki_with(pki: Pki, crl_dir: Path) -> Pki:
    from dataclasses import replace

    return replace(pki, crl_dir=crl_dir)


def test_a_crl_not_signed_by_a_pinned_ca_does_not_replace_the_good_one(served, caplog) -> None:  # noqa: ANN001
    from cryptography.hazmat.primitives.asymmetric import rsa

    pki, server, target = served
    f = fetcher(pki, server, target)
    f.fetch_all()
    before = (target / CRL_NAME).read_bytes()
    issuer, _ = load_ca(pki.dir)
    forged = build_crl(issuer, rsa.generate_private_key(public_exponent=65537, key_size=2048), [], number=99)
    (pki.crl_dir / CRL_NAME).write_bytes(forged)
    f.fetch_all()
    assert (target / CRL_NAME).read_bytes() == before
    assert "not signed by a CA" in caplog.text


def test_an_older_crl_does_not_replace_a_newer_one(served) -> None:  # noqa: ANN001
    pki, server, target = served
    issuer, key = load_ca(pki.dir)
    newer = build_crl(issuer, key, [], number=50)
    (target / CRL_NAME).write_bytes(newer)
    fetcher(pki, server, target).fetch_all()  # the mock serves number 1
    assert (target / CRL_NAME).read_bytes() == newer


def test_a_failed_download_is_logged_and_keeps_the_crl_on_disk(served, caplog) -> None:  # noqa: ANN001
    pki, server, target = served
    f = fetcher(pki, server, target)
    f.fetch_all()
    before = (target / CRL_NAME).read_bytes()
    (pki.crl_dir / CRL_NAME).unlink()  # the mock answers 404 now
    f.fetch_all()
    assert (target / CRL_NAME).read_bytes() == before
    assert "CRL download failed" in caplog.text and "404" in caplog.text
    assert f.states[f"{server.url}/crl/{CRL_NAME}"].last_error


def test_a_crl_close_to_its_next_update_is_logged(served, caplog) -> None:  # noqa: ANN001
    pki, server, target = served
    f = fetcher(pki, server, target, clock=ManualClock(datetime.now(UTC) + timedelta(hours=20)))
    f.fetch_all()  # the delta, current for a day, has 4 h left: more than two refresh intervals (2 h)
    assert "goes stale" not in caplog.text
    f.refresh_seconds = 3 * 3600
    f.fetch_all()
    assert f"CRL {DELTA_CRL_NAME} goes stale" in caplog.text


def _fetch_in_a_process(args: tuple[str, str, str, int]) -> int:
    ca_dir, target, url, rounds = args
    f = CrlFetcher((url,), Path(target), TrustStore(Path(ca_dir)), Clock())
    replaced = 0
    for _ in range(rounds):
        replaced += f.fetch(f.states[url])
    return replaced


def test_several_processes_fetching_into_one_directory_leave_a_whole_crl(served) -> None:  # noqa: ANN001
    """Four processes (instances on one host) fetch the same CRLs at once while NCA publishes new ones: the
    file is always a whole, valid CRL, and no temporary file is left behind."""
    pki, server, target = served
    url = f"{server.url}/crl/{CRL_NAME}"
    issuer, key = load_ca(pki.dir)
    stop = threading.Event()

    def publish() -> None:
        number = 2
        while not stop.is_set():
            (pki.crl_dir / f".{CRL_NAME}.new").write_bytes(build_crl(issuer, key, list(range(1, 2000)), number=number))
            os.replace(pki.crl_dir / f".{CRL_NAME}.new", pki.crl_dir / CRL_NAME)
            number += 1

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            pool.map(_fetch_in_a_process, [(str(pki.ca_dir), str(target), url, 5)] * 4)
    finally:
        stop.set()
        publisher.join()
    left = sorted(p.name for p in target.iterdir())
    assert left == sorted([CRL_NAME, LOCK_NAME])
    from signing.revocation import load_crl

    crl = load_crl((target / CRL_NAME).read_bytes())
    assert crl.is_signature_valid(issuer.public_key()) and len(crl) == 1999
