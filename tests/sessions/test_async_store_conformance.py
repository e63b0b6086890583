"""The store conformance suite, run again on AsyncCacheStore (sessions.stores.aio_cache).

Not a copy: the tests of ``test_store_conformance.py`` are imported and
collected a second time with the ``store``, ``server_store`` and
``make_server_store`` fixtures replaced by async stores behind a sync bridge
(:class:`tests.async_bridge.SyncStore`): every load, save and delete a test makes
is one awaited coroutine on a private event loop, against local memory, real
Redis and real memcached. The signed-cookie store is sync and is not run again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cachekit import aio
from sessions.stores.aio_cache import AsyncCacheStore
from tests.async_bridge import LoopThread
from tests.async_bridge import SyncStore
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.test_store_conformance import *  # noqa: F403 - collected again, on async stores


def build_async_store(
    kind: str,
    request: pytest.FixtureRequest,
    loop: LoopThread,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> SyncStore:
    """An AsyncCacheStore of ``kind`` (locmem, redis, memcached) behind the sync bridge."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if kind == "locmem":
        cache = aio.from_url(f"locmem://{prefix}")
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        cache = aio.from_url(f"redis://{server.address}/0", key_prefix=prefix)
    elif kind == "memcached":
        server = request.getfixturevalue("memcached_server")
        cache = aio.from_url(f"memcached://{server.address}", key_prefix=prefix)
    else:
        raise ValueError(kind)

    def cleanup() -> None:
        if kind != "memcached":  # memcached cannot clear by prefix; keys are unique anyway
            loop.run(cache.clear())
        loop.run(cache.close())

    request.addfinalizer(cleanup)
    return SyncStore(AsyncCacheStore(cache, clock=clock, **options), loop)


@pytest.fixture(params=[f"{kind}-async" for kind in SERVER_STORES])
def store(request: pytest.FixtureRequest, wall_clock: WallClock, bridge_loop: LoopThread) -> SyncStore:
    """Every async store in turn, in place of the sync stores for the imported tests."""
    return build_async_store(request.param.removesuffix("-async"), request, bridge_loop, wall_clock)


@pytest.fixture
def server_store(store: SyncStore) -> SyncStore:
    """The async stores are all server-side."""
    return store


@pytest.fixture(params=[f"{kind}-async" for kind in SERVER_STORES])
def make_server_store(request: pytest.FixtureRequest, bridge_loop: LoopThread) -> Callable[..., SyncStore]:
    """Build an async store with the given options, on the real clock."""
    return lambda **options: build_async_store(
        request.param.removesuffix("-async"), request, bridge_loop, **options
    )
