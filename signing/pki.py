"""A test PKI shaped like NCA RK's (docs/signing.md), for tests, the demo and `licgate pki init DIR`.

Layout of DIR:
- `ca/root.pem`, `ca/intermediate.pem`: the pinned chain (what `trust.ca_dir` points at).
- `crl/root.crl`, `crl/nca_rsa.crl`: DER CRLs of both CAs (what `trust.crl_dir` points at); the
  intermediate's lists the `revoked` party; `crl/nca_rsa_delta.crl`: the intermediate's delta CRL on top of
  it (empty), as NCA publishes one (its URL is every certificate's Freshest CRL).
- `tsa/`: what `trust.tsa_dir` points at: the TSA's certificate (`tsa.pem`, issued by the intermediate
  with the critical timeStamping extended key usage) and copies of the root and intermediate it chains to.
- `parties/NAME.key.pem`, `parties/NAME.cert.pem` for every party of the team's table, plus `ocsp`
  (the delegated OCSP responder), `individual_ec` (an ECDSA P-256 individual) and `foreign` (an
  individual issued by a root that is NOT in `ca/`), `tsa` (the timestamping authority, for
  `licgate mock nca` and `signing.tsa`) and `tsa_foreign` (a TSA issued by that foreign root).
- GOST 34.10-2015 beside the RSA chain, as NCA RK has issued since 2022 (NCA's OIDs; `signing.gostpki`):
  `ca/gost_root.pem`, `ca/gost_intermediate.pem` (512-bit keys, GOST-signed), `crl/nca_gost.crl` (lists
  `gost_revoked`), `crl/nca_gost_delta.crl`, `crl/gost_root.crl`, and the parties `gost_individual`,
  `gost_individual_256` (a 256-bit key), `gost_le_head` (first head), `gost_le_signer` (right to sign),
  `gost_provider_head`, `gost_revoked`, `gost_expired`, `gost_portal_transport`, `gost_elicense_transport`
  and `gost_ocsp` (the GOST
  responder of `licgate mock nca`); their keys are "LICGATE GOST PRIVATE KEY" PEM files.
- `private/`: the CA keys (so tests can mint more certificates with `mint_certificate`).
- `pki.json`: the manifest, read with `load_pki`.

Keys are RSA-2048 so a whole PKI is made in a couple of seconds. Numbers follow the NCA profile: subject
SERIALNUMBER "IIN…", OU "BIN…" for legal entities, roles as extended key usage OIDs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.domain import Role
from signing import gostpki

DEFAULT_BASE_URL = "http://127.0.0.1:8088"
CRL_NAME = "nca_rsa.crl"
DELTA_CRL_NAME = "nca_rsa_delta.crl"
ROOT_CRL_NAME = "root.crl"

EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH

PROVIDER_BIN = "051240001234"
ENTITY_BIN = "940140000385"
CENTER_BIN = "990140004654"
PORTAL_BIN = "110250007893"
ELICENSE_BIN = "070340004560"

ROOT_NAME = "ТҮБІРЛІК КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (RSA)"  # CN is at most 64 UTF-8 bytes
INTERMEDIATE_NAME = "ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (RSA)"
FOREIGN_ROOT_NAME = "UNTRUSTED TEST ROOT CA"

ENTITY_NAME = 'ТОО "Медицинский центр Шипагер"'
PROVIDER_NAME = "Солтүстік Қазақстан облысының денсаулық сақтау басқармасы"
CENTER_NAME = 'НАО "Государственная корпорация "Правительство для граждан"'


@dataclass(frozen=True)
class PartySpec:
    """What a party's certificate says: the NCA subject fields, roles and kind of key."""

    surname: str | None
    given: str | None  # the first name (CN is "SURNAME NAME")
    patronymic: str | None  # GIVENNAME in the NCA profile
    iin: str | None = None
    bin: str | None = None
    organization: str | None = None
    roles: tuple[str, ...] = ()
    purpose: str = "signing"  # signing | auth | transport | ocsp | tsa
    validity: str = "valid"  # valid | expired | not_yet_valid | long (the TSA: valid as long as its CA)
    common_name: str | None = None  # overrides "SURNAME NAME" (organisations' transport keys)
    key_type: str = "rsa"  # rsa | ec


