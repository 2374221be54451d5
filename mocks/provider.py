"""Mock of the provider's IS (the health department): pulls applications and walks the regulation's steps.

A poller leases queued applications from the gateway (`POST /provider/v1/leases`, docs/provider-api.md),
stores them in its own memory and acks them, then for each one, after the configured delays (compressed
time: minutes and days in real life), acts as the authorized employee and the management: downloads and
checks the documents, records REGISTERED, SENT_TO_MANAGEMENT, RETURNED_FOR_PREPARATION, RESULT_PREPARED,
prepares a `LicenseDecision` (a licence, or a motivated refusal when a rule says so), signs it with the
provider's first head's key, uploads it (which records SIGNED) and records ISSUED. For Center
applications the Center tells this IS when it handed the result over (`POST /handovers`), and the IS
records DELIVERED at the gateway.

Control and views: `POST /rules` adds a decision rule, `GET /applications`, `GET /applications/{reg}`,
`GET /log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin
from xml.sax.saxutils import escape

import httpx
from fastapi import FastAPI, HTTPException, Request

from mocks.common import (
    MED,
    ActionLog,
    MockSettings,
    Pki,
    ProviderRule,
    iso_local,
    iso_precise,
    run_mock,
    sign_payload,
)

DEFAULT_REFUSAL_KK = (
    "Үй-жайдың медициналық қызмет түріне қойылатын біліктілік талаптарына сәйкестігі расталмады: "
    "ұсынылған құжаттарда жабдықтың тізбесі жоқ (Стандарттың 10-тармағы)."
)
DEFAULT_REFUSAL_RU = (
    "Не подтверждено соответствие помещения квалификационным требованиям к виду медицинской "
    "деятельности: в представленных документах отсутствует перечень оборудования (пункт 10 Стандарта)."
)

WALK = ("REGISTERED", "SENT_TO_MANAGEMENT", "RETURNED_FOR_PREPARATION", "RESULT_PREPARED")


@dataclass
class Case:
    """One application as the provider's IS keeps it."""

    id: str
    registration_number: str
    channel: str
    service_type: str
    applicant: dict[str, Any]
    request_number: str = ""
    license_number_in: str = ""
    received_at: str = ""
    due_at: str = ""
    documents_checked: int = 0
    documents_bad: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    decision: str = ""
    license_number: str = ""
    reason_kk: str = ""
    reason_ru: str = ""
    result_status: int = 0
    result_error: str = ""
    handover_reported: bool = False
    handover_by: str = ""
    errors: list[str] = field(default_factory=list)
    done: bool = False


@dataclass
class ProviderState:
    settings: MockSettings
    log: ActionLog
    pki: Pki | None = None
    cases: dict[str, Case] = field(default_factory=dict)  # by gateway id
    rules: list[ProviderRule] = field(default_factory=list)
    next_license: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None

    def by_registration(self, registration_number: str) -> Case | None:
        return next((c for c in self.cases.values() if c.registration_number == registration_number), None)


def create_app(settings: MockSettings) -> FastAPI:
    cfg = settings.provider
    state = ProviderState(settings=settings, log=ActionLog("provider"), rules=list(cfg.rules),
                          next_license=cfg.license_start)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pki = Pki(settings.pki_dir)
        state.client = httpx.AsyncClient(base_url=settings.urls.gateway, timeout=30.0,
                                         headers={"Authorization": f"Bearer {cfg.token}"})
        poller = asyncio.get_running_loop().create_task(_poll(state))
        try:
            yield
        finally:
            poller.cancel()
            for task in list(state.tasks):
                task.cancel()
            await asyncio.gather(poller, *state.tasks, return_exceptions=True)
            await state.client.aclose()

    app = FastAPI(title="Provider IS mock", lifespan=lifespan)
    app.state.provider = state

    @app.post("/rules")
    async def add_rule(request: Request) -> dict[str, Any]:
        data = await request.json()
        try:
            rule = ProviderRule(**data)
        except TypeError as exc:
            raise HTTPException(422, str(exc)) from None
        if rule.decision not in ("GRANTED", "REFUSED"):
            raise HTTPException(422, "decision must be GRANTED or REFUSED")
        state.rules.insert(0, rule)  # the newest rule wins over the configured ones
        state.log("rule-added", **{k: v for k, v in asdict(rule).items() if v})
        return asdict(rule)

    @app.post("/handovers")
    async def handover(request: Request) -> dict[str, Any]:
        """The Center reports that it handed the result to the applicant (becomes DELIVERED)."""
        data = await request.json()
        case = state.by_registration(str(data.get("registration_number", "")))
        if case is None:
            raise HTTPException(404, "no such application in the provider's IS")
        if case.channel != "CENTER":
            raise HTTPException(409, "only Center applications are handed over by the Center")
        case.handover_reported = True
        case.handover_by = str(data.get("by", "")) or "Орталық қызметкері / работник ЦОН"
        state.log("handover-reported", registration=case.registration_number, by=case.handover_by)
        if "ISSUED" in case.steps and "DELIVERED" not in case.steps:
            await _step(state, case, "DELIVERED", case.handover_by)
        return {"registration_number": case.registration_number, "steps": case.steps}

    @app.get("/applications")
    def list_cases() -> list[dict[str, Any]]:
        return [asdict(c) for c in state.cases.values()]

    @app.get("/applications/{registration_number}")
    def one_case(registration_number: str) -> dict[str, Any]:
        case = state.by_registration(registration_number)
        if case is None:
            raise HTTPException(404, "no such application")
        return asdict(case)

    @app.get("/log")
    def action_log() -> list[dict[str, Any]]:
        return state.log.snapshot()

    return app


