"""The Flask adapter's own shortcuts, against what Werkzeug and Flask would have sent (issue 21).

``CacheKitSessionInterface`` builds ``Set-Cookie`` from a line Werkzeug's
``dump_cookie`` made once per attribute set, adds ``Vary: Cookie`` without
Werkzeug's parse of the header when it can, and reads the one cookie it needs
from the ``Cookie`` header. Each test compares with Werkzeug's own answer. On
Redis, a session request costs the server exactly the commands a session needs
(``INFO commandstats``): one ``GET`` to load, one compare-and-set script to save.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")

import redis  # noqa: E402
from werkzeug.http import dump_cookie  # noqa: E402

from cachekit.backends.locmem import LocMemBackend  # noqa: E402
from cachekit.cache import Cache  # noqa: E402
from cachekit.config import from_url  # noqa: E402
from sessions.contrib.flask import CacheKitSessionInterface  # noqa: E402
from sessions.contrib.flask import FlaskSession  # noqa: E402
from sessions.stores import CacheStore  # noqa: E402
from sessions.stores.base import Store  # noqa: E402
from tests import servers  # noqa: E402

CONFIGS: list[dict[str, Any]] = [
    {},
    {"SESSION_COOKIE_NAME": "sid", "SESSION_COOKIE_PATH": "/app"},
    {"SESSION_COOKIE_DOMAIN": ".Example.test:8000"},  # Werkzeug drops the dot and the port
    {"SESSION_COOKIE_PATH": "/a path;x"},  # Werkzeug quotes the path
    {"SESSION_COOKIE_HTTPONLY": False, "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "strict"},
    {"SESSION_COOKIE_PARTITIONED": True},  # Werkzeug adds Secure
    {"SESSION_COOKIE_SAMESITE": "None"},  # without Secure: Werkzeug sends it anyway
]


def _app(store: Store, view: Callable[[], Any], **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(config)
    app.session_interface = CacheKitSessionInterface(store)
    app.add_url_rule("/", "view", view)
    return app


def _locmem_store() -> CacheStore:
    return CacheStore(Cache(LocMemBackend(f"flask-adapter-{uuid.uuid4().hex}")))


def _werkzeug_line(app: flask.Flask, value: str, expires: float | None) -> str:
    """What ``response.set_cookie`` sends for the session cookie under ``app``'s config."""
    interface = app.session_interface
    return dump_cookie(
        interface.get_cookie_name(app),
        value,
        expires=expires,
        path=interface.get_cookie_path(app),
        domain=interface.get_cookie_domain(app),
        secure=interface.get_cookie_secure(app),
        httponly=interface.get_cookie_httponly(app),
        samesite=interface.get_cookie_samesite(app),
        partitioned=interface.get_cookie_partitioned(app),
    )


def _count() -> str:
    flask.session["n"] = flask.session.get("n", 0) + 1
    return str(flask.session["n"])


@pytest.mark.parametrize("permanent", [False, True], ids=["browser-session", "permanent"])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults"
)
def test_set_cookie_is_the_line_werkzeug_builds(config: dict[str, Any], permanent: bool) -> None:
    store = _locmem_store()

    def view() -> str:
        flask.session.permanent = permanent
        return _count()

    app = _app(store, view, PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=5), **config)
    client = app.test_client()
    for _ in range(2):  # a new session, then a stored one
        response = client.get("/", base_url="https://example.test/app")
        (line,) = response.headers.getlist("Set-Cookie")
        value = line.split(";", 1)[0].partition("=")[2]
        state = store.load(value)
        assert state is not None
        expires = store.policy.cookie_expires(state)
        assert (expires is not None) is permanent
        assert line == _werkzeug_line(app, value, expires)
        assert response.headers.getlist("Vary") == ["Cookie"]


class _QuotingStore(CacheStore):
    """Cookie values with characters Werkzeug quotes: the adapter must leave those to it."""

    sent = ""

    def save(self, session: Any) -> str:
        self.sent = super().save(session) + ' "x"'
        return self.sent


def test_a_value_werkzeug_must_quote_is_built_by_werkzeug() -> None:
    store = _QuotingStore(Cache(LocMemBackend(f"flask-adapter-{uuid.uuid4().hex}")))
    app = _app(store, _count)
    (line,) = app.test_client().get("/").headers.getlist("Set-Cookie")
    assert line.startswith('session="')
    assert line == _werkzeug_line(app, store.sent, None)


def test_a_line_over_max_cookie_size_still_warns_as_werkzeug_does() -> None:
    app = _app(_locmem_store(), _count, MAX_COOKIE_SIZE=40)
    with pytest.warns(UserWarning, match="cookie is too large"):
        response = app.test_client().get("/")
    assert len(response.headers.getlist("Set-Cookie")) == 1


