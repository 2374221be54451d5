"""Mock of SHEP, the e-government bus between the front offices and the gateway.

- `POST /shep/sync`: relays SyncChannel `SendMessage` from a participant to the gateway's `/shep/sync`,
  adding `requestInfo/sessionId` (`{guid}` with braces, as SHEP does) and remembering which sender sent
  which messageId; the gateway's answer goes back unchanged. `GET /shep/sync?wsdl` relays the WSDL.
- `POST /shep/async`: the AsyncChannel. `sendMessage` (the gateway's notifications and results) is
  answered `MESSAGE_ACCEPTED`, kept in the recipient's inbox (recipient = `messageInfo/routeId`, else the
  sender of the message it correlates to) and pushed to the recipient's PUSH URL, in order per recipient,
  retried with back-off while the recipient fails. `getMessages` and `getMessageStatus` read the inbox.
- JSON views: `GET /shep/messages?recipient=ID`, `GET /shep/messages/{id}`, `GET /log`, and
  `POST /shep/push-urls` `{"recipient": ..., "url": ...}` to register a PUSH URL at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from lxml import etree

from core.xmlsafe import parse_xml
from mocks.common import (
    ASYNC_TYPES,
    SOAP_ENV,
    SYNC_TYPES,
    ActionLog,
    AsyncMessage,
    MockSettings,
    async_send_request,
    async_send_response,
    iso_local,
    parse_async_send,
    parse_async_send_response,
    run_mock,
    soap_fault,
    strip_declaration,
)

XML = "text/xml; charset=utf-8"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


@dataclass
class StoredMessage:
    message: AsyncMessage
    recipient: str
    received_at: str
    state: str = "ON_DELIVERY"  # ON_DELIVERY | DELIVERED | NOT_DELIVERED | DELIVERY_STOPPED
    attempts: int = 0
    delivered_at: str = ""
    last_error: str = ""
    wsse: str = ""  # the transport signature: absent, verified (CN), invalid: reason

    def view(self, with_data: bool = False) -> dict[str, Any]:
        m = self.message
        out: dict[str, Any] = {
            "message_id": m.message_id, "correlation_id": m.correlation_id, "service_id": m.service_id,
            "message_type": m.message_type, "route_id": m.route_id, "sender_id": m.sender_id,
            "properties": m.properties, "recipient": self.recipient, "received_at": self.received_at,
            "state": self.state, "attempts": self.attempts, "delivered_at": self.delivered_at,
            "last_error": self.last_error, "wsse": self.wsse,
        }
        if with_data:
            out["data"] = m.data_xml.decode("utf-8")
        return out


@dataclass
class ShepState:
    settings: MockSettings
    log: ActionLog
    messages: dict[str, StoredMessage] = field(default_factory=dict)  # in arrival order
    senders: dict[str, str] = field(default_factory=dict)  # sync messageId -> senderId
    push_urls: dict[str, str] = field(default_factory=dict)
    queues: dict[str, asyncio.Queue[str]] = field(default_factory=dict)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    client: httpx.AsyncClient | None = None
    verifier: Any = None  # signing's verifier for WS-Security, over the test PKI's CA
    replays: Any = None  # signing.wsse.ReplayGuard: the gateway's transport signatures seen within their window

    def push_url(self, recipient: str) -> str | None:
        return self.push_urls.get(recipient) or self.settings.push_url(recipient)


def create_app(settings: MockSettings) -> FastAPI:
    state = ShepState(settings=settings, log=ActionLog("shep"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient(timeout=settings.shep.relay_timeout_seconds)
        state.verifier = _transport_verifier(settings)
        try:
            yield
        finally:
            for task in state.workers:
                task.cancel()
            await asyncio.gather(*state.workers, return_exceptions=True)
            await state.client.aclose()

    app = FastAPI(title="SHEP mock", lifespan=lifespan)
    app.state.shep = state

    @app.post("/shep/sync")
    async def relay_sync(request: Request) -> Response:
        body = await request.body()
        forwarded, sender_id, message_id, session_id = _with_session(body)
        if message_id:
            state.senders[message_id] = sender_id
        headers = {"Content-Type": request.headers.get("content-type", "text/xml; charset=utf-8"),
                   "SOAPAction": request.headers.get("soapaction", '""')}
        assert state.client is not None
        try:
            answer = await state.client.post(settings.urls.gateway + "/shep/sync", content=forwarded,
                                             headers=headers)
        except httpx.HTTPError as exc:
            state.log("sync-relay-failed", message_id=message_id, sender=sender_id, error=type(exc).__name__)
            return Response(soap_fault("SHEP_PROVIDER_UNAVAILABLE", f"the provider's endpoint did not answer: "
                                       f"{type(exc).__name__}", SYNC_TYPES), status_code=500, media_type=XML)
        state.log("sync-relayed", message_id=message_id, sender=sender_id, session=session_id,
                  http=answer.status_code, outcome=_sync_outcome(answer.content))
        passed = {"Retry-After": answer.headers["retry-after"]} if "retry-after" in answer.headers else None
        return Response(answer.content, status_code=answer.status_code, headers=passed,
                        media_type=answer.headers.get("content-type", XML))

    @app.get("/shep/sync")
    async def relay_wsdl(request: Request) -> Response:
        assert state.client is not None
        answer = await state.client.get(settings.urls.gateway + "/shep/sync", params=dict(request.query_params))
        passed = {"Retry-After": answer.headers["retry-after"]} if "retry-after" in answer.headers else None
        return Response(answer.content, status_code=answer.status_code, headers=passed,
                        media_type=answer.headers.get("content-type", XML))

    @app.post("/shep/async")
    async def async_channel(request: Request) -> Response:
        body = await request.body()
        try:
            root = parse_xml(body)
        except Exception as exc:  # noqa: BLE001 - any parse refusal is the caller's fault
            state.log("async-refused", reason=str(exc)[:120])
            return Response(soap_fault("MALFORMED_MESSAGE", str(exc)[:200]), status_code=500, media_type=XML)
        operation = _operation(root)
        if operation == "sendMessage":
            return _accept(state, body, root)
        if operation == "getMessages":
            return _get_messages(state, root)
        if operation == "getMessageStatus":
            return _get_message_status(state, root)
        state.log("async-refused", reason=f"unknown operation {operation}")
        return Response(soap_fault("UNKNOWN_OPERATION", f"unknown operation {operation}"), status_code=500,
                        media_type=XML)

    @app.get("/shep/messages")
    def list_messages(recipient: str | None = None) -> list[dict[str, Any]]:
        return [m.view() for m in state.messages.values() if recipient in (None, m.recipient)]

    @app.get("/shep/messages/{message_id}")
    def one_message(message_id: str) -> dict[str, Any]:
        stored = state.messages.get(message_id)
        if stored is None:
            raise HTTPException(404, "no such message")
        return stored.view(with_data=True)

    @app.post("/shep/push-urls")
    async def register_push(request: Request) -> dict[str, str]:
        data = await request.json()
        state.push_urls[str(data["recipient"])] = str(data["url"])
        state.log("push-url-registered", recipient=data["recipient"], url=data["url"])
        return {"recipient": data["recipient"], "url": data["url"]}

    @app.get("/log")
    def action_log() -> list[dict[str, Any]]:
        return state.log.snapshot()

    return app


def _with_session(body: bytes) -> tuple[bytes, str, str, str]:
    """Add `requestInfo/sessionId` as SHEP does; bytes SHEP cannot read are relayed as they came."""
    try:
        root = parse_xml(body)
    except Exception:  # noqa: BLE001 - the gateway gives the proper MALFORMED_MESSAGE fault
        return body, "", "", ""
    info = root.find(f"{{{SOAP_ENV}}}Body/{{{SYNC_TYPES}}}SendMessage/request/requestInfo")
    if info is None:
        return body, "", "", ""
    sender_id = (info.findtext("sender/senderId") or "").strip()
    message_id = (info.findtext("messageId") or "").strip()
    existing = info.find("sessionId")
    if existing is not None:
        return body, sender_id, message_id, existing.text or ""
    if root.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security") is not None:
        # The participant signed the Body: a sessionId added inside it would break its signature.
        return body, sender_id, message_id, "none (signed body relayed byte for byte)"
    session_id = "{" + str(uuid.uuid4()).upper() + "}"
    etree.SubElement(info, "sessionId").text = session_id
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), sender_id, message_id, session_id


def _sync_outcome(body: bytes) -> str:
    try:
        root = parse_xml(body)
    except Exception:  # noqa: BLE001
        return "unreadable"
    code = root.findtext(f".//{{{SYNC_TYPES}}}SendMessageResponse/response/responseInfo/status/code")
    if code:
        return code.strip()
    return (root.findtext(f".//{{{SYNC_TYPES}}}SendMessageFault1_SendMessageFault/errorCode") or "fault").strip()


def _operation(root: etree._Element) -> str:
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        return ""
    element = next((c for c in body if isinstance(c.tag, str)), None)
    return etree.QName(element).localname if element is not None else ""


def _accept(state: ShepState, body: bytes, root: etree._Element) -> Response:
    try:
        message = parse_async_send(body)
    except ValueError as exc:
        state.log("async-refused", reason=str(exc))
        return Response(soap_fault("MALFORMED_MESSAGE", str(exc)), status_code=500, media_type=XML)
    wsse = _check_wsse(state, root)
    if state.settings.shep.require_wsse and not wsse.startswith("verified"):
        state.log("async-refused", message_id=message.message_id, wsse=wsse)
        return Response(soap_fault("TRANSPORT_SIGNATURE_INVALID", wsse), status_code=500, media_type=XML)
    if message.message_id and message.message_id in state.messages:
        state.log("async-duplicate", message_id=message.message_id)
        return Response(async_send_response(message.message_id, note="duplicate, already accepted"),
                        media_type=XML)
    if not message.message_id:
        message.message_id = str(uuid.uuid4())
    recipient = message.route_id or state.senders.get(message.correlation_id, "")
    stored = StoredMessage(message=message, recipient=recipient or "UNROUTED", received_at=iso_local(), wsse=wsse)
    state.messages[message.message_id] = stored
    state.log("async-accepted", message_id=message.message_id, type=message.message_type,
              correlation=message.correlation_id, recipient=stored.recipient, wsse=wsse,
              payload=_payload_summary(message))
    if not recipient:
        stored.state = "NOT_DELIVERED"
        stored.last_error = "no routeId and no known sender for the correlationId"
    else:
        queue = state.queues.get(recipient)
        if queue is None:
            queue = state.queues[recipient] = asyncio.Queue()
            state.workers.append(asyncio.get_running_loop().create_task(_pusher(state, recipient, queue)))
        queue.put_nowait(message.message_id)
    return Response(async_send_response(message.message_id), media_type=XML)


def _check_wsse(state: ShepState, root: etree._Element) -> str:
    """SHEP checks a participant's transport signature: the gateway's key must chain to the test CA and
    carry the provider's BIN, over the Body and a fresh Timestamp, and a signature is accepted once within
    its window. Answers "absent", "verified (CN)" or "invalid: reason"."""
    if root.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security") is None:
        return "absent"
    if state.verifier is None:
        return "invalid: no test PKI to check it against"
    from core.errors import LicgateError
    from signing.wsse import ReplayGuard, verify_transport

    if state.replays is None:
        state.replays = ReplayGuard()
    try:
        verified = verify_transport(root, sender_bin=state.settings.shep.gateway_bin, verifier=state.verifier)
        state.replays.check(verified.replay_key, verified.replay_until, state.verifier.clock.now())
    except LicgateError as exc:
        return f"invalid: {exc.data or exc.code}"[:200]
    return f"verified ({verified.identity.common_name})"


def _transport_verifier(settings: MockSettings) -> Any:
    """The signing package's verifier over the test PKI's CA (revocation is the NCA's business, not SHEP's)."""
    from core.clock import Clock
    from signing.trust import TrustConfig
    from signing.verifier import build_verifier

    ca_dir = settings.pki_dir / "ca"
    if not ca_dir.is_dir():
        return None
    return build_verifier(TrustConfig(ca_dir=ca_dir, revocation="off", crl_dir=settings.pki_dir / "crl"), Clock())


def _payload_summary(message: AsyncMessage) -> str:
    try:
        doc = message.document()
    except Exception:  # noqa: BLE001
        return "unreadable"
    if doc is None:
        return "empty"
    status = doc.findtext("{urn:kz:egov:medlicense:v1}status")
    return f"{etree.QName(doc).localname}:{status}" if status else etree.QName(doc).localname


async def _pusher(state: ShepState, recipient: str, queue: asyncio.Queue[str]) -> None:
    """Deliver one recipient's messages in arrival order; a failing recipient holds its own queue only."""
    cfg = state.settings.shep
    while True:
        message_id = await queue.get()
        stored = state.messages[message_id]
        delay = cfg.push_backoff_seconds
        while stored.state == "ON_DELIVERY":
            url = state.push_url(recipient)
            stored.attempts += 1
            try:
                if not url:
                    raise RuntimeError(f"no PUSH URL registered for {recipient}")
                assert state.client is not None
                answer = await state.client.post(url, content=async_send_request(stored.message),
                                                 headers={"Content-Type": XML, "SOAPAction": '""'})
                code = parse_async_send_response(answer.content) if answer.content else ""
                if answer.status_code != 200 or code != "MESSAGE_ACCEPTED":
                    raise RuntimeError(f"HTTP {answer.status_code} {code or 'no status'}")
                stored.state, stored.delivered_at = "DELIVERED", iso_local()
                state.log("pushed", message_id=message_id, recipient=recipient, attempt=stored.attempts)
            except Exception as exc:  # noqa: BLE001 - every failure is retried, then recorded
                stored.last_error = str(exc)[:200]
                if stored.attempts >= cfg.push_attempts:
                    stored.state = "NOT_DELIVERED"
                    state.log("push-gave-up", message_id=message_id, recipient=recipient, error=stored.last_error)
                    break
                state.log("push-retry", message_id=message_id, recipient=recipient, attempt=stored.attempts,
                          error=stored.last_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.push_backoff_max_seconds)


