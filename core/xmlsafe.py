"""The one hardened XML parser factory. Every byte of XML that licgate reads goes through `parse_xml`.

No DTD is loaded or even tolerated (a DOCTYPE anywhere is MALFORMED_MESSAGE, which also stops entity
expansion attacks such as billion laughs and XXE), no network access, no entity resolution, and bounded
depth and element count. The size limit is checked by the caller before the bytes reach this module
(MESSAGE_TOO_LARGE is refused before it is parsed); `parse_xml` checks it again as a backstop.
"""

from __future__ import annotations

import codecs
import re
import threading
from pathlib import Path

from lxml import etree

from core.errors import MalformedMessage, MessageTooLarge

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_DEPTH = 64
MAX_ELEMENTS = 200_000

_local = threading.local()
_BLANK = re.compile(rb"\s*\Z")  # works on a memoryview without copying it


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe; one per thread, created once.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=True,  # large base64 text nodes are legitimate; our own limits apply instead
            remove_comments=False,  # comments must stay: signatures are checked on what arrived
            remove_pis=False,
            remove_blank_text=False,
            strip_cdata=False,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def parse_xml(
    data: bytes | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> etree._Element:
    """Parse `data` as a standalone XML document and return its root element.

    Raises MalformedMessage for anything that is not plain, well-formed XML within the limits.
    """
    if len(data) > max_bytes:
        raise MessageTooLarge(f"{len(data)} bytes, the limit is {max_bytes}")
    if _BLANK.match(data) if isinstance(data, memoryview) else not data.strip():
        raise MalformedMessage("empty document")
    _check_byte_order_mark(bytes(data[:_DECL_WINDOW]))
    try:
        tree = etree.fromstring(data, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not well-formed XML: {_first_line(str(exc))}") from None
    except ValueError as exc:  # e.g. a str with an encoding declaration
        raise MalformedMessage(f"not well-formed XML: {_first_line(str(exc))}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise MalformedMessage("a DTD (DOCTYPE) is not allowed")
    root = tree.getroot()
    _check_shape(root, max_depth, max_elements)
    return root


_DECL_WINDOW = 512
# Byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's), and the encodings each allows.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", {"utf-32", "utf-32-le"}),
    (codecs.BOM_UTF32_BE, "utf-32-be", {"utf-32", "utf-32-be"}),
    (codecs.BOM_UTF8, "utf-8", {"utf-8", "ascii"}),  # ASCII is UTF-8's subset: no contradiction
    (codecs.BOM_UTF16_LE, "utf-16-le", {"utf-16", "utf-16-le"}),
    (codecs.BOM_UTF16_BE, "utf-16-be", {"utf-16", "utf-16-be"}),
)
_DECLARED = re.compile(r"""^<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


def _check_byte_order_mark(head: bytes) -> None:
    """A byte-order mark and the declaration's encoding must agree (XML 1.0, 4.3.3: a contradiction is a
    fatal error). libxml2 believes the mark and ignores the declaration, so `encoding="nonsense"` after a
    UTF-8 mark parsed, and every reader after it that believed the declaration failed."""
    found = next((entry for entry in _BOMS if head.startswith(entry[0])), None)
    if found is None:
        return
    bom, codec, allowed = found
    text = head[len(bom):].decode(codec, errors="ignore")
    declared = _DECLARED.match(text)
    if declared is None:
        return
    name = declared.group(1).strip()
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise MalformedMessage(f"unknown encoding {name[:40]!r} declared after a byte-order mark") from None
    if canonical not in allowed:
        raise MalformedMessage(f"the byte-order mark says {codec.upper()}, the declaration says {name[:40]}")


def _check_shape(root: etree._Element, max_depth: int, max_elements: int) -> None:
    # In C (lxml's filtered iteration and compiled XPath): a walk in Python over every node cost more than
    # the parse itself (about 30 us of a 10 KB request's, twice per request).
    if next(root.iter(etree.Entity), None) is not None:
        raise MalformedMessage("entity references are not allowed")
    count_nodes, too_deep = _shape_xpaths(max_depth)
    if count_nodes(root) > max_elements:
        raise MalformedMessage(f"more than {max_elements} nodes")
    # Depth: walk from every leaf would be quadratic; instead ask for any element below the limit.
    if too_deep(root):
        raise MalformedMessage(f"deeper than {max_depth} levels")


def _shape_xpaths(max_depth: int) -> tuple[etree.XPath, etree.XPath]:
    """The compiled XPaths of `_check_shape`, one set per thread (as the parser) and depth limit."""
    cache: dict[int, tuple[etree.XPath, etree.XPath]] | None = getattr(_local, "shape", None)
    if cache is None:
        cache = _local.shape = {}
    found = cache.get(max_depth)
    if found is None:
        # Elements, comments and processing instructions: what `root.iter()` walks. Three counts added up,
        # not the count of a union: libxml2 merges a union's node sets with a duplicate check per node,
        # quadratic (80,000 comments beside 80,000 elements took 18 s).
        count_nodes = etree.XPath("count(//*) + count(//comment()) + count(//processing-instruction())")
        too_deep = etree.XPath(f"boolean(/{'/'.join(['*'] * (max_depth + 1))})")
        found = cache[max_depth] = (count_nodes, too_deep)
    return found


def _first_line(text: str) -> str:
    return text.splitlines()[0][:200] if text else "parse error"


# libxml2 compiling schemas in two threads at once can fail or, reportedly, go wrong quietly (an import left
# unresolved); compiling is rare, so it is done one at a time.
_schema_lock = threading.Lock()


def load_schema(path: str | Path) -> etree.XMLSchema:
    """One of our own XSD files (from `schemas/`), parsed without network access or entity expansion;
    the schemas it imports are found beside it."""
    with _schema_lock:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        return etree.XMLSchema(etree.parse(str(path), parser))
