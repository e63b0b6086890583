"""What every ``cachekit`` subcommand shares: exit codes, the one-line error, opening a cache."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from collections.abc import Iterator

from cachekit.cache import Cache
from cachekit.config import from_url
from cachekit.config import redact_url
from cachekit.exceptions import BackendError

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

URL_HELP = "cache URL: redis://HOST:6379/0, memcached://HOST:11211 (locmem:// only lives in one process)"
LOCAL_ONLY = (
    "{url} lives in this process only, and every cachekit run is a new process: what one run "
    "stores is gone when it exits and the next run sees an empty cache. Use a redis:// or "
    "memcached:// URL (locmem works from Python code)"
)

#: ``command(name, help, func)`` adds a subcommand and returns its parser (``cli.build_parser``).
Register = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


class CommandError(Exception):
    """A failure to report on one line with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


#: ``url`` without its password, for messages.
redact = redact_url


@contextlib.contextmanager
def using(url: str, prefix: str | None = None) -> Iterator[Cache]:
    """Yield a cache that raises on outages; an outage becomes a one-line error. Closed after."""
    cache = from_url(url, on_error="raise", key_prefix=prefix or "")
    try:
        yield cache
    except BackendError as exc:
        raise CommandError(f"cannot use {redact(url)}: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        cache.close()


def shared(url: str) -> str:
    """Refuse a URL whose data dies with this process; return the URL otherwise."""
    if url.split("://", 1)[0].lower() == "locmem":
        raise CommandError(LOCAL_ONLY.format(url=url), EXIT_USAGE)
    return url


def miss(key: str) -> int:
    """Say on stderr that ``key`` is not stored; return the exit code for it."""
    print(f"(miss) {key!r}", file=sys.stderr)
    return EXIT_NOT_FOUND


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return number
