"""SessionMiddleware built from ``SESSION_*`` settings, and the session rules pinned (issue 23).

Each setting name is pinned by a test that sets it and checks the wire
(``Set-Cookie``), so renaming one, or changing a default, fails here. The rules
in :mod:`middleware._session_rules` (save or not, delete or not, ``private``)
are checked directly as well.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

import pytest

import cachekit
from cachekit import check
from cachekit.backends.locmem import LocMemBackend
from cachekit.exceptions import ConfigurationError
from middleware import _session_rules
from middleware._session_rules import UNAVAILABLE_BODY
from middleware._session_rules import UNAVAILABLE_HEADERS
from middleware._session_rules import UNAVAILABLE_STATUS
from middleware._session_rules import SessionCookie
from middleware._session_rules import cookie_options
from middleware._session_rules import private_cache_control
from middleware.sessions import SessionMiddleware
from sessions.cookies import CookieAttributeError
from sessions.cookies import CookieFormat
from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import WallClock
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

BASE = {"SESSION_ENGINE": "signed_cookies", "SECRET_KEY": SECRET}


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``/incr`` changes the session, ``/read`` reads it, ``/logout`` flushes, ``/logout500`` fails too."""
    session: Session = environ["cachekit.session"]
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/incr":
        session["n"] = session.get("n", 0) + 1
    elif path == "/read":
        session.get("n")
    elif path == "/logout":
        session.flush()
    elif path == "/logout500":
        session.flush()
        status = "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain")])
    return [repr(dict(session)).encode()]


def _set_cookie(client: Client, path: str) -> list[str]:
    _, headers, _ = client.get(path)
    return header_values(headers, "Set-Cookie")


def _built(settings: dict[str, Any]) -> SessionMiddleware:
    return SessionMiddleware.from_settings(app, {**BASE, **settings})


# -- every SESSION_* setting, by name -------------------------------------------------------


def test_defaults() -> None:
    middleware = _built({})
    (line,) = _set_cookie(Client(middleware), "/incr")
    assert line.startswith("session=")  # the default cookie name
    assert line.endswith("; Max-Age=1209600; HttpOnly; Path=/; SameSite=Lax")
    assert "Domain=" not in line
    assert "Secure" not in line
    assert middleware.cookie.save_every_request is False


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        pytest.param("SESSION_COOKIE_NAME", "sid", "sid=", id="name"),
        pytest.param("SESSION_COOKIE_DOMAIN", "example.com", "; Domain=example.com;", id="domain"),
        pytest.param("SESSION_COOKIE_PATH", "/app", "; Path=/app", id="path"),
        pytest.param("SESSION_COOKIE_SECURE", True, "; Secure;", id="secure"),
        pytest.param("SESSION_COOKIE_SAMESITE", "Strict", "; SameSite=Strict", id="samesite"),
        pytest.param("SESSION_COOKIE_AGE", 60, "; Max-Age=60;", id="age"),
        pytest.param("SESSION_IDLE_TIMEOUT", 30, "; Max-Age=30;", id="idle-timeout"),
    ],
)
def test_each_cookie_setting_reaches_set_cookie(setting: str, value: Any, expected: str) -> None:
    (line,) = _set_cookie(Client(_built({setting: value})), "/incr")
    assert expected in line


def test_setting_a_cookie_option_on_the_middleware_changes_the_next_set_cookie() -> None:
    middleware = _built({})
    middleware.cookie_name = "sid"
    middleware.cookie_secure = True
    middleware.cookie_samesite = "strict"
    (line,) = _set_cookie(Client(middleware), "/incr")
    assert line.startswith("sid=")
    assert line.endswith("; Secure; HttpOnly; Path=/; SameSite=Strict")
    # One source of truth: the attribute reads the rules object, normalized as the constructor does.
    assert (middleware.cookie_name, middleware.cookie.cookie_name) == ("sid", "sid")
    assert middleware.cookie_samesite == middleware.cookie.cookie_samesite == "Strict"
    # A cookie sent under the new name is read back.
    client = Client(middleware)
    _set_cookie(client, "/incr")
    _, _, body = client.get("/incr")
    assert body == b"{'n': 2}"


def test_an_invalid_cookie_option_set_on_the_middleware_is_refused_and_changes_nothing() -> None:
    middleware = _built({"SESSION_COOKIE_NAME": "sid"})
    with pytest.raises(ConfigurationError, match="^SESSION_COOKIE_NAME: "):
        middleware.cookie_name = "bad name"
    with pytest.raises(ConfigurationError, match="^SESSION_COOKIE_SAMESITE: "):
        middleware.cookie_samesite = "None"  # without Secure
    assert middleware.cookie_name == "sid"
    assert middleware.cookie_samesite == "Lax"
    (line,) = _set_cookie(Client(middleware), "/incr")
    assert line.startswith("sid=")


