"""Group commit's engine: one background thread that processes what was added since its last turn in
batches, so that many requests cost one durable write per batch rather than one each."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

log = logging.getLogger("licgate.batching")
I = TypeVar("I")  # noqa: E741 - an item of a batch


class BatchingThread(ABC, Generic[I]):
    """One background thread that takes everything added since its last turn and processes it in batches
    of at most `max_batch`: woken at once when `_add` asks, else every `linger` seconds (None: only when
    woken). Adding wakes nobody otherwise: a wake-up per item costs the serving process more than the item."""

    def __init__(self, name: str, *, max_batch: int, linger: float | None, max_backlog: int) -> None:
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._max_backlog = max_backlog
        self._backlog: list[I] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is waiting, then stop."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout=timeout)
            self._thread = None

    def _add(self, items: Sequence[I], *, wake: bool) -> Sequence[I]:
        """Queue `items`; the ones past `max_backlog` are not queued and are returned."""
        with self._lock:
            room = max(self._max_backlog - len(self._backlog), 0)
            self._backlog.extend(items[:room])
            wake = wake or len(self._backlog) >= self._max_batch
        if wake:
            self._wake.set()
        return items[room:]

    def _run(self) -> None:
        while True:
            self._wake.wait(self._linger)
            self._wake.clear()
            stopping = self._stopping
            with self._lock:
                backlog, self._backlog = self._backlog, []
            for start in range(0, len(backlog), self._max_batch):
                batch = backlog[start:start + self._max_batch]
                try:
                    self._process(batch)
                except Exception:  # noqa: BLE001 - the thread must outlive one bad batch
                    log.exception("%s: a batch of %d failed", self._name, len(batch))
                    try:
                        self._failed(batch)
                    except Exception:  # noqa: BLE001 - still: the next batch must be served
                        log.exception("%s: answering a failed batch failed too", self._name)
            if stopping:
                return

    def _failed(self, batch: list[I]) -> None:
        """After `_process` raised: whatever the batch's items still need (nothing, by default)."""

    @abstractmethod
    def _process(self, batch: list[I]) -> None:
        """Do what the batch's items are for."""
