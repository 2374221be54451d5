"""The services of one gateway process, built once by `gateway.app.build_services` and wired by their
constructors. HTTP handlers reach them through `services_of(request)`; no component sees this container."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from core.clock import Clock
from gateway.audit import Auditor
from gateway.calendar import WorkingCalendar
from gateway.config import Config
from gateway.figures import Figures
from gateway.instances import Instance
from gateway.intake.pipeline import Intake
from gateway.messagelog import MessageLogWriter
from gateway.metrics import Metrics
from gateway.operators import Operators
from gateway.outbound import DeliveryWorker
from gateway.regulation import Regulation
from gateway.storage import Storage
from gateway.trust_status import TrustStatus
from gateway.workflow import Workflow
from signing.crlfetch import CrlFetcher
from signing.verifier import SignatureVerifier


@dataclass(frozen=True)
class Services:
    config: Config
    storage: Storage
    clock: Clock
    calendar: WorkingCalendar
    regulation: Regulation
    metrics: Metrics
    verifier: SignatureVerifier
    message_log: MessageLogWriter
    intake: Intake
    workflow: Workflow
    delivery: DeliveryWorker
    instance: Instance  # the heartbeat and the periodic jobs (the breach sweep)
    figures: Figures
    operators: Operators
    trust_status: TrustStatus
    crl_fetcher: CrlFetcher | None = None
    auditor: Auditor | None = None  # the audit chain's sequencer and checkpoints

    def start(self) -> None:
        """Start the background work in the order it depends on: the CRLs and the log first, the jobs last."""
        if self.crl_fetcher is not None:
            self.crl_fetcher.start()
        self.message_log.start()
        if self.auditor is not None:
            self.auditor.start()
        self.intake.start()
        self.delivery.start()
        self.instance.start()

    def begin_stop(self) -> None:
        """The process was told to stop (SIGTERM) and is finishing the requests in flight: long-polled
        leases answer now, and the delivery worker claims nothing more."""
        self.storage.signals.close()
        self.delivery.begin_stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop in reverse order (each finishes what it holds and gives back its claims), then close storage.
        `timeout`: the seconds left for the delivery worker's attempts under way."""
        self.storage.signals.close()
        self.instance.stop()
        self.delivery.stop(timeout)
        self.intake.stop()
        self.message_log.stop()
        if self.auditor is not None:
            self.auditor.stop()  # the last records get their place in the chain
        if self.crl_fetcher is not None:
            self.crl_fetcher.stop()
        self.storage.close()


def services_of(request: Request) -> Services:
    return request.app.state.services
