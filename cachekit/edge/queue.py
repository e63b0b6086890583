"""Where purges wait while a proxy is unreachable: on the cache's Redis (durable) or in memory (not).

An item is one job for one purger's target (one Varnish host, one API). The
same job for the same target is held once: queued twice while the proxy is
down, it is delivered once. A delivery *claims* due items for a lease (a
process that dies mid-delivery leaves them to another after ``lease``
seconds); success removes an item (unless the same purge was queued again
meanwhile: then it is delivered again), failure puts it back after a backoff.

- :class:`RedisPurgeQueue`: a sorted set (member: the item, score: when it is
  due) and two hashes (attempts, re-queue counts) under the cache's key
  prefix; every step is one Lua script, so processes share it safely and it
  survives restarts of the app (and of Redis, as far as its persistence goes).
- :class:`MemoryPurgeQueue`: the same in this process's memory, **not
  durable**: a restart loses what waits; for one-process apps and tests.

Both are bounded (``max_length``): past it a new item is refused and the
caller reports it as dropped (a full queue means the proxy has been down
long: ban everything there once it is back).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from cachekit.edge.jobs import InvalidPurgeError
from cachekit.edge.jobs import PurgeJob
from cachekit.edge.purgers import check_name
from cachekit.edge.purgers import check_target
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

logger = logging.getLogger("cachekit.edge")

#: Default most items a queue holds.
MAX_LENGTH = 10_000
#: Default seconds a claimed item is reserved for its deliverer.
LEASE = 30.0


@dataclass(frozen=True)
class QueuedPurge:
    """One job waiting for one target of one purger."""

    purger: str
    target: str
    job: PurgeJob
    #: Failed deliveries so far.
    attempts: int = 0
    #: Times the same purge was queued again; a delivery removes the item only if unchanged.
    version: int = 0

    @property
    def member(self) -> str:
        """The item's identity in a queue: purger, target and job (not the counters)."""
        return json.dumps([self.purger, self.target, self.job.to_json()], separators=(",", ":"))

    @classmethod
    def from_member(cls, member: str, attempts: object = 0, version: object = 0) -> QueuedPurge:
        """The item :attr:`member` names, checked again: a queue's store is data, not trusted code.

        :raises InvalidPurgeError: if ``member`` is not what :attr:`member` writes (not JSON,
            another shape, a purger name or target that could not be configured, a job that
            does not pass the checks), or the counters are not whole numbers >= 0.
        """
        try:
            purger, target, job = json.loads(member)
        except (ValueError, TypeError) as exc:
            raise InvalidPurgeError(
                f"a queued purge is not [purger, target, job]: {type(exc).__name__}"
            ) from None
        if not isinstance(job, str):
            raise InvalidPurgeError("a queued purge's job is not text.")
        counters = []
        for counter in (attempts, version):
            text = counter.decode("ascii", "replace") if isinstance(counter, bytes) else counter
            if isinstance(text, str) and text.isdigit() and text.isascii():
                text = int(text)
            if not isinstance(text, int) or isinstance(text, bool) or text < 0:
                raise InvalidPurgeError("a queued purge's attempts and version must be whole numbers >= 0.")
            counters.append(text)
        try:
            decoded = PurgeJob.from_json(job)
        except (ValueError, TypeError) as exc:  # InvalidPurgeError is a ValueError
            raise InvalidPurgeError(f"a queued purge's job does not pass the checks: {exc}") from None
        return cls(check_name(purger), check_target(target), decoded, counters[0], counters[1])


