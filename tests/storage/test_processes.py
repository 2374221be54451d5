"""Process-level guarantees: acknowledged writes survive SIGKILL; two processes leasing from one PostgreSQL
database never hold one application in two live leases and lose none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from gateway.storage import open_storage
from tests.storage.factory import PROVIDER, new_application, receipt_for

REPO = Path(__file__).resolve().parents[2]


def _child(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_every_acknowledged_write_survives_sigkill_of_the_writer(storage_url: str) -> None:
    child = _child("tests.storage.writer_child", storage_url, "4")
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        acknowledged: list[tuple[str, str]] = []
        while len(acknowledged) < 150:
            line = child.stdout.readline()
            assert line, f"writer died: {child.stderr.read() if child.stderr else ''}"
            number, app_id = line.split()
            acknowledged.append((number, app_id))
        child.send_signal(signal.SIGKILL)  # mid-stream: its threads are inside transactions right now
        child.wait(timeout=10)
        # Lines printed between our last read and the kill were acknowledged too.
        acknowledged += [tuple(line.split()) for line in child.stdout.read().splitlines() if line.strip()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    reopened = open_storage(storage_url)
    try:
        reopened.migrate()
        for number, app_id in acknowledged:
            record = reopened.get_application(app_id)
            assert record is not None, f"acknowledged {number} ({app_id}) is lost"
            assert record.registration_number == number
            assert reopened.get_document(app_id, 0) is not None
        # Everything that is there is whole, and queued exactly once.
        assert reopened.queue_depth() >= len(acknowledged)
        assert len({n for n, _ in acknowledged}) == len(acknowledged)
    finally:
        reopened.close()


def test_two_processes_leasing_at_once_never_share_a_live_lease_and_lose_nothing(pg_url: str) -> None:
    storage = open_storage(pg_url)
    storage.migrate()
    try:
        ids = {storage.store_application(new_application(i, documents=0), receipt_for).id for i in range(200)}
    finally:
        storage.close()

    start_at = time.time() + 1.5
    children = [_child("tests.storage.leaser_child", pg_url, PROVIDER, str(start_at), str(seed)) for seed in (1, 2)]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append([json.loads(line) for line in out.splitlines()])

    windows: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    acked: Counter[str] = Counter()
    for events in outputs:
        for event in events:
            if "ids" in event:
                for app_id in event["ids"]:
                    windows[app_id].append((event["at"], event["until"], event["lease"]))
            else:
                acked.update(event["acked"])

    both = [{e["lease"] for e in events if e.get("ids")} for events in outputs]
    assert all(both), "each process must have leased something for the test to mean anything"
    released_again = sum(len(w) > 1 for w in windows.values())
    assert released_again > 0, "some leases must have expired and been leased again"
    for app_id, leases in windows.items():
        leases.sort()
        for (_, until, first), (at, _, second) in zip(leases, leases[1:], strict=False):
            # A second lease may begin only once the first has expired (an acked one is never leased again).
            assert at >= until, f"{app_id} was in leases {first} and {second} at once"
    assert set(acked) == ids, "every application is acked in the end"
    assert all(n == 1 for n in acked.values()), "and exactly once"

