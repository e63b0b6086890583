"""The same Flask session scenarios on Flask's own SecureCookieSessionInterface and on ours.

Each test runs once on Flask's default interface (the spec) and once per cachekit
store (local memory, real Redis, real memcached), so any difference shows as a
failing parameter.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import uuid
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from markupsafe import Markup  # noqa: E402

from cachekit.backends.locmem import LocMemBackend  # noqa: E402
from cachekit.cache import Cache  # noqa: E402
from cachekit.config import from_url  # noqa: E402
from sessions.contrib.flask import CacheKitSessionInterface  # noqa: E402
from sessions.stores import CacheStore  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

INTERFACES = ["flask", "locmem", "redis", "memcached"]
_names = itertools.count()


def make_app(kind: str, request: pytest.FixtureRequest, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="peer-test-secret-key-0123456789abcdef", **config)
    if kind == "locmem":
        app.session_interface = CacheKitSessionInterface(
            CacheStore(Cache(LocMemBackend(f"flask-peer-{next(_names)}")))
        )
    elif kind != "flask":
        server: ServerProcess = request.getfixturevalue(f"{kind}_server")
        cache = from_url(f"{kind}://{server.address}", key_prefix=f"peer{next(_names)}")
        app.session_interface = CacheKitSessionInterface(CacheStore(cache))
    session = flask.session

    @app.get("/set")
    def set_values() -> str:
        for key, value in flask.request.args.items():
            session[key] = value
        return "set"

    @app.get("/read")
    def read() -> str:
        return repr(session.get("user"))

    @app.get("/untouched")
    def untouched() -> str:
        return "no session"

    @app.get("/permanent")
    def permanent() -> str:
        session.permanent = True
        session["user"] = "ada"
        return "permanent"

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    return app


@pytest.fixture(params=INTERFACES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def session_cookie(response: Any, name: str = "session") -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return str(header)
    return None


def attributes(header: str) -> list[str]:
    """The cookie's attributes without its value and dates, in a stable order."""
    parts = [part.strip() for part in header.split(";")[1:]]
    return sorted(part for part in parts if not part.startswith(("Expires=", "Max-Age=")))


# -- every session setting Flask documents ---------------------------------------------


COOKIE_SETTINGS: list[dict[str, Any]] = [
    {},
    {"SESSION_COOKIE_NAME": "sid"},
    {"SESSION_COOKIE_DOMAIN": "example.test"},
    {"SESSION_COOKIE_PATH": "/app"},
    {"SESSION_COOKIE_HTTPONLY": False},
    {"SESSION_COOKIE_SECURE": True},
    {"SESSION_COOKIE_SAMESITE": "Lax"},
    {"SESSION_COOKIE_SAMESITE": "Strict"},
    {"SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "None"},
    {"SESSION_COOKIE_PARTITIONED": True, "SESSION_COOKIE_SECURE": True},
    {"APPLICATION_ROOT": "/root"},
]


def expected_attributes(config: dict[str, Any]) -> list[str]:
    """What Flask's documentation says the cookie carries (checked on Flask itself too)."""
    found = ["Path=" + config.get("SESSION_COOKIE_PATH", config.get("APPLICATION_ROOT", "/"))]
    if config.get("SESSION_COOKIE_DOMAIN"):
        found.append(f"Domain={config['SESSION_COOKIE_DOMAIN']}")
    if config.get("SESSION_COOKIE_HTTPONLY", True):
        found.append("HttpOnly")
    if config.get("SESSION_COOKIE_SECURE"):
        found.append("Secure")
    if config.get("SESSION_COOKIE_SAMESITE"):
        found.append(f"SameSite={config['SESSION_COOKIE_SAMESITE']}")
    if config.get("SESSION_COOKIE_PARTITIONED"):
        found.append("Partitioned")
    return sorted(found)


@pytest.mark.parametrize("config", COOKIE_SETTINGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_cookie_settings(kind: str, config: dict[str, Any], request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request, **config)
    response = app.test_client().get("/set?user=ada", base_url="https://example.test")
    header = session_cookie(response, config.get("SESSION_COOKIE_NAME", "session"))
    assert header is not None
    assert attributes(header) == expected_attributes(config)
    assert "Expires=" not in header  # not permanent: a browser-session cookie
    assert response.headers["Vary"] == "Cookie"


def test_permanent_session_lifetime(kind: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request, PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=3))
    header = session_cookie(app.test_client().get("/permanent"))
    assert header is not None
    expires = parsedate_to_datetime(header.split("Expires=", 1)[1].split(";", 1)[0])
    expected = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=3)
    assert abs((expires - expected).total_seconds()) < 5


