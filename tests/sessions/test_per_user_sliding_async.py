"""Sliding sessions with an owner on AsyncCacheStore: the store tests of ``test_per_user_sliding.py`` again.

The ``server_store`` fixture is replaced by async stores (local memory, real
Redis, real memcached) behind the sync bridge of ``tests/async_bridge.py``,
with what those tests read of a store besides the Store protocol.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.async_bridge import LoopThread
from tests.async_bridge import SyncCache
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.test_per_user_async import PerUserBridge
from tests.sessions.test_per_user_async import bridged
from tests.sessions.test_per_user_sliding import test_a_new_owner_is_always_entered  # noqa: F401
from tests.sessions.test_per_user_sliding import (  # noqa: F401
    test_a_record_without_indexed_until_is_entered_at_its_next_save,
)
from tests.sessions.test_per_user_sliding import test_a_slide_within_the_headroom_leaves_the_index_alone  # noqa: F401
from tests.sessions.test_per_user_sliding import (  # noqa: F401
    test_a_sliding_session_outliving_its_first_entry_is_still_listed_and_revoked,
)
from tests.sessions.test_per_user_sliding import test_two_racing_requests_of_a_sliding_session_leave_it_listed  # noqa: F401


class SlidingBridge(PerUserBridge):
    """The per-user bridge plus the store's records cache, key prefix and record encoder."""

    def __init__(self, store: Any, loop: LoopThread) -> None:
        super().__init__(store, loop)
        self.records = SyncCache(store.records, loop)
        self.key_prefix = store.key_prefix

    def _encode(self, state: Any) -> Any:
        return self.async_store._encode(state)


@pytest.fixture(params=[f"{kind}-async" for kind in SERVER_STORES])
def server_store(
    request: pytest.FixtureRequest, wall_clock: WallClock, bridge_loop: LoopThread
) -> SlidingBridge:
    inner = bridged(request.param.removesuffix("-async"), request, bridge_loop, clock=wall_clock)
    return SlidingBridge(inner.async_store, bridge_loop)
