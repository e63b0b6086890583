"""The near cache on memcached: local memory in front of it, with the weaker guarantee it allows.

memcached tells no client when a key changes, so the near cache of
:mod:`cachekit.backends.redis._near` has two substitutes here (docs/backends.md says
what each guarantees):

- ``near_cache_channel="redis://..."``: every write through a near-cache backend
  publishes the keys it wrote on a Redis pub/sub channel, and every such process
  listens there (one connection, the same :class:`NearCache` machinery: flushed
  and serving nothing while the subscription is lost). Writes made without this
  backend (another client, memcached's own expiry and evictions) are not announced,
  so local copies also expire after ``near_cache_ttl``.
- ``near_cache_ttl`` alone: no invalidation at all; a value read from memcached is
  served locally for at most that many seconds, whatever happens to it meanwhile.
  Writes through this backend still drop their keys locally at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import redis

from cachekit.backends.memcached.asyncio import AsyncMemcachedBackend
from cachekit.backends.memcached.sync import MemcachedBackend
from cachekit.backends.redis._near import DecodedMemo
from cachekit.backends.redis._near import NearCache
from cachekit.backends.redis._near import invalidation_message
from cachekit.backends.redis._near import listener_factory
from cachekit.backends.redis._urls import redact_url
from cachekit.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: The pub/sub channel writers publish their keys on (``near_cache_channel`` names the server).
CHANNEL = "cachekit:near-cache:memcached"
#: Seconds a local copy lives unless ``near_cache_ttl`` says otherwise.
DEFAULT_NEAR_TTL = 5.0


class NearMemcachedBackend(MemcachedBackend):
    """A :class:`MemcachedBackend` with a near cache in front of ``get``/``get_many``.

    :param near_cache: entries kept in local memory (least recently used evicted).
    :param near_cache_bytes: bound on the summed size of the local values.
    :param near_cache_ttl: seconds a local copy lives at most (default 5).
    :param near_cache_channel: a ``redis://`` URL: writes publish their keys there and
        this process listens, so other processes' writes through a near-cache backend
        drop local copies as soon as their message arrives.

    ``gets``/``cas``, ``incr``, ``add`` and locks always go to memcached, and every write
    drops its keys locally when it returns (and publishes them, with a channel).
    """

    def __init__(
        self,
        *,
        near_cache: int,
        near_cache_bytes: int | None = None,
        near_cache_ttl: float | None = None,
        near_cache_channel: str | None = None,
        **options: Any,
    ) -> None:
        if near_cache < 1:
            raise ConfigurationError(
                f"near_cache must be 1 or more, got {near_cache!r}.", setting="near_cache"
            )
        ttl = DEFAULT_NEAR_TTL if near_cache_ttl is None else near_cache_ttl
        if not 0 < ttl < float("inf"):
            raise ConfigurationError(
                f"near_cache_ttl must be a positive number of seconds, got {near_cache_ttl!r}.",
                setting="near_cache_ttl",
            )
        if near_cache_bytes is not None and near_cache_bytes < 1:
            raise ConfigurationError(
                f"near_cache_bytes must be positive, got {near_cache_bytes!r}.", setting="near_cache_bytes"
            )
        super().__init__(**options)
        #: Seconds a local copy lives at most.
        self.near_ttl = ttl
        self._channel_url = near_cache_channel
        self._publisher: redis.Redis | None = None
        sizes: dict[str, Any] = {"max_entries": near_cache, "max_bytes": near_cache_bytes}
        if near_cache_channel is None:
            self._near = NearCache(local_only=True, **sizes)
            return
        if not near_cache_channel.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"near_cache_channel must be a redis://, rediss:// or unix:// URL, got "
                f"{redact_url(near_cache_channel)!r}.",
                setting="near_cache_channel",
            )
        timeout = float(options.get("socket_timeout") or 0.5)
        self._publisher = redis.Redis.from_url(
            near_cache_channel, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._near = NearCache(
            listener_factory(self._publisher.connection_pool),
            channel=CHANNEL,
            socket_timeout=timeout,
            **sizes,
        )

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, near_cache={self._near.max_entries})"

    @property
    def near(self) -> NearCache:
        """The near cache (its counters, ``ready``, ``wait_ready()``)."""
        return self._near

    def near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ``near_invalidations``, ``near_flushes``, ``near_ready``."""
        return self._near.stats()

    def near_memo(self) -> DecodedMemo:
        """Where a ``Cache`` keeps the decoded values of near hits (see ``DecodedMemo``)."""
        return self._near.decoded

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The local value of ``key`` while it lives, else memcached's (kept locally)."""
        value = self._near.lookup(key)
        if value is not None:
            return value
        return self._read_through([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held; one memcached ``get_many`` for the rest."""
        near = self._near
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in keys:
            value = near.lookup(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            found.update(self._read_through(list(dict.fromkeys(missing))))
        return found

    def _read_through(self, keys: list[str]) -> dict[str, bytes]:
        near = self._near
        ticket = near.begin(keys)
        values: dict[str, bytes] = {}
        try:
            values = super().get_many(keys) if len(keys) > 1 else _one(keys[0], super().get(keys[0]))
        finally:
            ttl_ms = int(self.near_ttl * 1000)
            near.end(ticket, ((key, values.get(key), ttl_ms) for key in keys))
        return values

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Always from memcached: a ``cas`` token must be the server's."""
        return super().gets(key)

    # -- writes: drop locally, then tell the other processes -----------------------

    def _wrote(self, keys: Sequence[str] | Mapping[str, Any] | None) -> None:
        if keys is None:
            self._near.flush()
        else:
            self._near.invalidate(keys)
        publisher = self._publisher
        if publisher is None:
            return
        try:
            publisher.publish(CHANNEL, invalidation_message(None if keys is None else list(keys)))
        except (redis.RedisError, OSError) as exc:
            # The write stands; other processes keep their copies up to near_cache_ttl.
            logger.warning(
                "near cache: could not publish %s on %s (%s); other processes may serve the old "
                "value for up to %.1f s",
                "a flush" if keys is None else f"{len(keys)} written key(s)",
                redact_url(self._channel_url or ""),
                exc,
                self.near_ttl,
            )

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store in memcached; drop and announce ``key``."""
        try:
            super().set(key, value, ttl)
        finally:
            self._wrote((key,))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store in memcached; drop and announce the keys."""
        try:
            super().set_many(items, ttl)
        finally:
            self._wrote(list(items))

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """``add`` in memcached; drop and announce ``key``."""
        try:
            return super().add(key, value, ttl)
        finally:
            self._wrote((key,))

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """``cas`` in memcached; drop and announce ``key``."""
        try:
            return super().cas(key, value, token, ttl)
        finally:
            self._wrote((key,))

    def delete(self, key: str) -> bool:
        """Delete in memcached; drop and announce ``key``."""
        try:
            return super().delete(key)
        finally:
            self._wrote((key,))

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete in memcached; drop and announce the keys."""
        try:
            super().delete_many(keys)
        finally:
            self._wrote(keys)

    def incr(self, key: str, delta: int) -> int:
        """``incr`` in memcached; drop and announce ``key``."""
        try:
            return super().incr(key, delta)
        finally:
            self._wrote((key,))

    def touch(self, key: str, ttl: float | None) -> bool:
        """``touch`` in memcached; drop and announce ``key`` (its expiry changed)."""
        try:
            return super().touch(key, ttl)
        finally:
            self._wrote((key,))

    def clear(self, prefix: str = "") -> None:
        """Clear memcached; drop all local memory and announce a flush."""
        try:
            super().clear(prefix)
        finally:
            self._wrote(None)

    def close(self) -> None:
        """Stop the listener, drop local memory, close connections."""
        self._near.close()
        if self._publisher is not None:
            self._publisher.close()
        super().close()


def _one(key: str, value: bytes | None) -> dict[str, bytes]:
    return {} if value is None else {key: value}


class AsyncNearMemcachedBackend(AsyncMemcachedBackend):
    """:class:`AsyncMemcachedBackend` over a :class:`NearMemcachedBackend`.

    A near hit is answered on the event loop (no hop into the thread pool); misses and
    every write run in the pool through the sync near backend, which drops and announces
    the keys it wrote.
    """

    sync: NearMemcachedBackend

    @property
    def near(self) -> NearCache:
        """The near cache (its counters, ``ready``, ``wait_ready()``)."""
        return self.sync.near

    def near_stats(self) -> dict[str, int]:
        """``near_hits``, ``near_misses``, ``near_invalidations``, ``near_flushes``, ``near_ready``."""
        return self.sync.near_stats()

    def near_memo(self) -> DecodedMemo:
        """Where an ``AsyncCache`` keeps the decoded values of near hits (see ``DecodedMemo``)."""
        return self.sync.near_memo()

    async def get(self, key: str) -> bytes | None:
        """The local value of ``key`` while it lives, else memcached's (in the pool)."""
        value = self.sync.near.lookup(key)
        if value is not None:
            return value
        return (await self._run(self.sync._read_through, [key])).get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held; one memcached ``get_many`` in the pool for the rest."""
        near = self.sync.near
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in keys:
            value = near.lookup(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            found.update(await self._run(self.sync._read_through, list(dict.fromkeys(missing))))
        return found
