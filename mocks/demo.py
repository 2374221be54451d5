"""`licgate demo`: the whole service on one machine, every scenario of docs/testing.md end to end.

It writes a fresh test PKI, a gateway config and a mock settings file into a throw-away directory
(`--keep DIR` keeps them), starts `licgate serve` as a child process on a free loopback port with a new
SQLite file, starts every mock (SHEP, the portal, the Center, the e-license portal, the provider's IS,
and the NCA's CRL/OCSP responder when it is installed) on free loopback ports, and drives five
applicants through them over real HTTP. Time is compressed only by configuration: the provider mock
waits fractions of a second between the regulation's steps instead of minutes and days.

A scenario passes only when its real outcome is seen: the right answer to the submission, the final
notification pushed by SHEP to the office the application came from, the provider's signature on the
result verified by that office, the hand-over recorded as DELIVERED at the gateway, and so on.

`Stack` and `SCENARIOS` are reused by `tests/mocks/` to run the same scenarios under pytest.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mocks.common import (
    PROVIDER_NAME_KK,
    PROVIDER_NAME_RU,
    FrontOfficeSettings,
    MockSettings,
    ProviderSettings,
    ServerThread,
    Urls,
    free_port,
    reserve_port,
)
from signing.pki import CRL_NAME, DELTA_CRL_NAME, GOST_CRL_NAME, GOST_DELTA_CRL_NAME

MOCK_NAMES = ("shep", "portal", "center", "elicense", "provider")
DEMO_DELAYS = {"REGISTERED": 0.3, "SENT_TO_MANAGEMENT": 0.3, "RETURNED_FOR_PREPARATION": 0.4,
               "RESULT_PREPARED": 0.4, "SIGNED": 0.3, "ISSUED": 0.3}
REFUSAL_KK = ("Медициналық қызметтің мәлімделген кіші түріне қажетті жабдық туралы құжаттар ұсынылмаған "
              "(Стандарттың 10-тармағы, 2-тармақша): үй-жай біліктілік талаптарына сәйкес келмейді.")
REFUSAL_RU = ("Не представлены документы об оборудовании, необходимом для заявленного подвида медицинской "
              "деятельности (подпункт 2 пункта 10 Стандарта): помещение не соответствует квалификационным "
              "требованиям.")


# --- the running stack -------------------------------------------------------------------------------


class PortTaken(RuntimeError):
    """The gateway's port was taken by someone else between choosing it and the gateway binding it."""


