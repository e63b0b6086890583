"""Build every session store for tests: the conformance suite and the middleware tests share these.

Each store gets its own key prefix, so tests never see each other's sessions,
and a fake wall clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import cachekit
from cachekit.cache import Cache
from sessions.stores.base import BaseStore
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore

#: Every store the conformance suite runs on.
STORES = ["locmem", "redis", "memcached", "signed-cookie"]
#: The stores that keep data on a server and merge concurrent saves.
SERVER_STORES = ["locmem", "redis", "memcached"]
SECRET = "test-secret-key-0123456789abcdef"


class WallClock:
    """A Unix-time clock that moves only when told to; starts at the real time so server TTLs make sense."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def build_cache(kind: str, request: pytest.FixtureRequest) -> Cache:
    """Return a cache of ``kind`` with a key prefix of its own, cleared after the test."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if kind == "locmem":
        cache = cachekit.from_url(f"locmem://{prefix}")
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        cache = cachekit.from_url(f"redis://{server.address}/0", key_prefix=prefix)
    elif kind == "memcached":
        server = request.getfixturevalue("memcached_server")
        cache = cachekit.from_url(f"memcached://{server.address}", key_prefix=prefix)
    else:
        raise ValueError(kind)

    def cleanup() -> None:
        if kind != "memcached":  # memcached cannot clear by prefix; keys are unique anyway
            cache.clear()
        cache.close()

    request.addfinalizer(cleanup)
    return cache


def build_store(
    kind: str, request: pytest.FixtureRequest, clock: Callable[[], float] = time.time, **options: Any
) -> BaseStore:
    """Return a store of ``kind`` (one of :data:`STORES`)."""
    if kind == "signed-cookie":
        return SignedCookieStore([SECRET], clock=clock, **options)
    return CacheStore(build_cache(kind, request), clock=clock, **options)
