"""The message log's audit (docs/audit.md): the sequencer that gives committed records their place in the
one hash chain, the signed checkpoints over it, and the checks of `licgate audit verify`, `audit export`
and `audit verify-bundle`.

Sequencing: records are inserted in their own transactions without a sequence number (no lock on the
intake path). Every instance runs an `Auditor` thread that, a moment after their commit, gives pending
records the next numbers and chain hashes in id order, holding the chain's head row (PostgreSQL: FOR UPDATE
SKIP LOCKED, so one sequencer works at a time across instances and the others go on; SQLite: its single
writer). A checkpoint (the chain's length and head, signed by the seal key) is made under the same lock
every `checkpoint_records` records, or `checkpoint_seconds` after the first record none covers; the instance
that made it appends it to its `checkpoint_file` and, with `tsa_url`, asks a TSA to timestamp it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import queue
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from core.auditchain import ENCODING, GENESIS, chain_hash, entry_hash, micros
from core.clock import Clock
from gateway.config import AuditConfig
from gateway.storage import AuditRecord, ChainHead, Checkpoint, MessageLogEntry, Storage, StorageError
from signing.seal import Seal, key_id, make_seal, verify_seal
from signing.trust import TrustConfig
from signing.tsp import TimestampVerifier

log = logging.getLogger("licgate.audit")

ORIGIN_PREFIX = "licgate audit log "
SIGNATURE_MARK = "\u2014 "  # an em dash and a space start a signature line (the signed-note style)
_TICK_SECONDS = 0.25
_SEQUENCE_BATCH = 5000
_VERIFY_PAGE = 20_000
_LOOKAHEAD = 8  # how far verify looks for a record's content when it is out of its place


# --- the checkpoint note -------------------------------------------------------------------------------


def note_body(log_id: str, size: int, root: str, at: datetime) -> str:
    """What the seal signs: origin, size, root hash, time; one line each."""
    when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{ORIGIN_PREFIX}{log_id}\n{size}\n{root}\n{when}\n"


def make_note(seal: Seal, log_id: str, size: int, root: str, at: datetime) -> str:
    body = note_body(log_id, size, root, at)
    signature = base64.b64encode(seal.sign(body.encode())).decode()
    return f"{body}\n{SIGNATURE_MARK}licgate-seal {seal.key_id} {signature}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed checkpoint note."""

    log_id: str
    size: int
    root: str
    at: str
    body: str
    signatures: tuple[tuple[str, str, bytes], ...]  # (name, key id, signature)
    tsa_token: bytes | None = None

    def verifies(self, certs: CertIndex | Iterable[bytes]) -> bool:
        """True when a seal signature line verifies with one of `certs` (PEM)."""
        return self.signer(certs) is not None

    def signer(self, certs: CertIndex | Iterable[bytes]) -> bytes | None:
        """The certificate among `certs` whose key signed this note, if any."""
        index = certs if isinstance(certs, CertIndex) else CertIndex(certs)
        body = self.body.encode()
        return next((pem for name, k, sig in self.signatures if name == "licgate-seal"
                     for pem in index.with_id(k) if verify_seal(pem, body, sig)), None)


class CertIndex:
    """Seal certificates (PEM) by key id, built once per verify: key ids are short, so every certificate with
    a signature line's id is tried."""

    def __init__(self, pems: Iterable[bytes]) -> None:
        self._by_id: dict[str, list[bytes]] = {}
        for pem in pems:
            self._by_id.setdefault(key_id(pem), []).append(pem)

    def with_id(self, kid: str) -> list[bytes]:
        return self._by_id.get(kid, [])


