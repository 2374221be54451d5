"""Fixtures of the workflow tests: a test PKI, a real loopback SHEP AsyncChannel receiver, and the real app
served over loopback on a real database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.shep_async import ASYNC_TYPES
from adapters.xml import SOAP_ENV
from core.clock import Clock
from gateway.app import create_app
from gateway.config import Config, parse_config
from signing.pki import Pki, init_pki, load_pki
from signing.signer import sign_enveloped
from tests.support.async_messages import ReceivedStatusMessage, read_send_message
from tests.support.operators import operators_table
from tests.support.server import ServerThread, serve
from tests.workflow.helpers import OTHER_PROVIDER_BIN, PROVIDER_BIN

TOKEN = "provider-token-0123456789abcdef"
OTHER_TOKEN = "other-provider-token-fedcba9876543210"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return load_pki(directory)


@pytest.fixture(scope="session")
def pki_march_2026(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI whose certificates and CRL are current in March 2026 (for a gateway clock set then)."""
    directory = tmp_path_factory.mktemp("pki-march")
    init_pki(directory, now=datetime(2026, 3, 10, tzinfo=UTC))
    return load_pki(directory)


def config_table(pki: Pki, storage_url: str, receiver_url: str, **outbound: Any) -> dict[str, Any]:
    return {
        "storage": {"url": storage_url},
        "trust": {"ca_dir": str(pki.ca_dir), "revocation": "crl", "crl_dir": str(pki.crl_dir),
                  "tsa_dir": str(pki.tsa_dir)},
        "providers": [
            {"bin": PROVIDER_BIN, "name_kk": "Денсаулық сақтау басқармасы", "name_ru": "Управление здравоохранения",
             "token": TOKEN},
            {"bin": OTHER_PROVIDER_BIN, "name_kk": "Басқа", "name_ru": "Другой", "token": OTHER_TOKEN},
        ],
        "senders": [
            {"id": "EGOV_PORTAL", "password": "p", "channel": "PORTAL", "services": ["MED_LICENSE"]},
            {"id": "CENTER_IS", "password": "c", "channel": "CENTER", "bin": "990140004654",
             "services": ["MED_LICENSE"]},
            {"id": "ELICENSE", "password": "e", "channel": "ELICENSE", "services": ["MED_LICENSE"]},
        ],
        "outbound": {"shep_async_url": receiver_url, "sender_id": "LICGATE_SKO_HEALTH", "password": "out-secret",
                     "poll_seconds": 0.05, "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2,
                     "timeout_seconds": 2.0, **outbound},
        "operators": operators_table(),
    }


def make_config(pki: Pki, storage_url: str, receiver_url: str, **outbound: Any) -> Config:
    return parse_config(config_table(pki, storage_url, receiver_url, **outbound), base_dir=Path.cwd())


# -- the receiving SHEP endpoint ----------------------------------------------------------------------------


@dataclass
class Receiver:
    """A loopback AsyncChannel endpoint: answers MESSAGE_ACCEPTED, or 503 while `refusing`."""

    refusing: bool = False
    bodies: list[bytes] = field(default_factory=list)  # accepted ones, in arrival order
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def app(self) -> Starlette:
        async def send_message(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                if self.refusing:
                    self.refused += 1
                    return Response("busy", status_code=503)
                self.bodies.append(body)
            answer = (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
                      f'<typ:sendMessageResponse xmlns:typ="{ASYNC_TYPES}"><response>'
                      "<status><code>MESSAGE_ACCEPTED</code><message>ok</message></status>"
                      "</response></typ:sendMessageResponse></soapenv:Body></soapenv:Envelope>")
            return Response(answer, media_type="text/xml")

        return Starlette(routes=[Route("/shep/async", send_message, methods=["POST"])])

    def messages(self) -> list[ReceivedStatusMessage]:
        with self.lock:
            bodies = list(self.bodies)
        return [read_send_message(b) for b in bodies]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedStatusMessage]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                n = len(self.bodies)
            if n >= count:
                return self.messages()
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {n} messages, expected {count}")
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(rec.app()) as server:
        rec.url = server.url + "/shep/async"
        yield rec


# -- the gateway ------------------------------------------------------------------------------------------------


@dataclass
class Api:
    """The provider IS's view: an httpx client with a bearer token against a served gateway."""

    server: ServerThread
    app: Any
    token: str = TOKEN

    @property
    def gw(self) -> Any:
        return self.app.state.services

    def _headers(self, token: str | None) -> dict[str, str]:
        token = self.token if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, path: str, json: Any = None, token: str | None = None) -> httpx.Response:
        return httpx.post(self.server.url + path, json=json, headers=self._headers(token), timeout=30)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return httpx.get(self.server.url + path, headers=self._headers(token), timeout=30)

    def put_result(self, app_id: str, body: bytes, token: str | None = None,
                   content_type: str = "application/xml") -> httpx.Response:
        return httpx.put(f"{self.server.url}/provider/v1/applications/{app_id}/result", content=body,
                         headers={**self._headers(token), "Content-Type": content_type}, timeout=30)

    def step(self, app_id: str, step: str, at: str | None = None, token: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"step": step, "actor": "Серікова Г. (authorized employee)"}
        if at is not None:
            body["at"] = at
        return self.post(f"/provider/v1/applications/{app_id}/steps", body, token)


GatewayFactory = Callable[..., Api]


@pytest.fixture
def gateway_factory(pki: Pki, receiver: Receiver) -> Iterator[GatewayFactory]:
    """Serve the real app on `storage_url`, delivering to the receiver; stopped after the test."""
    stack: list[Any] = []

    def start(storage_url: str, *, clock: Clock | None = None, trust: Pki | None = None, **outbound: Any) -> Api:
        app = create_app(make_config(trust or pki, storage_url, receiver.url, **outbound), clock=clock)
        cm = serve(app)
        server = cm.__enter__()
        stack.append(cm)
        return Api(server=server, app=app)

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'licgate.db'}"


# -- signed results ------------------------------------------------------------------------------------------


def decision_xml(registration_number: str, decision: str = "GRANTED", *, license_number: str = "KZ41LAA00001873",
                 issued_at: str = "2026-12-09T16:30:00+05:00") -> bytes:
    parts = ['<LicenseDecision xmlns="urn:kz:egov:medlicense:v1">',
             f"<registrationNumber>{registration_number}</registrationNumber>", f"<decision>{decision}</decision>"]
    if decision == "GRANTED":
        parts.append(f"<licenseNumber>{license_number}</licenseNumber>")
    else:
        parts.append("<reasonKk>Үй-жай санитариялық талаптарға сәйкес келмейді</reasonKk>"
                     "<reasonRu>Помещение не соответствует санитарным требованиям</reasonRu>")
    parts.append(f"<issuedAt>{issued_at}</issuedAt></LicenseDecision>")
    return "".join(parts).encode()


def signed_decision(pki: Pki, registration_number: str, decision: str = "GRANTED", party: str = "provider_signer",
                    **kw: Any) -> bytes:
    p = pki.party(party)
    return sign_enveloped(decision_xml(registration_number, decision), p.key_pem, p.cert_pem, **kw)
