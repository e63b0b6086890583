"""The session merge pinned edge by edge (issue 23): lost races, retries, repeated saves.

The race tests run on every server-side store (``server_store``); the ones that
need a backend to misbehave on purpose (every compare-and-set lost, every id
taken) use a local-memory backend subclass. ``bytes_store`` is a CacheStore on a
local-memory backend that keeps bytes, as Redis and memcached do, so the JSON
path runs without a server.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest

from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from cachekit.exceptions import ConfigurationError
from sessions.exceptions import SessionConflictError
from sessions.exceptions import SessionCreateError
from sessions.serializers import TaggedJSONSerializer
from sessions.session import Session
from sessions.session import SessionState
from sessions.stores import _merge
from sessions.stores import cache as cache_store_module
from sessions.stores._merge import RawSerializer
from sessions.stores._merge import decode_state
from sessions.stores._merge import encode_state
from sessions.stores._merge import retry_delay
from sessions.stores.cache import CacheStore
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.helpers import build_store


class BytesLocMem(LocMemBackend):
    """Local memory that, like Redis and memcached, is handed serialized bytes."""

    stores_objects = False


class _Token:
    """An opaque compare-and-set token that is not the stored value (as memcached's cas unique)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class TokenLocMem(BytesLocMem):
    """Bytes in local memory with tokens distinct from the values, as memcached has."""

    def gets(self, key: str) -> tuple[Any, Any] | None:
        found = super().gets(key)
        return None if found is None else (found[0], _Token(found[1]))

    def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        return super().cas(key, value, token.value, ttl)


class LosingLocMem(LocMemBackend):
    """Every compare-and-set loses, as if another writer always got there first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cas_calls = 0

    def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        self.cas_calls += 1
        return False


class FullLocMem(LocMemBackend):
    """Every ``add`` finds the key taken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_calls = 0

    def add(self, key: str, value: Any, ttl: float | None) -> bool:
        self.add_calls += 1
        return False


def _location() -> str:
    return f"merge-{uuid.uuid4().hex}"


@pytest.fixture
def bytes_store(wall_clock: WallClock) -> CacheStore:
    return CacheStore(Cache(BytesLocMem(_location())), clock=wall_clock)


@pytest.fixture(params=[*SERVER_STORES, "bytes", "tokens"])
def racing_store(request: pytest.FixtureRequest, wall_clock: WallClock) -> CacheStore:
    """Every server-side store, plus local memory keeping bytes, with and without opaque tokens."""
    if request.param == "bytes":
        return CacheStore(Cache(BytesLocMem(_location())), clock=wall_clock)
    if request.param == "tokens":
        return CacheStore(Cache(TokenLocMem(_location())), clock=wall_clock)
    store = build_store(request.param, request, wall_clock)
    assert isinstance(store, CacheStore)
    return store


def _stored(store: CacheStore, **data: Any) -> str:
    session = Session(store)
    session.update(data)
    return session.save()


def _pair(store: CacheStore, key: str) -> tuple[Session, Session]:
    """Two requests that loaded the same session before either saved."""
    first, second = Session(store, key), Session(store, key)
    assert first.state.data == second.state.data  # both loaded now
    return first, second


# -- lost compare-and-set races ------------------------------------------------------


def test_lost_race_keeps_this_requests_set_expiry(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, user="ada")
    winner, loser = _pair(racing_store, key)
    winner["theme"] = "dark"
    winner.save()
    loser.set_expiry(600)
    loser.save()  # its compare-and-set loses to the winner's write: merged instead
    state = racing_store.load(key)
    assert state is not None
    assert state.data == {"user": "ada", "theme": "dark"}
    assert state.expiry == pytest.approx(wall_clock.now + 600, abs=0.01)


def test_lost_race_does_not_overwrite_a_newer_expiry(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, user="ada")
    winner, loser = _pair(racing_store, key)
    winner.set_expiry(900)
    winner.save()
    loser["theme"] = "dark"  # data only: the stale expiry it loaded must not come back
    loser.save()
    state = racing_store.load(key)
    assert state is not None
    assert state.data == {"user": "ada", "theme": "dark"}
    assert state.expiry == pytest.approx(wall_clock.now + 900, abs=0.01)


def test_lost_race_applies_deletions_and_keeps_others_keys(racing_store: CacheStore) -> None:
    key = _stored(racing_store, user="ada", cart=3, hint="x")
    winner, loser = _pair(racing_store, key)
    winner["cart"] = 4
    winner.save()
    del loser["hint"]
    loser.save()
    state = racing_store.load(key)
    assert state is not None
    assert state.data == {"user": "ada", "cart": 4}
    assert loser.state.data == {"user": "ada", "cart": 4}  # the session now holds the merged copy


def test_lost_race_records_activity(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, user="ada")
    winner, loser = _pair(racing_store, key)
    winner["a"] = 1
    winner.save()
    wall_clock.advance(30)
    loser["b"] = 2
    loser.save()
    state = racing_store.load(key)
    assert state is not None
    assert state.last_active == pytest.approx(wall_clock.now, abs=0.01)


def test_lost_race_on_an_expired_session_deletes_it(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, user="ada")
    winner, loser = _pair(racing_store, key)
    winner["a"] = 1
    winner.save()
    # The stored copy now ends in the past (its expiry chosen by the winner's delta is
    # gone, so use an absolute expiry the loser merges in): the save must not store it.
    loser.set_expiry(-5)
    with pytest.raises(SessionConflictError, match="^The session expired before"):
        loser.save()
    assert racing_store.records.gets(racing_store.store_key(key)) is None


def test_every_attempt_lost_raises_conflict(wall_clock: WallClock) -> None:
    backend = LosingLocMem(_location())
    store = CacheStore(Cache(backend), clock=wall_clock, max_retries=3)
    key = _stored(store, user="ada")  # created with add: no compare-and-set yet
    session = Session(store, key)
    session["theme"] = "dark"
    with pytest.raises(SessionConflictError, match="3 compare-and-set attempts"):
        session.save()
    # The fast path (our own token) once, then one merge per retry; nothing was stored.
    assert backend.cas_calls == 1 + 3
    state = store.load(key)
    assert state is not None
    assert state.data == {"user": "ada"}


def test_every_attempt_lost_uses_max_retries_without_a_token(wall_clock: WallClock) -> None:
    backend = LosingLocMem(_location())
    store = CacheStore(Cache(backend), clock=wall_clock, max_retries=2)
    key = _stored(store, user="ada")
    session = Session(store, key)
    session.state.token = None  # e.g. saved once already: straight to the merge loop
    session["theme"] = "dark"
    with pytest.raises(SessionConflictError):
        session.save()
    assert backend.cas_calls == 2


def test_conflict_when_deleted_meanwhile(racing_store: CacheStore) -> None:
    key = _stored(racing_store, user="ada")
    late, logout = _pair(racing_store, key)
    logout.flush()
    late["theme"] = "dark"
    with pytest.raises(SessionConflictError, match="deleted"):
        late.save()
    assert racing_store.load(key) is None


# -- saving the same Session twice ----------------------------------------------------


def test_saving_the_same_session_twice(racing_store: CacheStore) -> None:
    key = _stored(racing_store, user="ada")
    session = Session(racing_store, key)
    session["a"] = 1
    assert session.save() == key
    session["b"] = 2  # the second save has no compare-and-set token of its own
    assert session.save() == key
    del session["a"]
    assert session.save() == key
    state = racing_store.load(key)
    assert state is not None
    assert state.data == {"user": "ada", "b": 2}


def test_saving_twice_merges_with_a_writer_in_between(racing_store: CacheStore) -> None:
    key = _stored(racing_store, user="ada")
    session = Session(racing_store, key)
    session["a"] = 1
    session.save()
    other = Session(racing_store, key)
    other["other"] = True
    other.save()
    session["b"] = 2
    session.save()
    state = racing_store.load(key)
    assert state is not None
    assert state.data == {"user": "ada", "a": 1, "other": True, "b": 2}


def test_saving_twice_keeps_a_set_expiry(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, user="ada")
    session = Session(racing_store, key)
    session["a"] = 1
    session.save()
    session.set_expiry(120)
    session.save()
    state = racing_store.load(key)
    assert state is not None
    assert state.expiry == pytest.approx(wall_clock.now + 120, abs=0.01)


# -- create, retry delays, the stored record -----------------------------------------


def test_create_gives_up_after_create_attempts(wall_clock: WallClock) -> None:
    backend = FullLocMem(_location())
    store = CacheStore(Cache(backend), clock=wall_clock)
    with pytest.raises(SessionCreateError, match="10 attempts"):
        store.create(SessionState.new(wall_clock()))
    assert backend.add_calls == _merge.CREATE_ATTEMPTS == 10


def test_create_refuses_an_already_expired_state(racing_store: CacheStore, wall_clock: WallClock) -> None:
    state = SessionState({"a": 1}, wall_clock(), wall_clock(), expiry=wall_clock() - 1)
    with pytest.raises(SessionCreateError, match="expired already"):
        racing_store.create(state)
    exactly_now = SessionState({"a": 1}, wall_clock(), wall_clock(), expiry=wall_clock())
    with pytest.raises(SessionCreateError, match="expired already"):
        racing_store.create(exactly_now)


def test_retry_delay_is_random_below_a_doubling_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr(_merge.random, "uniform", uniform)
    assert retry_delay(0) == pytest.approx(0.0005)
    assert retry_delay(1) == pytest.approx(0.001)
    assert retry_delay(3) == pytest.approx(0.004)
    assert retry_delay(20) == pytest.approx(0.05)  # capped
    assert all(low == 0 for low, _ in bounds)


def test_locmem_keeps_plain_sessions_as_tuples(wall_clock: WallClock) -> None:
    store = CacheStore(Cache(LocMemBackend(_location())), clock=wall_clock)
    key = _stored(store, user="ada", n=2)
    stored = store.cache.backend.get(store.records.make_key(store.store_key(key)))
    assert type(stored) is tuple  # no serialization at all (the module docstring promises it)
    assert stored[3:] == ("user", "n", "ada", 2)


def test_bytes_backends_get_json_bytes(bytes_store: CacheStore) -> None:
    key = _stored(bytes_store, user="ada")
    stored = bytes_store.cache.backend.get(bytes_store.records.make_key(bytes_store.store_key(key)))
    assert type(stored) is bytes
    assert b'"user"' in stored
    assert b"pickle" not in stored


def test_raw_serializer_passes_bytes_through() -> None:
    raw = RawSerializer()
    assert raw.dumps(bytearray(b"ab")) == b"ab"
    assert type(raw.dumps(bytearray(b"ab"))) is bytes
    assert raw.loads(memoryview(b"cd")) == b"cd"
    assert type(raw.loads(memoryview(b"cd"))) is bytes


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param((1.0, 2.0, None, "a"), id="even-length"),
        pytest.param((1.0, 2.0), id="too-short"),
        pytest.param(b"not json", id="garbage-bytes"),
        pytest.param(b"[1, 2]", id="json-not-a-record"),
    ],
)
def test_decode_state_refuses_what_encode_state_never_stores(stored: Any) -> None:
    assert decode_state(stored, TaggedJSONSerializer()) is None


