"""The delivery worker: sends the outbox (status notifications and results) to SHEP's AsyncChannel.

Everything it needs is in the outbox table, so it resumes after a restart or a crash by itself:
- A daemon thread claims due messages (`storage.claim_outbox`: only the oldest unsent message of each
  application, so delivery is in order per application, and a claim other workers respect until it
  runs out) and POSTs each, as rendered when the step was recorded and WS-Security-signed for this attempt
  (when `[outbound] wsse_key` is set: the signature's Timestamp must be fresh when the receiver reads it,
  and a retry may come hours later), to `[outbound] shep_async_url` through one httpx client (its
  transport is the seam for unit tests).
  Messages of different applications in one claim are sent concurrently (`[outbound] concurrency`).
- Accepted (see `adapters.shep_async.read_send_answer`): marked SENT. Anything else (refusal, fault,
  HTTP error, timeout, connection refused): retried after an exponential back-off with jitter,
  `backoff_initial_seconds * 2**(attempt-1)`, capped at `backoff_max_seconds`, multiplied by a random
  factor in [0.5, 1.0) so that many messages refused together do not return together. After
  `max_attempts` failed attempts the message is dead-lettered with its last reason; a dead message holds
  back the later messages of its application (order is never broken), and an operator sees it at
  the ops API (`GET /ops/outbox/dead`) and sends it again (`POST /ops/outbox/{id}/retry`).
- At least once: a crash between the receiver's acceptance and the SENT mark sends the message again
  after the claim runs out, with the same messageId and the same Body (receivers deduplicate by it).
- Every attempt goes into the message log: the envelope sent (verdict `DELIVERED <answer>`), or the
  receiver's answer to a failed attempt (verdict `FAILED <reason>`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

from adapters.shep_async import read_send_answer, with_sender_password
from core.clock import Clock
from gateway import messagelog
from gateway.config import OutboundConfig
from gateway.metrics import Metrics
from gateway.storage import MessageLogEntry, OutboxRecord, Storage, StorageError
from gateway.storage.signals import OUTBOX

log = logging.getLogger("licgate.outbound")

CLAIM_BATCH = 64
ANSWER_LOG_BYTES = 4096  # of a failed attempt's answer, this much goes into the message log
FAILURE_LOG_SECONDS = 60.0  # at most one log line per application about its failed attempts this often
_FAILURE_LOG_KEEP = 10_000  # applications remembered for that (the oldest are forgotten first)


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after the `attempt`-th failed attempt (1-based): exponential, capped, jittered."""
    base = min(maximum, initial * (2 ** min(attempt - 1, 62)))
    return base * rng.uniform(0.5, 1.0)


