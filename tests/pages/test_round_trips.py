"""Issue 21: a page hit on Redis is one round trip, counted by the server (``INFO commandstats``).

The shell reads the URL's lookup record and the page its process last saw the
record name for this request in one ``MGET``. A hint that no longer holds (a
purge and a re-render in another process) costs one more ``GET``, never a
wrong page. Through the WSGI and the ASGI shell, on a real ``redis-server``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cachekit.exceptions import BackendUnavailableError
from tests import servers
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for
from tests.pages.test_composition import Renders


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def commands_for(raw: redis.Redis, action: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """Run ``action``; return its result and the commands the server ran for it, by name."""
    results: list[Any] = []
    calls = servers.redis_commands(raw, lambda: results.append(action()))
    return results[0], calls


def _language(environ: dict[str, Any]) -> bytes:
    return environ.get("HTTP_ACCEPT_LANGUAGE", "none").encode()


VARY_APP_HEADERS = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]


def _shells(kind: str, app: Renders, url: str, count: int) -> list[Shell]:
    """``count`` page caches on one Redis under one key prefix: the workers of one site."""
    prefix = f"trips-{uuid.uuid4().hex[:10]}"
    return [Shell(kind, app, url=url, cache_options={"key_prefix": prefix}) for _ in range(count)]


def test_a_page_hit_is_one_mget(shell: str, redis_url: str, raw: redis.Redis) -> None:
    app = Renders(VARY_APP_HEADERS, body_of=_language)
    (engine,) = _shells(shell, app, redis_url, 1)
    try:
        english = environ_for(headers={"Accept-Language": "en"})
        engine(english)  # the miss stores the page and the learned Vary list
        answer, calls = commands_for(raw, lambda: engine(environ_for(headers={"Accept-Language": "en"})))
        assert (answer[0][:3], answer[2]) == ("200", b"en")
        assert app.calls == 1
        assert calls == {"mget": 1}
    finally:
        engine.close()


def test_each_variant_hit_is_one_mget_and_its_own_page(shell: str, redis_url: str, raw: redis.Redis) -> None:
    app = Renders(VARY_APP_HEADERS, body_of=_language)
    (engine,) = _shells(shell, app, redis_url, 1)
    try:
        for language in ("en", "fr", "de"):
            engine(environ_for(headers={"Accept-Language": language}))
        for language in ("fr", "en", "de", "en"):
            answer, calls = commands_for(
                raw, lambda lang=language: engine(environ_for(headers={"Accept-Language": lang}))
            )
            assert answer[2] == language.encode()
            assert calls == {"mget": 1}, language
        assert app.calls == 3
    finally:
        engine.close()


def test_a_hint_that_no_longer_holds_costs_one_more_get_never_a_wrong_page(
    shell: str, redis_url: str, raw: redis.Redis
) -> None:
    versions = iter([b"v1", b"v2", b"v3"])
    app = Renders([("Cache-Control", "max-age=60")], body_of=lambda environ: next(versions))
    first, second = _shells(shell, app, redis_url, 2)
    try:
        assert first(environ_for())[2] == b"v1"
        assert first(environ_for())[2] == b"v1"  # the first worker's hint: this page
        assert second.purge("http://example.com/page")
        assert second(environ_for())[2] == b"v2"  # re-rendered under a new nonce
        answer, calls = commands_for(raw, lambda: first(environ_for()))
        assert answer[2] == b"v2"
        assert calls == {"mget": 1, "get": 1}
        answer, calls = commands_for(raw, lambda: first(environ_for()))
        assert (answer[2], calls) == (b"v2", {"mget": 1})  # the hint follows the record
        assert app.calls == 2
    finally:
        first.close()
        second.close()


def test_a_worker_without_a_hint_reads_the_record_first(shell: str, redis_url: str, raw: redis.Redis) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    first, second = _shells(shell, app, redis_url, 2)
    try:
        first(environ_for())
        second(environ_for("/other"))  # its connection open: only the page's reads are counted
        answer, calls = commands_for(raw, lambda: second(environ_for()))
        assert (answer[2], calls) == (b"v1", {"get": 2})
        answer, calls = commands_for(raw, lambda: second(environ_for()))
        assert (answer[2], calls) == (b"v1", {"mget": 1})
    finally:
        first.close()
        second.close()


def test_a_no_cache_request_reads_only_the_record(shell: str, redis_url: str, raw: redis.Redis) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    (engine,) = _shells(shell, app, redis_url, 1)
    try:
        engine(environ_for())
        _, calls = commands_for(raw, lambda: engine(environ_for(headers={"Cache-Control": "no-cache"})))
        assert calls.get("mget", 0) == 0
        assert app.calls == 2  # revalidated with the app, not served from the hint's page
    finally:
        engine.close()


def test_an_outage_during_the_paired_read_is_a_miss(
    shell: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Renders([("Cache-Control", "max-age=60")])
    (engine,) = _shells(shell, app, redis_url, 1)
    try:
        engine(environ_for())
        assert engine(environ_for())[2] == b"v1"  # the hint is learned
        backend = engine.cache.backend
        if shell == "wsgi":

            def down(keys: Any) -> Any:
                raise BackendUnavailableError("down")
        else:

            async def down(keys: Any) -> Any:
                raise BackendUnavailableError("down")

        monkeypatch.setattr(backend, "get_many", down)
        monkeypatch.setattr(backend, "get", down)  # reads fail; the render's writes go through
        errors = engine.cache.recorder.errors
        status, _, body = engine(environ_for())
        assert (status[:3], body, app.calls) == ("200", b"v2", 2)  # rendered, not an error page
        assert engine.cache.recorder.errors > errors
    finally:
        monkeypatch.undo()
        engine.close()
