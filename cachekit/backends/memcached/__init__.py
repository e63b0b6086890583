"""The Memcached backends, over pymemcache: one server or a consistent-hashing pool.

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

The modules: :mod:`~cachekit.backends.memcached.sync` holds :class:`MemcachedBackend`,
:mod:`~cachekit.backends.memcached.asyncio` the asyncio backend that runs it in
worker threads, ``lock`` their locks; the options (``_config``), key rules
(``_keys``), routing (``_routing``) and connection pool (``_pool``) are private
to this package. The names below keep the import paths of the single-module
``cachekit.backends.memcached`` working.
"""

from __future__ import annotations

from cachekit.backends.memcached._config import DEFAULT_BREAKER_COOLDOWN
from cachekit.backends.memcached._config import DEFAULT_BREAKER_FAILURES
from cachekit.backends.memcached._config import DEFAULT_BREAKER_WINDOW
from cachekit.backends.memcached._config import DEFAULT_CONNECT_TIMEOUT
from cachekit.backends.memcached._config import DEFAULT_MAX_ITEM_SIZE
from cachekit.backends.memcached._config import DEFAULT_TIMEOUT
from cachekit.backends.memcached._config import expire_time
from cachekit.backends.memcached._pool import parse_server
from cachekit.backends.memcached.lock import MemcachedLock
from cachekit.backends.memcached.sync import MemcachedBackend

__all__ = [
    "DEFAULT_BREAKER_COOLDOWN",
    "DEFAULT_BREAKER_FAILURES",
    "DEFAULT_BREAKER_WINDOW",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ITEM_SIZE",
    "DEFAULT_TIMEOUT",
    "MemcachedBackend",
    "MemcachedLock",
    "expire_time",
    "parse_server",
]