@dataclass
class Stack:
    """The gateway (a `licgate serve` child process) and every mock, wired together on loopback."""

    workdir: Path
    settings: MockSettings = field(init=False)
    gateway: subprocess.Popen[bytes] | None = None
    servers: dict[str, ServerThread] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)  # notes for the output (e.g. revocation source)

    def start(self, *, log_to: Path | None = None) -> Stack:
        from signing.pki import init_pki

        self.workdir.mkdir(parents=True, exist_ok=True)
        _route_mock_logs(log_to or self.workdir / "mocks.log")
        # The in-process servers keep their sockets bound from here on; only the gateway, a child process,
        # binds its own port later (and is started again on another one if that port was taken meanwhile).
        sockets = {name: reserve_port() for name in ("nca", *MOCK_NAMES)}
        ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
        ports["gateway"] = free_port()
        urls = Urls(**{name: f"http://127.0.0.1:{ports[name]}" for name in ("gateway", *MOCK_NAMES)})
        nca_url = f"http://127.0.0.1:{ports['nca']}"
        pki_dir = init_pki(self.workdir / "pki", base_url=nca_url)
        self.settings = MockSettings(
            pki_dir=pki_dir, urls=urls,
            portal=FrontOfficeSettings(sender_id="EGOV_PORTAL", password=secrets.token_hex(12),
                                       tsa_url=f"{nca_url}/tsp"),
            center=FrontOfficeSettings(sender_id="CENTER_IS", password=secrets.token_hex(12),
                                       signer="center_operator", data_as_string=True,
                                       transport="center_transport", transport_key_ref="issuer-serial"),
            elicense=FrontOfficeSettings(sender_id="ELICENSE", password=secrets.token_hex(12), dialect="elicense",
                                         transport="gost_elicense_transport", service_id="ELICENSE_MED_LICENSE"),
            provider=ProviderSettings(token=secrets.token_hex(20), delays=dict(DEMO_DELAYS), poll_seconds=0.2),
        )
        self.settings.shep.require_wsse = True  # the gateway signs what it sends with its transport key
        revocation = self._start_nca(pki_dir, sockets["nca"])
        config = self.workdir / "licgate.toml"
        for attempt in range(1, 4):
            config.write_text(gateway_config(self.settings, ports["gateway"], self.workdir / "licgate.db", pki_dir,
                                             revocation, nca_url), encoding="utf-8")
            (self.workdir / "mocks.toml").write_text(mock_settings_toml(self.settings), encoding="utf-8")
            try:
                self._start_gateway(config, ports["gateway"])
                break
            except PortTaken:
                if attempt == 3:
                    raise
                ports["gateway"] = free_port()
                self.settings.urls.gateway = f"http://127.0.0.1:{ports['gateway']}"
        from mocks import center, elicense, portal, provider, shep

        for name, module in (("shep", shep), ("portal", portal), ("center", center), ("elicense", elicense),
                             ("provider", provider)):
            self.servers[name] = ServerThread(module.create_app(self.settings), sock=sockets[name]).start()
        return self

    def _start_nca(self, pki_dir: Path, sock: socket.socket) -> str:
        """The NCA's CRL/OCSP responder (another engineer's mock); without it the gateway reads the CRL files."""
        try:
            from mocks import nca
        except ImportError:
            self.extras.append("revocation: CRL files (the NCA mock is not installed)")
            return "crl"
        try:
            self.servers["nca"] = ServerThread(nca.create_app(pki_dir), sock=sock).start()
        except Exception as exc:  # noqa: BLE001 - reported, the demo goes on with CRL files
            self.extras.append(f"revocation: CRL files (the NCA mock did not start: {exc})")
            return "crl"
        self.extras.append("revocation: OCSP, answered by the NCA mock; its CRLs (full and delta) downloaded as the "
                           "fallback; timestamps from its TSA")
        return "ocsp"

    def _start_gateway(self, config: Path, port: int) -> None:
        log_path = self.workdir / "gateway.log"
        offset = log_path.stat().st_size if log_path.exists() else 0  # this start's lines only
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 40
        while True:
            if self.gateway.poll() is not None:
                tail = log_path.read_bytes()[offset:].decode("utf-8", errors="replace")[-1500:]
                if "address already in use" in tail.lower():
                    raise PortTaken(port)
                raise RuntimeError(f"the gateway exited with {self.gateway.returncode}:\n{tail}")
            try:
                if httpx.get(self.settings.urls.gateway + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become healthy within 40 s (see gateway.log)")
            time.sleep(0.1)

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait(timeout=10)

    # small helpers the scenarios use
    def url(self, name: str) -> str:
        return getattr(self.settings.urls, name)

    def get(self, name: str, path: str) -> Any:
        answer = httpx.get(self.url(name) + path, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def post(self, name: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(self.url(name) + path, json=body or {}, timeout=60)

    def gateway_application(self, gateway_id: str) -> dict[str, Any] | None:
        """The provider-side view of an application (docs/provider-api.md): status, timeline, deadlines."""
        answer = httpx.get(f"{self.settings.urls.gateway}/provider/v1/applications/{gateway_id}", timeout=30,
                           headers={"Authorization": f"Bearer {self.settings.provider.token}"})
        return answer.json() if answer.status_code == 200 else None


def _route_mock_logs(path: Path) -> None:
    """The mocks' one-line-per-action logs go to a file; the terminal shows the demo's own output."""
    import logging

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("mocks")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def gateway_config(settings: MockSettings, port: int, db: Path, pki_dir: Path, revocation: str, nca_url: str) -> str:
    """The gateway's TOML (docs/configuration.md) for this stack. With the NCA mock running, revocation is
    OCSP with the CRLs as its fallback, and those CRLs (full and delta) are downloaded from the mock into a
    directory of their own."""
    ocsp = f'ocsp_url = "{nca_url}/ocsp"\n' if revocation == "ocsp" else ""
    crl_dir = pki_dir / "crl"
    if revocation == "ocsp":
        crl_dir = pki_dir.parent / "crl-fetched"
        crl_dir.mkdir(exist_ok=True)
        urls = ", ".join(f'"{nca_url}/crl/{name}"'
                         for name in (CRL_NAME, DELTA_CRL_NAME, GOST_CRL_NAME, GOST_DELTA_CRL_NAME))
        ocsp += f'revocation_fallback = "crl"\ncrl_urls = [{urls}]\ncrl_refresh_seconds = 600\n'
    p, c, e = settings.portal, settings.center, settings.elicense
    return f"""# written by `licgate demo`
[server]
host = "127.0.0.1"
port = {port}

[storage]
url = "sqlite:///{db}"

[trust]
ca_dir = "{pki_dir / 'ca'}"
revocation = "{revocation}"
crl_dir = "{crl_dir}"
tsa_dir = "{pki_dir / 'tsa'}"
{ocsp}
[[providers]]
bin = "{settings.provider.bin}"
name_kk = "{PROVIDER_NAME_KK}"
name_ru = "{PROVIDER_NAME_RU}"
token = "{settings.provider.token}"

[[senders]]
id = "{p.sender_id}"
password = "{p.password}"
services = ["MED_LICENSE", "MED_LICENSE_STATUS"]
channel = "PORTAL"

[[senders]]
id = "{c.sender_id}"
password = "{c.password}"
services = ["MED_LICENSE", "MED_LICENSE_STATUS"]
channel = "CENTER"
bin = "990140004654"
wsse = "required"
cert = "{pki_dir / 'parties' / 'center_transport.cert.pem'}"

[[senders]]
id = "{e.sender_id}"
password = "{e.password}"
services = ["{e.service_id}", "MED_LICENSE_STATUS"]
channel = "ELICENSE"
wsse = "required"
bin = "070340004560"

[service_aliases]                      # the e-license portal's own serviceId
ELICENSE_MED_LICENSE = "MED_LICENSE"

[outbound]
shep_async_url = "{settings.urls.shep}/shep/async"
sender_id = "LICGATE"
wsse_key = "{pki_dir / 'parties' / 'gateway_transport.key.pem'}"
wsse_cert = "{pki_dir / 'parties' / 'gateway_transport.cert.pem'}"
backoff_initial_seconds = 0.2
backoff_max_seconds = 2.0
poll_seconds = 0.1
"""


def mock_settings_toml(settings: MockSettings) -> str:
    """The same wiring as a mock settings file, so `licgate mock NAME --config` can rerun any mock."""
    u, pr = settings.urls, settings.provider
    delays = ", ".join(f"{k} = {v}" for k, v in pr.delays.items())
    offices = "".join(
        f'\n[{name}]\nsender_id = "{o.sender_id}"\npassword = "{o.password}"\nservice_id = "{o.service_id}"\n'
        f'signer = "{o.signer}"\n'
        f'dialect = "{o.dialect}"\ndata_as_string = {str(o.data_as_string).lower()}\n'
        f'transport = "{o.transport}"\ntransport_key_ref = "{o.transport_key_ref}"\ntsa_url = "{o.tsa_url}"\n'
        for name, o in (("portal", settings.portal), ("center", settings.center), ("elicense", settings.elicense))
    )
    return (
        f'# written by `licgate demo`: settings of every mock (see docs/testing.md)\n'
        f'pki_dir = "{settings.pki_dir}"\n\n[urls]\n'
        + "".join(f'{k} = "{getattr(u, k)}"\n' for k in ("gateway", "shep", "portal", "center", "elicense",
                                                          "provider"))
        + offices
        + f"\n[shep]\nrequire_wsse = {str(settings.shep.require_wsse).lower()}\n"
        + f'\n[provider]\ntoken = "{pr.token}"\nbin = "{pr.bin}"\nsigner = "{pr.signer}"\n'
        f"poll_seconds = {pr.poll_seconds}\ndelays = {{ {delays} }}\n"
    )


# --- scenarios ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one scenario ended with, and every check it made (name, passed, detail)."""

    key: str
    title: str
    office: str
    request_number: str = ""
    registration_number: str = ""
    status: str = ""
    status_kk: str = ""
    status_ru: str = ""
    expected: str = ""
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.checks) and all(passed for _, passed, _ in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(passed), detail))
        return bool(passed)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    office: str  # portal | center | elicense
    order: dict[str, Any]
    expected: str  # the final status: GRANTED | REFUSED | INTAKE_REFUSED
    handover: bool = False  # the Center hands the result over (DELIVERED)
    refuse_reason: tuple[str, str] | None = None  # a provider rule for this applicant
    signed_long_ago: bool = False  # XAdES-T, stamped long ago: the certificate is judged at the stamp's genTime


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("portal-issue", "Portal: licence issued to an individual", "portal",
             {"applicant": "individual", "service_type": "ISSUE"}, "GRANTED"),
    Scenario("center-reissue-incomplete", "Center: re-registration with an incomplete package", "center",
             {"applicant": "individual", "service_type": "REISSUE", "license_number": "KZ41LAA00000412",
              "documents": ["APPLICATION_FORM", "FEE_RECEIPT"]}, "INTAKE_REFUSED"),
    Scenario("center-duplicate", "Center: duplicate granted and handed over", "center",
             {"applicant": "individual", "service_type": "DUPLICATE", "license_number": "KZ41LAA00000977"},
             "GRANTED", handover=True),
    Scenario("elicense-issue-refused", "e-license: licence refused with a motivated refusal", "elicense",
             {"applicant": "individual2", "service_type": "ISSUE", "subtypes": ["DENTISTRY"]}, "REFUSED",
             refuse_reason=(REFUSAL_KK, REFUSAL_RU)),
    Scenario("portal-signed-long-ago", "Portal: signed and timestamped 60 days ago by a certificate expired since",
             "portal", {"applicant": "expired", "service_type": "ISSUE", "timestamp": True, "signed_days_ago": 60},
             "GRANTED", signed_long_ago=True),
    Scenario("portal-legal-entity", "Portal: a legal entity signs through its first head", "portal",
             {"applicant": "le_head", "service_type": "ISSUE", "subtypes": ["PRIMARY_HEALTH_CARE", "LABORATORY"]},
             "GRANTED"),
    Scenario("portal-gost", "Portal: an individual signs with a GOST 34.10-2015 key (NCA since 2022)", "portal",
             {"applicant": "gost_individual", "service_type": "ISSUE"}, "GRANTED"),
)