def test_a_response_class_with_its_own_max_cookie_size_is_asked() -> None:
    class Small(flask.Response):
        max_cookie_size = 40

    app = _app(_locmem_store(), _count)
    app.response_class = Small
    with pytest.warns(UserWarning, match="cookie is too large"):
        response = app.test_client().get("/")
    assert len(response.headers.getlist("Set-Cookie")) == 1


def test_a_set_cookie_replaced_on_the_response_itself_is_asked() -> None:
    # An after_request hook (or a test's mock) may replace set_cookie on one response.
    def view() -> Any:
        response = flask.make_response(_count())
        plain = response.set_cookie

        def strict(key: str, value: str = "", *args: Any, **kwargs: Any) -> None:
            kwargs["samesite"] = "Strict"
            plain(key, value, *args, **kwargs)

        response.set_cookie = strict  # type: ignore[method-assign]
        return response

    (line,) = _app(_locmem_store(), view).test_client().get("/").headers.getlist("Set-Cookie")
    assert "; SameSite=Strict" in line


@pytest.mark.parametrize(
    ("app_vary", "expected"),
    [
        ([], ["Cookie"]),
        (["Cookie"], ["Cookie"]),
        (["cookie"], ["cookie"]),
        (["Accept-Encoding"], ["Accept-Encoding, Cookie"]),
        (["Accept-Encoding, COOKIE"], ["Accept-Encoding, COOKIE"]),
        (["Accept", "Cookie"], ["Accept, Cookie"]),  # two lines: Werkzeug merges them
    ],
)
def test_vary_cookie_is_added_once_to_what_the_view_sent(app_vary: list[str], expected: list[str]) -> None:
    def view() -> Any:
        response = flask.make_response(_count())
        for value in app_vary:
            response.headers.add("Vary", value)
        return response

    response = _app(_locmem_store(), view).test_client().get("/")
    assert response.headers.getlist("Vary") == expected
    werkzeug = flask.Response()
    for value in app_vary:
        werkzeug.headers.add("Vary", value)
    werkzeug.vary.add("Cookie")
    assert werkzeug.headers.getlist("Vary") == expected


@pytest.mark.parametrize(
    "cookie",
    ["session={v}", "other=1; session={v}", 'session="{v}"', "session={v}; session={v}", " session = {v} "],
)
def test_the_session_cookie_is_found_in_the_cookie_header(cookie: str) -> None:
    store = _locmem_store()
    app = _app(store, _count)
    line = app.test_client().get("/").headers["Set-Cookie"]
    value = line.split(";", 1)[0].partition("=")[2]
    with app.test_request_context(headers={"Cookie": cookie.format(v=value)}):
        assert app.session_interface.open_session(app, flask.request).cookie_value == value


# -- round trips on Redis ---------------------------------------------------------------------


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_session_request_on_redis_is_one_get_and_one_script(redis_url: str, raw: redis.Redis) -> None:
    store = CacheStore(from_url(redis_url, key_prefix=f"flask-trips-{uuid.uuid4().hex[:8]}"))
    app = _app(store, _count)

    @app.get("/read")
    def read() -> str:
        return str(flask.session.get("n"))

    warm = app.test_client()
    for _ in range(2):  # connects (HELLO, PING) and loads the script (SCRIPT LOAD)
        warm.get("/")
    client = app.test_client()
    assert servers.redis_commands(raw, lambda: client.get("/")) == {"set": 1}  # a new session: one SET NX
    # A stored session changed: GET to load, then the compare-and-set script (its GET and SET inside).
    assert servers.redis_commands(raw, lambda: client.get("/")) == {"get": 2, "evalsha": 1, "set": 1}
    # Read only, not permanent: GET, and nothing written.
    assert servers.redis_commands(raw, lambda: client.get("/read")) == {"get": 1}
    assert client.get("/read").data == b"2"


def test_null_sessions_are_told_from_ours() -> None:
    app = _app(_locmem_store(), _count)
    interface = app.session_interface
    with app.test_request_context():
        ours = interface.open_session(app, flask.request)
    assert interface.is_null_session(interface.make_null_session(app))
    assert not interface.is_null_session(ours)

    class Mine(FlaskSession):
        pass

    interface.session_class = Mine
    with app.test_request_context():
        mine = interface.open_session(app, flask.request)
    assert type(mine) is Mine
    assert not interface.is_null_session(mine)
    assert app.test_client().get("/").headers["Set-Cookie"].startswith("session=")
