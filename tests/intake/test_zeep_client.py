"""A zeep client built from the WSDL the gateway serves can call it: the WSDL and its schemas are complete
and resolvable over HTTP, and the endpoint speaks what they describe."""

from __future__ import annotations

import uuid

import httpx
import pytest
import zeep
from lxml import etree
from zeep import xsd
from zeep.plugins import Plugin

from signing.pki import Pki
from tests.intake.helpers import MED, application_xml, sign
from tests.support.server import ServerThread


def _request(payload: object, *, password: str = "portal-secret", service: str = "MED_LICENSE") -> dict:
    return {
        "requestInfo": {"messageId": str(uuid.uuid4()), "serviceId": service,
                        "messageDate": "2026-11-27T11:02:17+05:00",
                        "sender": {"senderId": "EGOV_PORTAL", "password": password}},
        "requestData": {"data": payload},
    }


def test_wsdl_and_every_schema_are_served(gateway: ServerThread) -> None:
    wsdl = httpx.get(gateway.url + "/shep/sync?wsdl")
    assert wsdl.status_code == 200 and b"ISyncChannelHttpService" in wsdl.content
    root = etree.fromstring(wsdl.content)
    address = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == gateway.url + "/shep/sync"
    for name in ("SyncChannel_v10_Types", "SyncChannel_v10_Request", "SyncChannel_v10_Response", "common_v10_Types"):
        assert httpx.get(gateway.url + f"/shep/sync?xsd={name}").status_code == 200
    assert httpx.get(gateway.url + "/shep/sync?xsd=nope").status_code == 404


class InlineData(Plugin):
    """zeep renders an anyType value as text; SHEP clients that send inline XML move it into place."""

    def egress(self, envelope, http_headers, operation, binding_options):  # noqa: ANN001, ANN201
        data = envelope.find(".//requestData/data")
        data.append(etree.fromstring(data.text.encode()))
        data.text = None
        data.attrib.pop("{http://www.w3.org/2001/XMLSchema-instance}type", None)
        return envelope, http_headers


@pytest.mark.parametrize("as_string", [True, False], ids=["escaped-string", "inline"])
def test_zeep_client_from_the_served_wsdl_submits_an_application(gateway: ServerThread, pki: Pki,
                                                                 as_string: bool) -> None:
    client = zeep.Client(gateway.url + "/shep/sync?wsdl", plugins=[] if as_string else [InlineData()])
    service = client.bind("ISyncChannelHttpService", "SyncChannelHttpPort")
    payload = xsd.AnyObject(xsd.String(), sign(application_xml(), pki).decode())
    response = service.SendMessage(request=_request(payload))
    assert response.responseInfo.status.code == "SCSS001"
    receipt = response.responseData.data[0] if isinstance(response.responseData.data, list) \
        else response.responseData.data
    assert receipt.tag == f"{{{MED}}}Receipt"


def test_zeep_client_sees_a_fault_with_error_info(gateway: ServerThread) -> None:
    client = zeep.Client(gateway.url + "/shep/sync?wsdl")
    with pytest.raises(zeep.exceptions.Fault) as fault:
        client.service.SendMessage(request=_request(xsd.AnyObject(xsd.String(), "<x/>"), password="wrong"))
    assert fault.value.code == "soapenv:Client"
    detail = fault.value.detail
    assert detail.findtext(".//errorCode") == "SENDER_AUTH_FAILED"
