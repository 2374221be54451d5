"""The SHEP mock: the AsyncChannel inbox, routing by routeId, ordered PUSH with retries, getMessages and
getMessageStatus; the SyncChannel relay adding a braced sessionId. Everything over loopback HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI, Request, Response

from adapters.shep_async import StatusMessage, read_send_answer, render_send_message
from core.domain import Channel, Status
from mocks import shep
from mocks.common import (
    ASYNC_TYPES,
    SOAP_ENV,
    MockSettings,
    async_send_response,
    parse_async_send,
    parse_notification,
    status_request_xml,
    sync_request,
)
from tests.mocks.conftest import port_of
from tests.support.server import serve
from tests.support.wait import wait_until

ASTANA = datetime.now(UTC).astimezone().tzinfo


def _gateway_message(n: int, route: str = "EGOV_PORTAL", status: Status = Status.REGISTERED) -> bytes:
    """What the gateway sends to SHEP, rendered by the gateway's own AsyncChannel adapter."""
    now = datetime.now(UTC)
    return render_send_message(StatusMessage(
        message_id=f"out-{n}", correlation_id="req-1", service_id="MED_LICENSE", message_type="NOTIFICATION",
        route_id=route, message_date=now, sender_id="LICGATE", channel=Channel.PORTAL, request_number="0021-1",
        registration_number="MED-2026-000001", status=status, changed_at=now,
    ), ASTANA)


