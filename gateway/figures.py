"""What operators watch, read from storage at most once a second: each provider's queue (depth and the age
of its oldest application) and the outbox (undelivered messages, the oldest one's age, dead letters by kind).
`/metrics`, `/healthz` and the console read the same figures, so they never disagree."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from core.clock import Clock
from gateway.config import OutboundConfig
from gateway.storage import OutboxStats, QueueStats, Storage


@dataclass(frozen=True, slots=True)
class Reason:
    code: str  # "dead_letters" | "undelivered_old": the console says it in the operator's language
    params: dict[str, str]
    text: str  # in English, for /healthz and the log


@dataclass(frozen=True, slots=True)
class DeliveryHealth:
    state: str  # "ok" or "degraded"
    details: tuple[Reason, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.details)


class Figures:
    def __init__(self, storage: Storage, clock: Clock, outbound: OutboundConfig, *, ttl: float = 1.0) -> None:
        self._storage = storage
        self._clock = clock
        self._alert_after = outbound.alert_after_seconds
        self._ttl = ttl
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._queues: list[QueueStats] = []
        self._outbox = OutboxStats(0, None, {})

    def _fresh(self) -> tuple[list[QueueStats], OutboxStats]:
        with self._lock:
            if time.monotonic() - self._read_at > self._ttl:
                self._queues = self._storage.queue_stats()
                self._outbox = self._storage.outbox_stats()
                self._read_at = time.monotonic()
            return self._queues, self._outbox

    def queues(self) -> list[QueueStats]:
        return self._fresh()[0]

    def outbox(self) -> OutboxStats:
        return self._fresh()[1]

    def age_seconds(self, since: datetime | None) -> float:
        return max(0.0, (self._clock.now() - since).total_seconds()) if since is not None else 0.0

    def delivery_health(self) -> DeliveryHealth:
        """Degraded while dead letters wait for an operator or the oldest undelivered message is older than
        `[outbound] alert_after_seconds`: the receiver (SHEP) is failing and applicants are not told."""
        outbox = self.outbox()
        reasons = []
        if outbox.dead:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(outbox.dead_by_kind.items()))
            reasons.append(Reason("dead_letters", {"count": str(outbox.dead), "kinds": kinds},
                                  f"{outbox.dead} dead letter(s) wait for an operator ({kinds})"))
        age = self.age_seconds(outbox.oldest_pending_at)
        if outbox.pending and age > self._alert_after:
            params = {"age": f"{age:.0f}", "limit": f"{self._alert_after:.0f}"}
            reasons.append(Reason("undelivered_old", params, f"the oldest undelivered message is {params['age']} s "
                                                             f"old (alert after {params['limit']} s)"))
        return DeliveryHealth("degraded" if reasons else "ok", tuple(reasons))