@pytest.mark.parametrize("path", ["/read", "/untouched"])
def test_refresh_each_request_refreshes_a_permanent_session(
    kind: str, path: str, request: pytest.FixtureRequest
) -> None:
    app = make_app(kind, request)
    client = app.test_client()
    client.get("/permanent")
    response = client.get(path)
    assert session_cookie(response) is not None
    assert response.headers.get("Vary") == "Cookie"
    assert client.get("/read").data == b"'ada'"


def test_refresh_each_request_off(kind: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request, SESSION_REFRESH_EACH_REQUEST=False)
    client = app.test_client()
    client.get("/permanent")
    response = client.get("/read")
    assert session_cookie(response) is None
    assert response.headers.get("Vary") == "Cookie"
    assert session_cookie(client.get("/untouched")) is None


def test_non_permanent_session_is_not_refreshed(kind: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request)
    client = app.test_client()
    client.get("/set?user=ada")
    response = client.get("/read")
    assert response.data == b"'ada'"
    assert session_cookie(response) is None
    assert response.headers.get("Vary") == "Cookie"
    untouched = client.get("/untouched")
    assert session_cookie(untouched) is None
    assert "Vary" not in untouched.headers


def test_no_session_no_cookie_no_vary(kind: str, request: pytest.FixtureRequest) -> None:
    response = make_app(kind, request).test_client().get("/untouched")
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_clear_deletes_the_cookie_with_vary(kind: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request)
    client = app.test_client()
    client.get("/set?user=ada")
    response = client.get("/clear")
    header = session_cookie(response)
    assert header is not None
    assert "Max-Age=0" in header or "Expires=Thu, 01 Jan 1970" in header
    assert response.headers.get("Vary") == "Cookie"
    assert client.get("/read").data == b"None"


# -- session.permanent / modified / accessed ---------------------------------------------


def _observe(app: flask.Flask, view: Callable[[], None]) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"view": [], "teardown": []}

    @app.get("/observe")
    def observe() -> str:
        view()
        s = flask.session
        seen["view"] = [s.modified, s.accessed, s.permanent]
        return "observed"

    @app.teardown_request
    def after_save(exc: BaseException | None) -> None:
        if flask.request.path == "/observe":
            s = flask.session
            seen["teardown"] = [s.modified, s.accessed, s.permanent]

    return seen


