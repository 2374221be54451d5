"""Drives fuzz cases at a served gateway over loopback, several at a time, and tallies the answers."""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.fuzz.mutators import Case, verdict


@dataclass
class Tally:
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[tuple[Case, str]] = field(default_factory=list)  # outside the contract, with why
    dropped: list[tuple[Case, str]] = field(default_factory=list)  # no HTTP answer at all
    internal: list[Case] = field(default_factory=list)
    by_mutation: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))

    @property
    def total(self) -> int:
        return sum(self.codes.values())


def run_cases(url: str, all_cases: Iterable[Case], *, concurrency: int = 8, timeout: float = 60.0) -> Tally:
    """Send every case; each worker thread keeps one keep-alive connection (a new one after a failure)."""
    tally = Tally()
    lock = threading.Lock()
    local = threading.local()
    headers_base = {"SOAPAction": '""'}

    def client() -> httpx.Client:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = httpx.Client(timeout=timeout)
        return c

    def one(case: Case) -> None:
        headers = dict(headers_base)
        if case.content_type:
            headers["Content-Type"] = case.content_type
        try:
            response = client().post(url + "/shep/sync", content=case.body, headers=headers)
            code = verdict(response.status_code, response.content)
        except httpx.HTTPError as exc:
            local.client.close()
            local.client = None
            with lock:
                tally.codes["DROPPED"] += 1
                tally.dropped.append((case, f"{type(exc).__name__}: {exc}"))
            return
        with lock:
            tally.codes[code] += 1
            for name in case.mutations:
                tally.by_mutation[name][code] += 1
            if code.startswith("BAD:"):
                tally.bad.append((case, code))
            elif code == "INTERNAL_ERROR":
                tally.internal.append(case)

    # The workers pull cases from the one generator: made as they are sent, never all held at once.
    source = iter(all_cases)
    source_lock = threading.Lock()

    def worker() -> None:
        while True:
            with source_lock:
                case = next(source, None)
            if case is None:
                return
            one(case)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return tally


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def describe(tally: Tally, limit: int = 5) -> str:
    lines = [f"{tally.total} cases: {dict(tally.codes.most_common())}"]
    for case, why in (tally.bad + tally.dropped)[:limit]:
        lines.append(f"  case {case.index} ({case.seed}, {'+'.join(case.mutations)}): {why}: {case.body[:300]!r}")
    for case in tally.internal[:limit]:
        lines.append(f"  INTERNAL_ERROR case {case.index} ({case.seed}, {'+'.join(case.mutations)}): "
                     f"{case.body[:300]!r}")
    return "\n".join(lines)
