"""XMLDSig building blocks shared by the signer, the verifier and WS-Security: names and canonicalization.

Canonicalization is lxml's (libxml2's) C14N 1.0 and exclusive C14N 1.0, applied to the parsed tree of
the bytes that arrived. The enveloped-signature transform is done by detaching the Signature element for
the time of one canonicalization (its trailing text stays in the document, as the transform requires)
and putting it back, so no copy of a large document is made.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy

from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
EC = "http://www.w3.org/2001/10/xml-exc-c14n#"
NS = {"ds": DS, "ec": EC}

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"

# algorithm URI -> (exclusive, with_comments)
C14N_METHODS: dict[str, tuple[bool, bool]] = {
    C14N: (False, False),
    C14N_COMMENTS: (False, True),
    EXC_C14N: (True, False),
    EXC_C14N_COMMENTS: (True, True),
}
# `digest_enveloped` canonicalizes text nodes this long (in characters) itself, in pieces of _TEXT_PIECE.
LARGE_TEXT = 1024 * 1024
_TEXT_PIECE = 1024 * 1024
# Known but not implemented by lxml: answered ALGORITHM_UNSUPPORTED rather than "invalid".
C14N_UNSUPPORTED = ("http://www.w3.org/2006/12/xml-c14n11", "http://www.w3.org/2006/12/xml-c14n11#WithComments")


def ds(local: str) -> str:
    return f"{{{DS}}}{local}"


def inclusive_prefixes(method_element: etree._Element) -> list[str] | None:
    """The InclusiveNamespaces PrefixList of an exclusive c14n method or transform element, if any."""
    found = method_element.find(f"{{{EC}}}InclusiveNamespaces")
    if found is None:
        return None
    return [("" if p == "#default" else p) for p in (found.get("PrefixList") or "").split()] or None


def canonicalize(node: etree._Element | etree._ElementTree, method: str, *, with_comments: bool | None = None,
                 prefixes: list[str] | None = None) -> bytes:
    """C14N of `node`: a whole document (an ElementTree), or an element as the document subset of its
    subtree in its context (the namespaces it inherits are in scope)."""
    exclusive, comments = C14N_METHODS[method]
    if with_comments is not None:
        comments = with_comments
    if isinstance(node, etree._Element) and node.getparent() is not None:
        node = _standalone(node)
    return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments,
                          inclusive_ns_prefixes=prefixes if exclusive else None)


def _standalone(element: etree._Element) -> etree._Element:
    """A copy of `element` as the root of its own document, declaring every namespace in scope.

    lxml canonicalizes a non-root element through a temporary document whose namespace references still
    point into the original tree, and libxml2 then emits spurious `xmlns=""` below a default namespace
    declared on an ancestor. The subset's canonical form equals that of this copy: inclusive C14N renders
    the inherited namespaces on the apex, exclusive C14N only the visibly used ones."""
    copy = etree.Element(element.tag, attrib=dict(element.attrib), nsmap=element.nsmap)
    copy.text = element.text
    for child in element:
        copy.append(deepcopy(child))
    return copy


def canonicalize_enveloped(root: etree._Element, signature: etree._Element, method: str,
                           prefixes: list[str] | None = None) -> bytes:
    """The octets a same-document `URI=""` reference digests: the whole document, the enveloped Signature
    removed, canonicalized by `method`, comments excluded whatever the method says (XMLDSig 4.3.3.3:
    `URI=""` selects the document without comment nodes)."""
    with _signature_removed(signature):
        return canonicalize(root.getroottree(), method, with_comments=False, prefixes=prefixes)


def digest_enveloped(root: etree._Element, signature: etree._Element, method: str, update: Callable[[bytes], object],
                     prefixes: list[str] | None = None) -> None:
    """Feed `update` the octets of `canonicalize_enveloped`, in pieces, never holding all of them.

    libxml2's C14N holds a document's canonical form twice at its peak (its output buffer and the bytes
    handed back): 20 MB for a 10 MB document. Here every text node of LARGE_TEXT characters or more stands
    aside for the time of the canonicalization, a unique marker in its place, and its canonical form (C14N
    1.0 escapes &, <, > and CR in text, nothing else, in every variant) is fed where its marker came out.
    Should a marker not come out exactly once, the whole canonical form is fed as it is. The texts are put
    back afterwards; a CDATA section among them comes back as plain text (the same characters)."""
    token = secrets.token_hex(16)
    large: list[tuple[etree._Element, str, bytes]] = []
    with _signature_removed(signature):
        # The texts go back before the signature does (changes undone in reverse order: the signature's
        # tail may be in one of them while it is out).
        try:
            for element in root.iter(etree.Element):
                text = element.text
                if text is not None and len(text) >= LARGE_TEXT:
                    marker = f"licgate-c14n-{token}-{len(large):06d}."
                    element.text = marker  # the tree's copy of the text is freed; `text` is the one left
                    large.append((element, text, marker.encode()))
            text = None
            octets = canonicalize(root.getroottree(), method, with_comments=False, prefixes=prefixes)
            if all(octets.count(marker) == 1 for _, _, marker in large):
                _feed(octets, large, update)
                return
        finally:
            _put_back(large)
    update(canonicalize_enveloped(root, signature, method, prefixes))


def _feed(octets: bytes, large: list[tuple[etree._Element, str, bytes]], update: Callable[[bytes], object]) -> None:
    """`octets` to `update`, each marker in it replaced by the canonical form of its text, in pieces."""
    rest = octets
    for _, text, marker in large:
        before, _, rest = rest.partition(marker)
        update(before)
        for start in range(0, len(text), _TEXT_PIECE):
            update(_c14n_text(text[start:start + _TEXT_PIECE]).encode())
    update(rest)


def _put_back(large: list[tuple[etree._Element, str, bytes]]) -> None:
    """The texts `digest_enveloped` took out, back in their elements, each held once at a time: lxml copies a
    str into UTF-8 before libxml2 copies that, so ASCII text (base64, as large texts are) goes back as bytes,
    which lxml hands to libxml2 as they are (a 10 MB text: 20 MB held at this step instead of 30)."""
    while large:
        element, text, _ = large.pop()
        if text.isascii():
            data = text.encode("ascii")
            del text
            element.text = data
        else:
            element.text = text


def _c14n_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")


@contextmanager
def _signature_removed(signature: etree._Element) -> Iterator[None]:
    """The enveloped-signature transform on the tree itself: the Signature element is taken out for the
    time of the block and put back, so no copy of a large document is made."""
    parent = signature.getparent()
    if parent is None:
        raise ValueError("the signature has no parent element")
    index = parent.index(signature)
    tail = signature.tail
    previous = signature.getprevious()
    kept_text = previous.tail if previous is not None else parent.text
    # Removing an lxml element takes its tail with it; the enveloped transform removes only the element,
    # so the tail is moved to the preceding node while the signature is out.
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    signature.tail = None
    parent.remove(signature)
    try:
        yield
    finally:
        if previous is not None:
            previous.tail = kept_text
        else:
            parent.text = kept_text
        parent.insert(index, signature)
        signature.tail = tail


def child_elements(parent: etree._Element) -> list[etree._Element]:
    """The element children of `parent` (comments and processing instructions skipped)."""
    return [child for child in parent if isinstance(child.tag, str)]


def decode_base64(text: str | None) -> bytes | None:
    """Strict base64 of an element's text (white space allowed, as XMLDSig writes it); None if it is not."""
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        return None
