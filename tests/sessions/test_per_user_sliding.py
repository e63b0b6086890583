"""Sessions per user whose expiry slides (issue 21): the owner's index is not rewritten on every save.

A permanent Flask session (and any session whose app calls ``set_expiry`` on
every request) gets a new expiry at each save. Its owner's index lists it until
its latest expiry plus headroom (``reindex_until``), a moment the record keeps
as ``indexed_until``; a save rewrites the index only once the session's latest
expiry passes that moment. On Redis the requests are counted with
``INFO commandstats``; the rest runs on every server-side store on a fake clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import pytest
import redis

from cachekit.config import from_url
from middleware.sessions import SessionMiddleware
from sessions.serializers import TaggedJSONSerializer
from sessions.session import Session
from sessions.state import SessionState
from sessions.stores._merge import REINDEX_SLACK
from sessions.stores._merge import decode_state
from sessions.stores._merge import encode_state
from sessions.stores._merge import reindex_until
from sessions.stores._merge import user_index_key
from sessions.stores.cache import CacheStore
from tests import servers
from tests.sessions.helpers import WallClock

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

#: The sliding lifetime of these tests' sessions: headroom of a quarter, 150 s.
LIFETIME = 600.0


def _slide(store: CacheStore, key: str, **data: Any) -> Session:
    """One request of a sliding session: its expiry moves to LIFETIME from now."""
    session = Session(store, key)
    assert not session.is_new
    for name, value in data.items():
        session[name] = value
    session.set_expiry(LIFETIME)
    assert session.save() == key
    return session


def _login(store: CacheStore, user_id: str = "alice") -> str:
    session = Session(store)
    session.set_user(user_id, user_agent="UA")
    session.set_expiry(LIFETIME)
    return session.save()


def _index_exists(store: CacheStore, user_id: str = "alice") -> bool:
    return store.records.get(user_index_key(store.key_prefix, user_id)) is not None


def test_the_headroom_is_a_quarter_of_the_time_left_capped_at_reindex_slack() -> None:
    store = CacheStore(from_url(f"locmem://sliding-{uuid.uuid4().hex}"))
    state = SessionState({}, 1000.0, 1000.0, 1600.0)
    assert reindex_until(store.policy, state, 1000.0) == 1750.0
    state.expiry = 1000.0 + 30 * 86400
    assert reindex_until(store.policy, state, 1000.0) == state.expiry + REINDEX_SLACK == state.expiry + 300
    state.expiry = None  # the policy's age from creation
    assert reindex_until(store.policy, state, 1000.0) == 1000.0 + store.policy.age + 300
    state.expiry = 1600.25
    assert reindex_until(store.policy, state, 1000.0) == 1751.0  # rounded up to a second


def test_a_slide_within_the_headroom_leaves_the_index_alone(
    server_store: CacheStore, wall_clock: WallClock
) -> None:
    key = _login(server_store)
    # Evicted (or flushed): the index is not rebuilt while the session stays within its entry.
    server_store.records.delete(user_index_key(server_store.key_prefix, "alice"))
    for _ in range(3):
        wall_clock.advance(40)  # latest expiry 640 s, then 680 and 720 s after login: within 750
        _slide(server_store, key, n=1)
        assert not _index_exists(server_store)
    # The first save past the recorded moment enters the session again.
    wall_clock.advance(40)
    _slide(server_store, key)
    assert [entry.metadata for entry in server_store.sessions_of("alice", current=key)] == [{}]
    assert server_store.revoke_user("alice") == 1
    assert Session(server_store, key).is_new


def test_a_sliding_session_outliving_its_first_entry_is_still_listed_and_revoked(
    server_store: CacheStore, wall_clock: WallClock
) -> None:
    key = _login(server_store)
    other = _login(server_store)
    # Active for 40 minutes, a request every 100 s: each expires 600 s after its last request.
    for _ in range(24):
        wall_clock.advance(100)
        _slide(server_store, key)
    # Far past the moment the first entry recorded (750 s after login); still live,
    # and listed even after another login pruned the index of entries that ended.
    assert Session(server_store, other).is_new  # expired meanwhile
    _login(server_store)
    (listed,) = [entry for entry in server_store.sessions_of("alice", current=key) if entry.current]
    assert listed.expires == pytest.approx(wall_clock.now + LIFETIME, abs=1)
    assert server_store.revoke_user("alice") == 2
    assert Session(server_store, key).is_new


def test_two_racing_requests_of_a_sliding_session_leave_it_listed(
    server_store: CacheStore, wall_clock: WallClock
) -> None:
    key = _login(server_store)  # listed until 750 s after login
    slow, fast = Session(server_store, key), Session(server_store, key)
    wall_clock.advance(200)
    slow.set_expiry(LIFETIME)  # expires 800 s after login: past the entry
    slow["slow"] = 1
    wall_clock.advance(100)
    fast.set_expiry(LIFETIME)  # 900 s: enters it again, until 1,050 s
    fast.save()
    # The slow request saves last: it enters its own, earlier moment (925 s) before
    # its compare-and-set loses; the merged record keeps 1,050 s, and so must the index.
    slow.save()
    wall_clock.advance(100)
    _slide(server_store, key)  # expires at 1,000 s: within 1,050, the index is left alone
    wall_clock.advance(550)  # 950 s: still live
    _login(server_store)  # another login prunes the entries that ended by now
    assert [entry.current for entry in server_store.sessions_of("alice", current=key)].count(True) == 1
    assert Session(server_store, key)["slow"] == 1
    assert server_store.revoke_user("alice") == 2


def test_a_record_without_indexed_until_is_entered_at_its_next_save(
    server_store: CacheStore, wall_clock: WallClock
) -> None:
    key = _login(server_store)
    # What an older cachekit stored: no indexed_until; and its index is gone.
    state = server_store.load(key)
    assert state is not None
    assert state.indexed_until is not None
    state.indexed_until = None
    store_key = server_store.store_key(key)
    server_store.records.set(store_key, server_store._encode(state), LIFETIME)
    server_store.records.delete(user_index_key(server_store.key_prefix, "alice"))
    # A save that changes only data (no new expiry, no set_user) enters it.
    session = Session(server_store, key)
    session["x"] = 1
    session.save()
    assert len(server_store.sessions_of("alice")) == 1
    loaded = server_store.load(key)
    assert loaded is not None
    assert loaded.indexed_until == reindex_until(server_store.policy, loaded, wall_clock.now)


def test_a_new_owner_is_always_entered(server_store: CacheStore, wall_clock: WallClock) -> None:
    key = _login(server_store)
    session = Session(server_store, key)
    session.set_user("bob", user_agent="shared device")
    session.save()
    assert [entry.metadata for entry in server_store.sessions_of("bob")] == [{"user_agent": "shared device"}]
    assert server_store.sessions_of("alice") == []  # its entry there is stale: never listed


def _json_record(state: SessionState) -> bytes:
    return TaggedJSONSerializer().dumps(state.to_record())


@pytest.mark.parametrize("objects", [True, False], ids=["tuple", "json"])
def test_indexed_until_round_trips_both_forms(objects: bool) -> None:
    serializer = TaggedJSONSerializer()
    state = SessionState({"a": 1, "cachekit.user": "alice"}, 10.0, 20.0, 30.0)
    state.indexed_until = 41.0
    stored = encode_state(state, objects=objects, dump=_json_record)
    if objects:
        assert stored == (10.0, 20.0, 30.0, "a", "cachekit.user", 1, "alice", 41.0)
    else:
        assert b'"i":41.0' in stored
    decoded = decode_state(stored, serializer)
    assert decoded == state
    assert decoded is not None
    assert decoded.indexed_until == 41.0
    state.indexed_until = None
    decoded = decode_state(encode_state(state, objects=objects, dump=_json_record), serializer)
    assert decoded is not None
    assert decoded.indexed_until is None
    assert decode_state(b'{"d":{},"c":1,"a":2,"i":"x"}', serializer) is None
    assert decode_state((1.0, 2.0, None, "a", 1, "x"), serializer) is None


# -- round trips on Redis ---------------------------------------------------------------------


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


#: A stored session changed: GET to load, then the compare-and-set script (its GET and SET inside).
ONE_GET_ONE_SCRIPT = {"get": 2, "evalsha": 1, "set": 1}


def test_a_permanent_flask_session_with_an_owner_is_one_get_and_one_script(
    redis_url: str, raw: redis.Redis
) -> None:
    flask = pytest.importorskip("flask")
    from sessions.contrib.flask import CacheKitSessionInterface

    store = CacheStore(from_url(redis_url, key_prefix=f"sliding-flask-{uuid.uuid4().hex[:8]}"))
    app = flask.Flask(__name__)
    app.session_interface = CacheKitSessionInterface(store)

    @app.get("/")
    def view() -> str:
        flask.session.permanent = True
        flask.session.set_user("alice", user_agent="UA")  # writes nothing once recorded
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    warm = app.test_client()
    for _ in range(2):  # connects (HELLO, PING) and loads the script (SCRIPT LOAD)
        warm.get("/")
    client = app.test_client()
    client.get("/")  # login: the record, then the owner's index
    for _ in range(3):
        assert servers.redis_commands(raw, lambda: client.get("/")) == ONE_GET_ONE_SCRIPT
    assert client.get("/").data == b"5"
    assert [entry.metadata for entry in store.sessions_of("alice")] == [{"user_agent": "UA"}] * 2


def test_a_sliding_session_with_an_owner_under_session_middleware_is_one_get_and_one_script(
    redis_url: str, raw: redis.Redis
) -> None:
    from werkzeug.test import Client

    store = CacheStore(from_url(redis_url, key_prefix=f"sliding-mw-{uuid.uuid4().hex[:8]}"))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = environ["cachekit.session"]
        session.set_user("alice", user_agent="UA")
        session.set_expiry(3600)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session["n"]).encode()]

    wrapped = SessionMiddleware(app, store)
    warm = Client(wrapped)
    for _ in range(2):
        warm.get("/")
    client = Client(wrapped)
    client.get("/")
    for _ in range(3):
        assert servers.redis_commands(raw, lambda: client.get("/")) == ONE_GET_ONE_SCRIPT
    assert client.get("/").get_data() == b"5"
    assert len(store.sessions_of("alice")) == 2