SCENARIOS: dict[str, Callable[[], None]] = {
    "nothing": lambda: None,
    "read": lambda: flask.session.get("x"),
    "write": lambda: flask.session.__setitem__("x", 1),
    "permanent": lambda: setattr(flask.session, "permanent", True),
    "mark-modified": lambda: setattr(flask.session, "modified", True),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_flags_during_and_after_the_save(kind: str, scenario: str, request: pytest.FixtureRequest) -> None:
    flask_app = make_app("flask", request)
    app = make_app(kind, request)
    expected = _observe(flask_app, SCENARIOS[scenario])
    seen = _observe(app, SCENARIOS[scenario])
    flask_app.test_client().get("/observe")
    app.test_client().get("/observe")
    assert seen == expected


# -- values: Flask's tagged JSON types -----------------------------------------------------


VALUES: dict[str, Any] = {
    "bytes": b"\xff\x00",
    "tuple": (1, "two", (3,)),
    "markup": Markup("<b>bold</b>"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "datetime": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
    "nested": {"list": [b"x", (1, 2)], "text": "ü"},
}


@pytest.mark.parametrize("name", VALUES)
def test_values_round_trip_with_their_types(kind: str, name: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request)
    value = VALUES[name]

    @app.get("/put")
    def put() -> str:
        flask.session["v"] = value
        return "put"

    @app.get("/get")
    def get() -> str:
        back = flask.session["v"]
        return f"{back == value} {type(back).__name__}"

    client = app.test_client()
    client.get("/put")
    assert client.get("/get").data.decode() == f"True {type(value).__name__}"


def test_decimal_reads_back_as_its_text(kind: str, request: pytest.FixtureRequest) -> None:
    # Flask's tagged JSON has no Decimal tag and stores its text; ours keeps the Decimal. Both print alike.
    app = make_app(kind, request)

    @app.get("/dec")
    def dec() -> str:
        flask.session["d"] = decimal.Decimal("1.5")
        return "ok"

    @app.get("/back")
    def back() -> str:
        return str(flask.session["d"])

    client = app.test_client()
    client.get("/dec")
    assert client.get("/back").data == b"1.5"


# -- flashing -----------------------------------------------------------------------------


def test_flashing(kind: str, request: pytest.FixtureRequest) -> None:
    app = make_app(kind, request)

    @app.get("/flash")
    def flash_view() -> str:
        flask.flash("saved", "info")
        flask.flash(Markup("<em>markup</em>"))
        return "flashed"

    @app.get("/messages")
    def messages() -> str:
        got = flask.get_flashed_messages(with_categories=True)
        rendered = flask.render_template_string("{% for c, m in got %}{{ c }}:{{ m }};{% endfor %}", got=got)
        return f"{[type(item).__name__ for item in got]} {rendered}"

    client = app.test_client()
    client.get("/flash")
    assert client.get("/messages").data.decode() == "['tuple', 'tuple'] info:saved;message:<em>markup</em>;"
    assert client.get("/messages").data.decode() == "[] "


# -- outages: the suite's one answer ----------------------------------------------------------


class _Down(CacheStore):
    """Loads and saves meet an outage, on request."""

    fail_load = False
    fail_save = False

    def load(self, cookie_value: str) -> Any:
        if self.fail_load:
            from cachekit.exceptions import BackendUnavailableError

            raise BackendUnavailableError("store down during load")
        return super().load(cookie_value)

    def save(self, session: Any) -> str:
        if self.fail_save:
            from cachekit.exceptions import BackendUnavailableError

            raise BackendUnavailableError("store down during save")
        return super().save(session)


@pytest.mark.parametrize("when", ["load", "save"])
def test_an_outage_is_a_503_with_retry_after_not_a_500(when: str) -> None:
    store = _Down(Cache(LocMemBackend(f"flask-down-{next(_names)}")))
    app = flask.Flask(__name__)
    app.session_interface = CacheKitSessionInterface(store)

    @app.get("/set")
    def set_value() -> str:
        flask.session["user"] = flask.session.get("user", "ada")
        return "set"

    client = app.test_client()
    client.get("/set")
    setattr(store, f"fail_{when}", True)
    response = client.get("/set")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in response.headers
    assert b"session store" in response.data


def test_the_load_outage_can_be_handled_by_the_app() -> None:
    from sessions.contrib.flask import SessionUnavailableError

    store = _Down(Cache(LocMemBackend(f"flask-down-{next(_names)}")))
    store.fail_load = True
    app = flask.Flask(__name__)
    app.session_interface = CacheKitSessionInterface(store)

    @app.errorhandler(SessionUnavailableError)
    def degraded(exc: SessionUnavailableError) -> tuple[str, int]:
        return "read-only mode", 200

    @app.get("/read")
    def read() -> str:
        return str(flask.session.get("user"))

    client = app.test_client()
    client.set_cookie("session", "x" * 43)
    response = client.get("/read")
    assert (response.status_code, response.data) == (200, b"read-only mode")
