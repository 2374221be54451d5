"""The one config object: `licgate serve --config FILE` (docs/configuration.md), validated at start-up.

Every problem is reported as one line naming the key and the reason (`ConfigError`), and the CLI exits 2.
Secrets may be written as `env:VARNAME`. Every key is documented in docs/configuration.md; keys beyond the
contract all have defaults, so a file written against the contract alone is complete.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.domain import Channel, ServiceType
from core.identifiers import bin_problem
from signing.providers import build_registry
from signing.trust import TrustConfig

SERVICE_SUBMIT = "MED_LICENSE"
SERVICE_STATUS = "MED_LICENSE_STATUS"
KNOWN_SERVICES = (SERVICE_SUBMIT, SERVICE_STATUS)

DEFAULT_CHECKLISTS: dict[str, list[str]] = {
    "ISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "PREMISES_EQUIPMENT", "STAFF_QUALIFICATION"],
    "REISSUE": ["APPLICATION_FORM", "FEE_RECEIPT", "REISSUE_GROUNDS"],
    "DUPLICATE": ["APPLICATION_FORM", "FEE_RECEIPT"],
}
DEFAULT_TERMS: dict[str, int] = {"ISSUE": 13, "REISSUE": 3, "DUPLICATE": 2}


class ConfigError(Exception):
    """One line: the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_message_bytes: int = 20 * 1024 * 1024
    max_in_flight: int = 64  # concurrent SOAP requests before OVERLOADED
    # Of those, how many one sender may hold (None: all of them); `[[senders]] max_in_flight` overrides it.
    max_in_flight_per_sender: int | None = None
    log_level: str = "INFO"
    # Processes that examine SOAP requests (parse, schemas, signatures) beside the one that serves HTTP
    # and stores; None is "auto": one per CPU core but one, at most 8. 0 examines in the serving process.
    intake_processes: int | None = None
    # On SIGTERM: the time allowed to finish the requests in flight and stop (then the process exits 0).
    shutdown_seconds: float = 20.0
    # Slow and broken clients (gateway/api/connections.py): a request head must arrive within this long,
    # its body within that long after the head; open connections per client address (0: no limit).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    max_connections_per_client: int = 512

    def resolved_intake_processes(self) -> int:
        if self.intake_processes is not None:
            return self.intake_processes
        return max(0, min((os.cpu_count() or 1) - 1, 8))


@dataclass(frozen=True)
class StorageConfig:
    url: str = "sqlite:///./licgate.db"
    max_queue_depth: int = 5_000_000  # queued applications before intake answers OVERLOADED
    pool_size: int = 8  # PostgreSQL connections per gateway process


@dataclass(frozen=True)
class ProviderConfig:
    bin: str
    name_kk: str
    name_ru: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class SenderConfig:
    id: str
    password: str = field(repr=False)
    services: tuple[str, ...]
    channel: Channel
    wsse: str = "off"  # required | optional | off
    bin: str = ""
    cert_pem: bytes | None = field(default=None, repr=False)  # the one transport certificate, if set
    # Per-sender limits (docs/configuration.md): a token bucket of `max_requests_per_second` refilled,
    # `burst` deep (None: no rate limit), and this sender's share of `server.max_in_flight`.
    max_requests_per_second: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True)
