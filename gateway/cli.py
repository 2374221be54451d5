"""`licgate` (also `python -m gateway`): serve, demo, pki init, mock NAME (docs/testing.md), verify FILE
(docs/signing.md), audit (docs/audit.md)."""

from __future__ import annotations

import argparse
import gc
import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from gateway import __version__

MOCKS = ("shep", "portal", "center", "elicense", "provider", "nca")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="licgate",
        description="Integration gateway between SHEP front ends and a medical-licensing provider's IS.",
    )
    parser.add_argument("--version", action="version", version=f"licgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the gateway (SOAP endpoint, provider API, delivery worker)")
    serve.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    serve.add_argument("--host", help="overrides [server] host")
    serve.add_argument("--port", type=int, help="overrides [server] port")

    demo = sub.add_parser("demo", help="run every scenario end to end against the bundled mocks")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's PKI, config and database in DIR")

    pki = sub.add_parser("pki", help="test PKI shaped like NCA RK's")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="PKI_COMMAND", required=True)
    init = pki_sub.add_parser("init", help="write a test PKI into DIR")
    init.add_argument("dir", metavar="DIR")

    mock = sub.add_parser("mock", help="run one mock of an outside party")
    mock.add_argument("name", choices=MOCKS)
    mock.add_argument("--port", type=int, required=True)
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--config", metavar="FILE", help="the mock's own TOML settings (see docs/testing.md)")

    from gateway import cli_audit, cli_ops, cli_verify

    cli_ops.add_commands(sub)
    cli_verify.add_command(sub)
    cli_audit.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        from mocks.demo import run_demo

        return run_demo(keep=args.keep)
    if args.command == "pki":
        from signing.pki import init_pki

        written = init_pki(args.dir)
        print(f"test PKI written to {written}")
        return 0
    from gateway import cli_ops

    if args.command in cli_ops.COMMANDS:
        return cli_ops.run(args)
    if args.command == "verify":
        from gateway import cli_verify

        return cli_verify.run(args)
    if args.command == "audit":
        from gateway import cli_audit

        return cli_audit.run(args)
    if args.command == "mock":
        module = importlib.import_module(f"mocks.{args.name}")
        return module.main(host=args.host, port=args.port, config=args.config)
    return 2


def _serve(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"licgate: config error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from gateway.api.connections import protocol_factory
    from gateway.app import create_app
    from gateway.logs import setup_logging

    setup_logging(config.server.log_level)
    try:
        app = create_app(config)
    except Exception as exc:  # noqa: BLE001 - start-up failure: one line, no stack trace
        print(f"licgate: cannot start: {exc}", file=sys.stderr)
        return 1
    # What was built to start (modules, schemas, the trust store) lives as long as the process: kept out of
    # the collector's full passes, which otherwise walk it all every so often and stall every request.
    gc.freeze()
    # The intake store thread gives the interpreter up around every SQLite statement and must get it back
    # from the busy event loop; at the default 5 ms a batch spent most of its time waiting for it
    # (benchmarks/intake.py: 267/s at 5 ms, 311-327/s at 1 and 0.2 ms).
    sys.setswitchinterval(0.0005)
    class GracefulServer(uvicorn.Server):
        """uvicorn's server, telling the app at once when SIGTERM arrives (long-polled leases answer, the
        delivery worker claims nothing more, while the requests in flight finish within `[server]
        shutdown_seconds`), and exiting 0 after a SIGTERM it handled (uvicorn raises it again when done)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.begin_stop()
            if sig == signal.SIGTERM:
                self.should_exit = True
                return
            super().handle_exit(sig, frame)

    GracefulServer(uvicorn.Config(
        app,
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=config.server.shutdown_seconds,
        http=protocol_factory(config.server),
    )).run()
    return 0