_IND = (Role.INDIVIDUAL.value,)
_HEAD = (Role.LEGAL_ENTITY.value, Role.FIRST_HEAD.value)
_SIGN = (Role.LEGAL_ENTITY.value, Role.RIGHT_TO_SIGN.value)
_EMPL = (Role.LEGAL_ENTITY.value, Role.EMPLOYEE.value)

PARTIES: dict[str, PartySpec] = {
    "individual": PartySpec("АХМЕТОВА", "АЙГЕРІМ", "САПАРҚЫЗЫ", iin="871008401427", roles=_IND),
    "individual_auth": PartySpec("АХМЕТОВА", "АЙГЕРІМ", "САПАРҚЫЗЫ", iin="871008401427", roles=_IND,
                                 purpose="auth"),
    "individual2": PartySpec("СЕРІКБАЕВ", "ДӘУРЕН", "ЕРЛАНҰЛЫ", iin="760212350620", roles=_IND),
    "individual_ec": PartySpec("ЖҮСІПОВА", "МАДИНА", "АСҚАРҚЫЗЫ", iin="871008401427", roles=_IND, key_type="ec"),
    "le_head": PartySpec("ОМАРОВ", "ҒАЛЫМЖАН", "БОЛАТҰЛЫ", iin="830717350867", bin=ENTITY_BIN,
                         organization=ENTITY_NAME, roles=_HEAD),
    "le_signer": PartySpec("ИСАЕВА", "ЖАНАР", "МАРАТҚЫЗЫ", iin="851203400455", bin=ENTITY_BIN,
                           organization=ENTITY_NAME, roles=_SIGN),
    "le_employee": PartySpec("ҚАСЫМОВ", "НҰРЛАН", "СЕРІКҰЛЫ", iin="920305600782", bin=ENTITY_BIN,
                             organization=ENTITY_NAME, roles=_EMPL),
    "center_operator": PartySpec("ТЕМІРОВА", "ГҮЛНАР", "ӘЛІҚЫЗЫ", iin="900515300127", bin=CENTER_BIN,
                                 organization=CENTER_NAME, roles=_EMPL),
    "provider_head": PartySpec("БЕКОВ", "АСХАТ", "ТАЛҒАТҰЛЫ", iin="780611300994", bin=PROVIDER_BIN,
                               organization=PROVIDER_NAME, roles=_HEAD),
    "provider_signer": PartySpec("НҰРЛАНОВА", "ӘСЕЛ", "ҚАЙРАТҚЫЗЫ", iin="881102400665", bin=PROVIDER_BIN,
                                 organization=PROVIDER_NAME, roles=_SIGN),
    "provider_employee": PartySpec("ЖАНҰЗАҚОВ", "ЕРБОЛ", "ДАНИЯРҰЛЫ", iin="950702600111", bin=PROVIDER_BIN,
                                   organization=PROVIDER_NAME, roles=_EMPL),
    "expired": PartySpec("ЕСКІ", "БОЛАТ", "ЖОМАРТҰЛЫ", iin="790103300220", roles=_IND, validity="expired"),
    "not_yet_valid": PartySpec("ЕСКІ", "БОЛАТ", "ЖОМАРТҰЛЫ", iin="790103300220", roles=_IND,
                               validity="not_yet_valid"),
    "revoked": PartySpec("ЕСКІ", "БОЛАТ", "ЖОМАРТҰЛЫ", iin="790103300220", roles=_IND),
    "gateway_transport": PartySpec(None, None, None, bin=PROVIDER_BIN, organization=PROVIDER_NAME,
                                   purpose="transport", common_name="LICGATE"),
    "portal_transport": PartySpec(None, None, None, bin=PORTAL_BIN, organization='АО "НИТ" (egov.kz)',
                                  purpose="transport", common_name="EGOV_PORTAL"),
    "center_transport": PartySpec(None, None, None, bin=CENTER_BIN, organization=CENTER_NAME,
                                  purpose="transport", common_name="CENTER_IS"),
    "elicense_transport": PartySpec(None, None, None, bin=ELICENSE_BIN, organization="elicense.kz",
                                    purpose="transport", common_name="ELICENSE"),
}
REVOKED_PARTIES = ("revoked",)


