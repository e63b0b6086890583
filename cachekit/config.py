"""Configuration: cache URLs, Django-style settings mappings and the ``caches`` registry.

Three ways to get a :class:`~cachekit.Cache`::

    cache = from_url("redis://127.0.0.1:6379/0?timeout=60&key_prefix=app")
    configure(CACHES={"default": {"BACKEND": "locmem", "TIMEOUT": 60}})
    cache = caches["default"]

With nothing configured, ``caches["default"]`` comes from the ``CACHEKIT_URL``
environment variable, or ``locmem://`` when that is unset too. Every option is
checked when the cache is built: a misspelled option, an unknown backend, a
malformed URL or a value of the wrong type raises :class:`ConfigurationError`
naming the setting and the bad value.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from cachekit.backends import load_backend
from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from cachekit.exceptions import ConfigurationError
from cachekit.serializers import JSONSerializer
from cachekit.serializers import PickleSerializer
from cachekit.serializers import Serializer
from cachekit.signing import ENV_VAR as SIGNING_ENV_VAR
from cachekit.signing import SignedSerializer
from cachekit.signing import keys_from_env

#: Environment variable holding the default cache's URL.
ENV_VAR = "CACHEKIT_URL"
DEFAULT_URL = "locmem://"

# Options that belong to Cache (or its serializer) rather than to the backend.
_CACHE_OPTIONS: dict[str, type] = {
    "timeout": float,
    "key_prefix": str,
    "version": int,
    "on_error": str,
    "serializer": str,
    "compress_threshold": int,
    "lock_timeout": float,
    "lock_ttl": float,
    "latency_sample_every": int,
}
_SETTINGS_KEYS = (
    "BACKEND",
    "LOCATION",
    "TIMEOUT",
    "KEY_PREFIX",
    "VERSION",
    "KEY_FUNCTION",
    "SIGNING_KEYS",
    "OPTIONS",
)
# Query parameters refused in URLs: a secret in a URL leaks into logs and process lists.
_SECRET_QUERY = frozenset({"signing_key", "signing_keys"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce_option(name: str, value: Any, kind: type, *, from_text: bool = True) -> Any:
    """Convert ``value`` (a URL string or a Python value) to ``kind``.

    ``None`` (or the string ``"none"`` for non-str options) passes through.
    With ``from_text=False`` (settings written in Python) strings are not
    converted: ``VERSION="2"`` is an error, not ``2``.

    :raises ConfigurationError: naming ``name`` when the value does not fit.
    """
    if value is None:
        return None
    if from_text and isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if text == "none":
            return None
        try:
            if kind is bool:
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise ValueError(value)
            return kind(text)
        except ValueError:
            raise ConfigurationError(
                f"Option {name!r} must be {kind.__name__}, got {value!r}.", setting=name
            ) from None
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigurationError(f"Option {name!r} must be {kind.__name__}, got {value!r}.", setting=name)
    return value


def _split_options(
    options: Mapping[str, Any], backend_cls: type[Any], *, from_text: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate cache options from backend options, converting both; reject unknown names."""
    backend_options: Mapping[str, type] = getattr(backend_cls, "OPTIONS", {})
    cache_kwargs: dict[str, Any] = {}
    backend_kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if name in _CACHE_OPTIONS:
            cache_kwargs[name] = coerce_option(name, value, _CACHE_OPTIONS[name], from_text=from_text)
        elif name in backend_options:
            backend_kwargs[name] = coerce_option(name, value, backend_options[name], from_text=from_text)
        else:
            known = ", ".join(sorted({*_CACHE_OPTIONS, *backend_options}))
            raise ConfigurationError(
                f"Unknown option {name!r} for {backend_cls.__name__}; known options: {known}.",
                setting=name,
            )
    return cache_kwargs, backend_kwargs


