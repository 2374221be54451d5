"""WS-Security on the SOAP Body (docs/shep.md): verify the senders' transport signatures, sign ours.

The shape: `soap:Header/wsse:Security` (mustUnderstand="1") holds one `ds:Signature` whose references
point by `wsu:Id` at the `soap:Body` and at the `wsu:Timestamp` of that header (both required), exclusive
c14n for SignedInfo and the single transform.

Replay window: the signed Timestamp's `Created` may be at most `window` old and `skew` ahead of our clock
(and its `Expires`, if any, not past); within that window the same SignatureValue must not be accepted
twice. `verify_transport` returns the replay key (a digest of the SignatureValue) and until when it must be
remembered; the caller that sees every request remembers it (`ReplayGuard`): intake's serving process, not
the worker process that verified the signature.

The key is the whole certificate (a `wsse:BinarySecurityToken` referenced from
`wsse:SecurityTokenReference/wsse:Reference`, or inline as `wsse:KeyIdentifier` X509v3) or is named by
`X509IssuerSerial`, resolved against the sender's configured certificate.

Trust: when the sender has a configured certificate, the signing certificate must be exactly that one (and
within its validity period); otherwise it must chain to the pinned NCA roots, pass revocation, and carry
the sender's configured BIN. Every failure is TRANSPORT_SIGNATURE_INVALID.

Wrapping: the Body that is signed must be the envelope's own Body (by identity, not by Id value), and an Id
must name exactly one element of the envelope.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from core.clock import Clock
from core.domain import SignerIdentity
from core.errors import LicgateError, TransportSignatureInvalid
from core.xmlsafe import parse_xml
from signing import profile, signer
from signing.trust import TrustConfig, check_validity, load_der_certificate
from signing.verifier import SignatureVerifier, build_verifier
from signing.xmldsig import (
    C14N_METHODS,
    DS,
    EXC_C14N,
    canonicalize,
    child_elements,
    decode_base64,
    ds,
    inclusive_prefixes,
)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
KEY_REFS = ("bst", "issuer-serial")

_WSU_ID = f"{{{WSU}}}Id"
DEFAULT_WINDOW = timedelta(minutes=5)
DEFAULT_SKEW = timedelta(minutes=1)


def _fail(reason: str) -> TransportSignatureInvalid:
    return TransportSignatureInvalid(reason)


def _b64(text: str | None, what: str) -> bytes:
    value = decode_base64(text)
    if value is None:
        raise _fail(f"{what} is not base64")
    return value


def _soap_ns(envelope: etree._Element) -> str:
    ns = etree.QName(envelope).namespace
    if etree.QName(envelope).localname != "Envelope" or ns not in (SOAP11, SOAP12):
        raise _fail("not a SOAP envelope")
    return ns


def _ids(envelope: etree._Element) -> dict[str, list[etree._Element]]:
    found: dict[str, list[etree._Element]] = {}
    for element in envelope.iter(etree.Element):
        for name in (_WSU_ID, "Id", "ID"):
            value = element.get(name)
            if value is not None:
                found.setdefault(value, []).append(element)
    return found


# --- verification --------------------------------------------------------------------------------------


def verify_wsse(
    envelope_root: etree._Element,
    *,
    sender_bin: str | None = None,
    sender_cert_pem: bytes | None = None,
    verifier: SignatureVerifier | None = None,
    trust: TrustConfig | None = None,
    clock: Clock | None = None,
    expected_bin: str | None = None,
    expected_cert_pem: bytes | None = None,
) -> SignerIdentity:
    """Verify the WS-Security signature over the Body of `envelope_root` and return the transport signer
    (`verify_transport` without the replay key, for callers that keep no replay cache).

    Give the process's `verifier` (its trust store and revocation cache). `trust`/`clock`, `expected_bin`
    and `expected_cert_pem` are accepted as the intake's first spelling of `verifier`, `sender_bin` and
    `sender_cert_pem`.
    """
    sender_bin = sender_bin or expected_bin
    sender_cert_pem = sender_cert_pem or expected_cert_pem
    if verifier is None:
        if trust is None or clock is None:
            raise ValueError("verify_wsse needs a verifier (or trust and clock)")
        verifier = _shared_verifier(trust, clock)
    return verify_transport(envelope_root, sender_bin=sender_bin, sender_cert_pem=sender_cert_pem,
                            verifier=verifier).identity


@dataclass(frozen=True, slots=True)
class VerifiedTransport:
    identity: SignerIdentity
    created: datetime  # the signed Timestamp's Created
    replay_key: bytes  # SHA-256 of the SignatureValue: the same message again has the same key
    replay_until: datetime  # after this, Created is too old anyway: the key may be forgotten


def verify_transport(envelope_root: etree._Element, *, verifier: SignatureVerifier, sender_bin: str | None = None,
                     sender_cert_pem: bytes | None = None, window: timedelta = DEFAULT_WINDOW,
                     skew: timedelta = DEFAULT_SKEW) -> VerifiedTransport:
    """Verify the WS-Security signature over the Body and the Timestamp of `envelope_root` (see the module
    docstring); the replay check against the returned key is the caller's."""
    try:
        return _verify(envelope_root, sender_bin, sender_cert_pem, verifier, window, skew)
    except TransportSignatureInvalid:
        raise
    except LicgateError as exc:  # certificate and algorithm refusals of the transport key
        raise _fail(f"{exc.code}: {exc.data or ''}".rstrip(": ")) from None


