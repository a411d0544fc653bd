"""`bearlumen serve | demo | report`: the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._errors import BearLumenError


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import FaultSettings, bind_socket, make_server, settle_for_serving
    except ImportError:
        print(
            'bearlumen serve needs the server extra: pip install "bearlumen[server]"',
            file=sys.stderr,
        )
        return 2
    import asyncio

    faults = FaultSettings.parse(args.faults) if args.faults else None
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:  # a busy port is a user's mistake: one line, not a traceback
        reason = exc.strerror or str(exc)
        print(
            f"bearlumen serve: cannot listen on {args.host}:{args.port}: {reason}"
            " (choose another --port, or --port 0 for a free one)",
            file=sys.stderr,
        )
        return 1
    server, store, _ = make_server(
        db=args.db,
        api_keys=args.api_key,
        faults=faults,
        allow_faults=args.allow_faults,
        log_level=args.log_level,
    )
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"Bear Lumen local server listening on {url} (database: {args.db})")
    print("Point the SDK at it:")
    print(f"  export BEARLUMEN_BASE_URL={url}")
    if args.api_key:
        print(f"  export BEARLUMEN_API_KEY=<one of the {len(args.api_key)} --api-key values>")
    else:
        print("  export BEARLUMEN_API_KEY=sk_test_anything   # any non-empty key is its own tenant")
    print(f"Cost dashboard: {url}/ (sign in with an API key; docs/dashboard.md)")
    if faults is not None or args.allow_faults:
        print(f"Fault injection is on: POST {url}/_admin/faults, GET {url}/_admin/stats")
    sys.stdout.flush()
    settle_for_serving()  # this process is the server's: see server/heap.py
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bearlumen", description="Bear Lumen SDK tools")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the local Bear Lumen server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    serve.add_argument(
        "--db", default=":memory:", help="SQLite file; :memory: (default) keeps nothing"
    )
    serve.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accept only these keys (repeatable); without it any non-empty key is a tenant",
    )
    serve.add_argument("--faults", metavar="SPEC", help="e.g. rate_429=0.1,retry_after=1,seed=7")
    serve.add_argument(
        "--allow-faults",
        action="store_true",
        help="enable the loopback-only /_admin routes that change faults at run time",
    )
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(run=_serve)

    from ._demo import add_demo_commands

    add_demo_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BearLumenError as exc:  # a clear line, not a traceback
        print(f"bearlumen {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
