"""The JSON log lines (gateway.logs): one JSON object per line on stderr, every line written and in order,
the message text as it was when logged, a traceback as `exc`, extra fields as keys, nothing under the
configured level."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import logging
    from gateway.logs import setup_logging

    setup_logging("INFO")
    log = logging.getLogger("licgate.test")
    items = ["before"]
    log.info("items %s", items)
    items.append("after")  # changed after logging: the line shows what was logged
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"messageId": "m-1"})
    log.debug("not at INFO")
    for i in range(3000):
        log.info("request", extra={"n": i, "status": 200})
''')


def test_every_line_is_written_as_json_and_nothing_is_lost_at_exit() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # Only the JSON lines: a warning printed at import (PYTHONWARNINGS) is not the logger's.
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines[0]["msg"] == "items ['before']"
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "licgate.test"
    failed = lines[1]
    assert failed["msg"] == "failed" and failed["messageId"] == "m-1" and failed["level"] == "ERROR"
    assert "ValueError: boom" in failed["exc"] and "Traceback" in failed["exc"]
    requests = lines[2:]
    assert [r["n"] for r in requests] == list(range(3000))  # all of them, in order
    assert all(r["msg"] == "request" and r["status"] == 200 for r in requests)
