"""The issue-19 calls through Django's session engine and Flask's session interface.

Django: ``request.session`` (``sessions.contrib.django.SessionStore``) gains
``set_user``, ``incr``, ``append``, ``add`` and ``discard``; Flask's
``session`` is a :class:`sessions.Session` already. The store
(``request.session.store`` / ``session.store``) answers ``sessions_of`` and
``revoke_user``. Real Redis and memcached, and local memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.django_settings import configure_django

pytest.importorskip("django")
flask = pytest.importorskip("flask")
configure_django()

from django.test import override_settings  # noqa: E402

from sessions.contrib.django import SessionStore  # noqa: E402
from sessions.contrib.flask import CacheKitSessionInterface  # noqa: E402
from sessions.stores.cache import CacheStore  # noqa: E402
from tests.sessions.helpers import SERVER_STORES  # noqa: E402
from tests.sessions.helpers import build_cache  # noqa: E402


@pytest.fixture(params=SERVER_STORES)
def cache_store(request: pytest.FixtureRequest) -> CacheStore:
    return CacheStore(build_cache(request.param, request))


@pytest.fixture
def engine(cache_store: CacheStore) -> Iterator[type[SessionStore]]:
    with override_settings(CACHEKIT_SESSION_STORE=cache_store):
        yield SessionStore


# -- Django ---------------------------------------------------------------------------


def django_login(engine: type[SessionStore], agent: str) -> SessionStore:
    session = engine()
    session["cart"] = ["book"]
    session.save()  # the anonymous session, before login
    session.cycle_key()  # what django.contrib.auth.login() does
    session.set_user("alice", user_agent=agent)
    session.save()
    return session


def test_django_login_lists_and_password_change_revokes_the_others(
    engine: type[SessionStore], cache_store: CacheStore
) -> None:
    phone = django_login(engine, "phone")
    laptop = django_login(engine, "laptop")
    listed = cache_store.sessions_of("alice", current=laptop.session_key)
    assert sorted(entry.metadata["user_agent"] for entry in listed) == ["laptop", "phone"]
    # password change on the laptop: new id for it, every other session ends
    laptop.cycle_key()
    laptop.save()
    assert laptop.store.revoke_user("alice", keep=laptop.session_key) == 1  # type: ignore[attr-defined]
    assert engine(phone.session_key).load() == {}
    assert engine(laptop.session_key)["cart"] == ["book"]
    assert [entry.current for entry in cache_store.sessions_of("alice", current=laptop.session_key)] == [True]


def test_django_concurrent_incr_all_survive(engine: type[SessionStore]) -> None:
    first = engine()
    first["n"] = 0
    first.save()
    key = first.session_key
    barrier = threading.Barrier(40, timeout=30)

    def request(_: int) -> None:
        session = engine(key)
        session.get("n")
        barrier.wait()
        session.incr("n")
        session.append("log", 1)
        session.save()

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(request, range(40)))
    stored = engine(key)
    assert stored["n"] == 40
    assert stored["log"] == [1] * 40


def test_django_incr_after_assignment_is_a_plain_write(engine: type[SessionStore]) -> None:
    session = engine()
    session["n"] = 1
    session.save()
    other = engine(session.session_key)
    other["n"] = 10
    assert other.incr("n") == 11
    other.save()
    assert engine(session.session_key)["n"] == 11


# -- Flask ----------------------------------------------------------------------------


def make_app(store: CacheStore) -> flask.Flask:
    from flask import Flask
    from flask import request
    from flask import session

    app = Flask(__name__)
    app.secret_key = "flask-secret-key-0123456789abcdef"
    app.session_interface = CacheKitSessionInterface(store)

    @app.post("/login")
    def login() -> str:
        session.cycle_key()  # type: ignore[attr-defined]
        session.set_user(request.form["user"], user_agent=request.headers.get("User-Agent", ""))  # type: ignore[attr-defined]
        return "ok"

    @app.post("/like")
    def like() -> str:
        return str(session.incr("likes"))  # type: ignore[attr-defined]

    @app.get("/devices")
    def devices() -> list[str]:
        mine = session.store.sessions_of(session["cachekit.user"], current=session)  # type: ignore[attr-defined]
        return [("* " if entry.current else "") + entry.metadata["user_agent"] for entry in mine]

    @app.post("/password")
    def password() -> str:
        session.cycle_key()  # type: ignore[attr-defined]
        return str(session.store.revoke_user(session["cachekit.user"], keep=session))  # type: ignore[attr-defined]

    return app


def test_flask_login_devices_and_password_change(cache_store: CacheStore) -> None:
    app = make_app(cache_store)
    phone, laptop = app.test_client(), app.test_client()
    for client, agent in ((phone, "phone"), (laptop, "laptop")):
        assert client.post("/login", data={"user": "alice"}, headers={"User-Agent": agent}).text == "ok"
    assert phone.post("/like").text == "1"
    assert laptop.post("/like").text == "1"
    assert sorted(laptop.get("/devices").json) == ["* laptop", "phone"]
    assert laptop.post("/password").text == "1"
    assert laptop.get("/devices").json == ["* laptop"]
    # the phone's cookie names nothing now: it gets a fresh anonymous session
    assert phone.post("/like").text == "1"
    assert len(cache_store.sessions_of("alice")) == 1
