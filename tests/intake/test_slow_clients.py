"""Slow and broken clients against `licgate serve` (the real CLI and its HTTP protocol): a head or a body
trickled a byte at a time is cut off at its time limit, idle connections from one address are bounded, and
a client that goes away mid-request leaves nothing half-stored and nothing acknowledged that was not."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage.sqlite import SqliteStorage
from signing.pki import Pki
from tests.intake.conftest import config_table, write_config_file
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.process import GatewayProcess

HEAD_TIMEOUT, BODY_TIMEOUT, PER_CLIENT = 1.0, 1.5, 20


@pytest.fixture
def served(pki: Pki, tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    db = tmp_path / "licgate.db"
    table = config_table(pki, f"sqlite:///{db}", intake_processes=0, header_timeout_seconds=HEAD_TIMEOUT,
                         body_timeout_seconds=BODY_TIMEOUT, max_connections_per_client=PER_CLIENT)
    gateway = GatewayProcess(write_config_file(tmp_path / "licgate.toml", table)).start()
    try:
        yield gateway, db
    finally:
        gateway.stop()


def _connect(gateway: GatewayProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", gateway.port))
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _trickle(sock: socket.socket, data: bytes, every: float, budget: float) -> bool:
    """Send `data` a byte every `every` seconds for at most `budget` seconds; False when the server cut
    the connection first."""
    deadline = time.monotonic() + budget
    for byte in data:
        if time.monotonic() > deadline:
            return True
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return False
        time.sleep(every)
    return True


def _head(length: int) -> bytes:
    return (f"POST /shep/sync HTTP/1.1\r\nHost: gateway\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"SOAPAction: \"\"\r\nContent-Length: {length}\r\n\r\n").encode()


def _applications(db: Path) -> int:
    storage = SqliteStorage(str(db))
    try:
        return storage.queue_depth()
    finally:
        storage.close()


def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off(served: tuple[GatewayProcess, Path]) -> None:
    gateway, _ = served
    sock = _connect(gateway)
    started = time.monotonic()
    assert not _trickle(sock, _head(100) * 3, every=0.1, budget=10), "the server never cut the trickle"
    assert time.monotonic() - started < HEAD_TIMEOUT + 3


def test_a_body_trickled_a_byte_at_a_time_is_cut_off_and_nothing_is_stored(
        served: tuple[GatewayProcess, Path], pki: Pki) -> None:
    gateway, db = served
    body = envelope(sign(application_xml(), pki))
    sock = _connect(gateway)
    sock.sendall(_head(len(body)))
    started = time.monotonic()
    assert not _trickle(sock, body, every=0.1, budget=10) or _closed_by_server(sock, 3)
    assert time.monotonic() - started < BODY_TIMEOUT + 3
    # The gateway serves others as before, and the trickled application was never stored.
    assert post(gateway.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
    assert _applications(db) == 1


def test_idle_connections_from_one_address_are_bounded_and_closed(served: tuple[GatewayProcess, Path],
                                                                 pki: Pki) -> None:
    gateway, _ = served
    idle = [_connect(gateway) for _ in range(PER_CLIENT)]
    time.sleep(0.2)
    one_more = _connect(gateway)
    one_more.settimeout(3)
    answer = one_more.recv(1024)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer, answer
    assert _closed_by_server(one_more, 3)
    # Another address is not held up by them.
    other = _connect(gateway, source="127.0.0.2")
    body = envelope(sign(application_xml(), pki))
    other.sendall(_head(len(body)) + body)
    other.settimeout(30)
    assert other.recv(65536).startswith(b"HTTP/1.1 200"), "another client address was refused"
    other.close()
    # The idle ones sent nothing: each is closed at the head's time limit, and the address may connect again.
    assert all(_closed_by_server(sock, HEAD_TIMEOUT + 3) for sock in idle)
    time.sleep(0.2)
    assert post(gateway.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"


def test_a_client_gone_mid_body_leaves_nothing_and_one_gone_before_the_answer_gets_it_on_retry(
        served: tuple[GatewayProcess, Path], pki: Pki) -> None:
    gateway, db = served
    body = envelope(sign(application_xml(), pki))
    half = _connect(gateway)
    half.sendall(_head(len(body)) + body[: len(body) // 2])
    half.close()
    time.sleep(0.5)
    assert _applications(db) == 0  # nothing half-stored

    # The whole body, then gone before the answer: whatever the gateway did with it, a retry of the same
    # message gets one receipt for one application (stored once, acknowledged only when stored).
    gone = _connect(gateway)
    gone.sendall(_head(len(body)) + body)
    gone.close()
    time.sleep(1.0)
    first = post(gateway.url, body)
    again = post(gateway.url, body)
    assert first.status_code == again.status_code == "SCSS001"
    assert first.receipt("registrationNumber") == again.receipt("registrationNumber")
    assert _applications(db) == 1
