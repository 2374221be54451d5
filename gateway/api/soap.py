"""SHEP SyncChannel v10 endpoint (CONTRACT.md section 4): `POST /shep/sync` and `GET /shep/sync?wsdl`.

The HTTP side of intake: the size limit (checked on Content-Length and while streaming, so an oversized
body is refused without being read into memory or the parser), the in-flight limit (OVERLOADED at once
rather than a queue of waiting requests), Content-Type and SOAPAction; then the request is examined in an
intake worker process (`gateway.intake_pool`, for bodies up to POOL_MAX_BYTES when there are workers) or
in a worker thread here, then concluded (replay, capacity, storage) with others in a batch by the intake
store thread (`gateway.intake.Concluder`). Faults are answered with HTTP 500, the SOAP 1.1 convention;
receipts with 200.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from adapters.shep_sync import schema_document, wsdl_document
from gateway.app import Gateway, log_request
from gateway.errors import InternalError, LicgateError, MalformedMessage, MessageTooLarge, Overloaded
from gateway.intake import ENDPOINT, Answer, Intake

router = APIRouter(tags=["shep"])
log = logging.getLogger("licgate.soap")

XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
_XML_MEDIA = "text/xml; charset=utf-8"
_XML_MEDIA_BYTES = _XML_MEDIA.encode()
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MMAP_THRESHOLD = 1024 * 1024
_LOG_HEAD_BYTES = 4096  # of a body refused unread, this much is kept in the message log
# Bodies up to this size are examined in the intake worker processes (when there are any); a larger one
# here, where it is not copied through a pipe twice (a 10 MB message would cost 20 MB more at the peak).
POOL_MAX_BYTES = 2 * 1024 * 1024


class _InFlight:
    """A non-blocking counter: past `limit` concurrent SOAP requests the answer is OVERLOADED, fast."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_enter(self) -> bool:
        # The event loop is single-threaded: no lock needed between the check and the increment.
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