class ReplayGuard:
    """The transport signatures seen within their window, in memory (one per serving process).

    Bounded by the window: an entry is dropped once its message would be refused as too old anyway, so it
    holds at most (requests per second x window) keys."""

    def __init__(self) -> None:
        self._seen: dict[bytes, datetime] = {}
        self._lock = threading.Lock()
        self._next_purge: datetime | None = None

    def check(self, key: bytes, until: datetime, now: datetime) -> None:
        """TRANSPORT_SIGNATURE_INVALID when `key` was seen and is still within its window; else remember it."""
        with self._lock:
            if self._next_purge is None or now >= self._next_purge:
                self._seen = {k: u for k, u in self._seen.items() if u >= now}
                self._next_purge = now + timedelta(seconds=10)
            seen = self._seen.get(key)
            if seen is not None and seen >= now:
                raise _fail("this transport signature was accepted before (a replayed message)")
            self._seen[key] = until

    def __len__(self) -> int:
        return len(self._seen)


_verifiers: dict[tuple[TrustConfig, int], SignatureVerifier] = {}
_verifiers_lock = threading.Lock()


def _shared_verifier(trust: TrustConfig, clock: Clock) -> SignatureVerifier:
    # One per trust configuration and clock: its CRL index and OCSP cache are built once, not per message.
    key = (trust, id(clock))
    with _verifiers_lock:
        verifier = _verifiers.get(key)
        if verifier is None:
            verifier = _verifiers[key] = build_verifier(trust, clock)
        return verifier


