"""XAdES-T: a verified RFC 3161 timestamp moves the judgement of the signer's certificate to genTime.

Tokens come from Debian's `openssl ts` with the test TSA's key (an independent implementation) wherever the
case allows a genTime of now (the verifier's clock is then moved instead), and from `signing.tsa` where a
genTime in the past or the future is the point."""

from __future__ import annotations

import base64
import copy
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from core.clock import Clock, ManualClock
from core.errors import CertExpired, CertRevoked, CertStatusUnknown, TimestampInvalid
from signing.pki import CRL_NAME, DELTA_CRL_NAME, Pki, build_crl, load_ca
from signing.signer import sign_enveloped
from signing.trust import TrustConfig
from signing.tsa import TimestampAuthority, request, token_of
from signing.verifier import build_verifier
from signing.xades import XADES
from tests.signing.conftest import application
from tests.signing.stamps import mock_stamper, openssl, openssl_stamper

NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": XADES}
LATER = timedelta(days=400)  # every party's certificate has expired by then


def stamped(pki: Pki, stamper, party: str = "individual", **layout) -> bytes:  # noqa: ANN001
    p = pki.party(party)
    return sign_enveloped(application(), p.key_pem, p.cert_pem, xades="t", timestamp=stamper, **layout)


def verifier_at(pki: Pki, clock: Clock, *, revocation: str = "crl", tsa: bool = True, crl_dir: Path | None = None):  # noqa: ANN201
    return build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation=revocation, crl_dir=crl_dir or pki.crl_dir,
                                      tsa_dir=pki.tsa_dir if tsa else None), clock, crl_recheck_seconds=0)


def long_crls(pki: Pki, entries: list, *, now: datetime | None = None) -> None:
    """Replace the intermediate's CRLs by one listing `entries`, current for two years (and no delta)."""
    issuer, key = load_ca(pki.dir)
    (pki.crl_dir / DELTA_CRL_NAME).unlink(missing_ok=True)
    (pki.crl_dir / CRL_NAME).write_bytes(build_crl(issuer, key, entries, now=now, next_update=timedelta(days=730),
                                                   number=5))


def serial(pki: Pki, party: str) -> int:
    return int(pki.party(party).serial, 16)


# --- the signing time is proven -------------------------------------------------------------------------


def test_an_openssl_token_proves_the_signing_time(pki, tmp_path):
    before = datetime.now(UTC)
    document = stamped(pki, openssl_stamper(pki, tmp_path / "ts"))
    verified = verifier_at(pki, Clock()).verify_enveloped(document)
    assert verified.signed_at is not None
    assert before - timedelta(seconds=2) <= verified.signed_at <= datetime.now(UTC) + timedelta(seconds=2)
    assert verified.timestamp is not None and verified.timestamp.tsa.serial_number == serial(pki, "tsa")


def test_expired_since_signing_with_a_valid_timestamp_is_accepted(fresh_pki, tmp_path):
    long_crls(fresh_pki, [])
    document = stamped(fresh_pki, openssl_stamper(fresh_pki, tmp_path / "ts"))
    later = ManualClock(datetime.now(UTC) + LATER)
    verified = verifier_at(fresh_pki, later).verify_enveloped(document)
    assert verified.signer.iin == "871008401427"
    assert verified.signed_at is not None and verified.signed_at < verified.certificate.not_valid_after_utc


def test_the_same_signature_without_a_timestamp_is_judged_now(fresh_pki, tmp_path):
    long_crls(fresh_pki, [])
    document = stamped(fresh_pki, openssl_stamper(fresh_pki, tmp_path / "ts"))
    later = ManualClock(datetime.now(UTC) + LATER)
    with pytest.raises(CertExpired):
        verifier_at(fresh_pki, later, tsa=False).verify_enveloped(document)  # no tsa_dir: the stamp is ignored
    p = fresh_pki.party("individual")
    with pytest.raises(CertExpired):
        verifier_at(fresh_pki, later).verify_enveloped(sign_enveloped(application(), p.key_pem, p.cert_pem,
                                                                      xades="bes"))


def test_expired_before_gen_time_is_cert_expired(pki, tmp_path):
    with pytest.raises(CertExpired):
        verifier_at(pki, Clock()).verify_enveloped(stamped(pki, openssl_stamper(pki, tmp_path / "ts"), "expired"))


def test_revoked_after_gen_time_is_accepted(fresh_pki, tmp_path):
    now = datetime.now(UTC)
    long_crls(fresh_pki, [(serial(fresh_pki, "individual"), now + timedelta(days=10), x509.ReasonFlags.superseded)],
              now=now + timedelta(days=11))
    document = stamped(fresh_pki, openssl_stamper(fresh_pki, tmp_path / "ts"))
    clock = ManualClock(now + timedelta(days=12))
    assert verifier_at(fresh_pki, clock).verify_enveloped(document).signed_at is not None
    with pytest.raises(CertRevoked):  # without the timestamp the revocation counts
        verifier_at(fresh_pki, clock, tsa=False).verify_enveloped(document)


