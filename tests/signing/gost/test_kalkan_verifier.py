"""The real KalkanCrypt GOST 2015 document through the whole verifier (not the primitives): NCA's GOST 2022
test root and intermediate as the pinned CAs, the path built and checked by the GOST provider."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.clock import Clock
from core.errors import CertExpired, CertUntrusted, IinInvalid, SignatureInvalid
from signing.trust import TrustConfig
from signing.verifier import build_verifier

WHILE_VALID = datetime(2023, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca_dir(kalkan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("nca-gost-ca")
    for name in ("nca-gost2022-test-root.cer", "nca-gost2022-test-intermediate.cer"):
        shutil.copy(kalkan / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def document(kalkan: Path) -> bytes:
    return (kalkan / "gost2015-legal-entity.xml").read_bytes()


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_the_kalkan_signature_verifies_with_its_whole_path(ca_dir: Path, document: bytes) -> None:
    verifier = build_verifier(TrustConfig(ca_dir=ca_dir, revocation="off"), Clock())
    assert len(verifier.trust.roots) == 1 and len(verifier.trust.intermediates) == 1  # GOST self-signature read
    verified = verifier.verify_enveloped(document, at=WHILE_VALID, strict_numbers=False)
    assert verified.signature_method.endswith("gostr34102015-gostr34112015-512")
    assert verified.signer.iin == "123456789011" and verified.signer.bin == "123456789021"
    assert "1.2.398.3.3.4.1.2.1" in verified.signer.roles  # first head
    assert verified.root.findtext("message") == "Hello"


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_judged_by_intake_rules_ncas_test_iin_is_refused(ca_dir: Path, document: bytes) -> None:
    verifier = build_verifier(TrustConfig(ca_dir=ca_dir, revocation="off"), Clock())
    with pytest.raises(IinInvalid):
        verifier.verify_enveloped(document, at=WHILE_VALID)


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_judged_now_the_certificate_has_expired(ca_dir: Path, document: bytes) -> None:
    verifier = build_verifier(TrustConfig(ca_dir=ca_dir, revocation="off"), Clock())
    with pytest.raises(CertExpired):
        verifier.verify_enveloped(document, strict_numbers=False)


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_a_changed_document_is_signature_invalid(ca_dir: Path, document: bytes) -> None:
    verifier = build_verifier(TrustConfig(ca_dir=ca_dir, revocation="off"), Clock())
    with pytest.raises(SignatureInvalid, match="digest"):
        verifier.verify_enveloped(document.replace(b"Hello", b"Hallo"), at=WHILE_VALID, strict_numbers=False)


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_without_the_intermediate_there_is_no_path(ca_dir: Path, document: bytes, tmp_path: Path) -> None:
    shutil.copy(ca_dir / "nca-gost2022-test-root.cer", tmp_path / "root.cer")
    verifier = build_verifier(TrustConfig(ca_dir=tmp_path, revocation="off"), Clock())
    with pytest.raises(CertUntrusted, match="no pinned CA named"):
        verifier.verify_enveloped(document, at=WHILE_VALID, strict_numbers=False)


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_an_intermediate_posing_as_root_is_not_a_root(ca_dir: Path, document: bytes, tmp_path: Path) -> None:
    shutil.copy(ca_dir / "nca-gost2022-test-intermediate.cer", tmp_path / "inter.cer")
    with pytest.raises(ValueError, match="no trusted root"):
        build_verifier(TrustConfig(ca_dir=tmp_path, revocation="off"), Clock())
