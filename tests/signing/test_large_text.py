"""Large text nodes are canonicalized and digested in pieces (`digest_enveloped`), never holding a 10 MB
document's canonical form: the digest must be the one libxml2's C14N of the whole document gives, in every
C14N variant and for every character C14N escapes, and what xmlsec1 signs must verify."""

from __future__ import annotations

import hashlib

import pytest
from lxml import etree

import signing.xmldsig as xmldsig
from core.clock import Clock
from core.errors import SignatureInvalid
from signing.providers import SHA256, ProviderRegistry, default_registry
from signing.trust import TrustStore
from signing.verifier import SignatureVerifier
from signing.xmldsig import C14N_METHODS, DS, canonicalize_enveloped, digest_enveloped
from tests.signing.conftest import MEDLICENSE, application
from tests.signing.test_enveloped import C14N, ENVELOPED, EXC, xmlsec_template

# Text that C14N escapes (&, <, >, a carriage return kept as a character reference), a CDATA section, a
# comment inside a text, non-ASCII, a large tail and nested elements, under a default namespace.
TRICKY = f"""<root xmlns="{MEDLICENSE}" xmlns:x="urn:x"><a>plain text long enough</a>
<b>ampersand &amp; less &lt; greater &gt; carriage&#13;return and more</b>
<c><![CDATA[cdata <kept> & escaped by c14n]]> then text</c>
<d>before a comment<!-- a comment -->after the comment, long enough</d>
<e x:attr="v">Қазақ тілі: бір, екі, үш — long enough<f>inner text long enough</f>tail text long enough</e>
<Signature xmlns="{DS}"><SignedInfo>ignored</SignedInfo></Signature>
after the signature, a tail long enough</root>""".encode()


@pytest.mark.parametrize("method", list(C14N_METHODS))
@pytest.mark.parametrize("threshold", [8, 30, 10_000])
def test_digest_in_pieces_equals_the_digest_of_the_whole_canonical_form(monkeypatch, method, threshold):
    monkeypatch.setattr(xmldsig, "LARGE_TEXT", threshold)
    monkeypatch.setattr(xmldsig, "_TEXT_PIECE", 7)  # pieces that cut through what is escaped
    root = etree.fromstring(TRICKY, etree.XMLParser(strip_cdata=False))
    signature = root.find(f"{{{DS}}}Signature")
    before = etree.tostring(root)
    whole = canonicalize_enveloped(root, signature, method)
    pieces: list[bytes] = []
    digest_enveloped(root, signature, method, pieces.append)
    assert b"".join(pieces) == whole
    # The tree is as it was, texts and signature back in place; a CDATA section comes back as plain text.
    expected = before if threshold > len("cdata <kept> & escaped by c14n then text") else before.replace(
        b"<![CDATA[cdata <kept> & escaped by c14n]]>", b"cdata &lt;kept&gt; &amp; escaped by c14n")
    assert etree.tostring(root) == expected
    assert canonicalize_enveloped(root, signature, method) == whole
    if threshold == 8:
        assert len(pieces) > 20  # the large texts did go piece by piece


@pytest.mark.parametrize("method", list(C14N_METHODS))
def test_a_signature_first_in_its_parent_with_a_large_tail_leaves_the_tree_as_it_was(monkeypatch, method):
    """While the signature is out its tail joins the parent's text, which may itself stand aside: both must
    go back in the right order."""
    monkeypatch.setattr(xmldsig, "LARGE_TEXT", 8)
    doc = f'<r xmlns="{MEDLICENSE}">head<Signature xmlns="{DS}"/>tail text, long enough<a>x</a></r>'.encode()
    root = etree.fromstring(doc)
    signature = root.find(f"{{{DS}}}Signature")
    whole = canonicalize_enveloped(root, signature, method)
    pieces: list[bytes] = []
    digest_enveloped(root, signature, method, pieces.append)
    assert b"".join(pieces) == whole
    assert etree.tostring(root) == doc


def test_a_marker_found_in_the_document_falls_back_to_the_whole_canonical_form(monkeypatch):
    monkeypatch.setattr(xmldsig, "LARGE_TEXT", 8)
    monkeypatch.setattr(xmldsig.secrets, "token_hex", lambda n: "cafe")
    doc = TRICKY.replace(b'x:attr="v"', b'x:attr="licgate-c14n-cafe-000000."')
    root = etree.fromstring(doc, etree.XMLParser(strip_cdata=False))
    signature = root.find(f"{{{DS}}}Signature")
    pieces: list[bytes] = []
    digest_enveloped(root, signature, C14N, pieces.append)
    assert pieces == [canonicalize_enveloped(root, signature, C14N)]


def _large_application(size: int) -> bytes:
    """An application whose one document carries `size` characters of text, with characters C14N escapes."""
    chunk = "QUJD&amp;&lt;&gt;&#13;Қ"
    content = (chunk * (size // len(chunk) + 1))[:size].rsplit("&", 1)[0]
    return application().replace(b">aGVsbG8=</document>", f">{content}</document>".encode())


@pytest.mark.xmlsec1
@pytest.mark.parametrize("layout", [
    dict(prefix="ds", signed_info_c14n=C14N, transforms=[ENVELOPED]),
    dict(prefix="", signed_info_c14n=EXC, transforms=[ENVELOPED, EXC]),
], ids=["c14n", "exclusive"])
def test_xmlsec1_signatures_over_a_large_text_verify_and_a_change_inside_it_is_refused(
        pki, crl_verifier, xmlsec_sign, layout):
    big = _large_application(xmldsig.LARGE_TEXT + 300_000)
    signed = xmlsec_sign(xmlsec_template(body=big, **layout), "individual", pki)
    assert len(signed) > xmldsig.LARGE_TEXT  # the verifier takes the path in pieces
    assert crl_verifier.verify_enveloped(signed).signer.iin == "871008401427"
    middle = signed.index(b"QUJD", len(signed) // 2)
    changed = signed[:middle] + b"QUJE" + signed[middle + 4:]
    with pytest.raises(SignatureInvalid, match="digest"):
        crl_verifier.verify_enveloped(changed)


def test_a_provider_without_a_hasher_gets_the_whole_canonical_form_at_once(pki, xmlsec_sign_or_own):
    seen: list[int] = []

    class WholeOnly:
        name = "whole-only"
        signature_methods: frozenset[str] = frozenset()
        digest_methods = frozenset({SHA256})

        def digest(self, method: str, data: bytes) -> bytes:
            seen.append(len(data))
            return hashlib.sha256(data).digest()

        def verify(self, method, certificate, signature, data):  # noqa: ANN001, ANN201
            raise AssertionError("not used")

    registry: ProviderRegistry = default_registry()
    registry.register(WholeOnly())
    verifier = SignatureVerifier(TrustStore(pki.ca_dir), Clock(), registry=registry)
    signed = xmlsec_sign_or_own(_large_application(xmldsig.LARGE_TEXT + 1000))
    verifier.verify_enveloped(signed)
    assert len(seen) == 1 and seen[0] > xmldsig.LARGE_TEXT


@pytest.fixture
def xmlsec_sign_or_own(pki):  # noqa: ANN001, ANN201
    """Our own signer (the provider test is about the registry, not about an independent signer)."""
    from signing.signer import sign_enveloped

    party = pki.party("individual")
    return lambda doc: sign_enveloped(doc, party.key_pem, party.cert_pem)
