"""Sessions per user (issue 19): set_user, sessions_of and revoke_user on every server-side store.

Real servers (locmem, Redis, memcached) through the ``server_store`` fixture,
on a fake wall clock: a session past its lifetime by that clock is still in
the server (its TTL runs on real time), so these tests show that the listing
checks each session itself and never trusts its index.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.stores.cache import CacheStore
from tests.sessions.helpers import WallClock


def login(store: CacheStore, user_id: str | int, agent: str = "UA", **data: object) -> str:
    session = Session(store)
    for name, value in data.items():
        session[name] = value
    session.set_user(user_id, user_agent=agent, address="127.0.0.1")
    return session.save()


def test_sessions_of_lists_each_login_with_metadata(server_store: CacheStore) -> None:
    phone = login(server_store, "alice", "phone")
    laptop = login(server_store, "alice", "laptop")
    login(server_store, "bob", "bob's")
    listed = server_store.sessions_of("alice", current=laptop)
    assert sorted(entry.metadata["user_agent"] for entry in listed) == ["laptop", "phone"]
    assert [entry.current for entry in listed if entry.metadata["user_agent"] == "laptop"] == [True]
    assert all(entry.metadata["address"] == "127.0.0.1" for entry in listed)
    assert all(entry.created <= entry.last_seen < entry.expires for entry in listed)
    assert Session(server_store, phone).user_id == "alice"
    assert server_store.sessions_of("nobody") == []
    # an int id and its str form are different users
    login(server_store, 7)
    assert len(server_store.sessions_of(7)) == 1
    assert server_store.sessions_of("7") == []


def test_revoke_user_ends_all_but_the_kept_one(server_store: CacheStore) -> None:
    keys = [login(server_store, "alice", f"device {n}", n=n) for n in range(4)]
    bob = login(server_store, "bob")
    assert server_store.revoke_user("alice", keep=keys[2]) == 3
    assert [Session(server_store, key).is_new for key in keys] == [True, True, False, True]
    assert Session(server_store, keys[2])["n"] == 2
    assert not Session(server_store, bob).is_new
    assert [entry.metadata["user_agent"] for entry in server_store.sessions_of("alice")] == ["device 2"]
    # without keep: all of them
    assert server_store.revoke_user("alice") == 1
    assert Session(server_store, keys[2]).is_new
    assert server_store.sessions_of("alice") == []
    assert server_store.stats()["revoked"] == 4


def test_revoked_session_saved_later_is_not_revived(server_store: CacheStore) -> None:
    key = login(server_store, "alice")
    open_tab = Session(server_store, key)
    open_tab["x"] = 1  # loaded before the revocation, saved after
    server_store.revoke_user("alice")
    with pytest.raises(SessionConflictError):
        open_tab.save()
    assert Session(server_store, key).is_new


def test_sessions_of_never_lists_an_expired_or_deleted_session(
    server_store: CacheStore, wall_clock: WallClock
) -> None:
    old = login(server_store, "alice", "old")
    wall_clock.advance(server_store.policy.age - 60)
    fresh = login(server_store, "alice", "fresh")
    gone = login(server_store, "alice", "logged out")
    flushed = Session(server_store, gone)
    flushed.flush()
    wall_clock.advance(61)  # "old" is past its lifetime now, though its record is still on the server
    assert [entry.metadata["user_agent"] for entry in server_store.sessions_of("alice")] == ["fresh"]
    assert Session(server_store, old).is_new
    assert server_store.stats()["expired"] >= 1
    wall_clock.advance(server_store.policy.age)
    assert server_store.sessions_of("alice") == []
    assert Session(server_store, fresh).is_new


def test_idle_timeout_ends_listing(make_server_store: object) -> None:
    clock = WallClock()
    store = make_server_store(idle_timeout=600, clock=clock)  # type: ignore[operator]
    login(store, "alice")
    clock.advance(601)
    assert store.sessions_of("alice") == []


def test_login_cycle_key_moves_the_entry(server_store: CacheStore) -> None:
    anonymous = Session(server_store)
    anonymous["cart"] = ["book"]
    before = anonymous.save()
    session = Session(server_store, before)
    session.cycle_key()
    session.set_user("alice", user_agent="browser")
    after = session.save()
    assert after != before
    listed = server_store.sessions_of("alice", current=after)
    assert [(entry.current, entry.metadata) for entry in listed] == [(True, {"user_agent": "browser"})]
    # a later cycle (privilege change) keeps the metadata under the new id
    again = Session(server_store, after)
    again.cycle_key()
    third = again.save()
    listed = server_store.sessions_of("alice", current=third)
    assert [(entry.current, entry.metadata) for entry in listed] == [(True, {"user_agent": "browser"})]
    assert Session(server_store, third)["cart"] == ["book"]


def test_concurrent_logins_all_indexed(server_store: CacheStore) -> None:
    barrier = threading.Barrier(20, timeout=30)

    def one(number: int) -> str:
        session = Session(server_store)
        session["n"] = number
        session.set_user("alice", user_agent=f"device {number}")
        barrier.wait()
        return session.save()

    with ThreadPoolExecutor(20) as pool:
        keys = list(pool.map(one, range(20)))
    assert len(server_store.sessions_of("alice")) == 20
    assert server_store.revoke_user("alice", keep=keys[0]) == 19
    assert [Session(server_store, key).is_new for key in keys] == [False] + [True] * 19
    counts = server_store.stats()
    assert counts["created"] == 20
    assert set(counts) == {"created", "revoked", "expired", "conflicts_retried"}


def test_set_user_again_writes_only_what_changed(server_store: CacheStore) -> None:
    key = login(server_store, "alice", "phone")
    same = Session(server_store, key)
    same.set_user("alice", user_agent="phone", address="127.0.0.1")
    assert not same.needs_save()  # nothing changed: no write at all
    moved = Session(server_store, key)
    moved.set_user("alice", user_agent="phone", address="10.0.0.1")
    assert moved.needs_save()
    moved.save()
    assert [entry.metadata["address"] for entry in server_store.sessions_of("alice")] == ["10.0.0.1"]
    handed = Session(server_store, key)
    handed.set_user("bob")
    handed.save()
    assert [entry.ref for entry in server_store.sessions_of("bob")] == [
        entry.ref for entry in server_store.sessions_of("bob", current=key) if entry.current
    ]
    assert server_store.sessions_of("alice") == []  # the session is bob's now
