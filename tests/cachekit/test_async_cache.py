"""AsyncCache behaviour the bridged conformance suites cannot show: concurrency, policy, memoize.

The semantics shared with ``Cache`` are covered by ``test_async_conformance.py``;
here each test runs its own event loop (``asyncio.run``) and checks what only an
async caller sees: one computation across tasks and across processes, waits
that do not block the loop, and the failure policy on a dead server.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.aio import memoize
from cachekit.backends.aio_base import AsyncBackend
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.aio_redis import AsyncRedisBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.memoize import memoize as sync_memoize
from tests import servers
from tests.conftest import FakeClock


@pytest.fixture(params=["locmem", "redis"])
def make_backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], AsyncBackend]]:
    """A factory for the async backend under test, to call inside the test's own loop."""
    if request.param == "locmem":
        location = f"async-{request.node.nodeid}"
        yield lambda: AsyncLocMemBackend(location)
        LocMemBackend(location).clear()
    else:
        url = request.getfixturevalue("redis_url")
        yield lambda: AsyncRedisBackend.from_url(url)  # run() clears the test's prefix


def run(
    factory: Callable[[], AsyncBackend], test: Callable[[AsyncCache], Awaitable[Any]], **options: Any
) -> Any:
    """Run ``test`` on a fresh AsyncCache in a new event loop, then clear and close it."""

    async def main() -> Any:
        cache = AsyncCache(factory(), key_prefix="t", **options)
        await cache.clear()
        try:
            return await test(cache)
        finally:
            await cache.clear()
            await cache.close()

    return asyncio.run(main())


# -- stampede protection ---------------------------------------------------------------


def test_get_or_set_one_computation_across_tasks(make_backend: Callable[[], AsyncBackend]) -> None:
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        return 42

    async def test(cache: AsyncCache) -> list[int]:
        return await asyncio.gather(*(cache.get_or_set("cold", compute) for _ in range(20)))

    assert run(make_backend, test) == [42] * 20
    assert calls == [1]


def test_followers_get_private_copies(make_backend: Callable[[], AsyncBackend]) -> None:
    async def compute() -> dict[str, list[int]]:
        await asyncio.sleep(0.02)
        return {"items": [1]}

    async def test(cache: AsyncCache) -> list[dict[str, list[int]]]:
        return await asyncio.gather(*(cache.get_or_set("k", compute) for _ in range(3)))

    results = run(make_backend, test)
    assert results == [{"items": [1]}] * 3
    assert len({id(r["items"]) for r in results}) == 3


def test_sync_callable_and_plain_value_defaults(make_backend: Callable[[], AsyncBackend]) -> None:
    async def test(cache: AsyncCache) -> tuple[Any, ...]:
        return (
            await cache.get_or_set("a", lambda: "sync"),
            await cache.get_or_set("b", "value"),
            await cache.get_or_set("b", "other"),
        )

    assert run(make_backend, test) == ("sync", "value", "value")


def test_leader_failure_reaches_leader_and_followers_recompute(
    make_backend: Callable[[], AsyncBackend],
) -> None:
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.02)
        if len(calls) == 1:
            raise RuntimeError("first computation fails")
        return "ok"

    async def test(cache: AsyncCache) -> list[Any]:
        return await asyncio.gather(
            *(cache.get_or_set("k", compute) for _ in range(4)), return_exceptions=True
        )

    results = run(make_backend, test)
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == ["ok"] * 3
    assert len(calls) == 2  # the failed one, then one follower under the lock


def test_waiting_does_not_block_the_loop() -> None:
    ticks: list[float] = []

    async def compute() -> int:
        await asyncio.sleep(0.2)
        return 1

    async def ticker() -> None:
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def test(cache: AsyncCache) -> None:
        await asyncio.gather(cache.get_or_set("k", compute), cache.get_or_set("k", compute), ticker())

    run(lambda: AsyncLocMemBackend("async-nonblocking"), test)
    assert max(b - a for a, b in zip(ticks, ticks[1:], strict=False)) < 0.1


def test_async_locmem_lock_waiter_wakes_on_release() -> None:
    async def main() -> float:
        backend = AsyncLocMemBackend("async-lock-wake")
        holder = backend.lock("L", ttl=10)
        assert await holder.acquire(blocking=False)
        waiter = asyncio.ensure_future(backend.lock("L", ttl=10).acquire(timeout=5))
        await asyncio.sleep(0.2)  # the waiter is now between polls of up to 50 ms
        released = time.monotonic()
        await holder.release()
        assert await waiter
        return time.monotonic() - released

    assert asyncio.run(main()) < 0.02


