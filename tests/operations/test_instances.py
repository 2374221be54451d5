"""Several `licgate serve` processes on one PostgreSQL (CONTRACT section 11), as real processes over loopback:
three instances under load with one SIGKILLed and restarted, a lease long-polled on one instance woken by
an intake on another, and SIGTERM draining an instance."""

from __future__ import annotations

import itertools
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from signing.pki import Pki
from tests.intake.conftest import config_table, write_config_file
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.async_messages import read_send_message
from tests.support.process import GatewayProcess
from tests.support.server import serve
from tests.workflow.conftest import Receiver, signed_decision

TOKEN = "provider-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ASTANA = ZoneInfo("Asia/Almaty")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    from signing.pki import init_pki, load_pki

    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return load_pki(directory)


@pytest.fixture
def fast_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preparation only: signing reloads the same PEM key for every payload (an RSA key's load and check cost
    tens of ms); a cache makes preparing hundreds of signed applications take seconds, not half a minute."""
    import functools
    import types

    from cryptography.hazmat.primitives import serialization

    import signing.signer

    cached = functools.lru_cache(maxsize=8)(serialization.load_pem_private_key)
    monkeypatch.setattr(signing.signer, "serialization",
                        types.SimpleNamespace(**{**vars(serialization), "load_pem_private_key": cached}))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(rec.app()) as server:
        rec.url = server.url + "/shep/async"
        yield rec


def cluster_config(pki: Pki, pg_url: str, tmp_path: Path, receiver_url: str, **server: Any) -> Path:
    """A config for every instance: short heartbeats, a sweep every second, and a calendar on which every
    minute of today and tomorrow is working time, so that a step posted 90 s ahead is late whatever the
    hour (REGISTERED and SENT_TO_MANAGEMENT are due one working minute after receipt)."""
    today = datetime.now(ASTANA).date()
    table = config_table(pki, pg_url, intake_processes=0, shutdown_seconds=10, **server)
    table["outbound"] = {"shep_async_url": receiver_url, "poll_seconds": 0.5, "timeout_seconds": 2.0,
                         "claim_seconds": 6.0, "backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.5}
    table["instances"] = {"heartbeat_seconds": 0.5, "timeout_seconds": 3.0}
    table["step_limits"] = {"register_minutes": 1, "breach_sweep_seconds": 1.0}
    table["calendar"] = {"work_start": "00:00", "work_end": "23:59", "break_start": "12:00", "break_end": "12:00",
                         "extra_working_days": [str(today), str(today + timedelta(days=1))]}
    table["storage"]["pool_size"] = 4
    return write_config_file(tmp_path / "licgate.toml", table)


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def breach_rows(pg_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT application_id, step, counted_by FROM breaches ORDER BY 1, 2").fetchall()


def metric_sum(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_three_instances_under_load_with_one_killed_lose_and_duplicate_nothing(
    pki: Pki, pg_url: str, tmp_path: Path, receiver: Receiver, fast_signing: None,
) -> None:
    config = cluster_config(pki, pg_url, tmp_path, receiver.url)
    gateways = [GatewayProcess(config).start(timeout=60) for _ in range(3)]
    urls = [g.url for g in gateways]
    total, full_flow_every, senders = 150, 5, 16
    bodies = [envelope(sign(application_xml(), pki)) for _ in range(total)]
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    answered: dict[str, str] = {}  # messageId -> registration number, from every SCSS001 receipt
    errors: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        turn = itertools.count(threading.get_ident())
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            message_id = body.split(b"<messageId>")[1].split(b"</messageId>")[0].decode()
            for _ in range(60):
                url = urls[next(turn) % 3]
                try:
                    reply = post(url, body)
                except (httpx.HTTPError, ValueError):
                    time.sleep(0.05)  # that instance is down: the load balancer tries another
                    continue
                if reply.status_code == "SCSS001":
                    with lock:
                        answered[message_id] = reply.receipt("registrationNumber") or ""
                    break
                if reply.fault_code not in ("OVERLOADED", "INTERNAL_ERROR"):
                    errors.append(f"{message_id}: {reply.fault_code} {reply.error_data}")
                    break
                time.sleep(0.05)
            else:
                errors.append(f"{message_id}: never answered")

    leased: dict[str, list[str]] = defaultdict(list)  # application id -> the leases that handed it out
    processed: list[str] = []
    stop_leasing = threading.Event()

    def call(pick: Iterator[str], method: str, path: str, **kw: Any) -> httpx.Response:
        """One provider call, retried on the next instance while one is down; a repeat is answered as the
        first was (steps with the same `at`, identical results, acks of the same lease)."""
        for _ in range(60):
            try:
                reply = httpx.request(method, next(pick) + path, headers={**AUTH, **kw.pop("headers", {})},
                                      timeout=20, **kw)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if reply.status_code < 500:
                return reply
            time.sleep(0.05)
        raise AssertionError(f"{method} {path}: no instance answered")

    def provider(first: int) -> None:
        pick = itertools.cycle([urls[first], urls[(first + 1) % 3]])
        n = 0
        while not stop_leasing.is_set():
            lease = call(pick, "POST", "/provider/v1/leases", json={"max": 10, "lease_seconds": 20,
                                                                      "wait_seconds": 1}).json()
            ids = [a["id"] for a in lease["applications"]]
            with lock:
                for app in lease["applications"]:
                    leased[app["id"]].append(lease["lease_id"])
            if not ids:
                continue
            acked = call(pick, "POST", f"/provider/v1/leases/{lease['lease_id']}/ack", json={"ids": ids}).json()
            assert sorted(acked["acked"]) == sorted(ids), acked
            for app in lease["applications"]:
                n += 1
                steps = ["REGISTERED"] + (["SENT_TO_MANAGEMENT", "RETURNED_FOR_PREPARATION", "RESULT_PREPARED"]
                                          if n % full_flow_every == 0 else [])
                for offset, step in enumerate(steps):
                    reply = call(pick, "POST", f"/provider/v1/applications/{app['id']}/steps",
                                 json={"step": step, "actor": "Серікова Г.", "at": at(90 + offset)})
                    assert reply.status_code == 200, reply.text
                if len(steps) > 1:
                    reply = call(pick, "PUT", f"/provider/v1/applications/{app['id']}/result",
                                 content=signed_decision(pki, app["registration_number"]),
                                 headers={"Content-Type": "application/xml"})
                    assert reply.status_code == 200, reply.text
                    reply = call(pick, "POST", f"/provider/v1/applications/{app['id']}/steps",
                                 json={"step": "ISSUED", "actor": "Серікова Г.", "at": at(98)})
                    assert reply.status_code == 200, reply.text
                with lock:
                    processed.append(app["id"])

    threads = [threading.Thread(target=send) for _ in range(senders)]
    providers = [threading.Thread(target=provider, args=(i,)) for i in (0, 1)]
    try:
        for t in threads + providers:
            t.start()
        # SIGKILL one instance a third of the way through the load, and start it again a second later.
        while len(answered) < total // 3 and any(t.is_alive() for t in threads):
            time.sleep(0.02)
        gateways[2].kill()
        time.sleep(1.0)
        gateways[2].start(timeout=60)
        for t in threads:
            t.join(timeout=240)
        deadline = time.monotonic() + 120
        while len(processed) < len(answered) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_leasing.set()
        for t in providers:
            t.join(timeout=60)
        assert not errors, errors[:5]
        assert len(answered) == total

        # Nothing answered SCSS001 is lost, and nothing is stored twice.
        with psycopg.connect(pg_url) as conn:
            stored = dict(conn.execute("SELECT message_id, registration_number FROM applications").fetchall())
        assert stored == answered

        # Nothing leased twice: each application was handed out by one lease, and every one was processed.
        assert sorted(processed) == sorted(set(processed))
        assert len(processed) == total
        assert {app_id: ls for app_id, ls in leased.items() if len(ls) > 1} == {}

        # Every outbound message delivered, in order per application (each at least once; repeats are
        # the same message again: at least once after a kill).
        with psycopg.connect(pg_url) as conn:
            expected = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            by_app = defaultdict(list)
            for app_id, message_id in conn.execute("SELECT application_id, message_id FROM outbox ORDER BY id"):
                by_app[app_id].append(message_id)
        deadline = time.monotonic() + 60
        while len({read_send_message(b).message_id for b in receiver.bodies}) < expected:
            assert time.monotonic() < deadline, "not every outbound message was delivered"
            time.sleep(0.1)
        arrived: dict[str, list[str]] = defaultdict(list)
        owner = {m: a for a, ms in by_app.items() for m in ms}
        for message in receiver.messages():
            ids = arrived[owner[message.message_id]]
            if message.message_id not in ids:
                ids.append(message.message_id)
        assert arrived == by_app, "an application's messages arrived out of order"

        # Each breach counted once: every live instance's metric is the breaches it recorded, and every
        # recorded breach is of one instance (the killed one's count died with it; its rows remain).
        live = [httpx.get(u + "/healthz", timeout=10).json() for u in urls]
        assert sorted(i["id"] for i in live[0]["instances"]) == sorted(h["instance"] for h in live)
        for _ in range(50):
            before = breach_rows(pg_url)
            metrics = {h["instance"]: metric_sum(u, "licgate_deadline_breaches_total")
                       for h, u in zip(live, urls, strict=True)}
            if before == breach_rows(pg_url):
                break
        counted_by = defaultdict(int)
        for _, _, holder in before:
            counted_by[holder] += 1
        assert metrics == {h["instance"]: float(counted_by[h["instance"]]) for h in live}
        late = set(processed)  # REGISTERED was posted 90 s ahead for every one: late
        assert late <= {app_id for app_id, step, _ in before if step == "REGISTERED"}

        # One audit chain over what the three wrote (the killed one's records sequenced by the others).
        with psycopg.connect(pg_url) as conn:
            logged = conn.execute("SELECT count(*) FROM message_log").fetchone()[0]
        deadline = time.monotonic() + 30
        while True:
            verified = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--config", str(config)],
                                      capture_output=True, text=True, timeout=120)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            chained = int(re.search(r"^audit: intact, (\d+) records", verified.stdout, re.M)[1])
            if chained >= logged or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert chained >= logged, verified.stdout
    finally:
        stop_leasing.set()
        for g in gateways:
            g.stop()


def test_a_lease_waiting_on_one_instance_returns_within_200_ms_of_an_intake_on_another(
    pki: Pki, pg_url: str, tmp_path: Path, receiver: Receiver,
) -> None:
    config = cluster_config(pki, pg_url, tmp_path, receiver.url)
    a = GatewayProcess(config).start(timeout=60)
    b = GatewayProcess(config).start(timeout=60)
    try:
        body = envelope(sign(application_xml(), pki))
        with httpx.Client(base_url=a.url, headers=AUTH, timeout=30) as client:
            started = time.monotonic()
            empty = client.post("/provider/v1/leases", json={"wait_seconds": 0.5}).json()
            assert empty["applications"] == [] and time.monotonic() - started >= 0.5
            for _ in range(3):  # each round: a lease waits on A, an intake on B wakes it
                result: dict[str, Any] = {}

                def wait(result: dict[str, Any] = result) -> None:
                    reply = client.post("/provider/v1/leases", json={"max": 5, "wait_seconds": 20})
                    result["returned"] = time.monotonic()
                    result["lease"] = reply.json()

                waiter = threading.Thread(target=wait)
                waiter.start()
                time.sleep(0.5)  # the lease is waiting on A
                assert "returned" not in result
                reply = post(b.url, body)
                answered = time.monotonic()
                assert reply.status_code == "SCSS001"
                waiter.join(timeout=25)
                assert [x["registration_number"] for x in result["lease"]["applications"]] == [
                    reply.receipt("registrationNumber")]
                assert result["returned"] - answered < 0.2, f"woken {result['returned'] - answered:.3f} s later"
                body = envelope(sign(application_xml(), pki))
    finally:
        a.stop()
        b.stop()


def test_sigterm_answers_waiting_leases_finishes_requests_in_flight_and_exits_0(
    pki: Pki, pg_url: str, tmp_path: Path, receiver: Receiver,
) -> None:
    config = cluster_config(pki, pg_url, tmp_path, receiver.url)
    stopping = GatewayProcess(config).start(timeout=60)
    other = GatewayProcess(config).start(timeout=60)
    try:
        listed = httpx.get(other.url + "/healthz", timeout=10).json()["instances"]
        assert len(listed) == 2
        bodies = [envelope(sign(application_xml(), pki)) for _ in range(24)]
        results: list[Any] = []
        lease: dict[str, Any] = {}

        def waiting_lease() -> None:
            started = time.monotonic()
            reply = httpx.post(stopping.url + "/provider/v1/leases", json={"wait_seconds": 30}, headers=AUTH,
                               timeout=30)
            lease["status"], lease["seconds"] = reply.status_code, time.monotonic() - started

        def send(body: bytes) -> None:
            try:
                results.append(post(stopping.url, body))
            except httpx.HTTPError as exc:
                results.append(exc)

        waiter = threading.Thread(target=waiting_lease)
        waiter.start()
        time.sleep(0.5)
        senders = [threading.Thread(target=send, args=(b,)) for b in bodies]
        for t in senders:
            t.start()
        while not results:  # the first answer is out: the others are being handled
            time.sleep(0.005)
        assert stopping.proc is not None
        signalled = time.monotonic()
        stopping.proc.send_signal(signal.SIGTERM)
        waiter.join(timeout=15)
        assert lease["status"] == 200 and lease["seconds"] < 5, lease  # answered at the signal, not after 30 s
        stopping.proc.wait(timeout=15)
        assert stopping.proc.returncode == 0, stopping.log_path.read_text()[-2000:]
        assert time.monotonic() - signalled < 10 + 2  # [server] shutdown_seconds = 10
        for t in senders:
            t.join(timeout=10)
        # A request was either refused a connection (the instance no longer accepted) or answered: none
        # that got in was dropped.
        assert all(isinstance(r, httpx.ConnectError) or r.status_code == "SCSS001" for r in results), results
        accepted = {r.receipt("registrationNumber") for r in results if not isinstance(r, Exception)}
        assert len(accepted) > 1  # more than the first one were in flight, and finished
        with psycopg.connect(pg_url) as conn:
            stored = {r[0] for r in conn.execute("SELECT registration_number FROM applications")}
            rows = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        assert accepted <= stored
        assert rows == 1  # the stopped instance removed its heartbeat row; the other is listed alone
        assert len(httpx.get(other.url + "/healthz", timeout=10).json()["instances"]) == 1
    finally:
        stopping.stop()
        other.stop()