def _get_messages(state: ShepState, root: etree._Element) -> Response:
    """`getMessages`: request/sender/senderId names the recipient; answers its inbox, oldest first."""
    request = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}getMessages/request")
    recipient = (request.findtext("sender/senderId") if request is not None else "") or ""
    items = []
    for stored in state.messages.values():
        if stored.recipient != recipient.strip():
            continue
        envelope = async_send_request(stored.message)
        inner = parse_xml(envelope).find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}sendMessage/request")
        assert inner is not None
        parts = b"".join(etree.tostring(c, encoding="utf-8") for c in inner)
        items.append(b"<messages>" + parts + f"<state>{stored.state}</state>".encode() + b"</messages>")
    state.log("get-messages", recipient=recipient, count=len(items))
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f'<typ:getMessagesResponse xmlns:typ="{ASYNC_TYPES}"><response>'
    ).encode() + b"".join(strip_declaration(i) for i in items) + (
        b"</response></typ:getMessagesResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, media_type=XML)


def _get_message_status(state: ShepState, root: etree._Element) -> Response:
    """`getMessageStatus`: request/messageId -> its delivery state (ON_DELIVERY, DELIVERED, ...)."""
    request = root.find(f"{{{SOAP_ENV}}}Body/{{{ASYNC_TYPES}}}getMessageStatus/request")
    message_id = ((request.findtext("messageId") if request is not None else "") or "").strip()
    stored = state.messages.get(message_id)
    status = stored.state if stored else "NOT_FOUND"
    state.log("get-message-status", message_id=message_id, state=status)
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f'<typ:getMessageStatusResponse xmlns:typ="{ASYNC_TYPES}"><response>'
        f"<messageId>{escape(message_id)}</messageId><messageState>{status}</messageState>"
        f"<stateDate>{stored.delivered_at or stored.received_at if stored else iso_local()}</stateDate>"
        "</response></typ:getMessageStatusResponse></soapenv:Body></soapenv:Envelope>"
    ).encode()
    return Response(body, media_type=XML)


def main(host: str = "127.0.0.1", port: int = 9000, config: str | None = None) -> int:
    return run_mock("shep", create_app, host, port, config, needs_pki=False)
