"""This gateway process among the others on one database: its heartbeat row, and periodic jobs run once
per tick across all instances.

- **Heartbeat**: one row per instance (id, host, pid, version, started, last seen), refreshed every
  `[instances] heartbeat_seconds` by a thread of its own; an instance is live while its row was refreshed
  within `[instances] timeout_seconds` (`/healthz` lists the live ones). A graceful stop deletes the row;
  rows of instances killed long ago are deleted by a job after `FORGET_AFTER`.
- **Jobs**: each has a name and an interval. Every instance looks when the job is due by its own count,
  and runs the tick only when `storage.claim_job` moved the job's next run on for it, which exactly one
  caller per tick does (a row update, the same on SQLite and PostgreSQL). An instance that dies
  mid-tick leaves the next tick to whoever comes first; the jobs are idempotent (the breach sweep records
  each breach under a unique key), so a tick run twice costs time, never a double count.

What an instance holds in the database is held with a time limit, so a killed instance's holdings pass to
the others by themselves: leases run out (`lease_seconds`), outbox claims run out (`[outbound]
claim_seconds`), a job's tick is over at its next run. A graceful stop gives its outbox claims back at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import Clock
from gateway.config import InstancesConfig
from gateway.storage import InstanceRecord, Storage, StorageError

log = logging.getLogger("licgate.instances")

FORGET_AFTER = timedelta(days=1)  # rows of instances not seen for this long are deleted
_FORGET_JOB_SECONDS = 3600.0
_JOB_LOOK_SECONDS = 1.0  # how often the jobs thread looks whether a job is due


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float  # seconds between ticks, across all instances
    run: Callable[[], object]


class Instance:
    """One per gateway process (see the module docstring)."""

    def __init__(self, config: InstancesConfig, storage: Storage, clock: Clock, version: str) -> None:
        self._config = config
        self._storage = storage
        self._clock = clock
        self.record = InstanceRecord(
            id=uuid.uuid4().hex[:16], host=socket.gethostname(), pid=os.getpid(), version=version,
            started_at=clock.now(), last_seen=clock.now(),
        )
        self._jobs: list[Job] = [Job("forget-instances", _FORGET_JOB_SECONDS, self._forget)]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def id(self) -> str:
        return self.record.id

    def add_job(self, name: str, interval: float, run: Callable[[], object]) -> None:
        """Run `run` every `interval` seconds on one of the instances (before `start`)."""
        self._jobs.append(Job(name, interval, run))

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the heartbeat row (so that /healthz lists this instance from the start), then the threads."""
        try:
            self._storage.heartbeat(self.record, self._clock.now())
        except StorageError as exc:
            log.warning("heartbeat failed", extra={"error": str(exc)[:200]})
        self._stop.clear()
        self._threads = [threading.Thread(target=self._beat, name="licgate-heartbeat", daemon=True),
                         threading.Thread(target=self._run_jobs, name="licgate-jobs", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (a job running finishes first, within `timeout`) and delete the row."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []
        try:
            self._storage.remove_instance(self.id)
        except StorageError as exc:
            log.warning("could not remove the instance's row; it times out", extra={"error": str(exc)[:200]})

    # -- what it knows of the others -------------------------------------------------------------------

    def live(self) -> list[InstanceRecord]:
        """The instances whose heartbeat is recent, this one included, oldest first."""
        return self._storage.live_instances(self._clock.now() - timedelta(seconds=self._config.timeout_seconds))

    # -- the threads -------------------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self._config.heartbeat_seconds):
            try:
                self._storage.heartbeat(self.record, self._clock.now())
            except StorageError as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)[:200]})

    def _run_jobs(self) -> None:
        due: dict[str, datetime] = {}
        while not self._stop.wait(_JOB_LOOK_SECONDS):
            for job in self._jobs:
                if self._stop.is_set():
                    return
                now = self._clock.now()
                if now < due.get(job.name, now):
                    continue
                due[job.name] = now + timedelta(seconds=job.interval)
                self.run_job(job, now)

    def run_job(self, job: Job, now: datetime) -> bool:
        """Run one tick of `job` if this instance is the one to (True when it ran)."""
        try:
            if not self._storage.claim_job(job.name, now, now + timedelta(seconds=job.interval), self.id):
                return False
            job.run()
            return True
        except Exception:  # noqa: BLE001 - a failed tick (storage down) is tried again at the next one
            log.warning("periodic job failed", extra={"job": job.name}, exc_info=True)
            return False

    def _forget(self) -> int:
        return self._storage.forget_instances(self._clock.now() - FORGET_AFTER)