def _build_cache(
    backend: Any,
    cache_kwargs: dict[str, Any],
    name: str,
    cache_class: type[Any] = Cache,
    signing_keys: Any = None,
) -> Any:
    serializer_name = cache_kwargs.pop("serializer", None) or "pickle"
    threshold = cache_kwargs.pop("compress_threshold", None)
    serializer: Serializer
    if serializer_name == "pickle":
        serializer = PickleSerializer(compress_threshold=threshold)
    elif serializer_name == "json":
        serializer = JSONSerializer(compress_threshold=threshold)
    else:
        raise ConfigurationError(
            f"serializer must be 'pickle' or 'json', got {serializer_name!r}.", setting="serializer"
        )
    if signing_keys is None:
        signing_keys = keys_from_env(os.environ.get(SIGNING_ENV_VAR))
    if signing_keys is not None:
        serializer = SignedSerializer(serializer, signing_keys)
    if "timeout" in cache_kwargs:
        cache_kwargs["default_timeout"] = cache_kwargs.pop("timeout")
    return cache_class(backend, serializer=serializer, name=name, **cache_kwargs)


def from_url(url: str, *, name: str = "", **options: Any) -> Cache:
    """Build a :class:`~cachekit.Cache` from a URL such as ``locmem://name?timeout=60``.

    Query parameters and keyword ``options`` (which win) may be cache options
    (``timeout``, ``key_prefix``, ``version``, ``on_error``, ``serializer``,
    ``compress_threshold``, ``lock_timeout``, ``lock_ttl``) or options of the
    backend named by the scheme. ``signing_keys`` (a key or a list, newest
    first; see :mod:`cachekit.signing`) is a keyword only: the URL refuses it.

    :raises ConfigurationError: for a malformed URL, an unknown scheme or option,
        or a value of the wrong type.
    """
    cache: Cache = cache_from_url(url, name=name, options=options, load=load_backend, cache_class=Cache)
    return cache


def cache_from_url(
    url: str,
    *,
    name: str,
    options: dict[str, Any],
    load: Callable[[str], type[Any]],
    cache_class: type[Any],
) -> Any:
    """Parse ``url`` and build ``cache_class`` over the backend ``load(scheme)`` returns.

    The one URL parser behind :func:`from_url` and :func:`cachekit.aio.from_url`.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"Cache URL must be a str, got {url!r}.", setting="url")
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"Malformed cache URL {redact_url(url)!r}: {exc}.", setting="url") from None
    if not parts.scheme or "://" not in url:
        raise ConfigurationError(
            f"Malformed cache URL {redact_url(url)!r}: expected scheme://..., e.g. 'locmem://' "
            "or 'redis://127.0.0.1:6379/0'.",
            setting="url",
        )
    from_query: dict[str, Any] = {}
    for key, value in query:
        if key.lower() in _SECRET_QUERY:
            raise ConfigurationError(
                f"{key!r} cannot be given in a cache URL: URLs end up in logs and process lists. "
                f"Use SIGNING_KEYS in CACHES, signing_keys=... or the {SIGNING_ENV_VAR} variable.",
                setting=key,
            )
        if key in from_query:
            raise ConfigurationError(f"Option {key!r} is given twice in the cache URL.", setting=key)
        from_query[key] = value
    backend_cls = load(parts.scheme)
    options = dict(options)
    signing_keys = options.pop("signing_keys", None)
    cache_kwargs, backend_kwargs = _split_options(from_query, backend_cls, from_text=True)
    typed_cache, typed_backend = _split_options(options, backend_cls, from_text=False)
    cache_kwargs.update(typed_cache)
    backend_kwargs.update(typed_backend)
    bare_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))
    backend = backend_cls.from_url(bare_url, **backend_kwargs)
    return _build_cache(backend, cache_kwargs, name, cache_class, signing_keys)


def redact_url(url: str) -> str:
    """Hide a password in a URL for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def import_string(path: str, setting: str) -> Any:
    """Return the object a dotted path (``package.module.name`` or ``package.module:name``) names.

    :raises ConfigurationError: naming ``setting``, if it cannot be imported.
    """
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"{setting} {path!r} cannot be imported: {exc}.", setting=setting) from None


