"""A soak: a steady mix against `licgate serve` for a long time, with a storage restart in the middle.

    .venv/bin/python benchmarks/soak.py [--seconds 600] [--rate 6] [--postgres [DSN]] [--restart-at 0.5]
        [--intake-processes 0]

The mix: applications from every channel (the portal, the Center, the e-license portal in its own
dialect; `--rate` per second in all), status queries of acknowledged applications, and the provider's IS
leasing, acknowledging, walking every step, uploading the signed result and issuing it (and, for the
Center, DELIVERED), while the gateway delivers every notification and result to a loopback AsyncChannel
receiver. A sender whose request got no answer (the connection refused during the restart) or OVERLOADED
sends the same message again, as a portal would.

The restart, at `--restart-at` of the duration: on SQLite the gateway itself is stopped (SIGTERM) and
started again on the same file; on PostgreSQL every connection the gateway holds to the database is
terminated by the server (`pg_terminate_backend`), which is what the gateway sees of a database restart,
without restarting a PostgreSQL server that other work on the machine shares.

Each minute it prints the applications acknowledged, all requests answered, the intake p99, the failed
attempts and the resident memory of the gateway's processes; at the end: lost (acknowledged SCSS001 but
never leased and acknowledged by the provider) and duplicated (a requestNumber with two registration
numbers, or an application acknowledged by the provider twice), both of which must be 0.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/queue.py would shadow the standard library's queue module.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from signing.pki import init_pki, load_pki  # noqa: E402
from signing.signer import sign_enveloped  # noqa: E402
from tests.intake.conftest import config_table, write_config_file  # noqa: E402
from tests.intake.helpers import MED, application_xml, elicense_xml, envelope, sign  # noqa: E402
from tests.support.process import GatewayProcess  # noqa: E402
from tests.support.server import serve  # noqa: E402
from tests.workflow.conftest import Receiver, decision_xml  # noqa: E402

TOKEN = "provider-token-0123456789"
ASTANA = ZoneInfo("Asia/Almaty")
APP_NAME = "licgate-soak"
STEPS = ("REGISTERED", "SENT_TO_MANAGEMENT", "RESULT_PREPARED")
CHANNELS = (("EGOV_PORTAL", "PORTAL"), ("CENTER_IS", "CENTER"), ("ELICENSE", "ELICENSE"))


class Stats:
    """What happened, by minute of the run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[int, list[float]] = collections.defaultdict(list)
        self.acked: dict[int, int] = collections.Counter()
        self.answered: dict[int, int] = collections.Counter()
        self.failed: dict[int, int] = collections.Counter()
        self.registrations: dict[str, set[str]] = collections.defaultdict(set)  # requestNumber -> reg. numbers
        self.accepted: set[str] = set()  # registration numbers answered SCSS001
        self.provider_acked: collections.Counter[str] = collections.Counter()  # registration numbers
        self.issued: set[str] = set()  # application ids whose workflow is done
        self.started = time.monotonic()

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)