def _verify(envelope: etree._Element, sender_bin: str | None, sender_cert_pem: bytes | None,
            verifier: SignatureVerifier, window: timedelta, skew: timedelta) -> VerifiedTransport:
    soap = _soap_ns(envelope)
    parts = child_elements(envelope)
    headers = [e for e in parts if e.tag == f"{{{soap}}}Header"]
    bodies = [e for e in parts if e.tag == f"{{{soap}}}Body"]
    if len(bodies) != 1 or len(headers) > 1:
        raise _fail("the envelope must have one Body and at most one Header")
    body = bodies[0]
    securities = headers[0].findall(f"{{{WSSE}}}Security") if headers else []
    if not securities:
        raise _fail("no wsse:Security header")
    if len(securities) > 1:
        raise _fail("more than one wsse:Security header")
    security = securities[0]
    signatures = security.findall(ds("Signature"))
    if len(signatures) != 1:
        raise _fail(f"wsse:Security must hold exactly one ds:Signature, found {len(signatures)}")
    signature = signatures[0]

    children = child_elements(signature)
    if [c.tag for c in children] != [ds("SignedInfo"), ds("SignatureValue"), ds("KeyInfo")]:
        raise _fail("ds:Signature must hold SignedInfo, SignatureValue and KeyInfo")
    signed_info, signature_value, key_info = children
    info = child_elements(signed_info)
    if len(info) < 3 or [c.tag for c in info[:2]] != [ds("CanonicalizationMethod"), ds("SignatureMethod")]:
        raise _fail("SignedInfo must hold CanonicalizationMethod, SignatureMethod and references")
    c14n_method = info[0].get("Algorithm") or ""
    if c14n_method not in C14N_METHODS:
        raise _fail(f"canonicalization {c14n_method[:100]!r} is not accepted")
    signature_method = info[1].get("Algorithm") or ""
    verifier.registry.signature_provider(signature_method)

    ids = _ids(envelope)
    body_signed = False
    created: datetime | None = None
    for reference in info[2:]:
        if reference.tag != ds("Reference"):
            raise _fail("SignedInfo may hold only Reference elements after SignatureMethod")
        target = _resolve(reference.get("URI") or "", ids)
        if target is body and not body_signed:
            body_signed = True
        elif target.tag == f"{{{WSU}}}Timestamp" and target.getparent() is security and created is None:
            created = _check_timestamp(target, verifier, window, skew)
        else:
            raise _fail("a reference points at something other than the Body or the Timestamp, or at one twice")
        _check_digest(reference, target, verifier)
    if not body_signed:
        raise _fail("the signature does not cover the soap:Body")
    if created is None:
        raise _fail("the signature does not cover a wsu:Timestamp of the Security header (needed against replays)")
    if len(security.findall(f"{{{WSU}}}Timestamp")) != 1:
        raise _fail("the Security header must hold exactly one wsu:Timestamp")

    cert = _signing_certificate(key_info, security, ids, sender_cert_pem)
    try:
        data = canonicalize(signed_info, c14n_method, prefixes=inclusive_prefixes(info[0]))
    except etree.C14NError:
        raise _fail("SignedInfo cannot be canonicalized") from None
    if not verifier.registry.verify(signature_method, cert, _b64(signature_value.text, "SignatureValue"), data):
        raise _fail("the signature value does not verify with the transport certificate")

    key = hashlib.sha256(_b64(signature_value.text, "SignatureValue")).digest()
    until = created + window + skew
    if sender_cert_pem is not None:
        configured = x509.load_pem_x509_certificate(sender_cert_pem)
        if cert.public_bytes(serialization.Encoding.DER) != configured.public_bytes(serialization.Encoding.DER):
            raise _fail("the message is not signed with the sender's configured certificate")
        check_validity(cert, verifier.clock.now())
        return VerifiedTransport(profile.signer_identity(cert, strict=False), created, key, until)
    identity = verifier.check_certificate(cert, purpose="transport")
    if not sender_bin or identity.bin != sender_bin:
        raise _fail(f"the transport certificate carries BIN {identity.bin or '(none)'}, the sender's is "
                    f"{sender_bin or '(not configured)'}")
    return VerifiedTransport(identity, created, key, until)


def _itertext(element: etree._Element | None) -> list[str]:
    return [] if element is None else list(element.itertext())