def parse_note(text: str) -> Note:
    """A note (ValueError when it is not one)."""
    body_text, sep, rest = text.partition("\n\n")
    lines = body_text.split("\n")
    if not sep or len(lines) != 4 or not lines[0].startswith(ORIGIN_PREFIX):
        raise ValueError("not a licgate checkpoint")
    signatures: list[tuple[str, str, bytes]] = []
    token = None
    for line in rest.split("\n"):
        if not line:
            continue
        if not line.startswith(SIGNATURE_MARK):
            raise ValueError("a line after the blank line is not a signature line")
        parts = line[len(SIGNATURE_MARK):].split(" ")
        if parts[0] == "tsa" and len(parts) == 2:
            token = base64.b64decode(parts[1])
        elif len(parts) == 3:
            signatures.append((parts[0], parts[1], base64.b64decode(parts[2])))
        else:
            raise ValueError("a signature line has the wrong shape")
    if not lines[1].isdigit() or len(lines[2]) != 64:
        raise ValueError("size or root hash malformed")
    return Note(lines[0][len(ORIGIN_PREFIX):], int(lines[1]), lines[2], lines[3], body_text + "\n",
                tuple(signatures), token)


def read_checkpoint_file(path: Path) -> list[Note]:
    """The notes appended to `path` (each ends with its signature lines; one blank line between notes)."""
    text = path.read_text(encoding="utf-8")
    notes, current = [], []
    for line in text.split("\n"):
        if line.startswith(ORIGIN_PREFIX) and current:
            notes.append("\n".join(current).strip("\n") + "\n")
            current = []
        current.append(line)
    if any(current):
        notes.append("\n".join(current).strip("\n") + "\n")
    return [parse_note(n) for n in notes]


# --- the seal -----------------------------------------------------------------------------------------


def load_seal(config: AuditConfig, storage: Storage, clock: Clock) -> Seal:
    """The configured seal, or one of the process's own: a new key held in memory only (never stored, never
    logged), whose certificate is kept in the database so that `audit verify` can check what it signed."""
    if config.key_pem is not None and config.cert_pem is not None:
        return Seal(config.key_pem, config.cert_pem)
    key_pem, cert_pem = make_seal()
    seal = Seal(key_pem, cert_pem)
    storage.add_seal_cert(seal.cert_pem, clock.now())
    log.warning("no [audit] seal key configured: made a seal key for this process, held in memory only, and kept "
                "its certificate in the database (configure [audit] key and cert for a seal an outsider can "
                "check: docs/audit.md)", extra={"key_id": seal.key_id})
    return seal


@dataclass(frozen=True)
class SealCerts:
    """The certificates checkpoints may be signed with: the configured seal's, and those of the keys the
    gateway made itself (kept in the database). With a configured seal, the database's certificates count
    only for the checkpoints up to the first one the configured key signed: whoever can write the database
    could add a certificate of their own, and once the configured key has signed, every later checkpoint is
    its to sign."""

    configured: bytes | None
    own: tuple[bytes, ...] = ()

    def all(self) -> list[bytes]:
        return ([self.configured] if self.configured is not None else []) + list(self.own)

    @cached_property
    def _every(self) -> CertIndex:
        return CertIndex(self.all())

    @cached_property
    def configured_only(self) -> CertIndex:
        return CertIndex([self.configured] if self.configured is not None else [])

    def for_checkpoint(self, size: int, configured_from: int | None) -> CertIndex:
        """Those that may sign the checkpoint of `size`, the configured key having signed first at
        `configured_from` (None: not yet). Indexed once, however many checkpoints and certificates."""
        if self.configured is None or configured_from is None or size <= configured_from:
            return self._every
        return self.configured_only


def trusted_certs(config: AuditConfig, storage: Storage) -> SealCerts:
    """The seal certificates `audit verify` and `export` trust (see SealCerts)."""
    return SealCerts(config.cert_pem, tuple(storage.seal_certs()))


# --- the sequencer and the checkpoints --------------------------------------------------------------------