def test_async_and_sync_locmem_share_store_and_locks() -> None:
    sync_backend = LocMemBackend("shared-sync-async")
    sync_backend.set("k", b"from sync", None)

    async def main() -> tuple[Any, bool]:
        backend = AsyncLocMemBackend("shared-sync-async")
        value = await backend.get("k")
        sync_lock = sync_backend.lock("L", ttl=10)
        assert sync_lock.acquire(blocking=False)
        taken = await backend.lock("L", ttl=10).acquire(blocking=False)
        sync_lock.release()
        return value, taken

    assert asyncio.run(main()) == (b"from sync", False)
    sync_backend.clear()


def _compute_in_process(url: str, counter_key: str, start_at: float) -> Any:
    """Child process: one AsyncCache.get_or_set whose computation counts itself in Redis."""
    import redis

    async def main() -> Any:
        cache = AsyncCache(AsyncRedisBackend.from_url(url), key_prefix="xproc")

        async def compute() -> str:
            redis.Redis.from_url(url).incr(counter_key)
            await asyncio.sleep(0.3)
            return "computed"

        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            return await cache.get_or_set("cold", compute)
        finally:
            await cache.close()

    return asyncio.run(main())


def test_get_or_set_one_computation_across_processes(redis_server: servers.ServerProcess) -> None:
    import redis

    url = f"redis://{redis_server.address}/0"
    client = redis.Redis.from_url(url)
    client.delete("xproc-counter")

    async def clear() -> None:
        cache = AsyncCache(AsyncRedisBackend.from_url(url), key_prefix="xproc")
        await cache.clear()
        await cache.close()

    asyncio.run(clear())
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # spawned interpreters need time to import
    with context.Pool(3) as pool:
        results = pool.starmap(_compute_in_process, [(url, "xproc-counter", start_at)] * 3, chunksize=1)
    assert results == ["computed"] * 3
    assert int(client.get("xproc-counter") or 0) == 1
    client.delete("xproc-counter")
    client.close()


# -- enveloped get_or_set: stale-while-revalidate, tags ------------------------------------


def test_stale_while_revalidate_serves_stale_and_refreshes_once() -> None:
    clock = FakeClock(start=10_000.0)
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0.02)
        return len(calls)

    async def test(cache: AsyncCache) -> tuple[int, list[int], int]:
        first = await cache.get_or_set("k", compute, 10, stale_while_revalidate=30)
        clock.advance(15)  # stale, within the window
        during = await asyncio.gather(
            *(cache.get_or_set("k", compute, 10, stale_while_revalidate=30) for _ in range(5))
        )
        after = await cache.get_or_set("k", compute, 10, stale_while_revalidate=30)
        return first, list(during), after

    first, during, after = run(lambda: AsyncLocMemBackend("async-swr"), test, clock=clock)
    assert first == 1
    assert sorted(during) == [1, 1, 1, 1, 2]  # one caller refreshed, the others got the stale value
    assert after == 2
    assert len(calls) == 2


def test_tags_invalidate_entries(make_backend: Callable[[], AsyncBackend]) -> None:
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        return len(calls)

    async def test(cache: AsyncCache) -> tuple[int, int, int]:
        a = await cache.get_or_set("k", compute, 60, tags=["prices"])
        b = await cache.get_or_set("k", compute, 60, tags=["prices"])
        await cache.invalidate_tags("prices")
        c = await cache.get_or_set("k", compute, 60, tags=["prices"])
        return a, b, c

    assert run(make_backend, test) == (1, 1, 2)


# -- memoize ---------------------------------------------------------------------------------


def test_memoize_async_function_once_and_invalidate() -> None:
    calls: list[int] = []

    async def test(cache: AsyncCache) -> tuple[list[int], int, bool]:
        @memoize(60, cache=cache)
        async def square(x: int) -> int:
            calls.append(x)
            await asyncio.sleep(0.02)
            return x * x

        results = await asyncio.gather(*(square(3) for _ in range(5)))
        again = await square(x=3)
        return list(results), again, await square.invalidate(3)

    results, again, invalidated = run(lambda: AsyncLocMemBackend("async-memo"), test)
    assert results == [9] * 5
    assert again == 9
    assert invalidated is True
    assert calls == [3]


