"""Issue 14 item 11: freshness that does not trust the machines' clocks.

A writer whose clock is 20 s slow stores an entry fresh for 15 s; a reader whose
clock is 20 s fast reads it at once. With each machine's own clock the reader
sees it 40 s old and recomputes; with :class:`~cachekit.clock.ServerClock` both
tell the server's time and the entry is fresh. Real Redis and memcached, sync
and async.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import cachekit
from cachekit import aio
from cachekit.clock import ServerClock
from tests import servers

SKEW = 20.0
FRESH = 15.0


def slow() -> float:
    return time.time() - SKEW


def fast() -> float:
    return time.time() + SKEW


@pytest.fixture(params=["redis", "memcached"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    server: servers.ServerProcess = request.getfixturevalue("memcached_server")
    return f"memcached://{server.address}"


def _clock(backend: Any, local: Callable[[], float], follow_server: bool) -> Callable[[], float]:
    return ServerClock(backend, local=local) if follow_server else local


def _sync_recomputed(url: str, follow_server: bool) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    writer = cachekit.from_url(url, key_prefix=prefix)
    writer = writer.replace(clock=_clock(writer.backend, slow, follow_server))
    reader = cachekit.from_url(url, key_prefix=prefix)
    reader = reader.replace(clock=_clock(reader.backend, fast, follow_server))
    computed: list[str] = []

    def compute(who: str) -> Callable[[], str]:
        return lambda: computed.append(who) or who

    assert writer.get_or_set("k", compute("writer"), FRESH, stale_while_revalidate=5) == "writer"
    got = reader.get_or_set("k", compute("reader"), FRESH, stale_while_revalidate=5)
    assert got == computed[-1]
    assert reader.stats()["stale_serves"] == 0
    writer.close()
    reader.close()
    return computed


def test_sync_reader_with_a_fast_clock_keeps_a_fresh_entry(url: str) -> None:
    assert _sync_recomputed(url, follow_server=True) == ["writer"]


def test_sync_without_the_server_clock_the_reader_recomputes_at_once(url: str) -> None:
    # What the issue saw: each machine's own clock; the entry looks 40 s old to the reader.
    assert _sync_recomputed(url, follow_server=False) == ["writer", "reader"]


async def _async_recomputed(url: str, follow_server: bool) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    writer = aio.from_url(url, key_prefix=prefix)
    writer = writer.replace(clock=_clock(writer.backend, slow, follow_server))
    reader = aio.from_url(url, key_prefix=prefix)
    reader = reader.replace(clock=_clock(reader.backend, fast, follow_server))
    computed: list[str] = []

    def compute(who: str) -> Callable[[], str]:
        return lambda: computed.append(who) or who

    assert await writer.get_or_set("k", compute("writer"), FRESH, stale_while_revalidate=5) == "writer"
    got = await reader.get_or_set("k", compute("reader"), FRESH, stale_while_revalidate=5)
    assert got == computed[-1]
    await writer.close()
    await reader.close()
    return computed


@pytest.mark.parametrize("follow_server", [True, False], ids=["server-clock", "own-clocks"])
def test_async_twin(url: str, follow_server: bool) -> None:
    computed = asyncio.run(_async_recomputed(url, follow_server))
    assert computed == (["writer"] if follow_server else ["writer", "reader"])


def test_server_clock_keeps_its_offset_through_an_outage() -> None:
    server = servers.start_redis()
    backend = cachekit.from_url(f"redis://{server.address}/0?socket_timeout=0.2").backend
    clock = ServerClock(backend, local=fast, resync_every=0.01)
    assert abs(clock() - time.time()) < 1.0  # follows the server, not its +20 s local clock
    offset = clock.offset
    server.stop()
    time.sleep(0.02)
    assert abs(clock() - time.time()) < 1.0  # the read failed; the last offset is kept
    assert clock.offset == offset
    backend.close()
