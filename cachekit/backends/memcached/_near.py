"""The near cache on memcached: local memory in front of it, with the weaker guarantee it allows.

memcached tells no client when a key changes, so the near cache of
:mod:`cachekit.backends.near` (on Redis: ``CLIENT TRACKING``) has two substitutes here (docs/backends.md says
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
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import redis

from cachekit.backends.memcached.asyncio import AsyncMemcachedBackend
from cachekit.backends.memcached.sync import MemcachedBackend
from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.listener import NearCache
from cachekit.backends.near.listener import invalidation_message
from cachekit.backends.near.listener import listener_factory
from cachekit.backends.redis._urls import redact_url
from cachekit.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: The pub/sub channel writers publish their keys on (``near_cache_channel`` names the server).
CHANNEL = "cachekit:near-cache:memcached"
#: Seconds a local copy lives unless ``near_cache_ttl`` says otherwise.
DEFAULT_NEAR_TTL = 5.0


@dropping_writes
class NearMemcachedBackend(NearAccess, MemcachedBackend):
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

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The local value of ``key`` while it lives, else memcached's (kept locally)."""
        value = self._near.lookup(key)
        if value is not None:
            return value
        return self._read_through([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held; one memcached ``get_many`` for the rest."""
        found, missing = self._near.split(keys)
        if missing:
            found.update(self._read_through(missing))
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

    def _dropped(self, keys: Iterable[str] | None) -> None:
        """Drop ``keys`` (``None``: everything) locally, then tell the other processes."""
        written = None if keys is None else list(keys)
        super()._dropped(written)
        publisher = self._publisher
        if publisher is None:
            return
        try:
            publisher.publish(CHANNEL, invalidation_message(written))
        except (redis.RedisError, OSError) as exc:
            # The write stands; other processes keep their copies up to near_cache_ttl.
            logger.warning(
                "near cache: could not publish %s on %s (%s); other processes may serve the old "
                "value for up to %.1f s",
                "a flush" if written is None else f"{len(written)} written key(s)",
                redact_url(self._channel_url or ""),
                exc,
                self.near_ttl,
            )

    def close(self) -> None:
        """Stop the listener, drop local memory, close connections."""
        self._near.close()
        if self._publisher is not None:
            self._publisher.close()
        super().close()


def _one(key: str, value: bytes | None) -> dict[str, bytes]:
    return {} if value is None else {key: value}


class AsyncNearMemcachedBackend(NearAccess, AsyncMemcachedBackend):
    """:class:`AsyncMemcachedBackend` over a :class:`NearMemcachedBackend`.

    A near hit is answered on the event loop (no hop into the thread pool); misses and
    every write run in the pool through the sync near backend, which drops and announces
    the keys it wrote.
    """

    sync: NearMemcachedBackend

    def _init(self, backend: MemcachedBackend, max_threads: int) -> None:
        super()._init(backend, max_threads)
        self._near = self.sync.near  # the sync backend's: one local memory for both

    async def get(self, key: str) -> bytes | None:
        """The local value of ``key`` while it lives, else memcached's (in the pool)."""
        value = self._near.lookup(key)
        if value is not None:
            return value
        return (await self._run(self.sync._read_through, [key])).get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Local values where held; one memcached ``get_many`` in the pool for the rest."""
        found, missing = self._near.split(keys)
        if missing:
            found.update(await self._run(self.sync._read_through, missing))
        return found