def test_memoize_keys_match_sync_memoize() -> None:
    cache = AsyncCache(AsyncLocMemBackend("async-memo-keys"))

    async def price(product: int, currency: str = "EUR") -> int:
        return product

    def sync_price(product: int, currency: str = "EUR") -> int:
        return product

    sync_price.__qualname__ = price.__qualname__
    async_key = memoize(cache=cache)(price).make_key(7)
    sync_key = sync_memoize(cache=Cache(LocMemBackend("async-memo-keys")))(sync_price).make_key(7, "EUR")
    assert async_key == sync_key


def test_memoize_refuses_sync_function() -> None:
    cache = AsyncCache(AsyncLocMemBackend("async-memo-sync"))
    with pytest.raises(TypeError, match="async def"):
        memoize(cache=cache)(lambda: 1)


# -- failure policy and construction -------------------------------------------------------


def _dead_redis() -> AsyncRedisBackend:
    return AsyncRedisBackend.from_url(f"redis://127.0.0.1:{servers.free_port()}/0", retries=0)


def test_outage_is_a_miss_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[Any, Any, dict[str, int | float]]:
        cache = AsyncCache(_dead_redis())
        await cache.set("k", "v")
        value = await cache.get("k", "default")
        computed = await cache.get_or_set("k", lambda: "computed")
        return value, computed, cache.stats()

    with caplog.at_level(logging.WARNING, logger="cachekit.cache"):
        value, computed, stats = asyncio.run(main())
    assert (value, computed) == ("default", "computed")
    assert stats["errors"] >= 3
    assert "serving misses" in caplog.text


def test_outage_raises_when_asked() -> None:
    async def main() -> None:
        await AsyncCache(_dead_redis(), on_error="raise").get("k")

    with pytest.raises(BackendUnavailableError, match="unavailable"):
        asyncio.run(main())


def test_incr_outage_always_raises() -> None:
    async def main() -> None:
        await AsyncCache(_dead_redis()).incr("n")

    with pytest.raises(BackendUnavailableError):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        pytest.param("http://x", {}, "Not a Redis URL", id="scheme"),
        pytest.param("redis://h:6379/0?db=1", {}, "keyword arguments", id="query"),
        pytest.param("redis://h:6379/x", {}, "must be a number", id="db"),
        pytest.param("redis://h:6379/0", {"colour": "red"}, "Unknown option", id="option"),
        pytest.param("redis://h:6379/0", {"socket_timeout": -1.0}, "socket_timeout", id="bad-value"),
        pytest.param("redis+sentinel://h:26379", {}, "service name", id="sentinel-service"),
        pytest.param("redis+cluster://h:7000/3", {}, "only database 0", id="cluster-db"),
    ],
)
def test_redis_url_errors_are_the_sync_backends(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AsyncRedisBackend.from_url(url, **options)


def test_redis_url_forms_and_redacted_repr() -> None:
    backend = AsyncRedisBackend.from_url("rediss://user:s3cret@example.invalid:6390/2", socket_timeout=1.5)
    pool = backend.client.connection_pool
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    assert "SSL" in pool.connection_class.__name__
    assert "s3cret" not in repr(backend)
    unix = AsyncRedisBackend.from_url("unix:///tmp/redis.sock", db=3)
    assert unix.client.connection_pool.connection_kwargs["path"] == "/tmp/redis.sock"


def test_backends_implement_the_async_protocol() -> None:
    assert isinstance(AsyncLocMemBackend("p"), AsyncBackend)
    assert isinstance(AsyncRedisBackend.from_url("redis://127.0.0.1:1/0"), AsyncBackend)


def test_async_from_url_shares_option_rules() -> None:
    import asyncio

    from cachekit import ConfigurationError
    from cachekit.aio import AsyncCache
    from cachekit.aio import from_url as async_from_url

    cache = async_from_url("locmem://async-url?timeout=30&key_prefix=a&max_entries=10")
    assert isinstance(cache, AsyncCache)
    assert (cache.default_timeout, cache.key_prefix) == (30, "a")

    async def scenario() -> object:
        await cache.set("k", {"v": 1})
        return await cache.get("k")

    assert asyncio.run(scenario()) == {"v": 1}
    with pytest.raises(ConfigurationError) as info:
        async_from_url("locmem://?max_entires=3")
    assert info.value.setting == "max_entires"
