"""The backend registry: short names and URL schemes to backend classes, sync and async.

Entries are ``"module:Class"`` strings imported on first use, so ``import
cachekit`` needs neither redis-py nor pymemcache. Third-party backends are
named by a dotted path (``"myapp.backends.DiskBackend"``) or registered with
:func:`register_backend`, which takes the async backend of the same store too
(``cachekit.aio.from_url`` looks it up with :func:`load_async_backend`).
"""

from __future__ import annotations

import importlib
from typing import Any

from cachekit.backends.base import Backend
from cachekit.backends.base import Lock
from cachekit.exceptions import ConfigurationError

_REGISTRY: dict[str, str] = {
    "locmem": "cachekit.backends.locmem:LocMemBackend",
    "null": "cachekit.backends.null:NullBackend",
    "redis": "cachekit.backends.redis:RedisBackend",
    "rediss": "cachekit.backends.redis:RedisBackend",
    "unix": "cachekit.backends.redis:RedisBackend",
    "redis+sentinel": "cachekit.backends.redis:RedisBackend",
    "redis+cluster": "cachekit.backends.redis:RedisBackend",
    "memcached": "cachekit.backends.memcached:MemcachedBackend",
}
#: The same names for the async backends (``cachekit.aio``).
_ASYNC_REGISTRY: dict[str, str] = {
    "locmem": "cachekit.backends.aio_locmem:AsyncLocMemBackend",
    "redis": "cachekit.backends.redis.asyncio:AsyncRedisBackend",
    "rediss": "cachekit.backends.redis.asyncio:AsyncRedisBackend",
    "unix": "cachekit.backends.redis.asyncio:AsyncRedisBackend",
    "redis+sentinel": "cachekit.backends.redis.asyncio:AsyncRedisBackend",
    "redis+cluster": "cachekit.backends.redis.asyncio:AsyncRedisBackend",
    "memcached": "cachekit.backends.memcached.asyncio:AsyncMemcachedBackend",
}
# Django's (and django-redis's) BACKEND paths, so a CACHES block copied from Django
# settings works: their LOCATION forms are the ones our backends read.
_FRAMEWORK_PATHS: dict[str, str] = {
    "django.core.cache.backends.redis.RedisCache": "redis",
    "django_redis.cache.RedisCache": "redis",
    "django.core.cache.backends.memcached.PyMemcacheCache": "memcached",
    "django.core.cache.backends.memcached.PyLibMCCache": "memcached",
    "django.core.cache.backends.memcached.MemcachedCache": "memcached",
    "django.core.cache.backends.locmem.LocMemCache": "locmem",
    "django.core.cache.backends.dummy.DummyCache": "null",
}


def register_backend(name: str, target: str, *, async_target: str | None = None) -> None:
    """Make ``name`` (also usable as a URL scheme) refer to ``"module:Class"``.

    ``async_target`` names the async backend of the same store, for
    ``cachekit.aio.from_url``; without it only the sync registry changes.
    """
    _REGISTRY[name.lower()] = target
    if async_target is not None:
        _ASYNC_REGISTRY[name.lower()] = async_target


def registered_names() -> list[str]:
    """Return the known short names and URL schemes."""
    return sorted(_REGISTRY)


def load_backend(name: str) -> type[Any]:
    """Return the backend class for a short name, a URL scheme or a dotted path.

    Django's own ``BACKEND`` paths (``django.core.cache.backends.redis.RedisCache``
    and its siblings, ``django_redis.cache.RedisCache``) name the matching cachekit backend.

    :raises ConfigurationError: if the name is unknown, its module cannot be imported
        (for example redis-py is not installed), or the path names a class that is
        not a cachekit backend.
    """
    return _load(_FRAMEWORK_PATHS.get(name, name), _REGISTRY, "")


def load_async_backend(name: str) -> type[Any]:
    """Return the async backend class for a short name, a URL scheme or a dotted path.

    :raises ConfigurationError: as :func:`load_backend`, and for a store that has no
        async backend registered.
    """
    return _load(name, _ASYNC_REGISTRY, "async ")


def _load(name: str, registry: dict[str, str], kind: str) -> type[Any]:
    target = registry.get(name.lower())
    if target is None:
        if "." not in name:
            known = ", ".join(sorted(registry))
            raise ConfigurationError(
                f"Unknown {kind}cache backend {name!r}; use one of {known} or a dotted path.",
                setting="BACKEND",
            )
        module_name, _, class_name = name.replace(":", ".").rpartition(".")
    else:
        module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"Cannot import {kind}backend {name!r} ({exc}); install its client library, "
            "e.g. pip install 'cachekit-suite[redis]' or 'cachekit-suite[memcached]'.",
            setting="BACKEND",
        ) from exc
    try:
        cls: type[Any] = getattr(module, class_name)
    except AttributeError:
        raise ConfigurationError(
            f"Module {module_name!r} has no backend class {class_name!r}.", setting="BACKEND"
        ) from None
    if not (hasattr(cls, "from_url") and hasattr(cls, "from_location")):
        raise ConfigurationError(
            f"BACKEND {name!r} is not a cachekit {kind}backend (no from_url/from_location). Write a short "
            f"name ({', '.join(sorted(set(registry) & {'locmem', 'memcached', 'null', 'redis'}))}), "
            "a URL such as 'redis://127.0.0.1:6379/0', or the dotted path of a cachekit backend class.",
            setting="BACKEND",
        )
    return cls


__all__ = ["Backend", "Lock", "load_async_backend", "load_backend", "register_backend", "registered_names"]
