"""What every adapter shares: the namespaces on the wire and the small readers and writers of XML values.

One definition of each: a namespace URI, "the whole text of an element", "a date on the bus", "a schema
failure as errorData" are written here and nowhere else.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, tzinfo

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"
MED = "urn:kz:egov:medlicense:v1"  # the egov payload dialect, also the results and the status notifications
ELICENSE = "urn:kz:elicense:medlicense:v1"  # the e-license portal's dialect

_XML_DECL = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")


def text_of(element: etree._Element | None) -> str | None:
    """An element's whole character data, stripped (a comment or PI inside must not cut a value short)."""
    return None if element is None else "".join(element.itertext()).strip()


def local_name(element: etree._Element) -> str:
    """The element's name without its namespace; "" for a comment or processing instruction."""
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def schema_error(error_log: etree._ListErrorLog) -> str:
    """errorData for a schema failure: the element's path and libxml2's reason (first error only)."""
    err = error_log[0] if len(error_log) else None
    if err is None:
        return "schema validation failed"
    path = err.path or ""
    message = err.message or "invalid"
    return f"{path}: {message}"[:500] if path else message[:500]


def format_datetime(at: datetime, tz: tzinfo, *, millis: bool = False) -> str:
    """An ISO date-time in the bus's zone with its offset written out (`2026-11-27T11:02:17+05:00`)."""
    return at.astimezone(tz).isoformat(timespec="milliseconds" if millis else "seconds")


def parse_lenient_datetime(value: str, tz: tzinfo) -> datetime | None:
    """Dates on the bus come with +05:00, +06:00, no zone (taken as `tz`) or as a bare date; None when it is
    none of these."""
    value = value.strip()
    if not value:
        return None
    try:
        if "T" not in value and len(value) <= 16:
            d = date.fromisoformat(value[:10])
            return datetime.combine(d, time(0, 0), tz)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def strip_declaration(document: bytes) -> bytes:
    """The document without its XML declaration (and byte-order mark), to embed it in another."""
    return _XML_DECL.sub(b"", document, count=1).lstrip()