def test_httponly_setting_can_turn_it_off() -> None:
    (line,) = _set_cookie(Client(_built({"SESSION_COOKIE_HTTPONLY": False})), "/incr")
    assert "HttpOnly" not in line
    (line,) = _set_cookie(Client(_built({"SESSION_COOKIE_HTTPONLY": True})), "/incr")
    assert "; HttpOnly;" in line


def test_samesite_none_needs_secure_and_can_be_omitted() -> None:
    (line,) = _set_cookie(
        Client(_built({"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": True})), "/incr"
    )
    assert line.endswith("; Secure; HttpOnly; Path=/; SameSite=None")
    (line,) = _set_cookie(Client(_built({"SESSION_COOKIE_SAMESITE": None})), "/incr")
    assert "SameSite" not in line


def test_expire_at_browser_close_setting_drops_max_age() -> None:
    (line,) = _set_cookie(Client(_built({"SESSION_EXPIRE_AT_BROWSER_CLOSE": True})), "/incr")
    assert "Max-Age" not in line
    assert "Expires" not in line


def test_save_every_request_setting_resends_the_cookie_on_reads() -> None:
    for every, expected in ((True, 1), (False, 0)):
        client = Client(_built({"SESSION_SAVE_EVERY_REQUEST": every}))
        assert len(_set_cookie(client, "/incr")) == 1
        assert len(_set_cookie(client, "/read")) == expected, every
    middleware = _built({"SESSION_SAVE_EVERY_REQUEST": True})
    assert middleware.cookie.save_every_request is True


def test_save_every_request_does_not_store_an_empty_new_session() -> None:
    client = Client(_built({"SESSION_SAVE_EVERY_REQUEST": True}))
    assert _set_cookie(client, "/read") == []


