"""``cachekit stats``: the few numbers that matter, from the server's own counters.

The ``Cache`` counters of the ``cachekit`` process itself say nothing about the
applications using the cache (they are this one run's), so the human report reads
the server's statistics (Redis ``INFO``, memcached ``stats``) and shows the
circuit breaker only when the backend has one. ``--raw`` and ``--json`` show all.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import Register
from cachekit.ops.common import redact
from cachekit.ops.common import shared
from cachekit.ops.common import using


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _bytes(count: float) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _ratio(hits: float, misses: float) -> str:
    lookups = hits + misses
    if not lookups:
        return "no lookups yet"
    return f"{100 * hits / lookups:.1f}% ({hits:,.0f} hits, {misses:,.0f} misses)"


def _uptime(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _redis_lines(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    limit = _number(info.get("maxmemory"))
    keys = sum(
        _number(db.get("keys")) for name, db in info.items() if name.startswith("db") and isinstance(db, dict)
    )
    return [
        (
            "server",
            f"Redis {info.get('redis_version', '?')}, up {_uptime(_number(info.get('uptime_in_seconds')))}",
        ),
        ("hit ratio", _ratio(_number(info.get("keyspace_hits")), _number(info.get("keyspace_misses")))),
        (
            "memory",
            f"{_bytes(_number(info.get('used_memory')))} used of "
            f"{_bytes(limit) if limit else 'no limit'} (policy {info.get('maxmemory_policy', '?')})",
        ),
        ("keys", f"{keys:,.0f}"),
        ("evictions", f"{_number(info.get('evicted_keys')):,.0f}"),
        ("connections", f"{_number(info.get('connected_clients')):,.0f} clients"),
    ]


def _memcached_lines(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("server", f"memcached {stats.get('version', '?')}, up {_uptime(_number(stats.get('uptime')))}"),
        ("hit ratio", _ratio(_number(stats.get("get_hits")), _number(stats.get("get_misses")))),
        (
            "memory",
            f"{_bytes(_number(stats.get('bytes')))} used of {_bytes(_number(stats.get('limit_maxbytes')))}",
        ),
        ("keys", f"{_number(stats.get('curr_items')):,.0f}"),
        ("evictions", f"{_number(stats.get('evictions')):,.0f}"),
        ("connections", f"{_number(stats.get('curr_connections')):,.0f} open"),
    ]


def _node_lines(stats: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    if "redis_version" in stats:
        tracking = _tracking_line(stats)
        return _redis_lines(stats) + ([tracking] if tracking is not None else [])
    if "limit_maxbytes" in stats or "get_hits" in stats:
        return _memcached_lines(stats)
    return None


def _breaker_line(cache_stats: Mapping[str, Any]) -> tuple[str, str] | None:
    if "breaker_open" not in cache_stats:
        return None
    is_open = int(_number(cache_stats["breaker_open"]))
    state = f"{is_open} open" if is_open else "closed"
    trips = int(_number(cache_stats.get("breaker_trips")))
    rejections = int(_number(cache_stats.get("breaker_rejections")))
    return ("breaker", f"{state} ({trips} trips, {rejections} calls refused while open, in this process)")


def _near_line(cache_stats: Mapping[str, Any]) -> tuple[str, str] | None:
    if "near_hits" not in cache_stats:
        return None
    state = (
        "receiving invalidations" if _number(cache_stats.get("near_ready")) else "not ready (serves nothing)"
    )
    counts = ", ".join(
        f"{int(_number(cache_stats.get('near_' + name))):,} {name}"
        for name in ("hits", "misses", "invalidations", "flushes")
    )
    return ("near cache", f"{state}; {counts}, in this process")


def _tracking_line(server: Mapping[str, Any]) -> tuple[str, str] | None:
    if "tracking_clients" not in server:
        return None
    clients = _number(server.get("tracking_clients"))
    return ("tracking", f"{clients:,.0f} clients receive invalidations (near caches, CLIENT TRACKING)")


def format_stats(url: str, server: Mapping[str, Any], cache_stats: Mapping[str, Any]) -> str:
    """Render the human report of ``cachekit stats`` for ``server`` statistics (one node or several)."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    single = _node_lines(server)
    if single is not None:
        sections.append((url, single))
    else:
        for node, stats in server.items():
            lines = _node_lines(stats) if isinstance(stats, Mapping) else None
            title = url if len(server) == 1 else f"{url} node {node}"
            sections.append((title, lines or [("stats", "not understood; see --raw")]))
    if not sections:
        sections.append((url, [("server", "reports no statistics (see --raw for this process's counters)")]))
    local = [line for line in (_near_line(cache_stats), _breaker_line(cache_stats)) if line is not None]
    out: list[str] = []
    for title, lines in sections:
        out.append(title)
        lines = [*lines, *local]
        out.extend(f"  {name:<12}{value}" for name, value in lines)
    return "\n".join(out)


def _print_raw(values: Mapping[str, Any], indent: str) -> None:
    """Print ``name: value`` lines, one level of indentation per nested mapping (a node, a Redis db)."""
    for name, value in sorted(values.items(), key=lambda item: str(item[0])):
        if isinstance(value, Mapping):
            print(f"{indent}{name}:")
            _print_raw(value, indent + "  ")
        else:
            print(f"{indent}{name}: {value}")


def cmd_stats(args: argparse.Namespace) -> int:
    """Run ``cachekit stats``."""
    with using(shared(args.url)) as cache:
        server_stats: Callable[[], dict[str, Any]] | None = getattr(cache.backend, "server_stats", None)
        server = server_stats() if server_stats is not None else {}
        report: dict[str, Any] = {"cache": cache.stats(), "server": server}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    elif args.raw:
        for section, values in report.items():
            print(f"[{section}]")
            _print_raw(values, "  ")
    else:
        print(format_stats(redact(args.url), report["server"], report["cache"]))
    return EXIT_OK


def register(command: Register) -> None:
    """Add ``cachekit stats`` to the parser."""
    stats = command(
        "stats", "show hit ratio, memory, evictions, connections, near cache and breaker state", cmd_stats
    )
    stats.add_argument("url", metavar="URL", help=URL_HELP)
    shape = stats.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print everything as JSON")
    shape.add_argument("--raw", action="store_true", help="print every counter the server reports")
