"""The ``cachekit`` command: run the demo, inspect, purge and benchmark caches.

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
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

from cachekit import __version__
from cachekit._cli_inspect import describe
from cachekit._cli_inspect import remaining_ttl
from cachekit._cli_stats import format_stats
from cachekit.cache import Cache
from cachekit.config import _redact
from cachekit.config import from_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import CacheKitError
from cachekit.exceptions import ConfigurationError

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

DESCRIPTION = "Run the cachekit demo; inspect, purge and benchmark caches."
EPILOG = (
    "Exit codes: 0 success, 1 nothing found or declined, 2 bad usage or configuration, "
    "3 server unreachable. Run 'cachekit COMMAND --help' for a command's options."
)
URL_HELP = "cache URL: redis://HOST:6379/0, memcached://HOST:11211 (locmem:// only lives in one process)"
LOCAL_ONLY = (
    "{url} lives in this process only, and every cachekit run is a new process: what one run "
    "stores is gone when it exits and the next run sees an empty cache. Use a redis:// or "
    "memcached:// URL (locmem works from Python code)"
)


class CommandError(Exception):
    """A failure to report on one line with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (plus where to find help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


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


def _shared(url: str) -> str:
    """Refuse a URL whose data dies with this process; return the URL otherwise."""
    if url.split("://", 1)[0].lower() == "locmem":
        raise CommandError(LOCAL_ONLY.format(url=url), EXIT_USAGE)
    return url


def _parse_value(text: str, as_json: bool) -> Any:
    if not as_json:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"VALUE is not valid JSON: {exc}", EXIT_USAGE) from None


def _miss(key: str) -> int:
    print(f"(miss) {key!r}", file=sys.stderr)
    return EXIT_NOT_FOUND


def cmd_ping(args: argparse.Namespace) -> int:
    with _using(args.url) as cache:
        cache.set("cachekit:ping", "pong", timeout=10)
        answer = cache.get("cachekit:ping")
    if answer != "pong":
        raise CommandError(f"{_redact(args.url)} answered but did not keep a value (null backend?)", 1)
    print(f"PONG {_redact(args.url)}")
    return EXIT_OK


def _print_raw(values: Mapping[str, Any], indent: str) -> None:
    """Print ``name: value`` lines, one level of indentation per nested mapping (a node, a Redis db)."""
    for name, value in sorted(values.items(), key=lambda item: str(item[0])):
        if isinstance(value, Mapping):
            print(f"{indent}{name}:")
            _print_raw(value, indent + "  ")
        else:
            print(f"{indent}{name}: {value}")


