"""Round trips of a session request through AsgiSessionMiddleware on a real redis-server.

The async store on ``redis.asyncio`` must cost what the sync one costs under
WSGI and Flask (``test_per_user_sliding.py``, ``test_flask_adapter.py``): a
stored session is one ``GET`` to load it and, when it changed, one
compare-and-set script; a session whose expiry slides and that has an owner
leaves the owner's index alone between rewrites, so it costs those two round
trips as well, not four. Counted with ``INFO commandstats`` (a script's inner
``GET`` and ``SET`` count under their names).

Each test runs one event loop (``asyncio.Runner``): ``redis.asyncio``
connections belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cachekit import aio
from cachekit.pages.asgi import Receive
from cachekit.pages.asgi import Scope
from cachekit.pages.asgi import Send
from middleware import AsgiSessionMiddleware
from sessions.session import Session
from sessions.stores.aio_cache import AsyncCacheStore
from tests import servers
from tests.asgi import AsgiClient
from tests.asgi import AsgiResponse

#: A stored session changed: GET to load, then the compare-and-set script (its GET and SET inside).
ONE_GET_ONE_SCRIPT = {"get": 2, "evalsha": 1, "set": 1}


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/`` counts in ``n``, ``/read`` only reads it, ``/owned`` also slides the expiry and sets an owner."""
    session: Session = scope["session"]
    if scope["path"] == "/read":
        body = str(session.get("n")).encode()
    else:
        if scope["path"] == "/owned":
            session.set_user("alice", user_agent="UA")  # writes nothing once recorded
            session.set_expiry(3600)
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def _store(redis_url: str) -> Iterator[tuple[asyncio.Runner, AsyncCacheStore]]:
    """An event loop and an async store on Redis built in it, closed with it."""

    async def build() -> AsyncCacheStore:  # in the loop: an async client belongs to the loop that made it
        return AsyncCacheStore(aio.from_url(redis_url, key_prefix=f"asgi-trips-{uuid.uuid4().hex[:8]}"))

    with asyncio.Runner() as runner:
        store = runner.run(build())
        try:
            yield runner, store
        finally:
            runner.run(store.cache.clear())
            runner.run(store.cache.close())


def _commands(runner: asyncio.Runner, raw: redis.Redis, request: Coroutine[Any, Any, AsgiResponse]) -> Any:
    """The commands ``request`` ran on the server, and its body."""
    responses: list[AsgiResponse] = []
    calls = servers.redis_commands(raw, lambda: responses.append(runner.run(request)))
    return calls, responses[0].body


def _warm(runner: asyncio.Runner, wrapped: AsgiSessionMiddleware, path: str) -> None:
    """Connect (HELLO), ask about eviction once and load the script, outside the counts."""
    warm = AsgiClient(wrapped)
    for _ in range(2):
        runner.run(warm.get(path))


def test_a_read_only_and_a_changed_request(redis_url: str, raw: redis.Redis) -> None:
    with _store(redis_url) as (runner, store):
        wrapped = AsgiSessionMiddleware(app, store)
        _warm(runner, wrapped, "/")
        client = AsgiClient(wrapped)
        # A new session: one SET NX, nothing read (no cookie yet).
        assert _commands(runner, raw, client.get("/")) == ({"set": 1}, b"1")
        # A stored session changed: GET to load, then the compare-and-set script.
        assert _commands(runner, raw, client.get("/")) == (ONE_GET_ONE_SCRIPT, b"2")
        # Read only: the GET, and nothing written.
        assert _commands(runner, raw, client.get("/read")) == ({"get": 1}, b"2")
        assert _commands(runner, raw, client.get("/")) == (ONE_GET_ONE_SCRIPT, b"3")


def test_a_sliding_session_with_an_owner_is_one_get_and_one_script(redis_url: str, raw: redis.Redis) -> None:
    with _store(redis_url) as (runner, store):
        wrapped = AsgiSessionMiddleware(app, store)
        _warm(runner, wrapped, "/owned")
        client = AsgiClient(wrapped)
        runner.run(client.get("/owned"))  # login: the record, then the owner's index
        for n in (2, 3, 4):
            assert _commands(runner, raw, client.get("/owned")) == (ONE_GET_ONE_SCRIPT, str(n).encode())
        listed = runner.run(store.sessions_of("alice"))
        assert [entry.metadata for entry in listed] == [{"user_agent": "UA"}] * 2  # the warm one and ours
