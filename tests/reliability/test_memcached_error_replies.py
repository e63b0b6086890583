"""Issue 14 item 2, memcached side: every error reply classified as an outage or a bug.

One table over the replies memcached 1.6 can send (``strings $(which memcached)``),
checked through the pure :func:`reply_is_outage` and through
:func:`translate_error`; then real servers put in the states that produce them:
memory full with ``-M``, past the connection limit ``-c``, a value past ``-I``,
``incr`` on text. An outage is a counted miss or no-op for :class:`Cache` and a
503 for a session; a bug is raised.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.exceptions import MemcacheClientError
from pymemcache.exceptions import MemcacheServerError
from pymemcache.exceptions import MemcacheUnknownCommandError

from cachekit import Cache
from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.memcached._pool import ErrorLineReplyError
from cachekit.backends.memcached._pool import reply_is_outage
from cachekit.backends.memcached._pool import translate_error
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from middleware import SessionMiddleware
from sessions.stores.cache import CacheStore
from tests import servers
from tests.conftest import require_binary
from tests.wsgi import call_app
from tests.wsgi import make_environ

OUTAGE, BUG = "outage", "bug"

REPLIES = [
    pytest.param("SERVER_ERROR out of memory storing object", OUTAGE, id="oom-storing"),
    pytest.param("SERVER_ERROR out of memory", OUTAGE, id="oom"),
    pytest.param("SERVER_ERROR out of memory reading request", OUTAGE, id="oom-reading"),
    pytest.param("SERVER_ERROR out of memory writing get response", OUTAGE, id="oom-get-response"),
    pytest.param("SERVER_ERROR out of memory writing stats", OUTAGE, id="oom-stats"),
    pytest.param("SERVER_ERROR Out of memory allocating item", OUTAGE, id="oom-allocating"),
    pytest.param("SERVER_ERROR Out of memory allocating new item", OUTAGE, id="oom-new-item"),
    pytest.param("SERVER_ERROR Out of memory during read", OUTAGE, id="oom-during-read"),
    pytest.param("SERVER_ERROR Out of memory incrementing value", OUTAGE, id="oom-incr"),
    pytest.param("SERVER_ERROR Out of memory generating stats", OUTAGE, id="oom-gen-stats"),
    pytest.param("SERVER_ERROR refcount overflow during fetch", OUTAGE, id="refcount-overflow"),
    pytest.param("ERROR Too many open connections", OUTAGE, id="maxconns"),
    pytest.param("SERVER_ERROR object too large for cache", BUG, id="too-large"),
    pytest.param("SERVER_ERROR output line too long", BUG, id="line-too-long"),
    pytest.param("SERVER_ERROR Unhandled storage type.", BUG, id="storage-type"),
    pytest.param("SERVER_ERROR", BUG, id="server-error-bare"),
    pytest.param("ERROR", BUG, id="unknown-command"),
    pytest.param("CLIENT_ERROR cannot increment or decrement non-numeric value", BUG, id="incr-text"),
    pytest.param("CLIENT_ERROR bad data chunk", BUG, id="bad-chunk"),
    pytest.param("CLIENT_ERROR bad command line format", BUG, id="bad-line"),
    pytest.param("CLIENT_ERROR invalid exptime argument", BUG, id="bad-exptime"),
    pytest.param("CLIENT_ERROR invalid numeric delta argument", BUG, id="bad-delta"),
    pytest.param("CLIENT_ERROR unauthenticated", BUG, id="unauthenticated"),
    pytest.param("CLIENT_ERROR authentication failure", BUG, id="auth-failure"),
    pytest.param("CLIENT_ERROR flush_all not allowed", BUG, id="flush-disabled"),
]


def _as_pymemcache(reply: str) -> Exception:
    """The exception pymemcache (with cachekit's client) raises for ``reply``."""
    word, _, text = reply.partition(" ")
    if word == "SERVER_ERROR":
        return MemcacheServerError(text.encode())
    if word == "CLIENT_ERROR":
        return MemcacheClientError(text.encode())
    return ErrorLineReplyError(reply) if text else MemcacheUnknownCommandError(b"get")


@pytest.mark.parametrize(("reply", "kind"), REPLIES)
def test_every_reply_is_classified(reply: str, kind: str) -> None:
    assert reply_is_outage(reply) is (kind == OUTAGE)
    error = translate_error(_as_pymemcache(reply), "set", ("127.0.0.1", 11211))
    assert isinstance(error, BackendError)
    assert isinstance(error, BackendUnavailableError) is (kind == OUTAGE)


# -- real servers in those states -----------------------------------------------------------


@pytest.fixture
def full_memcached() -> Iterator[servers.ServerProcess]:
    """A memcached with 2 MB, 512 KiB items, that answers errors instead of evicting (-M)."""
    require_binary("memcached")
    server = servers.start_memcached(["-m", "2", "-M", "-I", "512k", "-c", "32", "-t", "1"])
    yield server
    server.stop()


def _fill(backend: MemcachedBackend) -> int:
    """Store values of every size from 4 to 12 KB until each size is refused; return how many were stored."""
    stored = 0
    refusals: list[str] = []
    for size in range(4000, 12_001, 500):
        for number in range(10_000):
            try:
                backend.set(f"fill{size}-{number}", b"x" * size, None)
            except BackendUnavailableError as exc:
                refusals.append(str(exc))
                break
            stored += 1
        else:
            raise AssertionError("memcached -M never ran out of memory")
    assert all("out of memory" in text for text in refusals)
    return stored


def test_memory_full_is_an_outage_a_counted_no_op_and_a_session_503(
    full_memcached: servers.ServerProcess,
) -> None:
    # Out of memory is an outage, so it counts against the breaker: keep it closed while filling.
    backend = MemcachedBackend(
        servers=[full_memcached.address], max_item_size=512 * 1024, breaker_failures=10_000
    )
    stored = _fill(backend)
    assert stored > 0
    cache = Cache(backend, key_prefix="oom")
    cache.set("k", "v" * 5000)  # no exception: the failure policy's no-op
    assert cache.stats()["errors"] >= 1

    def login(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["cachekit.session"]["user"] = "a" * 6000
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"in"]

    status, headers, _body = call_app(SessionMiddleware(login, CacheStore(cache)), make_environ("/"))
    assert status.startswith("503")
    assert not [v for n, v in headers if n.lower() == "set-cookie"]


def test_value_past_the_item_size_is_a_bug(full_memcached: servers.ServerProcess) -> None:
    # max_item_size larger than the server's -I, so the server itself refuses.
    backend = MemcachedBackend(servers=[full_memcached.address], max_item_size=4 * 1024 * 1024)
    with pytest.raises(BackendError, match="too large|item size") as caught:
        backend.set("big", b"x" * (1024 * 1024), None)
    assert not isinstance(caught.value, BackendUnavailableError)


def test_incr_on_text_is_a_bug(full_memcached: servers.ServerProcess) -> None:
    backend = MemcachedBackend(servers=[full_memcached.address])
    backend.set("text", b"abc", None)
    with pytest.raises(BackendError) as caught:
        backend.incr("text", 1)
    assert not isinstance(caught.value, BackendUnavailableError)


def test_past_the_connection_limit_is_an_outage(full_memcached: servers.ServerProcess) -> None:
    hogs: list[socket.socket] = []
    try:
        # -c 32 with one worker thread: hold every slot, then one more connection is refused.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            hog = socket.create_connection(("127.0.0.1", full_memcached.port), timeout=1)
            hogs.append(hog)
            hog.settimeout(0.05)
            try:
                if hog.recv(100).startswith(b"ERROR Too many open connections"):
                    break
            except TimeoutError:
                continue
        else:
            raise AssertionError("memcached never reached its connection limit")
        backend = MemcachedBackend(servers=[full_memcached.address])
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        assert Cache(backend).get("k", "miss") == "miss"
    finally:
        for hog in hogs:
            hog.close()
