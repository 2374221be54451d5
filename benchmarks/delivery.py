"""Delivery benchmark: outbound throughput to a loopback SHEP receiver, and the time to drain a backlog of
10,000 notifications after the receiver recovers from an outage.

The receiver is a minimal ASGI app in a child process (uvicorn on a free loopback port) answering
MESSAGE_ACCEPTED, or HTTP 503 while told to refuse. The gateway side is the real `DeliveryWorker` on the
real storage (SQLite file; PostgreSQL too when LICGATE_TEST_PG_DSN is set), with messages rendered by the
real workflow adapter and queued with `storage.apply_transition`, as steps queue them.

Every number is printed next to a floor measured in the same run against the same receiver: the same
number of bare httpx POSTs of the same bodies, one client, one after another (no storage, no claims, no
marks). The ratio (worker time / floor time) is what compares across runs on a shared, noisy machine.
  - throughput: 2,000 messages (100 applications x 20) queued while the receiver accepts; time until the
    outbox is empty;
  - backlog drain: 10,000 messages (500 applications x 20) queued while the receiver refuses; the first
    message of every application is attempted and fails once (the rest wait behind it: order per
    application); then the receiver recovers and the time until the outbox is empty is measured (it
    includes waiting out the back-off, here 0.2-0.4 s).
Delivery keeps order per application, so at most one message per application is in flight: the drain
rate depends on how many applications the backlog spans (500 here, up to `concurrency` at once).

Usage: python benchmarks/delivery.py [--quick] [--sqlite-only]
"""

# ruff: noqa: E402 - the imports must follow the sys.path fix below
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and `benchmarks/queue.py` there shadows the
# standard library's `queue` (which concurrent.futures and psycopg import): take the directory off the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from adapters.shep_async import NOTIFICATION, StatusMessage, render_send_message
from core.clock import Clock
from core.domain import Applicant, ApplicantKind, Channel, ServiceType, SignerIdentity, Status, Step
from gateway.config import Config, OutboundConfig
from gateway.metrics import Metrics
from gateway.outbound import DeliveryWorker
from gateway.storage import NewApplication, NewOutboxMessage, OutboxKind, StepRecord, Storage, Transition, open_storage

PROVIDER = "051240001234"
TZ = Config().calendar.tz
ACCEPTED = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            b'<typ:sendMessageResponse xmlns:typ="http://bip.bee.kz/AsyncChannel/v10/Types"><response>'
            b"<status><code>MESSAGE_ACCEPTED</code><message>ok</message></status></response>"
            b"</typ:sendMessageResponse></soapenv:Body></soapenv:Envelope>")


# -- the receiver (child process) ---------------------------------------------------------------------------


def receiver_app():  # noqa: ANN201 - a bare ASGI callable
    state = {"refusing": False, "accepted": 0}

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        path = scope["path"]
        if path == "/refuse":
            state["refusing"] = True
            status, body = 200, b"refusing"
        elif path == "/accept":
            state["refusing"] = False
            status, body = 200, b"accepting"
        elif state["refusing"]:
            status, body = 503, b"busy"
        else:
            state["accepted"] += 1
            status, body = 200, ACCEPTED
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/xml"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def receiver() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(url + "/accept", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- filling the outbox ---------------------------------------------------------------------------------------

APPLICANT = Applicant(kind=ApplicantKind.INDIVIDUAL, name="АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", iin="871008401427")
SIGNER = SignerIdentity(common_name="АХМЕТОВА АЙГЕРІМ", iin="871008401427", bin=None, roles=("1.2.398.3.3.4.1.1",),
                        certificate_serial="0a1b", issuer="CN=NCA")


