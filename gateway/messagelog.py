"""The message log's one writer: every exchange that crosses the gateway's boundary is kept, so that a
dispute ("was my application received, and when?") can be settled later.

`entry(...)` is the one constructor of a `MessageLogEntry`: the body is hashed here and only here.
Entries that belong to a change (an accepted application, a recorded step, a delivery attempt) are written
in that change's own storage transaction; the rest (refusals, answers, status requests) go through
`MessageLogWriter`, which writes them in batches from one background thread.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime

from gateway.batching import BatchingThread
from gateway.storage import MessageLogEntry, Storage

log = logging.getLogger("licgate.messagelog")


def entry(direction: str, endpoint: str, body: bytes | memoryview, verdict: str, at: datetime, *,
          message_id: str | None = None, sender_id: str | None = None, correlation_id: str | None = None,
          application_id: str | None = None) -> MessageLogEntry:
    """One record of an exchange: `direction` "in" or "out", the `endpoint` it crossed ("shep/sync",
    "provider/steps", "shep/async", ...), the bytes as they crossed, and the gateway's verdict on them."""
    data = bytes(body)
    return MessageLogEntry(
        direction=direction, endpoint=endpoint, message_id=message_id, sender_id=sender_id, verdict=verdict,
        body=data, sha256=hashlib.sha256(data).hexdigest(), at=at, correlation_id=correlation_id,
        application_id=application_id,
    )


class MessageLogWriter(BatchingThread[MessageLogEntry]):
    """Writes the entries that are not part of another transaction in batches from one background thread,
    so that a flood of bad requests costs one durable write per batch rather than per request."""

    def __init__(self, storage: Storage, max_batch: int = 500, linger_seconds: float = 0.2,
                 max_backlog: int = 20_000) -> None:
        # Entries wait up to `linger_seconds` for company: every write is a durable commit that competes
        # with the intake transactions for the database.
        super().__init__("licgate-message-log", max_batch=max_batch, linger=linger_seconds, max_backlog=max_backlog)
        self._storage = storage

    def add(self, *entries: MessageLogEntry) -> None:
        for dropped in self._add(entries, wake=False):
            # Under a flood the log sheds its own load rather than stall answers; said loudly.
            log.warning("message log backlog full, entry dropped",
                        extra={"messageId": dropped.message_id, "verdict": dropped.verdict})

    def _process(self, batch: list[MessageLogEntry]) -> None:
        for attempt in range(3):
            try:
                self._storage.log_messages(batch)
                return
            except Exception:  # noqa: BLE001 - the log writer must outlive a database hiccup
                log.exception("message log write failed", extra={"attempt": attempt + 1, "entries": len(batch)})
                time.sleep(0.2 * (attempt + 1))