class Auditor:
    """One per gateway process (see the module docstring)."""

    def __init__(self, config: AuditConfig, storage: Storage, clock: Clock, seal: Seal | None) -> None:
        """`seal` None: this auditor sequences but cannot make checkpoints (`licgate audit verify` and
        `purge` need no key)."""
        self._config = config
        self._storage = storage
        self._clock = clock
        self.seal = seal
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_lock = threading.Lock()
        self._covered: int | None = None  # the size of the last checkpoint this process knows of
        self._uncovered_since: datetime | None = None  # when it first saw records no checkpoint covers

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="licgate-audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Sequence what is pending, then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._tick_safely()

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> dict[str, object]:
        """The audit's state for the ops API and the console: the chain's length and head, records not
        sequenced yet, the checkpoints and the last one, the seal's key id."""
        head = self._storage.chain_head()
        last, count = self._storage.last_checkpoint()
        return {"records": head.seq, "head": head.chain_hash, "pending": self._storage.pending_log(),
                "checkpoints": count, "last_checkpoint_size": last.size if last else None,
                "last_checkpoint_at": last.at.isoformat() if last else None,
                "seal_key_id": self.seal.key_id if self.seal else None,
                "uncovered_since": self._uncovered_since.isoformat() if self._uncovered_since else None}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_TICK_SECONDS)
            self._wake.clear()
            self._tick_safely()

    def _tick_safely(self) -> None:
        try:
            self.tick()
        except StorageError as exc:
            log.warning("audit sequencing failed; tried again", extra={"error": str(exc)[:200]})
        except Exception:  # noqa: BLE001 - the thread must outlive one bad tick
            log.exception("audit tick failed")

    def tick(self, *, force_checkpoint: bool = False) -> Checkpoint | None:
        """Sequence every pending record, then make a checkpoint when one is due (or `force_checkpoint`)."""
        head = self.sequence()
        if head is not None and not force_checkpoint and not self._maybe_due(head):
            return None  # looked at without a transaction: most ticks write nothing more
        return self.checkpoint(force=force_checkpoint)

    def _maybe_due(self, head: ChainHead) -> bool:
        """Whether a checkpoint may be due, by what this process knows (another may have made it)."""
        if self._covered is None:
            last, _ = self._storage.last_checkpoint()
            self._covered = last.size if last else 0
        if head.seq <= self._covered:
            self._uncovered_since = None
            return False
        now = self._clock.now()
        if self._uncovered_since is None:
            self._uncovered_since = now
        return (head.seq - self._covered >= self._config.checkpoint_records
                or now - self._uncovered_since >= timedelta(seconds=self._config.checkpoint_seconds))

    def sequence(self) -> ChainHead | None:
        head = None
        while True:
            head = self._storage.sequence_log(_SEQUENCE_BATCH)
            if head is None or head.added < _SEQUENCE_BATCH:
                return head

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        config = self._config

        def make(head: ChainHead, last: Checkpoint | None, first_at: datetime | None) -> tuple[str, datetime] | None:
            now = self._clock.now()
            covered = last.size if last else 0
            due = (force or head.seq - covered >= config.checkpoint_records
                   or (first_at is not None and now - first_at >= timedelta(seconds=config.checkpoint_seconds)))
            if not due:
                return None
            if self.seal is None:
                raise RuntimeError("a checkpoint is due but this auditor has no seal key")
            return make_note(self.seal, head.log_id, head.seq, head.chain_hash, now), now

        made = self._storage.add_checkpoint(make)
        self._covered, self._uncovered_since = None, None  # read again at the next look
        if made is None:
            return None
        token = self._timestamp(made)
        self._append(made.note, token)
        log.info("audit checkpoint", extra={"size": made.size, "root": made.root})
        return made

    def _timestamp(self, checkpoint: Checkpoint) -> bytes | None:
        if not self._config.tsa_url:
            return None
        import httpx

        from signing import tsa

        note = parse_note(checkpoint.note)
        imprint = hashlib.sha256(note.signatures[0][2]).digest()
        try:
            answer = httpx.post(self._config.tsa_url, content=tsa.request(imprint, nonce=int.from_bytes(os.urandom(8))),
                                headers={"Content-Type": "application/timestamp-query"}, timeout=10)
            answer.raise_for_status()
            token = tsa.token_of(answer.content)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("the TSA did not timestamp the checkpoint", extra={"size": checkpoint.size,
                                                                          "error": str(exc)[:200]})
            return None
        self._storage.set_checkpoint_token(checkpoint.id, token)
        return token

    def _append(self, note: str, token: bytes | None) -> None:
        path = self._config.checkpoint_file
        if path is None:
            return
        text = note + (f"{SIGNATURE_MARK}tsa {base64.b64encode(token).decode()}\n" if token else "") + "\n"
        try:
            with self._file_lock:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
        except OSError as exc:
            log.error("could not append the checkpoint to checkpoint_file", extra={"path": str(path),
                                                                                   "error": str(exc)[:200]})


