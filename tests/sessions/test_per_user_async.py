"""Sessions per user on AsyncCacheStore: the tests of ``test_per_user.py`` collected again.

The ``server_store`` and ``make_server_store`` fixtures are replaced by async
stores (local memory, real Redis, real memcached) behind the sync bridge of
``tests/async_bridge.py``, extended here with the per-user calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.async_bridge import LoopThread
from tests.async_bridge import SyncStore
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.test_async_store_conformance import build_async_store
from tests.sessions.test_per_user import *  # noqa: F403 - collected again, on async stores


class PerUserBridge(SyncStore):
    """The bridge plus ``sessions_of``, ``revoke_user`` and ``stats``, each one awaited call."""

    def sessions_of(self, user_id: str | int, current: Any = None) -> Any:
        return self._loop.run(self.async_store.sessions_of(user_id, current))

    def revoke_user(self, user_id: str | int, keep: Any = None) -> int:
        return self._loop.run(self.async_store.revoke_user(user_id, keep))  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        return self.async_store.stats()  # type: ignore[no-any-return]


def bridged(kind: str, request: pytest.FixtureRequest, loop: LoopThread, **options: Any) -> PerUserBridge:
    return PerUserBridge(build_async_store(kind, request, loop, **options).async_store, loop)


@pytest.fixture(params=[f"{kind}-async" for kind in SERVER_STORES])
def server_store(
    request: pytest.FixtureRequest, wall_clock: WallClock, bridge_loop: LoopThread
) -> PerUserBridge:
    return bridged(request.param.removesuffix("-async"), request, bridge_loop, clock=wall_clock)


@pytest.fixture(params=[f"{kind}-async" for kind in SERVER_STORES])
def make_server_store(
    request: pytest.FixtureRequest, bridge_loop: LoopThread
) -> Callable[..., PerUserBridge]:
    return lambda **options: bridged(request.param.removesuffix("-async"), request, bridge_loop, **options)
