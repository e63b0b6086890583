"""What every near-cache backend adds to its server backend (cachekit.backends.near.front).

No server: a recording stand-in for the server backend under ``@dropping_writes``, and a
local-only :class:`NearCache` filled through its own read guard (``begin``/``end``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from collections.abc import Sequence

import pytest

from cachekit.backends.near.front import WRITES
from cachekit.backends.near.front import NearAccess
from cachekit.backends.near.front import dropping_writes
from cachekit.backends.near.listener import NearCache
from cachekit.exceptions import BackendUnavailableError


class Server:
    """The writes of the Backend protocol, recorded; ``fail`` makes each raise."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False

    def _did(self, name: str) -> None:
        self.calls.append(name)
        if self.fail:
            raise BackendUnavailableError("down")

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store."""
        self._did("set")

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self._did("set_many")

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        self._did("add")
        return True

    def cas(self, key: str, value: bytes, token: object, ttl: float | None) -> bool:
        self._did("cas")
        return True

    def delete(self, key: str) -> bool:
        self._did("delete")
        return True

    def delete_many(self, keys: Sequence[str]) -> None:
        self._did("delete_many")

    def incr(self, key: str, delta: int) -> int:
        self._did("incr")
        return 7

    def touch(self, key: str, ttl: float | None) -> bool:
        self._did("touch")
        return True

    def clear(self, prefix: str = "") -> None:
        self._did("clear")


class AsyncServer(Server):
    """The same writes, awaited."""

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().set(key, value, ttl)

    async def incr(self, key: str, delta: int) -> int:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().incr(key, delta)

    async def clear(self, prefix: str = "") -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().clear(prefix)


@dropping_writes
class Near(NearAccess, Server):
    def __init__(self) -> None:
        super().__init__()
        self._near = NearCache(local_only=True, max_entries=10)


@dropping_writes
class AsyncNear(NearAccess, AsyncServer):
    def __init__(self) -> None:
        super().__init__()
        self._near = NearCache(local_only=True, max_entries=10)


def _fill(near: NearCache, *keys: str) -> None:
    ticket = near.begin(keys)
    near.end(ticket, [(key, b"old", -1) for key in keys])
    assert all(near.lookup(key) == b"old" for key in keys)


# Each write with its arguments, by position and by keyword, and the keys it must drop.
CALLS = [
    ("set", ("a", b"v", None), {}, {"a"}),
    ("set", (), {"key": "a", "value": b"v", "ttl": None}, {"a"}),
    ("set_many", ({"a": b"1", "b": b"2"}, None), {}, {"a", "b"}),
    ("set_many", (), {"items": {"a": b"1", "b": b"2"}, "ttl": None}, {"a", "b"}),
    ("add", ("a", b"v", None), {}, {"a"}),
    ("cas", ("a", b"v", b"token", None), {}, {"a"}),
    ("delete", ("a",), {}, {"a"}),
    ("delete_many", (["a", "b"],), {}, {"a", "b"}),
    ("delete_many", (), {"keys": ["b"]}, {"b"}),
    ("incr", ("a", 1), {}, {"a"}),
    ("touch", ("a", 10.0), {}, {"a"}),
    ("touch", ("a",), {"ttl": None}, {"a"}),
]


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize(("name", "args", "kwargs", "dropped"), CALLS)
def test_each_write_drops_its_keys_and_only_those(
    name: str, args: tuple[object, ...], kwargs: dict[str, object], dropped: set[str], fail: bool
) -> None:
    """Whether the write returns or raises (its outcome then unknown), its keys go; others stay."""
    backend = Near()
    backend.fail = fail
    _fill(backend.near, "a", "b", "c")
    method = getattr(backend, name)
    if fail:
        with pytest.raises(BackendUnavailableError):
            method(*args, **kwargs)
    else:
        method(*args, **kwargs)
    assert backend.calls == [name]
    held = {key for key in "abc" if backend.near.lookup(key) is not None}
    assert held == {"a", "b", "c"} - dropped


def test_clear_drops_everything_and_every_write_is_wrapped() -> None:
    backend = Near()
    _fill(backend.near, "a", "b")
    flushes = backend.near.flushes
    backend.clear("prefix:")
    assert (backend.near.lookup("a"), backend.near.lookup("b")) == (None, None)
    assert backend.near.flushes == flushes + 1
    assert all(getattr(Near, name).__wrapped__ is getattr(Server, name) for name in WRITES)
    assert Near.set.__doc__ == "Store.\n\nThen drops ``key`` locally (near cache)."


def test_async_writes_are_awaited_then_drop() -> None:
    backend = AsyncNear()

    async def scenario() -> None:
        _fill(backend.near, "a", "b")
        await backend.set("a", b"v", None)
        assert (backend.near.lookup("a"), backend.near.lookup("b")) == (None, b"old")
        backend.fail = True
        with pytest.raises(BackendUnavailableError):
            await backend.incr(key="b", delta=1)
        assert backend.near.lookup("b") is None
        _fill(backend.near, "c")
        with pytest.raises(BackendUnavailableError):
            await backend.clear()
        assert backend.near.lookup("c") is None

    asyncio.run(scenario())
    assert backend.calls == ["set", "incr", "clear"]


def test_the_accessors() -> None:
    backend = Near()
    _fill(backend.near, "a")
    assert backend.near_memo() is backend.near.decoded
    stats = backend.near_stats()
    assert (stats["near_hits"], stats["near_ready"]) == (1, 1)