async def _poll(state: ProviderState) -> None:
    cfg = state.settings.provider
    assert state.client is not None
    failures = 0
    while True:
        try:
            answer = await state.client.post("/provider/v1/leases",
                                             json={"max": cfg.lease_max, "lease_seconds": cfg.lease_seconds})
            if answer.status_code != 200:
                raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
            lease = answer.json()
            failures = 0
        except Exception as exc:  # noqa: BLE001 - the gateway may be starting or restarting
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                state.log("lease-failed", error=str(exc)[:200], failures=failures)
            await asyncio.sleep(min(cfg.poll_seconds * failures, 5.0))
            continue
        applications = lease.get("applications") or []
        if applications:
            ids = []
            for item in applications:
                ids.append(item["id"])
                if item["id"] in state.cases:
                    continue  # leased again after an expiry: already in our IS
                case = _case(item)
                state.cases[case.id] = case
                state.log("leased", registration=case.registration_number, channel=case.channel,
                          service=case.service_type, lease=lease.get("lease_id"))
                task = asyncio.get_running_loop().create_task(_walk(state, case, item))
                state.tasks.add(task)
                task.add_done_callback(state.tasks.discard)
            # Acked once it sits in the IS's own records: from here the IS, not the queue, owns it. A failed
            # ack is harmless: the lease expires, the same ids come again and are acked then.
            try:
                ack = await state.client.post(f"/provider/v1/leases/{lease['lease_id']}/ack", json={"ids": ids})
                state.log("acked", lease=lease.get("lease_id"), count=len(ids), http=ack.status_code)
            except httpx.HTTPError as exc:
                state.log("ack-failed", lease=lease.get("lease_id"), error=type(exc).__name__)
        await asyncio.sleep(cfg.poll_seconds)


def _case(item: dict[str, Any]) -> Case:
    return Case(
        id=str(item["id"]), registration_number=str(item.get("registration_number", "")),
        channel=str(item.get("channel", "")), service_type=str(item.get("service_type", "")),
        applicant=dict(item.get("applicant") or {}), request_number=str(item.get("request_number") or ""),
        license_number_in=str(item.get("license_number") or ""), received_at=str(item.get("received_at", "")),
        due_at=str(item.get("due_at", "")),
    )


async def _walk(state: ProviderState, case: Case, item: dict[str, Any]) -> None:
    delays = state.settings.provider.delays
    employee, management = state.settings.provider.employee, state.settings.provider.management
    try:
        await _check_documents(state, case, item.get("documents") or [])
        for step in WALK:
            await asyncio.sleep(delays.get(step, 0.0))
            actor = management if step == "RETURNED_FOR_PREPARATION" else employee
            if not await _step(state, case, step, actor):
                return
        _decide(state, case)
        await asyncio.sleep(delays.get("SIGNED", 0.0))
        if not await _upload(state, case):
            return
        await asyncio.sleep(delays.get("ISSUED", 0.0))
        if not await _step(state, case, "ISSUED", employee):
            return
        if case.channel == "CENTER" and case.handover_reported:
            await _step(state, case, "DELIVERED", case.handover_by)
        case.done = True
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the case for the views, never silent
        case.errors.append(f"{type(exc).__name__}: {exc}"[:300])
        state.log("walk-failed", registration=case.registration_number, error=case.errors[-1])


