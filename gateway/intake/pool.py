"""Examining SOAP requests in worker processes, so that intake uses more than one core.

One gateway process serves HTTP and owns the storage (its group commits, its queue-depth gauge, its
message log); what costs CPU per request (the hardened parse, the envelope and payload schemas, C14N, RSA,
the certificate path) is `Examiner.examine`, which needs no storage and no shared state. `ExaminerPool`
runs it in `server.intake_processes` worker processes (`python -m gateway.intake.pool`): the request body
goes out on the worker's stdin, an `Examination` comes back on its stdout (the payload named by its span in
the body the serving process still holds), and the serving process concludes (replay, capacity, store) as
it would have in one process. Every worker builds its own verifier from the configuration: its own trust
store, CRL index and OCSP cache.

The pipes are served by the event loop itself (no helper threads: with a thread per hop, the serving
process spent more CPU on handing requests over than the examination it saved). Frames are a 4-byte
big-endian length and the bytes: the configuration (pickled) first, then one request per frame (when it
was received, 8 bytes of microseconds since 1970, then its body); back come one pickled `Examination`
per request, in order. Only the serving process unpickles what a worker sends, and a worker unpickles
only the configuration its parent sent.

A worker that dies (killed, out of memory, a crash in a C library) fails only the requests it held: they
are answered INTERNAL_ERROR (nothing of them was stored; senders retry) and a new worker takes its place.
A worker that cannot even start is not restarted in a loop: the requests it was sent and all later ones
are examined in the serving process, and the log says so. When the serving process dies, its workers read
the end of their stdin and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from core.clock import Clock
from core.errors import InternalError
from gateway.config import Config
from gateway.intake.examiner import Examination, Examiner
from gateway.logs import setup_logging
from gateway.regulation import regulation_of
from signing.verifier import build_verifier

log = logging.getLogger("licgate.intake")

_HEADER = struct.Struct(">I")
_STAMP = struct.Struct(">q")  # a request's received_at, in microseconds since 1970 (UTC), before its body
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_READY = b"ready"
# A worker that has not answered one request in this long is taken for hung (not dead, so no end of its
# pipe tells): it is killed and replaced, and what it held is INTERNAL_ERROR. Generous: a request may wait
# behind `max_in_flight` others of up to 2 MB.
EXAMINE_TIMEOUT_SECONDS = 60.0
WATCH_INTERVAL_SECONDS = 1.0  # how often the pool looks for a worker past the timeout


class _Worker:
    """One worker process and the futures of the requests it holds, oldest first."""

    def __init__(self, config_frame: bytes, index: int) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.intake.pool"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # Its logs go where ours go; it has no terminal of its own to be interrupted from.
            stderr=None, start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(config_frame)
        self.proc.stdin.flush()
        # The requests it holds, oldest first: each one's future and when it was sent (the loop's clock).
        self.pending: deque[tuple[asyncio.Future[Examination | None], float]] = deque()
        self.ready = False
        self.hung = False  # killed for holding a request past the timeout
        self.broken = False  # it sent something unreadable: nothing more it sends is believed
        self.writer: asyncio.WriteTransport | None = None
        self.reader: asyncio.ReadTransport | None = None
        self._on_exit: Callable[[_Worker], None] | None = None

    async def connect(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[_Worker], None]) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._on_exit = on_exit
        self.writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, self.proc.stdin)
        self.reader, _ = await loop.connect_read_pipe(lambda: _Frames(self), self.proc.stdout)

    @property
    def usable(self) -> bool:
        return self.writer is not None and not self.writer.is_closing() and not self.broken and not self.hung

    def on_frame(self, frame: bytes) -> None:
        if self.broken:
            return
        if not self.ready:
            self.ready = frame == _READY
            if self.ready:
                return
        try:
            examination = pickle.loads(frame)  # noqa: S301 - our own child process, see the docstring
            if not isinstance(examination, Examination) or not self.pending:
                raise TypeError(f"not an answer to a request: {type(examination).__name__}")
        except Exception:  # noqa: BLE001 - whatever it sent, its answers can no longer be matched to requests
            log.exception("intake worker process %s sent an unreadable answer; it is stopped", self.proc.pid)
            self.broken = True  # what it held is INTERNAL_ERROR once its pipe ends
            self.proc.kill()
            return
        future, _ = self.pending.popleft()
        if not future.done():
            future.set_result(examination)

    def on_exit(self) -> None:
        if self._on_exit is not None:
            on_exit, self._on_exit = self._on_exit, None
            on_exit(self)

    def send(self, body: bytes, received_at: datetime) -> asyncio.Future[Examination | None]:
        assert self.writer is not None
        # The frame first: answers are matched to requests by order, so nothing may be queued that was not
        # sent. One write, one system call: a copy of the body is cheaper than a second call.
        stamp = (received_at - _EPOCH) // timedelta(microseconds=1)
        frame = _HEADER.pack(_STAMP.size + len(body)) + _STAMP.pack(stamp) + body
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Examination | None] = loop.create_future()
        self.pending.append((future, loop.time()))
        self.writer.write(frame)
        return future

    def fail_pending(self) -> None:
        """Answer the requests this worker held: a worker that never started examined none of them, so the
        serving process does (None); one that died at work may have died of one of them, so none is tried
        again (INTERNAL_ERROR; nothing of them was stored, their senders retry)."""
        what = "did not answer in time" if self.hung else "died"
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_result(Examination(error=InternalError(f"the process examining the request {what}"))
                                  if self.ready else None)

    def close_input(self) -> None:
        """Tell the worker to finish (the end of its stdin) without waiting for it."""
        self._on_exit = None
        if self.reader is not None:
            self.reader.close()
        if self.writer is not None:
            # Unregistered from the loop now; a transport closes its pipe only on a later turn of the loop,
            # which does not come while the caller waits for the worker, so the pipe is closed here.
            self.writer.abort()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None and self.reader is None:
            self.proc.stdout.close()
        self.fail_pending()


class _Frames(asyncio.Protocol):
    """Cuts a worker's stdout into frames as the bytes arrive (no reader task, no wake-up per frame)."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            self._worker.on_frame(bytes(buffer[start + _HEADER.size:end]))
            start = end
        del buffer[:start]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.on_exit()


