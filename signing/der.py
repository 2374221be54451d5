"""A strict reader of DER (X.690) for the few structures the gateway reads itself: RFC 3161 tokens.

Only definite, minimal lengths and single-byte tags are accepted (DER); every element must lie inside its
parent and every parent be consumed exactly. Values are slices of the input, never copies, so the bytes
a signature covers (signed attributes, the TSTInfo) are taken as they came. Why not a general ASN.1
library: asn1crypto takes about 0.7 ms in pure Python to parse one timestamp token into its objects
(docs/performance.md), several times what verifying the token's signature costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

INTEGER, OCTET_STRING, NULL, OID, SEQUENCE, SET, GENERALIZED_TIME = 0x02, 0x04, 0x05, 0x06, 0x30, 0x31, 0x18
BOOLEAN = 0x01


class DerError(ValueError):
    """Not DER, or not the structure expected."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per element
class Element:
    data: bytes
    tag: int
    start: int  # where the element's header starts
    content: int  # where its contents start
    end: int  # where it ends

    @property
    def raw(self) -> bytes:
        """The whole element, header included, as it came."""
        return self.data[self.start:self.end]

    @property
    def value(self) -> bytes:
        return self.data[self.content:self.end]

    def children(self) -> list[Element]:
        """The elements inside a constructed element, which they must fill exactly."""
        if not self.tag & 0x20:
            raise DerError(f"element of tag {self.tag:#04x} is not constructed")
        return _elements(self.data, self.content, self.end)

    def expect(self, tag: int, what: str) -> Element:
        if self.tag != tag:
            raise DerError(f"{what}: expected tag {tag:#04x}, found {self.tag:#04x}")
        return self

    def integer(self) -> int:
        self.expect(INTEGER, "INTEGER")
        value = self.value
        if not value or (len(value) > 1 and (value[0] == 0 and value[1] < 0x80 or value[0] == 0xFF and
                                             value[1] >= 0x80)):
            raise DerError("an INTEGER that is not minimally encoded")
        return int.from_bytes(value, "big", signed=True)

    def oid(self) -> str:
        self.expect(OID, "OBJECT IDENTIFIER")
        return _oid(self.value)

    def octets(self) -> bytes:
        return self.expect(OCTET_STRING, "OCTET STRING").value

    def generalized_time(self) -> datetime:
        """A DER GeneralizedTime: YYYYMMDDHHMMSS, optional fraction without trailing zeros, then Z."""
        text = self.expect(GENERALIZED_TIME, "GeneralizedTime").value.decode("ascii", "replace")
        if len(text) < 15 or not text.endswith("Z") or not text[:14].isdigit():
            raise DerError(f"GeneralizedTime {text[:40]!r} is not DER (YYYYMMDDHHMMSS[.f]Z)")
        micro = 0
        if len(text) > 15:
            fraction = text[14:-1]
            if fraction[0] != "." or not fraction[1:].isdigit() or fraction.endswith("0") or len(fraction) > 7:
                raise DerError(f"GeneralizedTime fraction {fraction!r} is not DER")
            micro = int(fraction[1:].ljust(6, "0"))
        try:
            return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                            int(text[12:14]), micro, tzinfo=UTC)
        except ValueError:
            raise DerError(f"GeneralizedTime {text!r} is not a date") from None


@lru_cache(maxsize=256)  # a token names the same dozen OIDs every time
def _oid(value: bytes) -> str:
    if not value or value[-1] & 0x80:
        raise DerError("a broken OBJECT IDENTIFIER")
    arcs, current, starting = [], 0, True
    for byte in value:
        if starting and byte == 0x80:
            raise DerError("an OBJECT IDENTIFIER arc that is not minimally encoded")
        current = (current << 7) | (byte & 0x7F)
        starting = not byte & 0x80
        if starting:
            arcs.append(current)
            current = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def parse(data: bytes) -> Element:
    """The one element `data` holds, which it must fill exactly."""
    elements = _elements(data, 0, len(data))
    if len(elements) != 1:
        raise DerError(f"{len(elements)} top-level elements, one expected")
    return elements[0]


def _elements(data: bytes, start: int, end: int) -> list[Element]:
    found = []
    pos = start
    while pos < end:
        element = _read(data, pos, end)
        found.append(element)
        pos = element.end
    return found


def _read(data: bytes, pos: int, limit: int) -> Element:
    if pos + 2 > limit:
        raise DerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used here")
    first = data[pos + 1]
    cursor = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80 or first > 0x84:
        raise DerError("an indefinite or oversized length (not DER)")
    else:
        count = first & 0x7F
        if cursor + count > limit:
            raise DerError("truncated length")
        length = int.from_bytes(data[cursor:cursor + count], "big")
        if data[cursor] == 0 or length < 0x80:
            raise DerError("a length that is not minimally encoded (not DER)")
        cursor += count
    end = cursor + length
    if end > limit:
        raise DerError("an element longer than its container")
    return Element(data, tag, pos, cursor, end)
