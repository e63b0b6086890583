"""The Redis backends' direct commands: ``GET`` and the scripts' ``EVALSHA`` sent on the pool itself.

For a plain redis-py client (``direct_pool``) the backends send ``get``'s ``GET`` and the
``EVALSHA`` of ``cas`` (and of the write retries' scripts) on a pooled connection, packed
once, as ``get_many``'s ``MGET`` already was. These tests pin that they read what
``client.get`` and the redis-py ``Script`` call read, that ``NOSCRIPT`` (after ``SCRIPT
FLUSH``) falls back to the ``Script`` call, that a cut or partial reply and an async
cancellation leave nothing behind on the pool, and that the round trips are unchanged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any
from unittest import mock

import pytest
import redis
import redis.asyncio as aioredis

from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis import _rules
from cachekit.backends.redis._clients import no_retry
from cachekit.backends.redis.asyncio import AsyncRedisBackend
from cachekit.exceptions import BackendUnavailableError
from tests import servers
from tests.faultproxy import FaultProxy

# The session server's other users keep to db 0; these tests flush db 11.
DB = 11
VALUES = {"a": b"1", "empty": b"", "bin": bytes(range(256)), "\udcff": b"sur", "ü": b"u"}


@pytest.fixture
def raw(redis_server: servers.ServerProcess) -> Iterator[redis.Redis]:
    with servers.redis_db(redis_server, DB) as client:
        yield client


@pytest.fixture
def backend(redis_server: servers.ServerProcess, raw: redis.Redis) -> Iterator[RedisBackend]:
    backend = RedisBackend.from_url(f"redis://{redis_server.address}/{DB}")
    yield backend
    backend.close()


def _no_command_layer() -> Any:
    """Patch redis-py's command layer to fail: a command still answering was sent directly."""
    return mock.patch.multiple(
        redis.Redis, execute_command=mock.Mock(side_effect=AssertionError("redis-py's command layer"))
    )


def _no_async_command_layer() -> Any:
    return mock.patch.multiple(
        aioredis.Redis, execute_command=mock.Mock(side_effect=AssertionError("redis-py's command layer"))
    )


