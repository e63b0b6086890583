"""Issue 13 items 8 and 9: locks no client can hold, one render per expiry; WSGI threads and ASGI tasks.

The slow reader through a real server is in ``test_servers.py``; these run
the engine in-process with a fake clock, so each interleaving is forced, not
hoped for.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import pytest

from cachekit import Cache
from cachekit import aio
from cachekit.aio import AsyncCache
from cachekit.aio_views import AsyncPageCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.views import PageCache
from tests.conftest import FakeClock
from tests.pages.shells import asgi_app
from tests.pages.shells import scope_for
from tests.wsgi import call_app
from tests.wsgi import make_environ

NOW = 1_700_000_000.0
WAIT = 5.0  # the longest any step may take before the test fails (never reached when it passes)


class GatedView:
    """A WSGI page that counts renders; while ``gate`` is set, each render waits for it to open."""

    def __init__(self, clock: FakeClock, render_seconds: float = 0.0) -> None:
        self.clock = clock
        self.render_seconds = render_seconds
        self.renders = 0
        self.started = threading.Semaphore(0)
        self.gate: threading.Event | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.renders += 1
        self.started.release()
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the gate never opened"
        self.clock.advance(self.render_seconds)
        start_response("200 OK", [("Cache-Control", "max-age=10")])
        return [b"render %d" % self.renders]


def _wsgi(view: GatedView, clock: FakeClock) -> tuple[Any, Cache]:
    cache = Cache(LocMemBackend(f"locks-{uuid.uuid4().hex}", clock=clock), clock=clock)
    engine = PageCache(60, cache=cache, lock_timeout=WAIT * 2)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return engine(view, environ, start_response)

    return app, cache


def _async_cache(clock: FakeClock) -> AsyncCache:
    return AsyncCache(AsyncLocMemBackend(f"locks-{uuid.uuid4().hex}", clock=clock), clock=clock)


def _in_thread(app: Any, headers: dict[str, str] | None = None) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call_app(app, make_environ("/hot", headers=headers))))
    thread.start()
    return thread, out


# -- 9. one render per expiry ---------------------------------------------------------------


def test_13_9_an_expiring_page_is_rendered_once_across_the_lookup_records_expiry() -> None:
    """A request that sees the URL's lookup record and one that comes after it expired take one lock."""
    clock = FakeClock(NOW)
    view = GatedView(clock, render_seconds=5)
    app, cache = _wsgi(view, clock)
    try:
        call_app(app, make_environ("/hot"))  # stored at t+5, fresh until t+10
        clock.now = NOW + 12  # stale; the old lookup record (t+5 + 10) still there
        view.gate = threading.Event()
        first, _ = _in_thread(app)
        assert view.started.acquire(timeout=WAIT)
        view.started.acquire(timeout=0)  # drop the first render's token, if any
        clock.now = NOW + 16  # the old code's lookup record expired here
        second, answers = _in_thread(app)
        view.started.acquire(timeout=0.5)  # a second render would start now (the bug)
        view.gate.set()
        first.join(WAIT)
        second.join(WAIT)
        assert view.renders == 2  # the first fill and one render for this expiry
        assert answers[0][2] == b"render 2"
    finally:
        cache.clear()


def test_13_9_asgi_an_expiring_page_is_rendered_once_across_the_lookup_records_expiry() -> None:
    clock = FakeClock(NOW)
    renders: list[int] = []
    gate = asyncio.Event()
    gated = False
    started = asyncio.Queue[int]()

    async def view(scope: dict[str, Any], receive: Any, send: Any) -> None:
        renders.append(1)
        await started.put(len(renders))
        if gated:
            await asyncio.wait_for(gate.wait(), WAIT)
        clock.advance(5)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"cache-control", b"max-age=10")]}
        )
        await send({"type": "http.response.body", "body": b"render %d" % len(renders)})

    async def main() -> None:
        nonlocal gated
        from tests.asgi import call_asgi

        cache = _async_cache(clock)
        engine = AsyncPageCache(60, cache=cache, lock_timeout=WAIT * 2)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await engine(view, scope, receive, send)

        scope = scope_for(make_environ("/hot"))
        try:
            await call_asgi(app, scope)
            await started.get()
            clock.now = NOW + 12
            gated = True
            first = asyncio.create_task(call_asgi(app, scope))
            await asyncio.wait_for(started.get(), WAIT)
            clock.now = NOW + 16
            second = asyncio.create_task(call_asgi(app, scope))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.get(), 0.5)  # a second render would start now (the bug)
            gate.set()
            await asyncio.wait_for(first, WAIT)
            answer = await asyncio.wait_for(second, WAIT)
            assert len(renders) == 2
            assert answer.body == b"render 2"
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())


