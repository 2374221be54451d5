"""The delivery worker's rules, one attempt at a time (respx at the httpx transport seam, a real SQLite file)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import respx

from core.clock import ManualClock
from core.domain import Step
from gateway.app import build_services
from gateway.config import Config, OutboundConfig
from gateway.outbound import DeliveryWorker, backoff_delay
from gateway.services import Services
from gateway.storage import OutboxState, open_storage
from signing.pki import Pki
from signing.trust import TrustConfig
from tests.support.async_messages import read_send_message
from tests.workflow.helpers import store

URL = "http://shep.test/shep/async"
ACCEPTED = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><r><response><status>'
            b"<code>MESSAGE_ACCEPTED</code></status></response></r></s:Body></s:Envelope>")


@pytest.fixture
def gw(tmp_path: Path, pki: Pki) -> Iterator[Services]:
    config = Config(outbound=OutboundConfig(shep_async_url=URL, max_attempts=3, backoff_initial_seconds=10.0,
                                            backoff_max_seconds=25.0, concurrency=1),
                    trust=TrustConfig(ca_dir=pki.ca_dir, revocation="off"))
    storage = open_storage(f"sqlite:///{tmp_path / 'licgate.db'}")
    yield build_services(config, storage=storage, clock=ManualClock(datetime.now(UTC)))
    storage.close()


def worker_for(gw: Services, router: respx.Router) -> DeliveryWorker:
    return DeliveryWorker(gw.config.outbound, gw.storage, gw.clock, gw.metrics,
                          transport=httpx.MockTransport(router.handler), rng=random.Random(7))


def two_notifications(gw: Services) -> str:
    app = store(gw.storage, received_at=gw.clock.now() - timedelta(minutes=5))
    workflow = gw.workflow
    app = workflow.record_step(app, Step.REGISTERED, "employee", None, source="test").app
    workflow.record_step(app, Step.SENT_TO_MANAGEMENT, "employee", None, source="test")
    return app.id


def test_backoff_doubles_up_to_its_cap_with_jitter_below_the_full_delay() -> None:
    rng = random.Random(1)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0), (60, 60.0)):
        delay = backoff_delay(attempt, 1.0, 60.0, rng)
        assert full * 0.5 <= delay < full


def test_an_accepted_message_is_marked_sent_and_logged_with_its_verdict(gw: Services) -> None:
    app_id = two_notifications(gw)
    router = respx.Router()
    route = router.post(URL).mock(return_value=httpx.Response(200, content=ACCEPTED))
    worker = worker_for(gw, router)
    assert worker.run_once() == 1  # one message per application per claim: order is kept
    assert worker.run_once() == 1
    assert [m.state for m in gw.storage.outbox_messages(app_id)] == [OutboxState.SENT, OutboxState.SENT]
    sent = [read_send_message(call.request.content).status for call in route.calls]
    assert sent == ["REGISTERED", "IN_REVIEW"]
    verdicts = [e.verdict for e in gw.storage.message_log(application_id=app_id) if e.endpoint == "shep/async"]
    assert verdicts == ["DELIVERED MESSAGE_ACCEPTED", "DELIVERED MESSAGE_ACCEPTED"]


def test_a_refused_message_waits_its_backoff_and_holds_back_the_next_one(gw: Services) -> None:
    app_id = two_notifications(gw)
    router = respx.Router()
    route = router.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(200, content=ACCEPTED),
                                               httpx.Response(200, content=ACCEPTED)])
    worker = worker_for(gw, router)
    clock: ManualClock = gw.clock  # type: ignore[assignment]
    assert worker.run_once() == 1
    first = gw.storage.outbox_messages(app_id)[0]
    assert first.attempts == 1 and first.last_error == "attempt 1: HTTP 503"
    assert timedelta(seconds=5) <= first.next_attempt_at - clock.now() < timedelta(seconds=10)
    assert worker.run_once() == 0  # not due yet, and the second message must wait for the first
    clock.advance(timedelta(seconds=10))
    assert worker.run_once() == 1
    assert worker.run_once() == 1
    statuses = [read_send_message(call.request.content).status for call in route.calls]
    assert statuses == ["REGISTERED", "REGISTERED", "IN_REVIEW"]
    # The retry is the same message: same messageId, same bytes.
    assert route.calls[0].request.content == route.calls[1].request.content


def test_after_max_attempts_a_message_is_dead_lettered_with_its_reason(gw: Services) -> None:
    app_id = two_notifications(gw)
    router = respx.Router()
    route = router.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    worker = worker_for(gw, router)
    clock: ManualClock = gw.clock  # type: ignore[assignment]
    for _ in range(3):
        assert worker.run_once() == 1
        clock.advance(timedelta(seconds=30))
    assert worker.run_once() == 0  # dead, and it blocks the application's later message
    dead = gw.storage.dead_letters()
    assert [(d.application_id, d.state, d.attempts) for d in dead] == [(app_id, OutboxState.DEAD, 3)]
    assert dead[0].last_error == "attempt 3: ConnectError: connection refused"
    assert route.call_count == 3
    # An operator decides the cause is fixed: it goes again, then the next one.
    route.side_effect = None
    route.return_value = httpx.Response(200, content=ACCEPTED)
    assert gw.storage.retry_dead_letter(dead[0].id, clock.now())
    assert worker.run_once() == 1 and worker.run_once() == 1
    assert [m.state for m in gw.storage.outbox_messages(app_id)] == [OutboxState.SENT, OutboxState.SENT]


def test_message_not_accepted_is_a_failed_attempt(gw: Services) -> None:
    app_id = two_notifications(gw)
    router = respx.Router()
    router.post(URL).mock(return_value=httpx.Response(200, content=ACCEPTED.replace(
        b"MESSAGE_ACCEPTED", b"MESSAGE_NOT_ACCTEPTED")))
    worker_for(gw, router).run_once()
    first = gw.storage.outbox_messages(app_id)[0]
    assert first.state is OutboxState.PENDING and first.last_error == "attempt 1: MESSAGE_NOT_ACCTEPTED"


def test_every_attempt_is_ws_security_signed_afresh_and_logged_as_sent(gw: Services, pki: Pki) -> None:
    """A retry hours later must not carry a stale wsu:Timestamp: each attempt is signed when it is sent."""
    from lxml import etree

    from signing.verifier import build_verifier
    from signing.wsse import WSU, WsseSigner, verify_wsse

    party = pki.party("gateway_transport")
    signer = WsseSigner(party.key_pem, party.cert_pem)
    app_id = two_notifications(gw)
    router = respx.Router()
    route = router.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(200, content=ACCEPTED)])
    worker = DeliveryWorker(gw.config.outbound, gw.storage, gw.clock, gw.metrics, rng=random.Random(7),
                            transport=httpx.MockTransport(router.handler), sign=signer.sign)
    assert worker.run_once() == 1
    gw.clock.advance(timedelta(seconds=30))  # past the back-off
    assert worker.run_once() == 1
    bodies = [call.request.content for call in route.calls]
    created = [etree.fromstring(b).findtext(f".//{{{WSU}}}Created") for b in bodies]
    assert len(bodies) == 2 and created[0] != created[1] and bodies[0] != bodies[1]
    verifier = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="off"), gw.clock)
    assert verify_wsse(etree.fromstring(bodies[1]), sender_bin=party.bin, verifier=verifier).bin == party.bin
    stored = gw.storage.outbox_messages(app_id)[0]
    assert b"Security" not in stored.body  # the outbox keeps the message unsigned
    sent = [e.body for e in gw.storage.message_log(application_id=app_id) if e.verdict.startswith("DELIVERED")]
    assert sent == [bodies[1]]
