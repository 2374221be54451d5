"""Wake-ups instead of polling: after a commit that queued an application or an outbound message, storage
signals its topic (with a key: the provider's BIN for the queue), and whoever waits for that topic is woken
at once: the delivery worker, and long-polled leases (`POST /provider/v1/leases` with `wait_seconds`).

`Signals` is one process's switchboard. On SQLite (one instance) the signals of this process's commits
are all there is. On PostgreSQL they also go to every other instance on the database by NOTIFY, and
come in from them by LISTEN (`gateway/storage/postgres.py`); a signal can be lost there (an instance
killed between its commit and its NOTIFY, a listener reconnecting), so waiters still look again after a
while: polling stays as the fallback, only slower.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("licgate.storage")

QUEUE = "queue"  # an application was queued; the key is its provider's BIN
OUTBOX = "outbox"  # an outbound message became due (new, retried by an operator, or its claim released)

Callback = Callable[[str | None], None]


class Signals:
    """Topic -> the callbacks subscribed to it. A callback gets the signal's key (None: "anything may have
    changed", after a lost connection or at shutdown) and runs in the signalling thread, so it must only
    set an event or hand over to a loop."""

    def __init__(self, on_first_subscriber: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Callback]] = {}
        self._closed = False
        # Called once, when the first waiter subscribes (PostgreSQL starts listening to other instances then,
        # not for every storage opened without waiters).
        self._on_first_subscriber = on_first_subscriber

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, topic: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on every signal of `topic`; returns the function that unsubscribes it."""
        with self._lock:
            self._subscribers.setdefault(topic, []).append(callback)
            first, self._on_first_subscriber = self._on_first_subscriber, None
        if first is not None:
            first()

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._subscribers.get(topic, [])
                if callback in callbacks:
                    callbacks.remove(callback)

        return unsubscribe

    def fire(self, topic: str, key: str | None = None) -> None:
        with self._lock:
            callbacks = list(self._subscribers.get(topic, ()))
        for callback in callbacks:
            try:
                callback(key)
            except Exception:  # noqa: BLE001 - one waiter's failure must not keep the others asleep
                log.exception("a wake-up callback failed", extra={"topic": topic})

    def fire_all(self) -> None:
        """Wake every waiter of every topic (signals may have been missed)."""
        with self._lock:
            topics = list(self._subscribers)
        for topic in topics:
            self.fire(topic, None)

    def close(self) -> None:
        """The process is stopping: wake every waiter, and let no one wait from now on."""
        self._closed = True
        self.fire_all()


class AsyncWaiter:
    """Waits on the event loop (no thread, no connection) for a signal of `topic` with `key` (or any key).
    Subscribed when made, so a signal fired between the caller's look and its wait is not missed."""

    def __init__(self, signals: Signals, topic: str, key: str | None = None) -> None:
        self._signals = signals
        self._key = key
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._unsubscribe = signals.subscribe(topic, self._signalled)

    def _signalled(self, key: str | None) -> None:
        if key is None or self._key is None or key == self._key:
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    async def wait(self, timeout: float) -> bool:
        """True when signalled (or the process is stopping) within `timeout` seconds; then re-armed."""
        if self._signals.closed:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()

    def close(self) -> None:
        self._unsubscribe()

    def __enter__(self) -> AsyncWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
