"""Prometheus metrics of one gateway process, in their own registry (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

Samples = Callable[[], Iterable[tuple[tuple[str, ...], float]]]  # (label values, value) pairs


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "licgate_requests_total", "Requests answered, by endpoint and outcome code",
            ["endpoint", "code"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "licgate_request_seconds", "Time to answer a request, by endpoint", ["endpoint"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.deadline_breaches = Counter(
            "licgate_deadline_breaches_total", "Deadlines of the regulation found breached, by deadline",
            ["deadline"], registry=self.registry,
        )
        self.outbound = Counter(
            "licgate_outbound_attempts_total", "Outbound delivery attempts, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.in_flight = Gauge("licgate_soap_in_flight", "SOAP requests being processed", registry=self.registry)
        self.revocation = Counter(
            "licgate_revocation_checks_total", "Revocation outcomes of signers' and transport certificates, by "
            "source (ocsp, crl, fallback: the CRLs after OCSP failed) and outcome", ["source", "outcome"],
            registry=self.registry,
        )
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._labelled: dict[str, tuple[str, tuple[str, ...], Samples]] = {}
        self.registry.register(_CallbackCollector(self._gauges, self._labelled))

    def gauge_callback(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """A gauge read at scrape time (queue depth, outbox backlog); a failing callback is skipped."""
        self._gauges[name] = (help_text, fn)

    def labelled_gauge_callback(self, name: str, help_text: str, labels: tuple[str, ...],
                                fn: Samples) -> None:
        """A gauge with labels read at scrape time: `fn` gives (label values, value) pairs."""
        self._labelled[name] = (help_text, labels, fn)

    def count_revocation(self, source: str, outcome: str) -> None:
        self.revocation.labels(source=source, outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CallbackCollector:
    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]],
                 labelled: dict[str, tuple[str, tuple[str, ...], Samples]]) -> None:
        self._gauges = gauges
        self._labelled = labelled

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        for name, (help_text, fn) in self._gauges.items():
            try:
                value = float(fn())
            except Exception:  # noqa: BLE001 - a scrape must not fail because storage is down
                continue
            yield GaugeMetricFamily(name, help_text, value=value)
        for name, (help_text, labels, fn) in self._labelled.items():
            try:
                samples = list(fn())
            except Exception:  # noqa: BLE001 - as above
                continue
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for values, value in samples:
                family.add_metric(list(values), float(value))
            yield family

    def describe(self):  # noqa: ANN201
        return []