def submit(stack: Stack, scenario: Scenario) -> Outcome:
    """Step 1 of a scenario: set the provider's rule (if any) and submit the application."""
    out = Outcome(scenario.key, scenario.title, scenario.office, expected=scenario.expected)
    try:
        if scenario.refuse_reason:
            from mocks.common import Pki

            number = Pki(stack.settings.pki_dir).party(scenario.order["applicant"]).iin or ""
            stack.post("provider", "/rules", {"decision": "REFUSED", "applicant": number,
                                              "reason_kk": scenario.refuse_reason[0],
                                              "reason_ru": scenario.refuse_reason[1]}).raise_for_status()
        answer = stack.post(scenario.office, "/applications", scenario.order)
        if answer.status_code != 201:
            out.error = f"the {scenario.office} mock refused the order: HTTP {answer.status_code} {answer.text[:200]}"
            return out
        record = answer.json()
        out.request_number, out.registration_number = record["request_number"], record["registration_number"]
        want = "INTAKE_REFUSED" if scenario.expected == "INTAKE_REFUSED" else "SCSS001"
        detail = record["answer_code"] + (f" {record['answer_error_data']}" if record["answer_error_data"] else "")
        session = _session_of(stack, record["message_id"])
        if getattr(stack.settings, scenario.office).transport:
            out.check("WS-Security signed; SHEP relayed the signed body untouched", session.startswith("none"),
                      session)
        else:
            out.check("SHEP relayed it with a {guid} sessionId", session.startswith("{"), session)
        if not out.check(f"the gateway answered {want}", record["answer_code"] == want, detail):
            out.error = f"the submission was answered {detail}, not {want}"
    except Exception as exc:  # noqa: BLE001 - a scenario failure is reported, never a crash of the demo
        out.error = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _session_of(stack: Stack, message_id: str) -> str:
    """The sessionId SHEP's relay gave the request (from its action log), or "" when it was not relayed."""
    return next((str(e.get("session", "")) for e in stack.get("shep", "/log")
                 if e["action"] == "sync-relayed" and e.get("message_id") == message_id), "")


