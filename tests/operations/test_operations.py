"""Operations (docs/operations.md) and the foundation's promises at process level: /healthz with each
dependency's state and 503 when storage is unreachable, /metrics in Prometheus text, `licgate serve`
creating an empty database, and two gateway processes leasing from one PostgreSQL database."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from gateway.app import create_app
from gateway.storage.postgres import PostgresStorage
from signing.pki import Pki
from tests.intake.conftest import config_table, make_config, write_config_file
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.storage.test_outage import TcpProxy
from tests.support.process import GatewayProcess
from tests.support.server import serve

TOKEN = "provider-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_healthz_reports_each_dependency_and_metrics_are_prometheus_text(pki: Pki, tmp_path: Path) -> None:
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'ops.db'}"))
    with serve(app) as server:
        health = httpx.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["checks"]["storage"] == "ok"
        reply = post(server.url, envelope(sign(application_xml(), pki)))
        assert reply.status_code == "SCSS001"
        metrics = httpx.get(server.url + "/metrics", timeout=10)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert "licgate_queue_depth 1.0" in lines
        assert any(line.startswith("licgate_audit_records ") for line in lines)
        assert any(line.startswith("licgate_audit_pending_records ") for line in lines)
        assert any(line.startswith("licgate_requests_total{") and 'code="SCSS001"' in line for line in lines)


def test_healthz_is_503_when_postgresql_is_unreachable(pki: Pki, pg_url: str) -> None:
    params = conninfo_to_dict(pg_url)
    proxy = TcpProxy((params.get("host", "127.0.0.1"), int(params.get("port", 5432))))
    proxy.start()
    parts = urlsplit(pg_url)
    url = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    # A short pool checkout: with the database gone, every background stop (heartbeat row, claims, the last
    # audit tick) waits one checkout, and the default 10 s each made this test 23 s long.
    app = create_app(make_config(pki, url), storage=PostgresStorage(url, checkout_timeout=1.0))
    with serve(app) as server:
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        proxy.stop()
        down = httpx.get(server.url + "/healthz", timeout=30)
        assert down.status_code == 503
        assert down.json()["status"] != "ok"
        assert down.json()["checks"]["storage"].startswith("unreachable")


def test_serve_on_an_empty_database_creates_it(pki: Pki, tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "licgate.db"
    db.parent.mkdir()
    config = write_config_file(tmp_path / "licgate.toml", config_table(pki, f"sqlite:///{db}"))
    gateway = GatewayProcess(config).start()
    try:
        assert db.exists()
        reply = post(gateway.url, envelope(sign(application_xml(), pki)))
        assert reply.status_code == "SCSS001"
    finally:
        gateway.stop()


def test_two_gateway_processes_never_lease_one_application_twice(pki: Pki, pg_url: str, tmp_path: Path) -> None:
    """Two `licgate serve` processes on one PostgreSQL database lease concurrently over HTTP with short
    leases, acking some and letting others expire: no application is in two live leases at once, and
    every one is acked exactly once in the end."""
    config = write_config_file(tmp_path / "licgate.toml", config_table(pki, pg_url))
    a = GatewayProcess(config).start()
    b = GatewayProcess(config).start()
    try:
        total = 40
        for _ in range(total):
            assert post(a.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"

        lease_seconds = 1.0
        intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        acked: list[str] = []
        lock = threading.Lock()
        errors: list[str] = []

        def worker(url: str, ack_every: int) -> None:
            n = 0
            deadline = time.monotonic() + 40
            with httpx.Client(base_url=url, headers=AUTH, timeout=15) as client:
                while time.monotonic() < deadline:
                    with lock:
                        if len(acked) >= total:
                            return
                    started = time.monotonic()
                    r = client.post("/provider/v1/leases", json={"max": 5, "lease_seconds": lease_seconds})
                    if r.status_code != 200:
                        errors.append(f"lease {r.status_code} {r.text[:200]}")
                        return
                    finished = time.monotonic()
                    lease = r.json()
                    ids = [item["id"] for item in lease["applications"]]
                    with lock:
                        for app_id in ids:
                            # The server granted the lease between `started` and `finished`, so it was
                            # surely live until started + lease_seconds and surely granted by `finished`.
                            intervals[app_id].append((finished, started + lease_seconds, lease["lease_id"]))
                    keep = []
                    for app_id in ids:
                        n += 1
                        if n % ack_every:
                            keep.append(app_id)  # acked; the rest are left to expire
                    if keep:
                        r = client.post(f"/provider/v1/leases/{lease['lease_id']}/ack", json={"ids": keep})
                        if r.status_code != 200:
                            errors.append(f"ack {r.status_code} {r.text[:200]}")
                            return
                        with lock:
                            acked.extend(r.json().get("acked", keep))
                    if not ids:
                        time.sleep(0.05)

        threads = [threading.Thread(target=worker, args=(a.url, 3)), threading.Thread(target=worker, args=(b.url, 4))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sorted(acked) == sorted(set(acked)), "an application was acked twice"
        assert len(acked) == total, f"{total - len(acked)} applications were never acked"
        for app_id, spans in intervals.items():
            spans.sort()
            for (_granted1, live_until1, l1), (granted2, _live2, l2) in zip(spans, spans[1:], strict=False):
                # Re-leasing is allowed only once the earlier lease expired: the later grant cannot have
                # been answered before the earlier lease was surely over.
                assert granted2 >= live_until1, f"{app_id} leased by {l1} and {l2} at once"
        assert httpx.get(a.url + "/metrics").text.count("licgate_queue_depth 0.0") == 1
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    from signing.pki import init_pki, load_pki

    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return load_pki(directory)
