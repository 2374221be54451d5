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

# A password element and its text, as markup: <prefix:password ...>text</prefix:password>. The text runs to
# the next "<" (an "&lt;" in it is the password's own "<"), through CDATA sections, comments and processing
# instructions (the intake reads a password through all three), so long as none of them holds a "<".
_NAME = rb"((?:[A-Za-z_][\w.-]*:)?[Pp]assword)"
_PASSWORD = re.compile(
    rb"<" + _NAME + rb"(?:\s[^<>]*+)?>(?P<text>(?:[^<]++|<!\[CDATA\[(?:[^<\]]|\](?!\]>))*+\]\]>"
    rb"|<!--(?:[^<-]|-(?!->))*+-->|<\?(?:[^<?]|\?(?!>))*+\?>)*+)</\1\s*>")
# Or escaped inside a string value (an envelope quoted in another's data): &lt;prefix:password ...&gt;text
# &lt;/prefix:password&gt;, with ">" left unescaped too (legal, and what some serializers write). The text
# runs to the next "&lt;".
_ESCAPED_PASSWORD = re.compile(
    rb"&lt;" + _NAME + rb"(?:\s(?:[^<>&]|&(?![lg]t;))*+)?(?:&gt;|>)(?P<text>(?:[^&<]|&(?!lt;))*+)"
    rb"&lt;/\1\s*(?:&gt;|>)")
# Every repetition above stops at a "<" (or "&lt;"), which each candidate element begins with: no scan runs
# past the next candidate, so the cost stays linear in the body whatever it holds (a body of unclosed
# "&lt;password" repeated cost seconds per 100 KB with a pattern that scanned on to the end).
_BEARER = re.compile(rb"(\b[Bb]earer\s+)[A-Za-z0-9\-._~+/]+=*")
_COOKIE = re.compile(rb"(" + SESSION_COOKIE + rb"=)[^;\s\"'&<]+")


def _password(match: re.Match[bytes]) -> bytes:
    whole, base = match[0], match.start()
    if not match["text"]:
        return whole
    return whole[:match.start("text") - base] + MASK + whole[match.end("text") - base:]


def redact(body: bytes) -> bytes:
    """`body` with every secret it carries replaced by `***` (the same object when there is none)."""
    if body.find(b"assword") >= 0:
        body = _ESCAPED_PASSWORD.sub(_password, _PASSWORD.sub(_password, body))
    if body.find(b"earer") >= 0:
        body = _BEARER.sub(lambda m: m[1] + MASK, body)
    if body.find(SESSION_COOKIE) >= 0:
        body = _COOKIE.sub(lambda m: m[1] + MASK, body)
    return body


def has_secret(body: bytes) -> bool:
    """True when `redact` would change `body`."""
    return redact(body) != body
