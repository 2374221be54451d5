"""Freed memory given back to the operating system after large requests.

glibc keeps what a request freed in the malloc arena of the thread that freed it: a parse of a large or
hostile document (250,000 nodes, megabytes of base64) leaves tens of megabytes free but resident in each
arena it touched, and with several threads (the examining thread pool, the store thread) the process's
resident memory climbed by hundreds of megabytes over a fuzz run and stayed there although none of it was
in use (malloc_trim brought 470 MB back to 140 MB). `release_soon()` asks for `malloc_trim(0)` once the
burst is over, at most every `_INTERVAL` seconds, from a daemon thread of its own. Elsewhere than glibc
it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

LARGE_BYTES = 128 * 1024  # a request at least this large is followed by a trim
_INTERVAL = 1.0

_pending = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _malloc_trim() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_soon() -> None:
    """Give freed memory back within about a second (once for a burst of calls)."""
    global _thread
    if _TRIM is None:
        return
    _pending.set()
    if _thread is None:
        with _lock:
            if _thread is None:
                _thread = threading.Thread(target=_run, name="licgate-malloc-trim", daemon=True)
                _thread.start()


def _run() -> None:
    while True:
        _pending.wait()
        time.sleep(_INTERVAL)  # let the request that asked finish freeing first
        _pending.clear()
        _TRIM(0)  # type: ignore[operator]
