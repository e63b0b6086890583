"""Issue 14 item 12: "one warning per burst" holds when many threads fail at once."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.exceptions import BackendUnavailableError

THREADS = 32


class _Down:
    """A backend whose server is gone: every read raises BackendUnavailableError."""

    calls = 0

    def get(self, key: str) -> bytes | None:
        self.calls += 1
        raise BackendUnavailableError("connection refused during get")


class _AsyncDown:
    calls = 0

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        self.calls += 1
        raise BackendUnavailableError("connection refused during get")


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # Switch threads as often as possible so that an unguarded check-then-set races.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "cachekit.cache"]


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("burst", range(3))
def test_threads_failing_together_log_one_warning(burst: int, caplog: pytest.LogCaptureFixture) -> None:
    backend = _Down()
    cache = Cache(backend)  # type: ignore[arg-type]
    start = threading.Barrier(THREADS)

    def fail_often() -> None:
        start.wait()
        for _ in range(20):
            assert cache.get("k", "miss") == "miss"

    with caplog.at_level(logging.DEBUG, logger="cachekit.cache"):
        threads = [threading.Thread(target=fail_often) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert backend.calls == THREADS * 20
    assert len(_warnings(caplog)) == 1


def test_concurrent_async_failures_log_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    backend = _AsyncDown()
    cache = AsyncCache(backend)  # type: ignore[arg-type]

    async def burst() -> None:
        await asyncio.gather(*(cache.get("k") for _ in range(200)))

    with caplog.at_level(logging.DEBUG, logger="cachekit.cache"):
        asyncio.run(burst())
    assert backend.calls == 200
    assert len(_warnings(caplog)) == 1