# -- 8. a request's no-store does not switch the lock off ---------------------------------------------------


def test_13_8_ten_concurrent_misses_after_a_no_store_request_render_once() -> None:
    clock = FakeClock(NOW)
    view = GatedView(clock)
    app, cache = _wsgi(view, clock)
    try:
        call_app(app, make_environ("/hot", headers={"Cache-Control": "no-store"}))  # rendered, not stored
        view.gate = threading.Event()
        threads = [_in_thread(app) for _ in range(10)]
        assert view.started.acquire(timeout=WAIT)
        assert view.started.acquire(timeout=WAIT)  # the no-store render's token, then one of the ten
        extra = sum(view.started.acquire(timeout=0.3) for _ in range(9))  # other renders (the bug)
        view.gate.set()
        for thread, _ in threads:
            thread.join(WAIT)
        assert (view.renders, extra) == (2, 0)
        assert all(out[0][2] == b"render 2" for _, out in threads)
    finally:
        cache.clear()


def test_13_8_asgi_ten_concurrent_misses_after_a_no_store_request_render_once() -> None:
    clock = FakeClock(NOW)
    renders: list[int] = []
    gate = asyncio.Event()

    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(1)
        start_response("200 OK", [("Cache-Control", "max-age=10")])
        return [b"render %d" % len(renders)]

    bridged = asgi_app(plain)

    async def view(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if renders:
            await asyncio.wait_for(gate.wait(), WAIT)
        await bridged(scope, receive, send)

    async def main() -> None:
        from tests.asgi import call_asgi

        cache = _async_cache(clock)
        engine = AsyncPageCache(60, cache=cache, lock_timeout=WAIT * 2)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await engine(view, scope, receive, send)

        try:
            await call_asgi(app, scope_for(make_environ("/hot", headers={"Cache-Control": "no-store"})))
            tasks = [asyncio.create_task(call_asgi(app, scope_for(make_environ("/hot")))) for _ in range(10)]
            await asyncio.sleep(0.3)
            gate.set()
            answers = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
            assert len(renders) == 2
            assert {answer.body for answer in answers} == {b"render 2"}
        finally:
            await cache.clear()
            await cache.close()

    asyncio.run(main())


# -- 8. lock keys under the cache's prefix: a tenant confined by a Redis ACL --


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_13_8_lock_keys_live_under_the_key_prefix(redis_url: str, shell: str) -> None:
    import redis

    tenant = f"tenant{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", tenant, "on", ">pw", f"~{tenant}:*", "&*", "+@all")
    url = redis_url.replace("redis://", f"redis://{tenant}:pw@", 1)
    renders: list[int] = []

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(1)
        start_response("200 OK", [("Cache-Control", "max-age=60")])
        return [b"page"]

    try:
        if shell == "wsgi":
            import cachekit

            cache = cachekit.from_url(url, key_prefix=tenant)
            engine = PageCache(60, cache=cache)
            for _ in range(2):
                status, _, body = call_app(lambda e, s: engine(view, e, s), make_environ("/t"))
                assert (status, body) == ("200 OK", b"page")
            cache.clear()
            cache.close()
        else:

            async def main() -> None:
                from tests.asgi import call_asgi

                cache = aio.from_url(url, key_prefix=tenant)
                engine = AsyncPageCache(60, cache=cache)
                bridged = asgi_app(view)

                async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                    await engine(bridged, scope, receive, send)

                try:
                    for _ in range(2):
                        answer = await call_asgi(app, scope_for(make_environ("/t")))
                        assert (answer.status, answer.body) == (200, b"page")
                finally:
                    await cache.clear()
                    await cache.close()

            asyncio.run(main())
        assert renders == [1]  # the miss rendered under the lock; the second request was a hit
    finally:
        admin.execute_command("ACL", "DELUSER", tenant)
        admin.close()