class ExaminerPool:
    """`processes` worker processes running `Examiner.examine` (see the module docstring)."""

    def __init__(self, config: Config, processes: int) -> None:
        if processes < 1:
            raise ValueError("an ExaminerPool needs at least one process")
        self.processes = processes
        self._config_frame = _frame(pickle.dumps(config))
        self._workers: list[_Worker] = []
        self._connecting: asyncio.Lock | None = None
        self._connected = False
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self.disabled = False  # set when workers cannot start: examine in the serving process instead
        self.examine_timeout = EXAMINE_TIMEOUT_SECONDS

    def start(self) -> None:
        """Start the workers now (each imports the gateway and loads the trust store), not on the first
        request. Their pipes are attached to the event loop on first use."""
        self._workers = [_Worker(self._config_frame, i) for i in range(self.processes)]

    def worker_pids(self) -> list[int]:
        """The live workers' process ids (for operators and tests)."""
        return [w.proc.pid for w in self._workers if w.proc.poll() is None]

    async def examine(self, body: bytes, received_at: datetime) -> Examination | None:
        """Examine `body` (read at `received_at`) in a worker; None when the pool cannot (the caller examines
        it itself)."""
        if self.disabled or self._stopped:
            return None
        if not self._connected:
            await self._connect()
        connected = [w for w in self._workers if w.usable]
        if not connected:  # a replacement is still being attached
            return None
        worker = min(connected, key=lambda w: len(w.pending))
        # No timer per request (asyncio.wait_for costs the event loop more than the pipe): the watchdog
        # finds a worker that holds a request past the timeout. Should the caller be cancelled, its future
        # is, and the answer, when it comes, is dropped (the worker's answers stay in order).
        return await worker.send(body, received_at)

    def _watch(self) -> None:
        """Kill a worker that has held a request for longer than `examine_timeout` (alive but silent: no end
        of its pipe would tell). What it held is answered INTERNAL_ERROR at once, it gets no more requests,
        nothing it still sends is believed, and its pipe's end, when it comes, starts its replacement."""
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        try:
            for worker in self._workers:
                if worker.pending and not worker.hung and loop.time() - worker.pending[0][1] > self.examine_timeout:
                    log.error("intake worker process %s gave no answer in %.0f s; it is killed and replaced",
                              worker.proc.pid, self.examine_timeout)
                    worker.hung = worker.broken = True
                    worker.proc.kill()
                    worker.fail_pending()
        finally:
            self._watchdog = loop.call_later(WATCH_INTERVAL_SECONDS, self._watch)

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connected:
                return
            loop = asyncio.get_running_loop()
            for worker in self._workers:
                await worker.connect(loop, self._worker_exited)
            self._connected = True
            self._watchdog = loop.call_later(WATCH_INTERVAL_SECONDS, self._watch)

    def _worker_exited(self, worker: _Worker) -> None:
        worker.fail_pending()
        if self._stopped or worker not in self._workers:
            return
        try:
            code: int | None = worker.proc.wait(timeout=1.0)  # reaped, not left a zombie
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            code = None
        if not worker.ready:
            # It died before it could examine anything: a broken installation or configuration, which a
            # restart would only repeat. Intake goes on in the serving process.
            log.error("an intake worker process could not start (exit code %s); requests are examined in the "
                      "serving process from now on", code)
            self.disabled = True
            return
        log.error("intake worker process %s died (exit code %s); its requests were answered INTERNAL_ERROR, "
                  "a new one takes its place", worker.proc.pid, code)
        self._workers.remove(worker)
        try:
            replacement = _Worker(self._config_frame, worker.index)
        except OSError as exc:
            log.error("no replacement intake worker could be started: %s", exc)
            self.disabled = not self._workers
            return
        self._workers.append(replacement)
        task = asyncio.get_running_loop().create_task(
            replacement.connect(asyncio.get_running_loop(), self._worker_exited))
        self._tasks.add(task)
        task.add_done_callback(self._connected_or_not)

    def _connected_or_not(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._stopped:
            log.error("a replacement intake worker could not be attached: %s", task.exception())

    def stop(self, timeout: float = 5.0) -> None:
        """Close every worker's input first, then wait for them together (at most `timeout` in all)."""
        self._stopped = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in self._tasks:
            task.cancel()
        for worker in self._workers:
            worker.close_input()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.wait(deadline)
        self._workers = []


def _frame(data: bytes) -> bytes:
    return _HEADER.pack(len(data)) + data


# -- the worker process ------------------------------------------------------------------------------------


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # the serving process closed our stdin (it stopped or died): we are done
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    return data if len(data) == size else None


def worker_main() -> int:
    """Read frames from stdin, answer on stdout, until stdin ends."""
    import signal

    # The serving process decides when we stop (by closing our stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox = sys.stdin.buffer
    outbox = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Nothing printed by accident may corrupt the frames.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    config_frame = _read_frame(inbox)
    if config_frame is None:
        return 1
    config: Config = pickle.loads(config_frame)  # noqa: S301 - sent by our parent
    setup_logging(config.server.log_level)
    clock = Clock()
    # Revocation outcomes go back with each examination, to be counted in the serving process's /metrics.
    observed: list[tuple[str, str]] = []
    verifier = build_verifier(config.trust, clock, max_bytes=config.server.max_message_bytes,
                              observe=lambda source, outcome: observed.append((source, outcome)))
    examiner = Examiner(config, verifier, regulation_of(config), clock)
    gc.freeze()  # as in the serving process (gateway.cli)
    outbox.write(_frame(_READY))
    outbox.flush()
    while (frame := _read_frame(inbox)) is not None:
        (stamp,) = _STAMP.unpack_from(frame)
        examination = examiner.examine(frame[_STAMP.size:], _EPOCH + timedelta(microseconds=stamp)).detach()
        if observed:
            examination.observations = tuple(observed)
            observed.clear()
        outbox.write(_frame(pickle.dumps(examination, protocol=pickle.HIGHEST_PROTOCOL)))
        outbox.flush()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
