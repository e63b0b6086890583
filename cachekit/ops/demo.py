"""``cachekit demo``: serve the demo app, which the ``middleware`` package registers."""

from __future__ import annotations

import argparse

from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``cachekit demo``."""
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


def register(command: Register) -> None:
    """Add ``cachekit demo`` to the parser."""
    demo = command("demo", "serve the demo app (local memory unless --url is given)", cmd_demo)
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument(
        "--url",
        default=None,
        help="cache URL, e.g. redis://127.0.0.1:6379/0 (default: $CACHEKIT_URL or locmem://)",
    )