def progress(stack: Stack, scenario: Scenario, out: Outcome) -> tuple[str, bool]:
    """The scenario's current status at its office, and whether it has reached the end it is waiting for."""
    if out.error or not out.request_number:
        return "failed", True
    record = stack.get(scenario.office, f"/cabinet/{out.request_number}")
    status = record["status"] or "-"
    if scenario.expected == "INTAKE_REFUSED":
        return status, True
    if not record["final"] or not record["has_result"]:
        return status, False
    if scenario.handover and not record["handed_over_at"]:
        answer = stack.post("center", f"/applications/{out.request_number}/handover",
                            {"worker": "ЖҰМАБАЕВА Д. (ХҚКО / ЦОН)"})
        if answer.status_code != 200:
            out.error = f"hand-over refused: HTTP {answer.status_code} {answer.text[:200]}"
            return status, True
        return status + " (handed over)", False
    if scenario.handover:
        case = _provider_case(stack, out.registration_number)
        return status + " (handed over)", bool(case and "DELIVERED" in case["steps"])
    return status, True


def _provider_case(stack: Stack, registration_number: str) -> dict[str, Any] | None:
    answer = httpx.get(f"{stack.url('provider')}/applications/{registration_number}", timeout=30)
    return answer.json() if answer.status_code == 200 else None


