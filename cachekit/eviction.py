"""Can this cache's server drop keys to make room? A start-up check for data that must not vanish.

A cache may evict: that is its job. Sessions must not be evicted: a user
silently logged out by page churn sees no error anywhere. Redis applies
``maxmemory`` and its policy to a whole instance (every database in it), so a
separate *database* does not protect sessions from pages; a separate *instance*
with ``maxmemory-policy noeviction`` does (it refuses writes when full, which
the session middleware answers with a 503 instead of a silent logout).
memcached evicts least recently used items unless started with ``-M``.

:func:`eviction_risk` (sync backends) and :func:`aeviction_risk` (async ones)
ask the servers and return a sentence saying why keys may be dropped, or
``None``. Local memory and the null backend return ``None``: local memory's
bounds are set in code, and with the default settings sessions get a store of
their own (:meth:`cachekit.config.CacheHandler.for_sessions`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["aeviction_risk", "eviction_risk", "judge_memcached", "judge_redis"]


def judge_redis(info: Mapping[str, Any]) -> str | None:
    """Why a Redis with this ``INFO memory`` (one node, or a mapping of node to section) may evict.

    Any policy but ``noeviction`` evicts once ``maxmemory`` is reached, and the
    ``volatile-*`` ones pick exactly the keys with a TTL, as sessions have.
    """
    if "maxmemory_policy" not in info and all(isinstance(v, Mapping) for v in info.values()):
        for node, section in info.items():
            reason = judge_redis(section)
            if reason is not None:
                return f"{node}: {reason}"
        return None
    policy = str(info.get("maxmemory_policy", "noeviction"))
    maxmemory = int(info.get("maxmemory", 0) or 0)
    if policy == "noeviction" or maxmemory == 0:
        return None
    return (
        f"Redis evicts keys when full (maxmemory {maxmemory} bytes, maxmemory-policy {policy}); "
        "the policy covers every database of the instance"
    )


def judge_memcached(settings: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why memcached servers with these ``stats settings`` (by address) may evict: unless ``-M``, they do."""
    evicting = [
        address for address, values in settings.items() if str(values.get("evictions", "on")) != "off"
    ]
    if not evicting:
        return None
    return f"memcached {', '.join(evicting)} evicts least recently used items when full (not started with -M)"


def eviction_risk(backend: Any) -> str | None:
    """Ask ``backend``'s servers whether they may evict; a reason, or ``None`` (also when unreachable)."""
    try:
        settings = getattr(backend, "server_settings", None)
        if settings is not None:
            return judge_memcached(settings())
        client = redis_client(backend)
        if client is not None:
            return judge_redis(client.info("memory"))
    except Exception as exc:  # a start-up check must never stop the start
        logger.info("could not check whether %r evicts: %s", backend, exc)
    return None


async def aeviction_risk(backend: Any) -> str | None:
    """:func:`eviction_risk` for an async backend."""
    try:
        sync = getattr(backend, "sync", None)
        if sync is not None and hasattr(sync, "server_settings"):
            return judge_memcached(sync.server_settings())
        client = redis_client(backend)
        if client is not None:
            return judge_redis(await client.info("memory"))
    except Exception as exc:  # a start-up check must never stop the start
        logger.info("could not check whether %r evicts: %s", backend, exc)
    return None


def redis_client(backend: Any) -> Any:
    """The redis-py client of a (sync or async) Redis backend, else ``None``; imports nothing new."""
    for module_name, class_name in (
        ("cachekit.backends.redis.sync", "RedisBackend"),
        ("cachekit.backends.redis.asyncio", "AsyncRedisBackend"),
    ):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(backend, getattr(module, class_name)):
            return backend.client
    return None
