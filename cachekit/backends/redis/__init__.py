"""The Redis backends: standalone, Sentinel and Cluster, sync and asyncio.

:mod:`~cachekit.backends.redis.sync` holds :class:`RedisBackend`,
:mod:`~cachekit.backends.redis.asyncio` its asyncio twin; the URL rules
(``_urls``), the error table (``_errors``) and the near cache (``_near``,
``_aio_near`` and its generated twin ``_sync_near``, over ``cachekit.backends.near``)
are private to this package. The names below keep the import
paths of the single-module ``cachekit.backends.redis`` working.
"""

from __future__ import annotations

from cachekit.backends.redis._clients import BlockingSentinelPool
from cachekit.backends.redis._clients import blocking_client
from cachekit.backends.redis._clients import no_retry
from cachekit.backends.redis._core import RedisCore as BreakerMixin
from cachekit.backends.redis._errors import backoff
from cachekit.backends.redis._errors import retryable
from cachekit.backends.redis._errors import translate_error
from cachekit.backends.redis._rules import WriteCalls
from cachekit.backends.redis._rules import add_calls
from cachekit.backends.redis._rules import cas_calls
from cachekit.backends.redis._rules import check_value_size
from cachekit.backends.redis._rules import register_scripts
from cachekit.backends.redis._urls import DEFAULT_MAX_VALUE_SIZE
from cachekit.backends.redis._urls import DEFAULT_SOCKET_CONNECT_TIMEOUT
from cachekit.backends.redis._urls import DEFAULT_SOCKET_TIMEOUT
from cachekit.backends.redis._urls import OPTIONS as URL_OPTIONS
from cachekit.backends.redis._urls import redact_url
from cachekit.backends.redis.sync import RedisBackend
from cachekit.backends.redis.sync import RedisLock

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "URL_OPTIONS",
    "BlockingSentinelPool",
    "BreakerMixin",
    "RedisBackend",
    "RedisLock",
    "WriteCalls",
    "add_calls",
    "backoff",
    "blocking_client",
    "cas_calls",
    "check_value_size",
    "no_retry",
    "redact_url",
    "register_scripts",
    "retryable",
    "translate_error",
]
