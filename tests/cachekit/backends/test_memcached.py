"""Memcached-specific behaviour, against real servers started by fixtures.

The shared behaviour is in ``tests/cachekit/test_backend_conformance.py``,
which runs on one server (``memcached``) and a 3-node pool (``memcached-pool``).
Here: URL and ``LOCATION`` parsing, the key mapping, the 30-day boundary,
oversized values, ``clear()`` generations, counters, errors, and the pool's
behaviour when a node dies and comes back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

import cachekit
from cachekit import Cache
from cachekit.backends.base import Backend
from cachekit.backends.base import SupportsCas
from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.memcached import expire_time
from cachekit.backends.memcached import parse_server
from cachekit.backends.memcached._keys import digest as _digest
from cachekit.backends.memcached._keys import safe_key as _safe
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError
from tests import servers
from tests.conftest import require_binary

MIB = 1024 * 1024
THIRTY_DAYS = 30 * 24 * 3600


@contextlib.contextmanager
def raw_client(server: servers.ServerProcess) -> Iterator[Client]:
    """A plain pymemcache client on ``server``, bypassing the backend."""
    client = Client(("127.0.0.1", server.port), default_noreply=False)
    try:
        yield client
    finally:
        client.close()


def server_ttl(backend: MemcachedBackend, key: str) -> int:
    """Ask the server (meta get ``t`` flag) how many seconds ``key`` has left; -1 is never."""
    node, stored = backend._locate(key)
    reply: bytes = node.raw_command(f"mg {stored} t", b"\r\n")
    assert reply.startswith(b"HD "), reply
    return int(reply.split()[1][1:])


@pytest.fixture
def backend(memcached_server: servers.ServerProcess) -> Iterator[MemcachedBackend]:
    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    backend.clear()
    yield backend
    backend.close()


@pytest.fixture
def own_pool() -> Iterator[list[servers.ServerProcess]]:
    """Three servers of this test's own, which it may stop and restart."""
    require_binary("memcached")
    started: list[servers.ServerProcess] = []
    try:
        for _ in range(3):
            started.append(servers.start_memcached())
        yield started
    finally:
        for server in started:
            server.stop()


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("memcached://10.0.0.1:11212", [("10.0.0.1", 11212)], id="host-port"),
        pytest.param("memcached://cachehost", [("cachehost", 11211)], id="default-port"),
        pytest.param("memcached://h1:1,h2:2", [("h1", 1), ("h2", 2)], id="pool"),
        pytest.param("memcached://[::1]:11213,h2", [("::1", 11213), ("h2", 11211)], id="ipv6"),
        pytest.param("memcached:///run/memcached.sock", ["/run/memcached.sock"], id="unix-socket"),
    ],
)
def test_from_url(url: str, expected: list[Any]) -> None:
    assert MemcachedBackend.from_url(url).servers == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("memcached://", id="no-server"),
        pytest.param("memcached://h:notaport", id="bad-port"),
        pytest.param("memcached://h:0", id="port-zero"),
        pytest.param("memcached://h:11211/0", id="path-with-host"),
        pytest.param("memcached://user:pw@h:11211", id="credentials"),
        pytest.param("memcached://h1,,h2", id="empty-host"),
        pytest.param("memcached://::1:11211", id="unbracketed-ipv6"),
        pytest.param("memcached://h:11211?timeout=1", id="query-string"),
        pytest.param("redis://h:6379", id="wrong-scheme"),
    ],
)
def test_from_url_rejects(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MemcachedBackend.from_url(url)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param(None, [("127.0.0.1", 11211)], id="default"),
        pytest.param("h1:1", [("h1", 1)], id="one"),
        pytest.param("h1:1;h2:2", [("h1", 1), ("h2", 2)], id="semicolons"),
        pytest.param("h1:1, h2:2", [("h1", 1), ("h2", 2)], id="commas"),
        pytest.param(["h1:1", "unix:/tmp/mc.sock"], [("h1", 1), "/tmp/mc.sock"], id="list"),
        pytest.param("/tmp/mc.sock", ["/tmp/mc.sock"], id="path"),
        pytest.param("memcached://h1:1,h2:2", [("h1", 1), ("h2", 2)], id="url"),
    ],
)
def test_from_location(location: Any, expected: list[Any]) -> None:
    assert MemcachedBackend.from_location(location).servers == expected


