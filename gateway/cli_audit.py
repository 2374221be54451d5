"""`licgate audit verify|export|verify-bundle|purge` (docs/audit.md). Exit 0 when what was checked is
intact (or the command did its work), 1 with one `audit: damaged ...` line per finding, 2 on bad usage
(an unreadable config, an unknown application, a malformed date)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:  # noqa: ANN401 - argparse's subparsers action has no public type
    audit = sub.add_parser("audit", help="the message log's audit: verify the chain, evidence bundles, purge")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain, its checkpoints and checkpoint_file")
    verify.add_argument("--config", required=True, metavar="FILE")
    export = audit_sub.add_parser("export", help="write the evidence bundle of one application")
    export.add_argument("--config", required=True, metavar="FILE")
    export.add_argument("registration_number", metavar="REGISTRATION_NUMBER")
    export.add_argument("out", metavar="OUT.zip")
    bundle = audit_sub.add_parser("verify-bundle", help="check an evidence bundle offline (no database)")
    bundle.add_argument("bundle", metavar="BUNDLE.zip")
    purge = audit_sub.add_parser("purge", help="remove bodies and documents of finished applications before DATE")
    purge.add_argument("--config", required=True, metavar="FILE")
    purge.add_argument("--before", required=True, metavar="DATE", help="ISO date (local midnight) or time")


def run(args: argparse.Namespace) -> int:
    from gateway import audit

    if args.audit_command == "verify-bundle":
        return _print(audit.verify_bundle(Path(args.bundle)))
    opened = _open(args.config)
    if isinstance(opened, int):
        return opened
    config, storage, clock = opened
    try:
        # Only an export may have to make a checkpoint, and so a seal key; verify and purge sequence only.
        seal = audit.load_seal(config.audit, storage, clock) if args.audit_command == "export" else None
        auditor = audit.Auditor(config.audit, storage, clock, seal)
        if args.audit_command == "verify":
            auditor.sequence()  # what the gateway has not sequenced yet (it may be stopped)
            certs = audit.trusted_certs(config.audit, storage)
            try:
                timestamps = audit.timestamp_verifier(config.trust)
            except ValueError as exc:
                print(f"audit: cannot check checkpoint timestamps: {exc}", file=sys.stderr)
                return 2
            return _print(audit.verify(storage, certs, config.audit.checkpoint_file, timestamps=timestamps))
        if args.audit_command == "export":
            try:
                n = audit.export_bundle(storage, auditor, audit.trusted_certs(config.audit, storage),
                                        args.registration_number, Path(args.out))
            except LookupError as exc:
                print(f"audit: {exc}", file=sys.stderr)
                return 2
            print(f"audit: exported {n} records of {args.registration_number} to {args.out}")
            return 0
        if args.audit_command == "purge":
            before = _when(args.before, config.calendar.tz)
            if before is None:
                print(f"audit: --before {args.before!r} is not an ISO date or time", file=sys.stderr)
                return 2
            auditor.sequence()
            purged = storage.purge_log(before, clock.now())
            print(f"audit: purged {purged} records before {before.isoformat()}")
            return 0
        return 2
    finally:
        storage.close()


def _print(report: Any) -> int:  # noqa: ANN401 - gateway.audit.Report, imported late
    for line in report.lines():
        print(line)
    return 0 if report.intact else 1


def _when(value: str, tz: Any) -> datetime | None:  # noqa: ANN401 - a tzinfo
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), time(0), tzinfo=tz).astimezone(UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(UTC)


def _open(path: str) -> Any:  # noqa: ANN401 - (config, storage, clock) or an exit code
    from core.clock import Clock
    from gateway.config import ConfigError, load_config
    from gateway.storage import StorageError, open_storage

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"licgate: config error: {exc}", file=sys.stderr)
        return 2
    try:
        storage = open_storage(config.storage.url, pool_size=2)
        storage.migrate()
    except (StorageError, ValueError) as exc:
        print(f"audit: cannot open the database: {exc}", file=sys.stderr)
        return 2
    return config, storage, Clock()