def _check_timestamp(timestamp: etree._Element, verifier: SignatureVerifier, window: timedelta,
                     skew: timedelta) -> datetime:
    """The signed wsu:Timestamp's Created, which must lie within `window` (and `skew`) of now; its Expires,
    if any, must not have passed."""
    now = verifier.clock.now()
    created_el = timestamp.find(f"{{{WSU}}}Created")
    if created_el is None:
        raise _fail("the signed wsu:Timestamp has no Created")
    created = _when(created_el, "Created")
    if created < now - window - skew:
        raise _fail(f"the signed wsu:Timestamp was created at {created.isoformat()}, more than "
                    f"{window.total_seconds():g} s ago (a message is accepted within that window only)")
    if created > now + skew:
        raise _fail(f"the signed wsu:Timestamp's Created {created.isoformat()} is ahead of our clock")
    expires_el = timestamp.find(f"{{{WSU}}}Expires")
    if expires_el is not None and now > _when(expires_el, "Expires") + skew:
        raise _fail(f"the signed wsu:Timestamp expired at {_when(expires_el, 'Expires').isoformat()}")
    return created


def _when(element: etree._Element, what: str) -> datetime:
    # The whole text: comments are not signed, so one inside the element must not hide the date.
    text = "".join(element.itertext()).strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"wsu:{what} {text[:40]!r} is not a date-time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _resolve(uri: str, ids: dict[str, list[etree._Element]]) -> etree._Element:
    if not uri.startswith("#") or len(uri) < 2:
        raise _fail(f"references must name an element by Id (#...), not {uri[:80]!r}")
    targets = ids.get(uri[1:], [])
    if len(targets) != 1:
        raise _fail(f"the Id {uri[1:80]!r} names {len(targets)} elements (exactly one is required)")
    return targets[0]


def _check_digest(reference: etree._Element, target: etree._Element, verifier: SignatureVerifier) -> None:
    children = child_elements(reference)
    tags = [c.tag for c in children]
    if tags == [ds("Transforms"), ds("DigestMethod"), ds("DigestValue")]:
        transforms = child_elements(children[0])
        if len(transforms) != 1 or transforms[0].get("Algorithm") not in C14N_METHODS:
            raise _fail("a reference may carry exactly one transform, a canonicalization")
        method, prefixes = transforms[0].get("Algorithm"), inclusive_prefixes(transforms[0])
        children = children[1:]
    elif tags == [ds("DigestMethod"), ds("DigestValue")]:
        method, prefixes = EXC_C14N, None
    else:
        raise _fail("a Reference must hold Transforms, DigestMethod and DigestValue")
    digest_method = children[0].get("Algorithm") or ""
    # Bare-name references never cover comments (XMLDSig 4.3.3.3), whatever the c14n says.
    try:
        octets = canonicalize(target, method, with_comments=False, prefixes=prefixes)
    except etree.C14NError:
        raise _fail(f"{etree.QName(target).localname} cannot be canonicalized (relative namespace URI?)") from None
    digest = verifier.registry.digest(digest_method, octets)
    if not hmac.compare_digest(digest, _b64(children[1].text, "DigestValue")):
        raise _fail(f"the digest of {etree.QName(target).localname} does not match (changed after signing)")


def _signing_certificate(key_info: etree._Element, security: etree._Element, ids: dict[str, list[etree._Element]],
                         sender_cert_pem: bytes | None) -> x509.Certificate:
    references = child_elements(key_info)
    if len(references) != 1:
        raise _fail("KeyInfo must hold one key reference")
    ref = references[0]
    if ref.tag == ds("X509Data"):
        return _from_x509_data(ref, sender_cert_pem)
    if ref.tag != f"{{{WSSE}}}SecurityTokenReference":
        raise _fail(f"unsupported key reference {etree.QName(ref).localname}")
    inner = child_elements(ref)
    if len(inner) != 1:
        raise _fail("SecurityTokenReference must hold one reference")
    inner_ref = inner[0]
    if inner_ref.tag == f"{{{WSSE}}}Reference":
        token = _resolve(inner_ref.get("URI") or "", ids)
        if token.tag != f"{{{WSSE}}}BinarySecurityToken" or token.getparent() is not security:
            raise _fail("the key reference does not point at a BinarySecurityToken of the Security header")
        if (token.get("ValueType") or X509V3) != X509V3:
            raise _fail("the BinarySecurityToken is not an X.509 v3 certificate")
        return _der_certificate(_b64(token.text, "BinarySecurityToken"))
    if inner_ref.tag == f"{{{WSSE}}}KeyIdentifier":
        if inner_ref.get("ValueType") != X509V3:
            raise _fail("only X509v3 KeyIdentifiers (the whole certificate) are accepted")
        return _der_certificate(_b64(inner_ref.text, "KeyIdentifier"))
    if inner_ref.tag == ds("X509Data"):
        return _from_x509_data(inner_ref, sender_cert_pem)
    raise _fail(f"unsupported key reference {etree.QName(inner_ref).localname}")


