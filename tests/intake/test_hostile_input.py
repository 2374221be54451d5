"""Hostile and random input: XXE, billion laughs, DOCTYPEs, oversized and random bodies are refused with a
CONTRACT code, never a stack trace, and without the gateway process growing past a bound; generated
envelopes and payloads never get an answer outside the contract."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from core.errors import ALL_CODES
from gateway.app import create_app
from signing.pki import Pki
from tests.intake.conftest import config_table, make_config, write_config_file
from tests.intake.helpers import MED, TYPES, application_xml, docs_for, envelope, sign
from tests.support.process import GatewayProcess
from tests.support.server import ServerThread, serve

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol9;</soapenv:Body>
</soapenv:Envelope>"""


def _xxe(target: str) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "{target}">]>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            "<soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>").encode()


def _inner_doctype_payload() -> bytes:
    # A DOCTYPE inside the escaped-string payload: the payload parse refuses it too.
    payload = b'<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]><StatusRequest xmlns="' + MED.encode() \
        + b'"><requestNumber>&e;</requestNumber></StatusRequest>'
    return envelope(payload, as_string=True, service="MED_LICENSE_STATUS")


def _contract_answer(response: httpx.Response) -> str:
    """The answer's code, after checking it is one the contract allows (and carries no stack trace)."""
    assert b"Traceback" not in response.content and b'File "' not in response.content
    root = etree.fromstring(response.content)
    if response.status_code == 200:
        code = root.findtext(f".//{{{TYPES}}}SendMessageResponse/response/responseInfo/status/code")
        assert code in ("SCSS001", "INTAKE_REFUSED")
        return code
    assert response.status_code == 500
    code = root.findtext(f".//{{{TYPES}}}SendMessageFault1_SendMessageFault/errorCode")
    assert code in ALL_CODES, response.content[:500]
    return code


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def gateway_process(pki: Pki, tmp_path: Path) -> Iterator[GatewayProcess]:
    table = config_table(pki, f"sqlite:///{tmp_path / 'licgate.db'}")
    process = GatewayProcess(write_config_file(tmp_path / "licgate.toml", table)).start()
    try:
        yield process
    finally:
        process.stop()


def test_hostile_bodies_are_refused_without_the_process_growing(gateway_process: GatewayProcess) -> None:
    url = gateway_process.url + "/shep/sync"
    headers = {"Content-Type": "text/xml"}
    pid = gateway_process.proc.pid
    rng = random.Random(7)
    oversized = b"<a>" + b"A" * (8 * 1024 * 1024) + b"</a>"  # 4x the configured 2 MB limit

    def chunked() -> Iterator[bytes]:
        for _ in range(64):
            yield b"B" * (128 * 1024)  # 8 MB without a Content-Length

    cases: list[tuple[bytes | None, str]] = [
        (BILLION_LAUGHS, "MALFORMED_MESSAGE"),
        (_xxe("file:///etc/passwd"), "MALFORMED_MESSAGE"),
        (_xxe("http://127.0.0.1:9/"), "MALFORMED_MESSAGE"),
        (_inner_doctype_payload(), "MALFORMED_MESSAGE"),
        (oversized, "MESSAGE_TOO_LARGE"),
        (None, "MESSAGE_TOO_LARGE"),
        (bytes(rng.getrandbits(8) for _ in range(4096)), "MALFORMED_MESSAGE"),
        (b"", "MALFORMED_MESSAGE"),
    ]
    with httpx.Client(timeout=60) as client:
        # Warm up (imports, first-request allocations) before the baseline.
        for body, _ in cases[:4]:
            client.post(url, content=body, headers=headers)
        baseline = _rss_kb(pid)
        for _ in range(8):
            for body, expected in cases:
                content = chunked() if body is None else body
                response = client.post(url, content=content, headers=headers)
                assert _contract_answer(response) == expected
        growth_mb = (_rss_kb(pid) - baseline) / 1024
    # 64 requests of which 16 carried 8 MB each: the process must not keep (or even hold) them.
    assert growth_mb < 48, f"RSS grew by {growth_mb:.1f} MB"
    text = Path(f"/proc/{pid}/status").read_text()
    assert "VmRSS" in text