class PurgeQueue(Protocol):
    """What :class:`~cachekit.edge.Purges` needs of a queue."""

    #: Whether queued items survive a restart of the app.
    durable: bool

    def put(self, item: QueuedPurge, due: float) -> bool:
        """Queue ``item`` (or note that it was queued again); ``False`` if the queue is full."""

    def claim(self, now: float, limit: int) -> list[QueuedPurge]:
        """Up to ``limit`` items due at ``now``, reserved for :data:`LEASE` seconds."""

    def done(self, item: QueuedPurge) -> None:
        """``item`` was delivered: drop it, unless it was queued again since its claim."""

    def retry(self, item: QueuedPurge, due: float) -> None:
        """``item`` failed again: count the attempt and hold it until ``due``."""

    def drop(self, item: QueuedPurge) -> None:
        """Remove ``item`` whatever happened to it (it can never be delivered)."""

    def __len__(self) -> int:
        """Items waiting."""

    def items(self) -> Sequence[QueuedPurge]:
        """Every waiting item (for ``cachekit purge --list-queued`` and tests)."""


class MemoryPurgeQueue:
    """A queue in this process's memory: **not durable** (a restart loses what waits)."""

    durable = False

    def __init__(self, max_length: int = MAX_LENGTH, lease: float = LEASE) -> None:
        self.max_length = max_length
        self.lease = lease
        self._lock = threading.Lock()
        # member -> [due, attempts, version]
        self._items: dict[str, list[Any]] = {}

    def __repr__(self) -> str:
        return f"MemoryPurgeQueue({len(self)} waiting)"

    def put(self, item: QueuedPurge, due: float) -> bool:
        """Queue ``item`` due at ``due``; ``False`` if full."""
        member = item.member
        with self._lock:
            held = self._items.get(member)
            if held is not None:
                held[2] += 1
                return True
            if len(self._items) >= self.max_length:
                return False
            self._items[member] = [due, 0, 0]
            return True

    def claim(self, now: float, limit: int) -> list[QueuedPurge]:
        """Due items, oldest due first, leased until ``now + lease``."""
        with self._lock:
            due = sorted((held[0], member) for member, held in self._items.items() if held[0] <= now)[:limit]
            claimed = []
            for _, member in due:
                held = self._items[member]
                held[0] = now + self.lease
                item = _decoded(member, held[1], held[2])
                if item is None:
                    del self._items[member]
                else:
                    claimed.append(item)
            return claimed

    def done(self, item: QueuedPurge) -> None:
        """Drop ``item`` unless queued again since its claim (then it is due again at once)."""
        with self._lock:
            held = self._items.get(item.member)
            if held is None:
                return
            if held[2] == item.version:
                del self._items[item.member]
            else:
                held[0] = 0.0

    def retry(self, item: QueuedPurge, due: float) -> None:
        """Count a failed attempt; due again at ``due``."""
        with self._lock:
            held = self._items.get(item.member)
            if held is not None:
                held[0], held[1] = due, held[1] + 1

    def drop(self, item: QueuedPurge) -> None:
        """Remove ``item``."""
        with self._lock:
            self._items.pop(item.member, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def items(self) -> list[QueuedPurge]:
        """Every waiting item."""
        with self._lock:
            found = [_decoded(m, held[1], held[2]) for m, held in self._items.items()]
        return [item for item in found if item is not None]


_PUT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], 0)
redis.call('HSET', KEYS[3], ARGV[1], 0)
return 1
"""
_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(members) do
  redis.call('ZADD', KEYS[1], ARGV[2], m)
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[3], m) or '0'
end
return out
"""
_DONE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if (redis.call('HGET', KEYS[3], ARGV[1]) or '0') == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 0
"""
_RETRY = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""
_DROP = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


class RedisPurgeQueue:
    """A durable queue on Redis: one sorted set and two hashes under ``name``.

    :param client: a redis-py ``Redis`` (or ``RedisCluster``: the three keys
        share a hash tag, so the scripts run on one node), or a cachekit Redis
        backend (its client is taken when first needed, so building the queue
        never connects).
    :param name: the keys' stem; :func:`queue_for` puts it under the cache's prefix.
    """

    durable = True

    def __init__(
        self, client: Any, name: str = "cachekit.purge", max_length: int = MAX_LENGTH, lease: float = LEASE
    ) -> None:
        self._source = client
        self.max_length = max_length
        self.lease = lease
        stem = "{" + name + "}"
        self.keys = (stem + ".due", stem + ".attempts", stem + ".versions")
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        """The redis-py client."""
        source = self._source
        return source if callable(getattr(source, "register_script", None)) else source.client

    def _run(self, script: str, *args: Any) -> Any:
        with _translated():
            client = self.client
            registered = self._scripts.get(script)
            if registered is None:
                registered = self._scripts[script] = client.register_script(script)
            return registered(keys=self.keys, args=list(args), client=client)

    def __repr__(self) -> str:
        return f"RedisPurgeQueue({self.keys[0]!r})"

    def put(self, item: QueuedPurge, due: float) -> bool:
        """Queue ``item`` due at ``due``; ``False`` if full."""
        return bool(self._run(_PUT, item.member, repr(due), self.max_length))

    def claim(self, now: float, limit: int) -> list[QueuedPurge]:
        """Due items, leased until ``now + lease``."""
        flat = self._run(_CLAIM, repr(now), repr(now + self.lease), limit)
        out = []
        for i in range(0, len(flat), 3):
            member, attempts, version = flat[i : i + 3]
            item = _decoded(member, attempts, version)
            if item is None:
                self._run(_DROP, member)  # the raw member: it may not even be UTF-8
            else:
                out.append(item)
        return out

    def done(self, item: QueuedPurge) -> None:
        """Drop ``item`` unless queued again since its claim."""
        self._run(_DONE, item.member, str(item.version))

    def retry(self, item: QueuedPurge, due: float) -> None:
        """Count a failed attempt; due again at ``due``."""
        self._run(_RETRY, item.member, repr(due))

    def drop(self, item: QueuedPurge) -> None:
        """Remove ``item``."""
        self._run(_DROP, item.member)

    def __len__(self) -> int:
        with _translated():
            return int(self.client.zcard(self.keys[0]))

    def items(self) -> list[QueuedPurge]:
        """Every waiting item."""
        with _translated():
            members = self.client.zrange(self.keys[0], 0, -1)
            attempts = self.client.hmget(self.keys[1], members) if members else []
        found = [_decoded(m, a or b"0") for m, a in zip(members, attempts, strict=True)]
        return [item for item in found if item is not None]


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """redis-py's errors as cachekit's: unreachable is :class:`BackendUnavailableError`."""
    import redis.exceptions

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise BackendUnavailableError(f"purge queue: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise BackendError(f"purge queue: {exc}") from exc


def _decoded(member: Any, attempts: Any = 0, version: Any = 0) -> QueuedPurge | None:
    """The item ``member`` names, or ``None`` (logged) if it is not one: it is then dropped, never retried.

    One bad member must not stall the queue (every claim would raise on it), and
    the log never shows it: it may be anyone's bytes.
    """
    try:
        text = member.decode() if isinstance(member, bytes) else member
        if not isinstance(text, str):
            raise InvalidPurgeError(f"a queued purge is {type(member).__name__}, not text")
        return QueuedPurge.from_member(text, attempts, version)
    except (InvalidPurgeError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, InvalidPurgeError) else "not UTF-8"
        logger.error("an undecodable purge queue item (%d bytes) was dropped: %s", len(member), reason)
        return None


def queue_for(cache: Any, max_length: int = MAX_LENGTH) -> PurgeQueue:
    """A :class:`RedisPurgeQueue` on ``cache``'s Redis when it has one, else a :class:`MemoryPurgeQueue`.

    The queue's keys sit under the cache's ``key_prefix``, so two apps sharing
    one Redis keep separate queues.
    """
    try:
        from cachekit.backends.redis import RedisBackend
    except ImportError:  # no redis-py: the cache cannot be on Redis
        return MemoryPurgeQueue(max_length)
    backend = getattr(cache, "backend", None)
    if isinstance(backend, RedisBackend):
        prefix = getattr(cache, "key_prefix", "") or ""
        return RedisPurgeQueue(
            backend, f"{prefix}:cachekit.purge" if prefix else "cachekit.purge", max_length
        )
    return MemoryPurgeQueue(max_length)
