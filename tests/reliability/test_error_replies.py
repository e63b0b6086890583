"""Every error reply classified: an outage (a miss or no-op, counted by the breaker) or a bug.

Issue 14, item 2. One table: each row puts a real redis-server into the state that
produces the reply wherever Redis can be put there (MISCONF, NOREPLICAS, READONLY,
MASTERDOWN, OOM, BUSY, WRONGTYPE, not-an-integer), and fakes the reply through
tests/faultproxy.py where it cannot easily be (LOADING, TRYAGAIN, CLUSTERDOWN,
NOSCRIPT, syntax errors, NOAUTH). Each row checks the backend's error class, that
``Cache`` turns an outage into a no-op or miss (and a bug into an exception), and
that only outages count against the circuit breaker.

Memcached rows belong in this file too (helper "faults-mc").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from cachekit import Cache
from cachekit.backends.redis import RedisBackend
from cachekit.backends.redis._errors import is_outage
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from tests import servers
from tests.conftest import require_binary
from tests.faultproxy import FaultProxy


@dataclass
class World:
    server: servers.ServerProcess
    admin: redis.Redis
    proxy: FaultProxy


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_binary("redis-server")
    # CONFIG SET dir is refused unless protected configs are enabled (the MISCONF row needs it).
    server = servers.start_redis(["--enable-protected-configs", "yes"])
    admin = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    proxy = FaultProxy(server.port).start()
    yield World(server, admin, proxy)
    proxy.stop()
    admin.close()
    if server.process is not None and server.process.poll() is None:
        os.kill(server.pid, signal.SIGCONT)
    server.stop()


Undo = Callable[[], None]


def misconf(w: World) -> Undo:
    """A failed snapshot: the dump directory vanished, stop-writes-on-bgsave-error refuses writes."""
    original = w.admin.config_get("dir")["dir"]
    gone = tempfile.mkdtemp(prefix="cachekit-misconf-")
    w.admin.config_set("dir", gone)
    w.admin.config_set("stop-writes-on-bgsave-error", "yes")
    w.admin.config_set("save", "3600 1")  # writes are refused only when snapshots are configured
    shutil.rmtree(gone)  # root ignores permissions, so remove the directory instead
    w.admin.bgsave()
    deadline = time.monotonic() + 10
    while w.admin.info("persistence")["rdb_last_bgsave_status"] != "err":
        assert time.monotonic() < deadline, "BGSAVE did not fail"
        time.sleep(0.05)

    def undo() -> None:
        w.admin.config_set("dir", original)
        w.admin.config_set("stop-writes-on-bgsave-error", "no")
        w.admin.config_set("save", "")

    return undo


def config(name: str, value: str, default: str) -> Callable[[World], Undo]:
    def setup(w: World) -> Undo:
        w.admin.config_set(name, value)
        return lambda: w.admin.config_set(name, default)

    return setup


def replica(serve_stale: str) -> Callable[[World], Undo]:
    """A replica of a master that is not there (port 1): READONLY writes, MASTERDOWN reads if not stale."""

    def setup(w: World) -> Undo:
        w.admin.config_set("replica-serve-stale-data", serve_stale)
        w.admin.replicaof("127.0.0.1", 1)

        def undo() -> None:
            w.admin.replicaof("NO", "ONE")
            w.admin.config_set("replica-serve-stale-data", "yes")

        return undo

    return setup


def busy_script(w: World) -> Undo:
    """A Lua script spinning past busy-reply-threshold: everyone else gets BUSY."""
    w.admin.config_set("busy-reply-threshold", "50")
    spinner = redis.Redis(host="127.0.0.1", port=w.server.port, socket_timeout=30)
    thread = threading.Thread(
        target=lambda: _swallow(lambda: spinner.eval("while true do end", 0)), daemon=True
    )
    thread.start()
    probe = redis.Redis(host="127.0.0.1", port=w.server.port, socket_timeout=5)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
        except redis.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                break
        assert time.monotonic() < deadline, "the script never made the server BUSY"
        time.sleep(0.05)

    def undo() -> None:
        probe.script_kill()
        thread.join(10)
        probe.close()
        spinner.close()
        w.admin.config_set("busy-reply-threshold", "5000")

    return undo


def _swallow(action: Callable[[], object]) -> None:
    with contextlib.suppress(redis.RedisError):  # the script is killed on purpose
        action()


def wrong_type(w: World) -> Undo:
    w.admin.rpush("e:1:k", "a list")
    return lambda: w.admin.delete("e:1:k")


def text_value(w: World) -> Undo:
    w.admin.set("e:1:k", "text")
    return lambda: w.admin.delete("e:1:k")


def nothing(w: World) -> Undo:
    return lambda: None


@dataclass(frozen=True)
class Row:
    setup: Callable[[World], Undo]
    operation: str  # "set", "get", "incr" or "add"
    outage: bool
    #: A reply the proxy sends instead of the server's, for each attempt.
    fake: bytes | None = None


def fake(reply: bytes, operation: str, outage: bool) -> Row:
    return Row(nothing, operation, outage, fake=reply)


ROWS = [
    # Real server states.
    pytest.param(Row(misconf, "set", outage=True), id="MISCONF-bgsave-failed"),
    pytest.param(Row(config("min-replicas-to-write", "1", "0"), "set", outage=True), id="NOREPLICAS"),
    pytest.param(Row(replica("yes"), "set", outage=True), id="READONLY-replica"),
    pytest.param(Row(replica("no"), "get", outage=True), id="MASTERDOWN-replica-link-down"),
    pytest.param(Row(config("maxmemory", "1", "0"), "set", outage=True), id="OOM-maxmemory"),
    pytest.param(Row(config("maxmemory", "1", "0"), "add", outage=True), id="OOM-SET-NX"),
    pytest.param(Row(busy_script, "get", outage=True), id="BUSY-script"),
    pytest.param(Row(wrong_type, "get", outage=False), id="WRONGTYPE"),
    pytest.param(Row(text_value, "incr", outage=False), id="ERR-not-an-integer"),
    # Replies Redis gives only in states too slow or large to build here: faked on the wire.
    pytest.param(fake(b"-LOADING Redis is loading the dataset in memory\r\n", "get", True), id="LOADING"),
    pytest.param(fake(b"-TRYAGAIN Multiple keys request during rehashing\r\n", "get", True), id="TRYAGAIN"),
    pytest.param(fake(b"-CLUSTERDOWN The cluster is down\r\n", "get", True), id="CLUSTERDOWN"),
    pytest.param(fake(b"-MISCONF Errors writing to the AOF file\r\n", "set", True), id="MISCONF-aof"),
    pytest.param(fake(b"-ERR max number of clients reached\r\n", "get", True), id="ERR-max-clients"),
    pytest.param(fake(b"-ERR syntax error\r\n", "set", False), id="ERR-syntax"),
    pytest.param(fake(b"-ERR unknown command 'SET'\r\n", "set", False), id="ERR-unknown-command"),
    pytest.param(fake(b"-WRONGTYPE Operation against a key\r\n", "get", False), id="WRONGTYPE-fake"),
    pytest.param(fake(b"-NOAUTH Authentication required.\r\n", "get", False), id="NOAUTH"),
]


@pytest.mark.parametrize("row", ROWS)
def test_error_reply_is_classified(world: World, row: Row) -> None:
    backend = RedisBackend(host="127.0.0.1", port=world.proxy.port, socket_timeout=2, breaker_failures=50)
    cache = Cache(backend, key_prefix="e", on_error="raise")
    tolerant = Cache(backend, key_prefix="e")
    world.admin.flushdb()
    assert backend.get("warm-up") is None  # the connection is open: a fake reply answers a command
    operations: dict[str, Callable[[Cache], object]] = {
        "set": lambda c: c.set("k", "v"),
        "add": lambda c: c.add("k", "v"),
        "get": lambda c: c.get("k"),
        "incr": lambda c: c.incr("k"),
    }
    undo = row.setup(world)
    if row.fake is not None:
        world.proxy.fake_replies(*[row.fake] * (2 if row.outage else 1))  # one per attempt below
    try:
        with pytest.raises(BackendError) as caught:
            operations[row.operation](cache)
        assert isinstance(caught.value, BackendUnavailableError) is row.outage, str(caught.value)
        assert is_outage(caught.value.__cause__) is row.outage  # type: ignore[arg-type]
        snapshot = backend.breakers()[0].snapshot()
        assert snapshot["recent_failures"] == (1 if row.outage else 0)
        if row.outage:
            # The failure policy: an outage is a miss or a no-op, never an exception.
            before = tolerant.stats()["errors"]
            operations[row.operation](tolerant)
            assert tolerant.stats()["errors"] == before + 1
    finally:
        undo()
        backend.close()


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(misconf, id="MISCONF"),
        pytest.param(config("min-replicas-to-write", "1", "0"), id="NOREPLICAS"),
        pytest.param(replica("yes"), id="READONLY"),
        pytest.param(config("maxmemory", "1", "0"), id="OOM"),
    ],
)
def test_write_refusals_under_the_middleware_are_never_500(
    world: World, refusal: Callable[[World], Undo], record_property: Any
) -> None:
    """The issue's scenario: with writes refused, pages render (200) and session writes answer 503."""
    from tests.reliability.app import build_app
    from tests.wsgi import Client

    world.admin.flushdb()
    app = build_app(f"redis://127.0.0.1:{world.server.port}/0?socket_timeout=2")
    users = [Client(app) for _ in range(5)]
    for user in users:
        assert user.request("/count")[0].startswith("200")  # logged-in sessions exist before
    undo = refusal(world)
    statuses: Counter[str] = Counter()
    try:
        for round_ in range(4):
            for index, user in enumerate(users):
                statuses["count " + user.request("/count")[0][:3]] += 1
                statuses["page " + user.request(f"/page/{round_}-{index}")[0][:3]] += 1
                statuses["me " + user.request("/me")[0][:3]] += 1
    finally:
        undo()
    record_property("statuses", dict(statuses))
    print(refusal, dict(statuses))
    assert not [key for key in statuses if key.endswith("500")], statuses
    assert statuses["count 503"] == 20
    assert statuses["page 200"] == 20
    assert statuses["me 200"] == 20
