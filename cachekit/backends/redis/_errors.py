"""Which Redis failures are outages and which are bugs: one table for both Redis backends.

Private to :mod:`cachekit.backends.redis.sync` and :mod:`cachekit.backends.redis.asyncio`
(redis-py raises the same exception classes from ``redis`` and ``redis.asyncio``).
An *outage* (:class:`~cachekit.exceptions.BackendUnavailableError`) is something the
server or the network will get over: the failure policy turns it into a miss or a
no-op, and the circuit breaker counts it. Anything else is a *bug* in the request
(:class:`~cachekit.exceptions.BackendError`), which is raised so it gets fixed.

Error replies are classified by their code, the reply's first word, because
redis-py gives only some codes their own class (``MISCONF``, ``NOREPLICAS`` and
``BUSY`` arrive as a plain ``ResponseError``). Script errors carry the code of the
command that failed inside them (Redis 7), so ``OOM`` in a script is an outage too.
"""

from __future__ import annotations

import random

from redis.exceptions import AuthenticationError
from redis.exceptions import AuthorizationError
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import RedisClusterException
from redis.exceptions import RedisError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

#: What the backends catch around every call.
ERRORS = (RedisError, RedisClusterException, OSError)

#: Error-reply codes that mean "not now" rather than "never like this".
OUTAGE_CODES = frozenset(
    {
        "MISCONF",  # the last snapshot failed and stop-writes-on-bgsave-error refuses writes
        "NOREPLICAS",  # min-replicas-to-write is not met
        "READONLY",  # a replica, e.g. an old master after a failover
        "LOADING",  # the server is loading its dataset after a restart
        "MASTERDOWN",  # a replica lost its master and replica-serve-stale-data is no
        "TRYAGAIN",  # a multi-key call during a slot migration
        "CLUSTERDOWN",  # the cluster lost quorum or a slot has no master
        "BUSY",  # a script or function has run past busy-reply-threshold
        "OOM",  # maxmemory reached with noeviction (or nothing left to evict)
        "MOVED",  # a redirect redis-py could not follow: the slot map is changing
        "ASK",
        "NOSCRIPT",  # a promoted replica without the script cache, if redis-py's reload failed
        "UNBLOCKED",  # a blocked client was unblocked by a failover
    }
)
#: Error-reply codes that mean the configured credentials or ACL are wrong.
CREDENTIAL_CODES = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})
# An "ERR ..." reply whose text shows the server is overloaded rather than the request wrong.
_OUTAGE_ERR_TEXTS = ("max number of clients reached",)


def reply_code(exc: BaseException) -> str | None:
    """The error reply's code (``"MISCONF"``, ``"WRONGTYPE"``, ``"ERR"``...), or ``None`` if not a reply."""
    if not isinstance(exc, ResponseError):
        return None
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    text = str(exc)
    first = text.split(" ", 1)[0]
    return first if first.isupper() and first.isalpha() else "ERR"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (from redis-py or a socket) is an outage rather than a bug.

    Connection errors, timeouts, protocol breaks and the replies in :data:`OUTAGE_CODES`
    are outages; wrong types, syntax errors and unknown commands are not.
    """
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return False
    code = reply_code(exc)
    if code is not None:
        if code in OUTAGE_CODES:
            return True
        return code == "ERR" and any(text in str(exc) for text in _OUTAGE_ERR_TEXTS)
    # A reply that breaks the protocol leaves the connection out of step.
    return isinstance(
        exc, (RedisConnectionError, RedisTimeoutError, InvalidResponse, RedisClusterException, OSError)
    )


def translate_error(
    backend: object, exc: BaseException, operation: str, key: str | None = None
) -> BackendError:
    """Turn a redis-py (or socket) error into cachekit's error tree; a method of both backends."""
    where = f"{operation} {key!r}" if key is not None else operation
    if isinstance(exc, (AuthenticationError, AuthorizationError)) or reply_code(exc) in CREDENTIAL_CODES:
        return BackendError(
            f"Redis at {backend!r} refused the credentials during {where}: {exc}; "
            "check username and password."
        )
    if is_outage(exc):
        return BackendUnavailableError(f"Redis at {backend!r} is unavailable ({where}): {exc}")
    return BackendError(f"Redis at {backend!r} answered {where} with an error: {exc}")


# Connection errors that a prompt retry would only repeat: an exhausted pool, a full server.
_NOT_RETRIED = ("No connection available", "max number of clients reached")


def retryable(exc: BaseException) -> bool:
    """Whether a call that failed with ``exc`` may be sent again.

    Only a lost connection (a restarted server, a pooled socket closed under us) is
    retried. A timeout is not: the server may be hung, and waiting again would cost a
    second socket timeout; nor is a pool that had no free connection in time, a
    server at its client limit, one still loading its data, or refused credentials.
    """
    return (
        isinstance(exc, RedisConnectionError)
        # redis-py files these replies under ConnectionError; repeating them at once is no use.
        and not isinstance(exc, (RedisTimeoutError, BusyLoadingError, AuthenticationError))
        and not any(text in str(exc) for text in _NOT_RETRIED)
    )


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): 10 ms doubling, jittered, at most 100 ms."""
    return float(min(0.1, 0.01 * 2.0**attempt)) * random.uniform(0.5, 1.0)