@dataclass(frozen=True)
class Party:
    """One party of a written PKI, as `pki.json` lists it."""

    name: str
    key_path: Path
    cert_path: Path
    iin: str | None
    bin: str | None
    roles: tuple[str, ...]
    serial: str  # hex, lower-case

    @property
    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    @property
    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()


@dataclass(frozen=True)
class Pki:
    """A written test PKI (see the module docstring for its layout)."""

    dir: Path
    base_url: str
    ca_dir: Path
    crl_dir: Path
    ocsp_url: str
    parties: dict[str, Party] = field(default_factory=dict)
    tsa_dir: Path | None = None

    def party(self, name: str) -> Party:
        return self.parties[name]

    @property
    def root_cert_path(self) -> Path:
        return self.ca_dir / "root.pem"

    @property
    def intermediate_cert_path(self) -> Path:
        return self.ca_dir / "intermediate.pem"


def load_pki(pki_dir: str | Path) -> Pki:
    """Read `pki.json` of a PKI written by `init_pki`."""
    base = Path(pki_dir)
    data = json.loads((base / "pki.json").read_text("utf-8"))
    parties = {
        name: Party(
            name=name, key_path=Path(p["key"]), cert_path=Path(p["cert"]), iin=p.get("iin"),
            bin=p.get("bin"), roles=tuple(p.get("roles", ())), serial=p["serial"],
        )
        for name, p in data["parties"].items()
    }
    return Pki(dir=base, base_url=data["base_url"], ca_dir=Path(data["ca_dir"]), crl_dir=Path(data["crl_dir"]),
               ocsp_url=data["ocsp_url"], parties=parties,
               tsa_dir=Path(data["tsa_dir"]) if data.get("tsa_dir") else None)


# --- writing -----------------------------------------------------------------------------------------


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "licgate TEST PKI"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ")])


def party_subject(spec: PartySpec) -> x509.Name:
    """The NCA-profile subject: CN "SURNAME NAME", SURNAME, SERIALNUMBER, C, GIVENNAME, O, OU "BIN…"."""
    cn = spec.common_name or f"{spec.surname} {spec.given}"
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if spec.surname:
        attrs.append(x509.NameAttribute(NameOID.SURNAME, spec.surname))
    if spec.iin:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, "IIN" + spec.iin))
    elif spec.bin:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, "BIN" + spec.bin))
    attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"))
    if spec.patronymic:
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, spec.patronymic))
    if spec.organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization))
    if spec.bin:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "BIN" + spec.bin))
    return x509.Name(attrs)


