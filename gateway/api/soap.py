"""SHEP SyncChannel v10 endpoint: `POST /shep/sync` and `GET /shep/sync?wsdl`.

HTTP only: the size limit (checked on Content-Length and while streaming, so an oversized body is refused
without being read into memory or the parser), the in-flight limit (OVERLOADED at once rather than a queue
of waiting requests), Content-Type and SOAPAction; then `await intake.submit(body)`. Faults are answered
with HTTP 500, the SOAP 1.1 convention, except OVERLOADED: HTTP 503 with Retry-After; receipts with 200.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from adapters.shep_sync import schema_document, wsdl_document
from core.errors import InternalError, LicgateError, MalformedMessage, MessageTooLarge, Overloaded
from gateway.api.limits import SenderLimits
from gateway.api.requestlog import log_request
from gateway.config import Config
from gateway.intake.pipeline import ENDPOINT, Answer, Intake
from gateway.metrics import Metrics

router = APIRouter(tags=["shep"])
log = logging.getLogger("licgate.soap")

XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
_XML_MEDIA = "text/xml; charset=utf-8"
_XML_MEDIA_BYTES = _XML_MEDIA.encode()
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MMAP_THRESHOLD = 1024 * 1024
_LOG_HEAD_BYTES = 4096  # of a body refused unread, this much is kept in the message log
PATHS = ("/shep/sync", "/shep/sync/")  # SOAP clients do not follow a redirect of a POST: both are served
_REFUSAL_PAUSE_SECONDS = 0.25  # before an OVERLOADED is answered


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


_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def _endpoint_url(request: Request) -> str:
    """The address clients reach this endpoint at, for the WSDL's soap:address: behind a reverse proxy,
    the host and scheme it forwards (`X-Forwarded-Host`, `X-Forwarded-Proto`; the first of a list)."""
    url = request.url.replace(query=None, fragment=None)
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    if host and _HOST.match(host):
        url = url.replace(netloc=host)
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        url = url.replace(scheme=proto)
    return str(url)


def method_not_allowed() -> tuple[dict[str, object], dict[str, object]]:
    """The ASGI messages of a 405 for `/shep/sync`: GET for the WSDL, POST for SendMessage."""
    body = b"only GET (?wsdl) and POST (SendMessage) are served here\n"
    return ({"type": "http.response.start", "status": 405, "headers": [
        (b"allow", b"GET, POST"), (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]},
        {"type": "http.response.body", "body": body})


@router.api_route("/shep/sync", methods=["GET", "HEAD"], include_in_schema=False)
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

    def __init__(self, config: Config, intake: Intake, metrics: Metrics) -> None:
        _large_buffers_back_to_the_os()
        self.intake = intake
        self.metrics = metrics
        self.max_message_bytes = config.server.max_message_bytes
        self.in_flight = _InFlight(config.server.max_in_flight)
        self.limits = SenderLimits(config)
        self._counters: dict[str, Any] = {}  # outcome code -> its counter (labels() looks it up under a lock)
        self._seconds = metrics.request_seconds.labels(endpoint=ENDPOINT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        status = 500
        logged = False
        try:
            answer = await self._answer(scope, receive)
            if answer is None:
                status = 499  # the client went away: nobody is left to answer
                return
            status = answer.http_status
            self._note(answer, started, fields)
            # Logged before the answer leaves: whoever has the answer can find its line.
            log_request(scope, status, started, fields)
            logged = True
            headers = [(b"content-type", _XML_MEDIA_BYTES), (b"content-length", str(len(answer.body)).encode())]
            if answer.retry_after is not None:
                headers.append((b"retry-after", str(answer.retry_after).encode()))
                # An OVERLOADED refusal waits a moment (holding no slot): a client
                # that ignores Retry-After then sends a few requests a second per connection, not a
                # thousand refusals that would take the event loop from everyone else (measured: a
                # victim's p99 x2.7 under two flooding connections without the pause).
                await asyncio.sleep(_REFUSAL_PAUSE_SECONDS)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
        finally:
            if not logged:
                log_request(scope, status, started, fields)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer | None:
        intake, in_flight = self.intake, self.in_flight
        if not in_flight.try_enter():
            return await intake.refuse_unread(Overloaded(f"more than {in_flight.limit} requests in flight"), b"")
        self.metrics.in_flight.inc()
        try:
            return await self._read_and_examine(scope, receive)
        except ClientDisconnect:
            return None  # nothing was parsed, so nothing was stored
        except Exception:  # noqa: BLE001 - no stack trace ever reaches a caller
            log.exception("SOAP endpoint failed")
            return await intake.refuse_unread(InternalError(), b"")
        finally:
            in_flight.leave()
            self.metrics.in_flight.dec()

    async def _read_and_examine(self, scope: Scope, receive: Receive) -> Answer:
        intake, limit = self.intake, self.max_message_bytes
        problem = _http_problem(dict(scope["headers"]), limit)
        if problem is not None:
            return await intake.refuse_unread(problem, b"")
        try:
            data = await _read_body(receive, limit)
        except _BodyTooLarge as exc:
            # Reading stopped: the rest never reaches memory, let alone the parser.
            return await intake.refuse_unread(MessageTooLarge(f"the body exceeds {limit} bytes"), exc.head)
        limits = self.limits
        sender = limits.sender_of(data)
        refusal = limits.try_enter(sender)
        if refusal is not None:
            return await intake.refuse_unread(Overloaded(refusal.reason), data[:_LOG_HEAD_BYTES],
                                              sender_id=sender or None, retry_after=refusal.retry_after)
        try:
            return await intake.submit(data)
        finally:
            limits.leave(sender)

    def _note(self, answer: Answer, started: float, fields: dict[str, Any]) -> None:
        counter = self._counters.get(answer.outcome)
        if counter is None:
            counter = self.metrics.requests.labels(endpoint=ENDPOINT, code=answer.outcome)
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
