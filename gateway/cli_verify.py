"""`licgate verify FILE`: the gateway's verifier as a command, for any signed XML document (an application, a
result, anything signed with NCALayer or KalkanCrypt), RSA or GOST.

The enveloped signature is checked by the rules of intake (layouts, algorithms, path to a pinned root,
validity, revocation, the XAdES-T timestamp) without binding the document to an application: an IIN or BIN
whose check digit fails is shown with a warning instead of refused (NCA's own test certificates carry such
numbers), while a key that is not for signing is still CERT_NOT_FOR_SIGNING. `--at` judges the certificate
at that time instead of now (a verified timestamp still wins). Exit 0 when it verifies, 1 when refused, 2 on
bad usage (no such file, bad options, a configuration that does not load).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.domain import Role, SignerIdentity
from core.errors import LicgateError
from core.identifiers import bin_problem, iin_problem

ROLE_NAMES = {
    Role.INDIVIDUAL.value: "individual",
    Role.LEGAL_ENTITY.value: "legal entity (employee)",
    Role.FIRST_HEAD.value: "first head",
    Role.RIGHT_TO_SIGN.value: "right to sign",
    Role.RIGHT_TO_SIGN_FINANCIAL.value: "right to sign financial documents",
    Role.HR.value: "HR",
    Role.EMPLOYEE.value: "employee",
    "1.3.6.1.5.5.7.3.4": "emailProtection (signing key)",
    "1.3.6.1.5.5.7.3.2": "clientAuth (authentication key)",
}
DEFAULT_TZ = "Asia/Almaty"
_DS = "{http://www.w3.org/2000/09/xmldsig#}"


class UsageError(Exception):
    """Bad usage: exit 2 with one line."""


def add_command(sub: Any) -> None:  # noqa: ANN401 - argparse's subparsers action has no public type
    verify = sub.add_parser("verify", help="check the XML signature of any signed document (RSA or GOST)",
                            description="Check the enveloped XML signature of FILE by the rules of intake. "
                                        "Exit 0 when it verifies, 1 when refused, 2 on bad usage.")
    verify.add_argument("file", metavar="FILE", help="the signed XML document ('-': standard input)")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="take [trust] from the gateway's TOML configuration")
    source.add_argument("--ca-dir", metavar="DIR", help="the pinned NCA roots and intermediates (PEM or DER)")
    verify.add_argument("--tsa-dir", metavar="DIR", help="trusted TSAs: a XAdES-T timestamp then proves the time")
    verify.add_argument("--revocation", choices=("off", "crl", "ocsp"),
                        help="how revocation is checked (default: the configuration's; with --ca-dir \"crl\" "
                             "when --crl-dir is given, else \"off\")")
    verify.add_argument("--crl-dir", metavar="DIR", help="CRL files (PEM or DER)")
    verify.add_argument("--at", metavar="TIME", help="judge validity at TIME (ISO 8601; without a zone: "
                                                     "Asia/Almaty) instead of now")
    verify.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    # cryptography warns about NCA's names longer than X.520 allows (real NCA CA names are): not the user's concern.
    warnings.filterwarnings("ignore", message="Attribute's length", category=UserWarning)
    try:
        verifier, at, tz = _setup(args)
        payload = _read(args.file)
    except UsageError as exc:
        print(f"licgate verify: {exc}", file=sys.stderr)
        return 2
    report = verify_document(verifier, payload, at=at)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render(report, tz))
    return 0 if report["verdict"] == "OK" else 1


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{name}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{name}: {exc.strerror}") from None


def _directory(value: str, option: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"{option} {value}: not a directory")
    return path


def _setup(args: argparse.Namespace) -> tuple[Any, datetime | None, ZoneInfo]:
    from core.clock import Clock
    from signing.trust import TrustConfig
    from signing.verifier import build_verifier

    tz = ZoneInfo(DEFAULT_TZ)
    if args.config:
        from gateway.config import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise UsageError(f"config error: {exc}") from None
        trust = config.trust
        tz = config.calendar.tz
        max_bytes = config.server.max_message_bytes
    elif args.ca_dir:
        # Without --crl-dir there are no CRLs: OCSP then has no CRL fallback either.
        trust = TrustConfig(ca_dir=_directory(args.ca_dir, "--ca-dir"), revocation="crl" if args.crl_dir else "off",
                            revocation_fallback="crl" if args.crl_dir else "none")
        max_bytes = 64 * 1024 * 1024
    else:
        raise UsageError("give --config FILE or --ca-dir DIR (the pinned NCA certificates)")
    changes: dict[str, Any] = {}
    if args.crl_dir:
        changes["crl_dir"] = _directory(args.crl_dir, "--crl-dir")
    if args.tsa_dir:
        changes["tsa_dir"] = _directory(args.tsa_dir, "--tsa-dir")
    if args.revocation:
        changes["revocation"] = args.revocation
    trust = dataclasses.replace(trust, **changes)
    if trust.revocation == "crl" and not Path(trust.crl_dir).is_dir():
        raise UsageError(f"revocation by CRL needs a CRL directory: {trust.crl_dir} is not one (--crl-dir)")
    at = _time(args.at, tz) if args.at else None
    try:
        verifier = build_verifier(trust, Clock(), max_bytes=max_bytes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return verifier, at, tz


def _time(text: str, tz: ZoneInfo) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"--at {text!r}: not an ISO 8601 time (e.g. 2025-03-01T12:00:00+05:00)") from None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def verify_document(verifier: Any, payload: bytes, *, at: datetime | None = None) -> dict[str, Any]:  # noqa: ANN401
    """The report of one document: verdict, signer, algorithms, signing time (the keys of `--json`)."""
    now = verifier.clock.now()
    report: dict[str, Any] = {
        "verdict": "OK", "errorCode": None, "errorMessage": None, "signer": None, "signerVerified": False,
        "signedAt": None, "judgedAt": None, "algorithms": _algorithms(payload), "warnings": [],
        "revocationChecked": verifier.revocation is not None,
    }
    try:
        verified = verifier.verify_enveloped(payload, at=at, strict_numbers=False)
    except LicgateError as exc:
        report.update(verdict=exc.code, errorCode=exc.code, errorMessage=exc.data or exc.message,
                      judgedAt=(at or now).isoformat())
        signer = _unverified_signer(payload)
        if signer is not None:
            report["signer"] = _signer(signer)
            report["warnings"] = _warnings(signer)
        return report
    report["signer"] = _signer(verified.signer)
    report["signerVerified"] = True
    report["signedAt"] = verified.signed_at.isoformat() if verified.signed_at else None
    report["judgedAt"] = (verified.signed_at or at or now).isoformat()
    report["judgedBy"] = "timestamp" if verified.signed_at else ("--at" if at else "now")
    report["warnings"] = _warnings(verified.signer)
    return report


def _signer(signer: SignerIdentity) -> dict[str, Any]:
    return {
        "name": signer.common_name, "iin": signer.iin, "bin": signer.bin, "organization": signer.organization,
        "roles": list(signer.roles), "roleNames": [ROLE_NAMES.get(r, r) for r in signer.roles],
        "certificate_serial": signer.certificate_serial, "issuer": signer.issuer,
        "notBefore": signer.not_before.isoformat() if signer.not_before else None,
        "notAfter": signer.not_after.isoformat() if signer.not_after else None,
    }


def _warnings(signer: SignerIdentity) -> list[str]:
    out = []
    if signer.iin and (problem := iin_problem(signer.iin)):
        out.append(f"the certificate's IIN {signer.iin} fails its check ({problem}): intake would refuse it "
                   "(IIN_INVALID)")
    if signer.bin and (problem := bin_problem(signer.bin)):
        out.append(f"the certificate's BIN {signer.bin} fails its check ({problem}): intake would refuse it "
                   "(BIN_INVALID)")
    return out


def _signature_element(payload: bytes) -> Any:  # noqa: ANN401
    from core.xmlsafe import parse_xml

    try:
        root = parse_xml(payload, max_bytes=max(len(payload), 1))
    except LicgateError:
        return None
    signatures = list(root.iter(f"{_DS}Signature"))
    return signatures[0] if len(signatures) == 1 else None


def _algorithms(payload: bytes) -> dict[str, Any] | None:
    """The algorithm URIs the signature names (as written; whether they verified is the verdict)."""
    signature = _signature_element(payload)
    if signature is None:
        return None
    info = signature.find(f"{_DS}SignedInfo")
    if info is None:
        return None

    def algorithm(path: str) -> str | None:
        node = info.find(path)
        return node.get("Algorithm") if node is not None else None

    return {"canonicalization": algorithm(f"{_DS}CanonicalizationMethod"),
            "signature": algorithm(f"{_DS}SignatureMethod"),
            "digest": algorithm(f"{_DS}Reference/{_DS}DigestMethod")}


def _unverified_signer(payload: bytes) -> SignerIdentity | None:
    """Who the certificate in KeyInfo names, read without judging it (shown beside a refusal)."""
    from cryptography import x509

    from signing import profile

    signature = _signature_element(payload)
    if signature is None:
        return None
    certificates = []
    for node in signature.iterfind(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate"):
        try:
            certificates.append(x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split()))))
        except ValueError:
            return None
    leaves = [c for c in certificates if not any(o is not c and o.issuer == c.subject for o in certificates)]
    if len(leaves) != 1:
        return None
    try:
        return profile.signer_identity(leaves[0], strict=False)
    except LicgateError:
        return None


def render(report: dict[str, Any], tz: ZoneInfo) -> str:
    """The report for a person."""

    def when(value: str | None) -> str:
        return datetime.fromisoformat(value).astimezone(tz).isoformat(timespec="seconds") if value else "-"

    lines = []
    if report["verdict"] == "OK":
        lines.append("OK: the signature verifies")
    else:
        lines.append(f"{report['errorCode']}: {report['errorMessage']}")
    signer = report["signer"]
    if signer is not None:
        lines.append("signer" + ("" if report["signerVerified"] else " (as the certificate names it; not verified)")
                     + ":")
        lines.append(f"  name          {signer['name']}")
        lines.append(f"  IIN           {signer['iin'] or '-'}")
        lines.append(f"  BIN           {signer['bin'] or '-'}")
        if signer["organization"]:
            lines.append(f"  organisation  {signer['organization']}")
        roles = ", ".join(f"{name} ({oid})" if name != oid else oid
                          for oid, name in zip(signer["roles"], signer["roleNames"], strict=True))
        lines.append(f"  roles         {roles or '-'}")
        lines.append(f"  certificate   serial {signer['certificate_serial']}, valid {when(signer['notBefore'])} "
                     f"to {when(signer['notAfter'])}")
        lines.append(f"  issuer        {signer['issuer']}")
    algorithms = report["algorithms"]
    if algorithms:
        lines.append("algorithms:")
        lines.append(f"  signature     {algorithms['signature']}")
        lines.append(f"  digest        {algorithms['digest']}")
        lines.append(f"  c14n          {algorithms['canonicalization']}")
    if report["signedAt"]:
        lines.append(f"signed at       {when(report['signedAt'])} (proven by a verified timestamp)")
    else:
        lines.append("signed at       not proven (no verified timestamp)")
    if report["judgedAt"]:
        lines.append(f"judged at       {when(report['judgedAt'])}")
    if not report["revocationChecked"]:
        lines.append("revocation      not checked (--revocation off, or --ca-dir without --crl-dir)")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(lines)