def _wire(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


# -- GET -------------------------------------------------------------------------------------------


def test_get_is_sent_directly_and_reads_what_client_get_reads(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    for key, value in VALUES.items():
        raw.set(_wire(key), value)
    keys = [*VALUES, "missing"]
    with _no_command_layer():
        direct = [backend.get(key) for key in keys]
    assert direct == [raw.get(_wire(key)) for key in keys] == [*VALUES.values(), None]
    assert backend.gets("a") == (b"1", b"1")
    assert servers.redis_commands(raw, partial(backend.get, "a")) == {"get": 1}
    assert servers.redis_commands(raw, partial(backend.get, "missing")) == {"get": 1}


def test_the_direct_get_decodes_as_the_clients_own_get(redis_server: servers.ServerProcess, raw: Any) -> None:
    raw.mset({"a": "é".encode(), _wire("\udcff"): b"x", "ü": b"\xff"})
    options: dict[str, Any]
    for options in ({"decode_responses": True, "encoding_errors": "replace"}, {"encoding": "latin-1"}):
        client: redis.Redis = redis.Redis(servers.HOST, redis_server.port, db=DB, retry=no_retry(), **options)
        backend = RedisBackend(client=client)
        assert backend._direct is client.connection_pool
        for key in ("a", "\udcff", "ü", "missing"):
            assert backend.get(key) == client.get(_wire(key))
        client.close()


def test_without_hiredis_the_connection_packs_get_and_evalsha(
    backend: RedisBackend, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rules, "_pack_command", None)
    backend.set("\udcff", b"old", None)
    raw.script_load(_rules._CAS)  # else the first EVALSHA finds NOSCRIPT and the Script call runs
    with _no_command_layer():
        assert backend.get("\udcff") == b"old"
        assert backend.cas("\udcff", b"new", b"old", 60.0) is True
    assert raw.get(_wire("\udcff")) == b"new"
    assert 0 < raw.pttl(_wire("\udcff")) <= 60_000


def test_a_client_with_its_own_retries_keeps_client_get(
    redis_server: servers.ServerProcess, raw: Any
) -> None:
    raw.set("a", b"1")
    client = redis.Redis(servers.HOST, redis_server.port, db=DB)  # redis-py's default Retry
    backend = RedisBackend(client=client)
    assert backend._direct is None
    with mock.patch.object(client, "get", wraps=client.get) as get:
        assert backend.get("a") == b"1"
    get.assert_called_once_with("a")
    client.close()


def test_a_killed_connection_is_replaced_and_get_still_answers(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    raw.set("a", b"1")
    assert backend.get("a") == b"1"  # a pooled connection now exists
    assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
    assert backend.get("a") == b"1"  # retried once on a new connection
    assert backend.breakers()[0].state == "closed"


def test_a_partial_or_cut_get_reply_leaves_nothing_for_the_next_command(proxy: FaultProxy, raw: Any) -> None:
    raw.mset({"a": b"11111", "b": b"2"})
    backend = RedisBackend(port=proxy.port, db=DB, socket_timeout=0.2, retries=1)
    assert backend.get("a") == b"11111"
    proxy.fake_replies(b"$5\r\nXX")  # three bytes short, then nothing: the read times out
    with pytest.raises(BackendUnavailableError):
        backend.get("a")
    for _ in range(3):
        assert backend.get("b") == b"2"
        assert backend.get("a") == b"11111"
        assert backend.get_values(["b", "a"]) == [b"2", b"11111"]
    proxy.fake_replies(b"$5\r\nXX")
    cut = threading.Timer(0.05, proxy.cut)
    cut.start()
    assert backend.get("a") == b"11111"  # a lost connection: retried on a new one
    cut.join()
    assert proxy.faked == 2
    assert [backend.get(key) for key in "ab"] == [b"11111", b"2"]
    backend.close()


# -- the scripts' EVALSHA --------------------------------------------------------------------------


def test_cas_is_sent_directly_and_answers_as_the_script_call(backend: RedisBackend, raw: redis.Redis) -> None:
    script = backend._scripts["cas"]
    raw.script_load(_rules._CAS)
    raw.set("a", b"v1")
    raw.set("b", b"v1")
    with _no_command_layer():
        assert backend.cas("a", b"v2", b"v1", None) is True
        assert backend.cas("a", b"v3", b"v1", None) is False  # the token is stale
        assert backend.cas("gone", b"v2", b"v1", None) is False
        assert backend.cas("a", b"v3", b"v2", 30.0) is True
    # The Script call, on the same keys, answers the same.
    assert script(keys=["b"], args=[b"v1", b"v2", ""], client=backend.client) == 1
    assert script(keys=["b"], args=[b"v1", b"v3", ""], client=backend.client) == 0
    assert script(keys=["gone"], args=[b"v1", b"v2", ""], client=backend.client) == 0
    assert (raw.get("a"), raw.get("b")) == (b"v3", b"v2")
    assert 0 < raw.pttl("a") <= 30_000
    assert raw.pttl("b") == -1


def test_a_changed_record_is_one_get_and_one_evalsha(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set("s", b"old", 60.0)

    def request() -> None:
        found = backend.gets("s")
        assert found is not None
        assert backend.cas("s", found[0] + b"+", found[1], 60.0)

    # The script's own GET and SET count too.
    assert servers.redis_commands(raw, request) == {"get": 2, "evalsha": 1, "set": 1}
    assert raw.get("s") == b"old+"


def test_noscript_after_script_flush_falls_back_to_the_script_call(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    raw.set("a", b"v1")
    assert backend.cas("a", b"v2", b"v1", None) is True  # the script is loaded now
    raw.script_flush()
    sha = backend._scripts["cas"].sha
    assert raw.script_exists(sha) == [False]
    assert backend.cas("a", b"v3", b"v2", None) is True  # NOSCRIPT, then loaded and run
    assert raw.script_exists(sha) == [True]
    assert backend.cas("a", b"v4", b"v2", None) is False
    assert raw.get("a") == b"v3"
    assert servers.redis_commands(raw, partial(backend.cas, "a", b"v4", b"v3", None)) == {
        "evalsha": 1,
        "get": 1,
        "set": 1,
    }


def test_a_lost_cas_reply_is_retried_with_the_retry_script(proxy: FaultProxy, raw: Any) -> None:
    raw.set("a", b"v1")
    backend = RedisBackend(port=proxy.port, db=DB, socket_timeout=1.0, retries=1)
    assert backend.get("a") == b"v1"
    proxy.cut_after_requests(1)  # the EVALSHA runs, its reply is lost
    assert backend.cas("a", b"v2", b"v1", None) is True  # cas_again sees its own value stored
    assert proxy.cuts == 1
    assert raw.get("a") == b"v2"
    assert backend.cas("a", b"v3", b"v1", None) is False  # and the pool answers each command again
    assert backend.get("a") == b"v2"
    backend.close()


def test_a_partial_evalsha_reply_leaves_nothing_for_the_next_command(proxy: FaultProxy, raw: Any) -> None:
    raw.set("a", b"v1")
    backend = RedisBackend(port=proxy.port, db=DB, socket_timeout=0.2, retries=1)
    assert backend.get("a") == b"v1"
    proxy.fake_replies(b":")  # an integer reply cut after its type byte; the read times out
    with pytest.raises(BackendUnavailableError):
        backend.cas("a", b"v2", b"v1", None)
    assert raw.get("a") == b"v1"  # the faked reply never reached the server
    for _ in range(3):
        assert backend.get("a") == b"v1"
    assert backend.cas("a", b"v2", b"v1", None) is True
    assert backend.get("a") == b"v2"
    backend.close()


def test_a_durable_view_keeps_the_script_call_in_its_pipeline(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    raw.set("a", b"v1")
    durable = backend.durable(1, 0.05)
    direct = mock.patch.object(RedisBackend, "_command", side_effect=AssertionError("sent directly"))
    with direct, pytest.raises(BackendUnavailableError, match="replicas"):  # no replica here
        durable.cas("a", b"v2", b"v1", None)
    assert raw.get("a") == b"v2"  # the write itself ran, with WAIT behind it


# -- asyncio ---------------------------------------------------------------------------------------


def test_async_get_and_cas_are_sent_directly_and_answer_the_same(
    redis_server: servers.ServerProcess, raw: Any
) -> None:
    for key, value in VALUES.items():
        raw.set(_wire(key), value)
    raw.set("c", b"v1")
    raw.script_load(_rules._CAS)

    async def run() -> list[Any]:
        backend = AsyncRedisBackend.from_url(f"redis://{redis_server.address}/{DB}")
        client = backend.client
        assert backend._direct is client.connection_pool
        with _no_async_command_layer():
            seen: list[Any] = [await backend.get(key) for key in [*VALUES, "missing"]]
            seen += [
                await backend.cas("c", b"v2", b"v1", None),
                await backend.cas("c", b"v3", b"v1", None),
                await backend.cas("gone", b"v2", b"v1", 10.0),
            ]
        seen.append([await client.get(_wire(key)) for key in [*VALUES, "missing"]])
        raw.script_flush()
        seen.append(await backend.cas("c", b"v3", b"v2", None))  # NOSCRIPT: the Script call
        seen.append(raw.script_exists(backend._scripts["cas"].sha))
        await backend.close()
        return seen

    values = [*VALUES.values(), None]
    assert asyncio.run(run()) == [*values, True, False, False, values, True, [True]]
    assert raw.get("c") == b"v3"


def test_a_cancelled_async_get_or_cas_leaves_no_reply_behind(proxy: FaultProxy, raw: Any) -> None:
    raw.mset({"a": b"1", "b": b"2", "c": b"v1"})

    async def run() -> list[Any]:
        backend = AsyncRedisBackend(port=proxy.port, db=DB, socket_timeout=2.0, max_connections=2)
        seen: list[Any] = [await backend.get("a")]
        for _ in range(3):  # more cancellations than the pool has connections
            proxy.delay(0.3)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(backend.get("a"), 0.05)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(backend.cas("c", b"v1", b"v1", None), 0.05)
            proxy.delay(0)
            seen += [await backend.get("b"), await backend.get_values(["b", "a"]), await backend.get("a")]
            seen.append(await backend.cas("c", b"v1", b"v1", None))
        await asyncio.sleep(0.4)  # the held replies arrive now, on connections already dropped
        seen += [await backend.get("b"), await backend.get("c")]
        await backend.close()
        return seen

    assert asyncio.run(run()) == [b"1", *[b"2", [b"2", b"1"], b"1", True] * 3, b"2", b"v1"]