def _post_until_answered(client: httpx.Client, url: str, body: bytes, stats: Stats, stop: threading.Event,
                         *, intake: bool) -> bytes | None:
    while True:
        started = time.perf_counter()
        try:
            response = client.post(url + "/shep/sync", content=body,
                                   headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
        except httpx.HTTPError:
            with stats.lock:
                stats.failed[stats.minute()] += 1
            if stop.is_set():
                return None
            time.sleep(0.5)
            continue
        took = time.perf_counter() - started
        if b"<errorCode>OVERLOADED</errorCode>" in response.content or response.status_code == 503:
            with stats.lock:
                stats.failed[stats.minute()] += 1
            time.sleep(0.5)
            continue
        with stats.lock:
            minute = stats.minute()
            stats.answered[minute] += 1
            if intake:
                stats.latencies[minute].append(took)
        return response.content


def _field(content: bytes, name: str) -> str | None:
    start = content.find(f"<{name}>".encode())
    if start < 0:
        start = content.find(f":{name}>".encode())
        if start < 0:
            return None
    start = content.index(b">", start) + 1
    return content[start:content.index(b"<", start)].decode()


def intake_loop(url: str, pki, sender: str, channel: str, rate: float, stats: Stats,  # noqa: ANN001
                stop: threading.Event, numbers: list[str]) -> None:
    with httpx.Client() as client:
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += random.expovariate(rate)
            time.sleep(max(0.0, next_at - time.monotonic()))
            number = f"SOAK-{channel}-{uuid.uuid4().hex[:12]}"
            if channel == "ELICENSE":
                payload = sign(elicense_xml(f"KZ{uuid.uuid4().int % 10**12:012d}"), pki)
                body = envelope(payload, sender=sender, service="ELICENSE_MED_LICENSE")
                number = _field(payload, "applicationNumber") or number
            elif channel == "CENTER":
                body = envelope(sign(application_xml(number, channel="CENTER", service_type="DUPLICATE"), pki,
                                     "center_operator"), sender=sender)
            else:
                body = envelope(sign(application_xml(number), pki), sender=sender)
            content = _post_until_answered(client, url, body, stats, stop, intake=True)
            if content is None:
                continue
            registration = _field(content, "registrationNumber")
            with stats.lock:
                if _field(content, "code") == "SCSS001" and registration:
                    stats.accepted.add(registration)
                    stats.acked[stats.minute()] += 1
                    stats.registrations[number].add(registration)
                    if sender == "EGOV_PORTAL":
                        numbers.append(number)


def status_loop(url: str, stats: Stats, stop: threading.Event, numbers: list[str]) -> None:
    with httpx.Client() as client:
        while not stop.is_set():
            time.sleep(0.25)
            if not numbers:
                continue
            query = (f'<StatusRequest xmlns="{MED}"><requestNumber>{random.choice(numbers)}</requestNumber>'
                     "</StatusRequest>").encode()
            _post_until_answered(client, url, envelope(query, service="MED_LICENSE_STATUS"), stats, stop,
                                 intake=False)


def provider_loop(url: str, pki, stats: Stats, stop: threading.Event, drained: threading.Event) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {TOKEN}"}
    pending: list[dict] = []  # leased and acknowledged, their workflow still to walk
    with httpx.Client(base_url=url, headers=headers, timeout=40) as client:
        while not drained.is_set():
            try:
                leased = client.post("/provider/v1/leases", json={"max": 20, "lease_seconds": 30,
                                                                  "wait_seconds": 1})
                if leased.status_code == 200:
                    body = leased.json()
                    ids = [a["id"] for a in body["applications"]]
                    if ids:
                        acked = client.post(f"/provider/v1/leases/{body['lease_id']}/ack", json={"ids": ids})
                        if acked.status_code == 200:
                            done = set(acked.json()["acked"])
                            for a in body["applications"]:
                                if a["id"] in done:
                                    with stats.lock:
                                        stats.provider_acked[a["registration_number"]] += 1
                                    pending.append(a)
                pending = [a for a in pending if not _walk(client, pki, a, stats)]
            except httpx.HTTPError:
                time.sleep(0.5)


def _walk(client: httpx.Client, pki, app: dict, stats: Stats) -> bool:  # noqa: ANN001
    """Every step of one application, from where it stands; True when it is done."""
    view = client.get(f"/provider/v1/applications/{app['id']}")
    if view.status_code != 200:
        return False
    allowed = view.json()["allowed_next_steps"]
    for _ in range(8):
        if not allowed:
            with stats.lock:
                stats.issued.add(app["id"])
            return True
        step = allowed[0]
        if step == "SIGNED":
            now = datetime.now(ASTANA).isoformat(timespec="seconds")
            signer = pki.party("provider_signer")
            result = sign_enveloped(decision_xml(app["registration_number"], issued_at=now), signer.key_pem,
                                    signer.cert_pem)
            answer = client.put(f"/provider/v1/applications/{app['id']}/result", content=result,
                                headers={"Content-Type": "application/xml"})
        else:
            if step == "RETURNED_FOR_PREPARATION" and "RESULT_PREPARED" in allowed:
                step = "RESULT_PREPARED"
            answer = client.post(f"/provider/v1/applications/{app['id']}/steps",
                                 json={"step": step, "actor": "soak"})
        if answer.status_code != 200:
            return False
        allowed = answer.json()["allowed_next_steps"]
        if step == "ISSUED" and app["channel"] != "CENTER":
            allowed = []
    return False


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children (the intake worker processes)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2**20


def _terminate_backends(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (APP_NAME,)).fetchall()
    return len(rows)


def main() -> int:  # noqa: PLR0915 - one script, read top to bottom
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=6.0, help="applications per second, all channels")
    parser.add_argument("--postgres", nargs="?", const=os.environ.get("LICGATE_TEST_PG_DSN", ""), default=None)
    parser.add_argument("--restart-at", type=float, default=0.5)
    parser.add_argument("--intake-processes", type=int, default=0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="licgate-soak-"))
    init_pki(tmp / "pki")
    pki = load_pki(tmp / "pki")
    schema = None
    if args.postgres is not None:
        import psycopg

        if not args.postgres:
            print("--postgres needs a DSN (or LICGATE_TEST_PG_DSN)")
            return 2
        schema = f"soak_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{sep}application_name={APP_NAME}&options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp / 'licgate.db'}"
    receiver = Receiver()
    with serve(receiver.app()) as receiving:
        table = config_table(pki, url, intake_processes=args.intake_processes)
        table["outbound"] = {"shep_async_url": receiving.url + "/shep/async", "poll_seconds": 0.2,
                             "backoff_initial_seconds": 0.2, "backoff_max_seconds": 2.0}
        config_path = write_config_file(tmp / "licgate.toml", table)
        gateway = GatewayProcess(config_path, log_path=tmp / "licgate.log").start()
        stats = Stats()
        stop, drained = threading.Event(), threading.Event()
        numbers: list[str] = []
        threads = [threading.Thread(target=intake_loop, args=(gateway.url, pki, sender, channel, args.rate / 3,
                                                              stats, stop, numbers)) for sender, channel in CHANNELS]
        threads.append(threading.Thread(target=status_loop, args=(gateway.url, stats, stop, numbers)))
        provider = threading.Thread(target=provider_loop, args=(gateway.url, pki, stats, stop, drained))
        for t in [*threads, provider]:
            t.start()
        print(f"soak: {args.seconds:.0f} s at {args.rate:g} applications/s on "
              f"{'PostgreSQL' if schema else 'SQLite'}, restart at {args.restart_at:.0%}")
        print(f"{'minute':>6} {'acked':>7} {'answered':>9} {'p99 ms':>8} {'failed':>7} {'RSS MB':>7}  event")
        restart_at = stats.started + args.seconds * args.restart_at
        restarted = False
        events: dict[int, str] = {}
        rss: dict[int, float] = {}
        printed = 0
        try:
            while time.monotonic() - stats.started < args.seconds:
                time.sleep(1)
                minute = stats.minute()
                assert gateway.proc is not None
                rss[minute] = max(rss.get(minute, 0.0), _rss_mb(gateway.proc.pid))
                if not restarted and time.monotonic() >= restart_at:
                    restarted = True
                    if schema:
                        events[minute] = f"{_terminate_backends(args.postgres)} database connections terminated"
                    else:
                        gateway.stop()
                        gateway = GatewayProcess(config_path, port=gateway.port, log_path=tmp / "licgate.log").start()
                        events[minute] = "gateway restarted"
                while printed < minute:
                    _print_minute(stats, printed, rss, events)
                    printed += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
            # Drain: the provider leases what is still queued, then the outbox empties into the receiver.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with stats.lock:
                    missing = stats.accepted - set(stats.provider_acked)
                    walking = len(stats.accepted) - len(stats.issued)
                if not missing and walking <= 0:
                    break
                time.sleep(0.5)
            drained.set()
            provider.join()
            _print_minute(stats, printed, rss, events)
            delivered_deadline = time.monotonic() + 60
            expected = len(stats.issued) * 3  # REGISTERED, IN_REVIEW notifications and the RESPONSE
            while len(receiver.bodies) < expected and time.monotonic() < delivered_deadline:
                time.sleep(0.5)
            gateway.stop()
            if schema:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    all_latencies = list(itertools.chain.from_iterable(stats.latencies.values()))
    lost = stats.accepted - set(stats.provider_acked)
    duplicated = sum(1 for regs in stats.registrations.values() if len(regs) > 1) + \
        sum(1 for n in stats.provider_acked.values() if n > 1)
    print(f"applications acknowledged SCSS001: {len(stats.accepted)}, leased and acknowledged by the provider: "
          f"{len(stats.provider_acked)}, issued: {len(stats.issued)}; messages delivered to the AsyncChannel: "
          f"{len(receiver.bodies)} (expected at least {len(stats.issued) * 3})")
    if all_latencies:
        print(f"intake p99 over the run: {_p99(all_latencies) * 1000:.1f} ms")
    _print_trends(stats, rss, events)
    print(f"lost {len(lost)}, duplicated {duplicated}")
    return 0 if not lost and not duplicated else 1


