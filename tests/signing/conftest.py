"""Fixtures of the signing tests: one test PKI per session, verifiers over it, application documents."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from core.clock import Clock
from signing.pki import Pki, init_pki, load_pki
from signing.trust import TrustConfig
from signing.verifier import SignatureVerifier, build_verifier

MEDLICENSE = "urn:kz:egov:medlicense:v1"


def application(number_xml: str = "<iin>871008401427</iin>", *, comment: bool = True) -> bytes:
    """An application payload (CONTRACT 4.1) without its signature."""
    note = "\n  <!-- prepared by the portal -->" if comment else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<MedicalLicenseApplication xmlns="{MEDLICENSE}">{note}
  <requestNumber>EGOV-2026-000123</requestNumber>
  <requestDate>2026-11-27T10:15:00+05:00</requestDate>
  <channel>PORTAL</channel>
  <serviceType>ISSUE</serviceType>
  <applicant>{number_xml}<name>АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ</name></applicant>
  <activity><subtype>DENTISTRY</subtype></activity>
  <documents>
    <document code="APPLICATION_FORM" fileName="form.pdf" mimeType="application/pdf"
      sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824">aGVsbG8=</document>
  </documents>
</MedicalLicenseApplication>
""".encode()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return load_pki(init_pki(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def crl_verifier(pki: Pki) -> SignatureVerifier:
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=pki.crl_dir), Clock())


@pytest.fixture
def fresh_pki(tmp_path: Path) -> Pki:
    """A PKI of the test's own, for tests that change its CRLs."""
    return load_pki(init_pki(tmp_path / "pki"))


@pytest.fixture
def xmlsec_sign(xmlsec1: str, tmp_path: Path) -> Callable[[bytes, str, Pki], bytes]:
    """Sign a template (a document with an empty ds:Signature) with Debian's xmlsec1 CLI."""

    def sign(template: bytes, party: str, pki: Pki) -> bytes:
        p = pki.party(party)
        src, out = tmp_path / "template.xml", tmp_path / "signed.xml"
        src.write_bytes(template)
        subprocess.run([xmlsec1, "--sign", "--privkey-pem", f"{p.key_path},{p.cert_path}", "--output", str(out),
                        str(src)], check=True, capture_output=True)
        return out.read_bytes()

    return sign


@pytest.fixture
def xmlsec_verify(xmlsec1: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Verify a signed document with xmlsec1, trusting the given certificate (PEM path) as the key."""

    def verify(document: bytes, cert_path: Path, *extra: str) -> subprocess.CompletedProcess:
        src = tmp_path / "to-verify.xml"
        src.write_bytes(document)
        return subprocess.run([xmlsec1, "--verify", "--pubkey-cert-pem", str(cert_path), *extra, str(src)],
                              capture_output=True, text=True)

    return verify
