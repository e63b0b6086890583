"""``@memoize``: keys from arguments, None results, invalidation, methods, tags, stale values, XFetch."""

from __future__ import annotations

import enum
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.memoize import memoize
from cachekit.stampede import CacheEntry
from tests.conftest import FakeClock

ROOT = Path(__file__).resolve().parents[2]
CALLS: list[tuple[object, ...]] = []


@memoize(60, cache=Cache(LocMemBackend("memoize-module")))
def area(width: int, height: int = 1) -> int:
    """A module-level function, so another process can import it."""
    CALLS.append((width, height))
    return width * height


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def cache(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Cache]:
    cache = Cache(LocMemBackend(f"memo-{request.node.nodeid}", clock=clock), clock=clock)
    yield cache
    cache.clear()


def test_results_are_cached_by_bound_arguments() -> None:
    area.cache.clear()
    CALLS.clear()
    assert area(2, 3) == area(2, height=3) == area(width=2, height=3) == 6
    assert area(2) == area(2, 1) == 2
    assert CALLS == [(2, 3), (2, 1)]


def test_keys_are_stable_across_processes() -> None:
    code = "from tests.cachekit.test_memoize import area; print(area.make_key(2, height=3))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == area.make_key(2, 3)
    assert area.make_key(2, 3).startswith("cachekit.memo.tests.cachekit.test_memoize.area:")


def test_none_results_are_cached(cache: Cache) -> None:
    calls: list[int] = []

    @memoize(60, cache=cache)
    def find(x: int) -> None:
        calls.append(x)

    assert find(1) is None
    assert find(1) is None
    assert calls == [1]


def test_invalidate_and_uncached(cache: Cache) -> None:
    calls: list[int] = []

    @memoize(60, cache=cache)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    double(4)
    assert double.invalidate(x=4) is True
    assert double.invalidate(4) is False
    double(4)
    assert double.uncached(4) == 8
    assert calls == [4, 4, 4]


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(([1, 2], {"b": [3], "a": None}), id="list-and-dict"),
        pytest.param(({1, 2}, frozenset({"x"})), id="sets"),
        pytest.param((Color.RED, int), id="enum-and-class"),
        pytest.param((b"bytes", 1.5, True), id="atoms"),
    ],
)
def test_unhashable_and_other_arguments(cache: Cache, args: tuple[object, ...]) -> None:
    calls: list[int] = []

    @memoize(60, cache=cache)
    def f(*values: object) -> int:
        calls.append(1)
        return len(calls)

    assert f(*args) == f(*args) == 1


def test_equal_dicts_in_any_order_share_a_key(cache: Cache) -> None:
    @memoize(60, cache=cache)
    def f(d: dict[str, int]) -> int:
        return 0

    assert f.make_key({"a": 1, "b": 2}) == f.make_key({"b": 2, "a": 1})
    assert f.make_key({"a": 1}) != f.make_key({"a": "1"})


def test_objects_without_a_stable_key_raise_a_clear_error(cache: Cache) -> None:
    @memoize(60, cache=cache)
    def f(value: object) -> int:
        return 0

    with pytest.raises(TypeError, match="__cache_key__"):
        f(object())


def test_methods_use_cache_key_of_self(cache: Cache) -> None:
    class Account:
        def __init__(self, number: int) -> None:
            self.number = number
            self.calls = 0

        def __cache_key__(self) -> str:
            return str(self.number)

        @memoize(60, cache=cache)
        def balance(self, currency: str) -> str:
            self.calls += 1
            return f"{self.number} {currency}"

    one, two = Account(1), Account(2)
    assert one.balance("EUR") == one.balance("EUR") == "1 EUR"
    assert two.balance("EUR") == "2 EUR"
    assert (one.calls, two.calls) == (1, 1)
    assert one.balance.invalidate("EUR") is True
    assert one.balance.uncached("USD") == "1 USD"


def test_custom_key(cache: Cache) -> None:
    @memoize(60, cache=cache, key=lambda user, **_: f"user:{user}")
    def profile(user: int, *, verbose: bool = False) -> str:
        return f"{user} {verbose}"

    assert profile(1, verbose=True) == profile(1, verbose=False) == "1 True"


def test_tags(cache: Cache) -> None:
    calls: list[int] = []

    @memoize(60, cache=cache, tags=["prices"])
    def price(item: int) -> int:
        calls.append(item)
        return item * 10

    price(1), price(2), price(1), price(2)
    cache.invalidate_tags("prices")
    price(1)
    assert calls == [1, 2, 1]


def test_stale_while_revalidate(cache: Cache, clock: FakeClock) -> None:
    calls: list[int] = []

    @memoize(10, cache=cache, stale_while_revalidate=30)
    def value() -> int:
        calls.append(1)
        return len(calls)

    assert value() == 1
    clock.advance(15)
    assert value() == 2  # the lock was free: this caller refreshed
    clock.advance(45)  # past fresh + stale window
    assert value() == 3


def test_xfetch_refreshes_early_only_when_enabled(cache: Cache) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    # An enormous beta makes every read of a fresh value an early refresh.
    assert cache.get_or_set("k", compute, 60, beta=1e12) == 1
    assert cache.get_or_set("k", compute, 60, beta=1e12) == 2
    assert cache.get_or_set("k", compute, 60, beta=1e-12) == 2


@pytest.mark.parametrize(
    ("now", "rand", "expected"),
    [
        pytest.param(90.0, 0.5, False, id="far-from-expiry"),
        pytest.param(99.5, 0.5, True, id="near-expiry"),
        pytest.param(99.5, 0.0, False, id="lucky-draw"),
    ],
)
def test_xfetch_formula(now: float, rand: float, expected: bool) -> None:
    # delta = 1 s, beta = 1: refresh when now + ln(1/(1 - rand)) >= 100
    entry = CacheEntry("v", fresh_until=100.0, delta=1.0, tags=())
    assert entry.refresh_early(now, 1.0, rand=lambda: rand) is expected
    assert entry.refresh_early(now, 0.0, rand=lambda: rand) is False


def test_a_single_str_as_tags_is_refused(cache: Cache) -> None:
    with pytest.raises(TypeError, match=r"tags=\['prices'\]"):
        memoize(60, cache=cache, tags="prices")(lambda: 1)
    with pytest.raises(TypeError, match="list of names"):
        cache.get_or_set("k", lambda: 1, 60, tags="prices")


@pytest.mark.parametrize(
    "argument",
    [
        pytest.param(lambda v: v + 1, id="lambda"),
        pytest.param(object().__str__, id="bound-method"),
    ],
)
def test_arguments_whose_repr_holds_an_address_are_refused(argument: object) -> None:
    from cachekit import Cache
    from cachekit import memoize
    from cachekit.backends.locmem import LocMemBackend

    @memoize(60, cache=Cache(LocMemBackend("memo-address")))
    def apply(function: object, value: int) -> object:
        return value

    assert "0x" in repr(argument)
    with pytest.raises(TypeError, match="__cache_key__"):
        apply(argument, 1)
