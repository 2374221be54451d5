"""Intake worker processes (`gateway.intake.pool`): they examine what the serving process stores, a dead one
fails only what it held and is replaced, ones that cannot start leave intake to the serving process, and
none outlives a gateway killed with SIGKILL."""

from __future__ import annotations

import os
import pickle
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from adapters import egov
from gateway.app import create_app
from gateway.calendar import WorkingCalendar
from signing.pki import Pki
from tests.intake.conftest import config_table, make_config, make_examiner, write_config_file
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.process import GatewayProcess
from tests.support.server import serve
from tests.support.wait import wait_until


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_examination_survives_the_trip_between_processes(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    examiner = make_examiner(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")
    body = envelope(sign(application_xml(), pki))
    received_at = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    exam = examiner.examine(body, received_at)
    assert exam.error is None and exam.payload_span is not None
    back = pickle.loads(pickle.dumps(exam.detach()))
    assert back == exam and back.payload is None
    assert bytes(back.payload_of(body)) == bytes(examiner.examine(body, received_at).payload_of(body))
    # The receipt and the answer come rendered around the registration number's place.
    assert back.due_at == WorkingCalendar(config.calendar).term_deadline(received_at, config.terms["ISSUE"])
    receipt = back.receipt[0] + b"MED-2026-000042" + back.receipt[1]
    assert etree.fromstring(receipt).findtext(f"{{{egov.NS}}}registrationNumber") == "MED-2026-000042"
    answer = etree.fromstring(back.response[0] + b"MED-2026-000042" + back.response[1])
    assert answer.findtext(".//status/code") == "SCSS001"
    assert answer.find(f".//data/{{{egov.NS}}}Receipt/{{{egov.NS}}}registrationNumber").text == "MED-2026-000042"

    refused = examiner.examine(envelope(sign(application_xml(iin="871008401428"), pki)), received_at)
    back = pickle.loads(pickle.dumps(refused.detach()))
    assert (back.error.code, back.error.data, back.late) == ("IIN_INVALID", refused.error.data, True)


def test_workers_examine_and_none_outlives_a_killed_gateway(pki: Pki, tmp_path: Path) -> None:
    table = config_table(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=2)
    process = GatewayProcess(write_config_file(tmp_path / "licgate.toml", table)).start()
    try:
        assert post(process.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        workers = [p for p in _children(process.proc.pid)
                   if b"gateway.intake.pool" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
    finally:
        process.kill()
    assert wait_until(lambda: not any(_alive(p) for p in workers)), "intake workers outlived their gateway"


def test_a_worker_that_dies_fails_only_what_it_held_and_is_replaced(pki: Pki, tmp_path: Path) -> None:
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=1))
    with serve(app) as server, ThreadPoolExecutor(1) as pool:
        gw = app.state.services
        intake = gw.intake
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        [worker] = intake.pool.worker_pids()

        # Frozen mid-work, then killed: the request it held is INTERNAL_ERROR and nothing of it is stored.
        os.kill(worker, signal.SIGSTOP)
        message_id = str(uuid.uuid4())
        held = pool.submit(post, server.url, envelope(sign(application_xml(), pki), message_id=message_id))
        time.sleep(0.5)
        os.kill(worker, signal.SIGKILL)
        reply = held.result(timeout=30)
        assert reply.fault_code == "INTERNAL_ERROR" and reply.http_status == 500
        assert gw.storage.find_by_message_id("EGOV_PORTAL", message_id) is None

        # A new worker takes its place; the sender's retry is accepted.
        assert wait_until(lambda: intake.pool.worker_pids() not in ([], [worker]))
        retry = post(server.url, envelope(sign(application_xml(), pki), message_id=message_id))
        assert retry.status_code == "SCSS001"
        assert intake.pool.worker_pids() != [worker] and not intake.pool.disabled
        assert gw.storage.queue_depth() == 2


def test_workers_that_cannot_start_leave_intake_to_the_serving_process(pki: Pki, tmp_path: Path) -> None:
    table = config_table(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=1)
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    for pem in pki.ca_dir.iterdir():
        (ca_dir / pem.name).write_bytes(pem.read_bytes())
    table["trust"]["ca_dir"] = str(ca_dir)
    app = create_app(_config(table))
    # The serving process has read its trust store; a worker starting now finds none to read.
    for pem in ca_dir.iterdir():
        pem.unlink()
    ca_dir.rmdir()
    with serve(app) as server:
        intake = app.state.services.intake
        replies = [post(server.url, envelope(sign(application_xml(), pki))) for _ in range(3)]
        assert [r.status_code for r in replies] == ["SCSS001"] * 3
        assert intake.pool.disabled and intake.pool.worker_pids() == []


def _config(table: dict):  # noqa: ANN202
    from gateway.config import parse_config

    return parse_config(table, base_dir=Path.cwd())


@pytest.mark.parametrize("processes", [0, 1])
def test_the_same_answers_with_and_without_workers(pki: Pki, tmp_path: Path, processes: int) -> None:
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=processes))
    bodies = [envelope(sign(application_xml(), pki)),
              envelope(sign(application_xml(iin="871008401428"), pki)),
              envelope(sign(application_xml(), pki), password="wrong"),
              b"<not-xml"]
    with serve(app) as server:
        intake = app.state.services.intake
        assert (intake.pool is not None) == bool(processes)
        codes = [(r.status_code or r.fault_code) for r in (post(server.url, body) for body in bodies)]
    assert codes == ["SCSS001", "IIN_INVALID", "SENDER_AUTH_FAILED", "MALFORMED_MESSAGE"]


