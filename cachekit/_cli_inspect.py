"""``cachekit inspect`` and ``cachekit ttl``: what is stored under one key.

The remaining time to live is not part of the backend protocol (a cache never
needs it), so it is asked of the server directly: Redis ``PTTL``, memcached's
meta command ``mg <key> t`` (memcached 1.6 and later).
"""

from __future__ import annotations

from typing import Any

from cachekit.cache import Cache

#: The remaining lifetime could not be asked (a backend or server without a way to tell).
UNKNOWN = "unknown"


def _server_ttl(backend: Any, stored: str) -> float | str | None:
    """Seconds left, ``None`` for never, or :data:`UNKNOWN`; a missing key is ``None`` too (checked first)."""
    client = getattr(backend, "client", None)
    if client is not None and hasattr(client, "pttl"):
        millis = int(client.pttl(stored))
        return None if millis < 0 else millis / 1000
    locate = getattr(backend, "_locate", None)  # memcached: the node and key as stored there
    if locate is not None:
        node, key = locate(stored)
        try:
            reply: bytes = node.raw_command(f"mg {key} t".encode(), b"\r\n")
        except Exception:  # memcached before 1.6 answers ERROR, which pymemcache raises
            return UNKNOWN
        for token in reply.split()[1:]:
            if token.startswith(b"t"):
                seconds = int(token[1:])
                return None if seconds < 0 else float(seconds)
    return UNKNOWN


def _say_ttl(ttl: float | str | None) -> str:
    if ttl is None:
        return "never expires"
    if isinstance(ttl, str):
        return "unknown (the server cannot tell)"
    return f"{ttl:g} s remaining"


def describe(cache: Cache, key: str) -> dict[str, str] | None:
    """Return facts about ``key`` (type, stored size, remaining lifetime), or ``None`` on a miss."""
    stored = cache.make_key(key)
    raw = cache.backend.get(stored)
    if raw is None:
        return None
    value = cache.get(key)
    return {
        "key": repr(key),
        "stored as": repr(stored),
        "type": type(value).__name__,
        "size": f"{len(raw)} bytes serialized",
        "ttl": _say_ttl(_server_ttl(cache.backend, stored)),
    }


def remaining_ttl(cache: Cache, key: str) -> str | None:
    """Return ``key``'s remaining seconds as text (``"none"``: never expires), or ``None`` on a miss."""
    stored = cache.make_key(key)
    if cache.backend.get(stored) is None:
        return None
    ttl = _server_ttl(cache.backend, stored)
    if ttl is None:
        return "none"
    return ttl if isinstance(ttl, str) else f"{ttl:g}"