@pytest.mark.parametrize("reason", [x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise])
def test_revoked_after_gen_time_for_a_compromise_is_cert_revoked(fresh_pki, tmp_path, reason):
    now = datetime.now(UTC)
    long_crls(fresh_pki, [(serial(fresh_pki, "individual"), now + timedelta(days=10), reason)],
              now=now + timedelta(days=11))
    document = stamped(fresh_pki, openssl_stamper(fresh_pki, tmp_path / "ts"))
    with pytest.raises(CertRevoked, match="compromise"):
        verifier_at(fresh_pki, ManualClock(now + timedelta(days=12))).verify_enveloped(document)


def test_revoked_before_gen_time_is_cert_revoked(fresh_pki):
    now = datetime.now(UTC)
    long_crls(fresh_pki, [(serial(fresh_pki, "individual"), now - timedelta(days=3), x509.ReasonFlags.superseded)])
    document = stamped(fresh_pki, mock_stamper(fresh_pki, gen_time=now - timedelta(days=2)))
    with pytest.raises(CertRevoked, match="superseded"):
        verifier_at(fresh_pki, Clock()).verify_enveloped(document)


def test_revoked_at_gen_time_exactly_is_cert_revoked(fresh_pki):
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    long_crls(fresh_pki, [(serial(fresh_pki, "individual"), when, x509.ReasonFlags.superseded)])
    document = stamped(fresh_pki, mock_stamper(fresh_pki, gen_time=when))
    with pytest.raises(CertRevoked):
        verifier_at(fresh_pki, Clock()).verify_enveloped(document)


def test_a_stale_crl_is_cert_status_unknown_even_with_a_timestamp(pki, tmp_path):
    document = stamped(pki, openssl_stamper(pki, tmp_path / "ts"))
    with pytest.raises(CertStatusUnknown, match="expired"):  # the PKI's CRL is current for 30 days only
        verifier_at(pki, ManualClock(datetime.now(UTC) + timedelta(days=45))).verify_enveloped(document)


# --- the timestamp itself ------------------------------------------------------------------------------


def test_an_untrusted_tsa_is_timestamp_invalid(pki):
    with pytest.raises(TimestampInvalid, match="not trusted|not in trust.tsa_dir"):
        verifier_at(pki, Clock()).verify_enveloped(stamped(pki, mock_stamper(pki, party="tsa_foreign")))


def test_a_tsa_token_over_other_bytes_is_timestamp_invalid(pki):
    with pytest.raises(TimestampInvalid, match="imprint"):
        verifier_at(pki, Clock()).verify_enveloped(stamped(pki, mock_stamper(pki, over=b"other bytes")))


def test_an_openssl_token_over_other_bytes_is_timestamp_invalid(pki, tmp_path):
    stamp = openssl_stamper(pki, tmp_path / "ts")
    with pytest.raises(TimestampInvalid, match="imprint"):
        verifier_at(pki, Clock()).verify_enveloped(stamped(pki, lambda data: stamp(data + b" ")))


def test_two_timestamps_are_timestamp_invalid(pki):
    root = etree.fromstring(stamped(pki, mock_stamper(pki)))
    timestamp = root.find(".//xades:SignatureTimeStamp", NS)
    timestamp.addnext(copy.deepcopy(timestamp))
    with pytest.raises(TimestampInvalid, match="2 SignatureTimeStamps"):
        verifier_at(pki, Clock()).verify_enveloped(etree.tostring(root))


def test_gen_time_in_the_future_is_timestamp_invalid(pki):
    document = stamped(pki, mock_stamper(pki, gen_time=datetime.now(UTC) + timedelta(minutes=6)))
    with pytest.raises(TimestampInvalid, match="after reception"):
        verifier_at(pki, Clock()).verify_enveloped(document)


def test_gen_time_a_little_ahead_of_our_clock_is_accepted(pki):
    document = stamped(pki, mock_stamper(pki, gen_time=datetime.now(UTC) + timedelta(minutes=3)))
    assert verifier_at(pki, Clock()).verify_enveloped(document).signed_at is not None


def test_a_revoked_tsa_is_timestamp_invalid(fresh_pki):
    now = datetime.now(UTC)
    long_crls(fresh_pki, [(serial(fresh_pki, "tsa"), now - timedelta(days=5), x509.ReasonFlags.key_compromise)])
    with pytest.raises(TimestampInvalid, match="TSA certificate is revoked"):
        verifier_at(fresh_pki, Clock()).verify_enveloped(stamped(fresh_pki, mock_stamper(fresh_pki)))


def test_a_tsa_without_the_time_stamping_key_usage_is_timestamp_invalid(pki):
    """A signing key of the same CA is not a TSA: its extended key usage is not timeStamping."""
    p = pki.party("individual2")
    authority = TimestampAuthority(p.key_pem, p.cert_pem)
    import hashlib

    document = stamped(pki, lambda data: authority.token(hashlib.sha256(data).digest()))
    with pytest.raises(TimestampInvalid, match="timeStamping"):
        verifier_at(pki, Clock()).verify_enveloped(document)