def verify(stack: Stack, scenario: Scenario, out: Outcome) -> Outcome:
    """The checks of a finished scenario, against what every party really saw."""
    if out.error or not out.request_number:
        return out
    try:
        _verify(stack, scenario, out)
    except Exception as exc:  # noqa: BLE001
        out.error = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _verify(stack: Stack, scenario: Scenario, out: Outcome) -> None:
    record = stack.get(scenario.office, f"/cabinet/{out.request_number}")
    out.registration_number = record["registration_number"]
    out.status, out.status_kk, out.status_ru = record["status"], record["status_kk"], record["status_ru"]
    out.check(f"final status {scenario.expected}", record["status"] == scenario.expected, record["status"])
    out.check("status texts in Kazakh and Russian", bool(record["status_kk"] and record["status_ru"]),
              f"{record['status_kk']} / {record['status_ru']}")
    case = _provider_case(stack, out.registration_number)
    if scenario.expected == "INTAKE_REFUSED":
        missing = {m["code"]: m for m in record["missing_documents"]}
        out.check("refusal receipt lists REISSUE_GROUNDS", "REISSUE_GROUNDS" in missing, ",".join(missing))
        out.check("refusal receipt is bilingual", all(m["kk"] and m["ru"] for m in missing.values())
                  and bool(record["refusal_kk"] and record["refusal_ru"]), record["refusal_ru"][:80])
        out.check("never reached the provider's IS", case is None, "")
        status = stack.post(scenario.office, f"/applications/{out.request_number}/status-query").json()
        out.check("MED_LICENSE_STATUS says INTAKE_REFUSED", status["status"] == "INTAKE_REFUSED", status["code"])
        out.timeline = [f"received {_when(record['received_at'] or record['submitted_at'])}: INTAKE_REFUSED, "
                        "never queued to the provider",
                        f"kk: {record['refusal_kk']}", f"ru: {record['refusal_ru']}"]
        return
    final = [n for n in record["notifications"] if n["status"] == scenario.expected]
    out.check("final RESPONSE pushed to the office it came from",
              any(n["message_type"] == "RESPONSE" for n in final), ",".join(n["message_type"] for n in final))
    sender = getattr(stack.settings, scenario.office).sender_id
    out.check(f"every notification routed to {sender}, correlated with the request",
              all(n["route_id"] == sender and n["correlation_id"] == record["message_id"]
                  for n in record["notifications"]), f"{len(record['notifications'])} notifications")
    shep_view = [m for m in stack.get("shep", "/shep/messages") if m["correlation_id"] == record["message_id"]]
    out.check("SHEP verified the gateway's WS-Security signature on each",
              bool(shep_view) and all(m["wsse"].startswith("verified") for m in shep_view),
              ",".join(sorted({m["wsse"] for m in shep_view})))
    out.check("the office verified the provider's signature on the result", record["result_verified"],
              record["result_check"][:100])
    decision = record["decision"]
    if scenario.expected == "GRANTED":
        out.check("licence number in the result", decision.get("licenseNumber", "").startswith("KZ"),
                  decision.get("licenseNumber", ""))
    else:
        out.check("motivated refusal in Kazakh and Russian",
                  bool(decision.get("reasonKk") and decision.get("reasonRu")), decision.get("reasonRu", "")[:60])
    download = httpx.get(f"{stack.url(scenario.office)}/cabinet/{out.request_number}/result", timeout=30)
    out.check("the applicant can download the result", download.status_code == 200
              and b"LicenseDecision" in download.content, f"HTTP {download.status_code}")
    gateway = stack.gateway_application(case["id"]) if case else None
    out.check("the gateway's record is final", bool(gateway) and scenario.expected in str(gateway.get("status")),
              str(gateway.get("status")) if gateway else "no record")
    if scenario.handover:
        steps = _gateway_steps(gateway)
        out.check("DELIVERED recorded at the gateway", "DELIVERED" in steps, ",".join(steps))
    if scenario.signed_long_ago:
        signed_at = str(gateway.get("signed_at") or "") if gateway else ""
        out.check("the receipt carries signedAt, the timestamp's genTime", bool(record["signed_at"]),
                  record["signed_at"])
        out.check("the gateway shows the same signedAt", bool(signed_at) and signed_at[:19] == record["signed_at"][:19],
                  signed_at)
    out.timeline = timeline_lines(gateway, record)
    if scenario.signed_long_ago:
        out.timeline.insert(0, f"signed {_when(record['signed_at'])} (proven by the TSA's timestamp); the signer's "
                               "certificate has expired since")
    if decision.get("decision") == "GRANTED":
        out.timeline.append(f"result: licence {decision.get('licenseNumber')} ({record['result_check']})")
    elif decision:
        out.timeline += [f"result: motivated refusal ({record['result_check']})",
                         f"  kk: {decision.get('reasonKk')}", f"  ru: {decision.get('reasonRu')}"]
    if record["handed_over_at"]:
        out.timeline.append(f"handed over at the Center {_when(record['handed_over_at'])}")


