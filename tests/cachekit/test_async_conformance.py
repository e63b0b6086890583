"""The backend and Cache conformance suites, run again on the async API.

Not a copy: the test functions of ``test_backend_conformance.py`` and
``test_cache_conformance.py`` are imported here and collected a second time,
with ``backend_harness`` replaced by ``async_backend_harness`` (see
``tests/conftest.py`` and ``tests/async_bridge.py``). Each test thus drives an
async backend (``cachekit.backends.aio_*``) and an ``AsyncCache`` through a sync
bridge whose every call is one awaited coroutine on a private event loop.
"""

from __future__ import annotations

import pytest

from tests.cachekit.test_backend_conformance import *  # noqa: F403 - collected again, on async backends
from tests.cachekit.test_cache_conformance import *  # noqa: F403 - collected again, through AsyncCache
from tests.conftest import BackendHarness


@pytest.fixture
def backend_harness(async_backend_harness: BackendHarness) -> BackendHarness:
    """Every async backend in turn, in place of the sync ones for the imported tests."""
    return async_backend_harness