@pytest.mark.parametrize("location", [pytest.param(42, id="int"), pytest.param([1, 2], id="list-of-int")])
def test_from_location_rejects(location: Any) -> None:
    with pytest.raises(ConfigurationError, match="LOCATION"):
        MemcachedBackend.from_location(location)


def test_unknown_option_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        MemcachedBackend.from_url("memcached://h:1", conect_timeout=1.0)
    assert info.value.setting == "conect_timeout"
    with pytest.raises(ConfigurationError):
        MemcachedBackend.from_location("h:1", flush=True)
    with pytest.raises(ConfigurationError, match="retry_atempts"):
        cachekit.from_url("memcached://h:1?retry_atempts=3")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("socket_timeout", 0, id="zero-socket-timeout"),
        pytest.param("connect_timeout", -1.0, id="negative-connect-timeout"),
        pytest.param("max_item_size", 10, id="tiny-item-size"),
        pytest.param("retry_attempts", -1, id="negative-retries"),
        pytest.param("max_pool_size", 0, id="empty-pool"),
        pytest.param("generation_ttl", -1.0, id="negative-generation-ttl"),
    ],
)
def test_bad_option_values(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        MemcachedBackend.from_url("memcached://h:1", **{option: value})
    assert info.value.setting == option


def test_url_options_reach_the_client(memcached_server: servers.ServerProcess) -> None:
    cache = cachekit.from_url(
        f"memcached://{memcached_server.address}?connect_timeout=0.2&socket_timeout=0.7"
        "&max_item_size=2097152&timeout=60"
    )
    assert cache.default_timeout == 60  # the cache's own TIMEOUT, not the socket's
    backend = cache.backend
    assert isinstance(backend, MemcachedBackend)
    assert backend.max_item_size == 2 * MIB
    assert backend._single._options["connect_timeout"] == 0.2
    assert backend._single._options["timeout"] == 0.7
    cache.set("k", "v")
    assert cache.get("k") == "v"


def test_one_server_uses_no_hash_client(memcached_server: servers.ServerProcess) -> None:
    single = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    pool = MemcachedBackend.from_url(f"memcached://{memcached_server.address},127.0.0.1:1")
    assert not isinstance(single._client, HashClient)
    assert isinstance(pool._client, HashClient)
    assert repr(pool) == f"MemcachedBackend(servers=['{memcached_server.address}', '127.0.0.1:1'])"


def test_ready_client(memcached_server: servers.ServerProcess) -> None:
    from pymemcache.client.base import PooledClient

    client = PooledClient(("127.0.0.1", memcached_server.port), default_noreply=False)
    backend = MemcachedBackend(client=client)
    backend.set("k", b"v", None)
    assert backend.get("k") == b"v"
    assert isinstance(backend, Backend)
    assert isinstance(backend, SupportsCas)
    backend.close()


def test_parse_server_ipv6_without_port() -> None:
    assert parse_server("[::1]") == ("::1", 11211)


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        pytest.param("app:1:user", True, id="plain"),
        pytest.param("k" * 241, True, id="fits-250"),
        pytest.param("k" * 242, False, id="251-bytes"),
        pytest.param("with space", False, id="space"),
        pytest.param("tab\t", False, id="tab"),
        pytest.param("del\x7f", False, id="del"),
        pytest.param("nul\x00", False, id="nul"),
        pytest.param("é", False, id="non-ascii"),
        pytest.param("~looks-hashed", False, id="tilde"),
    ],
)
def test_key_mapping(key: str, kept: bool) -> None:
    head = "HEADHEAD:"  # 9 characters, like a generation head without a scope
    stored = _safe(head, key)
    assert stored == (head + key if kept else f"{head}~{_digest(key)}")
    assert len(stored) <= 250
    assert stored.isascii()
    assert stored.isprintable()
    assert " " not in stored