def _ca_builder(subject: x509.Name, public_key, issuer: x509.Name, not_before: datetime,  # noqa: ANN001
                not_after: datetime, path_length: int | None, subject_key_id: x509.SubjectKeyIdentifier,
                authority_key_id: x509.AuthorityKeyIdentifier) -> x509.CertificateBuilder:
    """A CA certificate of the test PKI, RSA or GOST alike, before its signature."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(subject_key_id, critical=False)
        .add_extension(authority_key_id, critical=False)
    )


def _ca_cert(subject: x509.Name, key, issuer: x509.Name, issuer_key, not_before: datetime,  # noqa: ANN001
             not_after: datetime, path_length: int | None) -> x509.Certificate:
    builder = _ca_builder(subject, key.public_key(), issuer, not_before, not_after, path_length,
                          x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                          x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()))
    return builder.sign(issuer_key, hashes.SHA256())


def _key_usage(purpose: str) -> x509.KeyUsage:
    signing = purpose in ("signing", "tsa")
    return x509.KeyUsage(
        digital_signature=True, content_commitment=signing, key_encipherment=purpose in ("auth", "transport"),
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _eku(spec: PartySpec) -> list[x509.ObjectIdentifier]:
    purpose = {
        "signing": [EMAIL_PROTECTION], "auth": [CLIENT_AUTH], "transport": [CLIENT_AUTH],
        "ocsp": [ExtendedKeyUsageOID.OCSP_SIGNING], "tsa": [ExtendedKeyUsageOID.TIME_STAMPING],
    }[spec.purpose]
    return purpose + [x509.ObjectIdentifier(r) for r in spec.roles]


def party_builder(
    spec: PartySpec,
    public_key,  # noqa: ANN001 - any key type cryptography can put in a certificate
    issuer_name: x509.Name,
    *,
    subject_key_id: bytes,
    authority_key_id: bytes,
    base_url: str = DEFAULT_BASE_URL,
    now: datetime | None = None,
    serial: int | None = None,
    crl_name: str = CRL_NAME,
    delta_crl_name: str = DELTA_CRL_NAME,
    intermediate_name: str = "intermediate",
) -> x509.CertificateBuilder:
    """The builder of an end-entity certificate of the NCA profile (not signed yet)."""
    now = now or datetime.now(UTC)
    not_before, not_after = {
        "valid": (now - timedelta(days=30), now + timedelta(days=365)),
        "expired": (now - timedelta(days=400), now - timedelta(days=30)),
        "not_yet_valid": (now + timedelta(days=30), now + timedelta(days=400)),
        # A TSA's stamps are judged at their genTime, which may lie long before today.
        "long": (now - timedelta(days=299), now + timedelta(days=5 * 365)),
    }[spec.validity]
    builder = (
        x509.CertificateBuilder()
        .subject_name(party_subject(spec)).issuer_name(issuer_name).public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(spec.purpose), critical=True)
        # RFC 3161 2.3: a TSA's extended key usage is timeStamping alone, marked critical.
        .add_extension(x509.ExtendedKeyUsage(_eku(spec)), critical=spec.purpose == "tsa")
        .add_extension(x509.SubjectKeyIdentifier(subject_key_id), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False)
    )
    if spec.purpose == "ocsp":
        return builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder.add_extension(x509.AuthorityInformationAccess([
        x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                               x509.UniformResourceIdentifier(f"{base_url}/ocsp")),
        x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                               x509.UniformResourceIdentifier(f"{base_url}/ca/{intermediate_name}.cer")),
    ]), critical=False).add_extension(x509.CRLDistributionPoints([
        x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(f"{base_url}/crl/{crl_name}")],
                               relative_name=None, reasons=None, crl_issuer=None),
    ]), critical=False).add_extension(x509.FreshestCRL([
        x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(f"{base_url}/crl/{delta_crl_name}")],
                               relative_name=None, reasons=None, crl_issuer=None),
    ]), critical=False)


def issue_certificate(
    spec: PartySpec,
    public_key,  # noqa: ANN001 - any key type cryptography can put in a certificate
    issuer_cert: x509.Certificate,
    issuer_key,  # noqa: ANN001
    *,
    base_url: str = DEFAULT_BASE_URL,
    now: datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """An end-entity certificate of the NCA profile, issued by `issuer_cert`."""
    builder = party_builder(
        spec, public_key, issuer_cert.subject, base_url=base_url, now=now, serial=serial,
        subject_key_id=x509.SubjectKeyIdentifier.from_public_key(public_key).digest,
        authority_key_id=x509.SubjectKeyIdentifier.from_public_key(issuer_key.public_key()).digest)
    return builder.sign(issuer_key, hashes.SHA256())


Revocation = int | tuple[int, datetime, x509.ReasonFlags | None]  # a serial, or (serial, when, reason)


def crl_builder(issuer_name: x509.Name, authority_key_id: bytes, revoked_serials: list[Revocation], *,
                now: datetime | None = None, next_update: timedelta = timedelta(days=30), number: int = 1,
                delta_of: int | None = None) -> x509.CertificateRevocationListBuilder:
    """The builder of a CRL of `issuer_name` listing `revoked_serials` (see `build_crl`)."""
    now = now or datetime.now(UTC)
    revoked = []
    for item in revoked_serials:
        serial, when, reason = (item, now - timedelta(days=1), None) if isinstance(item, int) else item
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        revoked.append(entry.build())
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_name, last_update=now - timedelta(minutes=5), next_update=now + next_update,
        revoked_certificates=revoked,
    ).add_extension(x509.CRLNumber(number), critical=False).add_extension(
        x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False)
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    return builder


def build_crl(issuer_cert: x509.Certificate, issuer_key, revoked_serials: list[Revocation],  # noqa: ANN001
              *, now: datetime | None = None, next_update: timedelta = timedelta(days=30), number: int = 1,
              delta_of: int | None = None) -> bytes:
    """A DER CRL of `issuer_cert` listing `revoked_serials` (built in one go: fast for long lists).

    A bare serial is revoked a day before `now` without a reason; `(serial, when, reason)` says both.
    `delta_of` makes a delta CRL on top of the full CRL numbered so (its own number is `number`).
    A GOST issuer key (`signing.gostpki.GostPrivateKey`) signs a GOST CRL."""
    if isinstance(issuer_key, gostpki.GostPrivateKey):
        builder = crl_builder(issuer_cert.subject, issuer_key.key_identifier(), revoked_serials, now=now,
                              next_update=next_update, number=number, delta_of=delta_of)
        return gostpki.sign_crl(builder, issuer_key)
    key_id = x509.SubjectKeyIdentifier.from_public_key(issuer_key.public_key()).digest
    builder = crl_builder(issuer_cert.subject, key_id, revoked_serials, now=now, next_update=next_update,
                          number=number, delta_of=delta_of)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# --- the GOST 2015 chain beside the RSA one ------------------------------------------------------------

GOST_ROOT_NAME = "ТҮБІРЛІК КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (GOST)"
GOST_INTERMEDIATE_NAME = "ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (GOST)"
GOST_CRL_NAME = "nca_gost.crl"
GOST_DELTA_CRL_NAME = "nca_gost_delta.crl"
GOST_ROOT_CRL_NAME = "gost_root.crl"

# name -> (spec, key bits). NCA's GOST CAs are 512-bit; its users get 512-bit keys, 256-bit ones exist too.
GOST_PARTIES: dict[str, tuple[PartySpec, int]] = {
    "gost_individual": (PARTIES["individual"], 512),
    "gost_individual_256": (PARTIES["individual2"], 256),
    "gost_le_head": (PARTIES["le_head"], 512),
    "gost_le_signer": (PARTIES["le_signer"], 512),
    "gost_provider_head": (PARTIES["provider_head"], 512),
    "gost_revoked": (PARTIES["revoked"], 512),
    "gost_expired": (PARTIES["expired"], 512),
    "gost_portal_transport": (PARTIES["portal_transport"], 512),
    "gost_elicense_transport": (PARTIES["elicense_transport"], 512),
    "gost_ocsp": (PartySpec(None, None, None, purpose="ocsp", common_name="OCSP RESPONDER (GOST)"), 512),
}
GOST_REVOKED_PARTIES = ("gost_revoked",)


def _gost_ca(name: x509.Name, key: gostpki.GostPrivateKey, issuer: x509.Name, issuer_key: gostpki.GostPrivateKey,
             not_before: datetime, not_after: datetime, path_length: int | None) -> x509.Certificate:
    builder = _ca_builder(name, gostpki.placeholder_public_key(), issuer, not_before, not_after, path_length,
                          x509.SubjectKeyIdentifier(key.key_identifier()),
                          x509.AuthorityKeyIdentifier(issuer_key.key_identifier(), None, None))
    return gostpki.sign_certificate(builder, key.spki(), issuer_key)


def issue_gost_certificate(spec: PartySpec, key: gostpki.GostPrivateKey, issuer_cert: x509.Certificate,
                           issuer_key: gostpki.GostPrivateKey, *, base_url: str = DEFAULT_BASE_URL,
                           now: datetime | None = None) -> x509.Certificate:
    """An end-entity certificate of the NCA profile with a GOST key, issued by a GOST CA."""
    builder = party_builder(spec, gostpki.placeholder_public_key(), issuer_cert.subject, base_url=base_url, now=now,
                            subject_key_id=key.key_identifier(), authority_key_id=issuer_key.key_identifier(),
                            crl_name=GOST_CRL_NAME, delta_crl_name=GOST_DELTA_CRL_NAME,
                            intermediate_name="gost_intermediate")
    return gostpki.sign_certificate(builder, key.spki(), issuer_key)


def _write_gost(base: Path, base_url: str, now: datetime) -> dict[str, dict]:
    """The GOST root, intermediate, parties and CRLs of a test PKI; returns the parties' manifest entries."""
    root_key, inter_key = gostpki.GostPrivateKey.generate(512), gostpki.GostPrivateKey.generate(512)
    root_name, inter_name = _ca_name(GOST_ROOT_NAME), _ca_name(GOST_INTERMEDIATE_NAME)
    root = _gost_ca(root_name, root_key, root_name, root_key, now - timedelta(days=365),
                    now + timedelta(days=20 * 365), None)
    inter = _gost_ca(inter_name, inter_key, root_name, root_key, now - timedelta(days=300),
                     now + timedelta(days=10 * 365), 0)
    (base / "ca" / "gost_root.pem").write_bytes(_cert_pem(root))
    (base / "ca" / "gost_intermediate.pem").write_bytes(_cert_pem(inter))
    (base / "private" / "gost_root.key.pem").write_bytes(root_key.pem())
    (base / "private" / "gost_intermediate.key.pem").write_bytes(inter_key.pem())
    parties: dict[str, dict] = {}
    revoked: list[int] = []
    for name, (spec, bits) in GOST_PARTIES.items():
        key = gostpki.GostPrivateKey.generate(bits)
        cert = issue_gost_certificate(spec, key, inter, inter_key, base_url=base_url, now=now)
        key_path, cert_path = base / "parties" / f"{name}.key.pem", base / "parties" / f"{name}.cert.pem"
        key_path.write_bytes(key.pem())
        cert_path.write_bytes(_cert_pem(cert))
        if name in GOST_REVOKED_PARTIES:
            revoked.append(cert.serial_number)
        parties[name] = {
            "key": str(key_path), "cert": str(cert_path), "iin": spec.iin, "bin": spec.bin,
            "roles": list(spec.roles), "serial": format(cert.serial_number, "x"), "algorithm": f"gost2015-{bits}",
        }
    (base / "crl" / GOST_CRL_NAME).write_bytes(build_crl(inter, inter_key, revoked, now=now))
    (base / "crl" / GOST_DELTA_CRL_NAME).write_bytes(build_crl(inter, inter_key, [], now=now, number=2, delta_of=1,
                                                               next_update=timedelta(days=1)))
    (base / "crl" / GOST_ROOT_CRL_NAME).write_bytes(build_crl(root, root_key, [], now=now))
    return parties