def test_encode_then_decode_round_trips_both_forms() -> None:
    state = SessionState({"a": 1, "b": "two"}, 10.0, 20.0, 30.0)
    serializer = TaggedJSONSerializer()

    def dump(s: SessionState) -> bytes:
        return serializer.dumps(s.to_record())

    as_tuple = encode_state(state, objects=True, dump=dump)
    assert as_tuple == (10.0, 20.0, 30.0, "a", "b", 1, "two")
    assert decode_state(as_tuple, serializer) == state
    as_bytes = encode_state(state, objects=False, dump=dump)
    assert type(as_bytes) is bytes
    assert decode_state(as_bytes, serializer) == state
    # Values that are not plain (a list) are serialized even in local memory.
    nested = SessionState({"a": [1]}, 10.0, 20.0)
    assert type(encode_state(nested, objects=True, dump=dump)) is bytes


# -- construction, defaults, what is never looked up -------------------------------------


class CountingLocMem(LocMemBackend):
    """Counts compare-and-set reads (the store's only way of looking a session up) and writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gets_calls = 0
        self.cas_calls = 0
        self.delete_calls = 0

    def gets(self, key: str) -> tuple[Any, Any] | None:
        self.gets_calls += 1
        return super().gets(key)

    def cas(self, key: str, value: Any, token: Any, ttl: float | None) -> bool:
        self.cas_calls += 1
        return super().cas(key, value, token, ttl)

    def delete(self, key: str) -> bool:
        self.delete_calls += 1
        return super().delete(key)


class NoObjectsFlag:
    """A backend that does not say whether it keeps objects: the store must assume bytes."""

    def __init__(self) -> None:
        self._inner = LocMemBackend(_location())

    def __getattr__(self, name: str) -> Any:
        if name == "stores_objects":
            raise AttributeError(name)
        return getattr(self._inner, name)


class NoCasBackend:
    """A backend without compare-and-set (everything else is local memory)."""

    def __init__(self) -> None:
        self._inner = LocMemBackend(_location())

    def __getattr__(self, name: str) -> Any:
        if name in ("gets", "cas"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_cache_store_defaults(wall_clock: WallClock) -> None:
    store = CacheStore(Cache(LocMemBackend(_location())), clock=wall_clock)
    assert store.key_prefix == "cachekit.session."
    assert store.store_key("x").startswith("cachekit.session.")
    assert store.max_retries == 50
    assert store.policy.expire_at_browser_close is False
    assert store.policy.age == 1209600
    assert CacheStore.server_side is True
    assert repr(store).startswith("CacheStore(Cache(")


def test_cache_store_needs_a_cache_with_compare_and_set() -> None:
    with pytest.raises(ConfigurationError, match="needs a cachekit.Cache") as info:
        CacheStore(LocMemBackend(_location()))  # type: ignore[arg-type]
    assert info.value.setting == "SESSION_CACHE_ALIAS"
    with pytest.raises(ConfigurationError, match="compare-and-set") as info:
        CacheStore(Cache(NoCasBackend()))  # type: ignore[arg-type]
    assert info.value.setting == "SESSION_CACHE_ALIAS"


@pytest.mark.parametrize("retries", [0, -1, 2.5, "3", None])
def test_max_retries_must_be_a_positive_int(retries: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_retries") as info:
        CacheStore(Cache(LocMemBackend(_location())), max_retries=retries)
    assert info.value.setting == "max_retries"


def test_one_retry_is_allowed(wall_clock: WallClock) -> None:
    store = CacheStore(Cache(LocMemBackend(_location())), clock=wall_clock, max_retries=1)
    key = _stored(store, a=1)
    winner, loser = _pair(store, key)
    winner["b"] = 2
    winner.save()
    loser["c"] = 3
    loser.save()  # one merge attempt is enough when nobody else writes
    state = store.load(key)
    assert state is not None
    assert state.data == {"a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize("value", ["", "short", "x" * 43 + "y", "a b" + "c" * 40, "é" * 43])
def test_values_that_are_not_session_ids_are_never_looked_up(wall_clock: WallClock, value: str) -> None:
    backend = CountingLocMem(_location())
    store = CacheStore(Cache(backend), clock=wall_clock)
    assert store.load(value) is None
    store.delete(value)
    assert backend.gets_calls == 0
    assert backend.delete_calls == 0
    real = _stored(store, a=1)
    assert store.load(real) is not None
    assert backend.gets_calls == 1


def test_a_backend_that_does_not_say_gets_bytes(wall_clock: WallClock) -> None:
    backend = NoObjectsFlag()
    store = CacheStore(Cache(backend), clock=wall_clock)  # type: ignore[arg-type]
    key = _stored(store, user="ada")
    stored = backend._inner.get(store.records.make_key(store.store_key(key)))
    assert type(stored) is bytes
    state = store.load(key)
    assert state is not None
    assert state.data == {"user": "ada"}


def test_a_corrupt_record_at_save_time_is_a_conflict(bytes_store: CacheStore) -> None:
    key = _stored(bytes_store, user="ada")
    session = Session(bytes_store, key)
    session["theme"] = "dark"
    stored_key = bytes_store.records.make_key(bytes_store.store_key(key))
    bytes_store.cache.backend.set(stored_key, b"\x00 not a session", None)  # rewritten meanwhile
    with pytest.raises(SessionConflictError, match="deleted or expired"):
        session.save()


def test_a_corrupt_record_loads_nothing(bytes_store: CacheStore) -> None:
    key = _stored(bytes_store, user="ada")
    stored_key = bytes_store.records.make_key(bytes_store.store_key(key))
    bytes_store.cache.backend.set(stored_key, b"[1, 2, 3]", None)
    assert bytes_store.load(key) is None


def test_unchanged_since_load_records_activity_only() -> None:
    state = SessionState({"a": 1}, 10.0, 20.0, 30.0)
    fresh = _merge.unchanged_since_load(state, 99.0)
    assert fresh == SessionState({"a": 1}, 10.0, 99.0, 30.0)
    assert state.last_active == 20.0


def test_an_uncontended_save_is_one_compare_and_set(wall_clock: WallClock) -> None:
    backend = CountingLocMem(_location())
    store = CacheStore(Cache(backend), clock=wall_clock)
    key = _stored(store, a=1)
    session = Session(store, key)
    session["b"] = 2
    reads = backend.gets_calls
    assert session.save() == key
    assert backend.cas_calls == 1
    assert backend.gets_calls == reads  # the fast path: no re-read
    assert not session.modified
    assert session.changed_keys == frozenset()


def test_a_session_ending_exactly_now_is_not_saved(racing_store: CacheStore, wall_clock: WallClock) -> None:
    wall_clock.now = float(int(wall_clock.now))  # exact in a datetime's microseconds
    key = _stored(racing_store, a=1)
    session = Session(racing_store, key)
    session.set_expiry(datetime.datetime.fromtimestamp(wall_clock.now, datetime.timezone.utc))
    with pytest.raises(SessionConflictError, match="^The session expired before"):
        session.save()
    assert racing_store.load(key) is None


def test_a_session_ending_in_half_a_second_is_saved(racing_store: CacheStore, wall_clock: WallClock) -> None:
    key = _stored(racing_store, a=1)
    winner, loser = _pair(racing_store, key)
    winner["w"] = 1
    winner.save()
    loser.set_expiry(datetime.datetime.fromtimestamp(wall_clock.now + 0.5, datetime.timezone.utc))
    assert loser.save() == key  # merged: a lifetime under a second is still a lifetime


def test_a_session_reaching_its_age_at_save_time_is_not_saved(wall_clock: WallClock) -> None:
    store = CacheStore(Cache(LocMemBackend(_location())), clock=wall_clock, age=100)
    key = _stored(store, a=1)
    wall_clock.advance(99)
    session = Session(store, key)
    session["b"] = 2
    wall_clock.advance(1)  # the age runs out exactly at the save
    with pytest.raises(SessionConflictError, match="^The session expired before"):
        session.save()
    assert store.records.gets(store.store_key(key)) is None


def test_lost_attempts_back_off_at_random(wall_clock: WallClock, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(cache_store_module.time, "sleep", slept.append)
    monkeypatch.setattr(_merge.random, "uniform", lambda low, high: high)
    store = CacheStore(Cache(LosingLocMem(_location())), clock=wall_clock, max_retries=3)
    session = Session(store, _stored(store, a=1))
    session["b"] = 2
    with pytest.raises(SessionConflictError):
        session.save()
    assert slept == pytest.approx([0.0005, 0.001, 0.002])


def test_cycle_moves_the_data_to_a_new_id_with_a_new_creation_time(
    racing_store: CacheStore, wall_clock: WallClock
) -> None:
    old = _stored(racing_store, user="ada")
    wall_clock.advance(60)
    session = Session(racing_store, old)
    session.cycle_key()
    new = session.save()
    assert new != old
    assert session.session_key == new
    assert not session.cycle_pending
    assert not session.modified
    assert racing_store.load(old) is None
    state = racing_store.load(new)
    assert state is not None
    assert state.data == {"user": "ada"}
    assert state.created == pytest.approx(wall_clock.now, abs=0.01)  # the age restarts at login
