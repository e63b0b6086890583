"""``cachekit get``, ``set``, ``delete``, ``inspect`` and ``ttl``: one key at a time.

The remaining time to live is not part of the backend protocol (a cache never
needs it), so it is asked of the server directly: Redis ``PTTL``, memcached's
meta command ``mg <key> t`` (memcached 1.6 and later).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cachekit.cache import Cache
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import miss
from cachekit.ops.common import shared
from cachekit.ops.common import using

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


def _parse_value(text: str, as_json: bool) -> Any:
    if not as_json:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"VALUE is not valid JSON: {exc}", EXIT_USAGE) from None


def _timeout(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be seconds or 'none', got {text!r}") from None


def cmd_get(args: argparse.Namespace) -> int:
    """Run ``cachekit get``."""
    missing = object()
    with using(shared(args.url), args.prefix) as cache:
        value = cache.get(args.key, missing)
    if value is missing:
        return miss(args.key)
    print(json.dumps(value, default=repr) if not isinstance(value, str) else value)
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    """Run ``cachekit set``."""
    value = _parse_value(args.value, args.json)
    with using(shared(args.url), args.prefix) as cache:
        cache.set(args.key, value, timeout=args.timeout)
    print(f"OK {args.key!r}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    """Run ``cachekit delete``."""
    with using(shared(args.url), args.prefix) as cache:
        deleted = cache.delete(args.key)
    if not deleted:
        return miss(args.key)
    print(f"deleted {args.key!r}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """Run ``cachekit inspect``."""
    with using(shared(args.url), args.prefix) as cache:
        facts = describe(cache, args.key)
    if facts is None:
        return miss(args.key)
    width = max(len(name) for name in facts)
    for name, value in facts.items():
        print(f"{name:<{width}}  {value}")
    return EXIT_OK


def cmd_ttl(args: argparse.Namespace) -> int:
    """Run ``cachekit ttl``."""
    with using(shared(args.url), args.prefix) as cache:
        ttl = remaining_ttl(cache, args.key)
    if ttl is None:
        return miss(args.key)
    print(ttl)
    return EXIT_OK


def register(command: Register) -> None:
    """Add ``cachekit get``, ``set``, ``delete``, ``inspect`` and ``ttl`` to the parser."""
    keyed = (
        ("get", "print the value under KEY", cmd_get),
        ("set", "store VALUE under KEY", cmd_set),
        ("delete", "delete KEY", cmd_delete),
        ("inspect", "show KEY's type, stored size and remaining time to live", cmd_inspect),
        ("ttl", "print KEY's remaining time to live in seconds ('none': never expires)", cmd_ttl),
    )
    for name, helptext, func in keyed:
        keyed_command = command(name, helptext, func)
        keyed_command.add_argument("url", metavar="URL", help=URL_HELP)
        keyed_command.add_argument(
            "key", metavar="KEY", help="the key, as the application names it (without KEY_PREFIX)"
        )
        if name == "set":
            keyed_command.add_argument(
                "value", metavar="VALUE", help="the value to store (a string, or JSON with --json)"
            )
            keyed_command.add_argument("--json", action="store_true", help="parse VALUE as JSON")
            keyed_command.add_argument(
                "--timeout", type=_timeout, default=None, help="seconds, or 'none' to never expire (default)"
            )
        keyed_command.add_argument("--prefix", help="the cache's KEY_PREFIX (default none)")
