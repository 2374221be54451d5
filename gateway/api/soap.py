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

import anyio
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from adapters.shep_sync import schema_document, wsdl_document
from gateway.app import Gateway, gateway_of
from gateway.errors import InternalError, LicgateError, MalformedMessage, MessageTooLarge, Overloaded
from gateway.intake import ENDPOINT, Answer, Intake

router = APIRouter(tags=["shep"])
log = logging.getLogger("licgate.soap")

XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
_XML_MEDIA = "text/xml; charset=utf-8"
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
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
    returned to the OS when freed. Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
    except (OSError, AttributeError):
        pass


def setup(gw: Gateway) -> Callable[[], Callable[[], None]]:
    _large_buffers_back_to_the_os()
    intake = Intake(gw)
    gw.components["intake"] = intake
    gw.components["soap_in_flight"] = _InFlight(gw.config.server.max_in_flight)
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


@router.post("/shep/sync", include_in_schema=False)
async def send_message(request: Request) -> Response:
    gw = gateway_of(request)
    intake: Intake = gw.components["intake"]
    in_flight: _InFlight = gw.components["soap_in_flight"]
    started = time.perf_counter()
    if not in_flight.try_enter():
        answer = intake.refuse_unread(Overloaded(f"more than {in_flight.limit} requests in flight"), b"")
        return _respond(request, gw, answer, started)
    gw.metrics.in_flight.inc()
    try:
        answer = await _answer(request, gw, intake)
    except ClientDisconnect:
        # Nobody is left to answer; nothing was parsed, so nothing was stored.
        return Response(status_code=499)
    except Exception:  # noqa: BLE001 - no stack trace ever reaches a caller
        log.exception("SOAP endpoint failed")
        answer = intake.refuse_unread(InternalError(), b"")
    finally:
        in_flight.leave()
        gw.metrics.in_flight.dec()
    return _respond(request, gw, answer, started)


async def _answer(request: Request, gw: Gateway, intake: Intake) -> Answer:
    limit = gw.config.server.max_message_bytes
    problem = _http_problem(request, limit)
    if problem is not None:
        return intake.refuse_unread(problem, b"")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            # Stop reading: the rest never reaches memory, let alone the parser.
            too_large = MessageTooLarge(f"the body exceeds {limit} bytes")
            return intake.refuse_unread(too_large, chunks[0][:_LOG_HEAD_BYTES])
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    del chunks
    if len(data) > POOL_MAX_BYTES:
        # Examined and stored by one thread: a large message's memory is then taken from and given back to
        # one malloc arena, not two, and it would be a batch of its own anyway.
        return await anyio.to_thread.run_sync(intake.handle, data)
    received_at = gw.clock.now()
    pool = intake.pool
    examination = await pool.examine(data) if pool is not None else None
    if examination is None:
        examination = await anyio.to_thread.run_sync(intake.examiner.examine, data)
    return await intake.concluder.conclude(examination, data, received_at)


def _http_problem(request: Request, limit: int) -> LicgateError | None:
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        return MessageTooLarge(f"Content-Length {int(length)} exceeds {limit} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in XML_TYPES:
        return MalformedMessage(f"Content-Type {media or '(none)'} is not one of {', '.join(XML_TYPES)}")
    action = request.headers.get("soapaction")
    if action is not None:
        action = action.strip().strip('"').strip()
        if action and not action.endswith("SendMessage"):
            return MalformedMessage(f"SOAPAction {action!r}: unknown operation, only SendMessage is offered")
    return None


def _respond(request: Request, gw: Gateway, answer: Answer, started: float) -> Response:
    gw.metrics.requests.labels(endpoint=ENDPOINT, code=answer.outcome).inc()
    gw.metrics.request_seconds.labels(endpoint=ENDPOINT).observe(time.perf_counter() - started)
    fields = getattr(request.state, "log_fields", None)
    if isinstance(fields, dict):
        fields.update(messageId=answer.message_id, senderId=answer.sender_id, outcome=answer.outcome)
        if answer.registration_number:
            fields["registrationNumber"] = answer.registration_number
    return Response(answer.body, status_code=answer.http_status, media_type=_XML_MEDIA)