class DeliveryWorker:
    """One per gateway process; several processes may share a database."""

    def __init__(self, outbound: OutboundConfig, storage: Storage, clock: Clock, metrics: Metrics, *,
                 transport: httpx.BaseTransport | None = None, rng: random.Random | None = None,
                 holder: str | None = None, sign: Callable[[bytes], bytes] | None = None) -> None:
        self.storage = storage
        self._sign = sign
        self.clock = clock
        self.metrics = metrics
        cfg = outbound
        self._cfg = cfg
        self._client = httpx.Client(
            transport=transport, timeout=cfg.timeout_seconds,
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        )
        # A claim must outlive one attempt (the HTTP timeout) with room to mark the outcome.
        self._claim_seconds = cfg.resolved_claim_seconds
        self._holder = holder  # the instance's id, recorded with its claims
        self._unsubscribe: Callable[[], None] | None = None
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="licgate-send")
        self._failure_logged: OrderedDict[str, float] = OrderedDict()  # application id -> when, monotonic
        self._failure_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        # Woken when a commit here or on another instance makes a message due (storage signals).
        self._unsubscribe = self.storage.signals.subscribe(OUTBOX, lambda _key: self.wake())
        self._thread = threading.Thread(target=self._run, name="licgate-delivery", daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """Claim nothing more; the attempts under way finish (the process is shutting down)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the attempts under way (within `timeout`, default one attempt's timeout and 10 s), then give
        back the claims not attempted, so that another instance sends them at once."""
        self.begin_stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(timeout=self._cfg.timeout_seconds + 10 if timeout is None else timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()
        if self._holder is not None:
            try:
                self.storage.release_outbox_claims(self._holder)
            except StorageError as exc:
                log.warning("outbox claims not released; they time out", extra={"error": str(exc)[:200]})

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (a step just queued a message)."""
        self._wake.set()

    def health(self) -> str:
        alive = self._thread is not None and self._thread.is_alive()
        return "running" if alive else "stopped"

    # -- the loop -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.run_once()
            except StorageError as exc:
                log.warning("outbox unavailable", extra={"error": str(exc)[:200]})
                handled = 0
            except Exception:  # noqa: BLE001 - the worker must outlive any one bad round
                log.exception("delivery round failed")
                handled = 0
            if handled == 0:
                self._wake.wait(self._cfg.poll_seconds)
                self._wake.clear()

    def run_once(self) -> int:
        """Claim one batch of due messages and attempt each once; return how many were attempted."""
        batch = self.storage.claim_outbox(self.clock.now(), CLAIM_BATCH, self._claim_seconds, holder=self._holder)
        if not batch:
            return 0
        if len(batch) == 1 or self._cfg.concurrency == 1:
            for message in batch:
                if self._stop.is_set():
                    break  # stopping: the rest are released by `stop`
                self.deliver(message)
        else:
            # One message per application per claim, so concurrency never reorders an application's messages.
            list(self._pool.map(self._deliver_unless_stopping, batch))
        return len(batch)

    def _deliver_unless_stopping(self, message: OutboxRecord) -> bool:
        return False if self._stop.is_set() else self.deliver(message)

    def deliver(self, message: OutboxRecord) -> bool:
        """One attempt at one message; record the outcome. True when the receiver accepted it."""
        body = with_sender_password(message.body, self._cfg.password)
        body = self._sign(body) if self._sign is not None else body
        try:
            answer = self._client.post(self._cfg.shep_async_url, content=body)
            verdict = read_send_answer(answer.status_code, answer.content)
            accepted, reason, answer_body = verdict.accepted, verdict.verdict, answer.content
        except httpx.HTTPError as exc:
            accepted, reason, answer_body = False, f"{type(exc).__name__}: {str(exc)[:200]}", b""
        now = self.clock.now()
        if accepted:
            entry = self._log_entry(message, f"DELIVERED {reason}", body, now)
            self.storage.mark_outbox_sent(message.id, now, log=[entry])
            self.metrics.outbound.labels(outcome="delivered").inc()
            return True
        attempt = message.attempts + 1
        dead = attempt >= self._cfg.max_attempts
        with self._rng_lock:
            delay = backoff_delay(attempt, self._cfg.backoff_initial_seconds, self._cfg.backoff_max_seconds,
                                  self._rng)
        error = f"attempt {attempt}: {reason}"
        entry = self._log_entry(message, f"FAILED {reason}"[:500], answer_body[:ANSWER_LOG_BYTES], now)
        self.storage.mark_outbox_failed(message.id, error, now + timedelta(seconds=delay), dead, log=[entry])
        self.metrics.outbound.labels(outcome="dead" if dead else "failed").inc()
        if not dead and self._may_log_failure(message.application_id):
            log.warning("outbound attempt failed", extra={
                "outbox_id": message.id, "message_id": message.message_id, "application_id": message.application_id,
                "attempt": attempt, "reason": reason[:300], "retry_in_seconds": round(delay, 1)})
        if dead:
            log.error("outbound message dead-lettered", extra={
                "outbox_id": message.id, "message_id": message.message_id,
                "application_id": message.application_id, "reason": error})
        return False

    def _may_log_failure(self, application_id: str) -> bool:
        """True at most once per FAILURE_LOG_SECONDS per application: an outage of SHEP is seen in the log
        at once, without a line for every retry of every message."""
        now = time.monotonic()
        with self._failure_lock:
            last = self._failure_logged.get(application_id)
            if last is not None and now - last < FAILURE_LOG_SECONDS:
                return False
            self._failure_logged[application_id] = now
            self._failure_logged.move_to_end(application_id)
            while len(self._failure_logged) > _FAILURE_LOG_KEEP:
                self._failure_logged.popitem(last=False)
            return True

    def _log_entry(self, message: OutboxRecord, verdict: str, body: bytes, now: datetime) -> MessageLogEntry:
        return messagelog.entry("out", "shep/async", body, verdict, now, message_id=message.message_id,
                                sender_id=self._cfg.sender_id, application_id=message.application_id)
