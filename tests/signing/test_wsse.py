"""WS-Security on the SOAP Body: valid transport signatures pass, missing or broken ones are refused."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from core.clock import Clock
from core.errors import TransportSignatureInvalid
from core.xmlsafe import parse_xml
from signing.pki import CENTER_BIN, PORTAL_BIN
from signing.trust import TrustConfig
from signing.wsse import SOAP11, WSSE, WSU, X509V3, sign_wsse, verify_wsse
from signing.xmldsig import DS

NS = {"soap": SOAP11, "wsse": WSSE, "wsu": WSU, "ds": DS}


def envelope() -> bytes:
    return b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:typ="http://bip.bee.kz/SyncChannel/v10/Types">
  <soapenv:Header/>
  <soapenv:Body>
    <typ:SendMessage>
      <request>
        <requestInfo>
          <messageId>6f1c2a8e-4b7d-4e0a-9a51-3c2f0d9b7e11</messageId>
          <serviceId>MED_LICENSE</serviceId>
          <messageDate>2026-11-27T11:02:17+05:00</messageDate>
          <sender><senderId>EGOV_PORTAL</senderId><password>secret</password></sender>
        </requestInfo>
        <requestData><data>payload</data></requestData>
      </request>
    </typ:SendMessage>
  </soapenv:Body>
</soapenv:Envelope>
"""


def signed(pki, party="portal_transport", key_ref="bst") -> bytes:  # noqa: ANN001
    p = pki.party(party)
    return sign_wsse(envelope(), p.key_pem, p.cert_pem, key_ref=key_ref)


def test_a_bst_signature_by_the_senders_organisation_is_accepted(pki, crl_verifier):
    signer = verify_wsse(parse_xml(signed(pki)), sender_bin=PORTAL_BIN, verifier=crl_verifier)
    assert signer.bin == PORTAL_BIN


def test_an_issuer_serial_signature_resolves_against_the_configured_certificate(pki, crl_verifier):
    p = pki.party("center_transport")
    signer = verify_wsse(parse_xml(signed(pki, "center_transport", "issuer-serial")), sender_bin=CENTER_BIN,
                         sender_cert_pem=p.cert_pem, verifier=crl_verifier)
    assert signer.bin == CENTER_BIN


def test_a_key_identifier_carrying_the_certificate_is_accepted(pki, crl_verifier):
    root = parse_xml(signed(pki))
    token = root.find(".//wsse:BinarySecurityToken", NS)
    reference = root.find(".//wsse:SecurityTokenReference/wsse:Reference", NS)
    key_id = etree.Element(f"{{{WSSE}}}KeyIdentifier", ValueType=X509V3)
    key_id.text = token.text
    reference.getparent().replace(reference, key_id)
    token.getparent().remove(token)
    assert verify_wsse(root, sender_bin=PORTAL_BIN, verifier=crl_verifier).bin == PORTAL_BIN


def test_the_intakes_keyword_spelling_is_accepted(pki):
    trust = TrustConfig(ca_dir=pki.ca_dir, revocation="crl", crl_dir=pki.crl_dir)
    signer = verify_wsse(parse_xml(signed(pki)), trust=trust, clock=Clock(), expected_bin=PORTAL_BIN)
    assert signer.bin == PORTAL_BIN