def fill(storage: Storage, applications: int, per_application: int) -> list[bytes]:
    """Queue `applications * per_application` rendered notifications; return their bodies (for the floor)."""
    now = datetime.now(UTC)
    bodies: list[bytes] = []
    for n in range(applications):
        app = storage.store_application(NewApplication(
            provider_bin=PROVIDER, sender_id="EGOV_PORTAL", message_id=str(uuid.uuid4()),
            request_number=f"BENCH-{uuid.uuid4().hex}", request_hash="0" * 64, channel=Channel.PORTAL,
            service_type=ServiceType.ISSUE, dialect="egov", applicant=APPLICANT, signer=SIGNER,
            activity_subtypes=("THERAPY",), license_number=None, received_at=now - timedelta(minutes=5),
            due_at=now + timedelta(days=13), status=Status.RECEIVED, payload=b"<MedicalLicenseApplication/>",
            documents=(),
        ), lambda number: number.encode())
        outbox = []
        for _ in range(per_application):
            message_id = str(uuid.uuid4())
            body = render_send_message(StatusMessage(
                message_id=message_id, correlation_id=app.message_id, service_id="MED_LICENSE",
                message_type=NOTIFICATION, route_id="EGOV_PORTAL", message_date=now, sender_id="LICGATE",
                channel=Channel.PORTAL, request_number=app.request_number,
                registration_number=app.registration_number, status=Status.REGISTERED, changed_at=now,
                due_at=app.due_at), TZ)
            bodies.append(body)
            outbox.append(NewOutboxMessage(application_id=app.id, kind=OutboxKind.NOTIFICATION,
                                           message_id=message_id, body=body))
        storage.apply_transition(app.id, Transition(recorded_at=now,
            step=StepRecord(step=Step.REGISTERED, actor="bench", at=now, source="bench"),
            expected_last_step=None, new_status=Status.REGISTERED, outbox=tuple(outbox)))
        if n % 100 == 99:
            print(f"    queued {(n + 1) * per_application} messages", file=sys.stderr)
    return bodies


def floor_seconds(url: str, bodies: list[bytes]) -> float:
    with httpx.Client(headers={"Content-Type": "text/xml; charset=utf-8"}) as client:
        started = time.perf_counter()
        for body in bodies:
            client.post(url + "/shep/async", content=body).raise_for_status()
        return time.perf_counter() - started


def drain(storage: Storage, worker: DeliveryWorker, timeout: float = 600.0) -> float:
    started = time.perf_counter()
    worker.start()
    try:
        while storage.outbox_backlog() > 0:
            if time.perf_counter() - started > timeout:
                raise RuntimeError("the outbox did not drain")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        worker.stop()


def worker_for(storage: Storage, url: str, concurrency: int) -> DeliveryWorker:
    """The gateway's delivery worker, as `gateway.app` builds it, for this receiver."""
    outbound = OutboundConfig(shep_async_url=url + "/shep/async", poll_seconds=0.01, backoff_initial_seconds=0.4,
                              backoff_max_seconds=1.0, max_attempts=100, concurrency=concurrency, timeout_seconds=10.0)
    return DeliveryWorker(outbound, storage, Clock(), Metrics())


def run(name: str, storage_url: str, url: str, quick: bool, concurrency: int) -> None:
    apps_t, apps_b = (25, 100) if quick else (100, 500)
    per = 20

    storage = open_storage(storage_url, pool_size=concurrency + 2)
    storage.migrate()
    try:
        print(f"[{name}] throughput: {apps_t * per} messages, receiver accepting", file=sys.stderr)
        bodies = fill(storage, apps_t, per)
        took = drain(storage, worker_for(storage, url, concurrency))
        floor = floor_seconds(url, bodies)
        n = len(bodies)
        print(f"{name:8} throughput     {n:6d} msgs  worker {took:7.2f} s ({n / took:7.0f}/s)   "
              f"floor {floor:6.2f} s ({n / floor:7.0f}/s)   ratio {took / floor:5.2f}x")

        print(f"[{name}] backlog: {apps_b * per} messages, receiver refusing", file=sys.stderr)
        httpx.post(url + "/refuse")
        bodies = fill(storage, apps_b, per)
        worker = worker_for(storage, url, concurrency)
        # A failed attempt at every application's first message, as during an outage.
        attempted = 0
        while attempted < apps_b:
            attempted += worker.run_once()
        httpx.post(url + "/accept")
        took = drain(storage, worker)
        floor = floor_seconds(url, bodies)
        n = len(bodies)
        print(f"{name:8} backlog drain  {n:6d} msgs  worker {took:7.2f} s ({n / took:7.0f}/s)   "
              f"floor {floor:6.2f} s ({n / floor:7.0f}/s)   ratio {took / floor:5.2f}x")
    finally:
        storage.close()


@contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 + 2,000 messages instead of 2,000 + 10,000")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--concurrency", type=int, default=OutboundConfig().concurrency)
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return 0
    with receiver() as url:
        with tempfile.TemporaryDirectory() as tmp:
            run("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", url, args.quick, args.concurrency)
        dsn = os.environ.get("LICGATE_TEST_PG_DSN", "")
        if dsn and not args.sqlite_only:
            with pg_schema(dsn) as pg_url:
                run("postgres", pg_url, url, args.quick, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
