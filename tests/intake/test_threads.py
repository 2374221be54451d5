"""Examination in several threads of one process at once (the serving process examines requests in threads
when it has no worker processes, and large messages always): nothing is compiled lazily by the first
requests, and concurrent examinations all come out as they would alone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from adapters import egov, elicense, shep_sync
from gateway.intake.examiner import Examination, Examiner
from signing.pki import Pki
from tests.intake.conftest import make_examiner
from tests.intake.helpers import application_xml, envelope, sign

SCHEMAS = (shep_sync.envelope_schema, egov.payload_schema, elicense.payload_schema)


def _examiner(pki: Pki, tmp_path: Path) -> Examiner:
    return make_examiner(pki, f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_an_examiner_compiles_every_schema_when_it_is_built(pki: Pki, tmp_path: Path) -> None:
    for schema in SCHEMAS:
        schema.cache_clear()
    _examiner(pki, tmp_path)
    # libxml2 compiling one schema in two request threads at once is a race (see core.xmlsafe.load_schema).
    assert [schema.cache_info().currsize for schema in SCHEMAS] == [1, 1, 1]


def test_first_requests_examined_in_eight_threads_at_once_all_pass(pki: Pki, tmp_path: Path) -> None:
    for schema in SCHEMAS:
        schema.cache_clear()
    examiner = _examiner(pki, tmp_path)
    bodies = [envelope(sign(application_xml(f"THREAD-{i}"), pki)) for i in range(8)]
    received_at = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    start = threading.Barrier(len(bodies))
    exams: dict[int, Examination] = {}

    def examine(i: int) -> None:
        start.wait()
        exams[i] = examiner.examine(bodies[i], received_at)

    threads = [threading.Thread(target=examine, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [exams[i].error for i in range(len(bodies))] == [None] * len(bodies)
    assert [exams[i].application.request_number for i in range(len(bodies))] == [f"THREAD-{i}" for i in range(8)]
