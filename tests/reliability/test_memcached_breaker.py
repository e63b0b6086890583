"""Issue 14 item 10, memcached side: a circuit breaker per server.

A real memcached frozen with ``SIGSTOP`` (connections open, no replies: a hang).
Without a breaker every call pays its socket timeout for as long as the hang
lasts; with one, after ``breaker_failures`` timeouts the calls fail fast (a miss
or a no-op for :class:`Cache`) until the cool-down lets one probe through. In
a pool each node has its own breaker. Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from cachekit import Cache
from cachekit.backends.memcached import MemcachedBackend
from tests import servers
from tests.conftest import require_binary

TIMEOUT = 0.2
COOLDOWN = 1.0
# Scheduling noise on a shared 2-core machine; a socket timeout is 200 ms.
FAST = 0.05


@pytest.fixture
def memcached() -> Iterator[list[servers.ServerProcess]]:
    require_binary("memcached")
    started = [servers.start_memcached() for _ in range(3)]
    yield started
    for server in started:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until the kernel shows it stopped (a signal is delivered asynchronously)."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop")


def _latencies(cache: Cache, count: int) -> list[float]:
    spent = []
    for number in range(count):
        start = time.monotonic()
        assert cache.get(f"k{number % 7}", "miss") == "miss"
        spent.append(time.monotonic() - start)
    return spent


def test_hung_server_fails_fast_then_recovers(memcached: list[servers.ServerProcess]) -> None:
    server = memcached[0]
    backend = MemcachedBackend(
        servers=[server.address],
        socket_timeout=TIMEOUT,
        connect_timeout=TIMEOUT,
        breaker_failures=3,
        breaker_cooldown=COOLDOWN,
    )
    cache = Cache(backend, key_prefix="brk")
    cache.set("kept", "v")
    freeze(server.pid)
    try:
        first = _latencies(cache, 3)  # each pays the socket timeout and counts
        assert cache.stats()["breaker_open"] == 1
        open_calls = _latencies(cache, 200)
        stats = cache.stats()
    finally:
        os.kill(server.pid, signal.SIGCONT)
    ordered = sorted(open_calls)
    print(
        f"\nmemcached hang with breaker: first 3 calls {min(first) * 1000:.0f}-{max(first) * 1000:.0f} ms; "
        f"then 200 calls p50 {ordered[100] * 1e6:.0f} us, p99 {ordered[197] * 1e6:.0f} us, "
        f"max {ordered[-1] * 1e6:.0f} us; trips={stats['breaker_trips']} "
        f"rejections={stats['breaker_rejections']}"
    )
    assert min(first) >= TIMEOUT * 0.9
    assert max(open_calls) < FAST
    assert stats["breaker_trips"] == 1
    assert stats["breaker_rejections"] >= 200
    time.sleep(COOLDOWN)
    assert cache.get("kept") == "v"  # the probe reaches the server again and closes the breaker
    assert cache.stats()["breaker_open"] == 0


def test_pool_breakers_are_per_node(memcached: list[servers.ServerProcess]) -> None:
    backend = MemcachedBackend(
        servers=[server.address for server in memcached],
        socket_timeout=TIMEOUT,
        connect_timeout=TIMEOUT,
        breaker_failures=2,
        breaker_cooldown=30.0,
        retry_timeout=0.0,
        dead_timeout=60.0,
    )
    cache = Cache(backend, key_prefix="pool")
    victim = memcached[1]

    def home(key: str) -> str:
        return backend.server_for(cache.make_key(key))

    keys = [f"k{i}" for i in range(60)]
    cache.set_many(dict.fromkeys(keys, "v"))
    on_victim = [key for key in keys if home(key) == victim.address]
    elsewhere = [key for key in keys if key not in on_victim]
    assert on_victim
    assert elsewhere
    freeze(victim.pid)
    try:
        for key in on_victim[:2]:
            assert cache.get(key) is None  # two timeouts open the victim's breaker
        states = {breaker.name: breaker.state for breaker in backend.breakers()}
        start = time.monotonic()
        hits = sum(cache.get(key) == "v" for key in elsewhere)
        misses = sum(cache.get(key) is None for key in on_victim)
        spent = time.monotonic() - start
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    assert states == {
        f"memcached {server.address}": "open" if server is victim else "closed" for server in memcached
    }
    assert (hits, misses) == (len(elsewhere), len(on_victim))
    assert spent < FAST * 4  # no call waited for the hung node