class CalendarConfig:
    timezone: str = "Asia/Almaty"
    work_start: time = time(9, 0)
    work_end: time = time(18, 30)
    break_start: time = time(13, 0)
    break_end: time = time(14, 30)
    extra_days_off: tuple[date, ...] = ()
    extra_working_days: tuple[date, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class StepLimitsConfig:
    """The regulation's short time limits (docs/provider-api.md), in working minutes."""

    register_minutes: int = 10  # REGISTERED and SENT_TO_MANAGEMENT after intake
    review_minutes: int = 30  # RETURNED_FOR_PREPARATION after SENT_TO_MANAGEMENT
    issue_minutes: int = 10  # ISSUED after SIGNED
    breach_sweep_seconds: float = 60.0  # how often overdue deadlines are looked for (metrics)


@dataclass(frozen=True)
class OutboundConfig:
    shep_async_url: str = "http://127.0.0.1:9000/shep/async"
    sender_id: str = "LICGATE"
    password: str = field(default="", repr=False)
    wsse_key_pem: bytes | None = field(default=None, repr=False)
    wsse_cert_pem: bytes | None = field(default=None, repr=False)
    timeout_seconds: float = 10.0
    max_attempts: int = 50  # then the message is dead-lettered with its reason
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    poll_seconds: float = 0.5
    concurrency: int = 4  # messages of different applications sent at once
    alert_after_seconds: float = 900.0  # healthz is degraded while an undelivered message is older than this
    # How long a claim on a message stands; None: twice the attempt's timeout and 5 s to record the outcome.
    claim_seconds: float | None = None

    @property
    def resolved_claim_seconds(self) -> float:
        return self.claim_seconds if self.claim_seconds is not None else self.timeout_seconds * 2 + 5


@dataclass(frozen=True)
class InstancesConfig:
    """Several gateway processes on one database (docs/operations.md)."""

    heartbeat_seconds: float = 5.0  # how often an instance refreshes its row
    timeout_seconds: float = 20.0  # an instance not seen for this long is not live


@dataclass(frozen=True)
class AuditConfig:
    """The message log's audit (docs/audit.md): the seal key that signs checkpoints, and how often."""

    key_pem: bytes | None = field(default=None, repr=False)  # None: a key of each process's own, in memory
    cert_pem: bytes | None = None
    checkpoint_records: int = 1000  # a checkpoint at least every N records
    checkpoint_seconds: float = 60.0  # and at most T seconds after the first record it does not cover
    checkpoint_file: Path | None = None  # append-only copy of every checkpoint, outside the database
    tsa_url: str = ""  # optional: an RFC 3161 timestamp on every checkpoint


@dataclass(frozen=True)
class OperatorConfig:
    """Someone at the licensing authority who runs the gateway: the console and the ops API."""

    name: str
    password_hash: str = field(repr=False)  # made by `licgate operator hash-password`
    role: str = "viewer"  # viewer | admin
    token: str = field(default="", repr=False)  # bearer token for the ops API; "" = none

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ConsoleConfig:
    session_seconds: float = 8 * 3600.0  # a console session ends this long after login
    lockout_failures: int = 5  # failed logins in a row that lock an operator out
    lockout_seconds: float = 900.0  # for this long


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    providers: tuple[ProviderConfig, ...] = ()
    senders: tuple[SenderConfig, ...] = ()
    checklists: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_CHECKLISTS.items()}
    )
    terms: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TERMS))
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    step_limits: StepLimitsConfig = field(default_factory=StepLimitsConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    instances: InstancesConfig = field(default_factory=InstancesConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    service_aliases: dict[str, str] = field(default_factory=dict)  # extra serviceId -> a KNOWN_SERVICES name
    operators: tuple[OperatorConfig, ...] = ()
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    def provider(self, bin_: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.bin == bin_), None)

    def operator(self, name: str) -> OperatorConfig | None:
        return next((o for o in self.operators if o.name == name), None)

    def sender(self, sender_id: str) -> SenderConfig | None:
        return next((s for s in self.senders if s.id == sender_id), None)

    def service(self, service_id: str) -> str | None:
        """The canonical service a serviceId names (itself or through an alias), or None."""
        if service_id in KNOWN_SERVICES:
            return service_id
        return self.service_aliases.get(service_id)


# --- loading -----------------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raise ConfigError naming the key and the reason."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, base_dir=Path(path).resolve().parent)


_SECTIONS = {
    "server", "storage", "trust", "providers", "senders", "checklists", "terms", "calendar",
    "step_limits", "outbound", "service_aliases", "operators", "console", "instances",
    "audit",
}


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Validate an already-parsed TOML table. Relative paths are taken from `base_dir`."""
    base = base_dir or Path.cwd()
    _no_unknown("", data, _SECTIONS)
    server = _server(_table(data, "server"))
    storage = _storage(_table(data, "storage"), base)
    trust = _trust(_table(data, "trust"), base)
    providers = _providers(data.get("providers", []))
    aliases = _aliases(_table(data, "service_aliases"))
    senders = _senders(data.get("senders", []), base, aliases)
    checklists = _checklists(_table(data, "checklists"))
    terms = _terms(_table(data, "terms"))
    calendar = _calendar(_table(data, "calendar"))
    step_limits = _step_limits(_table(data, "step_limits"))
    outbound = _outbound(_table(data, "outbound"), base)
    operators = _operators(data.get("operators", []), providers)
    console = _console(_table(data, "console"))
    instances = _instances(_table(data, "instances"))
    audit = _audit(data["audit"], base) if "audit" in data else AuditConfig()
    return Config(
        server=server, storage=storage, trust=trust, providers=providers, senders=senders,
        checklists=checklists, terms=terms, calendar=calendar, step_limits=step_limits,
        outbound=outbound, instances=instances, service_aliases=aliases, operators=operators, console=console,
        audit=audit,
    )


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _no_unknown(prefix: str, table: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}", "unknown key")


def _str(table: dict[str, Any], key: str, name: str, default: str | None = None, secret: bool = False) -> str:
    if key not in table:
        if default is None:
            raise ConfigError(name, "missing required key")
        return default
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, not {type(value).__name__}")
    if secret:
        value = _secret(value, name)
    return value


def _secret(value: str, name: str) -> str:
    if value.startswith("env:"):
        var = value[4:]
        if not var:
            raise ConfigError(name, "env: needs a variable name")
        if var not in os.environ:
            raise ConfigError(name, f"environment variable {var} is not set")
        return os.environ[var]
    return value


def _int(table: dict[str, Any], key: str, name: str, default: int, lo: int = 1, hi: int | None = None) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, not {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(name, f"must be between {lo} and {hi}" if hi is not None else f"must be >= {lo}")
    return value


def _float(table: dict[str, Any], key: str, name: str, default: float, lo: float = 0.0) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number, not {type(value).__name__}")
    if value <= lo:
        raise ConfigError(name, f"must be > {lo:g}")
    return float(value)


def _choice(table: dict[str, Any], key: str, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = _str(table, key, name, default)
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _path(table: dict[str, Any], key: str, name: str, default: str, base: Path) -> Path:
    p = Path(_str(table, key, name, default))
    return p if p.is_absolute() else (base / p)


def _http_url(value: str, name: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(name, f"must be an http(s) URL, not {value!r}")
    return value


def _pem(value: str, name: str, base: Path, kind: str) -> bytes:
    """A PEM given inline (a TOML multi-line string) or as a file path."""
    if "-----BEGIN" in value:
        pem = value.encode()
    else:
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(name, f"cannot read {path}: {exc.strerror or exc}") from None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        if kind == "cert":
            x509.load_pem_x509_certificate(pem)
        else:
            load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(name, f"not a PEM {'certificate' if kind == 'cert' else 'private key'}: {exc}") from None
    return pem


def _server(t: dict[str, Any]) -> ServerConfig:
    _no_unknown("server.", t, {"host", "port", "max_message_bytes", "max_in_flight", "max_in_flight_per_sender",
                               "log_level", "intake_processes", "shutdown_seconds", "header_timeout_seconds",
                               "body_timeout_seconds", "max_connections_per_client"})
    processes = t.get("intake_processes", "auto")
    if processes != "auto":
        if isinstance(processes, str):
            raise ConfigError("server.intake_processes", f'must be "auto" or a number of processes, not {processes!r}')
        processes = _int(t, "intake_processes", "server.intake_processes", 0, 0, 64)
    return ServerConfig(
        host=_str(t, "host", "server.host", "127.0.0.1") or _fail("server.host", "must not be empty"),
        port=_int(t, "port", "server.port", 8080, 0, 65535),
        max_message_bytes=_int(t, "max_message_bytes", "server.max_message_bytes", 20 * 1024 * 1024, 1024),
        max_in_flight=_int(t, "max_in_flight", "server.max_in_flight", 64, 1),
        max_in_flight_per_sender=(_int(t, "max_in_flight_per_sender", "server.max_in_flight_per_sender", 1, 1)
                                  if "max_in_flight_per_sender" in t else None),
        log_level=_choice(t, "log_level", "server.log_level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        intake_processes=None if processes == "auto" else processes,
        shutdown_seconds=_float(t, "shutdown_seconds", "server.shutdown_seconds", 20.0),
        header_timeout_seconds=_float(t, "header_timeout_seconds", "server.header_timeout_seconds", 10.0),
        body_timeout_seconds=_float(t, "body_timeout_seconds", "server.body_timeout_seconds", 60.0),
        max_connections_per_client=_int(t, "max_connections_per_client", "server.max_connections_per_client",
                                        512, 0),
    )


def _fail(key: str, reason: str) -> Any:
    raise ConfigError(key, reason)


def _storage(t: dict[str, Any], base: Path) -> StorageConfig:
    _no_unknown("storage.", t, {"url", "max_queue_depth", "pool_size"})
    # The URL may carry a PostgreSQL password: `env:` is resolved first, then the URL checked.
    url = _str(t, "url", "storage.url", "sqlite:///./licgate.db", secret=True)
    if url.startswith("sqlite:///"):
        rel = url[len("sqlite:///"):]
        if not rel:
            raise ConfigError("storage.url", "sqlite:/// needs a file path")
        if rel != ":memory:" and not Path(rel).is_absolute() and not rel.startswith("/"):
            url = "sqlite:///" + str((base / rel).resolve())
    elif not (url.startswith("postgresql://") or url.startswith("postgres://")):
        raise ConfigError("storage.url", f"must start with sqlite:/// or postgresql://, not {url!r}")
    return StorageConfig(
        url=url,
        max_queue_depth=_int(t, "max_queue_depth", "storage.max_queue_depth", 5_000_000, 1),
        pool_size=_int(t, "pool_size", "storage.pool_size", 8, 1, 200),
    )


def _trust(t: dict[str, Any], base: Path) -> TrustConfig:
    _no_unknown("trust.", t, {"ca_dir", "revocation", "crl_dir", "ocsp_url", "ocsp_timeout_seconds",
                              "ocsp_max_age_seconds", "tsa_dir", "crl_urls", "crl_refresh_seconds",
                              "revocation_fallback", "wsse_window_seconds", "wsse_clock_skew_seconds",
                              "crypto_providers"})
    ca_dir = _path(t, "ca_dir", "trust.ca_dir", "./pki/ca", base)
    if not ca_dir.is_dir():
        raise ConfigError("trust.ca_dir", f"{ca_dir} is not a directory")
    revocation = _choice(t, "revocation", "trust.revocation", ("ocsp", "crl", "off"), "crl")
    crl_dir = _path(t, "crl_dir", "trust.crl_dir", "./pki/crl", base)
    if revocation == "crl" and not crl_dir.is_dir():
        raise ConfigError("trust.crl_dir", f"{crl_dir} is not a directory (needed when revocation = \"crl\")")
    ocsp_url = _str(t, "ocsp_url", "trust.ocsp_url", "")
    if ocsp_url:
        _http_url(ocsp_url, "trust.ocsp_url")
    fallback = _choice(t, "revocation_fallback", "trust.revocation_fallback", ("crl", "none"), "crl")
    tsa_dir: Path | None = None
    if _str(t, "tsa_dir", "trust.tsa_dir", ""):
        tsa_dir = _path(t, "tsa_dir", "trust.tsa_dir", "", base)
        if not tsa_dir.is_dir():
            raise ConfigError("trust.tsa_dir", f"{tsa_dir} is not a directory")
    urls = t.get("crl_urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ConfigError("trust.crl_urls", "must be a list of http(s) URLs")
    for url in urls:
        _http_url(url, "trust.crl_urls")
    if len({u.rstrip("/").rsplit("/", 1)[-1] for u in urls}) != len(urls):
        raise ConfigError("trust.crl_urls", "two URLs end in the same file name (each is saved under it in crl_dir)")
    if urls and not crl_dir.is_dir():
        raise ConfigError("trust.crl_dir", f"{crl_dir} is not a directory (CRLs of crl_urls are saved there)")
    crypto_providers = _crypto_providers(t.get("crypto_providers"))
    return TrustConfig(
        ca_dir=ca_dir, revocation=revocation, crl_dir=crl_dir, ocsp_url=ocsp_url,
        ocsp_timeout_seconds=_float(t, "ocsp_timeout_seconds", "trust.ocsp_timeout_seconds", 5.0),
        ocsp_max_age_seconds=_float(t, "ocsp_max_age_seconds", "trust.ocsp_max_age_seconds", 300.0),
        revocation_fallback=fallback, tsa_dir=tsa_dir, crl_urls=tuple(urls),
        crl_refresh_seconds=_float(t, "crl_refresh_seconds", "trust.crl_refresh_seconds", 3600.0),
        wsse_window_seconds=_float(t, "wsse_window_seconds", "trust.wsse_window_seconds", 300.0),
        wsse_clock_skew_seconds=_float(t, "wsse_clock_skew_seconds", "trust.wsse_clock_skew_seconds", 60.0),
        crypto_providers=crypto_providers,
    )


def _crypto_providers(value: Any) -> tuple[str, ...] | None:
    """Absent: every installed provider. A list of names: exactly those (beside the default), each loadable."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("trust.crypto_providers", "must be a list of provider names (e.g. [\"gost\"])")
    try:
        build_registry(tuple(value))
    except ValueError as exc:
        raise ConfigError("trust.crypto_providers", str(exc)) from None
    return tuple(value)


def _list_of_tables(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(name, "must be an array of tables ([[" + name + "]])")
    return value


def _providers(value: Any) -> tuple[ProviderConfig, ...]:
    out: list[ProviderConfig] = []
    for i, t in enumerate(_list_of_tables(value, "providers")):
        p = f"providers[{i}]."
        _no_unknown(p, t, {"bin", "name_kk", "name_ru", "token"})
        bin_ = _str(t, "bin", p + "bin")
        if problem := bin_problem(bin_):
            raise ConfigError(p + "bin", f"{bin_!r} is not a valid BIN: {problem}")
        token = _str(t, "token", p + "token", secret=True)
        if len(token) < 16:
            raise ConfigError(p + "token", "must be at least 16 characters")
        if any(o.bin == bin_ for o in out):
            raise ConfigError(p + "bin", f"BIN {bin_} is configured twice")
        if any(o.token == token for o in out):
            raise ConfigError(p + "token", "two providers share one token")
        out.append(ProviderConfig(
            bin=bin_, name_kk=_str(t, "name_kk", p + "name_kk"), name_ru=_str(t, "name_ru", p + "name_ru"),
            token=token,
        ))
    if not out:
        raise ConfigError("providers", "at least one [[providers]] entry is required")
    return tuple(out)


def _aliases(t: dict[str, Any]) -> dict[str, str]:
    for key, value in t.items():
        if value not in KNOWN_SERVICES:
            raise ConfigError(f"service_aliases.{key}", f"must name one of {', '.join(KNOWN_SERVICES)}")
    return dict(t)


def _senders(value: Any, base: Path, aliases: dict[str, str]) -> tuple[SenderConfig, ...]:
    out: list[SenderConfig] = []
    for i, t in enumerate(_list_of_tables(value, "senders")):
        p = f"senders[{i}]."
        _no_unknown(p, t, {"id", "password", "services", "channel", "wsse", "bin", "cert",
                           "max_requests_per_second", "burst", "max_in_flight"})
        sender_id = _str(t, "id", p + "id")
        if not sender_id:
            raise ConfigError(p + "id", "must not be empty")
        if any(o.id == sender_id for o in out):
            raise ConfigError(p + "id", f"sender {sender_id} is configured twice")
        services = t.get("services")
        if services is None:
            raise ConfigError(p + "services", "missing required key")
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise ConfigError(p + "services", "must be a list of serviceIds")
        for s in services:
            if s not in KNOWN_SERVICES and s not in aliases:
                raise ConfigError(p + "services", f"unknown serviceId {s!r}")
        channel = Channel(_choice(t, "channel", p + "channel", tuple(c.value for c in Channel), None))
        wsse = _choice(t, "wsse", p + "wsse", ("required", "optional", "off"), "off")
        bin_ = _str(t, "bin", p + "bin", "")
        if bin_ and (problem := bin_problem(bin_)):
            raise ConfigError(p + "bin", f"{bin_!r} is not a valid BIN: {problem}")
        cert = _str(t, "cert", p + "cert", "")
        cert_pem = _pem(cert, p + "cert", base, "cert") if cert else None
        if channel is Channel.CENTER and not bin_:
            raise ConfigError(p + "bin", "required for a CENTER sender (its operators sign under this BIN)")
        if wsse != "off" and not bin_ and cert_pem is None:
            raise ConfigError(p + "bin", "required when wsse is on and no cert is set")
        rate = _float(t, "max_requests_per_second", p + "max_requests_per_second", 1.0) \
            if "max_requests_per_second" in t else None
        if "burst" in t and rate is None:
            raise ConfigError(p + "burst", "needs max_requests_per_second")
        burst = _int(t, "burst", p + "burst", 1, 1) if "burst" in t else None
        out.append(SenderConfig(
            id=sender_id, password=_str(t, "password", p + "password", secret=True),
            services=tuple(services), channel=channel, wsse=wsse, bin=bin_, cert_pem=cert_pem,
            max_requests_per_second=rate, burst=burst,
            max_in_flight=_int(t, "max_in_flight", p + "max_in_flight", 1, 1) if "max_in_flight" in t else None,
        ))
    return tuple(out)


def _checklists(t: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    _no_unknown("checklists.", t, {s.value for s in ServiceType})
    out = {k: tuple(v) for k, v in DEFAULT_CHECKLISTS.items()}
    for key, value in t.items():
        if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
            raise ConfigError(f"checklists.{key}", "must be a list of document codes")
        out[key] = tuple(value)
    return out


def _terms(t: dict[str, Any]) -> dict[str, int]:
    _no_unknown("terms.", t, {s.value for s in ServiceType})
    out = dict(DEFAULT_TERMS)
    for key in t:
        out[key] = _int(t, key, f"terms.{key}", DEFAULT_TERMS[key], 1, 365)
    return out


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # outside XML 1.0's Char


def _hhmm(t: dict[str, Any], key: str, default: str) -> time:
    value = _str(t, key, f"calendar.{key}", default)
    m = _HHMM.match(value)
    if not m:
        raise ConfigError(f"calendar.{key}", f"must be HH:MM, not {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def _dates(t: dict[str, Any], key: str) -> tuple[date, ...]:
    value = t.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"calendar.{key}", "must be a list of ISO dates")
    out = []
    for v in value:
        if isinstance(v, date):
            out.append(v)
            continue
        try:
            out.append(date.fromisoformat(v))
        except (TypeError, ValueError):
            raise ConfigError(f"calendar.{key}", f"{v!r} is not an ISO date (YYYY-MM-DD)") from None
    return tuple(out)


def _calendar(t: dict[str, Any]) -> CalendarConfig:
    _no_unknown("calendar.", t, {
        "timezone", "work_start", "work_end", "break_start", "break_end", "extra_days_off", "extra_working_days",
    })
    tz = _str(t, "timezone", "calendar.timezone", "Asia/Almaty")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("calendar.timezone", f"unknown time zone {tz!r}") from None
    cal = CalendarConfig(
        timezone=tz,
        work_start=_hhmm(t, "work_start", "09:00"), work_end=_hhmm(t, "work_end", "18:30"),
        break_start=_hhmm(t, "break_start", "13:00"), break_end=_hhmm(t, "break_end", "14:30"),
        extra_days_off=_dates(t, "extra_days_off"), extra_working_days=_dates(t, "extra_working_days"),
    )
    if not cal.work_start < cal.work_end:
        raise ConfigError("calendar.work_end", "must be after work_start")
    if not (cal.work_start <= cal.break_start <= cal.break_end <= cal.work_end):
        raise ConfigError("calendar.break_start", "the break must lie inside working hours, start before end")
    both = set(cal.extra_days_off) & set(cal.extra_working_days)
    if both:
        raise ConfigError("calendar.extra_working_days", f"{min(both)} is also in extra_days_off")
    return cal


def _step_limits(t: dict[str, Any]) -> StepLimitsConfig:
    _no_unknown("step_limits.", t, {"register_minutes", "review_minutes", "issue_minutes", "breach_sweep_seconds"})
    return StepLimitsConfig(
        register_minutes=_int(t, "register_minutes", "step_limits.register_minutes", 10, 1, 24 * 60),
        review_minutes=_int(t, "review_minutes", "step_limits.review_minutes", 30, 1, 24 * 60),
        issue_minutes=_int(t, "issue_minutes", "step_limits.issue_minutes", 10, 1, 24 * 60),
        breach_sweep_seconds=_float(t, "breach_sweep_seconds", "step_limits.breach_sweep_seconds", 60.0),
    )


def _outbound(t: dict[str, Any], base: Path) -> OutboundConfig:
    _no_unknown("outbound.", t, {
        "shep_async_url", "sender_id", "password", "wsse_key", "wsse_cert", "timeout_seconds", "max_attempts",
        "backoff_initial_seconds", "backoff_max_seconds", "poll_seconds", "concurrency", "alert_after_seconds",
        "claim_seconds",
    })
    url = _http_url(_str(t, "shep_async_url", "outbound.shep_async_url", "http://127.0.0.1:9000/shep/async"),
                    "outbound.shep_async_url")
    sender_id = _str(t, "sender_id", "outbound.sender_id", "LICGATE")
    if not sender_id:
        raise ConfigError("outbound.sender_id", "must not be empty")
    key = _str(t, "wsse_key", "outbound.wsse_key", "", secret=True)
    cert = _str(t, "wsse_cert", "outbound.wsse_cert", "")
    key_pem = _pem(key, "outbound.wsse_key", base, "key") if key else None
    cert_pem = _pem(cert, "outbound.wsse_cert", base, "cert") if cert else None
    if bool(key) != bool(cert):
        raise ConfigError("outbound.wsse_key" if not key else "outbound.wsse_cert",
                          "wsse_key and wsse_cert go together")
    timeout = _float(t, "timeout_seconds", "outbound.timeout_seconds", 10.0)
    initial = _float(t, "backoff_initial_seconds", "outbound.backoff_initial_seconds", 1.0)
    maximum = _float(t, "backoff_max_seconds", "outbound.backoff_max_seconds", 300.0)
    if maximum < initial:
        raise ConfigError("outbound.backoff_max_seconds", "must be >= backoff_initial_seconds")
    password = _str(t, "password", "outbound.password", "", secret=True)
    if _NOT_XML_TEXT.search(password):
        raise ConfigError("outbound.password", "holds a control character, which an XML envelope cannot carry")
    return OutboundConfig(
        shep_async_url=url, sender_id=sender_id,
        password=password,
        wsse_key_pem=key_pem,
        wsse_cert_pem=cert_pem,
        timeout_seconds=timeout,
        max_attempts=_int(t, "max_attempts", "outbound.max_attempts", 50, 1),
        backoff_initial_seconds=initial, backoff_max_seconds=maximum,
        poll_seconds=_float(t, "poll_seconds", "outbound.poll_seconds", 0.5),
        concurrency=_int(t, "concurrency", "outbound.concurrency", 4, 1, 64),
        alert_after_seconds=_float(t, "alert_after_seconds", "outbound.alert_after_seconds", 900.0),
        claim_seconds=_claim_seconds(t, timeout),
    )


_PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


def _operators(value: Any, providers: tuple[ProviderConfig, ...]) -> tuple[OperatorConfig, ...]:
    out: list[OperatorConfig] = []
    for i, t in enumerate(_list_of_tables(value, "operators")):
        p = f"operators[{i}]."
        _no_unknown(p, t, {"name", "password_hash", "token", "role"})
        name = _str(t, "name", p + "name")
        if not re.fullmatch(r"[\w.@-]{1,64}", name):
            raise ConfigError(p + "name", "must be 1-64 letters, digits or . _ @ -")
        if any(o.name == name for o in out):
            raise ConfigError(p + "name", f"operator {name} is configured twice")
        password_hash = _str(t, "password_hash", p + "password_hash", secret=True)
        if not _PASSWORD_HASH.match(password_hash):
            raise ConfigError(p + "password_hash", "not a hash made by `licgate operator hash-password`")
        token = _str(t, "token", p + "token", "", secret=True)
        if token and len(token) < 24:
            raise ConfigError(p + "token", "must be at least 24 characters")
        if token and (any(o.token == token for o in out) or any(pr.token == token for pr in providers)):
            raise ConfigError(p + "token", "is already the token of another operator or provider")
        role = _choice(t, "role", p + "role", ("viewer", "admin"), "viewer")
        out.append(OperatorConfig(name=name, password_hash=password_hash, role=role, token=token))
    return tuple(out)


def _console(t: dict[str, Any]) -> ConsoleConfig:
    _no_unknown("console.", t, {"session_seconds", "lockout_failures", "lockout_seconds"})
    return ConsoleConfig(
        session_seconds=_float(t, "session_seconds", "console.session_seconds", 8 * 3600.0, 60.0),
        lockout_failures=_int(t, "lockout_failures", "console.lockout_failures", 5, 1, 1000),
        lockout_seconds=_float(t, "lockout_seconds", "console.lockout_seconds", 900.0, 1.0),
    )


def _claim_seconds(t: dict[str, Any], timeout: float) -> float | None:
    if "claim_seconds" not in t:
        return None
    claim = _float(t, "claim_seconds", "outbound.claim_seconds", timeout * 2 + 5)
    if claim <= timeout:
        raise ConfigError("outbound.claim_seconds", "must be longer than timeout_seconds (one attempt)")
    return claim


def _instances(t: dict[str, Any]) -> InstancesConfig:
    _no_unknown("instances.", t, {"heartbeat_seconds", "timeout_seconds"})
    heartbeat = _float(t, "heartbeat_seconds", "instances.heartbeat_seconds", 5.0)
    timeout = _float(t, "timeout_seconds", "instances.timeout_seconds", 20.0)
    if timeout <= heartbeat:
        raise ConfigError("instances.timeout_seconds", "must be longer than heartbeat_seconds")
    return InstancesConfig(heartbeat_seconds=heartbeat, timeout_seconds=timeout)


def _audit(value: Any, base: Path) -> AuditConfig:
    if not isinstance(value, dict):
        raise ConfigError("audit", "must be a table")
    t: dict[str, Any] = value
    _no_unknown("audit.", t, {"key", "cert", "checkpoint_records", "checkpoint_seconds", "checkpoint_file",
                              "tsa_url"})
    key = _str(t, "key", "audit.key", "", secret=True)
    cert = _str(t, "cert", "audit.cert", "")
    if bool(key) != bool(cert):
        raise ConfigError("audit.cert" if key else "audit.key", "key and cert go together")
    key_pem = _pem(key, "audit.key", base, "key") if key else None
    cert_pem = _pem(cert, "audit.cert", base, "cert") if cert else None
    if key_pem is not None and cert_pem is not None:
        from signing.seal import Seal, SealError

        try:
            Seal(key_pem, cert_pem)
        except SealError as exc:
            raise ConfigError("audit.key", str(exc)) from None
    tsa_url = _str(t, "tsa_url", "audit.tsa_url", "")
    return AuditConfig(
        key_pem=key_pem, cert_pem=cert_pem,
        checkpoint_records=_int(t, "checkpoint_records", "audit.checkpoint_records", 1000, 1),
        checkpoint_seconds=_float(t, "checkpoint_seconds", "audit.checkpoint_seconds", 60.0),
        checkpoint_file=_path(t, "checkpoint_file", "audit.checkpoint_file", "./audit/checkpoints", base),
        tsa_url=_http_url(tsa_url, "audit.tsa_url") if tsa_url else "",
    )
