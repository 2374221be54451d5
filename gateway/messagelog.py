"""The message log's one writer: every exchange that crosses the gateway's boundary is kept, so that a
dispute ("was my application received, and when?") can be settled later.

`entry(...)` is the one constructor of a `MessageLogEntry`: the body's secrets (SHEP passwords, bearer
tokens, session cookies) are masked and the result hashed here and only here (`core.redact`).
Entries that belong to a change (an accepted application, a recorded step, a delivery attempt) are written
in that change's own storage transaction; the rest (refusals, answers, status requests) go through
`MessageLogWriter`, which writes them in batches from one background thread: `write` waits for the
batch's commit (a refusal is stored before it is answered), `add` does not (the answer to an application
whose inbound record is stored with it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import Future
from datetime import datetime

from core.redact import redact
from gateway.batching import BatchingThread
from gateway.storage import MessageLogEntry, Storage

log = logging.getLogger("licgate.messagelog")


def entry(direction: str, endpoint: str, body: bytes | memoryview, verdict: str, at: datetime, *,
          message_id: str | None = None, sender_id: str | None = None, correlation_id: str | None = None,
          application_id: str | None = None) -> MessageLogEntry:
    """One record of an exchange: `direction` "in" or "out", the `endpoint` it crossed ("shep/sync",
    "provider/steps", "shep/async", ...), the bytes as they crossed, and the gateway's verdict on them."""
    data = redact(bytes(body))
    return MessageLogEntry(
        direction=direction, endpoint=endpoint, message_id=message_id, sender_id=sender_id, verdict=verdict,
        body=data, sha256=hashlib.sha256(data).hexdigest(), at=at, correlation_id=correlation_id,
        application_id=application_id,
    )


_Item = tuple[MessageLogEntry, "Future[bool] | None"]


class MessageLogWriter(BatchingThread[_Item]):
    """Writes the entries that are not part of another transaction in batches from one background thread,
    so that a flood of bad requests costs one durable write per batch rather than per request (and on SQLite
    the batch rides along with the next intake commit: `Storage.log_messages` is grouped)."""

    def __init__(self, storage: Storage, max_batch: int = 500, linger_seconds: float = 0.2,
                 max_backlog: int = 20_000) -> None:
        # What nobody waits for (`add`) waits up to `linger_seconds` for company: every write is a durable
        # commit that competes with the intake transactions for the database. `submit` wakes the thread at
        # once, and its batch takes along whatever was added meanwhile (group commit).
        super().__init__("licgate-message-log", max_batch=max_batch, linger=linger_seconds, max_backlog=max_backlog)
        self._storage = storage

    def add(self, *entries: MessageLogEntry) -> None:
        """Queue `entries`; nobody waits for them."""
        for dropped, _ in self._add([(e, None) for e in entries], wake=False):
            # Under a flood the log sheds its own load rather than stall answers; said loudly.
            log.warning("message log backlog full, entry dropped",
                        extra={"messageId": dropped.message_id, "verdict": dropped.verdict})

    def submit(self, *entries: MessageLogEntry) -> Future[bool]:
        """Queue `entries`; the future is True once they are committed (False when they could not be)."""
        done: Future[bool] = Future()
        if not entries:
            done.set_result(True)
            return done
        items: list[_Item] = [(e, None) for e in entries[:-1]] + [(entries[-1], done)]
        if not self.running:
            done.set_result(self._write([e for e, _ in items]))
            return done
        dropped = self._add(items, wake=True)
        for entry, _ in dropped:
            log.warning("message log backlog full, entry dropped",
                        extra={"messageId": entry.message_id, "verdict": entry.verdict})
        if dropped:
            done.set_result(False)
        return done

    def write(self, *entries: MessageLogEntry, timeout: float = 30.0) -> bool:
        """Queue `entries` and wait until they are committed; False when they could not be (logged)."""
        try:
            return self.submit(*entries).result(timeout)
        except TimeoutError:
            log.error("message log write timed out", extra={"entries": len(entries)})
            return False

    async def write_async(self, *entries: MessageLogEntry, timeout: float = 30.0) -> bool:
        """`write` for the event loop."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(*entries)), timeout)
        except TimeoutError:
            log.error("message log write timed out", extra={"entries": len(entries)})
            return False

    def _write(self, entries: list[MessageLogEntry]) -> bool:
        for attempt in range(3):
            try:
                self._storage.log_messages(entries)
                return True
            except Exception:  # noqa: BLE001 - the log writer must outlive a database hiccup
                log.exception("message log write failed", extra={"attempt": attempt + 1, "entries": len(entries)})
                time.sleep(0.2 * (attempt + 1))
        return False

    def _process(self, batch: list[_Item]) -> None:
        ok = self._write([entry for entry, _ in batch])
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(ok)

    def _failed(self, batch: list[_Item]) -> None:
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(False)
