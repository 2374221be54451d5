"""The state of what signatures are judged by, for operators: the pinned CA certificates' expiry, each CRL's
nextUpdate, whether the OCSP responder answers, the transport certificates' expiry. Each item is ok,
warning or failing, with the reason in words; the report's state is its worst item's."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from pydantic import BaseModel

from core.clock import Clock
from gateway.config import Config
from signing.trust import load_certificates

CERT_WARNING = timedelta(days=30)  # a certificate expiring sooner is a warning
CRL_WARNING = timedelta(hours=2)  # a CRL whose nextUpdate is nearer is a warning (NCA refreshes several times a day)
OCSP_PROBE_SECONDS = 60.0  # the responder is asked at most this often
_RANK = {"ok": 0, "warning": 1, "failing": 2}


class TrustItem(BaseModel):
    kind: str  # "ca", "tsa", "crl", "ocsp", "transport"
    name: str
    state: str  # ok | warning | failing
    reason: str  # in English; `code` and `params` let the console say it in the operator's language
    code: str
    params: dict[str, str] = {}
    not_after: datetime | None = None  # a certificate's expiry or a CRL's nextUpdate
    seconds_left: float | None = None


class TrustReport(BaseModel):
    state: str
    revocation: str
    items: list[TrustItem]


def _worst(states: list[str]) -> str:
    return max(states, key=_RANK.__getitem__, default="ok")


class TrustStatus:
    def __init__(self, config: Config, clock: Clock, *, http: httpx.Client | None = None) -> None:
        self._config = config
        self._clock = clock
        self._http = http
        self._ocsp_lock = threading.Lock()
        self._ocsp: tuple[float, TrustItem] | None = None

    def report(self) -> TrustReport:
        now = self._clock.now()
        trust = self._config.trust
        items = [self._certificate("ca", c, now) for c in self._certificates(Path(trust.ca_dir))]
        if not items:
            items.append(TrustItem(kind="ca", name=str(trust.ca_dir), state="failing", code="no_ca",
                                   reason="no CA certificate in ca_dir: no signature can be trusted"))
        if trust.tsa_dir is not None:
            items.extend(self._certificate("tsa", c, now) for c in self._certificates(Path(trust.tsa_dir)))
        if trust.revocation == "off":
            items.append(TrustItem(kind="crl", name="revocation", state="warning", code="revocation_off",
                                   reason="revocation checks are off: a revoked certificate is accepted"))
        else:
            items.extend(self._crls(trust.crl_dir, now, needed=trust.revocation == "crl"))
        if trust.revocation == "ocsp":
            items.append(self._ocsp_item())
        out = self._config.outbound
        if out.wsse_cert_pem:
            items.append(self._certificate("transport", x509.load_pem_x509_certificate(out.wsse_cert_pem), now,
                                           label="the gateway's outbound WS-Security certificate"))
        for sender in self._config.senders:
            if sender.cert_pem:
                items.append(self._certificate("transport", x509.load_pem_x509_certificate(sender.cert_pem), now,
                                               label=f"sender {sender.id}'s transport certificate"))
        return TrustReport(state=_worst([i.state for i in items]), revocation=trust.revocation, items=items)

    @staticmethod
    def _certificates(directory: Path) -> list[x509.Certificate]:
        found: list[x509.Certificate] = []
        for path in sorted(directory.iterdir()) if directory.is_dir() else ():
            try:
                found.extend(load_certificates(path.read_bytes()) if path.is_file() else [])
            except (ValueError, OSError):
                continue
        return found

    @staticmethod
    def _certificate(kind: str, cert: x509.Certificate, now: datetime, *, label: str | None = None) -> TrustItem:
        name = label or cert.subject.rfc4514_string()
        left = cert.not_valid_after_utc - now
        params = {"date": f"{cert.not_valid_after_utc:%Y-%m-%d}", "days": str(left.days)}
        if left <= timedelta(0):
            state, code, reason = "failing", "cert_expired", f"expired on {params['date']}"
        elif left < CERT_WARNING:
            state, code, reason = "warning", "cert_expiring", f"expires in {left.days} days ({params['date']})"
        else:
            state, code, reason = "ok", "cert_valid", f"valid until {params['date']}"
        return TrustItem(kind=kind, name=name, state=state, reason=reason, code=code, params=params,
                         not_after=cert.not_valid_after_utc, seconds_left=left.total_seconds())

    @staticmethod
    def _crls(crl_dir: Path, now: datetime, *, needed: bool) -> list[TrustItem]:
        items = []
        for path in sorted(Path(crl_dir).iterdir()) if Path(crl_dir).is_dir() else ():
            try:
                data = path.read_bytes()
                crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
                       else x509.load_der_x509_crl(data))
            except (ValueError, OSError):
                continue
            next_update = crl.next_update_utc
            name = f"{path.name}: {crl.issuer.rfc4514_string()}"
            if next_update is None:
                items.append(TrustItem(kind="crl", name=name, state="warning", code="crl_no_next_update",
                                       reason="the CRL names no nextUpdate"))
                continue
            left = next_update - now
            params = {"date": f"{next_update:%Y-%m-%d %H:%M} UTC", "minutes": f"{left.total_seconds() / 60:.0f}"}
            if left <= timedelta(0):
                state, code = ("failing" if needed else "warning"), "crl_stale"
                reason = f"stale since {params['date']}: certificates it covers get CERT_STATUS_UNKNOWN"
            elif left < CRL_WARNING:
                state, code, reason = "warning", "crl_soon", f"nextUpdate in {params['minutes']} minutes"
            else:
                state, code, reason = "ok", "crl_ok", f"nextUpdate {params['date']}"
            items.append(TrustItem(kind="crl", name=name, state=state, reason=reason, code=code, params=params,
                                   not_after=next_update, seconds_left=left.total_seconds()))
        if not items and needed:
            items.append(TrustItem(kind="crl", name=str(crl_dir), state="failing", code="no_crl",
                                   reason="no CRL in crl_dir: every certificate gets CERT_STATUS_UNKNOWN"))
        return items

    def _ocsp_item(self) -> TrustItem:
        url = self._config.trust.ocsp_url
        if not url:
            return TrustItem(kind="ocsp", name="the certificates' AIA", state="ok", code="ocsp_aia",
                             reason="each certificate's own responder is asked (no ocsp_url to probe)")
        with self._ocsp_lock:
            if self._ocsp is not None and time.monotonic() - self._ocsp[0] < OCSP_PROBE_SECONDS:
                return self._ocsp[1]
            item = self._probe(url)
            self._ocsp = (time.monotonic(), item)
            return item

    def _probe(self, url: str) -> TrustItem:
        """Any HTTP answer means the responder is reachable (an empty GET is no OCSP request)."""
        try:
            answer = (self._http or httpx).get(url, timeout=min(self._config.trust.ocsp_timeout_seconds, 5.0))
        except httpx.HTTPError as exc:
            code = "ocsp_down_fallback" if self._fallback() else "ocsp_down"
            fallback = "the CRL fallback answers" if self._fallback() else "certificates get CERT_STATUS_UNKNOWN"
            return TrustItem(kind="ocsp", name=url, state="failing", code=code, params={"error": type(exc).__name__},
                             reason=f"unreachable ({type(exc).__name__}): {fallback}")
        return TrustItem(kind="ocsp", name=url, state="ok", code="ocsp_ok", params={"status": str(answer.status_code)},
                         reason=f"reachable (HTTP {answer.status_code})")

    def _fallback(self) -> bool:
        return self._config.trust.revocation_fallback == "crl"