def _replace_token(document: bytes, token: bytes) -> bytes:
    root = etree.fromstring(document)
    root.find(".//xades:EncapsulatedTimeStamp", NS).text = base64.b64encode(token).decode()
    return etree.tostring(root)


def test_an_altered_token_is_timestamp_invalid(pki):
    """The TSTInfo changed after the TSA signed it: the messageDigest attribute no longer matches."""
    document = stamped(pki, mock_stamper(pki))
    root = etree.fromstring(document)
    token = bytearray(base64.b64decode(root.find(".//xades:EncapsulatedTimeStamp", NS).text))
    at = token.find(b"\x18\x0f") if b"\x18\x0f" in token else token.find(b"\x18\x13")  # the GeneralizedTime
    token[at + 5] ^= 0x01  # one digit of the year
    with pytest.raises(TimestampInvalid):
        verifier_at(pki, Clock()).verify_enveloped(_replace_token(document, bytes(token)))


@pytest.mark.parametrize("token", [b"not a token", b"\x30\x03\x02\x01\x01"])
def test_a_token_that_does_not_parse_is_timestamp_invalid(pki, token):
    document = _replace_token(stamped(pki, mock_stamper(pki)), token)
    with pytest.raises(TimestampInvalid):
        verifier_at(pki, Clock()).verify_enveloped(document)


def test_the_timestamp_is_checked_after_the_signature(pki):
    """A broken signature value is SIGNATURE_INVALID even when the timestamp is broken too (the contract's order)."""
    from core.errors import SignatureInvalid

    root = etree.fromstring(_replace_token(stamped(pki, mock_stamper(pki)), b"garbage"))
    value = root.find(".//ds:SignatureValue", NS)
    value.text = base64.b64encode(b"\x00" * 256).decode()
    with pytest.raises(SignatureInvalid):
        verifier_at(pki, Clock()).verify_enveloped(etree.tostring(root))


@pytest.mark.parametrize("layout", [{}, {"c14n": "exclusive"}, {"layout": "default-ns", "with_comments": True},
                                    {"timestamp_c14n": "http://www.w3.org/2001/10/xml-exc-c14n#"}])
def test_every_layout_with_its_timestamp_verifies(pki, layout):
    verified = verifier_at(pki, Clock()).verify_enveloped(stamped(pki, mock_stamper(pki), **layout))
    assert verified.signed_at is not None


def test_the_timestamp_honours_its_canonicalization_method(pki):
    """Stamped over the exclusive form but declared inclusive (absent): the imprint does not match."""
    from signing.xmldsig import EXC_C14N, canonicalize

    p = pki.party("individual")
    authority = mock_stamper(pki)
    captured: dict[str, bytes] = {}

    def stamp(data: bytes) -> bytes:
        captured["inclusive"] = data
        return authority(data)

    document = sign_enveloped(application(), p.key_pem, p.cert_pem, xades="t", timestamp=stamp)
    root = etree.fromstring(document)
    exclusive = canonicalize(root.find(".//ds:SignatureValue", NS), EXC_C14N)
    assert exclusive != captured["inclusive"]  # the payload's default namespace is rendered only inclusively
    document = _replace_token(document, authority(exclusive))
    with pytest.raises(TimestampInvalid, match="imprint"):
        verifier_at(pki, Clock()).verify_enveloped(document)


def test_our_tsa_tokens_verify_with_openssl(pki, tmp_path):
    """The mock NCA's TSA (signing.tsa) checked by the independent implementation."""
    import hashlib

    tool = openssl()
    tsa = pki.party("tsa")
    data = b"<ds:SignatureValue>...</ds:SignatureValue>"
    reply = TimestampAuthority(tsa.key_pem, tsa.cert_pem).respond(request(hashlib.sha256(data).digest(), nonce=42))
    token_of(reply)
    (tmp_path / "reply.tsr").write_bytes(reply)
    (tmp_path / "data").write_bytes(data)
    chain = tmp_path / "chain.pem"
    chain.write_bytes((pki.tsa_dir / "root.pem").read_bytes() + (pki.tsa_dir / "intermediate.pem").read_bytes())
    result = subprocess.run([tool, "ts", "-verify", "-in", str(tmp_path / "reply.tsr"), "-data",
                             str(tmp_path / "data"), "-CAfile", str(chain), "-untrusted", str(tsa.cert_path)],
                            capture_output=True, text=True)
    assert "Verification: OK" in result.stdout, result.stderr


def test_xmlsec1_verifies_both_references_of_a_xades_t_signature(pki, xmlsec_verify):
    document = stamped(pki, mock_stamper(pki))
    result = xmlsec_verify(document, pki.party("individual").cert_path, "--id-attr:Id",
                           f"{XADES}:SignedProperties")
    assert result.returncode == 0, result.stderr
    assert "SignedInfo References (ok/all): 2/2" in result.stderr
