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

import functools
import pickle
import re
import threading
from collections.abc import Callable
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


# -- per-view page caching --------------------------------------------------------------


def _page_store(cache: Cache | str | None) -> Cache:
    """The cachekit cache pages go to: a cachekit ``Cache``, or the one behind a ``CACHES`` alias."""
    if isinstance(cache, Cache):
        return cache
    from django.core.cache import caches

    alias = cache or "default"
    django_cache = caches[alias]
    if not isinstance(django_cache, CacheBackend):
        raise ConfigurationError(
            f"cache_page stores pages through cachekit: CACHES[{alias!r}] must use "
            f"'cachekit.contrib.django.CacheBackend' (it uses {type(django_cache).__name__}), "
            "or pass cache=<a cachekit Cache>.",
            setting="CACHES",
        )
    # Django builds the keys of its own calls; pages get cachekit's keys under the same prefix.
    pages: Cache = django_cache.cache.replace(key_function=None, name=f"django:{alias}:pages")
    return pages


def cache_page(
    timeout: Any = DEFAULT_TIMEOUT,
    *,
    cache: Cache | str | None = None,
    key_prefix: str | None = None,
    **settings: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a Django view's responses with cachekit's HTTP-correct page engine.

    Django's idiom, ``@cache_page(60 * 15)`` on the view or
    ``path("news/", cache_page(60)(news))`` in ``urls.py``; ``cache`` is a
    ``CACHES`` alias (using :class:`CacheBackend`) or a cachekit
    :class:`~cachekit.Cache`. The engine is :func:`cachekit.pages.cache_page`'s:
    ``GET``/``HEAD`` only, ``Vary`` honoured (``Vary: Cookie`` is added when the
    view used ``request.session``, before the engine decides, since Django's
    session middleware adds it only later), never a response that sets a
    cookie, is ``private``/``no-store`` or answers ``Authorization``, 304 for
    conditional requests, ``Age`` on served pages. Other keywords are
    :class:`~cachekit.pages.PageOptions` fields.

    :raises ConfigurationError: on first use, if the alias is not a cachekit cache.
    """
    from cachekit.pages import PageCache

    if key_prefix is not None:
        settings["key_prefix"] = key_prefix
    page_timeout = DEFAULT_PAGE_TIMEOUT if timeout is DEFAULT_TIMEOUT else timeout
    engines: list[PageCache] = []
    guard = threading.Lock()

    def engine() -> PageCache:
        if not engines:
            with guard:
                if not engines:
                    engines.append(PageCache(page_timeout, cache=_page_store(cache), **settings))
        return engines[0]

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return _through_engine(engine(), view, request, args, kwargs)

        wrapper.purge = lambda url: engine().purge(url)  # type: ignore[attr-defined]
        return wrapper

    return decorator


def _through_engine(engine: Any, view: Callable[..., Any], request: Any, args: Any, kwargs: Any) -> Any:
    from django.http import HttpResponse
    from django.utils.cache import patch_vary_headers

    environ = dict(request.META)
    environ.setdefault("wsgi.url_scheme", request.scheme)
    environ.setdefault("REQUEST_METHOD", request.method)
    environ.setdefault("PATH_INFO", request.path_info)
    produced: list[Any] = []
    answer: dict[str, Any] = {}
    request_thread = threading.get_ident()

    def render(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if threading.get_ident() != request_thread:
            # A background re-render (stale_while_revalidate) on cachekit's thread: its database
            # connections are that thread's, closed around the view as Django does around a request.
            from django.db import close_old_connections

            close_old_connections()
            try:
                return render_view(environ, start_response)
            finally:
                close_old_connections()
        return render_view(environ, start_response)

    def render_view(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        response = view(request, *args, **kwargs)
        if callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
            response = response.render() or response
        session = getattr(request, "session", None)
        if session is not None and getattr(session, "accessed", False):
            patch_vary_headers(response, ("Cookie",))
        produced.append(response)
        headers = list(response.items())
        headers += [("Set-Cookie", morsel.OutputString()) for morsel in response.cookies.values()]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        # Not the response itself: its close() would fire Django's request_finished mid-request.
        return iter(response) if response.streaming else [response.content]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = status, headers
        return lambda data: None

    body_iterable = engine(render, environ, start_response)
    try:
        body = b"".join(body_iterable)
    finally:
        close = getattr(body_iterable, "close", None)
        if close is not None:
            close()
    status: str = answer["status"]
    code = int(status[:3])
    merged: dict[str, list[str]] = {}
    for name, value in answer["headers"]:
        if name.lower() != "set-cookie":
            merged.setdefault(name, []).append(value)
    original = produced[0] if produced else None
    if original is not None and original.status_code == code and not original.streaming:
        response = original
        for name in [name for name in response.headers if name not in merged]:
            del response[name]
        if response.content != body:
            response.content = body
    else:
        response = HttpResponse(body, status=code, reason=status[4:] or None)
        if original is not None:
            response.cookies = original.cookies
    for name, values in merged.items():
        response[name] = ", ".join(values)
    return response


#: Lifetime of pages whose response states none, when ``cache_page()`` gets no timeout.
DEFAULT_PAGE_TIMEOUT = 300


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
