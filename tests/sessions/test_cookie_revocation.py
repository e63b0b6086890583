"""Revocable signed cookies (issue 19): SignedCookieStore(..., revocation_cache=cache).

The revocation cache is real: local memory, Redis and memcached in turn. Each
test keeps a copy of a cookie taken before logout or revocation and replays
it afterwards, as an attacker who stole it would.
"""

from __future__ import annotations

import pytest

import cachekit
from cachekit.exceptions import ConfigurationError
from middleware.sessions import store_from_settings
from sessions.session import Session
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.helpers import build_cache


@pytest.fixture(params=SERVER_STORES)
def store(request: pytest.FixtureRequest, wall_clock: WallClock) -> SignedCookieStore:
    return SignedCookieStore([SECRET], clock=wall_clock, revocation_cache=build_cache(request.param, request))


def login(store: SignedCookieStore, user_id: str | int = "alice") -> str:
    session = Session(store)
    session["theme"] = "dark"
    session.set_user(user_id)
    return session.save()


def test_logout_ends_a_replayed_cookie(store: SignedCookieStore) -> None:
    cookie = login(store)
    other = login(store)
    session = Session(store, cookie)
    assert session["theme"] == "dark"
    session.flush()  # logout
    assert store.load(cookie) is None  # the copy taken before logout
    assert store.load(other) is not None  # another device of the same user stays logged in


def test_revoke_user_ends_every_cookie_but_the_kept_one(store: SignedCookieStore) -> None:
    phone, laptop = login(store), login(store)
    bob = login(store, "bob")
    current = Session(store, laptop)
    current.get("theme")
    store.revoke_user("alice", keep=current)
    assert store.load(phone) is None
    assert store.load(laptop) is None  # the old copy of the kept cookie ends too ...
    assert current.needs_save()
    reissued = current.save()  # ... and the middleware sends its replacement
    assert Session(store, reissued)["theme"] == "dark"
    assert store.load(bob) is not None
    # a login after the revocation is valid
    assert store.load(login(store)) is not None


def test_cycle_key_ends_the_cookie_it_replaces(store: SignedCookieStore) -> None:
    before = login(store)
    session = Session(store, before)
    session.cycle_key()
    after = session.save()
    assert store.load(before) is None
    assert Session(store, after)["theme"] == "dark"


def test_lost_generation_fails_closed(store: SignedCookieStore) -> None:
    cookie = login(store)
    assert store.revocation_cache is not None
    store.revocation_cache.delete(store._generation_key("alice"))  # evicted, or the cache emptied
    assert store.load(cookie) is None


def test_cookies_without_an_owner_never_touch_the_cache(store: SignedCookieStore) -> None:
    session = Session(store)
    session["cart"] = ["book"]
    cookie = session.save()
    assert store.revocation_cache is not None
    before = store.revocation_cache.stats()
    assert Session(store, cookie)["cart"] == ["book"]
    after = store.revocation_cache.stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_without_a_revocation_cache_cookies_cannot_be_revoked() -> None:
    store = SignedCookieStore([SECRET])
    cookie = login(store)
    Session(store, cookie).flush()
    assert store.load(cookie) is not None  # documented: a copy stays valid until it expires
    with pytest.raises(ConfigurationError, match="revocation_cache"):
        store.revoke_user("alice")
    with pytest.raises(NotImplementedError):
        store.sessions_of("alice")


def test_the_revocation_cache_comes_from_settings() -> None:
    cachekit.configure(CACHES={"revocations": {"BACKEND": "locmem", "LOCATION": "revocation-settings"}})
    try:
        settings = {
            "SESSION_ENGINE": "signed_cookies",
            "SECRET_KEY": SECRET,
            "SESSION_REVOCATION_CACHE": "revocations",
        }
        store = store_from_settings(settings)
        assert isinstance(store, SignedCookieStore)
        cookie = login(store)
        store.revoke_user("alice")
        assert store.load(cookie) is None  # revoked through the cache the setting named
        with pytest.raises(ConfigurationError, match="SESSION_REVOCATION_CACHE"):
            store_from_settings({**settings, "SESSION_REVOCATION_CACHE": "nosuch"})
        without = store_from_settings({**settings, "SESSION_REVOCATION_CACHE": None})
        with pytest.raises(ConfigurationError):
            without.revoke_user("alice")
    finally:
        cachekit.configure(CACHES=None)
