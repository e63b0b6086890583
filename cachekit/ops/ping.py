"""``cachekit ping``: check that a cache answers and keeps a value."""

from __future__ import annotations

import argparse

from cachekit.ops.common import EXIT_NOT_FOUND
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import redact
from cachekit.ops.common import using


def cmd_ping(args: argparse.Namespace) -> int:
    """Run ``cachekit ping``."""
    with using(args.url) as cache:
        cache.set("cachekit:ping", "pong", timeout=10)
        answer = cache.get("cachekit:ping")
    if answer != "pong":
        raise CommandError(
            f"{redact(args.url)} answered but did not keep a value (null backend?)", EXIT_NOT_FOUND
        )
    print(f"PONG {redact(args.url)}")
    return EXIT_OK


def register(command: Register) -> None:
    """Add ``cachekit ping`` to the parser."""
    ping = command("ping", "check that a cache answers", cmd_ping)
    ping.add_argument("url", metavar="URL", help=URL_HELP)
