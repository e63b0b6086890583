"""Second red-team review of issue 21's speed changes (since dc5308c): what each shortcut must keep.

Redis ``get_many`` sending its own ``MGET`` on a pooled connection (955d95d, a9cd490),
local memory's CLOCK eviction (df31a5e, a393758), the session owner's fingerprint memo
(7dc304d) and ``Cache.set`` taking the default lifetime unchecked (3183db8). The tests
named ``RT2-n`` pin a defect of the second red-team report (strict xfails until fixed);
the others pin attacks that held and that the suite did not cover yet.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from collections.abc import Sequence
from functools import partial
from typing import Any
from unittest import mock

import pytest
import redis
import redis.asyncio as aioredis

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis._clients import no_retry
from cachekit.backends.redis.asyncio import AsyncRedisBackend
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError
from tests import servers
from tests.faultproxy import FaultProxy

# Other users of the session server keep to db 0; these tests flush their own.
DB = 9


def _location() -> str:
    return f"speed-review-2-{uuid.uuid4().hex}"


@pytest.fixture
def raw(redis_server: servers.ServerProcess) -> Iterator[redis.Redis]:
    with servers.redis_db(redis_server, DB) as client:
        yield client


# -- Redis: get_many's own MGET on the pool ------------------------------------------------------


# RT2-1 (fixed: get_values asks get_many whenever it is not the backend's own): Cache.get_many
# read type(backend).get_values, and __init_subclass__ only rerouted a class that defined
# get_many in its own body, so a get_many patched on the class or the instance, or inherited
# from a mixin, was never called.
@pytest.mark.parametrize("where", ["class", "instance"])
def test_a_patched_backend_get_many_is_still_called(
    where: str, redis_server: servers.ServerProcess, raw: Any
) -> None:
    backend = RedisBackend.from_url(f"redis://{redis_server.address}/{DB}")
    cache = Cache(backend, key_prefix="p")
    cache.set("k", "v")
    target: Any = backend if where == "instance" else RedisBackend
    with mock.patch.object(target, "get_many", side_effect=BackendUnavailableError("down")) as get_many:
        assert cache.get_many(["k"]) == {}  # the outage the test patched in
        assert get_many.called
    backend.close()


def test_a_mixin_get_many_is_called(redis_server: servers.ServerProcess, raw: Any) -> None:
    calls: list[list[str]] = []

    class Logged:
        def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
            calls.append(list(keys))
            found: dict[str, bytes] = super().get_many(keys)  # type: ignore[misc]
            return found

    class LoggedRedis(Logged, RedisBackend):
        pass

    backend = LoggedRedis.from_url(f"redis://{redis_server.address}/{DB}")
    cache = Cache(backend, key_prefix="p")
    cache.set("k", "v")
    assert cache.get_many(["k", "x"]) == {"k": "v"}
    assert calls == [["p:1:k", "p:1:x"]]
    backend.close()


# RT2-2 (fixed: a client with redis-py retries of its own keeps client.mget): a ready-made
# client kept redis-py's own retry policy for every command but MGET, which the direct path
# sent and read on the connection itself, so Retry(...) never ran for it.
def test_a_ready_made_clients_retry_covers_get_many_as_it_covers_get(proxy: FaultProxy, raw: Any) -> None:
    raw.set("p:1:k", b"\xf0v")
    # redis-py's default: Retry(ExponentialWithJitterBackoff, 3) on ConnectionError and TimeoutError.
    client = redis.Redis(servers.HOST, proxy.port, db=DB, socket_timeout=0.2)
    cache = Cache(RedisBackend(client=client), key_prefix="p", on_error="raise")
    assert cache.get("k") == "v"  # connected
    proxy.drop_replies(1)
    assert cache.get("k") == "v"  # redis-py retried the timed-out GET
    proxy.drop_replies(1)
    assert client.mget(["p:1:k"]) == [b"\xf0v"]  # and client.mget, which get_many used to call
    proxy.drop_replies(1)
    assert cache.get_many(["k"]) == {"k": "v"}
    client.close()


def test_a_ready_made_async_clients_retry_covers_get_many_as_it_covers_get(
    proxy: FaultProxy, raw: Any
) -> None:
    raw.set("p:1:k", b"\xf0v")

    async def run() -> list[Any]:
        client = aioredis.Redis(host=servers.HOST, port=proxy.port, db=DB, socket_timeout=0.2)
        cache = AsyncCache(AsyncRedisBackend(client=client), key_prefix="p", on_error="raise")
        seen: list[Any] = [await cache.get("k")]
        proxy.drop_replies(1)
        seen.append(await cache.get("k"))  # redis-py retried the timed-out GET
        proxy.drop_replies(1)
        try:
            seen.append(await cache.get_many(["k"]))
        finally:
            await client.aclose()
        return seen

    assert asyncio.run(run()) == ["v", "v", {"k": "v"}]


def _values(backend: RedisBackend) -> list[Any]:
    return backend.get_values(["a", "b", "c"])


def test_a_partial_mget_reply_never_leaves_its_rest_for_the_next_command(proxy: FaultProxy, raw: Any) -> None:
    # A reply that stops mid-array (the socket times out waiting for the rest), and one whose
    # connection is then cut: the connection must be dropped, never pooled half-read, so each
    # later command on the pool reads its own answer.
    raw.mset({"a": b"1", "b": b"2", "c": b"3"})
    backend = RedisBackend(port=proxy.port, db=DB, socket_timeout=0.2, retries=1)
    assert _values(backend) == [b"1", b"2", b"3"]
    proxy.fake_replies(b"*3\r\n$1\r\nX\r\n")  # one element of three, then nothing
    with pytest.raises(BackendUnavailableError):
        _values(backend)
    for _ in range(3):
        assert backend.get("c") == b"3"
        assert _values(backend) == [b"1", b"2", b"3"]
        assert backend.get("a") == b"1"
    proxy.fake_replies(b"*3\r\n$1\r\nX\r\n$1\r\n")  # cut inside the second element
    cut = threading.Timer(0.05, proxy.cut)
    cut.start()
    assert _values(backend) == [b"1", b"2", b"3"]  # a lost connection: retried on a new one
    cut.join()
    assert proxy.faked == 2
    assert [backend.get(key) for key in "abc"] == [b"1", b"2", b"3"]
    backend.close()


def test_a_cancelled_async_get_many_leaves_no_reply_behind(proxy: FaultProxy, raw: Any) -> None:
    raw.mset({"p:1:a": b"\xf01", "p:1:b": b"\xf02"})

    async def run() -> list[Any]:
        backend = AsyncRedisBackend(port=proxy.port, db=DB, socket_timeout=2.0, max_connections=2)
        cache = AsyncCache(backend, key_prefix="p")
        seen: list[Any] = [await cache.get_many(["a", "b"])]
        for _ in range(3):  # more cancellations than the pool has connections
            proxy.delay(0.3)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(cache.get_many(["a", "b"]), 0.05)
            proxy.delay(0)
            seen += [await cache.get("b"), await cache.get_many(["b", "a"]), await cache.get("a")]
        await asyncio.sleep(0.4)  # the held replies arrive now, on connections already dropped
        seen += [await cache.get("b"), await cache.get_many(["a", "b"])]
        await cache.close()
        return seen

    ab = {"a": "1", "b": "2"}
    assert asyncio.run(run()) == [ab, *["2", ab, "1"] * 3, "2", ab]


def test_the_direct_mget_reads_what_client_mget_reads(redis_server: servers.ServerProcess, raw: Any) -> None:
    # decode_responses and another encoding: the connection's parser decodes the direct
    # MGET's reply as it does client.mget's, and the keys on the wire are the same bytes.
    raw.mset({"a": "é".encode(), "\udcff".encode("utf-8", "surrogatepass"): b"x", "ü": b"y"})
    keys = ["a", "missing", "\udcff", "ü"]
    options: dict[str, Any]
    for options in ({"decode_responses": True, "encoding_errors": "replace"}, {"encoding": "latin-1"}):
        # redis-py's own retries off, as the backend's clients have them: else no direct path.
        client: redis.Redis = redis.Redis(servers.HOST, redis_server.port, db=DB, retry=no_retry(), **options)
        backend = RedisBackend(client=client)
        assert backend._direct is client.connection_pool
        wire = [key.encode("utf-8", "surrogatepass") for key in keys]
        assert backend.get_values(keys) == client.mget(wire)
        assert servers.redis_commands(raw, partial(backend.get_values, keys)) == {"mget": 1}
        client.close()


# -- Cache.set's default lifetime (3183db8) -------------------------------------------------------


# RT2-3 (fixed): default_timeout was a plain attribute; assigned 0 after construction, set()
# handed ttl=0 to the backend (memcached: 1 s, Redis: PX 1) while add/set_many/touch deleted.
# Assigning it is now checked as the constructor checks it.
@pytest.mark.parametrize("bad", [0, -1, 0.0, datetime.timedelta(0)])
def test_a_default_timeout_assigned_zero_is_refused_and_the_old_one_kept(
    memcached_server: servers.ServerProcess, bad: object
) -> None:
    cache = cachekit_from_url(f"memcached://{memcached_server.address}", key_prefix=_location())
    with pytest.raises(ConfigurationError, match="TIMEOUT must be positive"):
        cache.default_timeout = bad  # type: ignore[assignment]
    assert cache.default_timeout == 300
    cache.default_timeout = datetime.timedelta(minutes=2)
    assert cache.default_timeout == 120
    cache.set("k", "new")
    cache.add("a", "v")
    assert (cache.get("a"), cache.get("k")) == ("v", "new")
    cache.close()


def cachekit_from_url(url: str, **options: Any) -> Cache:
    import cachekit

    return cachekit.from_url(url, **options)


@pytest.mark.parametrize("timeout", [0, -1, 0.0, datetime.timedelta(0)])
def test_a_timeout_of_zero_or_less_is_refused_by_every_entry_point(timeout: Any) -> None:
    import cachekit
    from cachekit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="(?i)timeout"):
        cachekit.from_url(f"locmem://{_location()}", timeout=timeout)
    with pytest.raises(ConfigurationError, match="(?i)timeout"):
        cachekit.from_settings({"BACKEND": "locmem", "LOCATION": _location(), "TIMEOUT": timeout})
    with pytest.raises(ConfigurationError, match="(?i)timeout"):
        Cache(cachekit.from_url("null://").backend).replace(default_timeout=timeout)


def test_django_settings_timeout_zero_is_do_not_store_through_the_adapter(
    memcached_server: servers.ServerProcess,
) -> None:
    # Django's TIMEOUT=0 is "expire at once": the adapter keeps it as its own default and hands
    # it to Cache.set as an explicit 0 (a delete), never as the cache's default lifetime.
    pytest.importorskip("django")
    from tests.django_settings import configure_django

    configure_django()
    from cachekit.contrib.django import CacheBackend

    for location in (f"memcached://{memcached_server.address}", _location()):
        cache = CacheBackend(location, {"TIMEOUT": 0, "KEY_PREFIX": _location()})
        cache.set("k", "v", timeout=60)
        cache.set("k", "new")
        cache.set_many({"m": 1})
        assert cache.add("a", "v") is True
        assert (cache.get("k"), cache.get("m"), cache.get("a")) == (None, None, None)


# -- the session owner's fingerprint memo (7dc304d) -----------------------------------------------


class _Folded(str):
    """A str key equal to any other spelling of itself in another case (a case-folding header map's key)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.casefold() == other.casefold()

    def __hash__(self) -> int:
        return hash(self.casefold())


# RT2-4 (fixed: the keys must be exact str too): the memo was looked up by
# tuple(metadata.items()) with only the values' types checked: a str-subclass key that compares
# equal to another key shared its entry, yet serializes apart, so set_user() returned early and
# the owner's listing kept the old metadata.
def test_metadata_keys_that_compare_equal_but_serialize_apart_get_their_own_fingerprints() -> None:
    import hashlib

    import cachekit
    from sessions.serializers import TaggedJSONSerializer
    from sessions.session import Session
    from sessions.state import USER_META_KEY
    from sessions.stores.cache import CacheStore

    store = CacheStore(cachekit.from_url(f"locmem://{_location()}"))
    prints = []
    variants: list[dict[str, Any]] = [{"agent": "UA"}, {_Folded("AGENT"): "UA"}]
    for metadata in variants:
        session = Session(store)
        session.set_user("ada", **metadata)
        prints.append(session.state.data[USER_META_KEY])
        expected = hashlib.sha256(TaggedJSONSerializer().dumps(metadata)).hexdigest()[:16]
        assert prints[-1] == expected, metadata


# -- local memory: CLOCK eviction (df31a5e) and the same-size overwrite (a393758) -----------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _check_store(backend: Any, keep: str | None = None) -> None:
    """The bounds, the byte accounting, and the queue: each live key in it once besides its ghosts."""
    store = backend._store
    data = store.data
    assert len(data) <= backend.max_entries
    if backend.max_bytes is not None:
        assert store.size <= backend.max_bytes
    assert store.size == sum(entry.size for entry in data.values())
    places = collections.Counter(store.order)
    for key, count in places.items():
        assert count - store.ghosts.get(key, 0) == (1 if key in data else 0), key
    assert set(data) <= set(places)
    if keep is not None:
        assert keep in data, f"{keep} evicted by its own write"


def _one_op(backend: Any, rnd: random.Random, keys: list[str], clock: _Clock) -> str | None:
    """One random write, read or clock step; the key a successful write must have kept."""
    key = rnd.choice(keys)
    size = rnd.choice([0, 1, 9, 10, 11, 49, 50, 51, 199, 200, 201])
    ttl = rnd.choice([None, None, 0.5, 2.0])
    op = rnd.randrange(12)
    try:
        if op <= 2:  # overwrites that grow, shrink or keep their size
            backend.set(key, "x" * size, ttl)
            return key
        if op == 3:
            backend.set_many({k: "y" * rnd.choice([1, 10, 60]) for k in rnd.sample(keys, 3)}, ttl)
        elif op == 4:
            return key if backend.add(key, "z" * size, ttl) else None
        elif op == 5:
            backend.set(key, rnd.choice([5, b"9"]), ttl)
            backend.incr(key, rnd.choice([1, 10**30]))
            return key
        elif op == 6:
            backend.delete(key)
        elif op == 7:
            backend.delete_many(rnd.sample(keys, 4))
        elif op == 8:
            backend.clear(prefix=rnd.choice(["", "k1"]))
        elif op == 9:
            token = backend.gets(key)
            if token is not None and backend.cas(key, "c" * size, token[1], ttl):
                return key
        elif op == 10:
            clock.now += rnd.choice([0.3, 1.1])  # expiry, and the once-a-second sweep
        else:
            backend.get(key)
            backend.get_many(rnd.sample(keys, 5))  # reference bits
    except (BackendError, MissingKeyError):
        return None
    return None


@pytest.mark.parametrize("seed", range(24))
def test_clock_eviction_keeps_its_bounds_accounting_and_queue_after_any_sequence(seed: int) -> None:
    rnd = random.Random(seed)
    clock = _Clock()
    backend = LocMemBackend(
        _location(),
        max_entries=rnd.choice([1, 2, 3, 8, 40]),
        max_bytes=rnd.choice([None, 10, 50, 200, 1000]),
        clock=clock,
    )
    keys = [f"k{i}" for i in range(rnd.choice([5, 30, 100]))]
    for _ in range(1500):
        _check_store(backend, _one_op(backend, rnd, keys, clock))
    backend.clear()


def test_clock_eviction_keeps_its_bounds_and_accounting_under_threads() -> None:
    backend = LocMemBackend(_location(), max_entries=16, max_bytes=600)
    clock = _Clock()  # only for _one_op's clock steps; the backend keeps its own clock
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.0

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        keys = [f"k{i}" for i in range(40)]
        try:
            while time.monotonic() < stop:
                _one_op(backend, rnd, keys, clock)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    _check_store(backend)
    backend.clear()
