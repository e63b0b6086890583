"""Soft tag invalidation in our page cache: the page turns stale (served while it re-renders), not missing.

Another request's re-render is simulated by holding the URL's stampede lock:
while it is held, a stale page in its window is served at once; a page with no
stale copy to serve waits for the lock (``lock_timeout``) and renders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit.edge import AsyncPurges
from cachekit.edge import Purges
from cachekit.pages.engine import LOCK_KEY
from cachekit.pages.soft import soft_invalidate_tags
from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for

URL = "http://example.com/page"


class Counter:
    def __init__(self) -> None:
        self.renders = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.renders += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")])
        return [f"render {self.renders}".encode()]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> Iterator[tuple[Shell, Counter, FakeClock]]:
    clock, counter = FakeClock(), Counter()
    made = Shell(
        request.param,
        counter,
        clock=clock,
        tags=["news"],
        stale_while_revalidate=30,
        lock_timeout=0.05,
        cache_status=True,
    )
    yield made, counter, clock
    made.close()


def body(shell: Shell) -> bytes:
    return shell(environ_for("/page"))[2]


def invalidate(shell: Shell, soft: bool) -> None:
    if shell.kind == "wsgi":
        Purges(shell.cache).invalidate_tags("news", soft=soft)
    else:
        assert shell._runner is not None
        shell._runner.run(AsyncPurges(shell.cache).invalidate_tags("news", soft=soft))


def settle(shell: Shell) -> None:
    """Wait for the shell's background re-renders, if it runs them (``background_revalidate``)."""
    workers = getattr(shell.engine, "background", None)
    if workers is None:
        return
    if shell._runner is None:
        assert workers.wait(5.0)
    else:
        assert shell._runner.run(workers.wait(5.0))


class HeldLock:
    """The URL's stampede lock, held as a request re-rendering the page would hold it."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        name = shell.cache.make_key(LOCK_KEY + shell.engine.engine.purge_hash(URL))
        self.lock = shell.cache.backend.lock(name, ttl=30)

    def _run(self, result: Any) -> Any:
        if asyncio.iscoroutine(result):
            assert self.shell._runner is not None
            return self.shell._runner.run(result)
        return result

    def __enter__(self) -> HeldLock:
        assert self._run(self.lock.acquire(False, -1))
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self.lock.release())


def test_a_soft_invalidated_page_is_served_stale_while_another_request_re_renders(
    shell: tuple[Shell, Counter, FakeClock],
) -> None:
    page, counter, clock = shell
    assert body(page) == b"render 1"
    clock.advance(1)
    invalidate(page, soft=True)
    with HeldLock(page):
        status, headers, stale = page(environ_for("/page"))
    assert stale == b"render 1"
    assert counter.renders == 1
    member = {name.lower(): value for name, value in headers}["cache-status"].split(";")
    assert "hit" in member
    ttl = next(float(part[4:]) for part in member if part.startswith("ttl="))
    assert ttl <= 0  # served stale: it went stale at the purge
    age = int({name.lower(): value for name, value in headers}["age"])
    assert age >= 60  # so a proxy in front does not keep it as fresh (its max-age is 60)
    body(page)  # the lock is free: this request re-renders (inline, or in the background)
    settle(page)
    assert body(page) == b"render 2"  # stored, with the tag's new generation
    assert counter.renders == 2


def test_a_hard_invalidated_page_is_never_served_stale(shell: tuple[Shell, Counter, FakeClock]) -> None:
    page, counter, _ = shell
    assert body(page) == b"render 1"
    invalidate(page, soft=False)
    with HeldLock(page):
        assert body(page) == b"render 2"  # waited lock_timeout, then rendered itself


def test_the_stale_window_runs_from_the_soft_purge(shell: tuple[Shell, Counter, FakeClock]) -> None:
    page, counter, clock = shell
    assert body(page) == b"render 1"
    invalidate(page, soft=True)
    clock.advance(31)  # past stale_while_revalidate=30 counted from the purge (the page's max-age is 60)
    with HeldLock(page):
        assert body(page) == b"render 2"


def test_a_hard_invalidation_after_a_soft_one_wins(shell: tuple[Shell, Counter, FakeClock]) -> None:
    page, _, _ = shell
    assert body(page) == b"render 1"
    invalidate(page, soft=True)
    invalidate(page, soft=True)
    with HeldLock(page):
        assert body(page) == b"render 1"  # two soft purges: still stale
    invalidate(page, soft=False)
    with HeldLock(page):
        assert body(page) == b"render 2"


def test_entries_of_get_or_set_treat_a_soft_invalidation_as_hard() -> None:
    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend

    cache = Cache(LocMemBackend("edge-soft-get-or-set"))
    cache.clear()
    values = iter(range(10))
    first = cache.get_or_set("k", lambda: next(values), tags=["t"])
    soft_invalidate_tags(cache, ["t"])
    assert cache.get_or_set("k", lambda: next(values), tags=["t"]) == first + 1
