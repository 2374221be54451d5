"""PostgreSQL going away and coming back: ping reports StorageUnavailable (healthz turns 503), writes fail
cleanly instead of half-succeeding, and the pool reconnects by itself. The outage is a TCP proxy that we
stop and start between the storage and the real server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.storage import StorageError, StorageUnavailable
from gateway.storage.postgres import PostgresStorage
from tests.storage.factory import new_application, receipt_for


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """The server vanishes: the listener and every open connection are closed."""
        assert self._listener is not None
        try:
            # Wakes the thread blocked in accept(); close() alone would leave the socket listening.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxy(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    params = conninfo_to_dict(pg_url)
    p = TcpProxy((str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)))
    p.start()
    yield p, make_conninfo(pg_url, host="127.0.0.1", port=p.port, connect_timeout=2)
    try:
        p.stop()
    except (AssertionError, OSError):
        pass


def test_postgres_outage_shows_as_unavailable_and_storage_recovers_when_it_returns(
        proxy: tuple[TcpProxy, str]) -> None:
    p, url = proxy
    storage = PostgresStorage(url, pool_size=2)
    try:
        storage.migrate()
        before = storage.store_application(new_application(1), receipt_for)
        storage.ping()

        p.stop()
        with pytest.raises(StorageUnavailable):
            storage.ping()
        with pytest.raises(StorageError):
            storage.store_application(new_application(2), receipt_for)

        p.start()  # same port
        deadline = time.monotonic() + 30
        while True:
            try:
                storage.ping()
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "the pool did not reconnect"
                time.sleep(0.2)
        assert storage.get_application(before.id) == before
        assert storage.find_by_message_id("EGOV_PORTAL", "msg-2") is None  # the failed write left nothing
        storage.store_application(new_application(3), receipt_for)
        assert storage.queue_depth() == 2
    finally:
        storage.close()


def test_connections_the_server_dropped_are_replaced_not_failed(pg_url: str) -> None:
    """After a PostgreSQL restart or failover every pooled connection is dead; the next requests must get
    fresh ones instead of failing one after another."""
    import psycopg

    name = f"licgate_test_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}&application_name={name}"
    storage = PostgresStorage(url, pool_size=4)
    try:
        storage.migrate()
        record = storage.store_application(new_application(1), receipt_for)
        barrier = threading.Barrier(4)

        def hold() -> None:
            with storage._connection(transaction=False) as tx:
                barrier.wait()
                tx.one("ping")

        threads = [threading.Thread(target=hold) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with psycopg.connect(**(conninfo_to_dict(pg_url) | {"options": ""}), autocommit=True) as conn:
            killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE application_name = %s", (name,)).fetchone()[0]
        assert killed >= 1
        for _ in range(6):
            assert storage.get_application(record.id) is not None
    finally:
        storage.close()