def _large_buffers_back_to_the_os() -> None:
    """glibc raises its mmap threshold after a large buffer is freed, so the next 10 MB message is carved
    out of the heap and its memory stays with the process (fragmented) after it is answered: measured,
    +24 MB peak for one 10 MB message. A fixed threshold keeps every large buffer in its own mapping,
    returned to the OS when freed. 1 MB, not less: every socket and pipe read allocates a 256 KB buffer
    (asyncio's read size), and at a 256 KB threshold each was an mmap and munmap of its own (strace: 1.7 of
    each per request). Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def setup(gw: Gateway) -> Callable[[], Callable[[], None]]:
    _large_buffers_back_to_the_os()
    intake = Intake(gw)
    gw.components["intake"] = intake
    gw.components["soap_send_message"] = SendMessageEndpoint(gw, intake)
    return intake.start


def _endpoint_url(request: Request) -> str:
    return str(request.url.replace(query=None, fragment=None))


@router.get("/shep/sync", include_in_schema=False)
async def wsdl(request: Request) -> Response:
    """`?wsdl` serves the WSDL, `?xsd=NAME` one of the schemas it imports."""
    url = _endpoint_url(request)
    if "wsdl" in request.query_params:
        return Response(wsdl_document(url), media_type=_XML_MEDIA)
    name = request.query_params.get("xsd")
    if name:
        document = schema_document(name, url)
        if document is not None:
            return Response(document, media_type=_XML_MEDIA)
        return Response(f"no schema named {name}\n", status_code=404, media_type="text/plain")
    return Response("SHEP SyncChannel v10: POST a SendMessage here; GET ?wsdl for the WSDL\n",
                    media_type="text/plain")


class SendMessageEndpoint:
    """`POST /shep/sync` as a plain ASGI handler (`LicgateApp` routes it here): the hot path skips FastAPI's
    routing, dependency solving and middleware layers, which took a third of the serving process's
    interpreter time per request (py-spy). It does for itself what they did: the request log line, and no
    stack trace ever reaching a caller."""

    def __init__(self, gw: Gateway, intake: Intake) -> None:
        self.gw = gw
        self.intake = intake
        self.in_flight = _InFlight(gw.config.server.max_in_flight)
        self._counters: dict[str, Any] = {}  # outcome code -> its counter (labels() looks it up under a lock)
        self._seconds = gw.metrics.request_seconds.labels(endpoint=ENDPOINT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        status = 500
        try:
            answer = await self._answer(scope, receive)
            if answer is None:
                status = 499  # the client went away: nobody is left to answer
                return
            status = answer.http_status
            self._note(answer, started, fields)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", _XML_MEDIA_BYTES), (b"content-length", str(len(answer.body)).encode())]})
            await send({"type": "http.response.body", "body": answer.body})
        finally:
            log_request(scope, status, started, fields)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer | None:
        intake, in_flight = self.intake, self.in_flight
        if not in_flight.try_enter():
            return intake.refuse_unread(Overloaded(f"more than {in_flight.limit} requests in flight"), b"")
        self.gw.metrics.in_flight.inc()
        try:
            return await self._read_and_examine(scope, receive)
        except ClientDisconnect:
            return None  # nothing was parsed, so nothing was stored
        except Exception:  # noqa: BLE001 - no stack trace ever reaches a caller
            log.exception("SOAP endpoint failed")
            return intake.refuse_unread(InternalError(), b"")
        finally:
            in_flight.leave()
            self.gw.metrics.in_flight.dec()

    async def _read_and_examine(self, scope: Scope, receive: Receive) -> Answer:
        gw, intake = self.gw, self.intake
        limit = gw.config.server.max_message_bytes
        problem = _http_problem(dict(scope["headers"]), limit)
        if problem is not None:
            return intake.refuse_unread(problem, b"")
        try:
            data = await _read_body(receive, limit)
        except _BodyTooLarge as exc:
            # Reading stopped: the rest never reaches memory, let alone the parser.
            return intake.refuse_unread(MessageTooLarge(f"the body exceeds {limit} bytes"), exc.head)
        if len(data) > POOL_MAX_BYTES:
            # Examined and stored by one thread: a large message's memory is then taken from and given back
            # to one malloc arena, not two, and it would be a batch of its own anyway.
            return await anyio.to_thread.run_sync(intake.handle, data)
        received_at = gw.clock.now()
        pool = intake.pool
        examination = await pool.examine(data, received_at) if pool is not None else None
        if examination is None:
            examination = await anyio.to_thread.run_sync(intake.examiner.examine, data, received_at)
        return await intake.concluder.conclude(examination, data, received_at)

    def _note(self, answer: Answer, started: float, fields: dict[str, Any]) -> None:
        counter = self._counters.get(answer.outcome)
        if counter is None:
            counter = self.gw.metrics.requests.labels(endpoint=ENDPOINT, code=answer.outcome)
            self._counters[answer.outcome] = counter
        counter.inc()
        self._seconds.observe(time.perf_counter() - started)
        fields.update(messageId=answer.message_id, senderId=answer.sender_id, outcome=answer.outcome)
        if answer.registration_number:
            fields["registrationNumber"] = answer.registration_number


class _BodyTooLarge(Exception):
    def __init__(self, head: bytes) -> None:
        super().__init__()
        self.head = head  # what was read of the body: kept in the message log as evidence


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body. Raises _BodyTooLarge as soon as more than `limit` bytes came (the rest is never
    read), ClientDisconnect when the client goes away first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge(chunks[0][:_LOG_HEAD_BYTES])
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _http_problem(headers: dict[bytes, bytes], limit: int) -> LicgateError | None:
    """What the HTTP headers alone refuse. ASGI gives header names in lower case; of a repeated header the
    last counts."""
    length = headers.get(b"content-length", b"").decode("latin-1").strip()
    if length.isdigit() and int(length) > limit:
        return MessageTooLarge(f"Content-Length {int(length)} exceeds {limit} bytes")
    media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if media not in XML_TYPES:
        return MalformedMessage(f"Content-Type {media or '(none)'} is not one of {', '.join(XML_TYPES)}")
    raw_action = headers.get(b"soapaction")
    if raw_action is not None:
        action = raw_action.decode("latin-1").strip().strip('"').strip()
        if action and not action.endswith("SendMessage"):
            return MalformedMessage(f"SOAPAction {action!r}: unknown operation, only SendMessage is offered")
    return None
