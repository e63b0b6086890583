"""sessions.get_session: the request's session, or an error that says what to do."""

from __future__ import annotations

import pytest

from cachekit import from_url
from middleware import SessionMiddleware
from sessions import CacheStore
from sessions import NoSessionError
from sessions import Session
from sessions import get_session
from tests.wsgi import Client


def test_without_middleware_the_error_is_a_key_error_that_names_the_fix() -> None:
    with pytest.raises(KeyError) as info:
        get_session({"PATH_INFO": "/"})
    assert isinstance(info.value, NoSessionError)
    assert "SessionMiddleware" in str(info.value)
    assert info.value.key == "cachekit.session"


def test_inside_session_middleware_it_returns_the_session() -> None:
    seen: list[Session] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        session = get_session(environ)
        session["n"] = 1
        seen.append(session)
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"ok"]

    client = Client(SessionMiddleware(app, CacheStore(from_url("locmem://environ-test"))))
    status, _, _ = client.get("/")
    assert status.startswith("200")
    assert seen[0]["n"] == 1
