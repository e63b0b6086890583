"""The ``cachekit`` command: run the demo, inspect and benchmark caches.

Exit codes: 0 success, 1 the operation found nothing (``get`` of a missing
key) or was declined, 2 bad usage or configuration, 3 the server could not be
reached or answered with an error. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from cachekit.cache import Cache
from cachekit.config import _redact
from cachekit.config import from_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import CacheKitError
from cachekit.exceptions import ConfigurationError

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CommandError(Exception):
    """A failure to report on one line with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def _using(url: str, prefix: str | None = None) -> Iterator[Cache]:
    """Yield a cache that raises on outages; an outage becomes a one-line error. Closed after."""
    cache = from_url(url, on_error="raise", key_prefix=prefix or "")
    try:
        yield cache
    except BackendError as exc:
        raise CommandError(f"cannot use {_redact(url)}: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        cache.close()


def _parse_value(text: str, as_json: bool) -> Any:
    if not as_json:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"VALUE is not valid JSON: {exc}", EXIT_USAGE) from None


def cmd_ping(args: argparse.Namespace) -> int:
    with _using(args.url) as cache:
        cache.set("cachekit:ping", "pong", timeout=10)
        answer = cache.get("cachekit:ping")
    if answer != "pong":
        raise CommandError(f"{_redact(args.url)} answered but did not keep a value (null backend?)", 1)
    print(f"PONG {_redact(args.url)}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    with _using(args.url) as cache:
        report: dict[str, Any] = {"cache": cache.stats()}
        server_stats: Callable[[], dict[str, Any]] | None = getattr(cache.backend, "server_stats", None)
        if server_stats is not None:
            report["server"] = server_stats()
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        for section, values in report.items():
            print(f"[{section}]")
            for name, value in sorted(values.items()):
                print(f"  {name}: {value}")
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    scope = f"keys with prefix {args.prefix!r}" if args.prefix else "EVERY key"
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("refusing to clear without --yes when not on a terminal", EXIT_NOT_FOUND)
        answer = input(f"Clear {scope} in {_redact(args.url)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing cleared.")
            return EXIT_NOT_FOUND
    with _using(args.url, args.prefix) as cache:
        cache.clear()
    print(f"Cleared {scope} in {_redact(args.url)}.")
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    missing = object()
    with _using(args.url, args.prefix) as cache:
        value = cache.get(args.key, missing)
    if value is missing:
        print(f"(miss) {args.key!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(json.dumps(value, default=repr) if not isinstance(value, str) else value)
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    value = _parse_value(args.value, args.json)
    with _using(args.url, args.prefix) as cache:
        cache.set(args.key, value, timeout=args.timeout)
    print(f"OK {args.key!r}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with _using(args.url, args.prefix) as cache:
        deleted = cache.delete(args.key)
    print(f"{'deleted' if deleted else '(absent)'} {args.key!r}")
    return EXIT_OK if deleted else EXIT_NOT_FOUND


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo needs sessions and middleware, which sit above cachekit; they
    # register it as an entry point so cachekit never imports them.
    from importlib.metadata import entry_points

    found = entry_points(group="cachekit.cli", name="demo")
    if not found:
        raise CommandError("the demo is not installed: pip install cachekit-suite", EXIT_USAGE)
    serve = next(iter(found)).load()
    try:
        serve(host=args.host, port=args.port, url=args.url)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", EXIT_USAGE
        ) from None
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from cachekit.bench import run_cli

    return run_cli(args)


def _timeout(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be seconds or 'none', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``cachekit`` command."""
    parser = argparse.ArgumentParser(prog="cachekit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="serve the demo app (local memory unless --url is given)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument("--url", default=None, help="cache URL (default: $CACHEKIT_URL or locmem://)")
    demo.set_defaults(func=cmd_demo)

    ping = sub.add_parser("ping", help="check that a cache answers")
    ping.add_argument("url", help="cache URL, e.g. redis://127.0.0.1:6379/0")
    ping.set_defaults(func=cmd_ping)

    stats = sub.add_parser("stats", help="show counters and the server's own statistics")
    stats.add_argument("url")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_stats)

    clear = sub.add_parser("clear", help="delete a cache's keys (asks first unless --yes)")
    clear.add_argument("url")
    clear.add_argument("--prefix", help="only keys of the cache with this KEY_PREFIX")
    clear.add_argument("--yes", action="store_true", help="do not ask")
    clear.set_defaults(func=cmd_clear)

    for name, func, helptext in (
        ("get", cmd_get, "print the value under KEY"),
        ("set", cmd_set, "store VALUE under KEY"),
        ("delete", cmd_delete, "delete KEY"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("url")
        command.add_argument("key")
        if name == "set":
            command.add_argument("value")
            command.add_argument("--json", action="store_true", help="parse VALUE as JSON")
            command.add_argument(
                "--timeout", type=_timeout, default=None, help="seconds, or 'none' (default)"
            )
        command.add_argument("--prefix", help="the cache's KEY_PREFIX")
        command.set_defaults(func=func)

    bench = sub.add_parser("bench", help="measure backends: ops/s and latency percentiles")
    bench.add_argument("--backends", default="locmem", help="comma-separated: locmem,redis,memcached")
    bench.add_argument("--url", action="append", default=[], help="URL for a backend (repeatable)")
    bench.add_argument("--operations", type=int, default=20000, help="operations per measurement")
    bench.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    bench.add_argument("--png", dest="png_path", help="write a chart (needs matplotlib)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except ConfigurationError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except CacheKitError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130
    return code