def init_pki(pki_dir: str | Path, base_url: str = DEFAULT_BASE_URL, *, now: datetime | None = None) -> Path:
    """Write a fresh test PKI into `pki_dir` (created if needed) and return its path.

    `base_url` is where `licgate mock nca` will serve the CRL (`/crl/nca_rsa.crl`) and OCSP (`/ocsp`): it is
    written into every certificate's AIA and CRL distribution point.
    """
    base = Path(pki_dir).resolve()
    base_url = base_url.rstrip("/")
    now = now or datetime.now(UTC)
    for sub in ("ca", "crl", "parties", "private", "foreign", "tsa"):
        (base / sub).mkdir(parents=True, exist_ok=True)

    root_key, inter_key, foreign_key = _rsa_key(), _rsa_key(), _rsa_key()
    root_name, inter_name = _ca_name(ROOT_NAME), _ca_name(INTERMEDIATE_NAME)
    root = _ca_cert(root_name, root_key, root_name, root_key, now - timedelta(days=365),
                    now + timedelta(days=20 * 365), None)
    inter = _ca_cert(inter_name, inter_key, root_name, root_key, now - timedelta(days=300),
                     now + timedelta(days=10 * 365), 0)
    foreign_name = _ca_name(FOREIGN_ROOT_NAME)
    foreign_root = _ca_cert(foreign_name, foreign_key, foreign_name, foreign_key, now - timedelta(days=365),
                            now + timedelta(days=20 * 365), None)
    (base / "ca" / "root.pem").write_bytes(_cert_pem(root))
    (base / "ca" / "intermediate.pem").write_bytes(_cert_pem(inter))
    (base / "foreign" / "root.pem").write_bytes(_cert_pem(foreign_root))
    (base / "private" / "root.key.pem").write_bytes(_key_pem(root_key))
    (base / "private" / "intermediate.key.pem").write_bytes(_key_pem(inter_key))
    (base / "private" / "foreign_root.key.pem").write_bytes(_key_pem(foreign_key))

    specs = dict(PARTIES)
    specs["ocsp"] = PartySpec(None, None, None, purpose="ocsp", common_name="OCSP RESPONDER (RSA)")
    specs["foreign"] = PartySpec("БӨТЕН", "АРМАН", "ҚАНАТҰЛЫ", iin="760212350620", roles=_IND)
    specs["tsa"] = PartySpec(None, None, None, purpose="tsa", common_name="TSA (RSA) TEST", validity="long")
    specs["tsa_foreign"] = PartySpec(None, None, None, purpose="tsa", common_name="UNTRUSTED TSA", validity="long")
    parties: dict[str, dict] = {}
    revoked: list[int] = []
    for name, spec in specs.items():
        key = ec.generate_private_key(ec.SECP256R1()) if spec.key_type == "ec" else _rsa_key()
        foreign_issued = name in ("foreign", "tsa_foreign")
        issuer_cert, issuer_key = (foreign_root, foreign_key) if foreign_issued else (inter, inter_key)
        cert = issue_certificate(spec, key.public_key(), issuer_cert, issuer_key, base_url=base_url, now=now)
        key_path, cert_path = base / "parties" / f"{name}.key.pem", base / "parties" / f"{name}.cert.pem"
        key_path.write_bytes(_key_pem(key))
        cert_path.write_bytes(_cert_pem(cert))
        if name in REVOKED_PARTIES:
            revoked.append(cert.serial_number)
        parties[name] = {
            "key": str(key_path), "cert": str(cert_path), "iin": spec.iin, "bin": spec.bin,
            "roles": list(spec.roles), "serial": format(cert.serial_number, "x"),
        }

    (base / "crl" / CRL_NAME).write_bytes(build_crl(inter, inter_key, revoked, now=now))
    (base / "crl" / DELTA_CRL_NAME).write_bytes(build_crl(inter, inter_key, [], now=now, number=2, delta_of=1,
                                                          next_update=timedelta(days=1)))
    (base / "tsa" / "tsa.pem").write_bytes((base / "parties" / "tsa.cert.pem").read_bytes())
    (base / "tsa" / "root.pem").write_bytes(_cert_pem(root))
    (base / "tsa" / "intermediate.pem").write_bytes(_cert_pem(inter))
    (base / "crl" / ROOT_CRL_NAME).write_bytes(build_crl(root, root_key, [], now=now))
    parties.update(_write_gost(base, base_url, now))
    manifest = {
        "base_url": base_url,
        "ca_dir": str(base / "ca"),
        "crl_dir": str(base / "crl"),
        "ocsp_url": f"{base_url}/ocsp",
        "tsa_dir": str(base / "tsa"),
        "tsa_url": f"{base_url}/tsp",
        "revoked_serials": [format(s, "x") for s in revoked]
        + [parties[name]["serial"] for name in GOST_REVOKED_PARTIES],
        "parties": parties,
    }
    (base / "pki.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), "utf-8")
    return base


def load_ca(pki_dir: str | Path, which: str = "intermediate") -> tuple[x509.Certificate, object]:
    """A CA of a written PKI (`root`, `intermediate`, `foreign_root`, `gost_root` or `gost_intermediate`) with
    its private key (a GostPrivateKey for the GOST ones), to mint more."""
    base = Path(pki_dir)
    cert_path = base / "foreign" / "root.pem" if which == "foreign_root" else base / "ca" / f"{which}.pem"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key_pem = (base / "private" / f"{which}.key.pem").read_bytes()
    if gostpki.is_gost_key(key_pem):
        return cert, gostpki.load_gost_key(key_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    return cert, key


def mint_certificate(pki_dir: str | Path, spec: PartySpec, *, issuer: str = "intermediate",
                     now: datetime | None = None, gost_bits: int = 512) -> tuple[bytes, bytes]:
    """A new key and certificate (PEM, PEM) for `spec`, issued by a CA of a written PKI (for tests). A GOST
    issuer (`gost_intermediate`, `gost_root`) issues a GOST key of `gost_bits`."""
    manifest = json.loads((Path(pki_dir) / "pki.json").read_text("utf-8"))
    issuer_cert, issuer_key = load_ca(pki_dir, issuer)
    if isinstance(issuer_key, gostpki.GostPrivateKey):
        gost_key = gostpki.GostPrivateKey.generate(gost_bits)
        cert = issue_gost_certificate(spec, gost_key, issuer_cert, issuer_key, base_url=manifest["base_url"], now=now)
        return gost_key.pem(), _cert_pem(cert)
    key = ec.generate_private_key(ec.SECP256R1()) if spec.key_type == "ec" else _rsa_key()
    cert = issue_certificate(spec, key.public_key(), issuer_cert, issuer_key, base_url=manifest["base_url"],
                             now=now)
    return _key_pem(key), _cert_pem(cert)
