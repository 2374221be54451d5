"""Slow and broken clients, at the connection: uvicorn's HTTP/1.1 protocol (h11) with three bounds it does
not have of its own, so that connections cannot be held open for nothing.

- `[server] header_timeout_seconds`: a connection that has not sent a whole request head this long after it
  opened, or after the first byte of its next request, is closed (uvicorn's keep-alive timeout covers
  the quiet time between requests, but nothing covered a head trickled a byte a second, or a connection
  that opens and sends nothing).
- `[server] body_timeout_seconds`: a request whose body has not arrived this long after its head is
  closed. The application sees the client go away (ClientDisconnect) before anything was parsed, so
  nothing of it is stored or answered.
- `[server] max_connections_per_client`: more open connections from one client address are answered 503
  with Retry-After and closed at once (0: no limit). Behind a reverse proxy every connection comes from
  the proxy's address: raise the limit there, or set 0 and bound connections at the proxy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import ServerConfig

log = logging.getLogger("licgate.http")

_TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\n\r\n"
             b"too many connections from this client\n")


class GuardedH11Protocol(H11Protocol):
    """One connection (see the module docstring). The per-address counts are shared by the connections of
    one server (one event loop): a dict handed over by `protocol_factory`, no lock needed."""

    def __init__(self, *args: Any, limits: ServerConfig, per_client: dict[str, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._per_client = per_client
        self._address: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        limit = self._limits.max_connections_per_client
        if address is not None:
            count = self._per_client.get(address, 0) + 1
            self._per_client[address] = count
            self._address = address
            if limit and count > limit:
                log.warning("too many connections from one client", extra={"client": address, "limit": limit})
                transport.write(_TOO_MANY)
                transport.close()
                return
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._address is not None:
            left = self._per_client.get(self._address, 1) - 1
            if left > 0:
                self._per_client[self._address] = left
            else:
                self._per_client.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    # -- the timers ------------------------------------------------------------------------------------

    def _follow_state(self) -> None:
        """Arm or disarm the timers after h11 moved: IDLE with bytes of a head buffered (or a fresh
        connection) is the head's time, SEND_BODY the body's."""
        if self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE and (self.conn.trailing_data[0] or self._head_timer is not None):
            if self._head_timer is None and self.timeout_keep_alive_task is None:
                self._watch_head()
            return
        self._cancel(head=True)
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self._limits.body_timeout_seconds, self._too_slow, "body")
        else:
            self._cancel(head=False)

    def _watch_head(self) -> None:
        self._head_timer = self.loop.call_later(self._limits.header_timeout_seconds, self._too_slow, "head")

    def _too_slow(self, what: str) -> None:
        self._head_timer = self._body_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if what == "head" and self.conn.their_state is not h11.IDLE:
            return
        if what == "body" and self.conn.their_state is not h11.SEND_BODY:
            return
        log.info("closing a slow connection", extra={"client": self._address, "waiting_for": what})
        self.transport.close()
        # uvicorn learns of it through connection_lost; the application's receive() then says disconnect.

    def _cancel(self, *, head: bool) -> None:
        timer = self._head_timer if head else self._body_timer
        if timer is not None:
            timer.cancel()
        if head:
            self._head_timer = None
        else:
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel(head=True)
        self._cancel(head=False)


def protocol_factory(limits: ServerConfig) -> Any:
    """What `uvicorn.Config(http=...)` takes: the guarded protocol bound to `limits` and one shared count."""
    return functools.partial(GuardedH11Protocol, limits=limits, per_client={})
