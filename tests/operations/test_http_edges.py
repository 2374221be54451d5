"""The HTTP edges a new user meets first: what /shep/sync answers to other methods, a trailing slash, HEAD,
the WSDL's address behind a reverse proxy, documentation pages that work on a closed network, --version."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from gateway import __version__
from gateway.app import create_app
from signing.pki import Pki, init_pki, load_pki
from tests.intake.conftest import make_config
from tests.intake.helpers import application_xml, envelope, sign
from tests.support.server import ServerThread, serve

SOAP_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap/}address"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return load_pki(init_pki(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def gateway(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("db") / "edges.db"
    with serve(create_app(make_config(pki, f"sqlite:///{db}"))) as server:
        yield server


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_the_soap_endpoint_are_405_naming_get_and_post(gateway: ServerThread, method: str) -> None:
    answer = httpx.request(method, gateway.url + "/shep/sync", timeout=10)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"


def test_a_post_to_the_endpoint_with_a_trailing_slash_is_served_not_redirected(gateway: ServerThread,
                                                                              pki: Pki) -> None:
    answer = httpx.post(gateway.url + "/shep/sync/", content=envelope(sign(application_xml(), pki)),
                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}, timeout=30,
                        follow_redirects=False)
    assert answer.status_code == 200
    assert etree.fromstring(answer.content).findtext(".//responseInfo/status/code") == "SCSS001"


def test_head_of_the_wsdl_answers_like_get_without_a_body(gateway: ServerThread) -> None:
    head = httpx.head(gateway.url + "/shep/sync?wsdl", timeout=10)
    get = httpx.get(gateway.url + "/shep/sync?wsdl", timeout=10)
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/xml")
    assert head.content == b"" and int(head.headers["content-length"]) == len(get.content) > 0


def test_the_wsdl_address_is_the_one_the_reverse_proxy_forwards(gateway: ServerThread) -> None:
    direct = etree.fromstring(httpx.get(gateway.url + "/shep/sync?wsdl", timeout=10).content)
    assert direct.find(f".//{SOAP_ADDRESS}").get("location") == gateway.url + "/shep/sync"
    proxied = httpx.get(gateway.url + "/shep/sync?wsdl", timeout=10,
                        headers={"X-Forwarded-Host": "licgate.health.gov.kz", "X-Forwarded-Proto": "https"})
    location = etree.fromstring(proxied.content).find(f".//{SOAP_ADDRESS}").get("location")
    assert location == "https://licgate.health.gov.kz/shep/sync"
    forged = httpx.get(gateway.url + "/shep/sync?wsdl", timeout=10,
                       headers={"X-Forwarded-Host": "evil.example/<script>", "X-Forwarded-Proto": "gopher"})
    assert etree.fromstring(forged.content).find(f".//{SOAP_ADDRESS}").get("location") == gateway.url + "/shep/sync"


@pytest.mark.parametrize(("page", "asset"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_documentation_pages_load_their_scripts_from_the_gateway(gateway: ServerThread, page: str,
                                                                 asset: str) -> None:
    html = httpx.get(gateway.url + page, timeout=10)
    assert html.status_code == 200
    assert f"/static/docs/{asset}" in html.text
    assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
    script = httpx.get(f"{gateway.url}/static/docs/{asset}", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000


def test_licgate_version() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0
    assert done.stdout.strip() == f"licgate {__version__}"
