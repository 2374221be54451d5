"""The operators' commands for a shell on the server: `licgate applications show|search`, `licgate messages
search`, `licgate outbox dead|retry`, `licgate config check`, `licgate operator hash-password`. Readable tables
by default, `--json` on request. They work on the database of a `--config` directly, also while the gateway
runs; a retry is logged as an operator action of `cli:<the shell's user>`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.domain import Channel, Status

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gateway.services import Services


def add_commands(sub: Any) -> None:  # noqa: ANN401 - argparse's subparsers action has no public type
    apps = sub.add_parser("applications", help="look applications up (as the console does)")
    apps_sub = apps.add_subparsers(dest="apps_command", metavar="APPLICATIONS_COMMAND", required=True)
    show = apps_sub.add_parser("show", help="one application: timeline, deadlines, messages, outbound messages")
    show.add_argument("registration_number", metavar="REG_NO")
    _common(show)
    search = apps_sub.add_parser("search", help="applications by number, IIN/BIN, status, channel, overdue")
    search.add_argument("--registration-number")
    search.add_argument("--request-number")
    search.add_argument("--iin")
    search.add_argument("--bin")
    search.add_argument("--status", choices=[s.value for s in Status])
    search.add_argument("--channel", choices=[c.value for c in Channel])
    search.add_argument("--overdue", action="store_true", help="past the term with no result yet")
    search.add_argument("--limit", type=int, default=50)
    _common(search)

    messages = sub.add_parser("messages", help="search the message log (as the console does)")
    messages_sub = messages.add_subparsers(dest="messages_command", metavar="MESSAGES_COMMAND", required=True)
    found = messages_sub.add_parser("search", help="records by messageId, sender, verdict and time, newest first")
    found.add_argument("--message-id")
    found.add_argument("--sender", help="a senderId, or operator:NAME for operators' actions")
    found.add_argument("--verdict", help="e.g. SCSS001, SIGNATURE_INVALID, DELIVERED")
    found.add_argument("--since", type=_iso_time, help="ISO 8601 time (without an offset: [calendar] timezone)")
    found.add_argument("--until", type=_iso_time, help="ISO 8601 time (records before it)")
    found.add_argument("--limit", type=int, default=50)
    _common(found)

    outbox = sub.add_parser("outbox", help="dead letters of the outbound delivery")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", metavar="OUTBOX_COMMAND", required=True)
    _common(outbox_sub.add_parser("dead", help="outbound messages given up on, with their reasons"))
    retry = outbox_sub.add_parser("retry", help="send a dead letter (or all of them) again")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", type=int, help="the dead letter's id")
    target.add_argument("--all", action="store_true", help="every dead letter")
    _common(retry)

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file as `serve` would")
    check.add_argument("file", metavar="FILE")

    operator = sub.add_parser("operator", help="operators of the console and the ops API")
    operator_sub = operator.add_subparsers(dest="operator_command", metavar="OPERATOR_COMMAND", required=True)
    operator_sub.add_parser("hash-password", help="read a password on stdin, print its hash for [[operators]]")


def _iso_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's TOML configuration")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")


COMMANDS = ("applications", "messages", "outbox", "config", "operator")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `licgate --help` and `licgate mock` need none of the service.
    from core.errors import LicgateError
    from gateway.app import build_services
    from gateway.config import ConfigError, load_config

    if args.command == "operator":
        return _hash_password()
    if args.command == "config":
        return _config_check(args.file)
    try:
        services = build_services(load_config(args.config))
    except ConfigError as exc:
        print(f"licgate: config error: {exc}", file=sys.stderr)
        return 2
    try:
        handler: Callable[[Services, argparse.Namespace], int] = {
            ("applications", "show"): _show, ("applications", "search"): _search,
            ("messages", "search"): _messages, ("outbox", "dead"): _dead, ("outbox", "retry"): _retry,
        }[(args.command, getattr(args, "apps_command", None) or getattr(args, "messages_command", None)
           or getattr(args, "outbox_command", None))]
        return handler(services, args)
    except LicgateError as exc:
        print(f"licgate: {exc.code}: {exc.data or exc.message}", file=sys.stderr)
        return 1
    finally:
        services.storage.close()


# -- output --------------------------------------------------------------------------------------------------------


def _print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [v.model_dump(mode="json") for v in value]
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _when(value: object) -> str:
    return value.isoformat(timespec="minutes") if hasattr(value, "isoformat") else ("" if value is None else str(value))


# -- the commands --------------------------------------------------------------------------------------------------


def _show(services: Services, args: argparse.Namespace) -> int:
    from gateway.api.opsapi import application_detail

    detail = application_detail(services, args.registration_number)
    if args.json:
        _print_json(detail)
        return 0
    applicant = detail.applicant
    print(f"{detail.registration_number}  {detail.status.value}{'  OVERDUE' if detail.overdue else ''}")
    number = f"IIN {applicant.iin}" if applicant.iin else f"BIN {applicant.bin}"
    print(f"applicant  {applicant.name} ({number})")
    print(f"channel    {detail.channel.value} ({detail.sender_id}), {detail.service_type.value}, "
          f"requestNumber {detail.request_number}")
    print(f"received   {_when(detail.received_at)}   due {_when(detail.due_at)}\n")
    _table(["step", "deadline", "due", "done", "limit"],
           [(d.step.value, d.state, _when(d.due_at), _when(d.done_at), d.limit) for d in detail.deadlines])
    print()
    _table(["time", "dir", "endpoint", "sender", "verdict"],
           [(_when(m.at), m.direction, m.endpoint, m.sender_id, m.verdict) for m in detail.messages])
    print()
    _table(["outbox", "kind", "state", "attempts", "last error"],
           [(m.id, m.kind, m.state, m.attempts, m.last_error) for m in detail.outbox])
    return 0


def _search(services: Services, args: argparse.Namespace) -> int:
    from gateway.api.opsapi import summary
    from gateway.storage import ApplicationQuery

    query = ApplicationQuery(
        registration_number=args.registration_number, request_number=args.request_number, iin=args.iin, bin=args.bin,
        status=Status(args.status) if args.status else None, channel=Channel(args.channel) if args.channel else None,
        overdue=args.overdue, limit=max(1, min(args.limit, 1000)))
    found = [summary(services, a) for a in services.storage.search_applications(query, services.clock.now())]
    if args.json:
        _print_json(found)
        return 0
    _table(["registration number", "status", "channel", "applicant", "IIN/BIN", "received", "due", "overdue"],
           [(a.registration_number, a.status.value, a.channel.value, a.applicant.name,
             a.applicant.iin or a.applicant.bin, _when(a.received_at), _when(a.due_at), "yes" if a.overdue else "")
            for a in found])
    return 0


def _messages(services: Services, args: argparse.Namespace) -> int:
    from gateway.api.opsapi import message_out
    from gateway.storage import MessageQuery

    zone = services.calendar.timezone
    since, until = (t if t is None or t.tzinfo else t.replace(tzinfo=zone) for t in (args.since, args.until))
    query = MessageQuery(message_id=args.message_id, sender_id=args.sender, verdict=args.verdict, since=since,
                         until=until, limit=max(1, min(args.limit, 1000)))
    found = [message_out(services, m) for m in services.storage.search_messages(query)]
    if args.json:
        _print_json(found)
        return 0
    _table(["record", "time", "dir", "endpoint", "messageId", "sender", "verdict", "bytes"],
           [(m.id, _when(m.at), m.direction, m.endpoint, m.message_id, m.sender_id, m.verdict, m.size)
            for m in found])
    return 0


def _dead(services: Services, args: argparse.Namespace) -> int:
    from gateway.api.opsapi import outbox_out

    dead = [outbox_out(services, m) for m in services.storage.dead_letters(1000)]
    if args.json:
        _print_json(dead)
        return 0
    _table(["id", "application", "kind", "messageId", "attempts", "last error"],
           [(m.id, m.application_id, m.kind, m.message_id, m.attempts, m.last_error) for m in dead])
    return 0


def _retry(services: Services, args: argparse.Namespace) -> int:
    from gateway.api.auth import Caller
    from gateway.api.opsapi import retry_all, retry_one
    from gateway.config import OperatorConfig

    # A shell on the server is an admin's; the record names the account it ran under.
    caller = Caller(OperatorConfig(name=f"cli:{getpass.getuser()}", password_hash="-", role="admin"), None)
    retried = retry_all(services, caller) if args.all else ([args.id] if retry_one(services, caller, args.id) else [])
    if args.json:
        _print_json({"retried": retried})
    elif retried:
        print(f"sent again: {', '.join(map(str, retried))} (the running gateway delivers them on its next poll)")
    else:
        print("nothing to send again: no dead letter" + ("" if args.all else f" with id {args.id}"))
    return 0 if retried or args.all else 1


def _config_check(path: str) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"licgate: config error: {exc}", file=sys.stderr)
        return 2
    print(f"config: ok ({len(config.providers)} provider(s), {len(config.senders)} sender(s), "
          f"{len(config.operators)} operator(s), storage {config.storage.url.split(':', 1)[0]})")
    return 0


def _hash_password() -> int:
    from gateway.operators import hash_password

    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("licgate: no password on stdin (e.g. `read -rs P; printf '%s\\n' \"$P\" | licgate operator "
              "hash-password`)", file=sys.stderr)
        return 2
    if len(password) < 12:
        print("licgate: a password of at least 12 characters, please", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
