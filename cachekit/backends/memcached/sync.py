"""The memcached backend: one server or a consistent-hashing pool, through pymemcache.

Built from a URL, a settings ``LOCATION`` or a ready client::

    memcached://host:11211                        one server (port defaults to 11211)
    memcached://h1:11211,h2:11211,[::1]:11212     a pool
    memcached:///path/to/memcached.sock           one server on a unix socket
    LOCATION = "h1:11211" | "h1:11211;h2:11211" | ["h1:11211", "unix:/path"]
    MemcachedBackend(client=pymemcache.PooledClient(...))

One server is reached through a pool of plain pymemcache ``Client`` objects
(no per-key hashing); several through pymemcache's ``HashClient`` with
rendezvous hashing, so losing or adding a node moves only that node's
share of keys, and with its retry and dead-node logic: a node that fails is
retried ``retry_attempts`` times ``retry_timeout`` seconds apart, then taken
out of the ring for ``dead_timeout`` seconds (its keys hash to the other nodes
meanwhile) and put back afterwards. Every failure reaching this backend is
raised as :class:`~cachekit.exceptions.BackendUnavailableError`, which
:class:`~cachekit.Cache` turns into a miss, so a dead node costs only its keys.
``get_many`` is the exception: it returns what the live nodes hold and raises
only when no node answered.

Partitions. A node that comes back after a partition (rather than a restart)
still holds its old values, while the deletes, logouts and tag invalidations
made meanwhile went to other nodes. So a node never rejoins the ring as it
left: first its global generation is renewed (below), which empties this
backend's namespace there for every client within ``generation_ttl``; a node
that cannot take that write stays out another ``dead_timeout``. And while a
node is out, its keys are stored on the others under a *detour mark*, a token
kept on each of them per absent node and renewed when the node rejoins, so
what was written during one outage is never read again, not in the next
outage either. A node that is failing but still in the ring (fewer than
``retry_attempts`` failures) moves no keys: its calls fail, and Cache turns
them into misses and no-ops (session stores into 503s). Clients that disagree
about a node (one cut off from it, another not) can still diverge until
``dead_timeout``; memcached offers nothing to close that. Tests:
``tests/reliability/test_memcached_partition.py``.

Keys. memcached keys are at most 250 bytes of printable ASCII without spaces.
A key that does not fit (or that starts with ``~``) is stored as ``~`` plus its
SHA-256, so the mapping is deterministic and never collides with a key stored
as it is.

``clear(prefix)``. memcached cannot delete by prefix, so every stored key
carries namespace generations: a global one, and one for the key's *scope*,
the key up to and including its first ``:`` (``Cache`` keys are
``"<key_prefix>:<version>:<key>"``, so a cache's scope is ``"<key_prefix>:"``).
The generations are random tokens kept in memcached, on each node for the keys
that live there; ``clear("app:")`` writes a new token for the scope ``"app:"``
and ``clear("")`` a new global one, so the old keys become unreachable and
memcached's LRU reclaims them. Clearing a prefix that is not exactly one scope
clears a superset: ``clear("app:1:")`` clears all of ``"app:"``, a prefix
without ``:`` clears everything. Two caches whose key prefixes share their
first ``:``-separated part (``"site:a"``, ``"site:b"``) therefore clear each
other; prefer prefixes without ``:``. A backend reads the tokens again every
``generation_ttl`` seconds (default 1), so a ``clear()`` in another process
takes effect here within that time; in this object it is immediate.
``flush_on_clear=True`` makes ``clear("")`` a ``flush_all`` of every server.

Timeouts. memcached counts whole seconds on a clock that ticks once a second,
so an item set with a TTL of ``n`` lives between ``n - 1`` and ``n`` seconds.
This backend sends ``ceil(ttl) + 1``: a value lives at least ``ttl`` seconds
and at most about one second longer, and a TTL below one second never rounds
to 0 (which memcached reads as "never expires"). TTLs over 30 days are sent as
absolute Unix times, as memcached requires; ``None`` is 0, no expiry.

Counters. ``incr`` is memcached ``incr``, a negative delta ``decr``. memcached
counters are unsigned 64-bit: ``decr`` stops at 0 instead of going negative,
``incr`` wraps around at 2**64, a stored negative number cannot be incremented
(:class:`~cachekit.exceptions.BackendError`), and after a ``decr`` that
shortens the number memcached may pad the stored digits with trailing spaces
(``int()`` accepts them).

Locks are memcached keys in the same namespace (``"<generation>~L<sha256 of
the name>"``, a form no data key takes): ``add`` with a random token to take,
``gets`` + ``cas`` to a tombstone + ``delete`` to release, so a holder never
releases a lock that expired and passed to someone else. ``clear()`` of the
lock name's scope (for :class:`~cachekit.Cache`'s stampede locks, ``clear("")``)
forgets held locks, as it forgets values.

After ``os.fork()`` a child drops the connections it inherited and opens its own.

Values over ``max_item_size`` (memcached's ``-I``, 1 MiB by default, counting
the key and about 80 bytes of item header) are refused with a
:class:`~cachekit.exceptions.BackendError` naming the key and the size, and
the old value under the key is deleted, so no reader sees a stale value after
a failed write.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import secrets
import time
import weakref
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from urllib.parse import urlsplit

from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheServerError

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.memcached._keys import GEN_KEY
from cachekit.backends.memcached._keys import MAX_KEY
from cachekit.backends.memcached._keys import SCOPE_SEARCH
from cachekit.backends.memcached._keys import Generations
from cachekit.backends.memcached._keys import digest
from cachekit.backends.memcached._keys import generation_key
from cachekit.backends.memcached._keys import lock_tail
from cachekit.backends.memcached._keys import new_token
from cachekit.backends.memcached._keys import out_key
from cachekit.backends.memcached._keys import safe_key
from cachekit.backends.memcached._keys import scope_of
from cachekit.backends.memcached._pool import Connections
from cachekit.backends.memcached._pool import PoolClient
from cachekit.backends.memcached._pool import Server
from cachekit.backends.memcached._pool import parse_server
from cachekit.backends.memcached._pool import server_name
from cachekit.backends.memcached._pool import translate_error
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

logger = logging.getLogger(__name__)
_monotonic = time.monotonic


#: memcached's default item size limit (``-I 1m``).
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024
#: Seconds to wait for a reply; a cache must not hang a request for long.
DEFAULT_TIMEOUT = 0.5
#: Seconds to wait for a TCP connection.
DEFAULT_CONNECT_TIMEOUT = 0.25
#: Circuit breaker defaults (as Redis's): this many outages of a node within the window open it.
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_WINDOW = 10.0
DEFAULT_BREAKER_COOLDOWN = 2.0

# memcached's per-item header, CAS and CRLF, plus a margin: counted against max_item_size.
_ITEM_OVERHEAD = 80
# TTLs above this many seconds must be sent as absolute Unix times.
_RELATIVE_LIMIT = 30 * 24 * 3600
_LOCK_POLL_MIN = 0.002
_LOCK_POLL_MAX = 0.05
_WARN_EVERY = 10.0


class _Down:
    """Sentinel returned by HashClient for a node it is not trying right now."""


_DOWN = _Down()


def expire_time(ttl: float | None, now: Callable[[], float] = time.time) -> int:
    """Turn a backend ``ttl`` into memcached's ``exptime``.

    ``None`` is 0 (never expires); otherwise ``ceil(ttl) + 1`` seconds, so the
    item outlives ``ttl`` on memcached's whole-second clock, sent as an
    absolute Unix time when it is over 30 days.
    """
    if ttl is None:
        return 0
    seconds = math.ceil(ttl) + 1
    if seconds > _RELATIVE_LIMIT:
        return int(now()) + seconds
    return seconds


def _check_options(cls: type[MemcachedBackend], options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"Unknown option {unknown[0]!r} for MemcachedBackend; known options: "
            f"{', '.join(sorted(cls.OPTIONS))}.",
            setting=unknown[0],
        )


_live_backends: weakref.WeakSet[MemcachedBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A child must not share its parent's sockets: drop them; the pools reconnect lazily.
    for backend in list(_live_backends):
        backend._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class MemcachedLock:
    """A lock held as a memcached key: ``add`` with a random token, released by ``gets`` + ``cas``.

    Release checks the token with ``gets``, overwrites it with an empty
    tombstone by ``cas`` (so nobody can take the lock between the check and
    the delete) and deletes the key; a holder whose lock expired and was taken
    by another releases nothing. A holder that dies between the ``cas`` and the
    ``delete`` leaves the tombstone for at most the lock's ``ttl``.
    """

    def __init__(self, backend: MemcachedBackend, name: str, ttl: float) -> None:
        self._backend = backend
        self._ttl = ttl
        self._token = secrets.token_hex(16).encode()
        #: The lock's name as given.
        self.name = name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, polling up to ``timeout`` seconds (``-1``: no limit) when ``blocking``.

        :raises BackendUnavailableError: if the server holding the lock is unreachable.
        """
        deadline = None if timeout < 0 else time.monotonic() + timeout
        pause = _LOCK_POLL_MIN
        while True:
            node, key = self._backend._locate_lock(self.name)
            if self._backend._call(node, "add", key, self._token, expire_time(self._ttl)):
                return True
            if not blocking:
                return False
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                pause = min(pause, remaining)
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX)

    def release(self) -> None:
        """Release the lock if this holder still owns it."""
        backend = self._backend
        node, key = backend._locate_lock(self.name)
        value, token = backend._call(node, "gets", key)
        if value != self._token:
            return
        # The tombstone keeps the key taken between the check and the delete.
        if backend._call(node, "cas", key, b"", token, expire_time(self._ttl)):
            backend._call(node, "delete", key)

    def __enter__(self) -> MemcachedLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"MemcachedLock({self.name!r}, ttl={self._ttl:g})"


