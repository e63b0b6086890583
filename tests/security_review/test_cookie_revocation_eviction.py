"""A revocable signed cookie ended by logout or ``cycle_key`` stays dead whatever the cache forgets.

The hole: the store used to record an ended cookie's id as *revoked*. A cache
that dropped that one record (Redis under ``volatile-lru`` / ``volatile-ttl``
evicts only keys with a TTL, so the revoked marks go first while the users'
generations, kept without expiry, stay; an LRU keeps the generation that a
user's other devices read on every request) let a copy taken before logout
load again. Cookies are now recorded as *live* instead, so a lost record logs
the user out.
"""

from __future__ import annotations

import pytest

from sessions.session import Session
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import SERVER_STORES
from tests.sessions.helpers import WallClock
from tests.sessions.helpers import build_cache


@pytest.fixture(params=SERVER_STORES)
def store(request: pytest.FixtureRequest) -> SignedCookieStore:
    return SignedCookieStore(
        [SECRET], clock=WallClock(), revocation_cache=build_cache(request.param, request)
    )


def login(store: SignedCookieStore) -> str:
    session = Session(store)
    session["theme"] = "dark"
    session.set_user("alice")
    return session.save()


@pytest.mark.parametrize("ended_by", ["logout", "cycle_key"])
def test_a_lost_revocation_record_fails_closed(store: SignedCookieStore, ended_by: str) -> None:
    """A cache that drops every key but the owner's generation never lets an ended cookie back in.

    Redis under ``volatile-lru`` / ``volatile-ttl`` evicts only keys with a TTL, and an LRU
    keeps the generation that the user's other devices read on every request: whatever the
    cache forgets about one cookie, a copy taken before logout must stay dead.
    """
    cookie = login(store)
    session = Session(store, cookie)
    if ended_by == "logout":
        session.flush()
    else:
        session.cycle_key()
        session.save()
    cache = store.revocation_cache
    assert cache is not None
    key = store._generation_key("alice")
    generation = cache.get(key)
    assert generation is not None
    cache.clear()
    cache.set(key, generation, timeout=None)
    assert store.load(cookie) is None