def _gateway_steps(gateway: dict[str, Any] | None) -> list[str]:
    if not gateway:
        return []
    return [str(t.get("step") or t.get("status") or t.get("name")) for t in gateway.get("timeline", [])]


def timeline_lines(gateway: dict[str, Any] | None, record: dict[str, Any]) -> list[str]:
    """The application's timeline as the gateway keeps it: each step with who did it and when, next to its
    deadline under the regulation (due time, limit, met or breached)."""
    if not gateway:
        return [f"{_when(n['changed_at'])}  {n['status']:26} {n['status_kk']} / {n['status_ru']}"
                for n in record["notifications"]]
    deadlines = {d.get("step"): d for d in gateway.get("deadlines", []) if isinstance(d, dict)}
    lines = [f"received {_when(gateway.get('received_at'))}, result due {_when(gateway.get('due_at'))} "
             f"(the Standard's term for {gateway.get('service_type')})",
             f"{'step':25} {'done at':19}  {'due by':19}  {'state':8} actor"]
    for t in gateway.get("timeline", []):
        d = deadlines.get(t.get("step"), {})
        state = str(d.get("state", "")) if d else ""
        lines.append(f"{t.get('step', '?'):25} {_when(t.get('at'))}  {_when(d.get('due_at')):19}  {state:8} "
                     f"{t.get('actor', '')}")
    return lines


def _when(value: Any) -> str:
    """`2026-11-27 11:36:32` from an ISO time (the gateway answers Astana time with its offset)."""
    text = str(value or "")
    return text[:19].replace("T", " ") if text else "-"


def run_scenarios(stack: Stack, *, timeout: float = 45.0, scenarios: tuple[Scenario, ...] = SCENARIOS,
                  on_progress: Callable[[dict[str, str]], None] | None = None) -> list[Outcome]:
    """Submit every scenario, follow them until each reached its end (or `timeout`), then check them."""
    outcomes = [submit(stack, s) for s in scenarios]
    deadline = time.monotonic() + timeout
    finished: dict[str, bool] = {}
    while True:
        states = {}
        for scenario, out in zip(scenarios, outcomes, strict=True):
            if finished.get(scenario.key):
                states[scenario.key] = out.status or "done"
                continue
            try:
                status, done = progress(stack, scenario, out)
            except Exception as exc:  # noqa: BLE001
                out.error, status, done = f"{type(exc).__name__}: {exc}"[:300], "failed", True
            out.status = status
            finished[scenario.key] = done
            states[scenario.key] = status
        if on_progress:
            on_progress(states)
        if all(finished.values()):
            break
        if time.monotonic() > deadline:
            for scenario, out in zip(scenarios, outcomes, strict=True):
                if not finished[scenario.key]:
                    out.error = f"did not finish within {timeout:.0f} s (last status {out.status or '-'})"
            break
        time.sleep(0.25)
    return [verify(stack, s, o) for s, o in zip(scenarios, outcomes, strict=True)]