async def _check_documents(state: ProviderState, case: Case, documents: list[dict[str, Any]]) -> None:
    """The authorized employee opens every attached document; its bytes must match the declared sha256."""
    assert state.client is not None
    for doc in documents:
        url = urljoin(state.settings.urls.gateway + "/", str(doc.get("url", "")))
        answer = await state.client.get(url)
        ok = answer.status_code == 200 and hashlib.sha256(answer.content).hexdigest() == doc.get("sha256")
        case.documents_checked += 1
        if not ok:
            case.documents_bad.append(str(doc.get("code")))
    state.log("documents-checked", registration=case.registration_number, count=case.documents_checked,
              bad=",".join(case.documents_bad) or "none")


async def _step(state: ProviderState, case: Case, step: str, actor: str) -> bool:
    assert state.client is not None
    answer = await state.client.post(f"/provider/v1/applications/{case.id}/steps",
                                     json={"step": step, "actor": actor, "at": iso_precise()})
    if answer.status_code in (200, 201):
        case.steps.append(step)
        state.log("step", registration=case.registration_number, step=step, http=answer.status_code)
        return True
    case.errors.append(f"{step}: HTTP {answer.status_code} {answer.text[:200]}")
    state.log("step-refused", registration=case.registration_number, step=step, http=answer.status_code,
              body=answer.text[:200])
    return False


def _decide(state: ProviderState, case: Case) -> None:
    number = case.applicant.get("iin") or case.applicant.get("bin") or ""
    rule = next((r for r in state.rules if _matches(r, case, number)), None)
    if rule is not None and rule.decision == "REFUSED":
        case.decision = "REFUSED"
        case.reason_kk = rule.reason_kk or DEFAULT_REFUSAL_KK
        case.reason_ru = rule.reason_ru or DEFAULT_REFUSAL_RU
    elif case.documents_bad:
        case.decision = "REFUSED"
        case.reason_kk = "Ұсынылған құжаттар бүлінген: " + ", ".join(case.documents_bad)
        case.reason_ru = "Представленные документы повреждены: " + ", ".join(case.documents_bad)
    else:
        case.decision = "GRANTED"
        if case.license_number_in and case.service_type in ("REISSUE", "DUPLICATE"):
            case.license_number = case.license_number_in
        else:
            case.license_number = f"{state.settings.provider.license_prefix}{state.next_license:08d}"
            state.next_license += 1
    state.log("decided", registration=case.registration_number, decision=case.decision,
              license=case.license_number or "-")


def _matches(rule: ProviderRule, case: Case, number: str) -> bool:
    return (
        rule.applicant in ("", number)
        and rule.request_number in ("", case.request_number)
        and rule.service_type in ("", case.service_type)
        and rule.channel in ("", case.channel)
    )


def decision_xml(case: Case, issued_at: str) -> bytes:
    """The unsigned `LicenseDecision` (docs/provider-api.md)."""
    parts = [f'<LicenseDecision xmlns="{MED}">',
             f"<registrationNumber>{escape(case.registration_number)}</registrationNumber>",
             f"<decision>{case.decision}</decision>"]
    if case.decision == "GRANTED":
        parts.append(f"<licenseNumber>{escape(case.license_number)}</licenseNumber>")
    else:
        parts.append(f"<reasonKk>{escape(case.reason_kk)}</reasonKk><reasonRu>{escape(case.reason_ru)}</reasonRu>")
    parts.append(f"<issuedAt>{issued_at}</issuedAt></LicenseDecision>")
    return "".join(parts).encode("utf-8")


async def _upload(state: ProviderState, case: Case) -> bool:
    """The management signs the result in the IS; the upload records SIGNED at the gateway."""
    assert state.client is not None and state.pki is not None
    signer = state.pki.party(state.settings.provider.signer)
    signed = sign_payload(decision_xml(case, iso_local()), signer)
    answer = await state.client.put(f"/provider/v1/applications/{case.id}/result", content=signed,
                                    headers={"Content-Type": "application/xml"})
    case.result_status = answer.status_code
    if answer.status_code == 200:
        case.steps.append("SIGNED")
        state.log("result-uploaded", registration=case.registration_number, decision=case.decision,
                  signer=state.settings.provider.signer)
        return True
    case.result_error = answer.text[:300]
    case.errors.append(f"result: HTTP {answer.status_code} {answer.text[:200]}")
    state.log("result-refused", registration=case.registration_number, http=answer.status_code,
              body=answer.text[:200])
    return False


def main(host: str = "127.0.0.1", port: int = 9104, config: str | None = None) -> int:
    return run_mock("provider", create_app, host, port, config)
