"""cachekit.contrib.django.CacheBackend behaves as Django's cache API promises, on every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.django_settings import configure_django

pytest.importorskip("django")
configure_django()

from django.core.cache import CacheKeyWarning  # noqa: E402
from django.core.cache import caches  # noqa: E402

from cachekit.contrib.django import CacheBackend  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402


@pytest.fixture(params=["locmem", "redis", "memcached"])
def cache(request: pytest.FixtureRequest) -> Iterator[CacheBackend]:
    if request.param == "locmem":
        backend = caches["default"]
    else:
        server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
        backend = CacheBackend(f"{request.param}://{server.address}", {"KEY_PREFIX": "dj"})
    backend.clear()
    yield backend
    backend.clear()


def test_django_finds_the_backend() -> None:
    assert isinstance(caches["default"], CacheBackend)


def test_set_get_delete(cache: CacheBackend) -> None:
    cache.set("k", {"a": 1})
    assert cache.get("k") == {"a": 1}
    assert cache.delete("k") is True
    assert cache.get("k", "gone") == "gone"


def test_add(cache: CacheBackend) -> None:
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    assert cache.get("k") == 1


def test_timeout_zero_expires_at_once(cache: CacheBackend) -> None:
    cache.set("k", "v", 0)
    assert cache.get("k") is None


def test_timeout_none_never_expires(cache: CacheBackend) -> None:
    cache.set("k", "v", None)
    assert cache.get("k") == "v"


def test_short_timeout_expires(cache: CacheBackend) -> None:
    cache.set("k", "v", 1)
    deadline = time.monotonic() + 3
    while cache.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get("k") is None


def test_versions(cache: CacheBackend) -> None:
    cache.set("k", "v1", version=1)
    cache.set("k", "v2", version=2)
    assert cache.get("k", version=1) == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.incr_version("k", version=2) == 3
    assert cache.get("k", version=3) == "v2"
    assert cache.get("k", version=2) is None


def test_incr_decr_and_missing(cache: CacheBackend) -> None:
    cache.set("n", 5)
    assert cache.incr("n") == 6
    assert cache.decr("n", 2) == 4
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


def test_get_or_set(cache: CacheBackend) -> None:
    assert cache.get_or_set("k", lambda: "computed") == "computed"
    assert cache.get_or_set("k", "other") == "computed"


def test_many(cache: CacheBackend) -> None:
    assert cache.set_many({"a": 1, "b": 2}) == []
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    cache.delete_many(["a"])
    assert cache.get_many(["a", "b"]) == {"b": 2}


def test_touch_and_has_key(cache: CacheBackend) -> None:
    cache.set("k", "v", 1)
    assert cache.touch("k", None) is True
    assert cache.has_key("k")
    assert "k" in cache
    assert cache.touch("absent") is False


def test_key_validation_warning_like_django(cache: CacheBackend) -> None:
    with pytest.warns(CacheKeyWarning):
        cache.set("has space", 1)
    with pytest.warns(CacheKeyWarning):
        assert cache.get("has space") == 1


def test_async_methods(cache: CacheBackend) -> None:
    async def scenario() -> Any:
        await cache.aset("a", 1)
        await cache.aincr("a")
        return await cache.aget("a"), await cache.aget_or_set("b", "x"), await cache.ahas_key("a")

    assert asyncio.run(scenario()) == (2, "x", True)


def test_same_location_shares_store() -> None:
    caches["default"].set("shared", "yes")
    assert caches["prefixed"].get("shared") is None  # other prefix and version
    other = CacheBackend("django-default", {})
    assert other.get("shared") == "yes"
    assert other.cache.backend is caches["default"].cache.backend


def test_prefix_scopes_clear() -> None:
    caches["default"].set("keep", 1)
    caches["prefixed"].set("drop", 1)
    caches["prefixed"].clear()
    assert caches["prefixed"].get("drop") is None
    assert caches["default"].get("keep") == 1


def test_max_entries_option_maps_to_locmem() -> None:
    short = caches["short"]
    assert short.cache.backend.max_entries == 50
    assert short.default_timeout == 1


def test_close_keeps_working() -> None:
    caches["default"].set("k", 1)
    caches["default"].close()
    assert caches["default"].get("k") == 1