def test_distinct_illegal_keys_do_not_collide(backend: MemcachedBackend) -> None:
    keys = ["a b", "a\tb", "a\nb", "a" * 300, "a" * 299 + "b", "ключ", "~" + _digest("a b")]
    for i, key in enumerate(keys):
        backend.set(key, str(i).encode(), None)
    assert backend.get_many(keys) == {key: str(i).encode() for i, key in enumerate(keys)}
    assert len({backend._locate(key)[1] for key in keys}) == len(keys)


def test_mapping_is_deterministic_across_backends(memcached_server: servers.ServerProcess) -> None:
    first = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    second = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    first.set("spa ce " + "x" * 300, b"shared", None)
    assert second.get("spa ce " + "x" * 300) == b"shared"


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        pytest.param(None, 0, id="none-is-forever"),
        pytest.param(0.001, 2, id="tiny-never-zero"),
        pytest.param(0.3, 2, id="fraction"),
        pytest.param(1.0, 2, id="one"),
        pytest.param(2.5, 4, id="two-and-a-half"),
        pytest.param(THIRTY_DAYS - 1.0, THIRTY_DAYS, id="last-relative"),
        pytest.param(THIRTY_DAYS, 1_000_000 + THIRTY_DAYS + 1, id="first-absolute"),
        pytest.param(31 * 24 * 3600, 1_000_000 + 31 * 24 * 3600 + 1, id="31-days"),
    ],
)
def test_expire_time(ttl: float | None, expected: int) -> None:
    assert expire_time(ttl, now=lambda: 1_000_000.7) == expected


@pytest.mark.parametrize(
    "ttl",
    [
        pytest.param(THIRTY_DAYS - 1.0, id="last-relative"),
        pytest.param(float(THIRTY_DAYS), id="first-absolute"),
        pytest.param(31 * 24 * 3600.0, id="31-days"),
        pytest.param(400 * 24 * 3600.0, id="400-days"),
    ],
)
def test_thirty_day_boundary_on_the_server(backend: MemcachedBackend, ttl: float) -> None:
    # Sent as a relative number above 30 days, memcached would read a date in 1970: an instant miss.
    backend.set("k", b"v", ttl)
    assert backend.get("k") == b"v"
    assert ttl - 5 <= server_ttl(backend, "k") <= ttl + 2
    assert backend.touch("k", ttl) is True
    assert ttl - 5 <= server_ttl(backend, "k") <= ttl + 2


def test_none_ttl_never_expires_on_the_server(backend: MemcachedBackend) -> None:
    backend.set("k", b"v", None)
    assert server_ttl(backend, "k") == -1


def test_sub_second_ttl_is_not_forever(backend: MemcachedBackend) -> None:
    backend.set("k", b"v", 0.3)
    assert 1 <= server_ttl(backend, "k") <= 2
    deadline = time.monotonic() + 4
    while backend.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.get("k") is None


# -- oversized values -------------------------------------------------------------------


def test_oversized_value_is_refused_and_old_value_deleted(backend: MemcachedBackend) -> None:
    backend.set("big", b"old", None)
    with pytest.raises(BackendError) as info:
        backend.set("big", b"x" * (MIB + 1), None)
    assert not isinstance(info.value, BackendUnavailableError)
    assert "'big'" in str(info.value)
    assert str(MIB + 1) in str(info.value)
    assert backend.get("big") is None