def cmd_stats(args: argparse.Namespace) -> int:
    with _using(_shared(args.url)) as cache:
        server_stats: Callable[[], dict[str, Any]] | None = getattr(cache.backend, "server_stats", None)
        server = server_stats() if server_stats is not None else {}
        report: dict[str, Any] = {"cache": cache.stats(), "server": server}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    elif args.raw:
        for section, values in report.items():
            print(f"[{section}]")
            _print_raw(values, "  ")
    else:
        print(format_stats(_redact(args.url), report["server"], report["cache"]))
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    _shared(args.url)
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
    with _using(_shared(args.url), args.prefix) as cache:
        value = cache.get(args.key, missing)
    if value is missing:
        return _miss(args.key)
    print(json.dumps(value, default=repr) if not isinstance(value, str) else value)
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    value = _parse_value(args.value, args.json)
    with _using(_shared(args.url), args.prefix) as cache:
        cache.set(args.key, value, timeout=args.timeout)
    print(f"OK {args.key!r}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with _using(_shared(args.url), args.prefix) as cache:
        deleted = cache.delete(args.key)
    if not deleted:
        return _miss(args.key)
    print(f"deleted {args.key!r}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    with _using(_shared(args.url), args.prefix) as cache:
        facts = describe(cache, args.key)
    if facts is None:
        return _miss(args.key)
    width = max(len(name) for name in facts)
    for name, value in facts.items():
        print(f"{name:<{width}}  {value}")
    return EXIT_OK


def cmd_ttl(args: argparse.Namespace) -> int:
    with _using(_shared(args.url), args.prefix) as cache:
        ttl = remaining_ttl(cache, args.key)
    if ttl is None:
        return _miss(args.key)
    print(ttl)
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.page_urls and not args.tags:
        raise CommandError("nothing to purge: give page URLs and/or --tag NAME", EXIT_USAGE)
    from cachekit.views import purge

    found = 0
    with _using(_shared(args.url), args.prefix) as cache:
        for page in args.page_urls:
            try:
                cached = purge(
                    page, cache=cache, key_prefix=args.page_prefix, normalize_query=args.normalize_query
                )
            except ValueError as exc:
                raise CommandError(f"{page!r}: {exc}", EXIT_USAGE) from None
            found += cached
            print(f"{'purged' if cached else '(miss)'} {page}")
        if args.tags:
            cache.invalidate_tags(*args.tags)
            print(f"invalidated tag{'s' if len(args.tags) > 1 else ''} {', '.join(args.tags)}")
    return EXIT_OK if found or args.tags else EXIT_NOT_FOUND


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


def cmd_check(args: argparse.Namespace) -> int:
    from cachekit.check import run_cli

    return run_cli(args)


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


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``cachekit`` command."""
    parser = _Parser(prog="cachekit", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"cachekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, helptext: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        made.set_defaults(func=func)
        return made

    demo = command("demo", "serve the demo app (local memory unless --url is given)", cmd_demo)
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument(
        "--url",
        default=None,
        help="cache URL, e.g. redis://127.0.0.1:6379/0 (default: $CACHEKIT_URL or locmem://)",
    )

    ping = command("ping", "check that a cache answers", cmd_ping)
    ping.add_argument("url", metavar="URL", help=URL_HELP)

    stats = command("stats", "show hit ratio, memory, evictions, connections and breaker state", cmd_stats)
    stats.add_argument("url", metavar="URL", help=URL_HELP)
    shape = stats.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print everything as JSON")
    shape.add_argument("--raw", action="store_true", help="print every counter the server reports")

    clear = command("clear", "delete a cache's keys (asks first unless --yes)", cmd_clear)
    clear.add_argument("url", metavar="URL", help=URL_HELP)
    clear.add_argument("--prefix", help="only keys of the cache with this KEY_PREFIX")
    clear.add_argument("--yes", action="store_true", help="do not ask")

    keyed = (
        ("get", "print the value under KEY", cmd_get),
        ("set", "store VALUE under KEY", cmd_set),
        ("delete", "delete KEY", cmd_delete),
        ("inspect", "show KEY's type, stored size and remaining time to live", cmd_inspect),
        ("ttl", "print KEY's remaining time to live in seconds ('none': never expires)", cmd_ttl),
    )
    for name, helptext, func in keyed:
        keyed_command = command(name, helptext, func)
        keyed_command.add_argument("url", metavar="URL", help=URL_HELP)
        keyed_command.add_argument(
            "key", metavar="KEY", help="the key, as the application names it (without KEY_PREFIX)"
        )
        if name == "set":
            keyed_command.add_argument(
                "value", metavar="VALUE", help="the value to store (a string, or JSON with --json)"
            )
            keyed_command.add_argument("--json", action="store_true", help="parse VALUE as JSON")
            keyed_command.add_argument(
                "--timeout", type=_timeout, default=None, help="seconds, or 'none' to never expire (default)"
            )
        keyed_command.add_argument("--prefix", help="the cache's KEY_PREFIX (default none)")

    purge = command("purge", "remove cached pages by URL and invalidate tags", cmd_purge)
    purge.add_argument("url", metavar="URL", help=URL_HELP)
    purge.add_argument(
        "page_urls",
        nargs="*",
        metavar="PAGE_URL",
        help="absolute URL of a cached page, e.g. http://example.com/",
    )
    purge.add_argument(
        "--tag",
        dest="tags",
        metavar="NAME",
        action="append",
        default=[],
        help="invalidate this tag (repeatable)",
    )
    purge.add_argument("--prefix", help="the cache's KEY_PREFIX (default none)")
    purge.add_argument("--page-prefix", default=None, help="the page cache's key_prefix (default none)")
    purge.add_argument(
        "--normalize-query", action="store_true", help="the pages were cached with normalize_query=True"
    )

    from cachekit.check import add_arguments as add_check_arguments

    check = command("check", "report unsafe compositions of caches, sessions and proxies", cmd_check)
    add_check_arguments(check)

    bench = command("bench", "measure backends: ops/s and latency percentiles", cmd_bench)
    bench.add_argument(
        "--backends", default="locmem", help="comma-separated: locmem,redis,memcached (default locmem)"
    )
    bench.add_argument(
        "--url", action="append", default=[], help="URL for a backend, e.g. redis://HOST:6379/0 (repeatable)"
    )
    bench.add_argument(
        "--operations", type=_positive, default=20000, help="operations per measurement (default 20000)"
    )
    bench.add_argument("--json", dest="json_path", metavar="FILE", help="write the results as JSON to FILE")
    bench.add_argument(
        "--png", dest="png_path", metavar="FILE", help="write a chart to FILE (needs matplotlib)"
    )
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
