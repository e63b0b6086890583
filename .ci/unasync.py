"""Generate the sync twin of each async source, as httpcore does; ``--check`` fails when one is stale.

Usage (from the repository root)::

    .venv/bin/python .ci/unasync.py           # write every generated file
    .venv/bin/python .ci/unasync.py --check   # exit 1, naming the stale files, if any differs

Each row of :data:`PAIRS` names an async source (the truth, edited by hand), the sync file
generated from it and the replacements that pair needs beyond :data:`COMMON`. A replacement
is ``(regex, text)`` applied to each line in order. Two markers in a source drop lines from
the sync twin: a line ending in ``# unasync: async-only`` goes, and so does every line from
a line ``# unasync: async-only`` to the line ``# unasync: end``. The output is run through
``ruff``'s import sorting (imports left unused, such as ``Awaitable``, are dropped) and
``ruff format``, so a line made shorter (``await`` removed) is laid out as ruff would.

To add a pair (e.g. ``sessions/stores``), append a row; ``.ci/run`` runs ``--check``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

Subs = tuple[tuple[str, str], ...]

#: Replacements every pair gets: the async keywords and the async names of the standard library.
COMMON: Subs = (
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
)

#: The fronts: AsyncCache, its stampede flow, tags and @memoize are the sources.
_FRONTS: Subs = (
    (r"\bcachekit\.fronts\._async\b", "cachekit.fronts._sync"),
    (r"\bcachekit\.fronts\._async_only\b", "cachekit.fronts._sync_only"),
    (r"\bcachekit\.aio\.AsyncCache\b", "cachekit.Cache"),
    (r"\bAsyncCache\b", "Cache"),
    (r"\bAsyncBackend\b", "Backend"),
    (r"\bAsyncLock\b", "Lock"),
    (r"\bcachekit\.backends\.aio_base\b", "cachekit.backends.base"),
    (r"\bAsyncCompute\b", "Compute"),
    (r"\bAsyncExtras\b", "SyncExtras"),
    (r"\bAsyncMemoized\b", "Memoized"),
    (r"\bacall\b", "call"),
    (r"\bdefault_async_cache\b", "default_cache"),
    (r"\baclose\b", "close"),
    (r"\bAwaitable\[R\]", "R"),
    (r'"cachekit\.aio"', '"cachekit.cache"'),
    (r"\ban awaited\b", "a"),
)

#: The session stores: AsyncCacheStore (sessions/stores/aio_cache.py) is the source.
_SESSIONS: Subs = (
    (r"^from cachekit\.aio import AsyncCache$", "from cachekit import Cache"),
    (r"\bAsyncCacheStore\b", "CacheStore"),
    (r"\bAsyncCache\b", "Cache"),
    (r"\bcachekit\.aio\b", "cachekit.cache"),
    (r"\bAsyncSupportsCas\b", "SupportsCas"),
    (r"\bcachekit\.backends\.aio_base\b", "cachekit.backends.base"),
    (r"\bStoreBase\b", "BaseStore"),
    (r"^import asyncio$", "import time"),
    (r"\basyncio\.sleep\b", "time.sleep"),
)

#: The Redis near-cache backend: AsyncNearRedisBackend (backends/redis/_aio_near.py) is the source.
_REDIS_NEAR: Subs = (
    (r"\bAsyncNearRedisBackend\b", "NearRedisBackend"),
    (r"\bAsyncRedisBackend\b", "RedisBackend"),
    (r"\bcachekit\.backends\.redis\.asyncio\b", "cachekit.backends.redis.sync"),
    (r"\baio_listener\b", "sync_listener"),
    (r"\basyncio\.to_thread\(self\._near\.close\)", "self._near.close()"),
    (r" \(off the event loop\)", ""),
    (
        r"^The source of ``_sync_near\.py``, which .*$",
        "Generated from ``_aio_near.py``: edit that file, then run ``.ci/unasync.py``.",
    ),
)

#: (async source, generated sync file, replacements beyond COMMON), relative to the root.
PAIRS: tuple[tuple[str, str, Subs], ...] = (
    ("cachekit/fronts/_async/cache.py", "cachekit/fronts/_sync/cache.py", _FRONTS),
    ("cachekit/fronts/_async/lock.py", "cachekit/fronts/_sync/lock.py", _FRONTS),
    ("cachekit/fronts/_async/tags.py", "cachekit/fronts/_sync/tags.py", _FRONTS),
    (
        "cachekit/fronts/_async/stampede.py",
        "cachekit/fronts/_sync/stampede.py",
        ((r'"cachekit\.aio"', '"cachekit.stampede"'), *_FRONTS),
    ),
    ("cachekit/fronts/_async/memoize.py", "cachekit/fronts/_sync/memoize.py", _FRONTS),
    ("sessions/stores/aio_cache.py", "sessions/stores/cache.py", _SESSIONS),
    ("cachekit/backends/redis/_aio_near.py", "cachekit/backends/redis/_sync_near.py", _REDIS_NEAR),
)

HEADER = "# Generated from {source} by .ci/unasync.py; do not edit.\n"
_ONLY = "# unasync: async-only"
_END = "# unasync: end"


def unasync_text(text: str, subs: Subs) -> str:
    """Return the sync twin of the async source ``text`` (before formatting)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in (*COMMON, *subs)]
    out: list[str] = []
    dropping = False
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == _ONLY:
            if dropping:
                raise ValueError(f"line {number}: {_ONLY!r} inside an async-only block")
            dropping = True
            continue
        if marker == _END:
            if not dropping:
                raise ValueError(f"line {number}: {_END!r} without {_ONLY!r}")
            dropping = False
            continue
        if dropping or line.rstrip().endswith(_ONLY):
            continue
        for pattern, replacement in compiled:
            line = pattern.sub(replacement, line)
        out.append(line)
    if dropping:
        raise ValueError(f"{_ONLY!r} block never ended with {_END!r}")
    return "".join(out)


def _ruff() -> str:
    """The ruff beside this Python (the venv's), else the checkout's .venv, else the one on PATH."""
    for candidate in (Path(sys.executable).parent / "ruff", ROOT / ".venv" / "bin" / "ruff"):
        if candidate.exists():
            return str(candidate)
    return "ruff"


def generate(source: str, target: str, subs: Subs) -> str:
    """Return the formatted text of ``target`` generated from ``source``."""
    text = HEADER.format(source=source) + unasync_text((ROOT / source).read_text(), subs)
    # Renamed imports sort differently (_async < _core < _sync) and some go unused (Awaitable):
    # sort them and drop those, then lay the file out.
    for command in (["check", "--select", "I,F401", "--fix", "--quiet"], ["format"]):
        done = subprocess.run(
            [_ruff(), *command, "--stdin-filename", target, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise SystemExit(f"ruff {command[0]} failed on the twin of {source}:\n{done.stderr}")
        text = done.stdout
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a twin is stale")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for source, target, subs in PAIRS:
        expected = generate(source, target, subs)
        path = ROOT / target
        current = path.read_text() if path.exists() else None
        if current == expected:
            continue
        stale.append(target)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected)
            print(f"wrote {target}")
    if args.check and stale:
        for target in stale:
            print(f"{target} is stale: run .venv/bin/python .ci/unasync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
