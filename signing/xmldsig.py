"""XMLDSig building blocks shared by the signer, the verifier and WS-Security: names and canonicalization.

Canonicalization is lxml's (libxml2's) C14N 1.0 and exclusive C14N 1.0, applied to the parsed tree of
the bytes that arrived. The enveloped-signature transform is done by detaching the Signature element for
the time of one canonicalization (its trailing text stays in the document, as the transform requires)
and putting it back, so no copy of a large document is made.
"""

from __future__ import annotations

import base64
import binascii
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
        return canonicalize(root.getroottree(), method, with_comments=False, prefixes=prefixes)
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