def from_settings(config: Mapping[str, Any], *, name: str = "") -> Cache:
    """Build a cache from one Django-style ``CACHES`` entry.

    ``BACKEND`` is a short name (``locmem``, ``redis``, ``memcached``, ``null``), a
    URL or a dotted path; it may be omitted when ``LOCATION`` is a URL.
    ``SIGNING_KEYS`` (a key or a list, newest first) signs every stored value;
    see :mod:`cachekit.signing`.
    """
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"CACHES[{name!r}] must be a mapping, got {config!r}.", setting="CACHES")
    unknown = sorted(set(config) - set(_SETTINGS_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Unknown setting {unknown[0]!r} in CACHES[{name!r}]; known: {', '.join(_SETTINGS_KEYS)}.",
            setting=unknown[0],
        )
    options = config.get("OPTIONS")
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"OPTIONS must be a mapping, got {options!r}.", setting="OPTIONS")
    options = dict(options)
    for setting, option in (
        ("TIMEOUT", "timeout"),
        ("KEY_PREFIX", "key_prefix"),
        ("VERSION", "version"),
        ("SIGNING_KEYS", "signing_keys"),
    ):
        if setting in config:
            options[option] = config[setting]
    key_function = config.get("KEY_FUNCTION")
    if isinstance(key_function, str):
        key_function = import_string(key_function, "KEY_FUNCTION")
    backend_name = config.get("BACKEND")
    location = config.get("LOCATION")
    if backend_name is None and isinstance(location, str) and "://" in location:
        backend_name = location
    if backend_name is None:
        backend_name = "locmem"
    if not isinstance(backend_name, str):
        raise ConfigurationError(f"BACKEND must be a str, got {backend_name!r}.", setting="BACKEND")
    if "://" in backend_name:
        cache = from_url(backend_name, name=name, **options)
    else:
        backend_cls = load_backend(backend_name)
        signing_keys = options.pop("signing_keys", None)
        cache_kwargs, backend_kwargs = _split_options(options, backend_cls, from_text=False)
        if isinstance(location, str) and "://" in location:
            backend = backend_cls.from_url(location, **backend_kwargs)
        else:
            backend = backend_cls.from_location(location, **backend_kwargs)
        cache = _build_cache(backend, cache_kwargs, name, signing_keys=signing_keys)
    if key_function is not None:
        cache = cache.replace(key_function=key_function)
    return cache


