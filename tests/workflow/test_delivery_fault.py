"""Delivery survives a refusing receiver and a crash: a real `licgate serve` process, SIGKILLed and started
again, and a real loopback SHEP receiver that refuses for a while and then recovers."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from gateway.storage import open_storage
from signing.pki import Pki
from tests.support.async_messages import read_send_message
from tests.support.process import GatewayProcess
from tests.workflow.conftest import TOKEN, Receiver, signed_decision
from tests.workflow.helpers import PROVIDER_BIN, store

APPLICATIONS = 6
STEPS = ("REGISTERED", "SENT_TO_MANAGEMENT", "RETURNED_FOR_PREPARATION", "RESULT_PREPARED")


def write_config(path: Path, pki: Pki, storage_url: str, receiver_url: str) -> Path:
    def q(value: str) -> str:
        return json.dumps(value)  # a TOML basic string is a JSON string for these values

    path.write_text(f"""
[storage]
url = {q(storage_url)}

[trust]
ca_dir = {q(str(pki.ca_dir))}
revocation = "crl"
crl_dir = {q(str(pki.crl_dir))}

[[providers]]
bin = "{PROVIDER_BIN}"
name_kk = "Денсаулық сақтау басқармасы"
name_ru = "Управление здравоохранения"
token = {q(TOKEN)}

[[senders]]
id = "EGOV_PORTAL"
password = "p"
services = ["MED_LICENSE"]
channel = "PORTAL"

[[senders]]
id = "CENTER_IS"
password = "c"
services = ["MED_LICENSE"]
channel = "CENTER"
bin = "990140004654"

[outbound]
shep_async_url = {q(receiver_url)}
poll_seconds = 0.05
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.5
timeout_seconds = 1.0
max_attempts = 10000
""", encoding="utf-8")
    return path


def walk(url: str, app_id: str, registration_number: str, pki: Pki, steps: tuple[str, ...]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for step in steps:
        if step == "SIGNED":
            answer = httpx.put(f"{url}/provider/v1/applications/{app_id}/result", timeout=30,
                               content=signed_decision(pki, registration_number),
                               headers={**headers, "Content-Type": "application/xml"})
        else:
            answer = httpx.post(f"{url}/provider/v1/applications/{app_id}/steps", timeout=30, headers=headers,
                                json={"step": step, "actor": "employee"})
        assert answer.status_code == 200, answer.text


@pytest.mark.slow
def test_every_notification_arrives_in_order_once_after_refusals_and_a_sigkill(
    storage_url: str, pki: Pki, receiver: Receiver, tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "licgate.toml", pki, storage_url, receiver.url)
    receiver.refusing = True
    gateway = GatewayProcess(config).start()
    storage = open_storage(storage_url, pool_size=2)
    try:
        apps = [store(storage) for _ in range(APPLICATIONS)]
        # Half the messages are queued before the crash, with the receiver refusing them all.
        for app in apps:
            walk(gateway.url, app.id, app.registration_number, pki, ("REGISTERED", "SENT_TO_MANAGEMENT"))
        deadline = time.monotonic() + 20
        while receiver.refused < APPLICATIONS * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.refused >= APPLICATIONS * 2, "the gateway should have been retrying"
        gateway.kill()

        gateway = GatewayProcess(config, port=gateway.port).start()
        for app in apps:
            walk(gateway.url, app.id, app.registration_number, pki,
                 ("RETURNED_FOR_PREPARATION", "RESULT_PREPARED", "SIGNED", "ISSUED"))
        assert receiver.bodies == []
        receiver.refusing = False
        got = receiver.wait_for(APPLICATIONS * 3, timeout=60)
    finally:
        gateway.stop()
        storage.close()

    by_id: dict[str, set[bytes]] = defaultdict(set)
    for body in receiver.bodies:
        by_id[read_id(body)].add(body)
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a messageId arrived with different content"
    per_app: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for message in got:
        if message.message_id in seen:
            continue  # at least once: a repeat is the same message, already checked above
        seen.add(message.message_id)
        per_app[message.registration_number].append(message.status)
    assert set(per_app) == {a.registration_number for a in apps}
    for statuses in per_app.values():
        assert statuses == ["REGISTERED", "IN_REVIEW", "GRANTED"]


def read_id(body: bytes) -> str:
    return read_send_message(body).message_id
