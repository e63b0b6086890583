"""Cache behaviour that needs no particular backend: failure policy, config checks, stats."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.null import NullBackend
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from cachekit.serializers import JSONSerializer
from cachekit.serializers import PickleSerializer
from tests.conftest import FakeClock


class DownBackend:
    """A backend whose server is gone: every call raises BackendUnavailableError."""

    OPTIONS: ClassVar[Mapping[str, type]] = {}
    stores_objects: ClassVar[bool] = False

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            raise BackendUnavailableError(f"connection refused during {name}")

        return fail


@pytest.fixture
def down() -> Cache:
    return Cache(DownBackend())  # type: ignore[arg-type]


def test_outage_reads_are_misses(down: Cache) -> None:
    assert down.get("k", "default") == "default"
    assert down.get_many(["a", "b"]) == {}
    assert down.has_key("k") is False
    assert down.stats()["errors"] == 3
    assert down.stats()["misses"] == 3


def test_outage_writes_are_no_ops(down: Cache) -> None:
    down.set("k", 1)
    assert down.add("k", 1) is False
    assert down.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert down.delete("k") is False
    down.delete_many(["a"])
    assert down.touch("k") is False
    down.clear()
    assert down.stats()["errors"] == 7
    assert down.stats()["sets"] == 0


def test_outage_get_or_set_computes_without_storing(down: Cache) -> None:
    assert down.get_or_set("k", lambda: 3) == 3


def test_outage_incr_raises_even_when_ignoring(down: Cache) -> None:
    with pytest.raises(BackendUnavailableError):
        down.incr("n")


def test_outage_raises_when_configured() -> None:
    cache = Cache(DownBackend(), on_error="raise")  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailableError, match="connection refused"):
        cache.get("k")
    with pytest.raises(BackendUnavailableError):
        cache.set("k", 1)
    assert cache.stats()["errors"] == 2


def test_outage_logged_once_per_burst(down: Cache, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cachekit.cache"):
        for _ in range(50):
            down.get("k")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "connection refused" in warnings[0].getMessage()


def test_server_error_is_not_swallowed() -> None:
    cache = Cache(LocMemBackend("server-error"))
    cache.set("s", "text")
    with pytest.raises(BackendError):
        cache.incr("s")


def test_corrupt_stored_bytes_are_a_counted_miss() -> None:
    backend = LocMemBackend("corrupt")
    cache = Cache(backend)
    from cachekit.fronts._core import _Pickled

    backend.set(cache.make_key("k"), _Pickled(b"\x80\x05garbage"), None)
    assert cache.get("k", "default") == "default"
    assert cache.stats()["errors"] == 1
    strict = Cache(backend, on_error="raise")
    with pytest.raises(SerializationError):
        strict.get("k")


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        pytest.param({"default_timeout": 0}, "TIMEOUT", id="zero-timeout"),
        pytest.param({"default_timeout": -5}, "TIMEOUT", id="negative-timeout"),
        pytest.param({"key_prefix": 5}, "KEY_PREFIX", id="prefix-type"),
        pytest.param({"version": "1"}, "VERSION", id="version-type"),
        pytest.param({"on_error": "explode"}, "on_error", id="on-error"),
        pytest.param({"key_function": "not callable"}, "KEY_FUNCTION", id="key-function"),
        pytest.param({"lock_timeout": 0}, "lock_timeout", id="lock-timeout"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Cache(LocMemBackend(), **kwargs)
    assert info.value.setting == setting


def test_bad_default_timeout_type() -> None:
    with pytest.raises(TypeError, match="'300'"):
        Cache(LocMemBackend(), default_timeout="300")  # type: ignore[arg-type]


def test_key_function_is_used() -> None:
    def key_function(key: str, prefix: str, version: int) -> str:
        return f"{prefix}|{version}|{key[::-1]}"

    backend = LocMemBackend("keyfunc")
    cache = Cache(backend, key_prefix="p", key_function=key_function)
    cache.set("abc", 1)
    assert backend.get("p|1|cba") == 1
    assert cache.get("abc") == 1


def test_immutable_values_are_stored_without_copy() -> None:
    backend = LocMemBackend("nocopy")
    cache = Cache(backend)
    value = ("a", 1, (2.0, None))
    cache.set("t", value)
    assert cache.get("t") is value


def test_json_serializer_cache() -> None:
    cache = Cache(LocMemBackend("json"), serializer=JSONSerializer())
    cache.set("d", {"a": [1, 2]})
    assert cache.get("d") == {"a": [1, 2]}
    with pytest.raises(SerializationError, match="'d'"):
        cache.set("d", {"a": object()})


@pytest.mark.parametrize("serializer", [PickleSerializer(), JSONSerializer()], ids=["pickle", "json"])
@pytest.mark.parametrize("value", [0, 7, -12, 10**30], ids=["zero", "int", "negative", "huge"])
def test_integers_are_ascii_digits(serializer: Any, value: int) -> None:
    data = serializer.dumps(value)
    assert data == str(value).encode()
    assert serializer.loads(data) == value


@pytest.mark.parametrize("serializer_cls", [PickleSerializer, JSONSerializer], ids=["pickle", "json"])
def test_compression_above_threshold(serializer_cls: Any) -> None:
    serializer = serializer_cls(compress_threshold=100)
    big = {"text": "abc" * 1000}
    data = serializer.dumps(big)
    assert data.startswith(b"Z")
    assert len(data) < 300
    assert serializer.loads(data) == big
    small = {"t": "x"}
    assert not serializer.dumps(small).startswith(b"Z")


def test_compression_off_by_default() -> None:
    assert not PickleSerializer().dumps("abc" * 1000).startswith(b"Z")


@pytest.mark.parametrize(
    "garbage",
    [b"Znot zlib", b"\x80\x05truncated", b"\xff\xfe", b"-x"],
    ids=["bad-zlib", "bad-pickle", "junk", "bad-digits"],
)
def test_garbage_bytes_raise_serialization_error(garbage: bytes) -> None:
    with pytest.raises(SerializationError):
        PickleSerializer().loads(garbage)


def test_json_float_and_text_are_not_mistaken_for_ints() -> None:
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(1.5)) == 1.5
    assert serializer.loads(serializer.dumps(-0.25)) == -0.25


def test_null_backend_stores_nothing() -> None:
    cache = Cache(NullBackend())
    cache.set("k", 1)
    assert cache.get("k") is None
    assert cache.add("k", 1) is True
    assert cache.get_many(["k"]) == {}
    with pytest.raises(MissingKeyError):
        cache.incr("k")
    assert cache.get_or_set("k", lambda: 2) == 2
    lock = cache.backend.lock("x", ttl=1)
    assert lock.acquire()
    assert lock.acquire()


def test_repr_shows_no_values() -> None:
    cache = Cache(LocMemBackend("repr"), key_prefix="app", name="default")
    assert (
        repr(cache) == "Cache('default', LocMemBackend(location='repr', max_entries=1000), key_prefix='app')"
    )


# -- locmem specifics ------------------------------------------------------------------


def test_locmem_lru_eviction(fake_clock: FakeClock) -> None:
    backend = LocMemBackend("lru", max_entries=3, clock=fake_clock)
    for key in "abc":
        backend.set(key, key.encode(), None)
    backend.get("a")  # a is now most recently used
    backend.set("d", b"d", None)
    assert backend.get("b") is None
    assert [backend.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    assert len(backend) == 3


def test_locmem_evicts_expired_before_live(fake_clock: FakeClock) -> None:
    backend = LocMemBackend("sweep", max_entries=3, clock=fake_clock)
    backend.set("old", b"1", 10)
    backend.set("a", b"a", None)
    backend.set("b", b"b", None)
    fake_clock.advance(11)
    backend.set("c", b"c", None)
    assert [backend.get(k) for k in ("a", "b", "c")] == [b"a", b"b", b"c"]


def test_locmem_max_bytes(fake_clock: FakeClock) -> None:
    backend = LocMemBackend("bytes", max_entries=100, max_bytes=1000, clock=fake_clock)
    for i in range(5):
        backend.set(f"k{i}", b"x" * 300, None)
    stored = [backend.get(f"k{i}") is not None for i in range(5)]
    assert stored == [False, False, True, True, True]


def test_locmem_shared_by_location() -> None:
    one = Cache(LocMemBackend("shared-loc"))
    two = Cache(LocMemBackend("shared-loc"))
    other = Cache(LocMemBackend("other-loc"))
    one.set("k", "v")
    assert two.get("k") == "v"
    assert other.get("k") is None


def test_locmem_expiry_uses_injected_clock(fake_clock: FakeClock) -> None:
    cache = Cache(LocMemBackend("clock", clock=fake_clock), default_timeout=60)
    cache.set("k", "v")
    fake_clock.advance(59.9)
    assert cache.get("k") == "v"
    fake_clock.advance(0.2)
    assert cache.get("k") is None


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"max_bytes": 0}], ids=["entries", "bytes"])
def test_locmem_bad_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        LocMemBackend("bad", **kwargs)


def test_locmem_eight_threads_mixed_operations() -> None:
    cache = Cache(LocMemBackend("threads", max_entries=500), key_prefix="t")
    cache.set("counter", 0, timeout=None)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(10_000):
                op = i % 5
                key = f"k{n}-{i % 700}"
                if op == 0:
                    cache.incr("counter")
                elif op == 1:
                    cache.set(key, {"i": i})
                elif op == 2:
                    cache.get(key)
                elif op == 3:
                    cache.add(key, i)
                else:
                    cache.delete(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.get("counter") == 8 * 2000


def test_backend_level_types_accept_sequences() -> None:
    backend = LocMemBackend("seq")
    keys: Sequence[str] = ("a", "b")
    items: Mapping[str, bytes] = {"a": b"1"}
    backend.set_many(items, None)
    assert backend.get_many(keys) == {"a": b"1"}


def test_replace_shares_backend_and_changes_settings() -> None:
    original = Cache(LocMemBackend("replace"), key_prefix="p", version=2, name="orig")
    json_view = original.replace(serializer=JSONSerializer(), name="json")
    assert json_view.backend is original.backend
    assert (json_view.key_prefix, json_view.version, json_view.name) == ("p", 2, "json")
    original.set("k", {"a": 1})
    assert json_view.get("k") == {"a": 1}
    with pytest.raises(TypeError, match="colour"):
        original.replace(colour="blue")


def test_nan_timeout_is_rejected() -> None:
    cache = Cache(LocMemBackend("nan"))
    with pytest.raises(ConfigurationError, match="nan"):
        cache.set("k", 1, timeout=float("nan"))


@pytest.mark.parametrize("value", [float("inf"), float("-inf")], ids=["inf", "-inf"])
def test_infinite_default_timeouts_are_rejected(value: float) -> None:
    with pytest.raises(ConfigurationError, match="finite"):
        Cache(LocMemBackend("inf"), default_timeout=value)


def test_infinite_timeout_is_rejected_not_stored_for_ever() -> None:
    cache = Cache(LocMemBackend("inf"))
    with pytest.raises(ConfigurationError, match="None never expires"):
        cache.set("k", 1, timeout=float("inf"))
    cache.set("k", 1)
    cache.set("k", 2, timeout=float("-inf"))  # negative: not stored, old value deleted
    assert cache.get("k") is None


def test_huge_int_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        PickleSerializer().dumps(10**5000)


def test_locmem_max_bytes_counts_tuple_contents(fake_clock: FakeClock) -> None:
    backend = LocMemBackend("bytes-tuples", max_entries=1000, max_bytes=100_000, clock=fake_clock)
    for i in range(50):
        backend.set(f"page{i}", (200, "x" * 10_000), None)
    held = sum(len(backend.get(f"page{i}")[1]) for i in range(50) if backend.get(f"page{i}") is not None)
    assert held <= 100_000


def test_locmem_value_larger_than_max_bytes_is_not_kept(fake_clock: FakeClock) -> None:
    backend = LocMemBackend("bytes-huge", max_entries=10, max_bytes=1000, clock=fake_clock)
    backend.set("small", b"s", None)
    backend.set("big", b"old", None)
    with pytest.raises(BackendError, match="max_bytes"):
        backend.set("big", b"x" * 5000, None)
    assert backend.get("big") is None  # refused, and the old value is gone too
    assert backend.get("small") == b"s"
