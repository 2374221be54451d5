"""The provider API (/provider/v1) and the ops API (/ops/v1) fuzzed over loopback with hypothesis: JSON
bodies of any shape, raw bytes, ids and query parameters of any text, result uploads of any XML. Every
answer is a success or a 4xx in the project's error shape (`{"errorCode", "errorMessage", "errorData"}`),
never a 500, never a stack trace."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.config import parse_config
from signing.pki import Pki
from tests.intake.conftest import config_table
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.operators import ADMIN_TOKEN, VIEWER_TOKEN, operators_table
from tests.support.server import ServerThread, serve

PROVIDER_TOKEN = "provider-token-0123456789"
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def api(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, str]]:
    """A gateway with one queued application (its id), operators and the test provider."""
    db = tmp_path_factory.mktemp("api-fuzz") / "db.sqlite"
    table = config_table(pki, f"sqlite:///{db}", intake_processes=0)
    table["operators"] = operators_table()
    with serve(create_app(parse_config(table, base_dir=Path.cwd()))) as server:
        assert post(server.url, envelope(sign(application_xml(), pki))).status_code == "SCSS001"
        lease = httpx.post(server.url + "/provider/v1/leases", json={"max": 1, "lease_seconds": 1},
                           headers=_auth(PROVIDER_TOKEN))
        yield server, lease.json()["applications"][0]["id"]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.request.method, response.request.url,
                                        response.content[:500])
    assert b"Traceback" not in response.content
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("errorCode"), str), response.content[:500]
        assert "errorMessage" in body and "errorData" in body, response.content[:500]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
field_names = st.sampled_from(["max", "lease_seconds", "wait_seconds", "ids", "step", "actor", "at", "x", ""])
json_objects = st.dictionaries(field_names, json_values, max_size=4) | json_values
ids = st.text(max_size=60) | st.sampled_from(["0", "-1", "1e9", "%00", "..", "../..", "a" * 300, "😀", "\u0000"])


def _encode(value: Any) -> bytes:
    # json.dumps writes NaN and Infinity, which are not JSON: one more way for a body to be wrong.
    return json.dumps(value, allow_nan=True).encode("utf-8", errors="surrogatepass")


def _path_id(value: str) -> str:
    return quote(value, safe="") or "%20"


@FUZZ
@given(body=json_objects | st.binary(max_size=200), content_type=st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_lease_bodies(api: tuple[ServerThread, str], body: Any, content_type: str) -> None:
    server, _ = api
    content = body if isinstance(body, bytes) else _encode(body)
    if isinstance(body, dict) and isinstance(body.get("wait_seconds"), int | float) and not (
            isinstance(body["wait_seconds"], float) and math.isnan(body["wait_seconds"])):
        body["wait_seconds"] = 0  # waiting is tested elsewhere: keep each example short
        content = _encode(body)
    _check(httpx.post(server.url + "/provider/v1/leases", content=content, timeout=40,
                      headers={**_auth(PROVIDER_TOKEN), "Content-Type": content_type}))


@FUZZ
@given(lease_id=ids, body=json_objects)
def test_ack_lease_ids_and_bodies(api: tuple[ServerThread, str], lease_id: str, body: Any) -> None:
    server, _ = api
    _check(httpx.post(f"{server.url}/provider/v1/leases/{_path_id(lease_id)}/ack", content=_encode(body),
                      headers={**_auth(PROVIDER_TOKEN), "Content-Type": "application/json"}))


@FUZZ
@given(use_real_id=st.booleans(), app_id=ids, body=json_objects, step=st.sampled_from(
    ["REGISTERED", "SENT_TO_MANAGEMENT", "SIGNED", "ISSUED", "DELIVERED", "", "registered", "X" * 200]),
    at=st.sampled_from(["2026-11-27T11:00:00+05:00", "2999-01-01T00:00:00Z", "yesterday", "", "2026-13-45T99:99",
                        "1-01-01T00:00:00", "2026-11-27T11:00:00+25:00"]))
def test_steps(api: tuple[ServerThread, str], use_real_id: bool, app_id: str, body: Any, step: str,
               at: str) -> None:
    server, real_id = api
    target = real_id if use_real_id else _path_id(app_id)
    if isinstance(body, dict) and not body:
        body = {"step": step, "actor": "fuzz", "at": at}
    _check(httpx.post(f"{server.url}/provider/v1/applications/{target}/steps", content=_encode(body),
                      headers={**_auth(PROVIDER_TOKEN), "Content-Type": "application/json"}))


_DECISION = ('<LicenseDecision xmlns="urn:kz:egov:medlicense:v1"><registrationNumber>{rn}</registrationNumber>'
             "<decision>{decision}</decision><licenseNumber>KZ00</licenseNumber>"
             "<issuedAt>{at}</issuedAt></LicenseDecision>")


@FUZZ
@given(use_real_id=st.booleans(), app_id=ids, document=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda rn, decision, at: _DECISION.format(rn=rn, decision=decision, at=at).encode(),
              st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-<&", max_size=30),
              st.sampled_from(["GRANTED", "REFUSED", "", "MAYBE"]), st.sampled_from(["2026-11-27T11:00:00Z", "x"])),
    st.sampled_from([b"", b"<?xml version='1.0'?>", b'<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>',
                     b"\xef\xbb\xbf<?xml version='1.0' encoding='nonsense'?><x/>", b"<x>" * 10000])),
    content_type=st.sampled_from(["application/xml", "text/xml; charset=utf-8", "application/json", ""]))
def test_result_uploads(api: tuple[ServerThread, str], use_real_id: bool, app_id: str, document: bytes,
                        content_type: str) -> None:
    server, real_id = api
    target = real_id if use_real_id else _path_id(app_id)
    _check(httpx.put(f"{server.url}/provider/v1/applications/{target}/result", content=document,
                     headers={**_auth(PROVIDER_TOKEN), "Content-Type": content_type}))


@FUZZ
@given(app_id=ids, index=ids, params=st.dictionaries(st.sampled_from(["since", "until", "limit", "overdue", "x"]),
                                                      st.text(max_size=30), max_size=3))
def test_provider_reads(api: tuple[ServerThread, str], app_id: str, index: str, params: dict[str, str]) -> None:
    server, _ = api
    headers = _auth(PROVIDER_TOKEN)
    _check(httpx.get(f"{server.url}/provider/v1/applications/{_path_id(app_id)}", headers=headers))
    _check(httpx.get(f"{server.url}/provider/v1/applications/{_path_id(app_id)}/documents/{_path_id(index)}",
                     headers=headers))
    _check(httpx.get(f"{server.url}/provider/v1/breaches", params=params, headers=headers))


_OPS_PARAMS = ["registration_number", "request_number", "iin", "bin", "status", "channel", "overdue", "limit",
               "message_id", "sender", "verdict", "since", "until", "offset"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(_OPS_PARAMS), st.text(max_size=40) | st.sampled_from(
    ["871008401427", "true", "2026-11-27T00:00:00", "-1", "0", "99999999999999999999", "SCSS001"]), max_size=5),
    key=ids, token=st.sampled_from([ADMIN_TOKEN, VIEWER_TOKEN, "wrong", ""]))
def test_ops_routes(api: tuple[ServerThread, str], params: dict[str, str], key: str, token: str) -> None:
    server, _ = api
    headers = _auth(token) if token else {}
    base = server.url + "/ops/v1"
    _check(httpx.get(base + "/applications", params=params, headers=headers))
    _check(httpx.get(f"{base}/applications/{_path_id(key)}", headers=headers))
    _check(httpx.get(base + "/messages", params=params, headers=headers))
    _check(httpx.get(base + "/outbox/dead", params=params, headers=headers))
    _check(httpx.post(f"{base}/outbox/{_path_id(key)}/retry", headers=headers))
    _check(httpx.get(base + "/trust", headers=headers))
    _check(httpx.get(base + "/audit", headers=headers))
