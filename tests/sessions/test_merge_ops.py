"""Merged updates (issue 19): ``incr``, ``append``, ``add``, ``discard`` replayed by the store at save time.

Real servers: every server-side store (locmem, Redis, memcached) and its async
twin. 40 requests load one session, wait for each other, then each saves one
``incr``: all 40 survive. The same race with plain assignment keeps the
documented rule (last write wins), and loses increments.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cachekit import aio
from sessions.aio import open_session
from sessions.aio import save_session
from sessions.session import Session
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.base import BaseStore
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import SERVER_STORES

WRITERS = 40


def new_session(store: BaseStore, **data: Any) -> str:
    session = Session(store)
    for name, value in data.items():
        session[name] = value
    return session.save()


def race(store: BaseStore, key: str, change: Callable[[Session], None]) -> None:
    """40 threads load the session, meet at a barrier, then each applies ``change`` and saves."""
    barrier = threading.Barrier(WRITERS, timeout=30)

    def request() -> None:
        session = Session(store, key)
        session.get("n")  # load before the others save
        barrier.wait()
        change(session)
        session.save()

    with ThreadPoolExecutor(WRITERS) as pool:
        for future in [pool.submit(request) for _ in range(WRITERS)]:
            future.result(timeout=60)


def test_concurrent_incr_all_survive(server_store: CacheStore) -> None:
    key = new_session(server_store, n=0)
    race(server_store, key, lambda session: session.incr("n") and None)
    assert Session(server_store, key)["n"] == WRITERS


def test_concurrent_plain_assignment_last_write_wins(server_store: CacheStore) -> None:
    # The documented rule for assignment, and why incr exists: increments are lost.
    key = new_session(server_store, n=0)

    def assign(session: Session) -> None:
        session["n"] = session["n"] + 1

    race(server_store, key, assign)
    assert 1 <= Session(server_store, key)["n"] < WRITERS


def test_concurrent_set_ops_all_survive(server_store: CacheStore) -> None:
    key = new_session(server_store, tags=["keep", "drop"], log=[])
    counter = iter(range(WRITERS))
    lock = threading.Lock()

    def change(session: Session) -> None:
        with lock:
            number = next(counter)
        session.add("tags", number % 10)
        session.append("log", number)
        session.discard("tags", "drop")

    race(server_store, key, change)
    stored = Session(server_store, key)
    assert sorted(stored["log"]) == list(range(WRITERS))
    assert stored["tags"][0] == "keep"
    assert sorted(stored["tags"][1:]) == list(range(10))


def test_ops_merge_with_other_keys_and_after_assignment(server_store: CacheStore) -> None:
    key = new_session(server_store, n=5, cart=["a"])
    first, second = Session(server_store, key), Session(server_store, key)
    first.incr("n", 2)
    first.append("cart", "b")
    second["other"] = "x"
    second.incr("n", 10)
    second.save()
    first.save()
    assert dict(Session(server_store, key)) == {"n": 17, "cart": ["a", "b"], "other": "x"}
    # Assignment after an op replaces it; an op after an assignment adds to the assigned value.
    third, fourth = Session(server_store, key), Session(server_store, key)
    third.incr("n")
    third["n"] = 100
    fourth.incr("n")
    fourth.save()
    third.save()
    assert Session(server_store, key)["n"] == 100
    fifth = Session(server_store, key)
    fifth["n"] = 1
    fifth.incr("n", 4)
    fifth.save()
    assert Session(server_store, key)["n"] == 5


def test_ops_locally() -> None:
    store = SignedCookieStore([SECRET])
    session = Session(store)
    assert session.incr("n") == 1
    assert session.incr("n", -3) == -2
    session.add("s", 1)
    session.add("s", 1)
    session.append("s", 1)
    session.discard("s", 2)
    assert dict(session) == {"n": -2, "s": [1, 1]}
    session.discard("s", 1)
    assert session["s"] == []
    with pytest.raises(TypeError):
        session.append("n", 1)
    with pytest.raises(TypeError):
        session.incr("s")
    with pytest.raises(TypeError):
        session.incr("n", 1.5)  # type: ignore[arg-type]


def test_signed_cookie_applies_ops_locally() -> None:
    # A cookie store cannot merge: the op changes this request's copy, and the cookie holds it.
    store = SignedCookieStore([SECRET])
    cookie = new_session(store, n=1)
    first, second = Session(store, cookie), Session(store, cookie)
    first.incr("n")
    second.incr("n")
    assert Session(store, first.save())["n"] == 2
    assert Session(store, second.save())["n"] == 2


def test_op_on_a_value_changed_meanwhile_starts_fresh(server_store: CacheStore) -> None:
    key = new_session(server_store, n=1)
    first, second = Session(server_store, key), Session(server_store, key)
    first.incr("n")
    second["n"] = "text"
    second.save()
    first.save()  # never fails on another request's assignment
    assert Session(server_store, key)["n"] == 1


@pytest.mark.parametrize("kind", SERVER_STORES)
def test_async_concurrent_incr_all_survive(kind: str, request: pytest.FixtureRequest) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if kind == "locmem":
        url = f"locmem://{prefix}"
        options: dict[str, Any] = {}
    else:
        server = request.getfixturevalue(f"{kind}_server")
        url = f"{kind}://{server.address}" + ("/0" if kind == "redis" else "")
        options = {"key_prefix": prefix}

    async def main() -> int:
        cache = aio.from_url(url, **options)
        store = AsyncCacheStore(cache)
        try:
            first = await open_session(store, None)
            first["n"] = 0
            key = await save_session(first)
            sessions = [await open_session(store, key) for _ in range(WRITERS)]
            for session in sessions:
                session.incr("n")
            await asyncio.gather(*(save_session(session) for session in sessions))
            result = await open_session(store, key)
            value: int = result["n"]
            await store.delete(key)
            return value
        finally:
            await cache.close()

    assert asyncio.run(main()) == WRITERS


def test_redis_cluster_concurrent_incr_and_per_user(request: pytest.FixtureRequest) -> None:
    import cachekit

    cluster = request.getfixturevalue("redis_cluster")
    cache = cachekit.from_url(cluster.url, key_prefix=f"t{uuid.uuid4().hex[:12]}")
    request.addfinalizer(cache.close)
    store = CacheStore(cache)
    key = new_session(store, n=0)
    race(store, key, lambda session: session.incr("n") and None)
    assert Session(store, key)["n"] == WRITERS
    # sessions per user: the index and the sessions live on different slots
    logins = []
    for number in range(5):
        session = Session(store)
        session["n"] = number
        session.set_user("alice", device=number)
        logins.append(session.save())
    assert sorted(entry.metadata["device"] for entry in store.sessions_of("alice")) == list(range(5))
    assert store.revoke_user("alice", keep=logins[0]) == 4
    assert [Session(store, login).is_new for login in logins] == [False] + [True] * 4
    assert len(store.sessions_of("alice")) == 1
