"""Nothing answered SCSS001 is lost, nothing refused is queued: a real gateway process answering concurrent
signed submissions is killed with SIGKILL mid-load; the database is then checked directly."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from lxml import etree

from gateway.storage import open_storage
from signing.pki import Pki
from tests.intake.conftest import config_table, write_config_file
from tests.intake.helpers import PROVIDER_BIN, TYPES, application_xml, envelope, sign
from tests.support.process import GatewayProcess

pytestmark = pytest.mark.slow


def _outcome(content: bytes) -> str:
    root = etree.fromstring(content)
    return (root.findtext(f".//{{{TYPES}}}SendMessageResponse/response/responseInfo/status/code")
            or root.findtext(f".//{{{TYPES}}}SendMessageFault1_SendMessageFault/errorCode") or "?")


def test_sigkill_mid_load_loses_no_accepted_application(pki: Pki, storage_url: str, tmp_path: Path) -> None:
    # Every fourth application has an applicant IIN with a wrong check digit: answered IIN_INVALID.
    bodies: list[tuple[str, bytes]] = []
    for i in range(160):
        message_id = str(uuid.uuid4())
        iin = "871008401428" if i % 4 == 3 else "871008401427"
        bodies.append((message_id, envelope(sign(application_xml(iin=iin), pki), message_id=message_id)))

    config = write_config_file(tmp_path / "licgate.toml", config_table(pki, storage_url))
    process = GatewayProcess(config).start()
    answers: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def send(item: tuple[str, bytes]) -> None:
        message_id, body = item
        if stop.is_set():
            return
        try:
            r = httpx.post(process.url + "/shep/sync", content=body, headers={"Content-Type": "text/xml"},
                           timeout=30)
        except httpx.HTTPError:
            return  # no answer: may or may not have been stored, either is allowed
        with lock:
            answers[message_id] = _outcome(r.content)

    def killer() -> None:
        while True:
            with lock:
                accepted = sum(1 for v in answers.values() if v == "SCSS001")
            if accepted >= 30:
                break
            time.sleep(0.005)
        process.kill()
        stop.set()

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, bodies))
    finally:
        stop.set()
        kill_thread.join(timeout=60)
        process.kill()

    accepted = [m for m, v in answers.items() if v == "SCSS001"]
    refused = [m for m, v in answers.items() if v != "SCSS001"]
    assert len(accepted) >= 30 and refused, answers
    assert len(answers) < len(bodies), "the gateway was not killed mid-load"
    assert set(answers.values()) <= {"SCSS001", "IIN_INVALID", "OVERLOADED"}

    storage = open_storage(storage_url)
    try:
        lease = storage.lease(PROVIDER_BIN, 1000, 60, datetime.now(UTC))
        queued_ids = {a.id for a in lease.applications}
        for message_id in accepted:
            record = storage.find_by_message_id("EGOV_PORTAL", message_id)
            assert record is not None, f"{message_id} was answered SCSS001 and is gone"
            assert record.id in queued_ids, f"{message_id} is stored but not queued"
        for message_id in refused:
            assert storage.find_by_message_id("EGOV_PORTAL", message_id) is None
            if answers[message_id] == "IIN_INVALID":
                # A refusal is stored before it is answered: every one answered before the kill is in the log.
                logged = storage.message_log(message_id=message_id)
                assert any(e.direction == "in" and e.verdict == "IIN_INVALID" for e in logged), message_id
        assert storage.queue_depth() == len(queued_ids)
    finally:
        storage.close()

    # The gateway comes back on the same database and answers a repeat with the first receipt.
    again = GatewayProcess(config).start()
    try:
        message_id = accepted[0]
        body = dict(bodies)[message_id]
        r = httpx.post(again.url + "/shep/sync", content=body, headers={"Content-Type": "text/xml"}, timeout=30)
        assert _outcome(r.content) == "SCSS001"
    finally:
        again.stop()
