"""The store conformance suite: every session store passes every test in the first part.

The second part holds what only server-side stores promise (revocation, merged
concurrent saves, hashed keys, server TTLs); it runs on every server-side store.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from sessions.exceptions import SessionConflictError
from sessions.session import ExpiryPolicy
from sessions.session import Session
from sessions.stores.base import BaseStore
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore
from tests.sessions.helpers import WallClock


def saved(store: BaseStore, **data: object) -> str:
    session = Session(store)
    session.update(data)
    return session.save()


def load(store: BaseStore, cookie_value: str) -> dict[str, object] | None:
    state = store.load(cookie_value)
    return None if state is None else state.data


# -- every store -------------------------------------------------------------------


def test_implements_protocol(store: BaseStore) -> None:
    assert isinstance(store, Store)


def test_save_then_load(store: BaseStore) -> None:
    value = saved(store, user="ada", count=3)
    assert load(store, value) == {"user": "ada", "count": 3}
    assert store.exists(value)


def test_new_session_is_empty_and_has_no_key(store: BaseStore) -> None:
    session = Session(store)
    assert dict(session) == {}
    assert session.session_key is None
    assert session.is_new


def test_tagged_values_round_trip(store: BaseStore) -> None:
    values = {
        "when": datetime.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=datetime.timezone.utc),
        "naive": datetime.datetime(2024, 5, 1, 12, 30),
        "day": datetime.date(2024, 5, 1),
        "price": decimal.Decimal("10.10"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "nested": {"list": [1, 2.5, None, True, "ü"], " dt": "not a tag"},
        "lonely": {" dt": "a user dict whose only key looks like a tag"},
    }
    value = saved(store, **values)
    assert load(store, value) == values


@pytest.mark.parametrize(
    "cookie_value",
    [
        pytest.param("", id="empty"),
        pytest.param("x", id="short"),
        pytest.param("A" * 43, id="well-formed-unknown-id"),
        pytest.param("A" * 10_000, id="huge"),
        pytest.param("é" * 43, id="non-ascii"),
        pytest.param(".eJyrVkpRsqpWylOyMqzVUUoGUuaWpkYm.sig", id="forged-cookie"),
    ],
)
def test_unknown_values_load_nothing(store: BaseStore, cookie_value: str) -> None:
    assert store.load(cookie_value) is None
    assert not store.exists(cookie_value)


def test_unknown_id_is_never_adopted(store: BaseStore) -> None:
    attacker = "A" * 43
    session = Session(store, attacker)
    session["x"] = 1
    value = session.save()
    assert value != attacker
    assert load(store, value) == {"x": 1}
    assert store.load(attacker) is None


def test_changes_and_deletions_persist(store: BaseStore) -> None:
    value = saved(store, a=1, b=2, c=3)
    session = Session(store, value)
    session["a"] = 10
    del session["b"]
    session["d"] = 4
    value = session.save()
    assert load(store, value) == {"a": 10, "c": 3, "d": 4}


def test_clear_deletes_every_key(store: BaseStore) -> None:
    value = saved(store, a=1, b=2)
    session = Session(store, value)
    session.clear()
    session["c"] = 3
    value = session.save()
    assert load(store, value) == {"c": 3}


def test_session_expires_after_age(store: BaseStore, wall_clock: WallClock) -> None:
    value = saved(store, a=1)
    wall_clock.advance(store.policy.age - 1)
    assert load(store, value) == {"a": 1}
    wall_clock.advance(2)
    assert store.load(value) is None


def test_set_expiry_seconds(store: BaseStore, wall_clock: WallClock) -> None:
    session = Session(store)
    session["a"] = 1
    session.set_expiry(60)
    value = session.save()
    assert Session(store, value).get_expiry_age() == pytest.approx(60, abs=0.01)
    wall_clock.advance(59)
    assert load(store, value) == {"a": 1}
    wall_clock.advance(2)
    assert store.load(value) is None


def test_set_expiry_can_outlive_age(store: BaseStore, wall_clock: WallClock) -> None:
    session = Session(store)
    session["a"] = 1
    session.set_expiry(datetime.timedelta(seconds=store.policy.age + 100))
    value = session.save()
    wall_clock.advance(store.policy.age + 50)
    assert load(store, value) == {"a": 1}


def test_cycle_key_keeps_data_under_a_new_value(store: BaseStore) -> None:
    old = saved(store, user="ada")
    session = Session(store, old)
    session.cycle_key()
    session["logged_in"] = True
    new = session.save()
    assert new != old
    assert load(store, new) == {"user": "ada", "logged_in": True}


def test_values_are_json_not_pickle(store: BaseStore) -> None:
    class Custom:
        pass

    session = Session(store)
    with pytest.raises(Exception, match="'obj'"):
        session["obj"] = Custom()


# -- expiry policies on every store ---------------------------------------------------


@pytest.fixture
def idle_store(store: BaseStore) -> BaseStore:
    store.policy = ExpiryPolicy(age=3600, idle_timeout=100, refresh_interval=10)
    return store


def test_idle_timeout_expires_an_unused_session(idle_store: BaseStore, wall_clock: WallClock) -> None:
    value = saved(idle_store, a=1)
    wall_clock.advance(99)
    assert load(idle_store, value) == {"a": 1}
    wall_clock.advance(2)
    assert idle_store.load(value) is None


def test_activity_slides_the_idle_timeout(idle_store: BaseStore, wall_clock: WallClock) -> None:
    value = saved(idle_store, a=1)
    for _ in range(5):  # 5 x 60 s of activity: well past the 100 s idle timeout in total
        wall_clock.advance(60)
        session = Session(idle_store, value)
        assert session["a"] == 1
        assert session.needs_save()  # 60 s since the last activity > 10 s refresh interval
        value = session.save()
    assert load(idle_store, value) == {"a": 1}


def test_refresh_is_throttled(idle_store: BaseStore, wall_clock: WallClock) -> None:
    value = saved(idle_store, a=1)
    wall_clock.advance(5)
    session = Session(idle_store, value)
    assert session["a"] == 1
    assert not session.needs_save()
    wall_clock.advance(6)
    session = Session(idle_store, value)
    assert session["a"] == 1
    assert session.needs_save()


def test_absolute_age_wins_over_activity(idle_store: BaseStore, wall_clock: WallClock) -> None:
    start = wall_clock.now
    value = saved(idle_store, a=1)
    while True:  # active every 60 s until the session ends
        wall_clock.advance(60)
        session = Session(idle_store, value)
        if session.is_new:
            break
        value = session.save()
    assert 3600 <= wall_clock.now - start <= 3660


# -- server-side stores only ---------------------------------------------------------


def test_store_key_is_a_hash_of_the_id(server_store: CacheStore) -> None:
    value = saved(server_store, a=1)
    key = server_store.store_key(value)
    assert value not in key
    assert server_store.cache.backend.get(server_store.cache.make_key(key)) is not None


def test_delete_revokes(server_store: CacheStore) -> None:
    value = saved(server_store, a=1)
    server_store.delete(value)
    assert server_store.load(value) is None
    server_store.delete(value)  # deleting twice is fine


def test_flush_deletes_and_starts_empty(server_store: CacheStore) -> None:
    value = saved(server_store, a=1)
    session = Session(server_store, value)
    session.flush()
    assert session.session_key is None
    assert dict(session) == {}
    assert server_store.load(value) is None


def test_cycle_deletes_the_old_id(server_store: CacheStore) -> None:
    old = saved(server_store, a=1)
    session = Session(server_store, old)
    session.cycle_key()
    new = session.save()
    assert server_store.load(old) is None
    assert load(server_store, new) == {"a": 1}


def test_concurrent_saves_of_different_keys_both_persist(server_store: CacheStore) -> None:
    value = saved(server_store, base=0)
    first, second = Session(server_store, value), Session(server_store, value)
    assert first["base"] == second["base"] == 0  # both loaded before either saves
    first["a"] = 1
    second["b"] = 2
    del second["base"]
    first.save()
    second.save()
    assert load(server_store, value) == {"a": 1, "b": 2}


def test_later_save_of_the_same_key_wins(server_store: CacheStore) -> None:
    value = saved(server_store, k="old")
    first, second = Session(server_store, value), Session(server_store, value)
    first.state, second.state  # noqa: B018
    first["k"] = "first"
    second["k"] = "second"
    first.save()
    second.save()
    assert load(server_store, value) == {"k": "second"}


def test_late_save_does_not_resurrect_a_deleted_session(server_store: CacheStore) -> None:
    value = saved(server_store, a=1)
    late = Session(server_store, value)
    late["a"] = 2  # loaded before the logout below
    server_store.delete(value)
    with pytest.raises(SessionConflictError):
        late.save()
    assert server_store.load(value) is None


def test_create_never_overwrites(server_store: CacheStore, monkeypatch: pytest.MonkeyPatch) -> None:
    value = saved(server_store, owner="first")
    ids = iter([value, "B" * 43])
    monkeypatch.setattr("sessions.stores._merge.secrets.token_urlsafe", lambda _n: next(ids))
    second = saved(server_store, owner="second")
    assert second == "B" * 43
    assert load(server_store, value) == {"owner": "first"}
    assert load(server_store, second) == {"owner": "second"}


def test_threads_incrementing_own_keys_lose_nothing(server_store: CacheStore) -> None:
    value = saved(server_store, start=True)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for _ in range(20):
                session = Session(server_store, value)
                session[name] = session.get(name, 0) + 1
                session.save()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"k{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert load(server_store, value) == {"start": True, **{f"k{i}": 20 for i in range(8)}}


def test_server_ttl_matches_expiry(make_server_store: Callable[..., CacheStore]) -> None:
    # Real time here: the server itself must forget the session. memcached counts whole seconds.
    store = make_server_store(age=1)
    value = saved(store, a=1)
    key = store.cache.make_key(store.store_key(value))
    assert store.cache.backend.get(key) is not None
    deadline = time.monotonic() + 4
    while store.cache.backend.get(key) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.cache.backend.get(key) is None
