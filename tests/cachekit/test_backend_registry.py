"""The backend registry: one for the sync and the async backends, both extendable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import cachekit
import cachekit.aio
from cachekit import backends
from cachekit.backends import load_async_backend
from cachekit.backends import load_backend
from cachekit.backends import register_backend
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import ConfigurationError


@pytest.fixture
def registries() -> Iterator[None]:
    """Put both registries back as they were after the test."""
    sync, asynchronous = dict(backends._REGISTRY), dict(backends._ASYNC_REGISTRY)
    yield
    backends._REGISTRY.clear()
    backends._REGISTRY.update(sync)
    backends._ASYNC_REGISTRY.clear()
    backends._ASYNC_REGISTRY.update(asynchronous)


def test_a_registered_store_serves_both_fronts(registries: None) -> None:
    register_backend(
        "mymemory",
        "cachekit.backends.locmem:LocMemBackend",
        async_target="cachekit.backends.aio_locmem:AsyncLocMemBackend",
    )
    assert load_backend("mymemory") is LocMemBackend
    assert load_async_backend("MyMemory") is AsyncLocMemBackend
    cache = cachekit.from_url("mymemory://")
    cache.set("k", 1)
    assert cache.get("k") == 1

    async def round_trip() -> object:
        acache = cachekit.aio.from_url("mymemory://")
        await acache.set("k", 2)
        return await acache.get("k")

    assert asyncio.run(round_trip()) == 2


def test_a_sync_registration_leaves_the_async_registry_alone(registries: None) -> None:
    register_backend("syncstore", "cachekit.backends.locmem:LocMemBackend")
    assert load_backend("syncstore") is LocMemBackend
    with pytest.raises(ConfigurationError, match="Unknown async cache backend 'syncstore'"):
        load_async_backend("syncstore")


def test_the_async_registry_takes_dotted_paths() -> None:
    assert load_async_backend("cachekit.backends.aio_locmem.AsyncLocMemBackend") is AsyncLocMemBackend
    assert load_async_backend("cachekit.backends.aio_locmem:AsyncLocMemBackend") is AsyncLocMemBackend
    with pytest.raises(ConfigurationError, match="is not a cachekit async backend"):
        load_async_backend("cachekit.exceptions.ConfigurationError")
    with pytest.raises(ConfigurationError, match="Cannot import async backend"):
        load_async_backend("cachekit_no_such_module.Backend")


def test_the_old_async_import_path_is_the_registry() -> None:
    from cachekit.backends.aio_base import load_async_backend as old

    assert old is load_async_backend
