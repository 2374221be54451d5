"""The message log's hash chain, encoding version 1 (docs/audit.md): what a record's hashes are made of, so
that the gateway, `licgate audit verify`, an evidence bundle's offline check and a third party's verifier
compute the same bytes.

Each field is a netstring: `<length in bytes, decimal>:<UTF-8 bytes>,`; an absent field is `~`.
- entry hash = SHA-256( "licgate-log-entry-v1\\n" || direction || endpoint || message_id || sender_id ||
  correlation_id || application_id || verdict || at || body_sha256 ), `at` the record's time in integer
  microseconds since 1970-01-01 UTC, `body_sha256` the lower-case hex SHA-256 of the stored body.
- chain hash of record `seq` = SHA-256( "licgate-log-chain-v1\\n" || previous chain hash || seq ||
  entry hash ), hashes as lower-case hex text, `seq` in decimal; the previous chain hash of record 1 is
  64 zeros (GENESIS).
Every hash is written as lower-case hex.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

ENCODING = "licgate-log-v1"
GENESIS = "0" * 64
_ENTRY_TAG = "licgate-log-entry-v1\n"
_CHAIN_TAG = "licgate-log-chain-v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(at: datetime) -> int:
    """An aware time in integer microseconds since the epoch (exact, as both databases keep it)."""
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _ns(value: str | None) -> str:
    """The netstring of `value` as text (encoded once with the rest: ASCII's byte length is its length)."""
    if value is None:
        return "~"
    return f"{len(value) if value.isascii() else len(value.encode('utf-8'))}:{value},"


def entry_hash(direction: str, endpoint: str, message_id: str | None, sender_id: str | None,
               correlation_id: str | None, application_id: str | None, verdict: str, at_micros: int,
               body_sha256: str) -> str:
    text = "".join((_ENTRY_TAG, _ns(direction), _ns(endpoint), _ns(message_id), _ns(sender_id), _ns(correlation_id),
                    _ns(application_id), _ns(verdict), _ns(str(at_micros)), _ns(body_sha256)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_hash(previous: str, seq: int, entry: str) -> str:
    text = f"{_CHAIN_TAG}{_ns(previous)}{_ns(str(seq))}{_ns(entry)}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()
