"""Background revalidation: a stale page is answered at once and re-rendered off the request path.

Through both shells (the WSGI thread pool, the ASGI tasks), on a fake clock.
Before background revalidation, the request that took the render lock in the
``stale_while_revalidate`` window rendered inline and got the new page: each
"answered stale" assertion below failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.background import TaskWorkers
from cachekit.background import ThreadWorkers
from cachekit.pages.asgi import AsyncPageCache
from cachekit.pages.options import PageOptions
from cachekit.pages.wsgi import PageCache
from cachekit.pages.wsgi import background_environ
from tests import wsgi
from tests.asgi import call_asgi
from tests.asgi import make_scope
from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for

SWR = {"stale_while_revalidate": 30}


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Renders:
    """Answers ``v<n>`` on its n-th render, seeing each render's environ; may fail on chosen renders."""

    def __init__(self, fail_on: Iterable[int] = (), status_on: dict[int, str] | None = None) -> None:
        self.calls = 0
        self.environs: list[dict[str, Any]] = []
        self.fail_on = set(fail_on)
        self.status_on = status_on or {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        self.environs.append(environ)
        if self.calls in self.fail_on:
            raise RuntimeError("database down")
        body = b"v%d" % self.calls
        status = self.status_on.get(self.calls, "200 OK")
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def settle(engine: Shell) -> None:
    """Wait for the shell's background re-renders."""
    if engine.kind == "wsgi":
        assert engine.engine.background.wait(5)
    else:
        assert engine._runner is not None
        assert engine._runner.run(engine.engine.background.wait(5))


def test_the_request_that_finds_a_page_stale_is_answered_stale_and_one_render_follows(
    shell: str, clock: FakeClock
) -> None:
    app = Renders()
    engine = Shell(shell, app, clock=clock, cache_status=True, **SWR)
    try:
        assert engine(environ_for())[2] == b"v1"
        clock.advance(70)  # 10 s into the stale window
        status, headers, body = engine(environ_for())
        assert (status[:3], body) == ("200", b"v1")  # inline before: b"v2"
        fields = {name.lower(): value for name, value in headers}
        assert fields["age"] == "70"
        assert fields["cache-status"] == "cachekit;hit;ttl=-10"
        assert engine.cache.stats()["stale_serves"] == 1
        settle(engine)
        assert app.calls == 2
        assert engine(environ_for())[2] == b"v2"
        assert app.calls == 2
    finally:
        engine.close()


def test_background_revalidate_off_renders_inline(shell: str, clock: FakeClock) -> None:
    app = Renders()
    engine = Shell(shell, app, clock=clock, background_revalidate=False, **SWR)
    try:
        engine(environ_for())
        clock.advance(70)
        assert engine(environ_for())[2] == b"v2"
        assert app.calls == 2
    finally:
        engine.close()


def test_a_failing_background_render_is_logged_and_the_stale_copy_stays(
    shell: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = Renders(fail_on={2}, status_on={3: "503 Service Unavailable"})
    engine = Shell(shell, app, clock=clock, **SWR)
    try:
        engine(environ_for())
        clock.advance(70)
        with caplog.at_level(logging.ERROR, logger="cachekit.views"):
            assert engine(environ_for())[2] == b"v1"
            settle(engine)
            assert engine(environ_for())[2] == b"v1"  # the lock was let go: this one retries (a 503)
            settle(engine)
        messages = [record.getMessage() for record in caplog.records]
        assert any("background re-render of http://example.com/page failed" in m for m in messages)
        assert any("answered 503; the stale copy stays" in m for m in messages)
        assert engine(environ_for())[2] == b"v1"  # still within the window
        settle(engine)
        assert engine(environ_for())[2] == b"v4"
        assert app.calls == 4
    finally:
        engine.close()


def test_a_conditional_request_gets_its_304_and_the_background_render_stores_the_whole_page(
    shell: str, clock: FakeClock
) -> None:
    app = Renders()
    engine = Shell(shell, app, clock=clock, **SWR)
    try:
        engine(environ_for())
        etag = {name.lower(): value for name, value in engine(environ_for())[1]}["etag"]  # from the hit
        clock.advance(70)
        status, _, body = engine(environ_for(headers={"If-None-Match": etag}))
        assert (status[:3], body) == ("304", b"")
        settle(engine)
        assert "HTTP_IF_NONE_MATCH" not in app.environs[-1]
        status, headers, body = engine(environ_for())
        assert (status[:3], body) == ("200", b"v2")
        assert {name.lower(): value for name, value in headers}["etag"] != etag
    finally:
        engine.close()


def test_wsgi_an_invalidation_during_a_background_render_wins(clock: FakeClock) -> None:
    cache = _wsgi_cache(clock, "bg-invalidate")
    app = Renders()

    def invalidating(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if app.calls == 1:
            cache.invalidate_tags("story")  # lands while the page is re-rendered
        return app(environ, start_response)

    engine = PageCache(60, cache=cache, tags=["story"], **SWR)
    call = lambda: wsgi.call_app(lambda e, s: engine(invalidating, e, s), environ_for())[2]  # noqa: E731
    try:
        assert call() == b"v1"
        clock.advance(70)
        assert call() == b"v1"
        assert engine.background.wait(5)
        assert call() == b"v3"  # v2 read data from before the invalidation: not kept
        assert call() == b"v3"
    finally:
        cache.clear()


# -- WSGI: the thread pool -------------------------------------------------------------------


class Gated:
    """A WSGI app whose renders wait for :attr:`go` once :attr:`gated` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.gated = False
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.calls += 1
        n = self.calls
        if self.gated:
            self.entered.set()
            assert self.go.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"v%d" % n]


def _wsgi_cache(clock: FakeClock, name: str) -> Cache:
    return Cache(LocMemBackend(name, clock=clock), clock=clock)


def test_wsgi_requests_during_a_background_render_are_all_answered_stale_and_one_render_runs(
    clock: FakeClock,
) -> None:
    cache = _wsgi_cache(clock, "bg-one-render")
    app = Gated()
    engine = PageCache(60, cache=cache, **SWR)
    call = lambda: wsgi.call_app(lambda e, s: engine(app, e, s), environ_for())  # noqa: E731
    try:
        call()
        app.gated = True
        clock.advance(70)
        assert call()[2] == b"v1"  # answered while its re-render has not even started
        assert app.entered.wait(5)
        answers = [call()[2] for _ in range(20)]
        assert answers == [b"v1"] * 20
        assert app.calls == 2
        app.go.set()
        assert engine.background.wait(5)
        assert call()[2] == b"v2"
        assert app.calls == 2
    finally:
        app.go.set()
        engine.background.wait(5)
        cache.clear()


def test_wsgi_pool_full_serves_stale_and_lets_go_of_the_lock(clock: FakeClock) -> None:
    cache = _wsgi_cache(clock, "bg-full")
    app = Gated()
    engine = PageCache(60, cache=cache, revalidate_workers=1, **SWR)

    def call(path: str) -> bytes:
        return wsgi.call_app(lambda e, s: engine(app, e, s), environ_for(path))[2]

    try:
        assert (call("/a"), call("/b")) == (b"v1", b"v2")
        app.gated = True
        clock.advance(70)
        assert call("/a") == b"v1"  # its re-render takes the one worker...
        assert app.entered.wait(5)
        assert call("/b") == b"v2"  # ...so /b is served stale, not re-rendered
        assert app.calls == 3
        app.go.set()
        assert engine.background.wait(5)
        assert call("/b") == b"v2"  # /b's lock was let go: this request's re-render runs
        assert engine.background.wait(5)
        assert call("/b") == b"v4"
        assert call("/a") == b"v3"
    finally:
        app.go.set()
        engine.background.wait(5)
        cache.clear()


def test_wsgi_background_environ_is_a_copy_without_the_servers_handles() -> None:
    environ = wsgi.make_environ("/page", "GET", {"If-Modified-Since": "x", "Accept": "text/html"})
    environ["wsgi.file_wrapper"] = object()
    environ["gunicorn.socket"] = object()
    environ["cachekit.session"] = session = object()
    copy = background_environ(environ)
    assert copy is not environ
    assert copy["wsgi.input"] is not environ["wsgi.input"]
    assert copy["wsgi.input"].read() == b""
    assert {"wsgi.file_wrapper", "gunicorn.socket", "HTTP_IF_MODIFIED_SINCE"}.isdisjoint(copy)
    assert copy["HTTP_ACCEPT"] == "text/html"
    assert copy["cachekit.session"] is session
    assert "HTTP_IF_MODIFIED_SINCE" in environ  # the request's own environ is untouched


def test_thread_workers_are_bounded_and_log_a_failing_job(caplog: pytest.LogCaptureFixture) -> None:
    workers = ThreadWorkers(2)
    go = threading.Event()
    assert workers.submit(lambda: go.wait(5), key="k")
    assert not workers.submit(lambda: None, key="k")  # that key's job is under way
    assert workers.submit(lambda: go.wait(5))
    assert not workers.submit(lambda: None)  # full
    assert workers.running == 2
    assert workers.wait(0.01) is False
    go.set()
    assert workers.wait(5)
    assert workers.submit(lambda: None, key="k")  # done: the key is free again
    assert workers.wait(5)

    def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="cachekit.background"):
        assert workers.submit(broken)
        assert workers.wait(5)
    assert "a background job failed" in caplog.text
    with pytest.raises(ValueError, match="limit"):
        ThreadWorkers(0)
    with pytest.raises(ValueError, match="revalidate_workers"):
        PageOptions(revalidate_workers=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_thread_workers_made_before_fork_build_their_own_pool_in_the_child() -> None:
    """gunicorn --preload: the page cache (and its workers) exist in the master before fork."""
    workers = ThreadWorkers(1)
    hold = threading.Event()
    assert workers.submit(lambda: hold.wait(5))  # the parent's pool is busy at fork time
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the case under test
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = workers.running == 0
        ran = threading.Event()
        ok = ok and workers.submit(ran.set) and ran.wait(5) and workers.wait(5)
        os.write(write_end, b"ok" if ok else b"no")
        os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 2) == b"ok"
        assert os.waitpid(pid, 0)[1] == 0
        assert workers.running == 1  # the parent's job is still its own
    finally:
        os.close(read_end)
        hold.set()
        assert workers.wait(5)


# -- ASGI: tasks --------------------------------------------------------------------------------


class AsyncGated:
    """A native ASGI app whose renders wait for :attr:`go` once :attr:`gated` is set; speaks lifespan."""

    def __init__(self) -> None:
        self.calls = 0
        self.gated = False
        self.go = asyncio.Event()
        self.shutdown = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.shutdown = True
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.calls += 1
        n = self.calls
        assert (await receive())["type"] == "http.request"
        if self.gated:
            await self.go.wait()
        body = b"v%d" % n
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": body})


async def _turns() -> None:
    """Let the loop run the other tasks a few turns."""
    for _ in range(10):
        await asyncio.sleep(0)


def _asgi(clock: FakeClock, name: str, **options: Any) -> tuple[AsyncCache, AsyncPageCache]:
    cache = AsyncCache(AsyncLocMemBackend(name, clock=clock), clock=clock)
    return cache, AsyncPageCache(60, cache=cache, **SWR, **options)


def test_asgi_stale_answers_do_not_wait_for_the_render_and_lifespan_shutdown_waits_for_it(
    clock: FakeClock,
) -> None:
    cache, engine = _asgi(clock, "bg-asgi")
    app = AsyncGated()

    async def get() -> bytes:
        return (await call_asgi(lambda s, r, w: engine(app, s, r, w), make_scope("/page"))).body

    async def scenario() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan = asyncio.create_task(engine(app, {"type": "lifespan"}, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        assert await get() == b"v1"
        app.gated = True
        clock.advance(70)
        answers = [await get() for _ in range(5)]
        assert answers == [b"v1"] * 5
        await _turns()  # the re-render task starts, and parks on app.go
        assert app.calls == 2
        assert engine.background.running == 1
        await inbox.put({"type": "lifespan.shutdown"})
        await _turns()  # let the lifespan task take the message...
        assert inbox.empty()
        assert not app.shutdown  # ...and hold it while the re-render runs
        app.go.set()
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await lifespan
        assert engine.background.running == 0
        assert await get() == b"v2"
        assert app.calls == 2
        await cache.clear()

    asyncio.run(asyncio.wait_for(scenario(), 10))  # a render inline would wait on app.go forever


def test_asgi_tasks_full_serves_stale_and_lets_go_of_the_lock(clock: FakeClock) -> None:
    cache, engine = _asgi(clock, "bg-asgi-full", revalidate_workers=1)
    app = AsyncGated()

    async def get(path: str) -> bytes:
        return (await call_asgi(lambda s, r, w: engine(app, s, r, w), make_scope(path))).body

    async def scenario() -> None:
        assert (await get("/a"), await get("/b")) == (b"v1", b"v2")
        app.gated = True
        clock.advance(70)
        assert await get("/a") == b"v1"
        assert await get("/b") == b"v2"  # the one task slot is taken: /b is not re-rendered
        await _turns()
        assert app.calls == 3
        app.go.set()
        assert await engine.background.wait(5)
        assert await get("/b") == b"v2"  # its lock was let go: this one starts /b's re-render
        assert await engine.background.wait(5)
        assert await get("/b") == b"v4"
        await cache.clear()

    asyncio.run(asyncio.wait_for(scenario(), 10))  # a render inline would wait on app.go forever


def test_task_workers_are_bounded_and_log_a_failing_job(caplog: pytest.LogCaptureFixture) -> None:
    workers = TaskWorkers(2)

    async def scenario() -> None:
        go = asyncio.Event()
        assert workers.submit(go.wait, key="k")
        assert not workers.submit(go.wait, key="k")  # that key's task is under way
        assert workers.submit(go.wait)
        assert not workers.submit(go.wait)  # full
        assert await workers.wait(0.01) is False
        go.set()
        assert await workers.wait(5)
        assert workers.submit(go.wait, key="k")  # done: the key is free again
        assert await workers.wait(5)

        async def broken() -> None:
            raise RuntimeError("boom")

        assert workers.submit(broken)
        assert await workers.wait(5)

    with caplog.at_level(logging.ERROR, logger="cachekit.background"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert "a background job failed" in caplog.text
    assert workers.running == 0


# -- framework view decorators: the view runs after its request ended -------------------------


def test_flask_cache_page_re_renders_in_the_background_inside_a_copy_of_the_request_context(
    clock: FakeClock,
) -> None:
    import flask

    from cachekit.contrib.flask import cache_page

    cache = _wsgi_cache(clock, "bg-flask")
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "bg-flask-secret-0123456789abcdef"
    renders: list[str] = []

    @app.get("/news")
    @cache_page(60, cache=cache, **SWR)
    def news() -> str:
        renders.append(flask.request.path)  # request-bound state, read in the background too
        return f"news {len(renders)} {flask.g.get('missing', '')}"

    client = app.test_client()
    try:
        assert client.get("/news").get_data() == b"news 1 "
        clock.advance(70)
        assert client.get("/news").get_data() == b"news 1 "  # stale at once
        assert news.page_cache.background.wait(5)  # type: ignore[attr-defined]
        assert renders == ["/news", "/news"]
        assert client.get("/news").get_data() == b"news 2 "
    finally:
        cache.clear()


def test_django_cache_page_re_renders_in_the_background(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.django_settings import configure_django

    configure_django()
    import django.db
    from django.http import HttpResponse
    from django.test import RequestFactory

    from cachekit.contrib.django import cache_page

    closes: list[int] = []  # the threads whose database connections were closed
    monkeypatch.setattr(django.db, "close_old_connections", lambda **_: closes.append(threading.get_ident()))

    cache = _wsgi_cache(clock, "bg-django")
    renders: list[int] = []

    @cache_page(60, cache=cache, **SWR)
    def view(request: Any) -> HttpResponse:
        renders.append(threading.get_ident())
        return HttpResponse(f"page {len(renders)} {request.GET.get('q', '')}")

    factory = RequestFactory()
    try:
        assert view(factory.get("/page?q=x")).content == b"page 1 x"
        clock.advance(70)
        assert view(factory.get("/page?q=x")).content == b"page 1 x"  # stale at once
        assert _django_engine(view).background.wait(5)
        assert len(renders) == 2
        assert renders[1] != threading.get_ident()  # rendered on a background thread
        assert closes == [renders[1], renders[1]]  # its connections closed around the view, as a request's
        assert view(factory.get("/page?q=x")).content == b"page 2 x"
    finally:
        cache.clear()


def _django_engine(view: Any) -> PageCache:
    """The PageCache a contrib.django cache_page built (it is made on first use)."""
    for cell in view.purge.__closure__:
        value = cell.cell_contents
        if callable(value) and getattr(value, "__name__", "") == "engine":
            engine: PageCache = value()
            return engine
    raise AssertionError("no engine in the decorator")


def test_every_wsgi_page_cache_of_a_process_shares_one_bounded_pool() -> None:
    first = PageCache(60, cache=Cache(LocMemBackend("bg-shared-1")), **SWR)
    second = PageCache(60, cache=Cache(LocMemBackend("bg-shared-2")), **SWR)
    other = PageCache(60, cache=Cache(LocMemBackend("bg-shared-3")), revalidate_workers=2, **SWR)

    assert first.background is second.background
    assert first.background.limit == 4
    assert other.background is not first.background
    assert other.background.limit == 2
