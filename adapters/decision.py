"""The provider's signed result (docs/provider-api.md): a verified `LicenseDecision` element -> the domain's
`LicenseDecision`.

Only the element the signature verifier hands back is read (never the uploaded bytes again), so what
the gateway acts on is exactly what was signed. The shape follows `LicenseDecision` in
`schemas/medlicense_v1.xsd`: `registrationNumber`, `decision`, `licenseNumber`?, `reasonKk`?,
`reasonRu`?, `issuedAt`, then anything the project adds, the signature last. A granted decision needs
`licenseNumber`; a refusal needs both reasons (a motivated refusal, in Kazakh and Russian).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from lxml import etree

from adapters.xml import MED, XMLDSIG, parse_lenient_datetime
from core.domain import Decision, LicenseDecision
from core.errors import SchemaInvalid

_FIXED = ("registrationNumber", "decision", "licenseNumber", "reasonKk", "reasonRu", "issuedAt")
_REQUIRED = ("registrationNumber", "decision", "issuedAt")
MAX_TEXT = 1000


def read_decision(root: etree._Element, tz: tzinfo) -> LicenseDecision:
    """Read a verified `LicenseDecision`; raise SchemaInvalid naming the element that is wrong.

    `tz` is the zone of an `issuedAt` written without one (Astana time)."""
    if root.tag != f"{{{MED}}}LicenseDecision":
        raise SchemaInvalid(f"root element is {_name(root)}, expected {{{MED}}}LicenseDecision")
    values = _fixed_children(root)
    for name in _REQUIRED:
        if name not in values:
            raise SchemaInvalid(f"LicenseDecision/{name} is missing")
    try:
        decision = Decision(values["decision"])
    except ValueError:
        raise SchemaInvalid(
            f"LicenseDecision/decision: {values['decision'][:40]!r} is not GRANTED or REFUSED"
        ) from None
    result = LicenseDecision(
        registration_number=values["registrationNumber"],
        decision=decision,
        issued_at=_datetime(values["issuedAt"], tz),
        license_number=values.get("licenseNumber"),
        reason_kk=values.get("reasonKk"),
        reason_ru=values.get("reasonRu"),
    )
    if decision is Decision.GRANTED and not result.license_number:
        raise SchemaInvalid("LicenseDecision/licenseNumber is required when the decision is GRANTED")
    if decision is Decision.REFUSED:
        for name in ("reasonKk", "reasonRu"):
            if not values.get(name):
                raise SchemaInvalid(f"LicenseDecision/{name} is required when the decision is REFUSED")
    return result


def _fixed_children(root: etree._Element) -> dict[str, str]:
    """The contract's elements, checked for order and uniqueness; elements after `issuedAt` are extras."""
    values: dict[str, str] = {}
    position = -1
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        qname = etree.QName(child)
        if qname.namespace == XMLDSIG or "issuedAt" in values:
            continue  # the signature, and what the project may add after issuedAt
        if qname.namespace != MED or qname.localname not in _FIXED:
            raise SchemaInvalid(f"LicenseDecision: unexpected element {_name(child)}")
        index = _FIXED.index(qname.localname)
        if index <= position:
            raise SchemaInvalid(f"LicenseDecision/{qname.localname} is out of order or repeated")
        position = index
        if len(child):
            raise SchemaInvalid(f"LicenseDecision/{qname.localname} must hold text, not elements")
        text = (child.text or "").strip()
        if not text:
            raise SchemaInvalid(f"LicenseDecision/{qname.localname} is empty")
        if len(text) > MAX_TEXT:
            raise SchemaInvalid(f"LicenseDecision/{qname.localname} is longer than {MAX_TEXT} characters")
        values[qname.localname] = text
    return values


def _datetime(value: str, tz: tzinfo) -> datetime:
    """xs:dateTime with or without an offset, or a bare xs:date; no offset means Astana time."""
    parsed = parse_lenient_datetime(value, tz)
    if parsed is None:
        raise SchemaInvalid(f"LicenseDecision/issuedAt: {value[:40]!r} is not a date-time")
    return parsed


def _name(element: etree._Element) -> str:
    return element.tag if isinstance(element.tag, str) else "a non-element node"