# --- the command -------------------------------------------------------------------------------------


class Progress:
    """One status line, rewritten in place on a terminal, printed on change otherwise."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.tty = sys.stdout.isatty()
        self.last = ""

    def __call__(self, states: dict[str, str]) -> None:
        done = sum(1 for s in states.values() if s in ("GRANTED", "REFUSED", "INTAKE_REFUSED", "failed")
                   or "handed over" in s)
        line = f"[{time.monotonic() - self.started:5.1f}s {done}/{len(states)} done] " + " | ".join(
            f"{n}:{v.replace(' (handed over)', '+handed over')}" for n, v in enumerate(states.values(), 1))
        if line.split("] ", 1)[1] == self.last.split("] ", 1)[-1]:
            if self.tty:
                print("\r" + line[:180].ljust(180), end="", flush=True)
            return
        self.last = line
        print(("\r" if self.tty else "") + line[:180].ljust(180 if self.tty else 0), end="" if self.tty else "\n",
              flush=True)

    def close(self) -> None:
        if self.tty:
            print()


def run_demo(keep: str | None = None) -> int:
    """`licgate demo [--keep DIR]`: 0 only when every scenario ended as expected."""
    started = time.monotonic()
    workdir = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="licgate-demo-"))
    if keep and workdir.exists() and any(workdir.iterdir()):
        print(f"licgate demo: {workdir} is not empty; give an empty or new directory to --keep", file=sys.stderr)
        return 2
    stack = Stack(workdir)
    print(f"licgate demo: working directory {workdir}{' (kept)' if keep else ' (removed at the end)'}")
    try:
        print("starting: test PKI, gateway (licgate serve), SHEP, portal, Center, e-license, provider IS ...")
        try:
            stack.start()
        except Exception as exc:  # noqa: BLE001 - one line and the exit code, no stack trace
            print(f"licgate demo: could not start the stack: {exc}", file=sys.stderr)
            return 1
        for name, server in stack.servers.items():
            print(f"  {name:9} {server.url}")
        print(f"  {'gateway':9} {stack.settings.urls.gateway}  (logs: {workdir / 'gateway.log'})")
        for note in stack.extras:
            print(f"  {note}")
        print()
        ticker = Progress(started)
        outcomes = run_scenarios(stack, on_progress=ticker)
        ticker.close()
        print()
        for number, out in enumerate(outcomes, 1):
            print_outcome(number, out)
        print_summary(outcomes)
        ok = all(o.ok for o in outcomes)
        print(f"\n{'ALL SCENARIOS PASSED' if ok else 'SOME SCENARIOS FAILED'} in {time.monotonic() - started:.1f} s")
        return 0 if ok else 1
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def print_outcome(number: int, out: Outcome) -> None:
    print(f"{number}. {out.title}  [{out.office}]  request {out.request_number or '-'}, "
          f"registration {out.registration_number or '-'}")
    for line in out.timeline:
        print(f"     {line}")
    for name, passed, detail in out.checks:
        print(f"   {'✔' if passed else '✘'} {name}" + (f"  ({detail})" if detail and not passed else ""))
    if out.error:
        print(f"   ✘ {out.error}")
    print()


def print_summary(outcomes: list[Outcome]) -> None:
    rows = [("#", "scenario", "registration", "status (kk)", "status (ru)", "expected", "result")]
    for number, out in enumerate(outcomes, 1):
        rows.append((str(number), out.key, out.registration_number or "-", out.status_kk or "-", out.status_ru or "-",
                     out.expected, "PASS" if out.ok else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "+".join("-" * (w + 2) for w in widths)
    print("+" + rule + "+")
    for i, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("+" + rule + "+")
    print("+" + rule + "+")
