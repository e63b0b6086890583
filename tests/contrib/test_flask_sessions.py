"""sessions.contrib.flask: flask.session on cachekit stores, with Flask's modified/permanent rules."""

from __future__ import annotations

import datetime
import threading
from email.utils import parsedate_to_datetime

import pytest

flask = pytest.importorskip("flask")

from cachekit.backends.locmem import LocMemBackend  # noqa: E402
from cachekit.cache import Cache  # noqa: E402
from cachekit.config import from_url  # noqa: E402
from sessions.contrib.flask import CacheKitSessionInterface  # noqa: E402
from sessions.contrib.flask import FlaskSession  # noqa: E402
from sessions.stores import CacheStore  # noqa: E402
from sessions.stores import SignedCookieStore  # noqa: E402
from sessions.stores.base import Store  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

SERVER_KINDS = ["locmem", "redis"]
KINDS = [*SERVER_KINDS, "signed-cookie"]


def build_store(kind: str, request: pytest.FixtureRequest) -> Store:
    if kind == "locmem":
        return CacheStore(Cache(LocMemBackend(f"flask-{request.node.nodeid}")))
    if kind == "signed-cookie":
        return SignedCookieStore("flask-session-test-key-000000000")
    server: ServerProcess = request.getfixturevalue("redis_server")
    cache = from_url(f"redis://{server.address}/3", key_prefix="flask")
    cache.clear()
    return CacheStore(cache)


def make_app(store: Store) -> flask.Flask:
    app = flask.Flask(__name__)
    app.session_interface = CacheKitSessionInterface(store)
    session = flask.session

    @app.get("/set")
    def set_values() -> str:
        for key, value in flask.request.args.items():
            session[key] = value
        return "set"

    @app.get("/show")
    def show() -> dict[str, object]:
        return {"data": dict(session), "new": session.new}

    @app.get("/untouched")
    def untouched() -> str:
        return "no session"

    @app.get("/append")
    def append() -> str:
        session.setdefault("cart", [])
        session["cart"].append(flask.request.args["item"])
        if flask.request.args.get("mark"):
            session.modified = True
        return "appended"

    @app.get("/permanent")
    def permanent() -> str:
        session.permanent = True
        session["user"] = "ada"
        return "permanent"

    @app.get("/login")
    def login() -> str:
        assert isinstance(session._get_current_object(), FlaskSession)  # type: ignore[attr-defined]
        session.cycle_key()  # type: ignore[attr-defined]
        session["user"] = "ada"
        return "logged in"

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.get("/logout")
    def logout() -> str:
        session.flush()  # type: ignore[attr-defined]
        session["flash"] = "bye"
        return "logged out"

    return app


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest) -> Store:
    return build_store(request.param, request)


@pytest.fixture(params=SERVER_KINDS)
def server_store(request: pytest.FixtureRequest) -> Store:
    return build_store(request.param, request)


@pytest.fixture
def app(store: Store) -> flask.Flask:
    return make_app(store)


def session_cookie(response: flask.Response) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("session="):
            return header
    return None


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].partition("=")[2]


def test_session_round_trip_and_cookie_attributes(app: flask.Flask) -> None:
    client = app.test_client()
    response = client.get("/set?user=ada")
    header = session_cookie(response)
    assert header is not None
    # Flask's defaults: HttpOnly, Path=/, no SameSite; not permanent, so no Expires.
    assert sorted(part.strip() for part in header.split(";")[1:]) == ["HttpOnly", "Path=/"]
    assert response.headers["Vary"] == "Cookie"
    assert client.get("/show").json == {"data": {"user": "ada"}, "new": False}


def test_flask_cookie_settings_are_honoured(store: Store) -> None:
    app = make_app(store)
    app.config.update(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/app",
    )
    response = app.test_client().get("/set?user=ada", base_url="https://example.test")
    header = response.headers["Set-Cookie"]
    assert header.startswith("sid=")
    for attribute in ("Domain=example.test", "Secure", "HttpOnly", "Path=/app", "SameSite=Strict"):
        assert attribute in header


def test_untouched_session_costs_nothing(app: flask.Flask) -> None:
    response = app.test_client().get("/untouched")
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_a_tossed_second_cookie_is_not_trusted(server_store: Store) -> None:
    app = make_app(server_store)
    header = session_cookie(app.test_client().get("/set?user=ada"))
    assert header is not None
    with app.test_request_context(headers={"Cookie": f"session={cookie_value(header)}; session=planted"}):
        assert app.session_interface.open_session(app, flask.request).cookie_value is None
    with app.test_request_context(headers={"Cookie": f"session={cookie_value(header)}"}):
        assert app.session_interface.open_session(app, flask.request).cookie_value == cookie_value(header)


def test_new_session_is_new(app: flask.Flask) -> None:
    assert app.test_client().get("/show").json == {"data": {}, "new": True}


