"""The hardened parser's shape limits at their boundaries: depth and node count (elements, comments and
processing instructions), in several threads at once (each has its own parser and compiled XPaths)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import MalformedMessage
from core.xmlsafe import MAX_DEPTH, parse_xml


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def test_the_depth_limit_is_exact() -> None:
    assert parse_xml(nested(MAX_DEPTH)).tag == "a"
    with pytest.raises(MalformedMessage, match=f"deeper than {MAX_DEPTH} levels"):
        parse_xml(nested(MAX_DEPTH + 1))
    assert parse_xml(nested(10), max_depth=10) is not None
    with pytest.raises(MalformedMessage, match="deeper than 9 levels"):
        parse_xml(nested(10), max_depth=9)


def test_the_node_limit_counts_elements_comments_and_processing_instructions() -> None:
    doc = b"<r>" + b"<x/>" * 97 + b"<!--c--><?pi x?><y>text is not a node here</y></r>"  # 1 + 97 + 1 + 1 + 1
    assert parse_xml(doc, max_elements=101) is not None
    with pytest.raises(MalformedMessage, match="more than 100 nodes"):
        parse_xml(doc, max_elements=100)


def test_limits_hold_in_several_threads_at_once() -> None:
    documents = [nested(MAX_DEPTH), nested(MAX_DEPTH + 1), nested(5)] * 40

    def outcome(doc: bytes) -> str:
        try:
            parse_xml(doc)
            return "ok"
        except MalformedMessage:
            return "refused"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(outcome, documents))
    assert outcomes == ["ok", "refused", "ok"] * 40
