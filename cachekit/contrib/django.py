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

or switch from Django's own backend by changing only ``BACKEND``: the classes
:class:`RedisCache`, :class:`PyMemcacheCache` (alias :class:`MemcachedCache`)
and :class:`LocMemCache` read ``LOCATION`` as Django's namesakes do
(``"127.0.0.1:11211"``, ``"unix:/tmp/memcached.sock"``, a list of servers, a
Redis URL, a locmem name). ``CacheBackend`` itself takes a cachekit URL, a
locmem name (letters, digits, ``_ . -``), or any of those forms with
``OPTIONS={"backend": "memcached"}`` (or ``"redis"``, ``"locmem"``). Anything
else raises :class:`~cachekit.exceptions.ConfigurationError` when Django builds
the cache: an address never silently becomes per-process local memory.

Django builds keys (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``) and warns
about keys memcached could not hold, exactly as its own backends do; cachekit
stores them. Timeouts follow Django: ``None`` never expires, ``0`` or less
means the value expires at once. Instances with the same ``LOCATION`` and
``OPTIONS`` share one store (and one connection pool) per process, as
Django's locmem does; ``close()`` is therefore a no-op: the pool outlives the
request. With cachekit's default failure policy an outage makes reads misses
and writes no-ops; set ``OPTIONS={"on_error": "raise"}`` to get Django's
raising behaviour instead. Django is imported only when this module is.

