"""The envelope ``get_or_set``'s options store, and the tag generations it records: pure, no I/O.

Both stampede flows (:mod:`cachekit.stampede` and its async twin) and both tag
modules use these, so sync and async callers of one cache read each other's
entries and counters.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from typing import Generic
from typing import TypeVar

V = TypeVar("V")

#: Prefix of the cache keys holding tag counters.
TAG_KEY_PREFIX = "cachekit.tag:"

#: What an entry records: ``((tag, generation), ...)``, a tuple so it stays immutable.
Generations = tuple[tuple[str, int], ...]


def tag_key(tag: str) -> str:
    """Return the cache key of ``tag``'s counter.

    :raises TypeError: if ``tag`` is not a non-empty ``str``.
    """
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"Cache tags must be non-empty str, got {tag!r}.")
    return TAG_KEY_PREFIX + tag


@dataclass(frozen=True)
class CacheEntry(Generic[V]):
    """A stored value with its freshness deadline, computation time and tag generations."""

    #: The cached value.
    value: V
    #: Wall-clock time after which the value is stale; ``None``: fresh for ever.
    fresh_until: float | None
    #: Seconds the computation took (XFetch's ``delta``).
    delta: float
    #: ``((tag, generation), ...)`` recorded when the value was computed.
    tags: Generations

    def is_fresh(self, now: float) -> bool:
        """Whether the value is still fresh at ``now``."""
        return self.fresh_until is None or now < self.fresh_until

    def refresh_early(self, now: float, beta: float, rand: Callable[[], float] = random.random) -> bool:
        """XFetch: whether a caller at ``now`` should recompute this still-fresh value."""
        if beta <= 0 or self.fresh_until is None or self.delta <= 0:
            return False
        # 1 - random() lies in (0, 1], so the logarithm is finite.
        return now - self.delta * beta * math.log(1.0 - rand()) >= self.fresh_until


# Entries are pickled into shared caches: keep the name they were stored under before this
# module existed, so processes of either version read each other's entries.
CacheEntry.__module__ = "cachekit.stampede"


class EntryOptions:
    """The enveloped options of one ``get_or_set`` call, the timeout already normalized."""

    __slots__ = ("beta", "refresh_ahead", "stale_if_error", "stale_while_revalidate", "tags", "ttl")

    def __init__(
        self,
        ttl: float | None,
        stale_while_revalidate: float,
        stale_if_error: float,
        beta: float,
        tags: tuple[str, ...],
        refresh_ahead: float = 0.0,
    ) -> None:
        self.ttl = ttl
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error
        self.beta = beta
        self.tags = tags
        #: Seconds before expiry from which a hit recomputes in the background (0: off).
        self.refresh_ahead = refresh_ahead


#: True while a background refresh-ahead recomputes (in its thread or task only): the
#: computation then is not the caller's, and ``@memoize``'s ``cache_info()`` does not count it.
REFRESHING: ContextVar[bool] = ContextVar("cachekit_refreshing", default=False)


def refresh_due(entry: CacheEntry[Any], now: float, refresh_ahead: float) -> bool:
    """Whether a fresh ``entry`` is within ``refresh_ahead`` seconds of going stale at ``now``."""
    return refresh_ahead > 0 and entry.fresh_until is not None and entry.fresh_until - now <= refresh_ahead


def stale_within(entry: CacheEntry[Any], now: float, window: float) -> bool:
    """Whether ``entry`` went stale less than ``window`` seconds before ``now``."""
    return entry.fresh_until is not None and now < entry.fresh_until + window


def envelope(
    value: Any,
    *,
    ttl: float | None,
    stale_window: float,
    started: float,
    delta: float,
    generations: Generations,
) -> tuple[CacheEntry[Any], float | None]:
    """The entry to store for ``value`` computed at ``started``, and the backend timeout to keep it."""
    entry = CacheEntry(value, None if ttl is None else started + ttl, delta, generations)
    return entry, None if ttl is None else ttl + stale_window


__all__ = [
    "TAG_KEY_PREFIX",
    "CacheEntry",
    "REFRESHING",
    "EntryOptions",
    "Generations",
    "envelope",
    "refresh_due",
    "stale_within",
    "tag_key",
]
