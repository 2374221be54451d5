"""The provider IS pull API over real HTTP (docs/provider-api.md), and what the front ends hear back (section 6).

Applications are put in through the storage API (intake is tested on its own); everything after that
goes through the served app: leases, documents, steps, the signed result, deadlines, and delivery to a
real loopback SHEP receiver.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.clock import Clock, ManualClock
from core.domain import Channel, ServiceType
from gateway.storage import OutboxState
from signing.pki import Pki
from signing.verifier import build_verifier
from tests.support.operators import ADMIN_TOKEN
from tests.support.wait import wait_until
from tests.workflow.conftest import OTHER_TOKEN, GatewayFactory, Receiver, signed_decision
from tests.workflow.helpers import SENDERS, local, store

STEPS_BEFORE_RESULT = ("REGISTERED", "SENT_TO_MANAGEMENT", "RETURNED_FOR_PREPARATION", "RESULT_PREPARED")


@pytest.mark.parametrize(("channel", "decision"), [
    (Channel.PORTAL, "GRANTED"), (Channel.CENTER, "GRANTED"), (Channel.ELICENSE, "REFUSED"),
])
def test_an_application_walks_every_step_and_its_channel_hears_each_status_once(
    storage_url: str, gateway_factory: GatewayFactory, receiver: Receiver, pki: Pki, channel: Channel,
    decision: str,
) -> None:
    api = gateway_factory(storage_url)
    app = store(api.gw.storage, channel=channel)

    leased = api.post("/provider/v1/leases", {"max": 10, "lease_seconds": 60})
    assert leased.status_code == 200, leased.text
    item = next(a for a in leased.json()["applications"] if a["id"] == app.id)
    assert item["registration_number"] == app.registration_number
    assert item["channel"] == channel.value
    assert item["applicant"] == {"kind": "INDIVIDUAL", "iin": "871008401427", "bin": None,
                                 "name": "АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ"}
    assert item["signer"]["iin"] == "871008401427" and item["signer"]["certificate_serial"] == "0a1b2c"
    assert item["received_at"].endswith("+05:00")
    document = api.get(item["documents"][0]["url"].removeprefix(api.server.url))
    assert document.status_code == 200
    assert document.content == b"%PDF-1.4 application form"
    assert document.headers["x-content-sha256"] == item["documents"][0]["sha256"]
    acked = api.post(f"/provider/v1/leases/{leased.json()['lease_id']}/ack", {"ids": [app.id]})
    assert acked.json() == {"acked": [app.id]}

    for step in STEPS_BEFORE_RESULT:
        answer = api.step(app.id, step)
        assert answer.status_code == 200, answer.text
        assert answer.json()["last_step"] == step
    uploaded = api.put_result(app.id, signed_decision(pki, app.registration_number, decision))
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["status"] == decision
    assert uploaded.json()["last_step"] == "SIGNED"
    assert api.step(app.id, "ISSUED").status_code == 200
    delivered = api.step(app.id, "DELIVERED")
    if channel is Channel.CENTER:
        assert delivered.status_code == 200, delivered.text
    else:
        assert delivered.status_code == 409
        assert delivered.json()["allowedNextSteps"] == []

    got = receiver.wait_for(3)
    assert [(m.message_type, m.status) for m in got] == [
        ("NOTIFICATION", "REGISTERED"), ("NOTIFICATION", "IN_REVIEW"), ("RESPONSE", decision)]
    for m in got:
        assert m.route_id == SENDERS[channel]
        assert m.correlation_id == app.message_id
        assert m.properties == {"channel": channel.value}
        assert m.registration_number == app.registration_number
        assert m.sender_id == "LICGATE_SKO_HEALTH"
    # The result travels signed and verifiable as it was uploaded.
    assert got[2].result is not None
    verified = build_verifier(api.gw.config.trust, Clock()).verify_enveloped(got[2].result)
    assert verified.signer.iin == "881102400665"
    # DELIVERED is recorded, not sent: three messages in the outbox, all sent. (The receiver holds the third
    # before the gateway has its answer and marks it sent: wait for that.)
    assert wait_until(lambda: [m.state for m in api.gw.storage.outbox_messages(app.id)] == [OutboxState.SENT] * 3)

    view = api.get(f"/provider/v1/applications/{app.id}").json()
    steps = [e["step"] for e in view["timeline"]]
    assert steps == [*STEPS_BEFORE_RESULT, "SIGNED", "ISSUED"] + (["DELIVERED"] if channel is Channel.CENTER else [])
    assert [d["step"] for d in view["deadlines"]] == [*STEPS_BEFORE_RESULT, "SIGNED", "ISSUED"]
    assert view["breached"] == []


# -- order ----------------------------------------------------------------------------------------------------


def test_an_out_of_order_step_is_409_with_the_allowed_next_steps(gateway_factory: GatewayFactory,
                                                                  sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    skipped = api.step(app.id, "RETURNED_FOR_PREPARATION")
    assert skipped.status_code == 409
    assert skipped.json()["errorCode"] == "STEP_OUT_OF_ORDER"
    assert skipped.json()["allowedNextSteps"] == ["REGISTERED"]
    assert api.step(app.id, "REGISTERED").status_code == 200
    again = api.step(app.id, "REGISTERED")
    assert again.status_code == 409
    assert again.json()["allowedNextSteps"] == ["SENT_TO_MANAGEMENT"]


def test_signed_cannot_be_posted_as_a_step(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    for step in STEPS_BEFORE_RESULT:
        api.step(app.id, step)
    answer = api.step(app.id, "SIGNED")
    assert answer.status_code == 409
    assert answer.json()["allowedNextSteps"] == ["SIGNED"]
    assert "result" in answer.json()["errorData"]


def test_a_result_before_result_prepared_is_409(gateway_factory: GatewayFactory, sqlite_url: str, pki: Pki) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    api.step(app.id, "REGISTERED")
    answer = api.put_result(app.id, signed_decision(pki, app.registration_number))
    assert answer.status_code == 409
    assert answer.json()["allowedNextSteps"] == ["SENT_TO_MANAGEMENT"]


def test_a_step_a_little_before_the_previous_event_is_the_is_clock_and_kept(gateway_factory: GatewayFactory,
                                                                          sqlite_url: str) -> None:
    clock = ManualClock(local(2026, 12, 1, 11, 0))
    api = gateway_factory(sqlite_url, clock=clock)
    app = store(api.gw.storage, received_at=local(2026, 12, 1, 10, 0) + timedelta(microseconds=700_000))
    # Whole seconds, as the receipt shows receivedAt: within the clocks' skew of the receipt.
    assert api.step(app.id, "REGISTERED", at="2026-12-01T10:00:00+05:00").status_code == 200
    assert api.step(app.id, "SENT_TO_MANAGEMENT", at="2026-12-01T09:59:30+05:00").status_code == 200
    timeline = api.get(f"/provider/v1/applications/{app.id}").json()["timeline"]
    assert [t["step"] for t in timeline] == ["REGISTERED", "SENT_TO_MANAGEMENT"]


def test_a_step_time_in_the_future_or_before_the_previous_step_is_refused(gateway_factory: GatewayFactory,
                                                                            sqlite_url: str) -> None:
    clock = ManualClock(local(2026, 12, 1, 11, 0))
    api = gateway_factory(sqlite_url, clock=clock)
    app = store(api.gw.storage, received_at=local(2026, 12, 1, 10, 0))
    future = api.step(app.id, "REGISTERED", at="2026-12-01T11:30:00+05:00")
    assert future.status_code == 422 and future.json()["errorCode"] == "STEP_TIME_INVALID"
    before_receipt = api.step(app.id, "REGISTERED", at="2026-12-01T09:55:00+05:00")
    assert before_receipt.status_code == 422 and before_receipt.json()["errorCode"] == "STEP_TIME_INVALID"
    assert api.step(app.id, "REGISTERED", at="2026-12-01T10:05:00+05:00").status_code == 200
    earlier = api.step(app.id, "SENT_TO_MANAGEMENT", at="2026-12-01T10:02:59+05:00")
    assert earlier.status_code == 422
    # No offset: Astana time.
    assert api.step(app.id, "SENT_TO_MANAGEMENT", at="2026-12-01T10:07:00").status_code == 200
    view = api.get(f"/provider/v1/applications/{app.id}").json()
    assert view["timeline"][1]["at"] == "2026-12-01T10:07:00+05:00"


def test_an_unknown_step_or_a_missing_actor_is_schema_invalid(gateway_factory: GatewayFactory,
                                                               sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    unknown = api.post(f"/provider/v1/applications/{app.id}/steps", {"step": "APPROVED", "actor": "x"})
    assert unknown.status_code == 422 and unknown.json()["errorCode"] == "SCHEMA_INVALID"
    assert "step" in unknown.json()["errorData"]
    no_actor = api.post(f"/provider/v1/applications/{app.id}/steps", {"step": "REGISTERED"})
    assert no_actor.status_code == 422 and "actor" in no_actor.json()["errorData"]


# -- deadlines over the API -----------------------------------------------------------------------------------


def test_deadlines_breaches_and_their_metric_on_a_friday_with_a_lunch_break_step(
    gateway_factory: GatewayFactory, sqlite_url: str,
) -> None:
    clock = ManualClock(local(2026, 11, 27, 15, 0))
    api = gateway_factory(sqlite_url, clock=clock)
    app = store(api.gw.storage, received_at=local(2026, 11, 27, 12, 55),
                due_at=api.gw.calendar.term_deadline(local(2026, 11, 27, 12, 55), 13))
    assert api.step(app.id, "REGISTERED", at="2026-11-27T13:10:00+05:00").status_code == 200  # in the break
    assert api.step(app.id, "SENT_TO_MANAGEMENT", at="2026-11-27T14:40:00+05:00").status_code == 200

    view = api.get(f"/provider/v1/applications/{app.id}").json()
    d = {x["step"]: x for x in view["deadlines"]}
    assert d["REGISTERED"]["due_at"] == "2026-11-27T14:35:00+05:00" and d["REGISTERED"]["state"] == "MET"
    assert d["SENT_TO_MANAGEMENT"]["state"] == "BREACHED"
    assert d["RETURNED_FOR_PREPARATION"]["due_at"] == "2026-11-27T15:10:00+05:00"
    assert d["RETURNED_FOR_PREPARATION"]["state"] == "PENDING"
    assert d["RESULT_PREPARED"]["due_at"] == "2026-12-17T18:30:00+05:00"
    assert d["SIGNED"]["due_at"] is None
    assert view["breached"] == ["SENT_TO_MANAGEMENT"]

    clock.set(local(2026, 11, 27, 15, 11))  # the review is now overdue
    breaches = api.get("/provider/v1/breaches").json()
    assert [(b["application_id"], b["deadline"]["step"]) for b in breaches] == [
        (app.id, "SENT_TO_MANAGEMENT"), (app.id, "RETURNED_FOR_PREPARATION")]
    metrics = api.get("/metrics").text
    assert 'licgate_deadline_breaches_total{deadline="SENT_TO_MANAGEMENT"} 1.0' in metrics
    assert 'licgate_deadline_breaches_total{deadline="RETURNED_FOR_PREPARATION"} 1.0' in metrics
    api.get(f"/provider/v1/applications/{app.id}")  # seen again: counted once
    assert 'licgate_deadline_breaches_total{deadline="SENT_TO_MANAGEMENT"} 1.0' in api.get("/metrics").text


def test_a_duplicate_spanning_nauryz_meets_every_deadline(
    gateway_factory: GatewayFactory, sqlite_url: str, pki_march_2026: Pki,
) -> None:
    pki = pki_march_2026
    clock = ManualClock(local(2026, 3, 20, 18, 10))
    api = gateway_factory(sqlite_url, clock=clock, trust=pki)
    app = store(api.gw.storage, service_type=ServiceType.DUPLICATE, received_at=local(2026, 3, 20, 18, 10))
    walk = [("REGISTERED", "2026-03-20T18:12:00+05:00"), ("SENT_TO_MANAGEMENT", "2026-03-20T18:15:00+05:00"),
            ("RETURNED_FOR_PREPARATION", "2026-03-26T09:14:00+05:00"),
            ("RESULT_PREPARED", "2026-03-27T12:00:00+05:00")]
    clock.set(local(2026, 3, 27, 12, 1))
    for step, at in walk:
        assert api.step(app.id, step, at=at).status_code == 200
    clock.set(local(2026, 3, 27, 16, 0))
    assert api.put_result(app.id, signed_decision(pki, app.registration_number)).status_code == 200
    clock.set(local(2026, 3, 27, 16, 5))
    assert api.step(app.id, "ISSUED").status_code == 200
    d = {x["step"]: x for x in api.get(f"/provider/v1/applications/{app.id}").json()["deadlines"]}
    assert d["REGISTERED"]["due_at"] == d["SENT_TO_MANAGEMENT"]["due_at"] == "2026-03-20T18:20:00+05:00"
    # Review: 30 working minutes from Friday 18:15 = 15 that evening, 15 on Thursday 26 March after Nauryz.
    assert d["RETURNED_FOR_PREPARATION"]["due_at"] == "2026-03-26T09:15:00+05:00"
    # Two working days after Friday 20 March: Thursday 26 and Friday 27.
    assert d["RESULT_PREPARED"]["due_at"] == "2026-03-27T18:30:00+05:00"
    assert d["SIGNED"]["due_at"] == "2026-03-27T18:30:00+05:00"
    assert d["SIGNED"]["done_at"] == "2026-03-27T16:00:00+05:00"
    assert d["ISSUED"]["due_at"] == "2026-03-27T16:10:00+05:00"
    assert {x["state"] for x in d.values()} == {"MET"}


def test_an_expired_lease_is_leased_again(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    clock = ManualClock(local(2026, 12, 1, 10, 0))
    api = gateway_factory(sqlite_url, clock=clock)
    app = store(api.gw.storage, received_at=local(2026, 12, 1, 9, 30))
    first = api.post("/provider/v1/leases", {"max": 5, "lease_seconds": 60}).json()
    assert [a["id"] for a in first["applications"]] == [app.id]
    assert api.post("/provider/v1/leases", {"max": 5, "lease_seconds": 60}).json()["applications"] == []
    clock.set(local(2026, 12, 1, 10, 2))
    again = api.post("/provider/v1/leases", {"max": 5, "lease_seconds": 60}).json()
    assert [a["id"] for a in again["applications"]] == [app.id]
    assert api.post(f"/provider/v1/leases/{first['lease_id']}/ack", {"ids": [app.id]}).json() == {"acked": []}


# -- security -----------------------------------------------------------------------------------------------


def test_no_token_or_a_wrong_token_is_401(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    for token in ("", "wrong-token"):
        for answer in (api.post("/provider/v1/leases", {"max": 1}, token=token),
                       api.get(f"/provider/v1/applications/{app.id}", token=token),
                       api.get("/provider/v1/breaches", token=token)):
            assert answer.status_code == 401
            assert answer.json()["errorCode"] == "UNAUTHORIZED"


def test_a_provider_cannot_lease_read_step_or_upload_for_another_providers_application(
    gateway_factory: GatewayFactory, sqlite_url: str, pki: Pki,
) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    theirs = api.post("/provider/v1/leases", {"max": 50}, token=OTHER_TOKEN)
    assert theirs.status_code == 200 and theirs.json()["applications"] == []
    assert api.get(f"/provider/v1/applications/{app.id}", token=OTHER_TOKEN).status_code == 404
    assert api.get(f"/provider/v1/applications/{app.id}/documents/0", token=OTHER_TOKEN).status_code == 404
    assert api.step(app.id, "REGISTERED", token=OTHER_TOKEN).status_code == 404
    for step in STEPS_BEFORE_RESULT:
        assert api.step(app.id, step).status_code == 200
    upload = api.put_result(app.id, signed_decision(pki, app.registration_number), token=OTHER_TOKEN)
    assert upload.status_code == 404
    assert api.get("/provider/v1/breaches", token=OTHER_TOKEN).json() == []
    # ... and its own lease still gets the application; nothing the other one did changed it.
    mine = api.post("/provider/v1/leases", {"max": 50}).json()
    assert [a["id"] for a in mine["applications"]] == [app.id]
    assert api.get(f"/provider/v1/applications/{app.id}").json()["last_step"] == "RESULT_PREPARED"


@pytest.fixture
def prepared(gateway_factory: GatewayFactory, sqlite_url: str):  # noqa: ANN201
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    for step in STEPS_BEFORE_RESULT:
        assert api.step(app.id, step).status_code == 200
    return api, app


@pytest.mark.parametrize(("party", "code"), [
    ("le_signer", "BIN_MISMATCH"),  # right to sign, but for another legal entity
    ("provider_employee", "SIGNER_NOT_AUTHORIZED"),  # the provider's BIN, no signing rights
    ("individual", "BIN_MISMATCH"),
    ("expired", "CERT_EXPIRED"),
])
def test_a_result_signed_by_anyone_but_the_providers_head_or_signer_is_422(prepared, pki: Pki, party: str,  # noqa: ANN001
                                                                          code: str) -> None:
    api, app = prepared
    answer = api.put_result(app.id, signed_decision(pki, app.registration_number, party=party))
    assert answer.status_code == 422, answer.text
    assert answer.json()["errorCode"] == code
    assert answer.json()["errorMessage"]
    view = api.get(f"/provider/v1/applications/{app.id}").json()
    assert (view["status"], view["last_step"]) == ("IN_REVIEW", "RESULT_PREPARED")
    assert any(e.verdict == code for e in api.gw.storage.message_log(application_id=app.id))


def test_a_result_signed_by_the_providers_first_head_is_accepted(prepared, pki: Pki) -> None:  # noqa: ANN001
    api, app = prepared
    answer = api.put_result(app.id, signed_decision(pki, app.registration_number, "REFUSED", party="provider_head"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "REFUSED" and answer.json()["decision"] == "REFUSED"


def test_an_unsigned_or_tampered_result_is_422(prepared, pki: Pki) -> None:  # noqa: ANN001
    from tests.workflow.conftest import decision_xml

    api, app = prepared
    unsigned = api.put_result(app.id, decision_xml(app.registration_number))
    assert unsigned.status_code == 422 and unsigned.json()["errorCode"] == "SIGNATURE_MISSING"
    signed = signed_decision(pki, app.registration_number)
    tampered = signed.replace(b"KZ41LAA00001873", b"KZ41LAA00009999")
    answer = api.put_result(app.id, tampered)
    assert answer.status_code == 422 and answer.json()["errorCode"] == "SIGNATURE_INVALID"


def test_a_result_for_another_registration_number_is_422(prepared, pki: Pki) -> None:  # noqa: ANN001
    api, app = prepared
    answer = api.put_result(app.id, signed_decision(pki, "MED-2026-999999"))
    assert answer.status_code == 422 and answer.json()["errorCode"] == "SCHEMA_INVALID"
    assert "registrationNumber" in answer.json()["errorData"]


def test_a_granted_result_without_a_licence_number_is_422(prepared, pki: Pki) -> None:  # noqa: ANN001
    from signing.signer import sign_enveloped

    api, app = prepared
    body = (f'<LicenseDecision xmlns="urn:kz:egov:medlicense:v1"><registrationNumber>{app.registration_number}'
            "</registrationNumber><decision>GRANTED</decision><issuedAt>2026-12-09</issuedAt>"
            "</LicenseDecision>").encode()
    p = pki.party("provider_signer")
    answer = api.put_result(app.id, sign_enveloped(body, p.key_pem, p.cert_pem))
    assert answer.status_code == 422 and "licenseNumber" in answer.json()["errorData"]


def test_a_result_that_is_not_xml_is_refused_without_a_trace(prepared) -> None:  # noqa: ANN001
    api, app = prepared
    answer = api.put_result(app.id, b"not xml at all")
    assert answer.status_code == 400 and answer.json()["errorCode"] == "MALFORMED_MESSAGE"
    assert "Traceback" not in answer.text
    wrong_type = api.put_result(app.id, b"{}", content_type="application/json")
    assert wrong_type.status_code == 415


def test_the_same_result_uploaded_twice_gets_the_same_answer(prepared, pki: Pki) -> None:  # noqa: ANN001
    api, app = prepared
    body = signed_decision(pki, app.registration_number)
    first = api.put_result(app.id, body)
    second = api.put_result(app.id, body)
    assert first.status_code == second.status_code == 200
    assert [e["step"] for e in second.json()["timeline"]].count("SIGNED") == 1
    other = api.put_result(app.id, signed_decision(pki, app.registration_number, "REFUSED"))
    assert other.status_code == 409


def test_the_openapi_document_describes_the_provider_api(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    spec = api.get("/openapi.json").json()
    for path in ("/provider/v1/leases", "/provider/v1/leases/{lease_id}/ack",
                 "/provider/v1/applications/{id}/steps", "/provider/v1/applications/{id}/result",
                 "/provider/v1/applications/{id}", "/provider/v1/applications/{id}/documents/{index}",
                 "/provider/v1/breaches"):
        assert path in spec["paths"], path
    assert "LeasedApplication" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_outbound_messages_are_ws_security_signed_with_the_gateways_transport_key(
    gateway_factory: GatewayFactory, sqlite_url: str, receiver: Receiver, pki: Pki,
) -> None:
    from lxml import etree

    from signing.wsse import verify_wsse

    transport = pki.party("gateway_transport")
    api = gateway_factory(sqlite_url, wsse_key=str(transport.key_path), wsse_cert=str(transport.cert_path))
    app = store(api.gw.storage)
    assert api.step(app.id, "REGISTERED").status_code == 200
    got = receiver.wait_for(1)
    assert got[0].has_wsse
    signer = verify_wsse(etree.fromstring(receiver.bodies[0]), sender_bin="051240001234",
                         trust=api.gw.config.trust, clock=Clock())
    assert signer.bin == "051240001234"
    assert got[0].status == "REGISTERED"


def test_the_gateways_shep_password_reaches_the_receiver_under_the_signature_and_no_stored_row(
    gateway_factory: GatewayFactory, storage_url: str, receiver: Receiver, pki: Pki,
) -> None:
    from lxml import etree

    from signing.wsse import verify_wsse
    from tests.support.stored import stored_bytes

    password = "out-s3cret&<kz>"
    transport = pki.party("gateway_transport")
    api = gateway_factory(storage_url, password=password, wsse_key=str(transport.key_path),
                          wsse_cert=str(transport.cert_path))
    app = store(api.gw.storage)
    assert api.step(app.id, "REGISTERED").status_code == 200
    receiver.wait_for(1)
    root = etree.fromstring(receiver.bodies[0])
    assert root.findtext(".//messageInfo/sender/password") == password  # filled in, escaped, at the attempt
    verify_wsse(root, sender_bin="051240001234", trust=api.gw.config.trust, clock=Clock())  # and signed with it
    assert wait_until(lambda: [m.state for m in api.gw.storage.outbox_messages(app.id)] == [OutboxState.SENT])
    stored = stored_bytes(storage_url)
    assert b"<password>***</password>" in stored  # the outbox row and the attempt's record hold the placeholder
    for form in (password.encode(), b"out-s3cret", b"out-s3cret&amp;"):
        assert form not in stored


def test_a_dead_letter_is_visible_to_operators_with_its_reason_and_can_be_sent_again(
    gateway_factory: GatewayFactory, sqlite_url: str, receiver: Receiver,
) -> None:
    import time

    receiver.refusing = True
    api = gateway_factory(sqlite_url, max_attempts=2)
    app = store(api.gw.storage)
    assert api.step(app.id, "REGISTERED").status_code == 200
    deadline = time.monotonic() + 20
    while not (dead := api.get("/ops/outbox/dead", token=ADMIN_TOKEN).json()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(d["application_id"], d["kind"], d["attempts"]) for d in dead] == [(app.id, "NOTIFICATION", 2)]
    assert dead[0]["last_error"] == "attempt 2: HTTP 503"
    assert "body" not in dead[0]
    receiver.refusing = False
    retried = api.post(f"/ops/outbox/{dead[0]['id']}/retry", token=ADMIN_TOKEN)
    assert retried.json() == {"id": dead[0]["id"], "retried": True}
    assert [m.status for m in receiver.wait_for(1)] == ["REGISTERED"]
    assert api.get("/ops/outbox/dead", token=ADMIN_TOKEN).json() == []


def test_a_lease_without_a_body_takes_the_defaults(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    import httpx

    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)
    answer = httpx.post(api.server.url + "/provider/v1/leases", headers={"Authorization": f"Bearer {api.token}"})
    assert answer.status_code == 200, answer.text
    assert [a["id"] for a in answer.json()["applications"]] == [app.id]
    too_many = api.post("/provider/v1/leases", {"max": 100000})
    assert too_many.status_code == 422 and too_many.json()["errorCode"] == "SCHEMA_INVALID"


def test_an_application_refused_at_intake_is_never_leased_and_takes_no_step(gateway_factory: GatewayFactory,
                                                                          sqlite_url: str) -> None:
    from core.domain import Status

    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage, status=Status.INTAKE_REFUSED)
    assert api.post("/provider/v1/leases", {"max": 50}).json()["applications"] == []
    answer = api.step(app.id, "REGISTERED")
    assert answer.status_code == 409 and answer.json()["allowedNextSteps"] == []
    view = api.get(f"/provider/v1/applications/{app.id}").json()
    assert view["status"] == "INTAKE_REFUSED" and view["deadlines"] == [] and view["allowed_next_steps"] == []


def test_of_concurrent_posts_of_the_same_step_exactly_one_is_recorded(
    storage_url: str, gateway_factory: GatewayFactory, receiver: Receiver,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api = gateway_factory(storage_url)
    app = store(api.gw.storage)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(lambda _: api.step(app.id, "REGISTERED").status_code, range(8)))
    assert codes == [200] + [409] * 7
    assert [r.step.value for r in api.gw.storage.timeline(app.id)] == ["REGISTERED"]
    assert len(api.gw.storage.outbox_messages(app.id)) == 1


def test_a_step_is_200_though_a_read_after_its_commit_fails(
    storage_url: str, gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.storage import StorageError

    api = gateway_factory(storage_url)
    app = store(api.gw.storage)
    storage = api.gw.storage
    real_apply, real_timeline = storage.apply_transition, storage.timeline
    committed: list[bool] = []

    def apply(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        updated = real_apply(*args, **kwargs)
        committed.append(True)
        return updated

    def timeline(app_id: str):  # noqa: ANN202
        if committed:
            raise StorageError("database is locked")  # every read after the commit fails
        return real_timeline(app_id)

    monkeypatch.setattr(storage, "apply_transition", apply)
    monkeypatch.setattr(storage, "timeline", timeline)
    answer = api.step(app.id, "REGISTERED")
    assert answer.status_code == 200, answer.text  # not 503: the step is recorded
    assert answer.json()["last_step"] == "REGISTERED"
    assert answer.json()["allowed_next_steps"] == ["SENT_TO_MANAGEMENT"]
    assert [t["step"] for t in answer.json()["timeline"]] == ["REGISTERED"]
    monkeypatch.undo()
    assert [r.step.value for r in real_timeline(app.id)] == ["REGISTERED"]
    assert len(storage.outbox_messages(app.id)) == 1


def test_a_step_is_200_though_its_deadlines_cannot_be_computed_after_its_commit(
    gateway_factory: GatewayFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = gateway_factory(sqlite_url)
    app = store(api.gw.storage)

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("calendar unavailable")

    monkeypatch.setattr(api.gw.regulation, "deadlines", broken)
    answer = api.step(app.id, "REGISTERED")
    assert answer.status_code == 200, answer.text
    assert answer.json()["last_step"] == "REGISTERED"
    assert answer.json()["deadlines"] == []


def test_a_repeat_of_the_step_just_recorded_is_answered_as_the_first(
    storage_url: str, gateway_factory: GatewayFactory,
) -> None:
    from datetime import UTC, datetime

    api = gateway_factory(storage_url)
    app = store(api.gw.storage)
    at = datetime.now(UTC).replace(microsecond=123456)
    first = api.step(app.id, "REGISTERED", at=at.isoformat())
    assert first.status_code == 200, first.text
    # The IS lost the answer and retries the same post (here in Astana time: the same moment).
    retry = api.step(app.id, "REGISTERED", at=at.astimezone(local(2026, 1, 1).tzinfo).isoformat())
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert [r.step.value for r in api.gw.storage.timeline(app.id)] == ["REGISTERED"]
    assert len(api.gw.storage.outbox_messages(app.id)) == 1
    # Not the same step: another time, another actor, or no time at all is out of order as before.
    later = api.step(app.id, "REGISTERED", at=(at + timedelta(seconds=1)).isoformat())
    other = api.post(f"/provider/v1/applications/{app.id}/steps",
                     {"step": "REGISTERED", "actor": "someone else", "at": at.isoformat()})
    untimed = api.step(app.id, "REGISTERED")
    assert [later.status_code, other.status_code, untimed.status_code] == [409, 409, 409]
    assert [r.step.value for r in api.gw.storage.timeline(app.id)] == ["REGISTERED"]


def test_two_identical_result_uploads_racing_are_both_answered_200(
    storage_url: str, gateway_factory: GatewayFactory, pki: Pki, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    api = gateway_factory(storage_url)
    app = store(api.gw.storage)
    for step in STEPS_BEFORE_RESULT:
        assert api.step(app.id, step).status_code == 200
    body = signed_decision(pki, app.registration_number, "GRANTED")
    storage = api.gw.storage
    real_get = storage.get_application
    barrier = threading.Barrier(2)
    calls: list[str] = []

    def get(app_id: str):  # noqa: ANN202
        found = real_get(app_id)
        calls.append(app_id)
        if len(calls) <= 2:  # both uploads read the application before either records SIGNED
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
        return found

    monkeypatch.setattr(storage, "get_application", get)
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(api.put_result(app.id, body))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 200], [a.text[:200] for a in answers]
    assert answers[0].json()["status"] == answers[1].json()["status"] == "GRANTED"
    assert [r.step.value for r in storage.timeline(app.id)].count("SIGNED") == 1


@pytest.mark.parametrize("party", ["gost_provider_head"])
def test_a_gost_signed_result_is_accepted_and_travels_verifiable(prepared, pki: Pki, party: str) -> None:  # noqa: ANN001
    """GOST 34.10-2015 (512) by the provider's first head, the way NCA's GOST certificates sign results."""
    api, app = prepared
    result = signed_decision(pki, app.registration_number, "GRANTED", party=party)
    assert b"gostr34102015-gostr34112015-512" in result
    answer = api.put_result(app.id, result)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "GRANTED"
    verified = build_verifier(api.gw.config.trust, Clock()).verify_enveloped(result)
    assert verified.signer.bin == "051240001234" and verified.signature_method.endswith("-512")


def test_a_tampered_gost_result_is_signature_invalid(prepared, pki: Pki) -> None:  # noqa: ANN001
    api, app = prepared
    result = signed_decision(pki, app.registration_number, party="gost_provider_head")
    answer = api.put_result(app.id, result.replace(b"KZ41LAA00001873", b"KZ41LAA00009999"))
    assert answer.status_code == 422 and answer.json()["errorCode"] == "SIGNATURE_INVALID"