Where Django's callers expect builtin errors they get them: an unpicklable value
raises :class:`PicklingError` (a :class:`~cachekit.exceptions.SerializationError`
and a :class:`pickle.PicklingError`), ``incr`` on a value that is not an integer
a :class:`NotAnIntegerError` (a ``TypeError``), ``incr`` on a missing key a
``ValueError``. ``add(key, value, 0)`` returns ``True`` for an absent key and
stores nothing, as Django's backends do. ``caches[alias]`` is one instance per
thread (Django's ``CacheHandler``); the instances share one store. Add
``"cachekit.contrib.django.CachekitConfig"`` to ``INSTALLED_APPS`` and
``manage.py check`` validates every cachekit cache and the session engine's
cache alias without connecting (the check also registers itself when this
module is first imported).
"""

from __future__ import annotations

import pickle
import re
import threading
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.base import BaseCache

from cachekit.cache import Cache
from cachekit.config import from_settings
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError

# Django's own locmem options, translated for cachekit's locmem backend.
_DJANGO_OPTIONS = {"MAX_ENTRIES": "max_entries", "CULL_FREQUENCY": None}
_CACHE_OPTIONS = ("on_error", "serializer", "compress_threshold", "lock_timeout", "lock_ttl")
_KINDS = ("redis", "memcached", "locmem")
#: A LOCATION that can only be a locmem store name (no host, port or path in it).
_LOCMEM_NAME = re.compile(r"[\w.-]*")
_shared: dict[tuple[str, str], Any] = {}
_shared_guard = threading.Lock()


class PicklingError(SerializationError, pickle.PicklingError):
    """A value could not be pickled: what Django's callers catch (``pickle.PickleError``)."""


class NotAnIntegerError(BackendError, TypeError):
    """``incr``/``decr`` on a value that is not an integer: a ``TypeError``, as in Django's locmem."""


def _same_key(key: str, key_prefix: str, version: int) -> str:
    """Django has already built the key; store it as it is."""
    return key


def _backend_settings(kind: str | None, location: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the cachekit ``from_settings`` entry for a Django LOCATION read as ``kind``.

    :raises ConfigurationError: for a location that is neither a cachekit URL nor,
        read as ``kind`` (default: locmem for a bare name), a form Django takes.
    """
    if kind is not None and kind not in _KINDS:
        raise ConfigurationError(
            f"OPTIONS['backend'] must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}.",
            setting="OPTIONS",
        )
    if isinstance(location, str) and "://" in location and kind is None:
        return {"BACKEND": location, "OPTIONS": dict(options)}
    if kind is None:
        if location is None or (isinstance(location, str) and _LOCMEM_NAME.fullmatch(location)):
            kind = "locmem"
        else:
            raise ConfigurationError(
                f"LOCATION {location!r} is not a cachekit URL or a local-memory name. Use a URL "
                "('redis://127.0.0.1:6379/0', 'memcached://127.0.0.1:11211'), or say how to read it: "
                "OPTIONS={'backend': 'memcached'} or BACKEND 'cachekit.contrib.django.PyMemcacheCache' "
                "(or RedisCache).",
                setting="LOCATION",
            )
    if isinstance(location, Sequence) and not isinstance(location, str):
        location = list(location)  # a memcached pool, or redis+sentinel/cluster hosts
    return {"BACKEND": kind, "LOCATION": location, "OPTIONS": dict(options)}


def _shared_backend(kind: str | None, location: Any, options: Mapping[str, Any]) -> Any:
    """Return the one backend for this location and options in this process."""
    identity = (f"{kind}|{location!r}", repr(sorted(options.items())))
    with _shared_guard:
        backend = _shared.get(identity)
        if backend is None:
            backend = _shared[identity] = from_settings(_backend_settings(kind, location, options)).backend
        return backend


class CacheBackend(BaseCache):  # type: ignore[misc]
    """A Django cache backend storing into cachekit (local memory, Redis or memcached).

    :raises ConfigurationError: for a ``LOCATION`` or ``OPTIONS`` cachekit cannot use.
    """

    #: How a LOCATION without a scheme is read; ``OPTIONS["backend"]`` overrides it.
    backend_kind: str | None = None

    def __init__(self, location: Any, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        kind = options.pop("backend", self.backend_kind)
        for django_name, ours in _DJANGO_OPTIONS.items():
            value = options.pop(django_name, None)
            url = isinstance(location, str) and "://" in location
            if ours is not None and value is not None and not url and kind in (None, "locmem"):
                options[ours] = value
        cache_options = {name: options.pop(name) for name in _CACHE_OPTIONS if name in options}
        if isinstance(location, str) and not location:
            location = None
        backend = _shared_backend(kind, location, options)
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
            name=location if isinstance(location, str) else repr(location),
        )

    def _timeout(self, timeout: Any) -> Any:
        return self.default_timeout if timeout is DEFAULT_TIMEOUT else timeout

    def _key(self, key: Any, version: int | None) -> str:
        made: str = self.make_and_validate_key(key, version=version)
        return made

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        made = self._key(key, version)
        timeout = self._timeout(timeout)
        try:
            if timeout is not None and timeout <= 0:
                # Django: True for an absent key, and the value expires at once.
                self.cache.serializer.dumps(value)
                return not self.cache.has_key(made)
            return self.cache.add(made, value, timeout)
        except SerializationError as exc:
            raise PicklingError(str(exc), key=str(key)) from exc

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self.cache.get(self._key(key, version), default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        try:
            self.cache.set(self._key(key, version), value, self._timeout(timeout))
        except SerializationError as exc:
            raise PicklingError(str(exc), key=str(key)) from exc

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
        try:
            return self.cache.incr(self._key(key, version), delta)
        except BackendUnavailableError:
            raise
        except BackendError as exc:
            raise NotAnIntegerError(
                f"The value under {key!r} is not an integer; incr/decr need one."
            ) from exc

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr(key, -delta, version)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(key, version): key for key in data}
        items = {made: data[key] for made, key in by_made.items()}
        try:
            failed = self.cache.set_many(items, self._timeout(timeout))
        except SerializationError as exc:
            raise PicklingError(str(exc), key=exc.key) from exc
        return [by_made[made] for made in failed]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self.cache.delete_many([self._key(key, version) for key in keys])

    def clear(self) -> None:
        """Remove the keys under this cache's ``KEY_PREFIX`` (every key when it has none)."""
        self.cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Keep the shared connection pool open across requests."""


class RedisCache(CacheBackend):
    """:class:`CacheBackend` reading ``LOCATION`` as Django's ``RedisCache`` does (a URL or ``host:port``).

    A list of several ``redis://`` URLs (Django's primary plus replicas) is
    refused: cachekit talks to one server, a Sentinel group or a Cluster.
    """

    backend_kind = "redis"


class PyMemcacheCache(CacheBackend):
    """:class:`CacheBackend` reading ``LOCATION`` as Django's ``PyMemcacheCache`` does.

    ``"127.0.0.1:11211"``, ``"unix:/path"``, ``"h1:11211;h2:11211"`` or a list of addresses.
    """

    backend_kind = "memcached"


#: Django's older memcached backend name, for settings that still use it.
MemcachedCache = PyMemcacheCache


class LocMemCache(CacheBackend):
    """:class:`CacheBackend` reading ``LOCATION`` as a store name, as Django's ``LocMemCache``."""

    backend_kind = "locmem"


# -- manage.py check -----------------------------------------------------------------


def check_cachekit_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check every ``CACHES`` entry that uses a cachekit backend, and the session engine's alias.

    Builds each configuration without touching the network (clients connect on
    first use), so a bad ``LOCATION`` or ``OPTIONS`` fails ``manage.py check``.
    """
    from django.conf import settings
    from django.utils.module_loading import import_string

    errors: list[checks.CheckMessage] = []
    configured = getattr(settings, "CACHES", {}) or {}
    cachekit_aliases = set()
    for alias, config in configured.items():
        path = config.get("BACKEND", "")
        try:
            backend_class = import_string(path)
        except ImportError:
            continue
        if not (isinstance(backend_class, type) and issubclass(backend_class, CacheBackend)):
            continue
        cachekit_aliases.add(alias)
        try:
            options = dict(config.get("OPTIONS") or {})
            kind = options.pop("backend", backend_class.backend_kind)
            for name in (*_CACHE_OPTIONS, *_DJANGO_OPTIONS):
                options.pop(name, None)
            from_settings(_backend_settings(kind, config.get("LOCATION") or None, options))
        except ConfigurationError as exc:
            errors.append(
                checks.Error(
                    f"CACHES[{alias!r}]: {exc}",
                    hint="See docs/migrating.md for the LOCATION forms each cachekit backend takes.",
                    obj=path,
                    id="cachekit.E001",
                )
            )
    if getattr(settings, "SESSION_ENGINE", "") == "sessions.contrib.django" and not getattr(
        settings, "CACHEKIT_SESSION_STORE", None
    ):
        alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
        if alias not in cachekit_aliases:
            errors.append(
                checks.Error(
                    f"SESSION_ENGINE 'sessions.contrib.django' keeps sessions in CACHES[{alias!r}], "
                    "which does not use a cachekit backend.",
                    hint="Use 'cachekit.contrib.django.CacheBackend' there, or set CACHEKIT_SESSION_STORE.",
                    id="cachekit.E002",
                )
            )
    return errors


checks.register(check_cachekit_settings, checks.Tags.caches)


class CachekitConfig(AppConfig):  # type: ignore[misc]
    """Add ``"cachekit.contrib.django.CachekitConfig"`` to ``INSTALLED_APPS`` for ``manage.py check``."""

    name = "cachekit.contrib"
    label = "cachekit"
    verbose_name = "cachekit"