# --- verify -------------------------------------------------------------------------------------------


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0
    purged: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    def lines(self) -> list[str]:
        if self.findings:
            return [f"audit: damaged: {f}" for f in self.findings]
        line = f"audit: intact, {self.records} records, {self.checkpoints} checkpoints"
        return [line + (f", {self.purged} purged" if self.purged else "")]


def _entry_hash_of(entry: MessageLogEntry) -> str:
    return entry_hash(entry.direction, entry.endpoint, entry.message_id, entry.sender_id, entry.correlation_id,
                      entry.application_id, entry.verdict, micros(entry.at), entry.sha256)


def _records(storage: Storage, upto: int) -> Iterator[AuditRecord]:
    """Places 1 ... `upto` in order, read page by page; the next page is read by a thread of its own while
    this one is checked (the database's time and the hashing overlap: a third off a million records)."""
    pages: queue.Queue[list[AuditRecord] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        after = 0
        try:
            while after < upto and not stop.is_set():
                page = storage.audit_records(after, upto, _VERIFY_PAGE)
                if not page:
                    break
                pages.put(page)
                after = page[-1].seq
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            pages.put(exc)
            return
        pages.put(None)

    reader = threading.Thread(target=read, name="licgate-audit-read", daemon=True)
    reader.start()
    try:
        while (page := pages.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield from page
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to put its page
            with contextlib.suppress(queue.Empty):
                pages.get(timeout=0.1)


def _missing(lo: int, hi: int, why: str = "missing") -> str:
    return f"record {lo}: {why}" if lo == hi else f"records {lo}-{hi}: {why}"


def verify_chain(records: Iterator[AuditRecord], report: Report, start: str = GENESIS,
                 first: int = 1, marks: dict[int, str | None] | None = None) -> tuple[int, str | None]:
    """Walk `records` (in seq order) from chain hash `start` at place `first` - 1; findings go to `report`,
    and the stored chain hash of each place named in `marks` to it. The last place seen and its chain hash."""
    previous: str | None = start
    expected = first
    ahead: list[AuditRecord] = []
    substitutes: dict[int, tuple[MessageLogEntry, str]] = {}  # place -> (content found out of place, its hash)
    source = iter(records)
    last_hash: str | None = None

    def pull() -> AuditRecord | None:
        if ahead:
            return ahead.pop(0)
        return next(source, None)

    def peek(n: int) -> list[AuditRecord]:
        while len(ahead) < n:
            got = next(source, None)
            if got is None:
                break
            ahead.append(got)
        return ahead[:n]

    while (record := pull()) is not None:
        seq = record.seq
        if seq > expected:
            report.findings.append(_missing(expected, seq - 1))
            previous = None
        expected = seq + 1
        report.records += 1
        last_hash = record.chain_hash
        if marks is not None and seq in marks:
            marks[seq] = record.chain_hash
        substitute = substitutes.pop(seq, None)
        entry = substitute[0] if substitute else record.entry
        if entry is None:
            report.findings.append(f"record {seq}: missing")
            previous = record.chain_hash
            continue
        if record.purged:
            report.purged += 1
        elif hashlib.sha256(entry.body).hexdigest() != entry.sha256:
            report.findings.append(f"record {seq}: altered (its body does not match its hash)")
            previous = record.chain_hash
            continue
        if previous is None:  # after a gap: this record's link cannot be checked
            previous = record.chain_hash
            continue
        computed = chain_hash(previous, seq, _entry_hash_of(entry))
        accepted = {record.chain_hash} | ({substitute[1]} if substitute else set())
        if computed in accepted:
            previous = computed
            continue
        swapped = None
        if substitute is None:
            for other in peek(_LOOKAHEAD):
                if other.entry is None:
                    continue
                candidate = chain_hash(previous, seq, _entry_hash_of(other.entry))
                if candidate in (record.chain_hash, other.chain_hash):
                    swapped = other
                    substitutes[other.seq] = (entry, record.chain_hash)
                    previous = candidate
                    break
        if swapped is not None:
            report.findings.append(f"record {seq}: out of order (its content is at record {swapped.seq})")
            continue
        report.findings.append(f"record {seq}: altered (its metadata or chain hash do not match)")
        previous = record.chain_hash
    return expected - 1, last_hash


def verify(storage: Storage, certs: SealCerts, checkpoint_file: Path | None, *,
           timestamps: TimestampVerifier | None = None) -> Report:
    """`licgate audit verify`: the chain in the database, its checkpoints, and those of `checkpoint_file`.
    With `timestamps` (the TSAs of `[trust] tsa_dir`), each checkpoint's RFC 3161 token is verified in full:
    the TSA's signature, its certificate's path at genTime, and the imprint; without, only the imprint."""
    report = Report()
    head = storage.chain_head()
    checkpoints = storage.checkpoints()
    notes: list[tuple[str, Note | None, Checkpoint | None]] = []
    for cp in checkpoints:
        try:
            notes.append(("checkpoint", parse_note(cp.note), cp))
        except ValueError:
            notes.append(("checkpoint", None, cp))
    if checkpoint_file is not None and checkpoint_file.exists():
        try:
            notes += [("checkpoint_file", n, None) for n in read_checkpoint_file(checkpoint_file)]
        except (ValueError, OSError) as exc:
            report.findings.append(f"checkpoint_file {checkpoint_file}: unreadable ({exc})")
    covered = max([n.size for _, n, _ in notes if n is not None] + [0])
    marks: dict[int, str | None] = {n.size: None for _, n, _ in notes if n is not None}
    last, _ = verify_chain(_records(storage, max(head.seq, covered) + _LOOKAHEAD), report, marks=marks)
    report.checkpoints = len(checkpoints)
    configured_from = None if certs.configured is None else min(
        (n.size for _, n, _ in notes if n is not None and n.verifies(certs.configured_only)), default=None)
    for where, note, cp in notes:
        size = note.size if note else cp.size  # type: ignore[union-attr]
        if note is None or not note.verifies(certs.for_checkpoint(note.size, configured_from)) \
                or note.log_id != head.log_id:
            report.findings.append(f"record {size}: checkpoint signature fails ({where})")
            continue
        if cp is not None and (cp.size != note.size or cp.root != note.root):
            report.findings.append(f"record {size}: checkpoint signature fails ({where}: its columns differ)")
            continue
        token = cp.timestamp_token if cp is not None else note.tsa_token
        if token is not None and not _timestamp_matches(token, note):
            report.findings.append(f"record {size}: checkpoint timestamp does not cover its signature ({where})")
        elif token is not None and timestamps is not None:
            problem = _timestamp_problem(timestamps, token, note)
            if problem is not None:
                report.findings.append(f"record {size}: checkpoint timestamp does not verify ({where}: {problem})")
        if note.size > last:
            report.findings.append(_missing(last + 1, note.size, f"gone, though covered by a {where}"))
            continue
        stored = marks.get(note.size)
        if stored is not None and stored != note.root:
            report.findings.append(f"record {note.size}: altered (its chain hash differs from the {where})")
    report.findings = list(dict.fromkeys(report.findings))
    return report


def _timestamp_problem(timestamps: TimestampVerifier, token: bytes, note: Note) -> str | None:
    """Why the token over the note's seal signature does not verify, or None."""
    from core.errors import LicgateError

    try:
        made = datetime.fromisoformat(note.at)
    except ValueError:
        return "the checkpoint's time does not parse"
    problem = "no seal signature line"
    for name, _, signature in note.signatures:  # the line the token covers (`_timestamp_matches` found one)
        if name != "licgate-seal":
            continue
        try:
            timestamps.verify(token, signature, made)
        except LicgateError as exc:
            problem = (exc.data or exc.code)[:200]
        except Exception as exc:  # noqa: BLE001 - a token stored by anyone: whatever breaks is a finding
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            return None
    return problem


def timestamp_verifier(trust: TrustConfig) -> TimestampVerifier | None:
    """The verifier of checkpoint timestamps for `audit verify`: the TSAs of `[trust] tsa_dir` (None when it
    is not set). A `tsa_dir` set but unusable is an error (ValueError), not a quiet fall back to the imprint.
    The TSA certificate's revocation is not judged: verify works offline."""
    from signing.providers import build_registry
    from signing.tsp import TsaTrust

    if trust.tsa_dir is None:
        return None
    try:
        tsas = TsaTrust(trust.tsa_dir)
    except OSError as exc:
        raise ValueError(f"[trust] tsa_dir {trust.tsa_dir}: {exc}") from None
    return TimestampVerifier(tsas, build_registry(trust.crypto_providers))


def _timestamp_matches(token: bytes, note: Note) -> bool:
    """The RFC 3161 token's message imprint is the SHA-256 of the note's seal signature (the TSA's own
    signature and certificate are for whoever trusts that TSA to check: `licgate verify` does for XAdES)."""
    from core.errors import LicgateError
    from signing.tsp import parse_token

    try:
        parsed = parse_token(token)
    except LicgateError:
        return False
    return any(parsed.imprint == hashlib.sha256(sig).digest() for name, _, sig in note.signatures
               if name == "licgate-seal")


# --- evidence bundles -----------------------------------------------------------------------------------


def export_bundle(storage: Storage, auditor: Auditor, certs: SealCerts, registration_number: str,
                  out: Path) -> int:
    """Write the evidence bundle of one application to `out`; the records in it. `certs`: as for `verify`
    (the bundle carries the one that signed its checkpoint)."""
    app = storage.find_by_registration_number(registration_number)
    if app is None:
        raise LookupError(f"no application {registration_number}")
    auditor.sequence()
    records = storage.audit_records_of_application(app.id)
    if not records:
        raise LookupError(f"no message-log record of {registration_number} is sequenced yet")
    last = records[-1].seq
    cover = storage.checkpoint_covering(last)
    if cover is None:
        cover = auditor.checkpoint(force=True) or storage.checkpoint_covering(last)
    if cover is None:
        raise LookupError("no checkpoint covers the application's records")
    first = records[0].seq
    start = GENESIS if first == 1 else storage.audit_records(first - 2, first - 1, 1)[0].chain_hash
    trusted = certs.all() + ([auditor.seal.cert_pem] if auditor.seal is not None else [])
    signer = parse_note(cover.note).signer(trusted)
    if signer is None:
        raise LookupError(f"the checkpoint covering record {last} is not signed by a known seal key")
    mine = {r.seq for r in records}
    links = [[seq, h, e] for seq, h, e in storage.audit_links(first, cover.size) if seq not in mine]
    listed = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for r in records:
            assert r.entry is not None
            e = r.entry
            name = f"bodies/{r.seq:012d}.bin"
            bundle.writestr(name, e.body)
            listed.append({"seq": r.seq, "chain_hash": r.chain_hash, "direction": e.direction, "endpoint": e.endpoint,
                           "message_id": e.message_id, "sender_id": e.sender_id, "correlation_id": e.correlation_id,
                           "application_id": e.application_id, "verdict": e.verdict, "at_micros": micros(e.at),
                           "at": e.at.isoformat(), "body_sha256": e.sha256, "purged": r.purged, "body": name})
        bundle.writestr("bundle.json", json.dumps({
            "encoding": ENCODING, "registration_number": registration_number, "application_id": app.id,
            "start": {"seq": first - 1, "chain_hash": start}, "records": listed, "links": links,
        }, indent=1, ensure_ascii=False))
        bundle.writestr("checkpoint.txt", cover.note)
        bundle.writestr("seal.pem", signer)
        bundle.writestr("README.txt", "licgate evidence bundle: check it with `licgate audit verify-bundle FILE`; "
                                      "the chain's encoding and the checkpoint format are in docs/audit.md.\n")
    out.write_bytes(buffer.getvalue())
    return len(records)


def verify_bundle(path: Path) -> Report:
    """`licgate audit verify-bundle`: the bundle alone, no database."""
    report = Report()
    # The bundle may come from anyone, and every way it fails to be one is a finding, never a traceback: a
    # changed byte inside a compressed member surfaces as zlib.error, EOFError or a CRC BadZipFile, a
    # changed bundle.json as a KeyError, TypeError or OverflowError, a foreign seal.pem as an unsupported
    # algorithm. Only the two methods export writes are read, and no member beyond BUNDLE_MEMBER_BYTES.
    try:
        with zipfile.ZipFile(path) as bundle:
            for info in bundle.infolist():
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise zipfile.BadZipFile(f"{info.filename}: compression method {info.compress_type} "
                                             "(export writes deflate)")
                if info.file_size > BUNDLE_MEMBER_BYTES:
                    raise zipfile.BadZipFile(f"{info.filename}: {info.file_size} bytes, over {BUNDLE_MEMBER_BYTES}")
            bad = bundle.testzip()  # every member's CRC, the README's too: a changed byte anywhere is a finding
            if bad is not None:
                raise zipfile.BadZipFile(f"{bad}: its CRC does not match its content")
            meta = json.loads(bundle.read("bundle.json"))
            note = parse_note(bundle.read("checkpoint.txt").decode())
            cert_pem = bundle.read("seal.pem")
            certs = [cert_pem]
            bodies = {r["seq"]: bundle.read(r["body"]) for r in meta["records"]}
    except Exception as exc:  # noqa: BLE001 - hostile input: whatever breaks, the bundle is unreadable
        report.findings.append(f"bundle unreadable ({type(exc).__name__}: {str(exc)[:200]})")
        return report
    try:
        _verify_bundle_chain(report, meta, note, certs, bodies)
    except Exception as exc:  # noqa: BLE001 - as above: a malformed bundle.json is a finding
        report.findings.append(f"bundle unreadable (bundle.json malformed: {type(exc).__name__}: {str(exc)[:200]})")
    report.findings = list(dict.fromkeys(report.findings))
    return report


BUNDLE_MEMBER_BYTES = 256 * 1024 * 1024  # no record's body comes near it ([server] max_message_bytes)


def _verify_bundle_chain(report: Report, meta: dict, note: Note, certs: list[bytes], bodies: dict) -> None:
    report.checkpoints = 1
    if not note.verifies(certs):
        report.findings.append(f"record {note.size}: checkpoint signature fails")
    places: list[tuple[int, str, str | None, dict | None]] = [(s, h, e, None) for s, h, e in meta["links"]]
    places += [(r["seq"], r["chain_hash"], None, r) for r in meta["records"]]
    places.sort(key=lambda p: p[0])
    previous = meta["start"]["chain_hash"]
    expected = meta["start"]["seq"] + 1
    for seq, stored, link_entry, record in places:
        if seq != expected:
            report.findings.append(_missing(expected, seq - 1) if seq > expected else f"record {seq}: out of order")
        expected = seq + 1
        if record is not None:
            report.records += 1
            if record["purged"]:
                report.purged += 1
            elif hashlib.sha256(bodies[seq]).hexdigest() != record["body_sha256"]:
                report.findings.append(f"record {seq}: altered (its body does not match its hash)")
            link_entry = entry_hash(record["direction"], record["endpoint"], record["message_id"],
                                    record["sender_id"], record["correlation_id"], record["application_id"],
                                    record["verdict"], int(record["at_micros"]), record["body_sha256"])
        if link_entry is None:
            report.findings.append(f"record {seq}: missing")
            previous = stored
            continue
        computed = chain_hash(previous, seq, link_entry)
        if computed != stored:
            report.findings.append(f"record {seq}: altered (its metadata or chain hash do not match)")
        previous = stored
    if expected - 1 != note.size:
        report.findings.append(_missing(expected, note.size, "gone, though covered by the checkpoint"))
    elif previous != note.root:
        report.findings.append(f"record {note.size}: altered (its chain hash differs from the checkpoint)")
