"""``cachekit clear``: delete a cache's keys, asking first."""

from __future__ import annotations

import argparse
import sys

from cachekit.ops.common import EXIT_NOT_FOUND
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import redact
from cachekit.ops.common import shared
from cachekit.ops.common import using


def cmd_clear(args: argparse.Namespace) -> int:
    """Run ``cachekit clear``."""
    shared(args.url)
    scope = f"keys with prefix {args.prefix!r}" if args.prefix else "EVERY key"
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("refusing to clear without --yes when not on a terminal", EXIT_NOT_FOUND)
        answer = input(f"Clear {scope} in {redact(args.url)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing cleared.")
            return EXIT_NOT_FOUND
    with using(args.url, args.prefix) as cache:
        cache.clear()
    print(f"Cleared {scope} in {redact(args.url)}.")
    return EXIT_OK


def register(command: Register) -> None:
    """Add ``cachekit clear`` to the parser."""
    clear = command("clear", "delete a cache's keys (asks first unless --yes)", cmd_clear)
    clear.add_argument("url", metavar="URL", help=URL_HELP)
    clear.add_argument("--prefix", help="only keys of the cache with this KEY_PREFIX")
    clear.add_argument("--yes", action="store_true", help="do not ask")