def test_a_worker_that_hangs_is_killed_and_replaced(pki: Pki, tmp_path: Path) -> None:
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=1))
    with serve(app) as server:
        intake = app.state.services.intake
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        [worker] = intake.pool.worker_pids()
        intake.pool.examine_timeout = 1.0
        os.kill(worker, signal.SIGSTOP)  # alive, silent: no end of its pipe will tell
        started = time.monotonic()
        message_id = str(uuid.uuid4())
        reply = post(server.url, envelope(sign(application_xml(), pki), message_id=message_id))
        assert reply.fault_code == "INTERNAL_ERROR" and time.monotonic() - started < 10
        # Out of rotation at once: the next request is examined (here, or by the replacement), not sent to it.
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        assert wait_until(lambda: not _alive(worker))
        assert wait_until(lambda: intake.pool.worker_pids() not in ([], [worker]))
        retry = post(server.url, envelope(sign(application_xml(), pki), message_id=message_id))
        assert retry.status_code == "SCSS001"


def test_a_store_batch_that_raises_answers_internal_error_and_the_next_is_stored(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0))
    with serve(app) as server:
        intake = app.state.services.intake
        real = intake.conclude_many
        calls: list[int] = []

        def broken_once(items):  # noqa: ANN001, ANN202
            calls.append(len(items))
            if len(calls) == 1:
                raise RuntimeError("a bug in the store path")
            return real(items)

        monkeypatch.setattr(intake, "conclude_many", broken_once)
        first = post(server.url, envelope(sign(application_xml(), pki)))
        assert first.fault_code == "INTERNAL_ERROR" and b"a bug" not in first.body
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        assert app.state.services.storage.queue_depth() == 1


def test_an_application_is_stored_when_the_queue_had_room_at_the_second_look(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The depth is read once to skip the replay lookup and again to answer OVERLOADED: a queue that drained
    # (or a database that answered) in between must not turn a valid application into an error.
    app = create_app(make_config(pki, f"sqlite:///{tmp_path / 'db.sqlite'}", intake_processes=0))
    with serve(app) as server:
        intake = app.state.services.intake
        monkeypatch.setattr(intake, "_over_capacity", lambda: True)
        reply = post(server.url, envelope(sign(application_xml(), pki)))
        assert reply.status_code == "SCSS001"
        assert app.state.services.storage.queue_depth() == 1


def test_an_unreadable_answer_stops_the_worker_and_nothing_it_sends_later_is_believed() -> None:
    import asyncio
    import types
    from collections import deque

    from gateway.intake.examiner import Examination
    from gateway.intake.pool import _Worker

    worker = _Worker.__new__(_Worker)  # no process: its pipe is driven by hand
    killed: list[bool] = []
    worker.proc = types.SimpleNamespace(pid=4242, kill=lambda: killed.append(True))
    worker.pending, worker.ready, worker.broken, worker.writer, worker.reader = deque(), True, False, None, None
    worker.hung = False
    loop = asyncio.new_event_loop()
    try:
        held = [loop.create_future(), loop.create_future()]
        worker.pending.extend((f, 0.0) for f in held)
        worker.on_frame(b"\x80\x05not a pickle")
        assert worker.broken and killed and not any(f.done() for f in held)
        worker.on_frame(pickle.dumps(Examination()))  # would answer the wrong request: ignored
        assert not any(f.done() for f in held)
        worker.fail_pending()  # what its pipe's end does
        assert [f.result().error.code for f in held] == ["INTERNAL_ERROR", "INTERNAL_ERROR"]
    finally:
        loop.close()