def test_nothing_was_read_from_the_filesystem_by_xxe(gateway: ServerThread) -> None:
    response = httpx.post(gateway.url + "/shep/sync", content=_xxe("file:///etc/hostname"),
                          headers={"Content-Type": "text/xml"})
    assert _contract_answer(response) == "MALFORMED_MESSAGE"
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else "\x00"
    assert hostname.encode() not in response.content


def test_deep_nesting_is_refused(gateway: ServerThread) -> None:
    payload = b"<a>" * 500 + b"</a>" * 500
    response = httpx.post(gateway.url + "/shep/sync", content=envelope(payload), headers={"Content-Type": "text/xml"})
    assert _contract_answer(response) == "MALFORMED_MESSAGE"


# -- generated input ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_gateway(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    directory = tmp_path_factory.mktemp("hyp")
    with serve(create_app(make_config(pki, f"sqlite:///{directory / 'licgate.db'}"))) as server:
        yield server


@pytest.fixture(scope="module")
def signed_payload(pki: Pki) -> bytes:
    return sign(application_xml(), pki)


def _post(server: ServerThread, body: bytes) -> httpx.Response:
    return httpx.post(server.url + "/shep/sync", content=body, headers={"Content-Type": "text/xml"}, timeout=60)


# Text an XML document can carry (the payload must be signable to reach the later checks).
xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
                   max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_envelopes_get_contract_answers(shared_gateway: ServerThread, signed_payload: bytes,
                                                data: st.DataObject) -> None:
    body = envelope(signed_payload, message_id=str(uuid.uuid4()))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    position = data.draw(st.integers(0, len(body) - 1))
    if kind == "flip":
        body = body[:position] + bytes([data.draw(st.integers(0, 255))]) + body[position + 1:]
    elif kind == "truncate":
        body = body[:position]
    elif kind == "insert":
        fragment = data.draw(st.sampled_from([b"<", b">", b"&", b"<x/>", b"<!--", b"]]>", b"<?pi?>",
                                              b'<!DOCTYPE x>', b"&amp;", b"\x00", "ИИН".encode()]))
        body = body[:position] + fragment + body[position:]
    else:
        end = data.draw(st.integers(position, min(len(body), position + 200)))
        body = body[:position] + body[end:]
    _contract_answer(_post(shared_gateway, body))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_number=xml_text, name=xml_text, iin=st.text("0123456789", min_size=0, max_size=14),
       service_type=st.sampled_from(["ISSUE", "REISSUE", "DUPLICATE", "X"]),
       channel=st.sampled_from(["PORTAL", "CENTER", "ELICENSE", ""]), as_string=st.booleans(),
       signed=st.booleans(), sender=st.sampled_from(["EGOV_PORTAL", "CENTER_IS", "ELICENSE", "NOBODY"]),
       service=st.sampled_from(["MED_LICENSE", "MED_LICENSE_STATUS", "ELICENSE_MED_LICENSE", ""]))
def test_generated_payloads_get_contract_answers(shared_gateway: ServerThread, pki: Pki, request_number: str,
                                                 name: str, iin: str, service_type: str, channel: str,
                                                 as_string: bool, signed: bool, sender: str, service: str) -> None:
    documents = docs_for(service_type if service_type != "X" else "ISSUE", skip=("FEE_RECEIPT",) if signed else ())
    payload = application_xml(request_number, name=name, iin=iin, service_type=service_type, channel=channel,
                              documents=documents)
    if signed:
        payload = sign(payload, pki)
    body = envelope(payload, sender=sender, service=service, as_string=as_string)
    _contract_answer(_post(shared_gateway, body))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=2048))
def test_random_bytes_get_contract_answers(shared_gateway: ServerThread, blob: bytes) -> None:
    assert _contract_answer(_post(shared_gateway, blob)) in ("MALFORMED_MESSAGE", "SCHEMA_INVALID")


def test_process_memory_is_readable() -> None:
    assert _rss_kb(os.getpid()) > 0