def _print_trends(stats: Stats, rss: dict[int, float], events: dict[int, str]) -> None:
    """The targets' figures: memory after warm-up (the second minute on) against its last value, and the p99
    of the minute after the restart against the median p99 of the minutes before it. The restart's own
    minute is left out of both (the RSS of a restarted gateway starts again)."""
    minutes = sorted(m for m in rss if m in stats.latencies)
    restart = next(iter(events), None)
    after = [m for m in minutes if restart is None or m > restart]
    if len(after) >= 2:
        first, last = rss[after[0]], rss[after[-1]]
        print(f"RSS after warm-up: {first:.0f} MB -> {last:.0f} MB ({(last - first) / first:+.0%})")
    if restart is not None:
        before = [_p99(stats.latencies[m]) for m in minutes if m < restart and len(stats.latencies[m]) > 1]
        next_minute = restart + 1
        if before and len(stats.latencies.get(next_minute, [])) > 1:
            print(f"p99 the minute after the restart: {_p99(stats.latencies[next_minute]) * 1000:.1f} ms, "
                  f"before it (median of the minutes): {statistics.median(before) * 1000:.1f} ms")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def _print_minute(stats: Stats, minute: int, rss: dict[int, float], events: dict[int, str]) -> None:
    with stats.lock:
        latencies = list(stats.latencies.get(minute, []))
        acked, answered, failed = stats.acked[minute], stats.answered[minute], stats.failed[minute]
    p99 = f"{_p99(latencies) * 1000:8.1f}" if latencies else f"{'-':>8}"
    print(f"{minute + 1:>6} {acked:>7} {answered:>9} {p99} {failed:>7} {rss.get(minute, 0.0):>7.0f}  "
          f"{events.get(minute, '')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
