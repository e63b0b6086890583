"""cachekit.contrib.beaker.CachekitNamespaceManager keeps Beaker's NamespaceManager contract.

Scenarios run on Beaker's own managers (memory, and ext:redis on a real server)
and on ours over local memory, real Redis and real memcached.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

pytest.importorskip("beaker")

from beaker.cache import Cache as BeakerCache

from cachekit.contrib.beaker import CachekitNamespaceManager
from tests.servers import ServerProcess

# Beaker's redis manager calls redis-py's deprecated setex.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")

PEERS = ["beaker-memory", "beaker-redis"]
OURS = ["locmem", "redis", "memcached"]
_names = itertools.count()


def cache_options(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments for ``beaker.cache.Cache(namespace, **options)``."""
    if kind == "beaker-memory":
        return {"type": "memory"}
    if kind == "beaker-redis":
        server: ServerProcess = request.getfixturevalue("redis_server")
        return {"type": "ext:redis", "url": f"redis://{server.address}/5"}
    if kind == "locmem":
        return {"type": "cachekit", "url": f"locmem://beaker-{next(_names)}"}
    server = request.getfixturevalue(f"{kind}_server")
    return {"type": "cachekit", "url": f"{kind}://{server.address}"}


@pytest.fixture(params=PEERS + OURS)
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return cache_options(str(request.param), request)


@pytest.fixture(params=OURS)
def ours(request: pytest.FixtureRequest) -> dict[str, Any]:
    return cache_options(str(request.param), request)


def fresh_namespace() -> str:
    return f"tests.beaker:ns{next(_names)}-{time.monotonic_ns()}"


def test_the_type_is_registered() -> None:
    cache = BeakerCache(fresh_namespace(), type="cachekit", url="locmem://beaker-registered")
    assert isinstance(cache.namespace, CachekitNamespaceManager)


def test_get_with_createfunc_creates_once(options: dict[str, Any]) -> None:
    cache = BeakerCache(fresh_namespace(), **options)
    calls: list[int] = []

    def create() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert cache.get("k", createfunc=create) == {"n": 1}
    assert cache.get("k", createfunc=create) == {"n": 1}
    assert calls == [1]
    cache.put("other", (1, "two"))
    assert cache.get("other") == (1, "two")
    assert "other" in cache
    cache.remove_value("other")
    assert "other" not in cache


def test_clear_removes_only_its_namespace(options: dict[str, Any]) -> None:
    one = BeakerCache(fresh_namespace(), **options)
    two = BeakerCache(fresh_namespace(), **options)
    one.put("k", "one")
    two.put("k", "two")
    one.clear()
    assert "k" not in one
    assert two.get("k") == "two"
    two.clear()


def test_clear_spares_a_namespace_whose_name_extends_this_one(ours: dict[str, Any]) -> None:
    # Beaker's memory manager gets this right; its redis manager's KEYS "ns:*" also
    # deletes the keys of namespace "ns:1". Ours quotes the namespace in the prefix.
    name = fresh_namespace()
    one = BeakerCache(name, **ours)
    child = BeakerCache(name + ":1", **ours)
    one.put("1:k", "one")
    child.put("k", "child")
    one.clear()
    assert "1:k" not in one
    assert child.get("k") == "child"
    child.clear()


def test_entries_expire(options: dict[str, Any]) -> None:
    cache = BeakerCache(fresh_namespace(), expire=1, **options)
    calls: list[int] = []

    def create() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", createfunc=create) == 1
    time.sleep(1.1)
    assert cache.get("k", createfunc=create) == 2


def test_concurrent_creators_create_once(options: dict[str, Any]) -> None:
    name = fresh_namespace()
    calls: list[int] = []
    guard = threading.Lock()
    results: list[Any] = []

    def create() -> str:
        with guard:
            calls.append(1)
        time.sleep(0.3)
        return "made"

    def worker() -> None:
        results.append(BeakerCache(name, **options).get("k", createfunc=create))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["made"] * 4
    assert calls == [1]


# -- ours: the parts of the contract Beaker's managers differ on --------------------------


def test_str_and_utf8_bytes_keys_are_one_entry(ours: dict[str, Any]) -> None:
    manager = CachekitNamespaceManager(fresh_namespace(), url=ours["url"])
    manager["clé"] = 1
    assert manager["clé".encode()] == 1
    assert "clé".encode() in manager
    manager[b"spaced key"] = 2
    assert manager["spaced key"] == 2
    del manager["clé".encode()]
    assert "clé" not in manager
    with pytest.raises(KeyError):
        manager["clé"]


def test_long_keys_are_hashed_not_refused(ours: dict[str, Any]) -> None:
    manager = CachekitNamespaceManager(fresh_namespace(), url=ours["url"])
    key = "k" * 400
    manager[key] = "long"
    assert manager[key] == "long"


def test_backend_ttl_follows_expiretime(ours: dict[str, Any]) -> None:
    manager = CachekitNamespaceManager(fresh_namespace(), url=ours["url"])
    manager.set_value("k", "v", expiretime=1)
    assert manager["k"] == "v"
    deadline = time.monotonic() + 4  # memcached rounds TTLs up to whole seconds, plus one
    while "k" in manager and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "k" not in manager


def test_timeout_option_applies_without_expiretime(ours: dict[str, Any]) -> None:
    manager = CachekitNamespaceManager(fresh_namespace(), url=ours["url"], timeout="1")
    manager["k"] = "v"
    deadline = time.monotonic() + 4
    while "k" in manager and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "k" not in manager


def test_creation_lock_blocks_other_threads(ours: dict[str, Any]) -> None:
    name = fresh_namespace()
    holder = CachekitNamespaceManager(name, url=ours["url"]).get_creation_lock("k")
    assert holder.acquire()
    seen: list[bool] = []

    def other() -> None:
        lock = CachekitNamespaceManager(name, url=ours["url"]).get_creation_lock(b"k")
        seen.append(lock.acquire(wait=False))
        started = time.monotonic()
        seen.append(lock.acquire())  # blocks until the holder lets go
        seen.append(time.monotonic() - started >= 0.2)
        lock.release()

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.4)
    holder.release()
    thread.join(10)
    assert seen == [False, True, True]


CHILD = """
import sys
from cachekit.contrib.beaker import CachekitNamespaceManager
lock = CachekitNamespaceManager(sys.argv[1], url=sys.argv[2]).get_creation_lock("k")
print(lock.acquire(wait=False))
"""


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_creation_lock_blocks_other_processes(kind: str, request: pytest.FixtureRequest) -> None:
    url = cache_options(kind, request)["url"]
    name = fresh_namespace()
    lock = CachekitNamespaceManager(name, url=url).get_creation_lock("k")

    def child() -> str:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, name, url], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    assert lock.acquire()
    try:
        assert child() == "False"
    finally:
        lock.release()
    assert child() == "True"


def test_an_outage_recreates_the_value_instead_of_failing() -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?socket_timeout=0.3&socket_connect_timeout=0.3"
    cache = BeakerCache(fresh_namespace(), type="cachekit", url=url)
    assert cache.get("k", createfunc=lambda: "made") == "made"
    assert cache.get("k", createfunc=lambda: "again") == "again"
