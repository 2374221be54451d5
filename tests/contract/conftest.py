"""Black-box harness for CONTRACT.md: everything here starts licgate the way an outside tester would
(the `licgate` command as a child process, a TOML file written from docs/configuration.md's example) and
talks to it only over HTTP. Nothing of `gateway.*` is imported; the applicant's software is Debian's
xmlsec1 CLI (an independent XMLDSig implementation)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, serve

PROVIDER_BIN = "051240001234"
OTHER_PROVIDER_BIN = "061240000003"  # a valid BIN (check digit) for a second, unrelated licensor
CENTER_BIN = "990140004654"
PORTAL_TRANSPORT_BIN = "110250007893"
PROVIDER_TOKEN_ENV = "LICGATE_CONTRACT_PROVIDER_TOKEN"
PROVIDER_TOKEN = "contract-provider-token-1"
OTHER_PROVIDER_TOKEN = "contract-provider-token-2"
OUTBOUND_SENDER_ID = "LICGATE_SKO_HEALTH"
MAX_MESSAGE_BYTES = 1_048_576

SENDERS = {
    # id: (password, services, channel, wsse, bin)
    "EGOV_PORTAL": ("portal-pw", ["MED_LICENSE", "MED_LICENSE_STATUS"], "PORTAL", "off", ""),
    "CENTER_IS": ("center-pw", ["MED_LICENSE", "MED_LICENSE_STATUS"], "CENTER", "off", CENTER_BIN),
    "ELICENSE": ("elicense-pw", ["MED_LICENSE", "MED_LICENSE_STATUS"], "ELICENSE", "off", ""),
    "STATUS_ONLY": ("status-pw", ["MED_LICENSE_STATUS"], "PORTAL", "off", ""),
    "SECURE_PORTAL": ("secure-pw", ["MED_LICENSE", "MED_LICENSE_STATUS"], "PORTAL", "required",
                      PORTAL_TRANSPORT_BIN),
    "OPTIONAL_PORTAL": ("optional-pw", ["MED_LICENSE"], "PORTAL", "optional", PORTAL_TRANSPORT_BIN),
}


def licgate_command() -> list[str]:
    """The installed console script, as an outside harness would call it."""
    exe = Path(sys.executable).parent / "licgate"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("licgate")
    if found:
        return [found]
    pytest.fail("the `licgate` command is not installed")
    raise AssertionError  # unreachable


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_config(path: Path, pki: dict, db: Path, async_url: str, *, extra: str = "") -> None:
    senders = []
    for sid, (pw, services, channel, wsse, bin_) in SENDERS.items():
        senders.append(
            "[[senders]]\n"
            f"id = {toml_str(sid)}\npassword = {toml_str(pw)}\nservices = {json.dumps(services)}\n"
            f"channel = {toml_str(channel)}\nwsse = {toml_str(wsse)}\nbin = {toml_str(bin_)}\n"
        )
    path.write_text(
        f"""[server]
host = "127.0.0.1"
port = 8080
max_message_bytes = {MAX_MESSAGE_BYTES}

[storage]
url = {toml_str("sqlite:///" + str(db))}

[trust]
ca_dir = {toml_str(pki["ca_dir"])}
revocation = "crl"
crl_dir = {toml_str(pki["crl_dir"])}
ocsp_url = ""

[[providers]]
bin = "{PROVIDER_BIN}"
name_kk = "Солтүстік Қазақстан облысының денсаулық сақтау басқармасы"
name_ru = "Управление здравоохранения Северо-Казахстанской области"
token = "env:{PROVIDER_TOKEN_ENV}"

[[providers]]
bin = "{OTHER_PROVIDER_BIN}"
name_kk = "Басқа басқарма"
name_ru = "Другое управление"
token = "{OTHER_PROVIDER_TOKEN}"

{chr(10).join(senders)}
[checklists]
ISSUE = ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"]
REISSUE = ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"]
DUPLICATE = ["APPLICATION_FORM", "FEE_RECEIPT"]

[terms]
ISSUE = 13
REISSUE = 3
DUPLICATE = 2

[calendar]
timezone = "Asia/Almaty"
work_start = "09:00"
work_end = "18:30"
break_start = "13:00"
break_end = "14:30"
extra_days_off = []
extra_working_days = []

[outbound]
shep_async_url = {toml_str(async_url)}
sender_id = "{OUTBOUND_SENDER_ID}"
password = "outbound-pw"
wsse_key = ""
wsse_cert = ""
{extra}""",
        encoding="utf-8",
    )


@dataclass
class Receiver:
    """The SHEP AsyncChannel side: records every POST it is sent (raw bytes, in arrival order)."""

    url: str = ""
    messages: list[bytes] = field(default_factory=list)
    refused: list[bytes] = field(default_factory=list)  # POSTs answered 500 while `failing`
    failing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[bytes]:
        with self.lock:
            return list(self.messages)


RECEIVER_ACK = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<typ:sendMessageResponse xmlns:typ="http://bip.bee.kz/AsyncChannel/v10/Types"><response><responseInfo>
<messageId>00000000-0000-0000-0000-000000000001</messageId><responseDate>2026-11-27T12:00:00+05:00</responseDate>
<status><code>SCSS001</code><message>Message has been processed successfully</message></status>
</responseInfo></response></typ:sendMessageResponse></soapenv:Body></soapenv:Envelope>"""


def receiver_app(receiver: Receiver):  # noqa: ANN201 - a bare ASGI callable
    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST":
            with receiver.lock:
                if receiver.failing:
                    receiver.refused.append(body)
                    await send({"type": "http.response.start", "status": 500, "headers": []})
                    await send({"type": "http.response.body", "body": b"receiver down"})
                    return
                receiver.messages.append(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/xml; charset=utf-8")]})
        await send({"type": "http.response.body", "body": RECEIVER_ACK})

    return app


@dataclass
class Gateway:
    url: str
    pki: dict
    pki_dir: Path
    receiver: Receiver
    workdir: Path
    log: Path
    config: Path
    port: int
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, PROVIDER_TOKEN_ENV: PROVIDER_TOKEN, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*licgate_command(), "serve", "--config", str(self.config), "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"licgate serve exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"licgate serve did not become healthy: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown handlers."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="licgate-contract-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def pki(workdir: Path) -> dict:
    pki_dir = workdir / "pki"
    done = subprocess.run([*licgate_command(), "pki", "init", str(pki_dir)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    manifest = json.loads((pki_dir / "pki.json").read_text(encoding="utf-8"))
    manifest["dir"] = str(pki_dir)
    return manifest


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(receiver_app(rec)) as server:
        rec.url = server.url + "/shep/async"
        yield rec


@pytest.fixture(scope="module")
def gateway(workdir: Path, pki: dict, receiver: Receiver) -> Iterator[Gateway]:
    config = workdir / "licgate.toml"
    write_config(config, pki, workdir / "licgate.db", receiver.url)
    port = free_port()
    gw = Gateway(url=f"http://127.0.0.1:{port}", pki=pki, pki_dir=Path(pki["dir"]), receiver=receiver,
                 workdir=workdir, log=workdir / "gateway.log", config=config, port=port)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()
