"""Breaches are counted in /metrics once each, including overdue deadlines nobody looked at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.domain import Step
from gateway.app import build_services
from gateway.config import Config, ProviderConfig
from gateway.services import Services
from gateway.storage import open_storage
from signing.pki import Pki
from signing.trust import TrustConfig
from tests.workflow.helpers import PROVIDER_BIN, local, store


@pytest.fixture
def gw(tmp_path: Path, pki: Pki) -> Iterator[Services]:
    config = Config(providers=(ProviderConfig(bin=PROVIDER_BIN, name_kk="kk", name_ru="ru", token="t" * 20),),
                    trust=TrustConfig(ca_dir=pki.ca_dir, revocation="off"))
    storage = open_storage(f"sqlite:///{tmp_path / 'licgate.db'}")
    yield build_services(config, storage=storage, clock=ManualClock(local(2026, 12, 1, 10, 0)))
    storage.close()


def breach_count(gw: Services, step: Step) -> float:
    return gw.metrics.registry.get_sample_value("licgate_deadline_breaches_total", {"deadline": step.value}) or 0.0


def test_the_sweep_counts_overdue_deadlines_once(gw: Services) -> None:
    store(gw.storage, received_at=local(2026, 12, 1, 9, 30))  # registration was due at 09:40
    workflow = gw.workflow
    assert workflow.sweep_breaches() == 2  # REGISTERED and SENT_TO_MANAGEMENT, both overdue
    assert workflow.sweep_breaches() == 0
    assert breach_count(gw, Step.REGISTERED) == 1.0
    assert breach_count(gw, Step.SENT_TO_MANAGEMENT) == 1.0


def test_a_step_recorded_late_is_counted_when_it_is_recorded(gw: Services) -> None:
    app = store(gw.storage, received_at=local(2026, 12, 1, 9, 30))
    workflow = gw.workflow
    workflow.record_step(app, Step.REGISTERED, "employee", local(2026, 12, 1, 9, 35), source="test")
    assert breach_count(gw, Step.REGISTERED) == 0.0  # met
    assert breach_count(gw, Step.SENT_TO_MANAGEMENT) == 1.0  # overdue at 10:00, counted at once
    assert workflow.sweep_breaches() == 0
