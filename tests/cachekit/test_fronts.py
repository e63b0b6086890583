"""The fronts written once: the unasync generator, and the drift it removed between the twins."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cachekit.aio import AsyncCache
from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from cachekit.exceptions import BackendUnavailableError
from cachekit.fronts.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]


def _unasync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", ROOT / ".ci" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = """\
import asyncio  # unasync: async-only
from cachekit.fronts._async.lock import GoAheadLock


async def fetch(cache: AsyncCache) -> int:
    # unasync: async-only
    await asyncio.sleep(0)
    # unasync: end
    async with GoAheadLock(cache, "k", blocking=True) as turn:
        return await cache.get("k")
"""


def test_unasync_text_turns_the_async_source_into_its_twin() -> None:
    unasync = _unasync()
    text = unasync.unasync_text(SOURCE, unasync.PAIRS[0][2])
    assert text == (
        "from cachekit.fronts._sync.lock import GoAheadLock\n"
        "\n"
        "\n"
        "def fetch(cache: Cache) -> int:\n"
        '    with GoAheadLock(cache, "k", blocking=True) as turn:\n'
        '        return cache.get("k")\n'
    )


@pytest.mark.parametrize(
    "source",
    [
        "# unasync: async-only\nx = 1\n",
        "x = 1\n# unasync: end\n",
        "# unasync: async-only\n# unasync: async-only\n",
    ],
)
def test_unbalanced_markers_are_refused(source: str) -> None:
    with pytest.raises(ValueError, match="unasync"):
        _unasync().unasync_text(source, ())


def test_every_generated_twin_is_current() -> None:
    assert _unasync().main(["--check"]) == 0


def test_check_fails_on_a_stale_twin_and_a_run_rewrites_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unasync = _unasync()
    source, target, subs = unasync.PAIRS[0]
    (tmp_path / source).parent.mkdir(parents=True)
    shutil.copy(ROOT / source, tmp_path / source)
    (tmp_path / target).parent.mkdir(parents=True)
    shutil.copy(ROOT / target, tmp_path / target)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # ruff's settings
    unasync.ROOT = tmp_path
    unasync.PAIRS = ((source, target, subs),)
    assert unasync.main(["--check"]) == 0
    with (tmp_path / source).open("a") as file:
        file.write("\n\nasync def added() -> None:\n    await asyncio.sleep(0)\n")
    assert unasync.main(["--check"]) == 1
    assert f"{target} is stale" in capsys.readouterr().err
    assert unasync.main([]) == 0
    assert "def added() -> None:\n    asyncio.sleep(0)\n" in (tmp_path / target).read_text()
    assert unasync.main(["--check"]) == 0


class _NoCas(LocMemBackend):
    """Local memory without compare-and-set."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("gets", "cas"):
            raise AttributeError(name)
        return super().__getattribute__(name)


class _AsyncNoCas(AsyncLocMemBackend):
    def __getattribute__(self, name: str) -> Any:
        if name in ("gets", "cas"):
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_cas_without_compare_and_set_is_refused_alike_by_both_fronts() -> None:
    with pytest.raises(NotImplementedError, match="compare-and-set"):
        Cache(_NoCas()).cas("k", 1, token=None)
    with pytest.raises(NotImplementedError, match="compare-and-set"):
        asyncio.run(AsyncCache(_AsyncNoCas()).cas("k", 1, token=None))


def test_one_str_as_tags_is_refused_alike_by_both_fronts() -> None:
    with pytest.raises(TypeError, match="list of names"):
        Cache(LocMemBackend()).get_or_set("k", lambda: 1, tags="prices")
    with pytest.raises(TypeError, match="list of names"):
        asyncio.run(AsyncCache(AsyncLocMemBackend()).get_or_set("k", lambda: 1, tags="prices"))


def test_the_recorder_is_what_stats_report() -> None:
    cache = Cache(LocMemBackend())
    assert isinstance(cache.recorder, Recorder)
    cache.set("k", 1)
    cache.get("k")
    cache.get("missing")
    cache.recorder.stale_serves += 1
    stats = cache.stats()
    assert (stats["sets"], stats["hits"], stats["misses"], stats["stale_serves"]) == (1, 1, 1, 1)
    cache.reset_stats()
    assert cache.recorder.counts() == dict.fromkeys(cache.recorder.counts(), 0)


@pytest.mark.parametrize("options", [{}, {"stale_if_error": 5.0}], ids=["plain", "enveloped"])
def test_an_outage_while_taking_the_stampede_lock_computes_once_and_counts_no_wait(
    options: dict[str, Any],
) -> None:
    class LockDown(LocMemBackend):
        def lock(self, name: str, *, ttl: float) -> Any:
            raise BackendUnavailableError("down")

    cache = Cache(LockDown(), key_prefix=f"lockdown-{uuid.uuid4().hex}")
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 7

    assert cache.get_or_set("k", compute, **options) == 7
    assert calls == [1]
    assert cache.stats()["errors"] == 1
    assert cache.stats()["lock_waits"] == 0


def test_one_status_line_parser_with_each_callers_default() -> None:
    from cachekit.pages.wsgi import status_code
    from middleware._wsgi import status_code as middleware_status_code

    assert status_code("404 Not Found") == middleware_status_code("404 Not Found") == 404
    assert (status_code("oops"), status_code(None), status_code("oops", default=7)) == (0, 0, 7)
    assert middleware_status_code("oops") == 500


def test_entries_pickle_under_their_old_name_so_older_processes_read_them() -> None:
    import pickle

    from cachekit.stampede import CacheEntry

    data = pickle.dumps(CacheEntry("v", None, 0.0, ()))
    assert b"cachekit.stampede" in data
    assert b"cachekit.fronts" not in data
    assert pickle.loads(data) == CacheEntry("v", None, 0.0, ())
