"""A Django cache backend over any cachekit backend.

Use it in Django's own ``CACHES`` setting::

    CACHES = {
        "default": {
            "BACKEND": "cachekit.contrib.django.CacheBackend",
            "LOCATION": "redis://127.0.0.1:6379/0",   # any cachekit URL, or a locmem name
            "TIMEOUT": 300,
            "KEY_PREFIX": "site",
            "OPTIONS": {"socket_timeout": 0.5},       # cachekit cache and backend options
        }
    }

Django builds keys (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``) and warns
about keys memcached could not hold, exactly as its own backends do; cachekit
stores them. Timeouts follow Django: ``None`` never expires, ``0`` or less
means the value expires at once. Instances with the same ``LOCATION`` and
``OPTIONS`` share one store (and one connection pool) per process, as
Django's locmem does; ``close()`` is therefore a no-op: the pool outlives the
request. With cachekit's default failure policy an outage makes reads misses
and writes no-ops; set ``OPTIONS={"on_error": "raise"}`` to get Django's
raising behaviour instead. Django is imported only when this module is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.base import BaseCache

from cachekit.cache import Cache
from cachekit.config import from_settings

# Django's own locmem options, translated for cachekit's locmem backend.
_DJANGO_OPTIONS = {"MAX_ENTRIES": "max_entries", "CULL_FREQUENCY": None}
_shared: dict[tuple[str, str], Any] = {}
_shared_guard = threading.Lock()


def _same_key(key: str, key_prefix: str, version: int) -> str:
    """Django has already built the key; store it as it is."""
    return key


def _shared_backend(location: str, options: Mapping[str, Any]) -> Any:
    """Return the one backend for this location and options in this process."""
    identity = (location, repr(sorted(options.items())))
    with _shared_guard:
        backend = _shared.get(identity)
        if backend is None:
            if "://" in location:
                settings: dict[str, Any] = {"BACKEND": location, "OPTIONS": dict(options)}
            else:
                settings = {"BACKEND": "locmem", "LOCATION": location, "OPTIONS": dict(options)}
            backend = _shared[identity] = from_settings(settings).backend
        return backend


class CacheBackend(BaseCache):  # type: ignore[misc]
    """A Django cache backend storing into cachekit (local memory, Redis or memcached)."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        for django_name, ours in _DJANGO_OPTIONS.items():
            value = options.pop(django_name, None)
            if ours is not None and value is not None and "://" not in (location or ""):
                options[ours] = value
        cache_options = {
            name: options.pop(name)
            for name in ("on_error", "serializer", "compress_threshold", "lock_timeout", "lock_ttl")
            if name in options
        }
        backend = _shared_backend(location or "", options)
        probe = from_settings({"BACKEND": "null", "OPTIONS": cache_options})
        #: The cachekit cache doing the storing; Django builds its keys.
        self.cache = Cache(
            backend,
            default_timeout=None,
            key_prefix=self.key_prefix,
            key_function=_same_key,
            serializer=probe.serializer,
            on_error=probe.on_error,
            lock_timeout=probe.lock_timeout,
            lock_ttl=probe.lock_ttl,
            name=location or "",
        )

    def _timeout(self, timeout: Any) -> Any:
        return self.default_timeout if timeout is DEFAULT_TIMEOUT else timeout

    def _key(self, key: Any, version: int | None) -> str:
        made: str = self.make_and_validate_key(key, version=version)
        return made

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self.cache.add(self._key(key, version), value, self._timeout(timeout))

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self.cache.get(self._key(key, version), default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self.cache.set(self._key(key, version), value, self._timeout(timeout))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self.cache.touch(self._key(key, version), self._timeout(timeout))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self.cache.delete(self._key(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        by_made = {self._key(key, version): key for key in keys}
        found = self.cache.get_many(list(by_made))
        return {by_made[made]: value for made, value in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.cache.has_key(self._key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.cache.incr(self._key(key, version), delta)

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.cache.incr(self._key(key, version), -delta)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(key, version): key for key in data}
        items = {made: data[key] for made, key in by_made.items()}
        failed = self.cache.set_many(items, self._timeout(timeout))
        return [by_made[made] for made in failed]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self.cache.delete_many([self._key(key, version) for key in keys])

    def clear(self) -> None:
        """Remove the keys under this cache's ``KEY_PREFIX`` (every key when it has none)."""
        self.cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Keep the shared connection pool open across requests."""
