"""CRLs downloaded from NCA into `trust.crl_dir`: `[trust] crl_urls` every `crl_refresh_seconds` and at start.

Each download is checked before it replaces anything: it must be a CRL (PEM or DER) signed by a CA pinned in
`trust.ca_dir` and not past its nextUpdate, and it must not be older than the file it would replace (a
stale mirror, or an instance that fetched later from a lagging one, must not undo a newer CRL). Then it is
written to a temporary file beside the target (a name starting with ".", which `CrlIndex` never reads),
flushed to disk and moved over the target with `os.replace`, so a reader sees the old file or the new one,
never a part. Several gateway processes on one host (instances sharing `crl_dir`) take an exclusive lock
on `crl_dir/.licgate-crl.lock` for the compare-and-replace, so two downloads of the same CRL never race.

A download that fails is logged and retried at the next round; the CRL on disk keeps answering until its
nextUpdate, after which it counts as absent (CERT_STATUS_UNKNOWN). A CRL on disk within two refresh
intervals of its nextUpdate is logged as about to go stale at every round. The name a URL is saved under
is its last path segment (`crl_urls` may not repeat one).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509

from core.clock import Clock
from signing.revocation import crl_signature_valid, load_crl
from signing.trust import TrustStore

log = logging.getLogger("licgate.crl")

LOCK_NAME = ".licgate-crl.lock"
DOWNLOAD_TIMEOUT = 60.0  # NCA's full CRLs are tens of megabytes
MAX_CRL_BYTES = 256 * 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_name(url: str) -> str:
    """The name a CRL URL is saved under in crl_dir: its last path segment, made safe."""
    name = _SAFE.sub("_", url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]).lstrip(".")
    return name or "crl"


@dataclass
class FetchState:
    """What the fetcher knows of one URL (for /metrics and operators)."""

    url: str
    name: str
    last_success: datetime | None = None
    last_error: str | None = None
    next_update: datetime | None = None


class CrlFetcher:
    """Downloads `urls` into `crl_dir` (see the module docstring); one per serving process."""

    def __init__(self, urls: tuple[str, ...], crl_dir: Path, trust: TrustStore, clock: Clock, *,
                 refresh_seconds: float = 3600.0, http: httpx.Client | None = None,
                 on_replaced: Callable[[], None] | None = None) -> None:
        self.crl_dir = Path(crl_dir)
        # Called after a file was put in place: this process's index looks at the directory at once rather
        # than at its next re-listing (a scrape or a check right after the download sees the new CRL).
        self._on_replaced = on_replaced
        self.trust = trust
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self._http = http or httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)
        self.states = {url: FetchState(url, file_name(url)) for url in urls}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_round = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, *, wait_seconds: float = 10.0) -> None:
        """Start fetching; the first round runs at once, and start returns when it is done or after
        `wait_seconds` (NCA unreachable must not keep the gateway from starting)."""
        if not self.states:
            return
        self._thread = threading.Thread(target=self._run, name="licgate-crl-fetch", daemon=True)
        self._thread.start()
        self._first_round.wait(wait_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=DOWNLOAD_TIMEOUT + 5)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fetch_all()
            except Exception:  # noqa: BLE001 - the fetcher must outlive any one bad round
                log.exception("CRL refresh round failed")
            self._first_round.set()
            self._stop.wait(self.refresh_seconds)

    # -- one round ------------------------------------------------------------------------------------

    def fetch_all(self) -> None:
        """Download every URL once, then warn about CRLs on disk close to their nextUpdate."""
        for state in self.states.values():
            if self._stop.is_set():
                return
            self.fetch(state)
        self._warn_stale()

    def fetch(self, state: FetchState) -> bool:
        """Download one CRL and, when it passes, put it in place. True when the file on disk is current."""
        try:
            data = self._download(state.url)
            crl = self._check(data)
            replaced = self._replace(state.name, data, crl)
        except _Refused as exc:
            state.last_error = str(exc)
            log.warning("CRL download failed: %s", exc, extra={"url": state.url, "crl": state.name})
            return False
        state.last_success, state.last_error, state.next_update = self.clock.now(), None, crl.next_update_utc
        if replaced and self._on_replaced is not None:
            self._on_replaced()
        if replaced:
            log.info("CRL %s replaced (thisUpdate %s, nextUpdate %s)", state.name, crl.last_update_utc.isoformat(),
                     crl.next_update_utc.isoformat() if crl.next_update_utc else "-")
        return True

    def _download(self, url: str) -> bytes:
        try:
            with self._http.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise _Refused(f"{url} answered HTTP {answer.status_code}")
                chunks, size = [], 0
                for chunk in answer.iter_bytes():
                    size += len(chunk)
                    if size > MAX_CRL_BYTES:
                        raise _Refused(f"{url} sent more than {MAX_CRL_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise _Refused(f"{url} unreachable: {type(exc).__name__}: {str(exc)[:160]}") from None

    def _check(self, data: bytes) -> x509.CertificateRevocationList:
        try:
            crl = load_crl(data)
        except ValueError:
            raise _Refused("the download is not a CRL") from None
        signers = [ca for ca in self.trust.issuers_of_name(crl.issuer)
                   if crl_signature_valid(crl, ca, None if data.startswith(b"-----") else data,
                                          registry=self.trust.registry)]
        if not signers:
            raise _Refused(f"the CRL of {crl.issuer.rfc4514_string()[:120]} is not signed by a CA of trust.ca_dir")
        now = self.clock.now()
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise _Refused(f"the CRL expired at {crl.next_update_utc.isoformat()} (a stale copy)")
        if crl.last_update_utc > now + timedelta(minutes=5):
            raise _Refused(f"the CRL's thisUpdate {crl.last_update_utc.isoformat()} is in the future")
        return crl

    def _replace(self, name: str, data: bytes, crl: x509.CertificateRevocationList) -> bool:
        """Put `data` in place as `name` unless the file there is as new or newer. True when replaced."""
        target = self.crl_dir / name
        with self._locked():
            current = _read_existing(target)
            if current is not None and _order(current) >= _order(crl):
                return False
            temporary = self.crl_dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(temporary, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
            _fsync_dir(self.crl_dir)
        return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.crl_dir / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _warn_stale(self) -> None:
        now = self.clock.now()
        soon = timedelta(seconds=2 * self.refresh_seconds)
        for state in self.states.values():
            current = _read_existing(self.crl_dir / state.name)
            if current is None or current.next_update_utc is None:
                continue
            state.next_update = current.next_update_utc
            left = current.next_update_utc - now
            if left <= timedelta(0):
                log.error("CRL %s is stale since %s: certificates it answers for get CERT_STATUS_UNKNOWN",
                          state.name, current.next_update_utc.isoformat(), extra={"url": state.url})
            elif left < soon:
                log.warning("CRL %s goes stale at %s (in %.0f s) and no newer one was fetched", state.name,
                            current.next_update_utc.isoformat(), left.total_seconds(), extra={"url": state.url})


class _Refused(Exception):
    """A download that does not replace anything, with the reason for the log."""


def _read_existing(path: Path) -> x509.CertificateRevocationList | None:
    try:
        return load_crl(path.read_bytes())
    except (OSError, ValueError):
        return None


def _order(crl: x509.CertificateRevocationList) -> tuple[int, datetime]:
    """Which of two CRLs of one issuer is newer: the CRL number, then thisUpdate."""
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    return number, crl.last_update_utc


def _fsync_dir(directory: Path) -> None:
    """The rename itself made durable (a crash after it must not bring the old file back)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