def test_cookie_engine_reads_its_settings() -> None:
    middleware = _built(
        {
            "SESSION_COOKIE_AGE": 600,
            "SESSION_IDLE_TIMEOUT": 300,
            "SESSION_IDLE_REFRESH_INTERVAL": 7,
            "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        }
    )
    store = middleware.store
    assert isinstance(store, SignedCookieStore)
    assert store.policy.age == 600
    assert store.policy.idle_timeout == 300
    assert store.policy.refresh_interval == 7
    assert store.policy.expire_at_browser_close is True


def test_cache_engine_is_the_default_engine() -> None:
    cachekit.configure(CACHES={"default": "locmem://session-settings-default"})
    try:
        middleware = SessionMiddleware.from_settings(app, {})
        assert isinstance(middleware.store, CacheStore)
        assert middleware.store.cache is cachekit.caches.for_sessions("default")
        (line,) = _set_cookie(Client(middleware), "/incr")
        assert line.startswith("session=")
    finally:
        cachekit.configure(CACHES=None)


def test_cookie_options_names_every_setting() -> None:
    settings = {
        "SESSION_COOKIE_NAME": "sid",
        "SESSION_COOKIE_PATH": "/p",
        "SESSION_COOKIE_DOMAIN": "example.com",
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": False,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_SAVE_EVERY_REQUEST": True,
        "SESSION_COOKIE_PARTITIONED": True,
    }
    assert cookie_options(settings) == {
        "cookie_name": "sid",
        "cookie_path": "/p",
        "cookie_domain": "example.com",
        "cookie_secure": True,
        "cookie_httponly": False,
        "cookie_samesite": "Strict",
        "save_every_request": True,
        "cookie_partitioned": True,
    }
    assert cookie_options({}) == {
        "cookie_name": "session",
        "cookie_path": "/",
        "cookie_domain": None,
        "cookie_secure": False,
        "cookie_httponly": True,
        "cookie_samesite": "Lax",
        "save_every_request": False,
        "cookie_partitioned": False,
    }


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        pytest.param({"cookie_name": "bad name"}, "SESSION_COOKIE_NAME", id="name"),
        pytest.param({"cookie_path": "/a;b"}, "SESSION_COOKIE_PATH", id="path"),
        pytest.param({"cookie_domain": "a b"}, "SESSION_COOKIE_DOMAIN", id="domain"),
        pytest.param({"cookie_samesite": "sometimes"}, "SESSION_COOKIE_SAMESITE", id="samesite"),
    ],
)
def test_invalid_cookie_option_names_its_setting(options: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{setting}: ") as info:
        SessionCookie(**options)
    assert info.value.setting == setting


# -- logout ---------------------------------------------------------------------------------


def test_logout_deletes_the_cookie() -> None:
    client = Client(_built({"SESSION_COOKIE_NAME": "sid", "SESSION_COOKIE_DOMAIN": "example.com"}))
    _set_cookie(client, "/incr")
    (line,) = _set_cookie(client, "/logout")
    assert line == (
        "sid=; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Path=/; "
        "SameSite=Lax"
    )


def test_logout_answered_with_a_500_leaves_the_cookie_alone() -> None:
    client = Client(_built({}))
    _set_cookie(client, "/incr")
    assert _set_cookie(client, "/logout500") == []


def test_logout_without_a_cookie_sends_no_deletion() -> None:
    assert _set_cookie(Client(_built({})), "/logout") == []


# -- the rules, one by one ---------------------------------------------------------------------


@pytest.fixture
def rules_store(wall_clock: WallClock) -> SignedCookieStore:
    return SignedCookieStore(SECRET, clock=wall_clock)


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()


def _changed(store: SignedCookieStore) -> Session:
    session = Session(store)
    session["n"] = 1
    return session


def test_should_save_never_on_a_5xx(rules_store: SignedCookieStore) -> None:
    rules = SessionCookie()
    session = _changed(rules_store)
    assert rules.should_save(session, 200)
    assert rules.should_save(session, 499)
    assert not rules.should_save(session, 500)
    assert not rules.should_save(session, 503)


def test_unsaved_deletes_only_after_a_flush_of_a_sent_cookie(rules_store: SignedCookieStore) -> None:
    rules = SessionCookie()
    value = _changed(rules_store).save()
    flushed = Session(rules_store, value)
    flushed.flush()
    assert rules.unsaved(flushed, 200) == rules._format.delete()
    assert rules.unsaved(flushed, 499) is not None
    assert rules.unsaved(flushed, 500) is None
    untouched = Session(rules_store, value)
    assert rules.unsaved(untouched, 200) is None
    fresh = Session(rules_store)
    fresh.flush()  # no cookie came in: nothing to delete
    assert rules.unsaved(fresh, 200) is None


def test_saved_sets_expires_and_max_age_from_the_policy(rules_store: SignedCookieStore) -> None:
    rules = SessionCookie(cookie_name="sid")
    session = _changed(rules_store)
    value = session.save()
    line = rules.saved(session, value)
    assert line.startswith(f"sid={value}; Expires=")
    assert "; Max-Age=1209600;" in line
    session.set_expiry(0)  # ends with the browser
    assert rules.saved(session, value) == f"sid={value}; HttpOnly; Path=/; SameSite=Lax"


def test_conflict_leaves_the_cookie_alone_and_logs(
    rules_store: SignedCookieStore, caplog: pytest.LogCaptureFixture
) -> None:
    rules = SessionCookie()
    with caplog.at_level(logging.INFO, logger="middleware.sessions"):
        assert rules.conflict(_changed(rules_store), SessionConflictError("gone")) is None
    assert "session not saved: gone" in caplog.text


def test_value_from_reads_only_the_session_cookie() -> None:
    rules = SessionCookie(cookie_name="sid")
    assert rules.value_from("a=1; sid=xyz") == "xyz"
    assert rules.value_from("") is None
    assert rules.value_from(None) is None
    assert rules.value_from("session=xyz") is None


def test_cookie_attributes_are_kept_as_given() -> None:
    rules = SessionCookie(
        cookie_name="sid",
        cookie_path="/p",
        cookie_domain="example.com",
        cookie_secure=1,  # type: ignore[arg-type]
        cookie_httponly=0,  # type: ignore[arg-type]
        cookie_samesite="none",
        save_every_request=1,  # type: ignore[arg-type]
    )
    assert (rules.cookie_name, rules.cookie_path, rules.cookie_domain) == ("sid", "/p", "example.com")
    assert rules.cookie_secure is True
    assert rules.cookie_httponly is False
    assert rules.cookie_samesite == "None"
    assert rules.save_every_request is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "private", id="none"),
        pytest.param("", "private", id="empty"),
        pytest.param("  ", "private", id="blank"),
        pytest.param("max-age=60", "max-age=60, private", id="lifetime-only"),
        pytest.param("public, max-age=60", None, id="public"),
        pytest.param("PRIVATE", None, id="private-upper"),
        pytest.param("no-store", None, id="no-store"),
        pytest.param("max-age=0, no-cache", None, id="no-cache"),
        pytest.param('no-cache="Set-Cookie"', None, id="no-cache-with-field"),
        pytest.param("s-maxage=5", "s-maxage=5, private", id="s-maxage"),
    ],
)
def test_private_cache_control_for_a_stored_session(
    rules_store: SignedCookieStore, value: str | None, expected: str | None
) -> None:
    stored = Session(rules_store, _changed(rules_store).save())
    stored.get("n")
    assert stored.stored
    assert private_cache_control(stored, value) == expected