def _from_x509_data(x509_data: etree._Element, sender_cert_pem: bytes | None) -> x509.Certificate:
    cert_el = x509_data.find(ds("X509Certificate"))
    if cert_el is not None:
        return _der_certificate(_b64(cert_el.text, "X509Certificate"))
    issuer_serial = x509_data.find(ds("X509IssuerSerial"))
    if issuer_serial is None:
        raise _fail("X509Data names no certificate")
    if sender_cert_pem is None:
        raise _fail("the key is named by X509IssuerSerial but no certificate is configured for this sender")
    configured = x509.load_pem_x509_certificate(sender_cert_pem)
    serial_text = "".join(_itertext(issuer_serial.find(ds("X509SerialNumber")))).strip()
    issuer_text = "".join(_itertext(issuer_serial.find(ds("X509IssuerName")))).strip()
    if not serial_text.isdigit() or int(serial_text) != configured.serial_number:
        raise _fail("X509IssuerSerial does not name the sender's configured certificate (serial)")
    if not _same_name(issuer_text, configured.issuer):
        raise _fail("X509IssuerSerial does not name the sender's configured certificate (issuer)")
    return configured


def _same_name(text: str, name: x509.Name) -> bool:
    # Producers write RFC 2253/4514 strings with varying attribute order and labels: compare the set of
    # attribute values, which is what identifies the issuer.
    try:
        parsed = x509.Name.from_rfc4514_string(text, _NAME_LABELS)
    except ValueError:
        return False
    return sorted((a.oid.dotted_string, str(a.value)) for a in parsed) == sorted(
        (a.oid.dotted_string, str(a.value)) for a in name)


_NAME_LABELS = {
    "SERIALNUMBER": x509.NameOID.SERIAL_NUMBER, "SN": x509.NameOID.SURNAME, "G": x509.NameOID.GIVEN_NAME,
    "GIVENNAME": x509.NameOID.GIVEN_NAME, "E": x509.NameOID.EMAIL_ADDRESS, "EMAILADDRESS": x509.NameOID.EMAIL_ADDRESS,
}


def _der_certificate(data: bytes) -> x509.Certificate:
    try:
        return load_der_certificate(data)
    except ValueError:
        raise _fail("the transport key's certificate cannot be read") from None


# --- signing -------------------------------------------------------------------------------------------


def sign_wsse(envelope: bytes, key_pem: bytes, cert_pem: bytes, *, key_ref: str = "bst",
              now: datetime | None = None, lifetime: timedelta = DEFAULT_WINDOW) -> bytes:
    """Add a WS-Security header signing the Body of `envelope` and a Timestamp (see `WsseSigner`)."""
    return WsseSigner(key_pem, cert_pem, key_ref=key_ref).sign(envelope, now=now, lifetime=lifetime)


