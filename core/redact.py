"""Secrets out of what is kept: SHEP passwords, bearer tokens and session cookies become `***` before a
message-log record is stored and hashed (the record then proves what crossed, minus the secrets).

Recognised, in any namespace prefix and also XML-escaped (an envelope quoted inside another's data):
- the text of an element whose local name is `password` or `Password` (SHEP's
  `requestInfo/sender/password`, WS-Security's `wsse:Password` of a UsernameToken);
- `Bearer <token>` (an Authorization header kept with a request);
- the value of the console's session cookie (`licgate_session=...`).

The scan looks for the literal `assword`, `earer` and the cookie's name first (bytes.find, a fast scan),
so a large envelope without secrets costs one pass over its bytes and nothing else.
"""

from __future__ import annotations

import re

MASK = b"***"
SESSION_COOKIE = b"licgate_session"

# A start tag <prefix:password ...> (or its escaped form &lt;...&gt;) and its text up to the next tag.
_PASSWORD = re.compile(
    rb"(<|&lt;)((?:[A-Za-z_][\w.-]*:)?[Pp]assword)((?:\s[^<>]*?)?)(>|&gt;)([^<&]*(?:&(?!lt;)[^<&]*)*)(<|&lt;)/\2\s*(?:>|&gt;)")
_BEARER = re.compile(rb"(\b[Bb]earer\s+)[A-Za-z0-9\-._~+/]+=*")
_COOKIE = re.compile(rb"(" + SESSION_COOKIE + rb"=)[^;\s\"'&<]+")


def _password(match: re.Match[bytes]) -> bytes:
    text, base = match[0], match.start()
    return text[:match.start(5) - base] + MASK + text[match.end(5) - base:] if match[5] else text


def redact(body: bytes) -> bytes:
    """`body` with every secret it carries replaced by `***` (the same object when there is none)."""
    if body.find(b"assword") >= 0:
        body = _PASSWORD.sub(_password, body)
    if body.find(b"earer") >= 0:
        body = _BEARER.sub(lambda m: m[1] + MASK, body)
    if body.find(SESSION_COOKIE) >= 0:
        body = _COOKIE.sub(lambda m: m[1] + MASK, body)
    return body


def has_secret(body: bytes) -> bool:
    """True when `redact` would change `body`."""
    return redact(body) != body
