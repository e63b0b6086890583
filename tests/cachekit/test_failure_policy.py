"""The cache front's failure policy pinned call by call (issue 23).

Under ``on_error="ignore"`` a backend outage turns reads into misses and writes
into no-ops, counted in ``errors`` and logged once per burst; under
``on_error="raise"`` it is raised. ``incr``, ``gets`` and ``cas`` raise under
both, because a caller doing read-modify-write must know. Each case runs with
latency sampling off and on (every call timed), since the two take different
code paths to the backend. Log bursts are timed on a patched
``time.monotonic``, never by sleeping.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import SerializationError
from cachekit.fronts import recorder as recorder_module
from cachekit.serializers import PickleSerializer
from cachekit.signing import SignedSerializer


class FlakyBackend(LocMemBackend):
    """Local memory that raises :class:`BackendUnavailableError` on every call while ``down``."""

    stores_objects = False  # bytes, as Redis and memcached are given

    def __init__(self) -> None:
        super().__init__(f"policy-{uuid.uuid4().hex}")
        self.down = False

    def lock(self, name: str, *, ttl: float) -> Any:
        return FlakyLock(super().lock(name, ttl=ttl), self)

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in _OPERATIONS and object.__getattribute__(self, "down") and callable(attribute):

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise BackendUnavailableError(f"{name}: connection refused")

            return fail
        return attribute


class FlakyLock:
    """A backend lock whose release fails while its backend is down."""

    def __init__(self, inner: Any, backend: FlakyBackend) -> None:
        self.inner = inner
        self.backend = backend

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self.inner.acquire(blocking, timeout))

    def release(self) -> None:
        if self.backend.down:
            raise BackendUnavailableError("release: connection refused")
        self.inner.release()


_OPERATIONS = frozenset(
    {
        "get",
        "get_many",
        "set",
        "set_many",
        "add",
        "delete",
        "delete_many",
        "incr",
        "touch",
        "gets",
        "cas",
        "lock",
        "clear",
    }
)


@pytest.fixture(params=[0, 1], ids=["untimed", "timed"])
def sample_every(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def backend() -> FlakyBackend:
    return FlakyBackend()


def _cache(backend: FlakyBackend, sample_every: int, **options: Any) -> Cache:
    return Cache(backend, latency_sample_every=sample_every, name="policy", **options)


# -- ignore: reads are misses, writes are no-ops ------------------------------------------


def test_outage_reads_are_misses(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)
    cache.set("k", "v")
    backend.down = True
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    assert cache.get_many(["k", "j"]) == {}
    assert cache.has_key("k") is False
    assert "k" not in cache
    stats = cache.stats()
    assert stats["misses"] == 4  # two gets, then both keys of get_many; has_key counts none
    assert stats["hits"] == 0
    assert stats["errors"] == 5


def test_outage_writes_are_noops(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)
    cache.set("k", "old")
    backend.down = True
    before = cache.stats()
    cache.set("k", "new")
    assert cache.add("other", 1) is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]  # every key failed
    assert cache.delete("k") is False
    cache.delete_many(["k", "a"])
    assert cache.touch("k", 60) is False
    assert cache.set("k", "gone", timeout=0) is None  # a delete, which fails too
    after = cache.stats()
    assert after["sets"] == before["sets"]
    assert after["deletes"] == before["deletes"]
    assert after["errors"] == before["errors"] + 7
    backend.down = False
    assert cache.get("k") == "old"  # nothing was written
    assert cache.get("other") is None


def test_read_modify_write_calls_raise_even_when_ignoring(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)
    cache.set("n", 1)
    found = cache.gets("n")
    assert found is not None
    backend.down = True
    with pytest.raises(BackendUnavailableError):
        cache.incr("n")
    with pytest.raises(BackendUnavailableError):
        cache.decr("n")
    with pytest.raises(BackendUnavailableError):
        cache.gets("n")
    with pytest.raises(BackendUnavailableError):
        cache.cas("n", 2, found[1])
    assert cache.stats()["errors"] == 4


def test_get_or_set_computes_when_the_lock_is_unreachable(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)
    backend.down = True
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "fresh"

    assert cache.get_or_set("k", compute) == "fresh"
    assert calls == [1]
    assert cache.get_or_set("k", "plain default") == "plain default"


def test_get_or_set_survives_an_outage_at_unlock(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)

    def compute_then_fail() -> str:
        backend.down = True  # the store goes away while the value is computed
        return "fresh"

    assert cache.get_or_set("k", compute_then_fail) == "fresh"
    assert cache.stats()["errors"] == 2  # the set and the unlock
    backend.down = False
    assert backend.lock("cachekit.lock:" + cache.make_key("k"), ttl=1).acquire(blocking=False) is False


def test_outage_recovers(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every)
    backend.down = True
    cache.set("k", "lost")
    backend.down = False
    cache.set("k", "kept")
    assert cache.get("k") == "kept"
    assert cache.stats()["sets"] == 1


# -- raise: every outage is raised and counted ------------------------------------------


CALLS: list[tuple[str, Callable[[Cache], Any]]] = [
    ("get", lambda c: c.get("k")),
    ("get_many", lambda c: c.get_many(["k"])),
    ("has_key", lambda c: c.has_key("k")),
    ("set", lambda c: c.set("k", 1)),
    ("add", lambda c: c.add("k", 1)),
    ("set_many", lambda c: c.set_many({"k": 1})),
    ("delete", lambda c: c.delete("k")),
    ("delete_many", lambda c: c.delete_many(["k"])),
    ("touch", lambda c: c.touch("k", 5)),
    ("incr", lambda c: c.incr("k")),
    ("get_or_set", lambda c: c.get_or_set("k", lambda: 1)),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_raise_policy_raises_every_outage(
    backend: FlakyBackend, sample_every: int, name: str, call: Callable[[Cache], Any]
) -> None:
    cache = _cache(backend, sample_every, on_error="raise")
    backend.down = True
    with pytest.raises(BackendUnavailableError):
        call(cache)
    assert cache.stats()["errors"] == 1


def test_raise_policy_counts_no_miss_or_write(backend: FlakyBackend, sample_every: int) -> None:
    cache = _cache(backend, sample_every, on_error="raise")
    backend.down = True
    for _, call in CALLS:
        with pytest.raises(BackendUnavailableError):
            call(cache)
    stats = cache.stats()
    assert (stats["hits"], stats["sets"], stats["deletes"]) == (0, 0, 0)


# -- logging: one warning per burst ------------------------------------------------------


class Monotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    clock = Monotonic()
    # The failure policy lives in the front's recorder; time.monotonic is patched where it reads it.
    monkeypatch.setattr(recorder_module.time, "monotonic", clock)
    return clock


def _levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    levels = [record.levelname for record in caplog.records if record.name.startswith("cachekit")]
    caplog.clear()
    return levels


def test_one_warning_per_burst_then_a_reminder_each_minute(
    backend: FlakyBackend, monotonic: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(backend, 0)
    backend.down = True
    caplog.set_level(logging.DEBUG, logger="cachekit")
    cache.get("k")
    assert _levels(caplog) == ["WARNING"]
    for _ in range(5):  # the same burst, one error every 9 s, for 45 s: debug only
        monotonic.now += 9
        cache.get("k")
    assert _levels(caplog) == ["DEBUG"] * 5
    monotonic.now += 10  # exactly 10 s since the last error: still the same burst
    cache.get("k")
    assert _levels(caplog) == ["DEBUG"]
    monotonic.now += 6  # 61 s since the last warning, errors still coming: a reminder
    cache.get("k")
    assert _levels(caplog) == ["WARNING"]
    monotonic.now += 10.5  # a quiet spell of more than 10 s: a new burst warns at once
    cache.get("k")
    assert _levels(caplog) == ["WARNING"]


def test_warning_names_the_cache_operation_and_error(
    backend: FlakyBackend, monotonic: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(backend, 0)
    backend.down = True
    caplog.set_level(logging.DEBUG, logger="cachekit")
    cache.set("k", 1)
    (record,) = [r for r in caplog.records if r.name.startswith("cachekit")]
    assert record.getMessage() == "cache policy: set failed, serving misses: set: connection refused"


def test_reminder_exactly_at_sixty_seconds_is_not_due(
    backend: FlakyBackend, monotonic: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(backend, 0)
    backend.down = True
    caplog.set_level(logging.DEBUG, logger="cachekit")
    cache.get("k")
    for _ in range(6):
        monotonic.now += 10
        cache.get("k")
    assert _levels(caplog) == ["WARNING"] + ["DEBUG"] * 6  # 60 s after the warning: not yet


# -- values that cannot be read -------------------------------------------------------------


def test_unreadable_value_is_a_miss_when_ignoring(
    backend: FlakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(backend, 0)
    backend.set(cache.make_key("k"), b"not a pickle", ttl=None)
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert cache.get("k", "default") == "default"
        assert cache.get_many(["k"]) == {}
    assert "unreadable" in caplog.text
    stats = cache.stats()
    assert (stats["misses"], stats["errors"], stats["hits"]) == (2, 2, 0)


def test_unreadable_value_is_raised_under_raise(backend: FlakyBackend) -> None:
    cache = _cache(backend, 0, on_error="raise")
    backend.set(cache.make_key("k"), b"not a pickle", ttl=None)
    with pytest.raises(SerializationError):
        cache.get("k")
    assert cache.stats()["errors"] == 1


@pytest.mark.parametrize("on_error", ["ignore", "raise"])
def test_bad_signature_is_a_miss_whatever_the_policy(
    backend: FlakyBackend, on_error: Any, caplog: pytest.LogCaptureFixture
) -> None:
    forger = Cache(
        backend, serializer=SignedSerializer(PickleSerializer(), "forger-key-0000000000000000000000")
    )
    cache = Cache(
        backend,
        serializer=SignedSerializer(PickleSerializer(), "right-key-00000000000000000000000"),
        on_error=on_error,
    )
    forger.set("k", "forged")
    forger.set("j", "forged")
    caplog.set_level(logging.DEBUG, logger="cachekit")
    assert cache.get("k") is None
    assert cache.get("j") is None
    levels = [
        r.levelname
        for r in caplog.records
        if r.name.startswith("cachekit") and "bad signature" in r.getMessage()
    ]
    assert levels == ["WARNING", "DEBUG"]  # one warning per cache, then debug
    stats = cache.stats()
    assert (stats["bad_signatures"], stats["errors"], stats["misses"]) == (2, 2, 2)


NAMED: list[tuple[str, Callable[[Cache], Any]]] = [
    ("get", lambda c: c.get("k")),
    ("get_many", lambda c: c.get_many(["k"])),
    ("has_key", lambda c: c.has_key("k")),
    ("set", lambda c: c.set("k", 1)),
    ("add", lambda c: c.add("k", 1)),
    ("set_many", lambda c: c.set_many({"k": 1})),
    ("delete", lambda c: c.delete("k")),
    ("delete_many", lambda c: c.delete_many(["k"])),
    ("touch", lambda c: c.touch("k", 5)),
    ("lock", lambda c: c.get_or_set("k", lambda: 1)),
    ("clear", lambda c: c.clear()),
]


@pytest.mark.parametrize(("operation", "call"), NAMED, ids=[name for name, _ in NAMED])
def test_each_warning_names_its_operation(
    backend: FlakyBackend,
    sample_every: int,
    operation: str,
    call: Callable[[Cache], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = _cache(backend, sample_every)
    backend.down = True
    caplog.set_level(logging.DEBUG, logger="cachekit")
    call(cache)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cachekit")]
    assert any(m.startswith(f"cache policy: {operation} failed") for m in messages), messages
    assert cache.stats()["errors"] >= 1


def test_unlock_failure_is_logged_as_unlock(backend: FlakyBackend, caplog: pytest.LogCaptureFixture) -> None:
    cache = _cache(backend, 0)

    def compute_then_fail() -> str:
        backend.down = True
        return "fresh"

    caplog.set_level(logging.DEBUG, logger="cachekit")
    cache.get_or_set("k", compute_then_fail)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cachekit")]
    assert any(m.startswith("cache policy: unlock failed") for m in messages)


def test_unreadable_value_in_get_many_is_logged_and_counted(
    backend: FlakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(backend, 0)
    cache.set("good", 1)
    backend.set(cache.make_key("bad"), b"not a pickle", ttl=None)
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert cache.get_many(["good", "bad"]) == {"good": 1}
    assert "unreadable" in caplog.text
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (1, 1, 1)
