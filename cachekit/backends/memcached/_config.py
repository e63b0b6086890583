"""The memcached backend's options: defaults, checks, URLs and ``LOCATION`` forms, TTLs.

Private to :mod:`cachekit.backends.memcached`; nothing here does I/O.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cachekit.backends.memcached._pool import Server
from cachekit.backends.memcached._pool import parse_server
from cachekit.exceptions import ConfigurationError

#: memcached's default item size limit (``-I 1m``).
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024
#: Seconds to wait for a reply; a cache must not hang a request for long.
DEFAULT_TIMEOUT = 0.5
#: Seconds to wait for a TCP connection.
DEFAULT_CONNECT_TIMEOUT = 0.25
#: Circuit breaker defaults (as Redis's): this many outages of a node within the window open it.
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_WINDOW = 10.0
DEFAULT_BREAKER_COOLDOWN = 2.0

# memcached's per-item header, CAS and CRLF, plus a margin: counted against max_item_size.
ITEM_OVERHEAD = 80
# TTLs above this many seconds must be sent as absolute Unix times.
_RELATIVE_LIMIT = 30 * 24 * 3600


def expire_time(ttl: float | None, now: Callable[[], float] = time.time) -> int:
    """Turn a backend ``ttl`` into memcached's ``exptime``.

    ``None`` is 0 (never expires); otherwise ``ceil(ttl) + 1`` seconds, so the
    item outlives ``ttl`` on memcached's whole-second clock, sent as an
    absolute Unix time when it is over 30 days.
    """
    if ttl is None:
        return 0
    seconds = math.ceil(ttl) + 1
    if seconds > _RELATIVE_LIMIT:
        return int(now()) + seconds
    return seconds


def check_options(known: Mapping[str, type], options: Mapping[str, Any]) -> None:
    """:raises ConfigurationError: for an option the backend does not take."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(
            f"Unknown option {unknown[0]!r} for MemcachedBackend; known options: {', '.join(sorted(known))}.",
            setting=unknown[0],
        )


OPTIONS: Mapping[str, type] = {
    "connect_timeout": float,
    "socket_timeout": float,
    "max_item_size": int,
    "retry_attempts": int,
    "retry_timeout": float,
    "dead_timeout": float,
    "max_pool_size": int,
    "no_delay": bool,
    "flush_on_clear": bool,
    "generation_ttl": float,
    "breaker_failures": int,
    "breaker_window": float,
    "breaker_cooldown": float,
    # The near cache (cachekit.backends.memcached._near).
    "near_cache": int,
    "near_cache_bytes": int,
    "near_cache_ttl": float,
    "near_cache_channel": str,
}


def check_numbers(
    *,
    connect_timeout: float | None,
    socket_timeout: float | None,
    max_item_size: int,
    retry_attempts: int,
    retry_timeout: float,
    dead_timeout: float,
    generation_ttl: float,
    max_pool_size: int | None,
    breaker_failures: int,
    breaker_window: float,
    breaker_cooldown: float,
) -> None:
    """:raises ConfigurationError: for a numeric option out of its range."""
    for name, value in (("connect_timeout", connect_timeout), ("socket_timeout", socket_timeout)):
        if value is not None and value <= 0:
            raise ConfigurationError(f"{name} must be positive or None, got {value!r}.", setting=name)
    if max_item_size < 1024:
        raise ConfigurationError(
            f"max_item_size must be at least 1024 bytes, got {max_item_size!r}.", setting="max_item_size"
        )
    if retry_attempts < 0:
        raise ConfigurationError(
            f"retry_attempts must be >= 0, got {retry_attempts!r}.", setting="retry_attempts"
        )
    for name, number in (
        ("retry_timeout", retry_timeout),
        ("dead_timeout", dead_timeout),
        ("generation_ttl", generation_ttl),
    ):
        if number < 0:
            raise ConfigurationError(f"{name} must be >= 0, got {number!r}.", setting=name)
    if max_pool_size is not None and max_pool_size < 1:
        raise ConfigurationError(
            f"max_pool_size must be positive or None, got {max_pool_size!r}.", setting="max_pool_size"
        )
    if breaker_failures < 1 or breaker_window <= 0 or breaker_cooldown <= 0:
        raise ConfigurationError(
            "breaker_failures must be >= 1 and breaker_window, breaker_cooldown positive; got "
            f"{breaker_failures!r}, {breaker_window!r}, {breaker_cooldown!r}.",
            setting="breaker_failures",
        )


def servers_from_url(url: str) -> list[Server]:
    """The servers a ``memcached://`` URL names.

    :raises ConfigurationError: for a malformed URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "memcached":
        raise ConfigurationError(f"Not a memcached URL: {url!r}.", setting="url")
    if parts.query:
        raise ConfigurationError(
            f"Pass options as keywords or through cachekit.from_url(), not in {url!r}.", setting="url"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            "memcached URLs take no user or password (pymemcache speaks the text protocol without SASL).",
            setting="url",
        )
    if parts.netloc:
        if parts.path not in ("", "/"):
            raise ConfigurationError(
                f"Unexpected path {parts.path!r} in memcached URL; use memcached:///path/to.sock "
                "for a unix socket.",
                setting="url",
            )
        servers: list[Server] = [parse_server(item) for item in parts.netloc.split(",")]
    elif parts.path not in ("", "/"):
        servers = [parts.path]
    else:
        raise ConfigurationError(
            f"memcached URL {url!r} names no server; e.g. memcached://127.0.0.1:11211.", setting="url"
        )
    return servers


def servers_from_location(location: str | Sequence[str] | None) -> list[Server] | None:
    """The servers a settings ``LOCATION`` (not a URL) names; ``None`` for the default server.

    :raises ConfigurationError: for a ``LOCATION`` of another type.
    """
    if location is None:
        return None
    if isinstance(location, str):
        specs = [item for item in re.split("[;,]", location) if item.strip()]
    elif isinstance(location, Sequence) and all(isinstance(item, str) for item in location):
        specs = list(location)
    else:
        raise ConfigurationError(
            f"LOCATION for memcached must be an address or a list of them, got {location!r}.",
            setting="LOCATION",
        )
    return [parse_server(spec) for spec in specs]