def test_server_refusal_also_deletes_old_value(memcached_server: servers.ServerProcess) -> None:
    # max_item_size says 2 MiB but the server keeps its 1 MiB default: the server refuses.
    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}", max_item_size=2 * MIB)
    backend.set("big", b"old", None)
    with pytest.raises(BackendError, match=r"'big'.*1572864 bytes"):
        backend.set("big", b"x" * (3 * MIB // 2), None)
    assert backend.get("big") is None
    backend.set("small", b"still works", None)
    assert backend.get("small") == b"still works"


def test_item_size_matches_server_option() -> None:
    require_binary("memcached")
    server = servers.start_memcached(extra=["-I", "2m"])
    try:
        backend = MemcachedBackend.from_url(f"memcached://{server.address}", max_item_size=2 * MIB)
        value = b"y" * (3 * MIB // 2)
        backend.set("big", value, None)
        assert backend.get("big") == value
        with pytest.raises(BackendError, match="'bigger'"):
            backend.set("bigger", b"y" * (2 * MIB), None)
        backend.close()
    finally:
        server.stop()


def test_set_many_stores_the_others_and_deletes_oversized(backend: MemcachedBackend) -> None:
    backend.set("big", b"old", None)
    with pytest.raises(BackendError, match="'big'"):
        backend.set_many({"a": b"1", "big": b"x" * (MIB + 10), "b": b"2"}, None)
    assert backend.get_many(["a", "big", "b"]) == {"a": b"1", "b": b"2"}


def test_oversized_add_and_cas_change_nothing(backend: MemcachedBackend) -> None:
    backend.set("k", b"old", None)
    found = backend.gets("k")
    assert found is not None
    with pytest.raises(BackendError, match="'k'"):
        backend.cas("k", b"x" * (MIB + 1), found[1], None)
    with pytest.raises(BackendError, match="'n'"):
        backend.add("n", b"x" * (MIB + 1), None)
    assert backend.get("k") == b"old"
    assert backend.get("n") is None


def test_cache_reports_oversized_value(backend: MemcachedBackend) -> None:
    cache = Cache(backend, key_prefix="app")
    cache.set("page", "old")
    with pytest.raises(BackendError, match="'app:1:page'"):
        cache.set("page", os.urandom(MIB + 100))
    assert cache.get("page") is None


# -- clear() and generations ----------------------------------------------------------------


def test_clear_prefix_leaves_values_on_server_but_unreachable(
    backend: MemcachedBackend, memcached_server: servers.ServerProcess
) -> None:
    backend.set("app:1:a", b"1", None)
    backend.set("other:1:b", b"2", None)
    stored = backend._locate("app:1:a")[1]
    backend.clear("app:")
    assert backend.get("app:1:a") is None
    assert backend.get("other:1:b") == b"2"
    # No delete happened: the old item is still there under its old name, for the LRU to reclaim.
    with raw_client(memcached_server) as raw:
        assert raw.get(stored) == b"1"
    backend.set("app:1:a", b"new", None)
    assert backend.get("app:1:a") == b"new"


@pytest.mark.parametrize(
    ("prefix", "other_survives"),
    [
        pytest.param("app:", True, id="one-scope"),
        pytest.param("app:1:", True, id="inside-a-scope-clears-the-scope"),
        pytest.param("ap", False, id="no-colon-clears-all"),
        pytest.param("", False, id="everything"),
    ],
)
def test_clear_clears_at_least_the_prefix(
    backend: MemcachedBackend, prefix: str, other_survives: bool
) -> None:
    items = {"app:1:a": b"1", "app:2:a": b"2", "other:1:b": b"3", "plain": b"4"}
    backend.set_many(items, None)
    backend.clear(prefix)
    assert [k for k in items if k.startswith(prefix) and backend.get(k) is not None] == []
    assert (backend.get("other:1:b") == b"3") is other_survives


def test_clear_is_seen_by_other_backends(memcached_server: servers.ServerProcess) -> None:
    url = f"memcached://{memcached_server.address}"
    writer = MemcachedBackend.from_url(url)
    strict = MemcachedBackend.from_url(url, generation_ttl=0)
    lazy = MemcachedBackend.from_url(url, generation_ttl=0.2)
    writer.set("app:1:k", b"v", None)
    assert strict.get("app:1:k") == lazy.get("app:1:k") == b"v"
    writer.clear("app:")
    assert strict.get("app:1:k") is None
    deadline = time.monotonic() + 3
    while lazy.get("app:1:k") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lazy.get("app:1:k") is None


def test_lost_generation_key_hides_old_values(
    backend: MemcachedBackend, memcached_server: servers.ServerProcess
) -> None:
    # If memcached evicts a generation, the next one is new: old values never come back.
    strict = MemcachedBackend.from_url(f"memcached://{memcached_server.address}", generation_ttl=0)
    strict.set("app:1:k", b"v", None)
    with raw_client(memcached_server) as raw:
        raw.delete("cachekit.gen:app:")
    assert strict.get("app:1:k") is None


def test_flush_on_clear(memcached_server: servers.ServerProcess) -> None:
    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}", flush_on_clear=True)
    with raw_client(memcached_server) as raw:
        raw.set("foreign", b"x")
        backend.set("app:1:k", b"v", None)
        backend.clear("app:")  # a prefix still uses generations
        assert raw.get("foreign") == b"x"
        backend.clear()
        assert raw.get("foreign") is None
    assert backend.get("app:1:k") is None


def test_cache_clear_spares_other_prefix(backend: MemcachedBackend) -> None:
    mine, theirs = Cache(backend, key_prefix="mine"), Cache(backend, key_prefix="theirs")
    mine.set("k", 1)
    theirs.set("k", 2)
    mine.clear()
    assert (mine.get("k"), theirs.get("k")) == (None, 2)


# -- counters, cas, locks ---------------------------------------------------------------------


def test_decr_stops_at_zero(backend: MemcachedBackend) -> None:
    backend.set("n", b"5", None)
    assert backend.incr("n", -10) == 0
    assert int(backend.get("n") or b"x") == 0


def test_decr_shortening_number_reads_back_through_cache(backend: MemcachedBackend) -> None:
    cache = Cache(backend)
    cache.set("n", 100)
    assert cache.decr("n", 1) == 99
    assert cache.get("n") == 99
    assert cache.incr("n", 1) == 100


@pytest.mark.parametrize("value", [b"abc", b"-5", b"1.5", b""], ids=["text", "negative", "float", "empty"])
def test_incr_non_counter_is_backend_error(backend: MemcachedBackend, value: bytes) -> None:
    backend.set("n", value, None)
    with pytest.raises(BackendError) as info:
        backend.incr("n", 1)
    assert not isinstance(info.value, (MissingKeyError, BackendUnavailableError))


def test_incr_missing_names_key(backend: MemcachedBackend) -> None:
    with pytest.raises(MissingKeyError, match="'absent key'"):
        backend.incr("absent key", -1)


def test_gets_cas_token_is_tied_to_the_value(backend: MemcachedBackend) -> None:
    assert backend.gets("s") is None
    backend.set("s", b"1", None)
    first = backend.gets("s")
    assert first is not None
    assert first[0] == b"1"
    backend.set("s", b"2", None)
    assert backend.cas("s", b"3", first[1], None) is False
    second = backend.gets("s")
    assert second is not None
    assert backend.cas("s", b"3", second[1], 60) is True
    assert backend.get("s") == b"3"
    backend.clear()
    assert backend.cas("s", b"4", second[1], None) is False


def test_lock_and_data_key_of_same_name_are_separate(backend: MemcachedBackend) -> None:
    backend.set("L", b"data", None)
    lock = backend.lock("L", ttl=10)
    assert lock.acquire(blocking=False)
    assert backend.get("L") == b"data"
    assert backend.add("L", b"other", None) is False
    lock.release()
    assert backend.get("L") == b"data"
    assert backend.lock("L", ttl=10).acquire(blocking=False)


def test_lock_context_manager_across_backends(memcached_server: servers.ServerProcess) -> None:
    url = f"memcached://{memcached_server.address}"
    one, two = MemcachedBackend.from_url(url), MemcachedBackend.from_url(url)
    with one.lock("shared", ttl=10):
        assert two.lock("shared", ttl=10).acquire(blocking=False) is False
    assert two.lock("shared", ttl=10).acquire(blocking=False) is True


# -- errors ------------------------------------------------------------------------------------------


def test_unreachable_server_raises_unavailable() -> None:
    backend = MemcachedBackend(servers=[("127.0.0.1", servers.free_port())], connect_timeout=0.2)
    for call in (
        lambda: backend.get("k"),
        lambda: backend.set("k", b"v", None),
        lambda: backend.get_many(["a", "b"]),
        lambda: backend.incr("k", 1),
        lambda: backend.clear(),
        lambda: backend.lock("L", ttl=1).acquire(blocking=False),
    ):
        # After breaker_failures (5) refusals the circuit breaker answers, as fast and as unavailable.
        with pytest.raises(BackendUnavailableError, match="unavailable|Circuit breaker open"):
            call()
    assert backend.breakers()[0].state == "open"


def test_cache_turns_outage_into_misses() -> None:
    cache = Cache(MemcachedBackend(servers=[("127.0.0.1", servers.free_port())]))
    cache.set("k", "v")
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["a"]) == {}
    assert cache.get_or_set("k", lambda: "computed") == "computed"
    assert cache.stats()["errors"] >= 3


def test_server_restart_is_survived() -> None:
    require_binary("memcached")
    server = servers.start_memcached()
    try:
        backend = MemcachedBackend.from_url(f"memcached://{server.address}")
        backend.set("k", b"v", None)
        server.kill()
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        server.start()
        assert backend.get("k") is None  # a fresh server: a miss, on a new connection
        backend.set("k", b"again", None)
        assert backend.get("k") == b"again"
    finally:
        server.stop()


# -- unix socket --------------------------------------------------------------------------------------


@pytest.fixture
def unix_socket_server() -> Iterator[str]:
    require_binary("memcached")
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-memcached-unix-"))
    path = workdir / "memcached.sock"
    argv = [shutil.which("memcached") or "memcached", "-s", str(path), "-U", "0"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
        os.chmod(workdir, 0o777)  # memcached drops to nobody and must create the socket
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, "memcached exited before listening"
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
                break
            assert time.monotonic() < deadline, "memcached did not listen on its unix socket"
            time.sleep(0.02)
        yield str(path)
    finally:
        process.terminate()
        process.wait(5)


def test_unix_socket(unix_socket_server: str) -> None:
    for backend in (
        MemcachedBackend.from_url(f"memcached://{unix_socket_server}"),  # memcached:///tmp/.../memcached.sock
        MemcachedBackend.from_location(f"unix:{unix_socket_server}"),
    ):
        backend.set("k", b"over a socket", None)
        assert backend.get("k") == b"over a socket"
        backend.close()


# -- the pool ------------------------------------------------------------------------------------------


def node_of(backend: MemcachedBackend, key: str) -> Any:
    return backend._node(_safe("", key)).server


def test_pool_spreads_keys_and_get_many_is_one_request_per_node(
    memcached_servers: list[servers.ServerProcess],
) -> None:
    backend = MemcachedBackend.from_url("memcached://" + ",".join(s.address for s in memcached_servers))
    keys = [f"key{i}" for i in range(90)]
    backend.set_many({k: k.encode() for k in keys}, None)
    per_node = {server: sum(1 for k in keys if node_of(backend, k) == server) for server in backend.servers}
    assert all(count >= 10 for count in per_node.values()), per_node
    calls: list[tuple[Any, int]] = []
    for node in backend._client.clients.values():
        original = node.get_many

        def spy(stored: list[str], node: Any = node, original: Any = original) -> Any:
            calls.append((node.server, len(stored)))
            return original(stored)

        node.get_many = spy
    assert backend.get_many(keys) == {k: k.encode() for k in keys}
    assert sorted(calls) == sorted(per_node.items())


def test_consistent_hashing_moves_only_the_lost_nodes_keys(
    memcached_servers: list[servers.ServerProcess],
) -> None:
    addresses = [s.address for s in memcached_servers]
    three = MemcachedBackend.from_url("memcached://" + ",".join(addresses))
    two = MemcachedBackend.from_url("memcached://" + ",".join(addresses[:2]))
    keys = [f"user:{i}" for i in range(300)]
    moved = [k for k in keys if node_of(three, k) != node_of(two, k)]
    assert moved == [k for k in keys if node_of(three, k) == parse_server(addresses[2])]


def pool_cache(pool: list[servers.ServerProcess], **options: Any) -> Cache:
    url = "memcached://" + ",".join(s.address for s in pool)
    backend = MemcachedBackend.from_url(url, connect_timeout=0.2, socket_timeout=0.5, **options)
    return Cache(backend, key_prefix="fault", default_timeout=None)


@pytest.mark.slow
def test_dead_node_turns_only_its_keys_into_misses(own_pool: list[servers.ServerProcess]) -> None:
    cache = pool_cache(own_pool, retry_timeout=0.25, retry_attempts=2, dead_timeout=3600)
    backend = cache.backend
    assert isinstance(backend, MemcachedBackend)
    keys = [f"k{i}" for i in range(300)]
    cache.set_many({k: k for k in keys})
    victim = own_pool[1]
    on_victim = {k for k in keys if node_of(backend, cache.make_key(k)) == ("127.0.0.1", victim.port)}
    assert 0.2 <= len(on_victim) / len(keys) <= 0.47

    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        try:
            while not stop.is_set():
                for key in keys[::7]:
                    cache.get(key)
                cache.get_many(keys[:30])
                cache.set("hot", 1)
        except BaseException as exc:  # any exception reaching the caller fails the test
            errors.append(exc)

    def assert_only_victims_miss() -> None:
        found = cache.get_many(keys)
        assert set(keys) - set(found) == on_victim
        assert {k for k in keys if cache.get(k) is None} == on_victim

    victim.kill()
    assert_only_victims_miss()  # the node is failing: HashClient retries it
    assert node_of(backend, cache.make_key(next(iter(on_victim)))) == ("127.0.0.1", victim.port)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # The load runs through the retries until HashClient takes the node out of the ring.
        deadline = time.monotonic() + 10
        while node_of(backend, cache.make_key(next(iter(on_victim)))) == ("127.0.0.1", victim.port):
            assert time.monotonic() < deadline, "the dead node never left the ring"
            time.sleep(0.05)
        time.sleep(0.2)  # and a little beyond
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert_only_victims_miss()  # out of the ring: its keys hash elsewhere, where they are not stored
    assert cache.stats()["errors"] > 0


@pytest.mark.slow
def test_restarted_node_rejoins(own_pool: list[servers.ServerProcess]) -> None:
    cache = pool_cache(own_pool, retry_timeout=0.05, retry_attempts=1, dead_timeout=0.5)
    backend = cache.backend
    assert isinstance(backend, MemcachedBackend)
    keys = [f"k{i}" for i in range(150)]
    victim = own_pool[2]
    on_victim = {k for k in keys if node_of(backend, cache.make_key(k)) == ("127.0.0.1", victim.port)}
    victim.kill()
    deadline = time.monotonic() + 5
    while node_of(backend, cache.make_key(next(iter(on_victim)))) == ("127.0.0.1", victim.port):
        cache.get(next(iter(on_victim)))  # failures take the node out of the ring
        assert time.monotonic() < deadline, "the dead node never left the ring"
        time.sleep(0.05)
    cache.set_many({k: k for k in keys})
    assert cache.get_many(keys) == {k: k for k in keys}  # all on the two live nodes

    victim.start()
    deadline = time.monotonic() + 10
    while not all(node_of(backend, cache.make_key(k)) == ("127.0.0.1", victim.port) for k in on_victim):
        cache.get(next(iter(on_victim)))  # lookups bring the node back after dead_timeout
        assert time.monotonic() < deadline, "the restarted node never rejoined"
        time.sleep(0.05)
    cache.set_many({k: k for k in keys})
    assert cache.get_many(keys) == {k: k for k in keys}
    with raw_client(victim) as raw:
        assert raw.stats()[b"curr_items"] >= len(on_victim)


def test_get_many_with_all_nodes_down_raises(own_pool: list[servers.ServerProcess]) -> None:
    cache = pool_cache(own_pool)
    backend = cache.backend
    for server in own_pool:
        server.kill()
    with pytest.raises(BackendUnavailableError):
        backend.get_many(["a", "b", "c", "d", "e", "f"])
    assert cache.get_many(["a", "b"]) == {}
