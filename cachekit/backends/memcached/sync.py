"""The memcached backend: one server or a consistent-hashing pool, through pymemcache.

Built from a URL, a settings ``LOCATION`` or a ready client; the package docstring
(:mod:`cachekit.backends.memcached`) explains partitions, keys, ``clear(prefix)``,
timeouts, counters and locks.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import weakref
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheServerError

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.memcached._config import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.memcached._config import DEFAULT_BREAKER_FAILURES
from cachekit.backends.memcached._config import DEFAULT_BREAKER_WINDOW
from cachekit.backends.memcached._config import DEFAULT_CONNECT_TIMEOUT
from cachekit.backends.memcached._config import DEFAULT_MAX_ITEM_SIZE
from cachekit.backends.memcached._config import DEFAULT_TIMEOUT
from cachekit.backends.memcached._config import ITEM_OVERHEAD
from cachekit.backends.memcached._config import OPTIONS
from cachekit.backends.memcached._config import check_numbers
from cachekit.backends.memcached._config import check_options
from cachekit.backends.memcached._config import expire_time
from cachekit.backends.memcached._config import servers_from_location
from cachekit.backends.memcached._config import servers_from_url
from cachekit.backends.memcached._keys import Generations
from cachekit.backends.memcached._keys import generation_key
from cachekit.backends.memcached._keys import new_token
from cachekit.backends.memcached._keys import scope_of
from cachekit.backends.memcached._pool import Connections
from cachekit.backends.memcached._pool import PoolClient
from cachekit.backends.memcached._pool import Server
from cachekit.backends.memcached._pool import parse_server
from cachekit.backends.memcached._pool import server_name
from cachekit.backends.memcached._pool import translate_error
from cachekit.backends.memcached._routing import Routing
from cachekit.backends.memcached.lock import MemcachedLock as MemcachedLock
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

# The name the logger had before the backend moved into this package.
logger = logging.getLogger("cachekit.backends.memcached")
_WARN_EVERY = 10.0


class _Down:
    """Sentinel returned by HashClient for a node it is not trying right now."""


_DOWN = _Down()
_monotonic = time.monotonic


_live_backends: weakref.WeakSet[MemcachedBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A child must not share its parent's sockets: drop them; the pools reconnect lazily.
    for backend in list(_live_backends):
        backend._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class MemcachedBackend(Routing):
    """A byte store on one memcached server or a consistent-hashing pool of them.

    :param servers: ``(host, port)`` tuples, unix socket paths, or strings that
        :func:`parse_server` reads; default ``127.0.0.1:11211``.
    :param client: a ready pymemcache client (``PooledClient`` or ``HashClient``)
        ``HashClient``) used instead of building one; it must be thread-safe if
        threads share the backend, be built with ``default_noreply=False``,
        and a ``HashClient`` with ``ignore_exc=False``.
    :param connect_timeout: seconds to wait for a connection.
    :param socket_timeout: seconds to wait for a reply.
    :param max_item_size: the servers' item size limit in bytes (memcached ``-I``).
    :param retry_attempts: failed attempts before a pool node leaves the ring.
    :param retry_timeout: seconds between attempts on a failing pool node.
    :param dead_timeout: seconds a node stays out of the ring before it is tried again.
    :param max_pool_size: idle connections kept per server (``None``: as many as
        threads ever used at once); a busy backend opens more, never waits.
    :param no_delay: set ``TCP_NODELAY`` on connections.
    :param flush_on_clear: make ``clear("")`` a ``flush_all`` on every server.
    :param generation_ttl: seconds the namespace generations read from memcached
        are trusted before reading them again; 0 reads them on every call.
    :param breaker_failures: outages of one server within ``breaker_window``
        seconds that open its circuit breaker (one per server); while open, its
        calls fail fast for ``breaker_cooldown`` seconds, then one probe goes.
    :param breaker_window: see ``breaker_failures``.
    :param breaker_cooldown: see ``breaker_failures``.
    :param near_cache: keep up to this many values in local memory in front of memcached
        (``near_cache_bytes``, ``near_cache_ttl``, ``near_cache_channel``: see
        :class:`~cachekit.backends.memcached._near.NearMemcachedBackend` and docs/backends.md,
        which says how much weaker than Redis's it is); 0 (the default) turns it off.
    """

    OPTIONS: ClassVar[Mapping[str, type]] = OPTIONS
    stores_objects: ClassVar[bool] = False

    def __new__(cls, *args: Any, near_cache: int = 0, **options: Any) -> MemcachedBackend:
        if near_cache and cls is MemcachedBackend:
            from cachekit.backends.memcached._near import NearMemcachedBackend

            cls = NearMemcachedBackend
        return super().__new__(cls)

    def __init__(
        self,
        *,
        servers: Sequence[Server | str] | None = None,
        client: Any = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float | None = DEFAULT_TIMEOUT,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
        retry_attempts: int = 2,
        retry_timeout: float = 1.0,
        dead_timeout: float = 60.0,
        max_pool_size: int | None = None,
        no_delay: bool = True,
        flush_on_clear: bool = False,
        generation_ttl: float = 1.0,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_window: float = DEFAULT_BREAKER_WINDOW,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        near_cache: int = 0,
        **near_options: Any,
    ) -> None:
        if near_cache < 0 or (near_options and not near_cache):
            # With near_cache > 0, __new__ built a NearMemcachedBackend, whose __init__ takes these.
            raise ConfigurationError(
                f"near_cache must be 0 (off) or more, and {', '.join(sorted(near_options)) or 'its options'} "
                "need near_cache > 0.",
                setting="near_cache",
            )
        check_numbers(
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            max_item_size=max_item_size,
            retry_attempts=retry_attempts,
            retry_timeout=retry_timeout,
            dead_timeout=dead_timeout,
            generation_ttl=generation_ttl,
            max_pool_size=max_pool_size,
            breaker_failures=breaker_failures,
            breaker_window=breaker_window,
            breaker_cooldown=breaker_cooldown,
        )
        #: The servers, as ``(host, port)`` or socket paths (empty for a given client).
        self.servers: list[Server] = []
        if client is None:
            specs = ["127.0.0.1:11211"] if servers is None else list(servers)
            if not specs:
                raise ConfigurationError("At least one memcached server is needed.", setting="LOCATION")
            self.servers = [parse_server(s) if isinstance(s, str) else s for s in specs]
            common: dict[str, Any] = {
                "connect_timeout": connect_timeout,
                "timeout": socket_timeout,
                "no_delay": no_delay,
                "default_noreply": False,
            }
            if len(self.servers) == 1:
                client = Connections(self.servers[0], max_idle=max_pool_size, **common)
            else:
                client = PoolClient(
                    self.servers,
                    max_idle=max_pool_size,
                    rejoin=weakref.WeakMethod(self._rejoin),
                    ignore_exc=False,
                    retry_attempts=retry_attempts,
                    retry_timeout=retry_timeout,
                    dead_timeout=dead_timeout,
                    **common,
                )
        #: Values (with key and header) over this many bytes are refused.
        self.max_item_size = max_item_size
        #: Whether ``clear("")`` runs ``flush_all``.
        self.flush_on_clear = flush_on_clear
        #: Seconds a namespace generation is trusted before it is read again.
        self.generation_ttl = generation_ttl
        self._client = client
        self._hash: Any = client if isinstance(client, HashClient) else None
        self._single: Any = None if self._hash is not None else client
        # Every node, also those out of the ring: a key's home, for keys that live elsewhere meanwhile.
        self._ring: Any = None
        if self._hash is not None:
            self._ring = copy.copy(self._hash.hasher)
            self._ring.nodes = list(self._hash.hasher.nodes)
        self._generations = Generations()
        self._single_heads: dict[str, tuple[str, float]] = {}
        if self._single is not None:
            self._single_heads = self._generations.heads(self._single.server)
        self._last_partial_warning = float("-inf")
        self._breaker_options: dict[str, Any] = {
            "failures": breaker_failures,
            "window": breaker_window,
            "cooldown": breaker_cooldown,
        }
        #: One circuit breaker per server, keyed by pymemcache's server (``(host, port)`` or a path).
        self._breakers: dict[Any, CircuitBreaker] = {}
        nodes = [self._single] if self._hash is None else list(self._hash.clients.values())
        for node in nodes:
            self._breaker(node)
        _live_backends.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemcachedBackend:
        """Build from ``memcached://h1:11211,h2:11211`` or ``memcached:///path/to/socket``.

        :raises ConfigurationError: for a malformed URL or an unknown option.
        """
        check_options(cls.OPTIONS, options)
        return cls(servers=servers_from_url(url), **options)

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> MemcachedBackend:
        """Build from a settings ``LOCATION``.

        ``None`` means ``127.0.0.1:11211``; a string is one address or several
        separated by ``;`` or ``,`` (as in Django), a list holds one address
        each; an address is ``host:port``, ``[v6]:port``, ``unix:/path`` or ``/path``.
        """
        check_options(cls.OPTIONS, options)
        if isinstance(location, str) and "://" in location:
            return cls.from_url(location, **options)
        return cls(servers=servers_from_location(location), **options)

    def __repr__(self) -> str:
        if not self.servers:
            return f"MemcachedBackend(client={self._client!r})"
        return f"MemcachedBackend(servers={[server_name(s) for s in self.servers]!r})"

    # -- plumbing ------------------------------------------------------------

    def _breaker(self, node: Any) -> CircuitBreaker:
        """The circuit breaker of ``node``'s server, made on first use (for a client given ready)."""
        breaker = self._breakers.get(node.server)
        if breaker is None:
            breaker = self._breakers.setdefault(
                node.server,
                CircuitBreaker(**self._breaker_options, name=f"memcached {server_name(node.server)}"),
            )
        return breaker

    def breakers(self) -> list[CircuitBreaker]:
        """The circuit breakers, one per server (for ``stats()``, metrics and ``cachekit stats``)."""
        return list(self._breakers.values())

    def _failed_call(
        self, breaker: CircuitBreaker, exc: Exception, operation: str, server: Any
    ) -> BackendError:
        """Translate ``exc``; an outage counts against ``breaker``, any reply proves the server is up."""
        error = translate_error(exc, operation, server)
        if isinstance(error, BackendUnavailableError):
            breaker.failure()
        else:
            breaker.success()
        return error

    def _call(self, node: Any, operation: str, *args: Any) -> Any:
        """Run ``node.<operation>(*args)`` behind its breaker; in a pool through HashClient's bookkeeping."""
        breaker = self._breakers.get(node.server) or self._breaker(node)
        breaker.before_call()
        try:
            if self._hash is None:
                result = getattr(node, operation)(*args)
                breaker.success()
                return result
            result = self._hash._safely_run_func(node, getattr(node, operation), _DOWN, *args)
        except Exception as exc:
            raise self._failed_call(breaker, exc, operation, node.server) from exc
        if result is _DOWN:
            # HashClient's own fail-fast between retries: the server was not asked, so no count.
            raise BackendUnavailableError(
                f"memcached {server_name(node.server)} is failing; it is retried every "
                f"{self._hash.retry_timeout:g} s."
            )
        breaker.success()
        return result

    def _too_large(self, key: str, stored: str, value: bytes) -> bool:
        return len(value) + len(stored) + ITEM_OVERHEAD > self.max_item_size

    def _refuse(self, key: str, size: int, deleted: bool) -> BackendError:
        what = "the old value was deleted" if deleted else "any old value could not be deleted"
        return BackendError(
            f"Value for key {key!r} is {size} bytes, over memcached's item size limit of "
            f"{self.max_item_size} bytes (with key and item header); {what}. Store less, turn on "
            "compression, or raise the servers' -I and the max_item_size option together."
        )

    def _drop_after_failed_write(self, node: Any, stored: str) -> bool:
        try:
            self._call(node, "delete", stored)
        except BackendError:
            return False
        return True

    def _forget_connections(self) -> None:
        try:
            self._client.close()
        except Exception:  # a forked child's inherited sockets may fail to close
            logger.debug("closing inherited memcached connections failed", exc_info=True)

    def _warn_partial(self, operation: str, errors: Sequence[BackendError]) -> None:
        now = time.monotonic()
        if now - self._last_partial_warning >= _WARN_EVERY:
            self._last_partial_warning = now
            logger.warning("memcached %s served the reachable nodes only: %s", operation, errors[0])

    # -- reads -----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` on a miss."""
        single = self._single
        if single is None:
            node, stored = self._locate(key)
            found: bytes | None = self._call(node, "get", stored)
            return found
        # The one-server path skips _call: this is the hottest call of a cache.
        stored = self._single_key(key)
        breaker = self._breakers[single.server]
        breaker.before_call()
        try:
            value: bytes | None = single.get(stored)
        except Exception as exc:
            raise self._failed_call(breaker, exc, "get", single.server) from exc
        breaker.success()
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the found keys only: one ``get`` command per node.

        In a pool, the keys of nodes that cannot be reached are missing from the
        result (and logged); only when no node answers is it an error.

        :raises BackendUnavailableError: if no node holding any of the keys answered.
        """
        if not keys:
            return {}
        batches, errors = self._group(keys)
        found: dict[str, bytes] = {}
        answered = 0
        for node, stored_keys in batches.items():
            try:
                values = self._call(node, "get_many", list(stored_keys))
            except BackendUnavailableError as exc:
                errors.append(exc)
                continue
            answered += 1
            found.update(zip(map(stored_keys.__getitem__, values), values.values(), strict=True))
        if errors:
            if not answered:
                raise errors[0]
            self._warn_partial("get_many", errors)
        return found

    def gets(self, key: str) -> tuple[bytes, Any] | None:
        """Return ``(value, cas token)`` for :meth:`cas`, or ``None`` on a miss."""
        node, stored = self._locate(key)
        value, token = self._call(node, "gets", stored)
        if value is None:
            return None
        return value, token

    # -- writes ------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key``, waiting for the server's reply.

        :raises BackendError: if the value is over ``max_item_size`` (the old value is deleted).
        """
        single = self._single
        if single is None:
            node, stored = self._locate(key)
        else:
            node, stored = single, self._single_key(key)
        if len(value) + len(stored) + ITEM_OVERHEAD > self.max_item_size:
            raise self._refuse(key, len(value), self._drop_after_failed_write(node, stored))
        try:
            if single is None:
                self._call(node, "set", stored, value, expire_time(ttl))
            else:
                breaker = self._breakers[single.server]
                breaker.before_call()
                try:
                    single.set(stored, value, 0 if ttl is None else expire_time(ttl), False)
                except Exception as exc:
                    raise self._failed_call(breaker, exc, "set", single.server) from exc
                breaker.success()
        except BackendUnavailableError:
            raise
        except BackendError as exc:
            # Make sure the key does not keep its old value when the server refused the new one.
            deleted = self._drop_after_failed_write(node, stored)
            if isinstance(exc.__cause__, MemcacheServerError) and "too large" in str(exc.__cause__):
                raise self._refuse(key, len(value), deleted) from exc
            raise

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with one pipelined ``set`` per node.

        Oversized values are not sent and their old values are deleted; the
        others are stored, then the first oversized key is reported.

        :raises BackendError: if a value is over ``max_item_size``.
        :raises BackendUnavailableError: if a node could not be reached (the
            other nodes' items are stored).
        """
        if not items:
            return
        expire = expire_time(ttl)
        batches, errors = self._group(list(items))
        oversized: list[tuple[str, int, Any, str]] = []
        for node, stored_keys in batches.items():
            values: dict[str, bytes] = {}
            for stored, key in stored_keys.items():
                value = items[key]
                if self._too_large(key, stored, value):
                    oversized.append((key, len(value), node, stored))
                else:
                    values[stored] = value
            if not values:
                continue
            try:
                failed = self._call(node, "set_many", values, expire)
            except BackendUnavailableError as exc:
                errors.append(exc)
                continue
            except BackendError:
                # The server refused one item mid-pipeline; which one is unknown, so drop them all.
                self._call(node, "delete_many", list(values))
                raise
            if failed:
                errors.append(BackendUnavailableError(f"memcached did not store {len(failed)} keys."))
        if oversized:
            key, size, node, stored = oversized[0]
            deleted = all(self._drop_after_failed_write(n, s) for _, _, n, s in oversized)
            raise self._refuse(key, size, deleted)
        if errors:
            raise errors[0]

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds nothing (memcached ``add``).

        :raises BackendError: if the value is over ``max_item_size``.
        """
        node, stored = self._locate(key)
        if self._too_large(key, stored, value):
            raise self._refuse(key, len(value), False)
        return bool(self._call(node, "add", stored, value, expire_time(ttl)))

    def cas(self, key: str, value: bytes, token: Any, ttl: float | None) -> bool:
        """Store ``value`` if ``key`` is unchanged since the :meth:`gets` that gave ``token``.

        :raises BackendError: if the value is over ``max_item_size`` (nothing is changed).
        """
        node, stored = self._locate(key)
        if self._too_large(key, stored, value):
            raise self._refuse(key, len(value), False)
        return self._call(node, "cas", stored, value, token, expire_time(ttl)) is True

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        node, stored = self._locate(key)
        return bool(self._call(node, "delete", stored))

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key with one pipelined ``delete`` per node.

        :raises BackendUnavailableError: if a node could not be reached.
        """
        if not keys:
            return
        batches, errors = self._group(keys)
        for node, stored_keys in batches.items():
            try:
                self._call(node, "delete_many", list(stored_keys))
            except BackendUnavailableError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` on the server (``decr`` for a negative one, which stops at 0).

        :raises MissingKeyError: if ``key`` holds nothing.
        :raises BackendError: if the value is not an unsigned 64-bit integer.
        """
        node, stored = self._locate(key)
        if delta >= 0:
            result = self._call(node, "incr", stored, delta)
        else:
            result = self._call(node, "decr", stored, -delta)
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new ``ttl`` (memcached ``touch``); return whether it was there."""
        node, stored = self._locate(key)
        return bool(self._call(node, "touch", stored, expire_time(ttl)))

    def clear(self, prefix: str = "") -> None:
        """Make every key starting with ``prefix`` unreachable by moving to a new generation.

        See the module docstring for how prefixes map to generations. With
        ``flush_on_clear`` and an empty prefix, runs ``flush_all`` instead.

        :raises BackendUnavailableError: if a node could not be reached (the
            others have moved on).
        """
        nodes = list(self._hash.clients.values()) if self._hash is not None else [self._single]
        scope = scope_of(prefix) if prefix else ""
        errors: list[BackendError] = []
        for node in nodes:
            try:
                if self.flush_on_clear and not prefix:
                    self._call(node, "flush_all", 0, False)
                else:
                    self._call(node, "set", generation_key(scope), new_token(), 0)
            except BackendError as exc:
                errors.append(exc)
        self._generations.forget(scope)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Close every connection; the next call reconnects."""
        self._client.close()

    def server_stats(self) -> dict[str, Any]:
        """Return memcached's own ``stats`` for each server, keyed by address.

        :raises BackendUnavailableError: if a server cannot be reached.
        """
        nodes = [self._single] if self._hash is None else list(self._hash.clients.values())
        report: dict[str, Any] = {}
        for node in nodes:
            raw = self._call(node, "stats")
            report[server_name(node.server)] = {
                (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()
            }
        return report

    def server_settings(self) -> dict[str, dict[str, str]]:
        """Return memcached's ``stats settings`` for each server (``evictions``, ``maxbytes``, ...).

        :raises BackendUnavailableError: if a server cannot be reached.
        """
        nodes = [self._single] if self._hash is None else list(self._hash.clients.values())
        report: dict[str, dict[str, str]] = {}
        for node in nodes:
            raw = self._call(node, "stats", "settings")
            report[server_name(node.server)] = {
                (k.decode() if isinstance(k, bytes) else str(k)): (
                    v.decode() if isinstance(v, bytes) else str(v)
                )
                for k, v in raw.items()
            }
        return report

    def lock(self, name: str, *, ttl: float) -> MemcachedLock:
        """Return a lock named ``name`` shared by every user of these servers."""
        return MemcachedLock(self, name, ttl)
