from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sessions.stores.base import BaseStore
from sessions.stores.cache import CacheStore
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import STORES
from tests.sessions.helpers import WallClock
from tests.sessions.helpers import build_store


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, wall_clock: WallClock) -> BaseStore:
    """Every session store in turn; servers start only for the parameters that need one."""
    return build_store(request.param, request, wall_clock)


@pytest.fixture(params=SERVER_STORES)
def server_store(request: pytest.FixtureRequest, wall_clock: WallClock) -> CacheStore:
    """Every server-side store in turn."""
    store = build_store(request.param, request, wall_clock)
    assert isinstance(store, CacheStore)
    return store


@pytest.fixture(params=SERVER_STORES)
def make_server_store(request: pytest.FixtureRequest) -> Callable[..., CacheStore]:
    """Build a server-side store with the given options, on the real clock; each kind in turn."""

    def make(**options: Any) -> CacheStore:
        store = build_store(request.param, request, **options)
        assert isinstance(store, CacheStore)
        return store

    return make