class MemcachedBackend:
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
    """

    OPTIONS: ClassVar[Mapping[str, type]] = {
        "connect_timeout": float,
        "socket_timeout": float,
        "max_item_size": int,
        "retry_attempts": int,
        "retry_timeout": float,
        "dead_timeout": float,
        "max_pool_size": int,
        "no_delay": bool,
        "flush_on_clear": bool,
        "generation_ttl": float,
        "breaker_failures": int,
        "breaker_window": float,
        "breaker_cooldown": float,
    }
    stores_objects: ClassVar[bool] = False

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
    ) -> None:
        for name, value in (("connect_timeout", connect_timeout), ("socket_timeout", socket_timeout)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive or None, got {value!r}.", setting=name)
        if max_item_size < 1024:
            raise ConfigurationError(
                f"max_item_size must be at least 1024 bytes, got {max_item_size!r}.", setting="max_item_size"
            )
        if retry_attempts < 0:
            raise ConfigurationError(
                f"retry_attempts must be >= 0, got {retry_attempts!r}.", setting="retry_attempts"
            )
        for name, number in (
            ("retry_timeout", retry_timeout),
            ("dead_timeout", dead_timeout),
            ("generation_ttl", generation_ttl),
        ):
            if number < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {number!r}.", setting=name)
        if max_pool_size is not None and max_pool_size < 1:
            raise ConfigurationError(
                f"max_pool_size must be positive or None, got {max_pool_size!r}.", setting="max_pool_size"
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
        if breaker_failures < 1 or breaker_window <= 0 or breaker_cooldown <= 0:
            raise ConfigurationError(
                "breaker_failures must be >= 1 and breaker_window, breaker_cooldown positive; got "
                f"{breaker_failures!r}, {breaker_window!r}, {breaker_cooldown!r}.",
                setting="breaker_failures",
            )
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
        _check_options(cls, options)
        parts = urlsplit(url)
        if parts.scheme != "memcached":
            raise ConfigurationError(f"Not a memcached URL: {url!r}.", setting="url")
        if parts.query:
            raise ConfigurationError(
                f"Pass options as keywords or through cachekit.from_url(), not in {url!r}.", setting="url"
            )
        if "@" in parts.netloc:
            raise ConfigurationError(
                "memcached URLs take no user or password (pymemcache speaks the text protocol without SASL).",
                setting="url",
            )
        if parts.netloc:
            if parts.path not in ("", "/"):
                raise ConfigurationError(
                    f"Unexpected path {parts.path!r} in memcached URL; use memcached:///path/to.sock "
                    "for a unix socket.",
                    setting="url",
                )
            servers: list[Server] = [parse_server(item) for item in parts.netloc.split(",")]
        elif parts.path not in ("", "/"):
            servers = [parts.path]
        else:
            raise ConfigurationError(
                f"memcached URL {url!r} names no server; e.g. memcached://127.0.0.1:11211.", setting="url"
            )
        return cls(servers=servers, **options)

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> MemcachedBackend:
        """Build from a settings ``LOCATION``.

        ``None`` means ``127.0.0.1:11211``; a string is one address or several
        separated by ``;`` or ``,`` (as in Django), a list holds one address
        each; an address is ``host:port``, ``[v6]:port``, ``unix:/path`` or ``/path``.
        """
        _check_options(cls, options)
        if location is None:
            return cls(**options)
        if isinstance(location, str):
            if "://" in location:
                return cls.from_url(location, **options)
            specs = [item for item in re.split("[;,]", location) if item.strip()]
        elif isinstance(location, Sequence) and all(isinstance(item, str) for item in location):
            specs = list(location)
        else:
            raise ConfigurationError(
                f"LOCATION for memcached must be an address or a list of them, got {location!r}.",
                setting="LOCATION",
            )
        return cls(servers=[parse_server(spec) for spec in specs], **options)

    def __repr__(self) -> str:
        if not self.servers:
            return f"MemcachedBackend(client={self._client!r})"
        return f"MemcachedBackend(servers={[server_name(s) for s in self.servers]!r})"

    # -- plumbing ------------------------------------------------------------

    def _node(self, route_key: str) -> Any:
        """The client of the server that holds ``route_key``."""
        if self._hash is None:
            return self._single
        try:
            return self._hash._get_client(route_key)
        except Exception as exc:
            raise translate_error(exc, "routing", None) from exc

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

    def _head(self, node: Any, scope: str) -> str:
        """The generation prefix for keys of ``scope`` on ``node``."""
        return self._generations.head(self._call, node, scope, self.generation_ttl)

    def _single_key(self, key: str) -> str:
        """The stored form of ``key`` on the one server (:meth:`_locate` with calls inlined)."""
        end = key.find(":", 0, SCOPE_SEARCH)
        scope = key[: end + 1] if end >= 0 else ""
        cached = self._single_heads.get(scope)
        head = (
            cached[0] if cached is not None and cached[1] > _monotonic() else self._head(self._single, scope)
        )
        full = head + key
        if (
            len(full) <= MAX_KEY
            and full.isascii()
            and full.isprintable()
            and " " not in full
            and key[:1] != "~"
        ):
            return full
        return f"{head}~{digest(key)}"

    def _detour(self, route_key: str, node: Any) -> str:
        """The detour mark if ``route_key``'s home is out of the ring and ``node`` stands in, else ``""``."""
        home = self._ring.get_node(route_key)
        if self._hash.clients.get(home) is node:
            return ""
        return self._generations.detour(self._call, node, home, self.generation_ttl)

    def _locate(self, key: str) -> tuple[Any, str]:
        """Return the node holding ``key`` and the key as stored there."""
        if self._hash is None:
            return self._single, self._single_key(key)
        route = safe_key("", key)
        node = self._node(route)
        head = self._head(node, scope_of(key))
        if self._hash._dead_clients:
            head += self._detour(route, node)
        return node, safe_key(head, key)

    def server_for(self, key: str) -> str:
        """The address of the server that holds ``key`` (a backend key) now, e.g. ``"127.0.0.1:11211"``."""
        node = self._single if self._hash is None else self._node(safe_key("", key))
        return server_name(node.server)

    def _rejoin(self, node: Connections) -> bool:
        """Empty this backend's namespace on ``node`` before it rejoins the ring; ``False`` if unreachable.

        While the node was out, its keys were read, written and deleted on
        other nodes: its own copies are stale, and a logout or a tag
        invalidation made meanwhile would be undone if they were read again. A
        new global generation makes them unreachable for every client (others
        read it within ``generation_ttl``); renewing the node's outage token
        on the others retires what was written there during the outage.
        """
        try:
            node.set(GEN_KEY, new_token(), 0, False)
        except Exception as exc:
            logger.info(
                "memcached %s still unreachable, kept out of the ring: %r", server_name(node.server), exc
            )
            return False
        self._generations.forget_server(node.server)
        self._breaker(node).success()  # that write was its probe
        home = self._hash._make_client_key(node.server)
        for other in list(self._hash.clients.values()):
            if other is node or other.server in self._hash._dead_clients:
                continue
            try:
                other.set(out_key(home), new_token(), 0, False)
            except Exception as exc:  # that node is failing itself; its detour keys age out
                logger.info(
                    "memcached %s: outage token of %s not renewed: %r", server_name(other.server), home, exc
                )
        self._generations.forget_detours(home)
        logger.warning(
            "memcached %s rejoined the pool empty (new generation): values from before it left are dropped",
            server_name(node.server),
        )
        return True

    def _locate_lock(self, name: str) -> tuple[Any, str]:
        """Return the node holding lock ``name`` and its stored key."""
        tail = lock_tail(name)
        node = self._single if self._hash is None else self._node(tail)
        return node, self._head(node, scope_of(name)) + tail

    def _group(self, keys: Sequence[str]) -> tuple[dict[Any, dict[str, str]], list[BackendError]]:
        """Map each node to ``{stored key: key}``; nodes whose generation cannot be read are left out."""
        single = self._single
        if single is not None:
            # One node: scope_of, _head and safe_key inlined, heads looked up once per scope.
            heads: dict[str, str] = {}
            stored_keys: dict[str, str] = {}
            for key in keys:
                end = key.find(":", 0, SCOPE_SEARCH)
                scope = key[: end + 1] if end >= 0 else ""
                head = heads.get(scope)
                if head is None:
                    head = heads[scope] = self._head(single, scope)
                full = head + key
                legal = len(full) <= MAX_KEY and full.isascii() and full.isprintable() and " " not in full
                if legal and key[:1] != "~":
                    stored_keys[full] = key
                else:
                    stored_keys[f"{head}~{digest(key)}"] = key
            return {single: stored_keys}, []
        batches: dict[Any, dict[str, str]] = {}
        errors: list[BackendError] = []
        failed: set[Any] = set()
        detours = bool(self._hash._dead_clients)
        for key in keys:
            route = safe_key("", key)
            node = self._node(route)
            if node.server in failed:
                continue
            try:
                head = self._head(node, scope_of(key))
                if detours:
                    head += self._detour(route, node)
                stored = safe_key(head, key)
            except BackendUnavailableError as exc:
                failed.add(node.server)
                errors.append(exc)
                continue
            batches.setdefault(node, {})[stored] = key
        return batches, errors

    def _too_large(self, key: str, stored: str, value: bytes) -> bool:
        return len(value) + len(stored) + _ITEM_OVERHEAD > self.max_item_size

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
            for stored, value in values.items():
                found[stored_keys[stored]] = value
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
        if len(value) + len(stored) + _ITEM_OVERHEAD > self.max_item_size:
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
