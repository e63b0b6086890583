"""A reply lost between the owner's-index write and the record write, on a real redis-server.

A save that gives a stored session its owner (``set_user`` without a new id)
writes the owner's index first, then the record (the compare-and-set script),
so a stored record never claims an owner whose index lacks it. Here the reply
to that record write is lost, through the TCP fault proxy (tests/faultproxy.py):

* cut (the connection closes after the script reached the server): the backend
  retries with the script that recognises its own write, and the request
  answers as if nothing happened;
* dropped (the server ran it, the reply never comes): the socket times out,
  timeouts are not retried, and the request answers ``503`` with
  ``Retry-After`` and no ``Set-Cookie``, never a 500.

Either way the state is consistent: the record either names its owner and the
owner's index lists it (``sessions_of``), or it does not and nothing lists it;
and ``revoke_user`` ends it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from werkzeug.test import Client

import cachekit
from middleware.sessions import SessionMiddleware
from sessions.stores._merge import session_ref
from sessions.stores.cache import CacheStore
from tests import servers
from tests.faultproxy import FaultProxy

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

SOCKET_TIMEOUT = 0.3


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``/`` counts in ``n``; ``/login`` also records the owner (``set_user``, no new id)."""
    session = environ["cachekit.session"]
    if environ["PATH_INFO"] == "/login":
        session.set_user("alice", user_agent="UA")
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def _arm_on_record_write(store: CacheStore, record_key: str, arm: object) -> list[str]:
    """Arm the proxy's fault once, just before the store's next compare-and-set of ``record_key``.

    Returns the log of the writes of the store's records cache, in order.
    """
    records = store.records
    writes: list[str] = []
    armed: list[str] = []
    add, cas = records.add, records.cas

    def logged_add(key: str, *args: object, **kwargs: object) -> bool:
        writes.append(f"add {'record' if key == record_key else 'index'}")
        return add(key, *args, **kwargs)  # type: ignore[arg-type]

    def armed_cas(key: str, *args: object, **kwargs: object) -> bool:
        writes.append(f"cas {'record' if key == record_key else 'index'}")
        if key == record_key and not armed:
            armed.append(key)
            arm()  # type: ignore[operator]
        return cas(key, *args, **kwargs)  # type: ignore[arg-type]

    records.add = logged_add  # type: ignore[method-assign]
    records.cas = armed_cas  # type: ignore[method-assign]
    return writes


def _anonymous_session(
    redis_server: servers.ServerProcess, proxy: FaultProxy
) -> tuple[CacheStore, CacheStore, Client, str]:
    """Two stores on one prefix (through the proxy, and direct), and a browser with a stored session."""
    prefix = f"lost-write-{uuid.uuid4().hex[:8]}."
    proxied = f"redis://127.0.0.1:{proxy.port}/0"
    via = CacheStore(cachekit.from_url(proxied, key_prefix=prefix, socket_timeout=SOCKET_TIMEOUT))
    direct = CacheStore(cachekit.from_url(f"redis://{redis_server.address}/0", key_prefix=prefix))
    client = Client(SessionMiddleware(app, via))
    assert client.get("/").get_data() == b"1"  # an anonymous stored session
    assert client.get("/").get_data() == b"2"  # and the compare-and-set script loaded
    cookie = client.get_cookie("session")
    assert cookie is not None
    return via, direct, client, cookie.value


@pytest.mark.parametrize("fault", ["cut", "drop"])
def test_a_lost_reply_to_the_record_write_leaves_owner_and_index_consistent(
    redis_server: servers.ServerProcess, proxy: FaultProxy, fault: str
) -> None:
    via, direct, client, session_id = _anonymous_session(redis_server, proxy)
    arm = proxy.cut_after_requests if fault == "cut" else proxy.drop_replies
    writes = _arm_on_record_write(via, via.store_key(session_id), arm)

    response = client.get("/login")

    assert writes[-2:] == ["add index", "cas record"]  # the index went first
    assert (proxy.cuts, proxy.dropped) == ((1, 0) if fault == "cut" else (0, 1))
    if fault == "cut":
        # Retried by the script that recognises its own write: saved, as if nothing happened.
        assert response.status_code == 200
        assert response.get_data() == b"3"
    else:
        # The script ran but its reply never came: an outage, not a 500.
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "Set-Cookie" not in response.headers
    # The record and the index agree: the record names its owner, and the index lists it.
    state = direct.load(session_id)
    assert state is not None
    assert state.data == {
        "n": 3,
        "cachekit.user": "alice",
        "cachekit.user_meta": state.data["cachekit.user_meta"],
    }
    listed = direct.sessions_of("alice")
    assert [entry.ref for entry in listed] == [session_ref(session_id)]
    # Through the store that met the fault too, once the server answers again.
    assert [entry.ref for entry in via.sessions_of("alice")] == [entry.ref for entry in listed]
    # And "log out everywhere" ends it.
    assert direct.revoke_user("alice") == 1
    assert direct.load(session_id) is None
    assert direct.sessions_of("alice") == []
    assert client.get("/").get_data() == b"1"  # the old cookie now starts a new session


def test_a_record_write_lost_before_it_ran_is_absent_everywhere(
    redis_server: servers.ServerProcess, proxy: FaultProxy
) -> None:
    """The record write never reaches the server: the index names an ownerless record, which nothing lists."""
    via, direct, client, session_id = _anonymous_session(redis_server, proxy)
    # The script's request is answered by a fake error reply and never reaches the server.
    writes = _arm_on_record_write(
        via, via.store_key(session_id), lambda: proxy.fake_replies(b"-LOADING Redis is loading\r\n")
    )

    response = client.get("/login")

    assert writes[-2:] == ["add index", "cas record"]
    assert proxy.faked == 1
    assert response.status_code == 503
    assert "Set-Cookie" not in response.headers
    state = direct.load(session_id)
    assert state is not None
    assert state.data == {"n": 2}  # the record as before: no owner
    assert direct.sessions_of("alice") == []  # the index's entry names a record that is not alice's
    assert via.sessions_of("alice") == []
    assert direct.revoke_user("alice") == 0
    assert direct.load(session_id) is not None  # not alice's, so not ended
    assert client.get("/login").get_data() == b"3"  # the next try logs in
    assert len(direct.sessions_of("alice")) == 1
