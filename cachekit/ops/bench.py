"""``cachekit bench``: ops/s and latency percentiles of backends, through ``Cache``.

Each backend runs every operation in rounds whose order rotates, so a slow
moment of the machine does not land on one backend only. Latencies are taken
per call with :func:`time.perf_counter_ns`; the table reports medians across
rounds of ops/s and the p50/p90/p99 of all calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import TextIO

from cachekit.cache import Cache
from cachekit.config import from_url
from cachekit.ops.common import EXIT_UNAVAILABLE
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import positive
from cachekit.ops.common import redact

DEFAULT_URLS = {
    "locmem": "locmem://cachekit-bench",
    "redis": "redis://127.0.0.1:6379/0",
    "memcached": "memcached://127.0.0.1:11211",
}
NEEDS_MATPLOTLIB = "--png needs matplotlib: pip install 'cachekit-suite[chart]'"
VALUE = {"user": 42, "name": "x" * 80, "tags": ["a", "b"]}


@dataclass
class Row:
    """One backend and operation: throughput and latency percentiles in microseconds."""

    backend: str
    operation: str
    ops_per_second: float
    p50_us: float
    p90_us: float
    p99_us: float


class Progress:
    """Progress on a stream: a one-line bar on a terminal, one plain line per step otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        # sys.stderr is looked up now, not at import: it may have been replaced since.
        stream = sys.stderr if stream is None else stream
        self.total, self.done, self.stream, self.width = total, 0, stream, width
        self.terminal = stream.isatty()

    def step(self, label: str) -> None:
        """Record one finished step called ``label``."""
        self.done += 1
        if not self.terminal:
            # A log or a pipe: no carriage returns, but a long run still shows it is alive.
            self.stream.write(f"bench: {self.done}/{self.total} {label}\n")
            self.stream.flush()
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label:<28}")
        self.stream.flush()
        if self.done == self.total:
            self.stream.write("\n")


def operations(cache: Cache) -> dict[str, Callable[[int], object]]:
    """The measured calls; each takes the iteration number."""
    cache.set("bench:hit", VALUE, timeout=600)
    keys = [f"bench:many:{i}" for i in range(100)]
    cache.set_many(dict.fromkeys(keys, 1), timeout=600)
    return {
        "get hit": lambda i: cache.get("bench:hit"),
        "get miss": lambda i: cache.get("bench:absent"),
        "set": lambda i: cache.set(f"bench:set:{i % 1000}", VALUE, timeout=600),
        "get_many(100)": lambda i: cache.get_many(keys),
    }


def run(urls: dict[str, str], number: int, rounds: int = 3) -> list[Row]:
    """Benchmark each named cache URL; return one row per backend and operation."""
    caches = {
        name: from_url(url, on_error="raise", key_prefix="cachekit-bench") for name, url in urls.items()
    }
    ops = {name: operations(cache) for name, cache in caches.items()}
    op_names = list(next(iter(ops.values())))
    samples: dict[tuple[str, str], list[float]] = {}
    latencies: dict[tuple[str, str], list[int]] = {}
    progress = Progress(rounds * len(caches) * len(op_names))
    names = list(caches)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            for op in op_names:
                call = ops[name][op]
                timings = latencies.setdefault((name, op), [])
                count = number if op != "get_many(100)" else max(number // 20, 10)
                start = time.perf_counter()
                for i in range(count):
                    t0 = time.perf_counter_ns()
                    call(i)
                    timings.append(time.perf_counter_ns() - t0)
                samples.setdefault((name, op), []).append(count / (time.perf_counter() - start))
                progress.step(f"{name} {op}")
    for cache in caches.values():
        cache.clear()
        cache.close()
    rows = []
    for (name, op), rates in samples.items():
        cuts = statistics.quantiles(latencies[(name, op)], n=100)
        rows.append(
            Row(name, op, statistics.median(rates), cuts[49] / 1000, cuts[89] / 1000, cuts[98] / 1000)
        )
    return rows


def format_table(rows: list[Row]) -> str:
    """Render rows as an aligned text table."""
    lines = [f"{'backend':<12} {'operation':<15} {'ops/s':>12} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9}"]
    for row in rows:
        lines.append(
            f"{row.backend:<12} {row.operation:<15} {row.ops_per_second:>12,.0f} "
            f"{row.p50_us:>9.1f} {row.p90_us:>9.1f} {row.p99_us:>9.1f}"
        )
    return "\n".join(lines)


def write_png(rows: list[Row], path: str) -> None:
    """Draw ops/s per operation and backend as grouped bars (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({row.backend for row in rows})
    op_names = list(dict.fromkeys(row.operation for row in rows))
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(backends)
    for index, backend in enumerate(backends):
        rates = {row.operation: row.ops_per_second for row in rows if row.backend == backend}
        positions = [i + index * width for i in range(len(op_names))]
        axes.bar(positions, [rates.get(op, 0) for op in op_names], width, label=backend)
    axes.set_xticks([i + width * (len(backends) - 1) / 2 for i in range(len(op_names))], op_names)
    axes.set_ylabel("operations per second")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``cachekit bench``."""
    if args.png_path:
        # Checked before the run: the chart is drawn at the end of a long benchmark.
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError(NEEDS_MATPLOTLIB, EXIT_USAGE) from None
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    given: dict[str, str] = {}
    for url in args.url:
        given[url.split("://", 1)[0].split("+", 1)[0]] = url
    urls: dict[str, str] = {}
    for name in names:
        url = given.get(name) or DEFAULT_URLS.get(name)
        if url is None:
            raise CommandError(f"unknown backend {name!r}; give its URL with --url", EXIT_USAGE)
        urls[name] = url
    for name, url in urls.items():
        probe = from_url(url, on_error="raise")
        try:
            probe.get("cachekit-bench:probe")
        except Exception as exc:
            raise CommandError(f"{name}: cannot use {redact(url)}: {exc}", EXIT_UNAVAILABLE) from None
        finally:
            probe.close()
    rows = run(urls, args.operations)
    print(format_table(rows))
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)
    if args.png_path:
        try:
            write_png(rows, args.png_path)
        except ImportError:
            raise CommandError(NEEDS_MATPLOTLIB, EXIT_USAGE) from None
    return 0


def register(command: Register) -> None:
    """Add ``cachekit bench`` to the parser."""
    bench = command("bench", "measure backends: ops/s and latency percentiles", run_cli)
    bench.add_argument(
        "--backends", default="locmem", help="comma-separated: locmem,redis,memcached (default locmem)"
    )
    bench.add_argument(
        "--url", action="append", default=[], help="URL for a backend, e.g. redis://HOST:6379/0 (repeatable)"
    )
    bench.add_argument(
        "--operations", type=positive, default=20000, help="operations per measurement (default 20000)"
    )
    bench.add_argument("--json", dest="json_path", metavar="FILE", help="write the results as JSON to FILE")
    bench.add_argument(
        "--png", dest="png_path", metavar="FILE", help="write a chart to FILE (needs matplotlib)"
    )