def test_in_place_change_needs_modified(app: flask.Flask) -> None:
    client = app.test_client()
    client.get("/append?item=a")
    client.get("/append?item=b")  # in place, not marked: not saved
    assert client.get("/show").json["data"]["cart"] == ["a"]
    client.get("/append?item=c&mark=1")
    assert client.get("/show").json["data"]["cart"] == ["a", "c"]


def test_permanent_session_lasts_the_permanent_lifetime(store: Store) -> None:
    app = make_app(store)
    app.permanent_session_lifetime = datetime.timedelta(hours=2)
    client = app.test_client()
    response = client.get("/permanent")
    header = session_cookie(response)
    assert header is not None
    expires = parsedate_to_datetime(header.split("Expires=", 1)[1].split(";", 1)[0])
    expected = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    assert abs((expires - expected).total_seconds()) < 5
    state = store.load(cookie_value(header))
    assert state is not None
    assert state.expiry is not None
    assert abs(state.expiry - expected.timestamp()) < 5


def test_permanent_session_is_refreshed_on_each_request(app: flask.Flask) -> None:
    # Flask's rule: every request, even one whose view never touches the session.
    client = app.test_client()
    client.get("/permanent")
    assert session_cookie(client.get("/show")) is not None
    assert session_cookie(client.get("/untouched")) is not None
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    assert session_cookie(client.get("/show")) is None


def test_login_cycles_the_key(server_store: Store) -> None:
    client = make_app(server_store).test_client()
    first = session_cookie(client.get("/set?theme=dark"))
    assert first is not None
    second = session_cookie(client.get("/login"))
    assert second is not None
    assert cookie_value(second) != cookie_value(first)
    assert server_store.load(cookie_value(first)) is None
    assert client.get("/show").json["data"] == {"theme": "dark", "user": "ada"}


def test_clear_deletes_the_session_and_the_cookie(server_store: Store) -> None:
    client = make_app(server_store).test_client()
    header = session_cookie(client.get("/set?user=ada"))
    assert header is not None
    deleted = session_cookie(client.get("/clear"))
    assert deleted is not None
    assert cookie_value(deleted) == ""
    assert "Max-Age=0" in deleted or "Expires=Thu, 01 Jan 1970" in deleted
    assert server_store.load(cookie_value(header)) is None


def test_flush_then_new_data_starts_a_new_session(server_store: Store) -> None:
    client = make_app(server_store).test_client()
    header = session_cookie(client.get("/set?user=ada"))
    assert header is not None
    after = session_cookie(client.get("/logout"))
    assert after is not None
    assert cookie_value(after) not in ("", cookie_value(header))
    assert server_store.load(cookie_value(header)) is None
    assert client.get("/show").json["data"] == {"flash": "bye"}


def test_session_deleted_meanwhile_is_not_brought_back(server_store: Store) -> None:
    client = make_app(server_store).test_client()
    header = session_cookie(client.get("/set?user=ada"))
    assert header is not None
    value = cookie_value(header)
    app = make_app(server_store)

    @app.get("/slow")
    def slow() -> str:
        flask.session["n"] = 1
        server_store.delete(value)  # a logout in another tab, before this save
        return "late"

    late = app.test_client()
    late.set_cookie("session", value)
    response = late.get("/slow")
    deleted = session_cookie(response)
    assert deleted is not None
    assert cookie_value(deleted) == ""
    assert server_store.load(value) is None


def test_overlapping_requests_changing_different_keys_both_persist(server_store: Store) -> None:
    app = make_app(server_store)
    workers = 6
    barrier = threading.Barrier(workers, timeout=10)

    @app.get("/overlap/<int:index>")
    def overlap(index: int) -> str:
        assert flask.session["start"] == "1"  # every request has loaded the old copy
        barrier.wait()
        flask.session[f"k{index}"] = index
        return "ok"

    header = session_cookie(app.test_client().get("/set?start=1"))
    assert header is not None
    value = cookie_value(header)
    statuses: list[int] = []

    def run(index: int) -> None:
        client = app.test_client()
        client.set_cookie("session", value)
        statuses.append(client.get(f"/overlap/{index}").status_code)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert statuses == [200] * workers
    state = server_store.load(value)
    assert state is not None
    assert state.data == {"start": "1", **{f"k{index}": index for index in range(workers)}}


def test_default_store_is_the_default_cache() -> None:
    import cachekit

    cachekit.configure(CACHES={"default": "redis://127.0.0.1:1/0"})  # never contacted
    try:
        interface = CacheKitSessionInterface()
        assert isinstance(interface.store, CacheStore)
        assert interface.store.cache is cachekit.caches["default"]
    finally:
        cachekit.caches.configure(None)


def test_default_store_on_local_memory_is_apart_from_pages() -> None:
    import cachekit

    cachekit.configure(CACHES={"default": {"BACKEND": "locmem", "LOCATION": "flask-default-store"}})
    try:
        interface = CacheKitSessionInterface()
        assert isinstance(interface.store, CacheStore)
        assert interface.store.cache is cachekit.caches.for_sessions()
        assert interface.store.cache.backend.location == "flask-default-store:sessions"
    finally:
        cachekit.caches.configure(None)