class Receiver:
    """A participant's PUSH endpoint that refuses its first `fail` deliveries."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.accepted: list[str] = []
        self.app = FastAPI()
        self.app.post("/shep/push")(self.push)

    async def push(self, request: Request) -> Response:
        self.calls += 1
        if self.calls <= self.fail:
            return Response("busy", status_code=503)
        message = parse_async_send(await request.body())
        self.accepted.append(message.message_id)
        return Response(async_send_response(message.message_id), media_type="text/xml")


def test_async_send_message_is_accepted_with_message_accepted(settings: MockSettings) -> None:
    with serve(shep.create_app(settings)) as server:
        answer = httpx.post(server.url + "/shep/async", content=_gateway_message(1),
                            headers={"Content-Type": "text/xml"})
    assert answer.status_code == 200
    verdict = read_send_answer(answer.status_code, answer.content)  # the gateway's own reading of it
    assert verdict.accepted and verdict.verdict == "MESSAGE_ACCEPTED"


def test_messages_are_pushed_to_the_route_id_in_order_and_retried_while_the_receiver_fails(
        settings: MockSettings) -> None:
    settings.shep.push_backoff_seconds = 0.05
    receiver = Receiver(fail=3)
    with serve(receiver.app) as rx, serve(shep.create_app(settings)) as server:
        httpx.post(server.url + "/shep/push-urls", json={"recipient": "EGOV_PORTAL", "url": rx.url + "/shep/push"})
        for n in range(1, 6):
            httpx.post(server.url + "/shep/async", content=_gateway_message(n))
        assert wait_until(lambda: len(receiver.accepted) == 5)
        inbox = httpx.get(server.url + "/shep/messages", params={"recipient": "EGOV_PORTAL"}).json()
    assert receiver.accepted == [f"out-{n}" for n in range(1, 6)]
    assert [m["state"] for m in inbox] == ["DELIVERED"] * 5
    assert inbox[0]["attempts"] == 4  # three refusals, then accepted


def test_a_failing_recipient_does_not_hold_up_another_recipient(settings: MockSettings) -> None:
    settings.shep.push_backoff_seconds = 0.2
    stuck, fine = Receiver(fail=10_000), Receiver()
    with serve(stuck.app) as a, serve(fine.app) as b, serve(shep.create_app(settings)) as server:
        httpx.post(server.url + "/shep/push-urls", json={"recipient": "CENTER_IS", "url": a.url + "/shep/push"})
        httpx.post(server.url + "/shep/push-urls", json={"recipient": "ELICENSE", "url": b.url + "/shep/push"})
        httpx.post(server.url + "/shep/async", content=_gateway_message(1, route="CENTER_IS"))
        httpx.post(server.url + "/shep/async", content=_gateway_message(2, route="ELICENSE"))
        assert wait_until(lambda: fine.accepted == ["out-2"])
    assert stuck.accepted == []


def test_get_messages_and_get_message_status_read_the_inbox(settings: MockSettings) -> None:
    receiver = Receiver()
    with serve(receiver.app) as rx, serve(shep.create_app(settings)) as server:
        httpx.post(server.url + "/shep/push-urls", json={"recipient": "EGOV_PORTAL", "url": rx.url + "/shep/push"})
        httpx.post(server.url + "/shep/async", content=_gateway_message(7, status=Status.IN_REVIEW))
        assert wait_until(lambda: receiver.accepted == ["out-7"])
        status = httpx.post(server.url + "/shep/async", content=(
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><typ:getMessageStatus '
            f'xmlns:typ="{ASYNC_TYPES}"><request><messageId>out-7</messageId></request></typ:getMessageStatus>'
            "</soapenv:Body></soapenv:Envelope>").encode())
        listing = httpx.post(server.url + "/shep/async", content=(
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><typ:getMessages '
            f'xmlns:typ="{ASYNC_TYPES}"><request><sender><senderId>EGOV_PORTAL</senderId></sender></request>'
            "</typ:getMessages></soapenv:Body></soapenv:Envelope>").encode())
    assert "<messageState>DELIVERED</messageState>" in status.text
    assert listing.text.count("<messages>") == 1
    assert "<messageId>out-7</messageId>" in listing.text
    assert "IN_REVIEW" in listing.text


def test_pushed_message_keeps_the_notification_payload(settings: MockSettings) -> None:
    received: list[bytes] = []
    app = FastAPI()

    @app.post("/shep/push")
    async def push(request: Request) -> Response:
        received.append(await request.body())
        return Response(async_send_response("x"), media_type="text/xml")

    with serve(app) as rx, serve(shep.create_app(settings)) as server:
        httpx.post(server.url + "/shep/push-urls", json={"recipient": "EGOV_PORTAL", "url": rx.url + "/shep/push"})
        httpx.post(server.url + "/shep/async", content=_gateway_message(3, status=Status.GRANTED))
        assert wait_until(lambda: len(received) == 1)
    message = parse_async_send(received[0])
    assert (message.correlation_id, message.route_id, message.properties) == (
        "req-1", "EGOV_PORTAL", {"channel": "PORTAL"})
    notification = parse_notification(message.document())
    assert (notification.status, notification.status_kk, notification.status_ru) == (
        "GRANTED", "Қанағаттандырылды", "Удовлетворено")


def test_sync_relay_adds_a_braced_session_id_and_returns_the_answer_unchanged(settings: MockSettings) -> None:
    seen: list[bytes] = []
    canned = b"<answer-as-the-gateway-wrote-it/>"
    app = FastAPI()  # stands in for the gateway's /shep/sync: the test is about what SHEP forwards

    @app.post("/shep/sync")
    async def sync(request: Request) -> Response:
        seen.append(await request.body())
        return Response(canned, status_code=500, media_type="text/xml")

    with serve(app, port=port_of(settings.urls.gateway)), serve(shep.create_app(settings)) as server:
        answer = httpx.post(server.url + "/shep/sync", content=sync_request(
            message_id="m-1", service_id="MED_LICENSE_STATUS", sender_id="EGOV_PORTAL", password="p",
            payload=status_request_xml("0021-1")), headers={"Content-Type": "text/xml"})
    assert (answer.status_code, answer.content) == (500, canned)
    session = re.search(rb"<sessionId>(.*?)</sessionId>", seen[0])
    assert session and re.fullmatch(rb"\{[0-9A-F-]{36}\}", session.group(1))
    assert b"<StatusRequest" in seen[0]


def _signed(envelope: bytes, pki_dir, party: str) -> bytes:  # noqa: ANN001
    from signing.wsse import sign_wsse

    base = pki_dir / "parties"
    return sign_wsse(envelope, (base / f"{party}.key.pem").read_bytes(), (base / f"{party}.cert.pem").read_bytes())


def test_gateway_transport_signature_is_verified_and_a_foreign_one_refused_when_required(
        settings: MockSettings, pki_dir) -> None:  # noqa: ANN001
    settings.shep.require_wsse = True
    with serve(shep.create_app(settings)) as server:
        good = httpx.post(server.url + "/shep/async", content=_signed(_gateway_message(1), pki_dir,
                                                                       "gateway_transport"))
        wrong_bin = httpx.post(server.url + "/shep/async", content=_signed(_gateway_message(2), pki_dir,
                                                                            "portal_transport"))
        unsigned = httpx.post(server.url + "/shep/async", content=_gateway_message(3))
        inbox = httpx.get(server.url + "/shep/messages").json()
    assert read_send_answer(good.status_code, good.content).accepted
    assert not read_send_answer(wrong_bin.status_code, wrong_bin.content).accepted
    assert "TRANSPORT_SIGNATURE_INVALID" in wrong_bin.text and "BIN" in wrong_bin.text
    assert not read_send_answer(unsigned.status_code, unsigned.content).accepted
    assert [(m["message_id"], m["wsse"].split(" ")[0]) for m in inbox] == [("out-1", "verified")]


def test_shep_refuses_a_replayed_or_stale_transport_signature(settings: MockSettings, pki_dir) -> None:  # noqa: ANN001
    from datetime import UTC, datetime, timedelta

    from signing.wsse import sign_wsse

    settings.shep.require_wsse = True
    base = pki_dir / "parties"
    key, cert = (base / "gateway_transport.key.pem").read_bytes(), (base / "gateway_transport.cert.pem").read_bytes()
    signed = _signed(_gateway_message(1), pki_dir, "gateway_transport")
    stale = sign_wsse(_gateway_message(2), key, cert, now=datetime.now(UTC) - timedelta(minutes=10))
    with serve(shep.create_app(settings)) as server:
        first = httpx.post(server.url + "/shep/async", content=signed)
        again = httpx.post(server.url + "/shep/async", content=signed)
        old = httpx.post(server.url + "/shep/async", content=stale)
    assert read_send_answer(first.status_code, first.content).accepted
    assert not read_send_answer(again.status_code, again.content).accepted and "replayed" in again.text
    assert not read_send_answer(old.status_code, old.content).accepted and "ago" in old.text