def read_setting(settings: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a mapping (a dict, Flask's ``app.config``) or an object/module."""
    if isinstance(settings, Mapping):
        return settings.get(name, default)
    return getattr(settings, name, default)


class CacheHandler:
    """The process-wide registry of named caches, built lazily on first access.

    ``caches["default"]`` always exists. :class:`~cachekit.Cache` objects are
    thread-safe, so one per process serves every thread; the Redis backend
    opens fresh connections in a forked child by itself.
    """

    def __init__(self) -> None:
        self._settings: dict[str, Mapping[str, Any]] | None = None
        self._caches: dict[str, Cache] = {}
        self._guard = threading.Lock()

    def configure(self, caches: Mapping[str, Mapping[str, Any]] | None) -> None:
        """Replace the ``CACHES`` settings; caches already built are closed and forgotten."""
        if caches is not None:
            if not isinstance(caches, Mapping):
                raise ConfigurationError(f"CACHES must be a mapping, got {caches!r}.", setting="CACHES")
            for alias, entry in caches.items():
                if not isinstance(entry, (Mapping, str)):
                    raise ConfigurationError(
                        f"CACHES[{alias!r}] must be a mapping or a URL, got {entry!r}.", setting="CACHES"
                    )
        with self._guard:
            old, self._caches = self._caches, {}
            self._settings = (
                None
                if caches is None
                else {
                    alias: {"BACKEND": entry} if isinstance(entry, str) else entry
                    for alias, entry in caches.items()
                }
            )
        for cache in old.values():
            cache.close()

    def _config_for(self, alias: str) -> Mapping[str, Any]:
        settings = self._settings
        if settings is None:
            settings = {"default": {"BACKEND": os.environ.get(ENV_VAR) or DEFAULT_URL}}
        try:
            return settings[alias]
        except KeyError:
            raise KeyError(f"No cache named {alias!r} is configured; known: {sorted(settings)}.") from None

    def __getitem__(self, alias: str) -> Cache:
        cache = self._caches.get(alias)
        if cache is not None:
            return cache
        with self._guard:
            cache = self._caches.get(alias)
            if cache is None:
                cache = self._caches[alias] = from_settings(self._config_for(alias), name=alias)
            return cache

    def for_sessions(self, alias: str = "default") -> Cache:
        """Return the cache a session store on ``alias`` uses when none is given.

        That is ``self[alias]``, except for ``"default"`` on local memory: sessions
        then get a store of their own, ``"<location>:sessions"``, with the same
        bounds and settings. Pages and memoized results also default to
        ``caches["default"]``, and in one shared LRU a flood of junk URLs would
        evict logged-in users' sessions. Redis and memcached stay shared (their
        eviction is per server, not per database: give sessions a server of their
        own that never evicts, named by ``SESSION_CACHE_ALIAS``), and so does any
        other alias, which was chosen for sessions on purpose.
        """
        cache = self[alias]
        backend = cache.backend
        if alias != "default" or type(backend) is not LocMemBackend:
            return cache
        own = f"{alias} (sessions)"  # not a key of settings: CACHES aliases are identifiers
        with self._guard:
            separate = self._caches.get(own)
            if separate is None:
                store = LocMemBackend(
                    f"{backend.location}:sessions",
                    max_entries=backend.max_entries,
                    max_bytes=backend.max_bytes,
                    clock=backend._clock,
                )
                separate = self._caches[own] = cache.replace(backend=store, name=f"{cache.name}:sessions")
            return separate

    def fallback_reason(self, alias: str = "default") -> str | None:
        """Say why ``alias`` is on local memory although nobody asked for it, or ``None``.

        That is when nothing is configured (no ``CACHES``, no ``CACHEKIT_URL``), or
        when a ``CACHES`` entry names no ``BACKEND`` and its ``LOCATION`` is not a
        URL (``{"LOCATION": "10.0.0.5:6379"}`` is local memory named "10.0.0.5:6379").
        :mod:`cachekit.check` reports it.
        """
        if self._settings is None:
            if os.environ.get(ENV_VAR):
                return None
            return (
                f"no cache is configured (neither CACHES nor ${ENV_VAR} is set), so caches[{alias!r}] "
                "fell back to local memory: one process only, lost on restart"
            )
        entry = self._settings.get(alias)
        if not isinstance(entry, Mapping) or entry.get("BACKEND") is not None:
            return None
        location = entry.get("LOCATION")
        if isinstance(location, str) and "://" in location:
            return None
        return (
            f"CACHES[{alias!r}] names no BACKEND and its LOCATION {location!r} is not a URL, "
            "so it fell back to local memory"
        )

    def alias_of(self, cache: Any) -> str | None:
        """Return the alias whose cache (or its :meth:`for_sessions` store) shares ``cache``'s backend."""
        backend = getattr(cache, "backend", cache)
        for name, built in list(self._caches.items()):
            if built is cache or built.backend is backend:
                return name.removesuffix(" (sessions)")
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings or {"default": {}})

    def all(self) -> list[Cache]:
        """Return the caches built so far."""
        return list(self._caches.values())

    def close_all(self) -> None:
        """Close every cache built so far."""
        for cache in self.all():
            cache.close()


#: The process-wide registry: ``caches["default"]``.
caches = CacheHandler()


def configure(settings: Any = None, /, **overrides: Any) -> None:
    """Configure :data:`caches` from ``CACHES`` in a mapping, module or object, or keywords.

    ``configure(CACHES={...})``, ``configure(settings_module)`` and
    ``configure(app.config)`` all work; keywords win over ``settings``.
    """
    value = overrides.get("CACHES")
    if value is None and settings is not None:
        value = read_setting(settings, "CACHES")
    caches.configure(value)
