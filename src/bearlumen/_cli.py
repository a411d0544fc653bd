"""`bearlumen serve | demo | report | reconcile`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional, Sequence, get_args, get_origin, get_type_hints

from ._errors import AuthenticationError, BearLumenError
from ._http import ApiKey
from ._version import __version__


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text:
            return help_text
        return super()._get_help_string(action) or help_text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


# The Python parameter an error names -> the flag that sets it on the command line.
_FLAG_OF_PARAM = {
    "start_date": "--start",
    "end_date": "--end",
    "start": "--start",
    "end": "--end",
    "admin_key": "--admin-key",
}


def bearlumen_client(args: argparse.Namespace, **options: Any) -> Any:
    """The Bear Lumen client of a command: `--api-key` / `--base-url`, else BEARLUMEN_API_KEY /
    BEARLUMEN_BASE_URL. A missing key names the flag to pass, not the Python argument."""
    from ._client import Client

    api_key = args.api_key or os.environ.get("BEARLUMEN_API_KEY")
    if not api_key:
        raise AuthenticationError("no API key: pass --api-key or set BEARLUMEN_API_KEY")
    return Client(api_key=api_key, base_url=args.base_url, **options)


def checked_answer(answer: Any, shape: Any, call: str) -> Any:
    """`answer` when it has every key the TypedDict `shape` requires, and so has each item of
    its lists of TypedDicts; else a `BearLumenError` naming the first key missing. A proxy or
    another API answering 200 with other JSON (`{}`) ends the command in one line that says what
    is missing, not in a KeyError's traceback, nor in a report of nothing."""
    problem = _shape_problem(answer, shape, "")
    if problem is None:
        return answer
    raise BearLumenError(
        f"the answer to {call} {problem}: is --base-url a Bear Lumen API?", body=answer
    )


def _shape_problem(answer: Any, shape: Any, path: str) -> Optional[str]:
    if not isinstance(answer, dict):
        return f"is no JSON object{' at ' + path.rstrip('.') if path else ''}"
    hints = get_type_hints(shape)
    for key in sorted(shape.__required_keys__, key=list(hints).index):
        if key not in answer:
            return f"has no {path + key!r}"
        hint = hints[key]
        item_shape = get_args(hint)[0] if get_origin(hint) in (list, List) else None
        if hasattr(item_shape, "__required_keys__"):
            items = answer[key]
            if not isinstance(items, list):
                return f"has no list at {path + key!r}"
            for index, item in enumerate(items):
                problem = _shape_problem(item, item_shape, f"{path}{key}[{index}].")
                if problem is not None:
                    return problem
    return None


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

    try:
        faults = FaultSettings.parse(args.faults) if args.faults else None
    except ValueError as exc:
        print(f"bearlumen serve: --faults: {exc}", file=sys.stderr)
        return 2
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
        # The server keeps only hashes of the keys: it needs their text, once, here.
        api_keys=[key.header_value("") for key in args.api_key] if args.api_key else None,
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
    parser = _Parser(prog="bearlumen", description="Bear Lumen SDK tools")
    parser.add_argument("--version", action="version", version=f"bearlumen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="run the local Bear Lumen server",
        description="Run the local Bear Lumen server (http://127.0.0.1:8787 by default).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=int, default=8787, help="port to listen on; 0 picks a free one"
    )
    serve.add_argument(
        "--db", default=":memory:", help="SQLite file; :memory: keeps nothing after exit"
    )
    serve.add_argument(
        "--api-key",
        action="append",
        type=ApiKey,  # a repr of the arguments (a traceback's locals) shows no key
        metavar="KEY",
        help="accept only these keys (repeatable); without it any non-empty key is a tenant",
    )
    serve.add_argument(
        "--faults", metavar="SPEC", help="inject faults, e.g. rate_429=0.1,retry_after=1,seed=7"
    )
    serve.add_argument(
        "--allow-faults",
        action="store_true",
        help="enable the loopback-only /_admin routes that change faults at run time",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="the server's log level",
    )
    serve.set_defaults(run=_serve)

    from ._demo import add_demo_commands

    add_demo_commands(commands)
    from ._reconcile_cli import add_reconcile_command

    add_reconcile_command(commands, bearlumen_client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BearLumenError as exc:  # a clear line, not a traceback
        flag = _FLAG_OF_PARAM.get(exc.param or "")
        hint = f" (check {flag})" if flag and flag not in str(exc) else ""
        print(f"bearlumen {args.command}: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