class WsseSigner:
    """Signs the Body of SOAP envelopes with one transport key (exclusive c14n, RSA/ECDSA-SHA256, or GOST
    34.10-2015 with Streebog for a test PKI's GOST key), loaded once: the gateway signs every outbound
    message with the same key.

    `key_ref`: "bst" puts the certificate in a BinarySecurityToken; "issuer-serial" only names it (the
    receiver must have it configured).
    """

    def __init__(self, key_pem: bytes, cert_pem: bytes, *, key_ref: str = "bst") -> None:
        if key_ref not in KEY_REFS:
            raise ValueError(f"key_ref must be one of {KEY_REFS}")
        self._key = signer.load_signing_key(key_pem)
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        self._cert_b64 = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self._key_ref = key_ref

    def sign(self, envelope: bytes, *, now: datetime | None = None, lifetime: timedelta = DEFAULT_WINDOW) -> bytes:
        """`envelope` with a WS-Security header whose signature covers its Body and a Timestamp created `now`
        (default: the current time) and expiring `lifetime` later. A Security header the envelope already
        has (a message signed for an earlier attempt) is replaced."""
        key, cert, key_ref = self._key, self._cert, self._key_ref
        root = parse_xml(envelope)
        soap = _soap_ns(root)
        header = root.find(f"{{{soap}}}Header")
        if header is None:
            header = etree.Element(f"{{{soap}}}Header")
            root.insert(0, header)
        for old in header.findall(f"{{{WSSE}}}Security"):
            header.remove(old)
        body = root.find(f"{{{soap}}}Body")
        if body is None:
            raise ValueError("the envelope has no Body")
        body_id = body.get(_WSU_ID)
        if body_id is None:
            body_id = f"Body-{uuid.uuid4()}"
            body.set(_WSU_ID, body_id)

        security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
        security.set(f"{{{soap}}}mustUnderstand", "1")
        token_id = f"X509-{uuid.uuid4()}"
        if key_ref == "bst":
            token = etree.SubElement(security, f"{{{WSSE}}}BinarySecurityToken", EncodingType=BASE64_BINARY,
                                     ValueType=X509V3)
            token.set(_WSU_ID, token_id)
            token.text = self._cert_b64

        created = (now or datetime.now(UTC)).astimezone(UTC)
        timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp")
        timestamp_id = f"TS-{uuid.uuid4()}"
        timestamp.set(_WSU_ID, timestamp_id)
        etree.SubElement(timestamp, f"{{{WSU}}}Created").text = _utc_text(created)
        etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = _utc_text(created + lifetime)

        signature = etree.SubElement(security, ds("Signature"), nsmap={"ds": DS})
        signed_info = etree.SubElement(signature, ds("SignedInfo"))
        etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
        etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=signer.signature_method(key))
        digest_method = signer.digest_method(key)
        for target, target_id in ((body, body_id), (timestamp, timestamp_id)):
            reference = etree.SubElement(signed_info, ds("Reference"), URI=f"#{target_id}")
            transforms = etree.SubElement(reference, ds("Transforms"))
            etree.SubElement(transforms, ds("Transform"), Algorithm=EXC_C14N)
            etree.SubElement(reference, ds("DigestMethod"), Algorithm=digest_method)
            digest = signer.digest(digest_method, canonicalize(target, EXC_C14N))
            etree.SubElement(reference, ds("DigestValue")).text = base64.b64encode(digest).decode("ascii")
        signature_value = etree.SubElement(signature, ds("SignatureValue"))
        key_info = etree.SubElement(signature, ds("KeyInfo"))
        str_el = etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference")
        if key_ref == "bst":
            etree.SubElement(str_el, f"{{{WSSE}}}Reference", URI=f"#{token_id}", ValueType=X509V3)
        else:
            x509_data = etree.SubElement(str_el, ds("X509Data"))
            issuer_serial = etree.SubElement(x509_data, ds("X509IssuerSerial"))
            etree.SubElement(issuer_serial, ds("X509IssuerName")).text = cert.issuer.rfc4514_string()
            etree.SubElement(issuer_serial, ds("X509SerialNumber")).text = str(cert.serial_number)

        raw = signer.sign_raw(key, canonicalize(signed_info, EXC_C14N))
        signature_value.text = base64.b64encode(raw).decode("ascii")
        return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