def test_a_missing_security_header_is_transport_signature_invalid(crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="no wsse:Security"):
        verify_wsse(parse_xml(envelope()), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_body_changed_after_signing_is_transport_signature_invalid(pki, crl_verifier):
    tampered = signed(pki).replace(b"MED_LICENSE", b"MED_LICENSE_STATUS")
    with pytest.raises(TransportSignatureInvalid, match="digest"):
        verify_wsse(parse_xml(tampered), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_changed_signature_value_is_transport_signature_invalid(pki, crl_verifier):
    root = parse_xml(signed(pki))
    value = root.find(".//ds:SignatureValue", NS)
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    with pytest.raises(TransportSignatureInvalid):
        verify_wsse(root, sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_certificate_of_another_organisation_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="BIN"):
        verify_wsse(parse_xml(signed(pki, "portal_transport")), sender_bin=CENTER_BIN, verifier=crl_verifier)


def test_a_certificate_other_than_the_configured_one_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="configured certificate"):
        verify_wsse(parse_xml(signed(pki, "portal_transport")), sender_bin=PORTAL_BIN,
                    sender_cert_pem=pki.party("center_transport").cert_pem, verifier=crl_verifier)


def test_issuer_serial_without_a_configured_certificate_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="no certificate is configured"):
        verify_wsse(parse_xml(signed(pki, key_ref="issuer-serial")), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_an_untrusted_transport_certificate_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="CERT_UNTRUSTED"):
        verify_wsse(parse_xml(signed(pki, "foreign")), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_revoked_transport_certificate_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="CERT_REVOKED"):
        verify_wsse(parse_xml(signed(pki, "revoked")), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_signed_body_moved_into_the_header_is_transport_signature_invalid(pki, crl_verifier):
    """XSW: the genuine signed Body hidden in the header, a forged Body in its place."""
    root = parse_xml(signed(pki))
    body = root.find("soap:Body", NS)
    forged = etree.fromstring(etree.tostring(body).replace(b"6f1c2a8e", b"00000000"))
    del forged.attrib[f"{{{WSU}}}Id"]
    root.find("soap:Header", NS).append(body)
    root.append(forged)
    with pytest.raises(TransportSignatureInvalid, match="Body"):
        verify_wsse(root, sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_an_id_on_two_elements_is_transport_signature_invalid(pki, crl_verifier):
    """XSW: a forged Body carrying the signed Body's Id while the genuine one is hidden elsewhere."""
    root = parse_xml(signed(pki))
    body = root.find("soap:Body", NS)
    wrapper = etree.SubElement(root.find("soap:Header", NS), "Wrapper")
    wrapper.append(etree.fromstring(etree.tostring(body)))
    with pytest.raises(TransportSignatureInvalid, match="names 2 elements"):
        verify_wsse(root, sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_a_signature_outside_the_security_header_is_not_a_transport_signature(pki, crl_verifier):
    root = parse_xml(signed(pki))
    security = root.find(".//wsse:Security", NS)
    signature = security.find("ds:Signature", NS)
    root.find("soap:Header", NS).append(signature)
    with pytest.raises(TransportSignatureInvalid, match="exactly one ds:Signature"):
        verify_wsse(root, sender_bin=PORTAL_BIN, verifier=crl_verifier)


@pytest.mark.xmlsec1
@pytest.mark.parametrize("key_ref", ["bst", "issuer-serial"])
def test_xmlsec1_accepts_licgates_ws_security_signatures(pki, xmlsec1, tmp_path, key_ref):
    p = pki.party("gateway_transport")
    path = tmp_path / "signed.xml"
    path.write_bytes(sign_wsse(envelope(), p.key_pem, p.cert_pem, key_ref=key_ref))
    done = subprocess.run([xmlsec1, "--verify", "--pubkey-cert-pem", str(p.cert_path), "--id-attr:Id",
                           f"{SOAP11}:Body", "--id-attr:Id", f"{WSU}:Timestamp", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]


@pytest.mark.xmlsec1
def test_a_ws_security_signature_made_by_xmlsec1_verifies(pki, xmlsec1, tmp_path, crl_verifier):
    p = pki.party("portal_transport")
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    template = envelope().replace(b"<soapenv:Header/>", f"""<soapenv:Header>
    <wsse:Security xmlns:wsse="{WSSE}" soapenv:mustUnderstand="1">
      <wsu:Timestamp xmlns:wsu="{WSU}" wsu:Id="ts-1"><wsu:Created>{created}</wsu:Created></wsu:Timestamp>
      <ds:Signature xmlns:ds="{DS}">
        <ds:SignedInfo>
          <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
          <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
          <ds:Reference URI="#body-1">
            <ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
            <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
            <ds:DigestValue/>
          </ds:Reference>
          <ds:Reference URI="#ts-1">
            <ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
            <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
            <ds:DigestValue/>
          </ds:Reference>
        </ds:SignedInfo>
        <ds:SignatureValue/>
        <ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
      </ds:Signature>
    </wsse:Security>
  </soapenv:Header>""".encode()).replace(
        b"<soapenv:Body>", f'<soapenv:Body xmlns:wsu="{WSU}" wsu:Id="body-1">'.encode())
    src, out = tmp_path / "template.xml", tmp_path / "signed.xml"
    src.write_bytes(template)
    subprocess.run([xmlsec1, "--sign", "--privkey-pem", f"{p.key_path},{p.cert_path}", "--id-attr:Id",
                    f"{SOAP11}:Body", "--id-attr:Id", f"{WSU}:Timestamp", "--output", str(out), str(src)],
                   check=True, capture_output=True)
    signer = verify_wsse(parse_xml(out.read_bytes()), sender_bin=PORTAL_BIN, verifier=crl_verifier)
    assert signer.bin == PORTAL_BIN


def test_the_signature_covers_a_fresh_timestamp(pki):
    root = parse_xml(signed(pki))
    created = root.findtext(".//wsu:Timestamp/wsu:Created", namespaces=NS)
    assert abs(datetime.fromisoformat(created.replace("Z", "+00:00")) - datetime.now(UTC)) < timedelta(seconds=30)
    uris = [r.get("URI") for r in root.findall(".//ds:SignedInfo/ds:Reference", NS)]
    assert f"#{root.find('.//wsu:Timestamp', NS).get(f'{{{WSU}}}Id')}" in uris


def _stale(pki) -> bytes:  # noqa: ANN001
    p = pki.party("portal_transport")
    return sign_wsse(envelope(), p.key_pem, p.cert_pem, now=datetime.now(UTC) - timedelta(minutes=3),
                     lifetime=timedelta(seconds=30))


def test_an_expired_signed_timestamp_is_transport_signature_invalid(pki, crl_verifier):
    with pytest.raises(TransportSignatureInvalid, match="expired"):
        verify_wsse(parse_xml(_stale(pki)), sender_bin=PORTAL_BIN, verifier=crl_verifier)


def test_an_expired_signed_timestamp_is_refused_even_with_a_comment_inside_expires(pki, crl_verifier):
    stale = _stale(pki)
    year = str(datetime.now(UTC).year).encode()
    # Comments are not signed: one put into Expires after signing must not hide the date.
    commented = stale.replace(b"Expires>" + year, b"Expires><!-- -->" + year)
    assert commented != stale
    with pytest.raises(TransportSignatureInvalid, match="expired"):
        verify_wsse(parse_xml(commented), sender_bin=PORTAL_BIN, verifier=crl_verifier)
