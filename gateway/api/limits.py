"""Per-sender limits of `POST /shep/sync`, so that one sender cannot starve the others: a token bucket per
senderId (`[[senders]] max_requests_per_second`, `burst`) and each sender's share of the in-flight limit
(`[server] max_in_flight_per_sender`, `[[senders]] max_in_flight`). Past either the answer is OVERLOADED
(HTTP 503 with Retry-After) before the request is examined: a flood costs the gateway the reading of its
bodies and a refusal each, not their parsing and signature checks.

Who sent a request is read cheaply from its first bytes (`senderId` and `password` in `requestInfo`, which
comes before the payload), before anything is parsed. A request is charged to a sender only when that
sender's password matches too, so nobody can use up another sender's allowance by naming it; a request
whose sender cannot be read so (an unknown or wrong sender, a name split by a comment, not XML at all) is
charged to one shared "unidentified" allowance with the same in-flight share and no rate of its own. The
examination still checks the sender the contract's way: this only decides who pays for a slot.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from dataclasses import dataclass

from gateway.config import Config

UNIDENTIFIED = ""  # the key of requests whose sender the prefix does not show
_SCAN_BYTES = 16 * 1024  # requestInfo is the first thing in SendMessage: well inside this
_SENDER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?senderId\s*>\s*([^<\s]{1,100})\s*</")
_PASSWORD = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?password\s*>([^<]{0,200})</")


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float | None:
        """Take one token: None when there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after: int  # whole seconds, for the Retry-After header


class SenderLimits:
    """Decides, on the event loop (single-threaded: no locks), whether a request may be examined now."""

    def __init__(self, config: Config) -> None:
        default_share = config.server.max_in_flight_per_sender or config.server.max_in_flight
        self._passwords = {s.id.encode(): s.password.encode() for s in config.senders}
        self._in_flight_limit = {s.id: s.max_in_flight or default_share for s in config.senders}
        self._in_flight_limit[UNIDENTIFIED] = default_share
        self._in_flight: dict[str, int] = dict.fromkeys(self._in_flight_limit, 0)
        now = time.monotonic()
        self._buckets: dict[str, _Bucket] = {}
        for s in config.senders:
            if s.max_requests_per_second is not None:
                burst = float(s.burst or max(1, math.ceil(s.max_requests_per_second)))
                self._buckets[s.id] = _Bucket(s.max_requests_per_second, burst, burst, now)

    def sender_of(self, body: bytes) -> str:
        """The configured sender whose id and password the request's first bytes carry, or UNIDENTIFIED."""
        head = body[:_SCAN_BYTES]
        sender = _SENDER.search(head)
        if sender is None:
            return UNIDENTIFIED
        expected = self._passwords.get(sender.group(1))
        password = _PASSWORD.search(head, sender.end())
        if expected is None or password is None or not hmac.compare_digest(password.group(1), expected):
            return UNIDENTIFIED
        return sender.group(1).decode()

    def try_enter(self, key: str) -> Refusal | None:
        """Take a slot for `key` (leave it with `leave`), or say why not."""
        limit = self._in_flight_limit[key]
        if self._in_flight[key] >= limit:
            who = f"sender {key}" if key else "requests of unidentified senders"
            return Refusal(f"{who}: more than {limit} in flight", 1)
        bucket = self._buckets.get(key)
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            if wait is not None:
                return Refusal(f"sender {key}: more than {bucket.rate:g} requests per second "
                               f"(burst {bucket.burst:g})", max(1, math.ceil(wait)))
        self._in_flight[key] += 1
        return None

    def leave(self, key: str) -> None:
        self._in_flight[key] -= 1
