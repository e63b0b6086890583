"""Redis-specific behaviour: URLs, round trips, clear(), errors, compare-and-set, fork safety.

The shared behaviour is in ``test_backend_conformance.py``, which runs on
standalone Redis, Sentinel and Cluster; server faults are in ``test_redis_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import cachekit
from cachekit import Cache
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis import redact_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError
from tests import servers
from tests.conftest import BackendHarness

# The session server's other users keep to db 0; these tests flush and reset stats.
DB = 5


@pytest.fixture
def raw(redis_server: servers.ServerProcess) -> Iterator[redis.Redis]:
    with servers.redis_db(redis_server, DB) as client:
        yield client


@pytest.fixture
def backend(redis_server: servers.ServerProcess, raw: redis.Redis) -> Iterator[RedisBackend]:
    backend = RedisBackend.from_url(f"redis://{redis_server.address}/{DB}")
    yield backend
    backend.close()


def pool_kwargs(backend: RedisBackend) -> dict[str, Any]:
    kwargs: dict[str, Any] = backend.client.connection_pool.connection_kwargs
    return kwargs


def dead_port() -> int:
    """A loopback port nothing listens on."""
    port = servers.free_port()
    assert not servers.port_open(port)
    return port


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        pytest.param("redis://10.1.2.3:7000/4", {}, {"host": "10.1.2.3", "port": 7000, "db": 4}, id="redis"),
        pytest.param("redis://h", {}, {"host": "h", "port": 6379, "db": 0}, id="defaults"),
        pytest.param("redis://[::1]:6380/1", {}, {"host": "::1", "port": 6380, "db": 1}, id="ipv6"),
        pytest.param("redis://u:p%40ss@h:1/2", {}, {"username": "u", "password": "p@ss"}, id="userinfo"),
        pytest.param("redis://:pw@h/0", {}, {"username": None, "password": "pw"}, id="password-only"),
        pytest.param("redis://h/1", {"db": 3}, {"db": 3}, id="db-option-wins"),
        pytest.param("unix:///run/redis.sock", {"db": 2}, {"path": "/run/redis.sock", "db": 2}, id="unix"),
        pytest.param(
            "redis://h",
            {"socket_timeout": 0.2, "socket_connect_timeout": 0.1, "health_check_interval": 5.0},
            {"socket_timeout": 0.2, "socket_connect_timeout": 0.1, "health_check_interval": 5.0},
            id="timeouts",
        ),
        pytest.param("redis://h", {"client_name": "web"}, {"client_name": "web"}, id="client-name"),
    ],
)
def test_from_url_connection_parameters(url: str, options: dict[str, Any], expected: dict[str, Any]) -> None:
    kwargs = pool_kwargs(RedisBackend.from_url(url, **options))
    assert {name: kwargs.get(name) for name in expected} == expected


def test_short_timeouts_and_one_retry_by_default() -> None:
    backend = RedisBackend.from_url("redis://h")
    kwargs = pool_kwargs(backend)
    assert kwargs["socket_timeout"] <= 1.0
    assert kwargs["socket_connect_timeout"] <= 1.0
    # redis-py's own retry is off: the backend retries, knowing what each call may repeat.
    assert kwargs["retry"].get_retries() == 0
    assert backend.retries == 1


def test_blocking_pool_bounded_by_default() -> None:
    pool = RedisBackend.from_url("redis://h").client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 100
    assert pool.timeout == 0.5
    pool = RedisBackend.from_url("redis://h", max_connections=7, pool_timeout=0.2).client.connection_pool
    assert (pool.max_connections, pool.timeout) == (7, 0.2)


def test_rediss_uses_tls() -> None:
    pool = RedisBackend.from_url("rediss://h:6380/0", ssl_cert_reqs="none").client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"


def test_max_connections_bounds_the_pool() -> None:
    assert RedisBackend.from_url("redis://h", max_connections=7).client.connection_pool.max_connections == 7


def test_query_options_through_cachekit_from_url(redis_server: servers.ServerProcess) -> None:
    cache = cachekit.from_url(
        f"redis://{redis_server.address}/{DB}?socket_timeout=0.3&max_connections=4&key_prefix=q"
    )
    assert isinstance(cache.backend, RedisBackend)
    assert pool_kwargs(cache.backend)["socket_timeout"] == 0.3
    assert cache.backend.client.connection_pool.max_connections == 4
    cache.set("k", 1)
    assert cache.get("k") == 1


def test_unknown_query_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="socket_timeuot") as info:
        cachekit.from_url("redis://127.0.0.1:1/0?socket_timeuot=1")
    assert info.value.setting == "socket_timeuot"


def test_unknown_keyword_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bogus"):
        RedisBackend.from_url("redis://h", bogus=1)


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        pytest.param("memcached://h", {}, "Not a Redis URL", id="scheme"),
        pytest.param("redis://h:notaport/0", {}, "Bad port", id="port"),
        pytest.param("redis://h/zero", {}, "must be a number", id="db"),
        pytest.param("redis://h?socket_timeout=1", {}, "keyword arguments", id="query"),
        pytest.param("redis://a:1,b:2/0", {}, "several hosts", id="several-hosts"),
        pytest.param("redis+sentinel://h:26379", {}, "service name", id="sentinel-service"),
        pytest.param("redis+cluster://h:7000/3", {}, "only database 0", id="cluster-db"),
        pytest.param("redis://h", {"socket_timeout": 0.0}, "socket_timeout", id="zero-timeout"),
        pytest.param("redis://h", {"retries": -1}, "retries", id="negative-retries"),
        pytest.param("redis://h", {"max_value_size": 2**30}, "max_value_size", id="value-size"),
        pytest.param("redis://h", {"ssl_cert_reqs": "maybe"}, "ssl_cert_reqs", id="cert-reqs"),
        pytest.param("redis://h", {"sentinel_password": "x"}, "sentinel", id="sentinel-option"),
        pytest.param(
            "redis+cluster://h:7000", {"sentinel_password": "x"}, "sentinel", id="sentinel-option-cluster"
        ),
    ],
)
def test_bad_configuration_is_refused(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend.from_url(url, **options)


def test_from_location_forms(redis_server: servers.ServerProcess) -> None:
    assert repr(RedisBackend.from_location(None)) == "RedisBackend('redis://127.0.0.1:6379/0')"
    assert repr(RedisBackend.from_location("h:6390")) == "RedisBackend('redis://h:6390/0')"
    assert repr(RedisBackend.from_location([f"redis://{redis_server.address}/2"])) == (
        f"RedisBackend('redis://{redis_server.address}/2')"
    )
    merged = RedisBackend.from_location(["redis+cluster://a:7000", "redis+cluster://b:7001"])
    assert repr(merged) == "RedisBackend('redis+cluster://a:7000,b:7001')"
    sentinel = RedisBackend.from_location(["redis+sentinel://a:26379/svc/1", "redis+sentinel://b/svc/1"])
    assert repr(sentinel) == "RedisBackend('redis+sentinel://a:26379,b/svc/1')"
    with pytest.raises(ConfigurationError, match="LOCATION"):
        RedisBackend.from_location(["redis://a", "redis://b"])


def test_settings_mapping_builds_redis_cache(redis_server: servers.ServerProcess) -> None:
    cache = cachekit.from_settings(
        {
            "BACKEND": "redis",
            "LOCATION": f"redis://{redis_server.address}/{DB}",
            "KEY_PREFIX": "settings",
            "OPTIONS": {"socket_timeout": 0.4, "flush_db_on_clear": True},
        }
    )
    assert isinstance(cache.backend, RedisBackend)
    assert cache.backend.flush_db_on_clear is True
    assert pool_kwargs(cache.backend)["socket_timeout"] == 0.4


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cr3t-pw@127.0.0.1:1/0",
        "redis+sentinel://:s3cr3t-pw@127.0.0.1:1/svc/0",
        "redis+cluster://u:s3cr3t-pw@127.0.0.1:1",
        "rediss://:s3cr3t-pw@127.0.0.1:1",
    ],
)
def test_password_never_in_repr_or_errors(url: str) -> None:
    backend = RedisBackend.from_url(url, socket_connect_timeout=0.2)
    assert "s3cr3t" not in repr(backend)
    with pytest.raises(BackendUnavailableError) as info:
        backend.get("k")
    assert "s3cr3t" not in str(info.value)
    assert "s3cr3t" not in repr(info.value)


def test_redact_url() -> None:
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert redact_url("redis+sentinel://:p@w@a,b/s") == "redis+sentinel://:***@a,b/s"


def test_wrong_password_is_a_backend_error_without_the_password() -> None:
    server = servers.start_redis(["--requirepass", "right-horse-battery"])
    try:
        good = RedisBackend.from_url(f"redis://:right-horse-battery@{server.address}/0")
        good.set("k", b"v", None)
        assert good.get("k") == b"v"
        bad = RedisBackend.from_url(f"redis://:wrong-staple@{server.address}/0")
        with pytest.raises(BackendError) as info:
            bad.get("k")
        assert not isinstance(info.value, BackendUnavailableError)
        assert "credentials" in str(info.value)
        assert "wrong-staple" not in str(info.value)
        assert "right-horse" not in str(info.value)
    finally:
        server.stop()


def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = servers.start_redis(["--unixsocket", str(socket_path), "--unixsocketperm", "700"])
    try:
        backend = RedisBackend.from_url(f"unix://{socket_path}", db=2)
        backend.set("k", b"over the socket", None)
        assert redis.Redis(unix_socket_path=str(socket_path), db=2).get("k") == b"over the socket"
        assert repr(backend) == f"RedisBackend('unix://{socket_path}?db=2')"
    finally:
        server.stop()


def test_hiredis_parser_is_used_when_installed(backend: RedisBackend) -> None:
    pytest.importorskip("hiredis")
    backend.set("k", b"v", None)
    connection = backend.client.connection_pool.get_connection()
    try:
        assert "Hiredis" in type(connection._parser).__name__
    finally:
        backend.client.connection_pool.release(connection)


def test_client_escape_hatch(redis_server: servers.ServerProcess) -> None:
    client = redis.Redis(servers.HOST, redis_server.port, db=DB)
    backend = RedisBackend(client=client)
    backend.set("k", b"v", None)
    assert client.get("k") == b"v"
    assert backend.client is client
    assert repr(backend) == "RedisBackend('client=Redis')"
    client.close()


# -- round trips (INFO commandstats) ----------------------------------------------------


@pytest.fixture
def warm(backend: RedisBackend) -> RedisBackend:
    """A backend whose connection is open and whose scripts the server has cached."""
    backend.set_many({"warm": b"1"}, ttl=60)
    backend.incr("warm", 1)
    backend.touch("warm", None)
    backend.cas("warm", b"3", b"2", None)
    return backend


ITEMS = {f"key:{i}": f"value-{i}".encode() for i in range(100)}


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        pytest.param(lambda b: b.get("key:1"), {"get": 1}, id="get"),
        pytest.param(lambda b: b.get_many(list(ITEMS)), {"mget": 1}, id="get_many-100"),
        pytest.param(lambda b: b.set("k", b"v", 1.5), {"set": 1}, id="set"),
        pytest.param(lambda b: b.set_many(ITEMS, None), {"mset": 1}, id="set_many-100"),
        # EVALSHA is the one command on the wire; the SETs run inside it on the server.
        pytest.param(lambda b: b.set_many(ITEMS, 60), {"evalsha": 1, "set": 100}, id="set_many-100-ttl"),
        pytest.param(lambda b: b.add("new", b"v", 60), {"set": 1}, id="add"),
        pytest.param(lambda b: b.delete("key:1"), {"unlink": 1}, id="delete"),
        pytest.param(lambda b: b.delete_many(list(ITEMS)), {"unlink": 1}, id="delete_many-100"),
        pytest.param(lambda b: b.incr("n", 2), {"evalsha": 1, "exists": 1, "incrby": 1}, id="incr"),
        pytest.param(lambda b: b.touch("key:1", 9), {"pexpire": 1}, id="touch"),
        pytest.param(
            lambda b: b.touch("key:1", None), {"evalsha": 1, "exists": 1, "persist": 1}, id="persist"
        ),
        pytest.param(lambda b: b.gets("key:1"), {"get": 1}, id="gets"),
        pytest.param(
            lambda b: b.cas("key:1", b"x", b"value-1", 5), {"evalsha": 1, "get": 1, "set": 1}, id="cas"
        ),
    ],
)
def test_one_round_trip(
    warm: RedisBackend,
    raw: redis.Redis,
    operation: Callable[[RedisBackend], object],
    expected: dict[str, int],
) -> None:
    warm.set_many(ITEMS, None)
    warm.set("n", b"1", None)
    assert servers.redis_commands(raw, lambda: operation(warm)) == expected


def test_set_many_ttl_is_applied_to_every_key(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set_many(ITEMS, ttl=60)
    ttls = [raw.pttl(key) for key in ITEMS]
    assert all(59_000 < ttl <= 60_000 for ttl in ttls)
    assert raw.mget(list(ITEMS)) == list(ITEMS.values())


def test_set_many_over_a_batch(backend: RedisBackend, raw: redis.Redis) -> None:
    items = {f"b{i}": str(i).encode() for i in range(2500)}
    backend.set_many(items, ttl=30)
    backend.set_many({f"n{i}": b"x" for i in range(2500)}, ttl=None)
    assert backend.get_many(list(items)) == items
    assert raw.dbsize() == 5000


def test_ttl_has_millisecond_precision(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set("k", b"v", ttl=1.25)
    assert 1150 < raw.pttl("k") <= 1250
    backend.touch("k", 0.75)
    assert 650 < raw.pttl("k") <= 750
    assert backend.add("a", b"v", ttl=0.0004)  # rounds up to 1 ms, never PX 0
    backend.set("gone", b"v", ttl=0.001)
    deadline = time.monotonic() + 2
    while raw.exists("gone") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not raw.exists("gone")


def test_cluster_many_key_calls_group_by_slot(redis_cluster_backend: BackendHarness) -> None:
    backend = redis_cluster_backend.backend
    keys = [f"{{user:7}}:field{i}" for i in range(50)]  # one hash tag: one slot, one node
    node = backend.client.get_node_from_key(keys[0])
    node_client = backend.client.get_redis_connection(node)
    backend.set_many(dict.fromkeys(keys, b"v"), None)
    assert servers.redis_commands(node_client, lambda: backend.get_many(keys)) == {"mget": 1}
    assert servers.redis_commands(node_client, lambda: backend.delete_many(keys)) == {"unlink": 1}


def test_cluster_spreads_keys_and_reads_them_back(redis_cluster_backend: BackendHarness) -> None:
    backend = redis_cluster_backend.backend
    items = {f"spread:{i}": str(i).encode() for i in range(200)}
    backend.set_many(items, ttl=60)
    ports = {backend.client.get_node_from_key(key).port for key in items}
    assert len(ports) == 3
    assert backend.get_many(list(items)) == items


# -- values and integers ----------------------------------------------------------------


def test_ints_from_cache_are_ascii_digits_and_incr_on_server(backend: RedisBackend, raw: redis.Redis) -> None:
    cache = Cache(backend, key_prefix="ints")
    cache.set("n", 41, timeout=60)
    assert raw.get("ints:1:n") == b"41"
    assert cache.incr("n") == 42
    assert cache.decr("n", 2) == 40
    assert 0 < raw.pttl("ints:1:n") <= 60_000  # INCRBY keeps the TTL


def test_incr_missing_does_not_create_the_key(backend: RedisBackend, raw: redis.Redis) -> None:
    with pytest.raises(MissingKeyError):
        backend.incr("nope", 5)
    assert not raw.exists("nope")


def test_incr_overflow_is_a_backend_error(backend: RedisBackend) -> None:
    backend.set("n", str(2**63 - 1).encode(), None)
    with pytest.raises(BackendError, match="overflow"):
        backend.incr("n", 1)


def test_wrong_type_reply_is_a_backend_error(backend: RedisBackend, raw: redis.Redis) -> None:
    raw.lpush("a-list", b"x")
    with pytest.raises(BackendError, match="WRONGTYPE") as info:
        backend.get("a-list")
    assert not isinstance(info.value, BackendUnavailableError)
    assert isinstance(info.value.__cause__, redis.ResponseError)


@pytest.mark.parametrize(
    "store",
    [
        pytest.param(lambda b, v: b.set("big", v, None), id="set"),
        pytest.param(lambda b, v: b.set_many({"ok": b"1", "big": v}, 60), id="set_many"),
        pytest.param(lambda b, v: b.add("big", v, None), id="add"),
        pytest.param(lambda b, v: b.cas("big", v, b"old", None), id="cas"),
    ],
)
def test_values_above_max_value_size_are_refused(
    redis_server: servers.ServerProcess, raw: redis.Redis, store: Callable[[RedisBackend, bytes], object]
) -> None:
    backend = RedisBackend.from_url(f"redis://{redis_server.address}/{DB}", max_value_size=1024)
    backend.set("fits", b"x" * 1024, None)
    with pytest.raises(BackendError, match="max_value_size") as info:
        store(backend, b"x" * 1025)
    assert "1025 bytes" in str(info.value)
    assert not raw.exists("big")
    assert not raw.exists("ok")


# -- clear ------------------------------------------------------------------------------


def test_clear_with_prefix_keeps_other_prefixes(backend: RedisBackend, raw: redis.Redis) -> None:
    raw.set("other:1:a", b"kept")
    raw.set("appx:1:a", b"kept too")
    cache = Cache(backend, key_prefix="app")
    cache.set_many({f"k{i}": i for i in range(2500)})  # several SCAN/UNLINK batches
    cache.clear()
    assert raw.get("other:1:a") == b"kept"
    assert raw.get("appx:1:a") == b"kept too"
    assert raw.dbsize() == 2


def test_clear_prefix_glob_characters_match_literally(backend: RedisBackend, raw: redis.Redis) -> None:
    raw.set("a?c:key", b"kept")
    raw.set("a[b]c:key", b"kept")
    raw.set("a*:key", b"gone")
    backend.set("ab*:key", b"kept", None)
    backend.clear("a*:")
    assert sorted(raw.keys()) == [b"a?c:key", b"a[b]c:key", b"ab*:key"]


def test_clear_never_uses_keys_or_flushdb_by_default(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set_many({"a": b"1", "b": b"2"}, None)
    calls = servers.redis_commands(raw, backend.clear)
    assert "keys" not in calls
    assert "flushdb" not in calls
    assert calls["scan"] >= 1
    assert raw.dbsize() == 0


def test_flush_db_on_clear_only_without_prefix(redis_server: servers.ServerProcess, raw: redis.Redis) -> None:
    backend = RedisBackend.from_url(f"redis://{redis_server.address}/{DB}", flush_db_on_clear=True)
    raw.set("elsewhere", b"1")
    prefixed = Cache(backend, key_prefix="p")
    prefixed.set("k", 1)
    assert "flushdb" not in servers.redis_commands(raw, prefixed.clear)
    assert raw.get("elsewhere") == b"1"
    assert servers.redis_commands(raw, Cache(backend).clear) == {"flushdb": 1}
    assert raw.dbsize() == 0


# -- compare-and-set ---------------------------------------------------------------------


@pytest.fixture(params=["redis", "redis-cluster", "redis-sentinel"])
def any_redis(request: pytest.FixtureRequest) -> RedisBackend:
    harness: BackendHarness = request.getfixturevalue(f"{request.param.replace('-', '_')}_backend")
    backend: RedisBackend = harness.backend
    return backend


def test_cas_stores_when_unchanged(any_redis: RedisBackend) -> None:
    any_redis.set("s", b"one", None)
    found = any_redis.gets("s")
    assert found is not None
    value, token = found
    assert value == b"one"
    assert any_redis.cas("s", b"two", token, 60) is True
    assert any_redis.get("s") == b"two"


def test_cas_fails_when_changed(any_redis: RedisBackend) -> None:
    any_redis.set("s", b"one", None)
    found = any_redis.gets("s")
    assert found is not None
    any_redis.set("s", b"other", None)
    assert any_redis.cas("s", b"two", found[1], None) is False
    assert any_redis.get("s") == b"other"


def test_cas_fails_when_deleted(any_redis: RedisBackend) -> None:
    any_redis.set("s", b"one", None)
    found = any_redis.gets("s")
    assert found is not None
    any_redis.delete("s")
    assert any_redis.cas("s", b"two", found[1], None) is False
    assert any_redis.get("s") is None


def test_gets_missing_is_none(any_redis: RedisBackend) -> None:
    assert any_redis.gets("absent") is None


def test_cas_applies_ttl(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set("s", b"one", None)
    assert backend.cas("s", b"two", b"one", 30)
    assert 29_000 < raw.pttl("s") <= 30_000
    assert backend.cas("s", b"three", b"two", None)
    assert raw.pttl("s") == -1


def test_cas_through_cache_loses_no_update(any_redis: RedisBackend) -> None:
    cache = Cache(any_redis, key_prefix="cas")
    cache.set("doc", {"a": 1})
    first = cache.gets("doc")
    second = cache.gets("doc")
    assert first is not None
    assert second is not None
    assert cache.cas("doc", {**first[0], "b": 2}, first[1]) is True
    assert cache.cas("doc", {**second[0], "c": 3}, second[1]) is False  # must re-read
    again = cache.gets("doc")
    assert again is not None
    assert cache.cas("doc", {**again[0], "c": 3}, again[1]) is True
    assert cache.get("doc") == {"a": 1, "b": 2, "c": 3}


# -- errors ----------------------------------------------------------------------------


OPERATIONS: list[tuple[str, Callable[[RedisBackend], object]]] = [
    ("get", lambda b: b.get("k")),
    ("get_many", lambda b: b.get_many(["a", "b"])),
    ("set", lambda b: b.set("k", b"v", None)),
    ("set_many", lambda b: b.set_many({"a": b"1"}, 5)),
    ("add", lambda b: b.add("k", b"v", 5)),
    ("delete", lambda b: b.delete("k")),
    ("delete_many", lambda b: b.delete_many(["a"])),
    ("incr", lambda b: b.incr("k", 1)),
    ("touch", lambda b: b.touch("k", None)),
    ("clear", lambda b: b.clear("p:")),
    ("gets", lambda b: b.gets("k")),
    ("cas", lambda b: b.cas("k", b"v", b"t", None)),
    ("lock", lambda b: b.lock("L", ttl=5).acquire(blocking=False)),
]


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster", "redis+sentinel"])
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[name for name, _ in OPERATIONS])
def test_unreachable_server_raises_unavailable_never_redis_errors(
    scheme: str, name: str, operation: Callable[[RedisBackend], object]
) -> None:
    path = "/svc/0" if scheme == "redis+sentinel" else ""
    backend = RedisBackend.from_url(f"{scheme}://127.0.0.1:{dead_port()}{path}", socket_connect_timeout=0.2)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="unavailable") as info:
        operation(backend)
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value.__cause__, (redis.RedisError, redis.exceptions.RedisClusterException))


def test_lock_release_when_server_gone_is_unavailable() -> None:
    server = servers.start_redis()
    try:
        backend = RedisBackend.from_url(f"redis://{server.address}/0")
        lock = backend.lock("L", ttl=5)
        assert lock.acquire(blocking=False)
        server.stop()
        with pytest.raises(BackendUnavailableError):
            lock.release()
    finally:
        server.stop()


def test_lock_release_after_expiry_is_silent(backend: RedisBackend) -> None:
    lock = backend.lock("L", ttl=0.05)
    assert lock.acquire(blocking=False)
    other = backend.lock("L", ttl=10)
    assert other.acquire(timeout=2)
    lock.release()  # not ours any more: nothing happens, no error
    lock.release()  # nor twice
    assert backend.lock("L", ttl=10).acquire(blocking=False) is False
    other.release()


def test_cluster_backend_can_be_built_while_cluster_is_down() -> None:
    backend = RedisBackend.from_url(f"redis+cluster://127.0.0.1:{dead_port()}", socket_connect_timeout=0.2)
    cache = Cache(backend)
    assert cache.get("k", "default") == "default"
    assert cache.stats()["errors"] == 1


# -- fork safety -----------------------------------------------------------------------


def test_forked_child_uses_its_own_connections(backend: RedisBackend) -> None:
    backend.set("fork", b"parent", None)
    parent_id = backend.client.client_id()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            ids = sorted({backend.client.client_id() for _ in range(3)})
            values = [backend.get("fork") for _ in range(200)]
            report = {"ids": ids, "ok": all(value == b"parent" for value in values)}
        except BaseException as exc:  # the parent must see any failure
            report = {"error": repr(exc)}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    # The parent keeps using its socket meanwhile: shared sockets would mix up replies.
    parent_values = [backend.get("fork") for _ in range(200)]
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report
    assert report["ok"] is True
    assert parent_id not in report["ids"]
    assert all(value == b"parent" for value in parent_values)
    assert backend.client.client_id() == parent_id  # the parent's pooled connection survived


def test_durable_view_waits_for_replicas(redis_server: servers.ServerProcess) -> None:
    """A server without replicas: a durable write reaches it but is refused as an outage."""
    from cachekit.backends.aio_redis import AsyncRedisBackend

    backend = RedisBackend(host="127.0.0.1", port=redis_server.port)
    durable = backend.durable(1, 0.05)
    with pytest.raises(BackendUnavailableError, match="0 of 1 replicas"):
        durable.add("durable-k", b"v", 60)
    assert backend.get("durable-k") == b"v"  # on the primary, not acknowledged
    token = backend.gets("durable-k")
    assert token is not None
    with pytest.raises(BackendUnavailableError, match="replicas"):
        durable.cas("durable-k", b"w", token[1], 60)
    with pytest.raises(BackendUnavailableError, match="replicas"):
        durable.delete("durable-k")
    assert backend.get("durable-k") is None
    assert backend.add("durable-k", b"v", 60) is True  # the plain backend does not wait
    backend.delete("durable-k")
    with pytest.raises(ConfigurationError):
        backend.durable(0, 1)

    async def scenario() -> None:
        aio = AsyncRedisBackend(host="127.0.0.1", port=redis_server.port).durable(1, 0.05)
        with pytest.raises(BackendUnavailableError, match="0 of 1 replicas"):
            await aio.add("adurable-k", b"v", 60)
        with pytest.raises(BackendUnavailableError, match="replicas"):
            await aio.cas("adurable-k", b"w", b"v", 60)
        await aio.close()

    asyncio.run(scenario())
    assert backend.get("adurable-k") == b"w"
    backend.delete("adurable-k")
