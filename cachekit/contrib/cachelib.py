"""A ``cachelib.BaseCache`` over any cachekit cache, for Flask-Caching and Flask-Session.

Flask-Caching::

    app.config["CACHE_TYPE"] = "cachekit.contrib.cachelib.CachekitCache"
    app.config["CACHE_OPTIONS"] = {"url": "redis://127.0.0.1:6379/0"}

Flask-Session::

    app.config["SESSION_TYPE"] = "cachelib"
    app.config["SESSION_CACHELIB"] = CachekitCache(url="redis://127.0.0.1:6379/0")

cachelib's conventions hold here, not Django's: a timeout of ``None`` means the
default and ``0`` means the value never expires; ``inc`` on a missing key
starts from 0; failures return ``False``/``None`` rather than raise (cachekit's
failure policy turns outages into misses and no-ops). ``key_prefix=None`` (cachelib's
default) means no prefix. A cachelib serializer assigned to :attr:`CachekitCache.serializer`
(what Flask-Caching does with ``CACHE_SERIALIZER``) or passed as ``serializer=`` is
honoured: it writes the bytes Redis and memcached keep (integers stay ASCII digits so
``inc`` runs on the server, as cachelib's ``RedisSerializer`` does). The local-memory
backend keeps values as objects and uses the serializer only for values it cannot copy.
cachelib is imported only when this module is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cachelib.base import BaseCache

from cachekit.cache import Cache
from cachekit.config import from_url
from cachekit.exceptions import CacheError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError


class CachelibSerializer:
    """A cachelib serializer (``dumps``/``loads``, ``None`` on failure) as a cachekit serializer.

    :param inner: the cachelib serializer, e.g. ``cachelib.serializers.JSONSerializer()``.
    """

    def __init__(self, inner: Any) -> None:
        #: The wrapped cachelib serializer.
        self.inner = inner

    def dumps(self, value: Any) -> bytes:
        """Return ``inner.dumps(value)``; integers as ASCII digits.

        :raises SerializationError: if the cachelib serializer returned nothing.
        """
        if type(value) is int:
            return str(value).encode()
        data = self.inner.dumps(value)
        if data is None:
            raise SerializationError(f"{type(self.inner).__name__} cannot serialize {type(value).__name__}.")
        return data.encode() if isinstance(data, str) else bytes(data)

    def loads(self, data: bytes) -> Any:
        """Return the value ``data`` holds (digits as an int, else ``inner.loads``)."""
        if data[:1].isdigit() or data[:1] == b"-":
            try:
                return int(data)
            except ValueError:
                pass
        return self.inner.loads(data)


class CachekitCache(BaseCache):
    """cachelib's cache interface, stored by a cachekit :class:`~cachekit.Cache`.

    :param url: a cachekit URL (default ``locmem://``); ignored when ``cache`` is given.
    :param default_timeout: seconds used when a call passes ``None``; ``0`` never expires.
    :param cache: a ready cachekit cache to use instead of building one from ``url``.
    :param key_prefix: prefix of every key, scoping :meth:`clear`; ``None`` for none.
    :param serializer: a cachelib serializer to use instead of cachekit's pickle.
    :param ignore_delete_many_errors: accepted for Flask-Caching; cachekit's
        ``delete_many`` does not fail per key.
    """

    def __init__(
        self,
        url: str | None = None,
        default_timeout: int | dt.timedelta = 300,
        *,
        cache: Cache | None = None,
        key_prefix: str | None = "",
        ignore_delete_many_errors: bool = False,
        serializer: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(default_timeout=default_timeout)
        #: The cachekit cache doing the work.
        self.cache = (
            cache
            if cache is not None
            else from_url(url or "locmem://", key_prefix=key_prefix or "", **options)
        )
        self._serializer: Any = None
        if serializer is not None:
            self.serializer = serializer

    @property
    def serializer(self) -> Any:
        """The cachelib serializer in use, or ``None`` for cachekit's own.

        Assigning one (Flask-Caching does, for ``CACHE_SERIALIZER``) makes every
        later write and read go through it.
        """
        return self._serializer

    @serializer.setter
    def serializer(self, value: Any) -> None:
        self._serializer = value
        self.cache = self.cache.replace(serializer=CachelibSerializer(value))

    def _timeout(self, timeout: int | dt.timedelta | None) -> float | None:
        seconds = self._normalize_timeout(timeout)
        return None if seconds == 0 else seconds

    def get(self, key: str) -> Any:
        return self.cache.get(key)

    def delete(self, key: str) -> bool:
        return self.cache.delete(key)

    def get_many(self, *keys: str) -> list[Any]:
        found = self.cache.get_many(keys)
        return [found.get(key) for key in keys]

    def get_dict(self, *keys: str) -> dict[str, Any]:
        found = self.cache.get_many(keys)
        return {key: found.get(key) for key in keys}

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        try:
            self.cache.set(key, value, self._timeout(timeout))
        except CacheError:
            return False
        return True

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        try:
            return self.cache.add(key, value, self._timeout(timeout))
        except SerializationError:
            return False

    def set_many(self, mapping: dict[str, Any], timeout: int | dt.timedelta | None = None) -> list[Any]:
        failed = set(self.cache.set_many(mapping, self._timeout(timeout)))
        return [key for key in mapping if key not in failed]

    def delete_many(self, *keys: str) -> list[Any]:
        self.cache.delete_many(keys)
        return list(keys)

    def has(self, key: str) -> bool:
        return self.cache.has_key(key)

    def clear(self) -> bool:
        self.cache.clear()
        return True

    def inc(self, key: str, delta: int = 1) -> int | None:
        try:
            return self.cache.incr(key, delta)
        except MissingKeyError:
            if self.cache.add(key, delta, None):
                return delta
            return self.cache.incr(key, delta)
        except CacheError:
            return None

    def dec(self, key: str, delta: int = 1) -> int | None:
        return self.inc(key, -delta)
