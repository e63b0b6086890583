"""The backend registry: short names and URL schemes to backend classes.

Entries are ``"module:Class"`` strings imported on first use, so ``import
cachekit`` needs neither redis-py nor pymemcache. Third-party backends are
named by a dotted path (``"myapp.backends.DiskBackend"``) or registered with
:func:`register_backend`.
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


def register_backend(name: str, target: str) -> None:
    """Make ``name`` (also usable as a URL scheme) refer to ``"module:Class"``."""
    _REGISTRY[name.lower()] = target


def registered_names() -> list[str]:
    """Return the known short names and URL schemes."""
    return sorted(_REGISTRY)


def load_backend(name: str) -> type[Any]:
    """Return the backend class for a short name, a URL scheme or a dotted path.

    :raises ConfigurationError: if the name is unknown or its module cannot be imported
        (for example redis-py is not installed).
    """
    target = _REGISTRY.get(name.lower())
    if target is None:
        if "." not in name:
            known = ", ".join(registered_names())
            raise ConfigurationError(
                f"Unknown cache backend {name!r}; use one of {known} or a dotted path.",
                setting="BACKEND",
            )
        module_name, _, class_name = name.replace(":", ".").rpartition(".")
    else:
        module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"Cannot import backend {name!r} ({exc}); install its client library, "
            "e.g. pip install 'cachekit-suite[redis]' or 'cachekit-suite[memcached]'.",
            setting="BACKEND",
        ) from exc
    try:
        cls: type[Any] = getattr(module, class_name)
    except AttributeError:
        raise ConfigurationError(
            f"Module {module_name!r} has no backend class {class_name!r}.", setting="BACKEND"
        ) from None
    return cls


__all__ = ["Backend", "Lock", "load_backend", "register_backend", "registered_names"]
