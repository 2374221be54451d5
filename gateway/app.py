"""The composition root: builds one gateway process's services and its HTTP application.

`build_services(config, storage=, clock=)` builds every component once and wires them by constructor
(one verifier shared by intake and result uploads, the transport key loaded once); `create_app(config)` is
what `licgate serve` runs under uvicorn and what tests serve over loopback. Only this module imports
`gateway.api`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cryptography import x509
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from core.clock import Clock
from gateway import __version__
from gateway.api import console, docs, errors, ops, opsapi, provider, soap
from gateway.api.requestlog import RequestLog
from gateway.audit import Auditor, load_seal
from gateway.config import Config
from gateway.figures import Figures
from gateway.instances import Instance
from gateway.intake.examiner import Examiner
from gateway.intake.pipeline import Intake
from gateway.intake.pool import ExaminerPool
from gateway.messagelog import MessageLogWriter
from gateway.metrics import Metrics
from gateway.operators import Operators
from gateway.outbound import DeliveryWorker
from gateway.regulation import regulation_of
from gateway.services import Services
from gateway.storage import Storage, open_storage
from gateway.trust_status import TrustStatus
from gateway.workflow import Workflow
from signing.crlfetch import CrlFetcher
from signing.verifier import SignatureVerifier, build_verifier
from signing.wsse import WsseSigner

log = logging.getLogger("licgate")


def build_services(config: Config, *, storage: Storage | None = None, clock: Clock | None = None) -> Services:
    """Every component of one gateway process, wired; nothing started (`Services.start`)."""
    storage = storage or open_storage(config.storage.url, pool_size=config.storage.pool_size)
    storage.migrate()
    clock = clock or Clock()
    regulation = regulation_of(config)
    metrics = Metrics()
    figures = Figures(storage, clock, config.outbound)
    _register_figures(metrics, figures, storage)
    verifier = build_verifier(config.trust, clock, max_bytes=config.server.max_message_bytes,
                              observe=metrics.count_revocation)
    trust = config.trust
    # One fetcher per serving process; the intake workers' indexes pick its files up from crl_dir.
    crl_fetcher = CrlFetcher(trust.crl_urls, trust.crl_dir, verifier.trust, clock,
                             refresh_seconds=trust.crl_refresh_seconds,
                             on_replaced=verifier.crl_index.look_again if verifier.crl_index else None,
                             ) if trust.crl_urls else None
    _trust_gauges(metrics, config, verifier, crl_fetcher, clock)
    message_log = MessageLogWriter(storage)
    auditor = Auditor(config.audit, storage, clock, load_seal(config.audit, storage, clock))
    processes = config.server.resolved_intake_processes()
    # Worker processes read the system clock and build their verifier from the configuration: a test's
    # manual clock lives in this process only, so then everything is examined here.
    pool = ExaminerPool(config, processes) if processes and type(clock) is Clock else None
    intake = Intake(config, storage, clock, Examiner(config, verifier, regulation, clock), message_log, pool=pool,
                    on_revocation=metrics.count_revocation)
    instance = Instance(config.instances, storage, clock, __version__)
    out = config.outbound
    signer = WsseSigner(out.wsse_key_pem, out.wsse_cert_pem) if out.wsse_key_pem and out.wsse_cert_pem else None
    delivery = DeliveryWorker(config.outbound, storage, clock, metrics, holder=instance.id,
                              sign=signer.sign if signer else None)
    workflow = Workflow(config, storage, clock, regulation, metrics, verifier, on_outbox=delivery.wake,
                        instance_id=instance.id)
    # Once per tick across every instance on the database (gateway/instances.py).
    instance.add_job("breach-sweep", config.step_limits.breach_sweep_seconds, workflow.sweep_breaches)
    return Services(
        config=config, storage=storage, clock=clock, calendar=regulation.calendar, regulation=regulation,
        metrics=metrics, verifier=verifier, message_log=message_log, intake=intake, workflow=workflow,
        delivery=delivery, instance=instance,
        figures=figures, operators=Operators(config, storage, clock), trust_status=TrustStatus(config, clock),
        crl_fetcher=crl_fetcher, auditor=auditor,
    )


def _register_figures(metrics: Metrics, figures: Figures, storage: Storage) -> None:
    """The gauges an operator alerts on, read at scrape time."""
    metrics.gauge_callback("licgate_queue_depth", "Applications queued for providers", storage.queue_depth)
    metrics.gauge_callback("licgate_audit_records", "Records in the message log's hash chain",
                           lambda: storage.chain_head().seq)
    metrics.gauge_callback("licgate_audit_pending_records", "Message-log records not sequenced into the chain yet",
                           storage.pending_log)
    metrics.gauge_callback("licgate_outbox_backlog", "Outbound messages not yet delivered (pending and dead)",
                           lambda: figures.outbox().pending + figures.outbox().dead)
    metrics.gauge_callback("licgate_outbox_oldest_undelivered_seconds",
                           "Age of the oldest outbound message still waiting to be delivered",
                           lambda: figures.age_seconds(figures.outbox().oldest_pending_at))
    metrics.labelled_gauge_callback(
        "licgate_outbox_dead", "Dead-lettered outbound messages waiting for an operator, by kind", ("kind",),
        lambda: [((kind,), figures.outbox().dead_by_kind.get(kind, 0)) for kind in ("NOTIFICATION", "RESPONSE")])
    metrics.labelled_gauge_callback(
        "licgate_provider_queue_depth", "Applications queued for a provider, by provider BIN", ("provider",),
        lambda: [((q.provider_bin,), q.depth) for q in figures.queues()])
    metrics.labelled_gauge_callback(
        "licgate_provider_queue_oldest_seconds", "Age of a provider's oldest queued application", ("provider",),
        lambda: [((q.provider_bin,), figures.age_seconds(q.oldest_received_at)) for q in figures.queues()])


def _trust_gauges(metrics: Metrics, config: Config, verifier: SignatureVerifier, fetcher: CrlFetcher | None,
                  clock: Clock) -> None:
    """Operators' signals: each CRL's seconds to nextUpdate, each pinned and transport certificate's
    seconds to expiry (read at scrape time)."""
    index = verifier.crl_index

    def crls() -> list[tuple[tuple[str, str], float]]:
        now = clock.now()
        if index is not None:
            return [((s.name, s.issuer), (s.next_update - now).total_seconds())
                    for s in index.states() if s.next_update is not None]
        return [((s.name, ""), (s.next_update - now).total_seconds())
                for s in (fetcher.states.values() if fetcher else ()) if s.next_update is not None]

    certificates: list[tuple[str, x509.Certificate]] = [("ca", c) for c in (*verifier.trust.roots,
                                                                            *verifier.trust.intermediates)]
    if verifier.timestamps is not None:
        certificates += [("tsa", c) for c in verifier.timestamps.trust.certificates]
    out = config.outbound
    if out.wsse_cert_pem:
        certificates.append(("transport", x509.load_pem_x509_certificate(out.wsse_cert_pem)))
    certificates += [("sender", x509.load_pem_x509_certificate(s.cert_pem)) for s in config.senders if s.cert_pem]

    def expiry() -> list[tuple[tuple[str, str, str], float]]:
        now = clock.now()
        return [((kind, c.subject.rfc4514_string()[:200], format(c.serial_number, "x")),
                 (c.not_valid_after_utc - now).total_seconds()) for kind, c in certificates]

    metrics.labelled_gauge_callback("licgate_crl_next_update_seconds", "Seconds until each CRL's nextUpdate "
                                    "(negative: stale, its certificates get CERT_STATUS_UNKNOWN)",
                                    ("crl", "issuer"), crls)
    metrics.labelled_gauge_callback("licgate_certificate_expiry_seconds", "Seconds until each pinned CA, TSA, "
                                    "sender and the gateway's transport certificate expires",
                                    ("kind", "subject", "serial"), expiry)


class LicgateApp(FastAPI):
    """FastAPI, with one exception: `POST /shep/sync`, the hot path, goes straight to its plain ASGI handler
    (`gateway.api.soap.SendMessageEndpoint`), which logs and guards itself. Everything else is FastAPI's."""

    send_message: ASGIApp | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop_began: float | None = None  # time.monotonic() when SIGTERM came

    def begin_stop(self) -> None:
        """SIGTERM came (the CLI's server calls this from its signal handler): `Services.begin_stop` runs on
        the event loop, not in the handler, which may have interrupted code holding the locks it takes."""
        if self._stop_began is None:
            self._stop_began = time.monotonic()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.state.services.begin_stop)

    def stop_budget(self) -> float | None:
        """Seconds left of `[server] shutdown_seconds` since SIGTERM (None: not stopping on a signal)."""
        if self._stop_began is None:
            return None
        left = self.state.services.config.server.shutdown_seconds - (time.monotonic() - self._stop_began)
        return max(left, 1.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.send_message is not None and scope["type"] == "http" and scope["path"] in soap.PATHS:
            if scope["method"] == "POST":
                await self.send_message(scope, receive, send)
                return
            if scope["method"] not in ("GET", "HEAD"):
                for message in soap.method_not_allowed():
                    await send(message)
                return
        await super().__call__(scope, receive, send)


def create_app(config: Config, *, storage: Storage | None = None, clock: Clock | None = None) -> LicgateApp:
    services = build_services(config, storage=storage, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app._loop = asyncio.get_running_loop()
        services.start()
        log.info("licgate started", extra={"version": __version__, "instance": services.instance.id})
        try:
            yield
        finally:
            # The requests in flight are done (uvicorn waited for them): what remains of the time is the
            # delivery worker's to finish its attempts.
            services.stop(app.stop_budget())
            log.info("licgate stopped", extra={"instance": services.instance.id})

    app = LicgateApp(
        title="licgate",
        version=__version__,
        description="SHEP SyncChannel v10 endpoint and the provider IS pull API for medical licensing.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    docs.install(app)
    errors.install(app)
    app.state.services = services
    app.send_message = soap.SendMessageEndpoint(config, services.intake, services.metrics)
    app.add_middleware(RequestLog)
    app.include_router(soap.router)
    app.include_router(provider.router)
    app.include_router(ops.router)
    app.include_router(ops.legacy)
    app.include_router(opsapi.router)
    console.install(app)
    return app
