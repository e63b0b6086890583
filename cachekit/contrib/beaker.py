"""A Beaker ``NamespaceManager`` over any cachekit cache: Beaker apps switch with one setting.

Importing this module registers the type ``"cachekit"`` with Beaker, so a
Beaker configuration names it and a URL::

    import cachekit.contrib.beaker  # noqa: F401  (registers the type)

    cache_opts = {"cache.type": "cachekit", "cache.url": "redis://127.0.0.1:6379/0"}
    # or, in code:
    beaker.cache.CacheManager(type="cachekit", url="memcached://127.0.0.1:11211")

Beaker's contract holds on every backend (local memory, Redis, memcached):

* keys arrive as ``str`` or UTF-8 ``bytes`` and name the same entry; keys too
  long or with spaces are hashed by cachekit, never refused;
* :meth:`~CachekitNamespaceManager.do_remove` (``cache.clear()``) removes only
  this namespace's keys: each namespace is its own cachekit key prefix;
* :meth:`~CachekitNamespaceManager.get_creation_lock` is cachekit's backend
  lock (Redis ``SET NX PX`` with a token, memcached ``add``, a local lock for
  locmem), so a value is created once across threads and, on Redis or
  memcached, across processes;
* entries expire: Beaker's ``expiretime`` (or this manager's ``timeout``)
  becomes the backend TTL, besides Beaker's own stored-time check.

An outage follows cachekit's failure policy: reads miss (Beaker recreates the
value, without the creation lock, which needs the store) and writes are
dropped, logged and counted. ``keys()`` is not offered,
as with Beaker's memcached manager. Beaker is imported only when this module is.
"""

from __future__ import annotations

import enum
import logging
import threading
from typing import Any
from urllib.parse import quote

from beaker.cache import clsmap
from beaker.container import NamespaceManager

from cachekit.cache import Cache
from cachekit.config import from_url
from cachekit.exceptions import BackendUnavailableError

logger = logging.getLogger(__name__)

#: The Beaker type name this module registers.
TYPE_NAME = "cachekit"

_caches: dict[str, Cache] = {}
_caches_guard = threading.Lock()


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


def _shared_cache(url: str) -> Cache:
    """One cachekit cache (and connection pool) per URL in this process, as Beaker shares clients."""
    with _caches_guard:
        cache = _caches.get(url)
        if cache is None:
            cache = _caches[url] = from_url(url)
        return cache


class _CreationLock:
    """A cachekit backend lock shaped as Beaker's synchronizers (``acquire(wait)``, ``release()``)."""

    def __init__(self, cache: Cache, key: str) -> None:
        self._lock = cache.backend.lock("cachekit.lock:" + cache.make_key(key), ttl=cache.lock_ttl)
        self._held = False

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock, waiting for it unless ``wait`` is false; return whether it was taken.

        With the store down there is nothing to coordinate through: the caller
        goes ahead and creates the value (``True``), as cachekit's ``get_or_set`` does.
        """
        try:
            self._held = bool(self._lock.acquire(blocking=wait))
        except BackendUnavailableError as exc:
            logger.warning("beaker creation lock unavailable, creating without it: %s", exc)
            return True
        return self._held

    def release(self) -> None:
        """Let the next creator in."""
        if not self._held:
            return
        self._held = False
        try:
            self._lock.release()
        except BackendUnavailableError as exc:  # the lock's TTL frees it
            logger.warning("beaker creation lock not released: %s", exc)


class CachekitNamespaceManager(NamespaceManager):  # type: ignore[misc]
    """Beaker's namespace API stored in a cachekit cache.

    :param namespace: Beaker's namespace name.
    :param url: any cachekit URL (``locmem://name``, ``redis://...``, ``memcached://...``).
    :param timeout: seconds an entry lives when Beaker gives no ``expiretime``; ``None``: forever.
    :param cache: a ready cachekit cache to use instead of ``url`` (its prefix is
        extended per namespace).
    """

    def __init__(
        self,
        namespace: str,
        url: str = "locmem://beaker",
        timeout: float | str | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(namespace)
        base = cache if cache is not None else _shared_cache(url)
        # Quoted: a namespace containing ":" can neither reach into another's keys nor be cleared with it.
        prefix = f"beaker.{quote(namespace, safe='')}"
        if base.key_prefix:
            prefix = f"{base.key_prefix}.{prefix}"
        #: This namespace's cachekit cache; its ``clear()`` is :meth:`do_remove`.
        self.cache: Cache = base.replace(key_prefix=prefix, default_timeout=None)
        #: Seconds entries live without an ``expiretime``; ``None``: no limit.
        self.timeout = float(timeout) if timeout is not None else None

    @staticmethod
    def _key(key: str | bytes) -> str:
        return key.decode("utf-8") if isinstance(key, bytes) else str(key)

    def get_creation_lock(self, key: str | bytes) -> _CreationLock:
        """Return the lock that lets one thread or process create the value for ``key``."""
        return _CreationLock(self.cache, self._key(key))

    def __getitem__(self, key: str | bytes) -> Any:
        value = self.cache.get(self._key(key), _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes)):
            return False
        return self.cache.has_key(self._key(key))

    def has_key(self, key: str | bytes) -> bool:
        """Return whether ``key`` holds a live entry."""
        return key in self

    def set_value(self, key: str | bytes, value: Any, expiretime: float | None = None) -> None:
        """Store ``value``; it expires after ``expiretime`` seconds (default: ``timeout``)."""
        if expiretime is None:
            expiretime = self.timeout
        self.cache.set(self._key(key), value, expiretime)

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        self.set_value(key, value)

    def __delitem__(self, key: str | bytes) -> None:
        self.cache.delete(self._key(key))

    def do_remove(self) -> None:
        """Remove every entry of this namespace, and only those."""
        self.cache.clear()

    def keys(self) -> list[str]:
        """Not offered: listing keys means scanning the whole server (Beaker's memcached neither)."""
        raise NotImplementedError("CachekitNamespaceManager cannot list keys.")


def register() -> None:
    """Make ``type="cachekit"`` known to Beaker (done when this module is imported)."""
    clsmap._clsmap[TYPE_NAME] = CachekitNamespaceManager


register()

__all__ = ["TYPE_NAME", "CachekitNamespaceManager", "register"]
