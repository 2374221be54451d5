"""The test PKI is shaped like NCA RK's (docs/signing.md) and carries the team table's parties."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.domain import Role
from gateway.cli import main as licgate
from signing.pki import load_pki

TABLE = {
    "individual": ("871008401427", None, {Role.INDIVIDUAL}),
    "individual_auth": ("871008401427", None, {Role.INDIVIDUAL}),
    "individual2": ("760212350620", None, {Role.INDIVIDUAL}),
    "le_head": ("830717350867", "940140000385", {Role.LEGAL_ENTITY, Role.FIRST_HEAD}),
    "le_signer": ("851203400455", "940140000385", {Role.LEGAL_ENTITY, Role.RIGHT_TO_SIGN}),
    "le_employee": ("920305600782", "940140000385", {Role.LEGAL_ENTITY, Role.EMPLOYEE}),
    "center_operator": ("900515300127", "990140004654", {Role.LEGAL_ENTITY, Role.EMPLOYEE}),
    "provider_head": ("780611300994", "051240001234", {Role.LEGAL_ENTITY, Role.FIRST_HEAD}),
    "provider_signer": ("881102400665", "051240001234", {Role.LEGAL_ENTITY, Role.RIGHT_TO_SIGN}),
    "provider_employee": ("950702600111", "051240001234", {Role.LEGAL_ENTITY, Role.EMPLOYEE}),
    "expired": ("790103300220", None, {Role.INDIVIDUAL}),
    "not_yet_valid": ("790103300220", None, {Role.INDIVIDUAL}),
    "revoked": ("790103300220", None, {Role.INDIVIDUAL}),
    "gateway_transport": (None, "051240001234", set()),
    "portal_transport": (None, "110250007893", set()),
    "center_transport": (None, "990140004654", set()),
    "elicense_transport": (None, "070340004560", set()),
}


def _value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    found = cert.subject.get_attributes_for_oid(oid)
    return str(found[0].value) if found else None


def test_the_manifest_lists_every_party_of_the_team_table(pki):
    for name, (iin, bin_, roles) in TABLE.items():
        party = pki.party(name)
        assert (party.iin, party.bin) == (iin, bin_), name
        assert {Role(r) for r in party.roles} == roles, name
        cert = x509.load_pem_x509_certificate(party.cert_pem)
        assert format(cert.serial_number, "x") == party.serial


def test_subjects_follow_the_nca_profile(pki):
    person = x509.load_pem_x509_certificate(pki.party("le_signer").cert_pem)
    assert _value(person, NameOID.SERIAL_NUMBER) == "IIN851203400455"
    assert _value(person, NameOID.ORGANIZATIONAL_UNIT_NAME) == "BIN940140000385"
    assert _value(person, NameOID.COUNTRY_NAME) == "KZ"
    assert _value(person, NameOID.COMMON_NAME) == f"{_value(person, NameOID.SURNAME)} ЖАНАР"
    assert _value(person, NameOID.GIVEN_NAME) == "МАРАТҚЫЗЫ"
    assert person.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0]._type.name == "PrintableString"


def test_signing_and_authentication_keys_differ_in_purpose(pki):
    def purpose(name: str) -> tuple[set, bool]:
        cert = x509.load_pem_x509_certificate(pki.party(name).cert_pem)
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        return eku, usage.content_commitment

    eku, non_repudiation = purpose("individual")
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and non_repudiation
    eku, non_repudiation = purpose("individual_auth")
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku and ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku
    assert not non_repudiation


def test_certificates_name_the_ocsp_responder_and_the_crl(pki):
    cert = x509.load_pem_x509_certificate(pki.party("individual").cert_pem)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia if d.access_method.dotted_string == "1.3.6.1.5.5.7.48.1"] == [
        pki.ocsp_url]
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value.startswith(pki.base_url + "/crl/")


def test_licgate_pki_init_writes_a_pki(tmp_path, capsys):
    assert licgate(["pki", "init", str(tmp_path / "p")]) == 0
    written = load_pki(tmp_path / "p")
    assert (written.ca_dir / "root.pem").is_file() and any(written.crl_dir.iterdir())
    assert set(TABLE) <= set(written.parties)
    assert "test PKI written" in capsys.readouterr().out