def test_private_cache_control_leaves_anonymous_sessions_alone(rules_store: SignedCookieStore) -> None:
    anonymous = Session(rules_store)
    anonymous.get("n")
    assert private_cache_control(anonymous, None) is None
    assert private_cache_control(anonymous, "max-age=60") is None


def test_unavailable_answer() -> None:
    assert UNAVAILABLE_STATUS == 503
    assert dict(UNAVAILABLE_HEADERS) == {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(UNAVAILABLE_BODY)),
        "Retry-After": "5",
    }
    assert UNAVAILABLE_BODY.startswith(b"Service Unavailable")


def test_unavailable_answer_on_the_wire() -> None:
    class DownStore(SignedCookieStore):
        def load(self, cookie_value: str) -> Any:
            raise cachekit.BackendUnavailableError("down")

    middleware = SessionMiddleware(app, DownStore(SECRET))
    status, headers, body = call_app(middleware, make_environ("/read", headers={"Cookie": "session=x"}))
    assert status == "503 Service Unavailable"
    assert ("Retry-After", "5") in headers
    assert body == UNAVAILABLE_BODY


@pytest.mark.parametrize(
    ("name", "options", "setting"),
    [
        ("bad name", {}, "SESSION_COOKIE_NAME"),
        ("s", {"path": "/a;b"}, "SESSION_COOKIE_PATH"),
        ("s", {"domain": "a b"}, "SESSION_COOKIE_DOMAIN"),
        ("s", {"samesite": "sometimes"}, "SESSION_COOKIE_SAMESITE"),
    ],
)
def test_each_cookie_attribute_error_names_its_setting(
    name: str, options: dict[str, Any], setting: str
) -> None:
    # The attribute comes with the error (CookieAttributeError.attribute), not from its message.
    with pytest.raises(CookieAttributeError) as info:
        CookieFormat(name, **options)
    assert _session_rules._SETTINGS[info.value.attribute] == setting


# -- shared helpers of the WSGI and ASGI middleware -------------------------------------------


def test_session_backend_finds_the_cache_backend(rules_store: SignedCookieStore) -> None:
    backend = LocMemBackend("session-backend-test")
    store = CacheStore(cachekit.Cache(backend))
    assert _session_rules.session_backend(store) is backend
    assert _session_rules.session_backend(rules_store) is None  # no cache at all
    assert (
        _session_rules.session_backend(types.SimpleNamespace(cache=object())) is None
    )  # a cache without one


def test_eviction_warning_once_per_process_and_only_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    check.reset_warnings()
    try:
        with caplog.at_level(logging.WARNING):
            _session_rules.eviction_warning(None)
            assert caplog.records == []
            _session_rules.eviction_warning("an LRU store")
            _session_rules.eviction_warning("an LRU store")
        (record,) = caplog.records
        message = record.getMessage()
        assert "[sessions-may-be-evicted]" in message
        assert "sessions are stored where they can be evicted: an LRU store." in message
    finally:
        check.reset_warnings()


def test_unreachable_session_raises_the_outage_only_when_used() -> None:
    error = cachekit.BackendUnavailableError("redis down")
    store = types.SimpleNamespace(server_side=True)
    session = _session_rules.unreachable_session(store, "cookie-value", error)  # type: ignore[arg-type]
    assert session.cookie_value == "cookie-value"
    with pytest.raises(cachekit.BackendUnavailableError, match="redis down") as info:
        session.get("user")
    assert info.value.__cause__ is error
    assert session.store.async_store is store  # type: ignore[attr-defined]


def test_rules_objects_take_no_stray_attributes() -> None:
    rules = SessionCookie()
    with pytest.raises(AttributeError):
        rules.cookie_nmae = "typo"  # type: ignore[attr-defined]


def test_session_cookie_defaults() -> None:
    rules = SessionCookie()
    assert (rules.cookie_name, rules.cookie_path, rules.cookie_domain) == ("session", "/", None)
    assert rules.cookie_secure is False
    assert rules.cookie_httponly is True
    assert rules.cookie_samesite == "Lax"
    assert rules.save_every_request is False
    assert rules.cookie_partitioned is False
    assert rules._format.dump("v") == "session=v; HttpOnly; Path=/; SameSite=Lax"
