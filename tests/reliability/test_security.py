"""The security guarantees of docs/security.md, one test (or table) each.

Pickle never touches what a client can influence; secrets and session ids
never reach reprs or logs; signatures are compared in constant time; the
cookie's defaults; key rotation; what a reader of Redis learns; and the page
cache's answer to ``Cache-Control: no-cache`` from a client.
"""

from __future__ import annotations

import base64
import hmac
import logging
import pickle
import secrets
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import cachekit
from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from middleware.sessions import SessionMiddleware
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore
from tests import servers
from tests.wsgi import Client
from tests.wsgi import call_app
from tests.wsgi import header_values
from tests.wsgi import make_environ

# -- pickle is never applied to client data ------------------------------------------------------

UNPICKLED: list[str] = []


def _mark_unpickled(where: str) -> str:
    UNPICKLED.append(where)
    return where


class Exploit:
    """Unpickling this runs code: it calls :func:`_mark_unpickled`."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _mark_unpickled, (self.where,)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record any unpickling at all during the test (and the exploit's own marker)."""
    UNPICKLED.clear()
    calls: list[str] = []
    real_loads = pickle.loads

    def spying_loads(data: bytes, *args: Any, **kwargs: Any) -> Any:
        calls.append("pickle.loads")
        return real_loads(data, *args, **kwargs)

    monkeypatch.setattr(pickle, "loads", spying_loads)
    yield calls
    assert UNPICKLED == []


def exploit_payloads(where: str) -> list[bytes]:
    raw = pickle.dumps({"user": Exploit(where)})
    return [raw, zlib.compress(raw), pickle.dumps(Exploit(where), protocol=0)]


def cookie_forgeries(store: SignedCookieStore, where: str) -> list[str]:
    """Pickles as a cookie: bare, base64, and signed with the store's own key (the attacker has it)."""
    signer = store._signers[0]
    forged = []
    for payload in exploit_payloads(where):
        encoded = base64.urlsafe_b64encode(payload).rstrip(b"=")
        forged += [
            encoded.decode(),
            signer.sign(encoded),
            signer.sign(b"." + base64.urlsafe_b64encode(zlib.compress(payload)).rstrip(b"=")),
        ]
    return forged


def test_pickle_in_a_signed_cookie_is_never_unpickled(
    no_unpickling: list[str], make_app: Callable[..., Any]
) -> None:
    store = SignedCookieStore(secrets.token_hex(16))
    app = make_app(f"locmem://pickle-{secrets.token_hex(4)}", store=store)
    for value in cookie_forgeries(store, "cookie"):
        status, _, body = call_app(app, make_environ("/count", headers={"Cookie": f"session={value}"}))
        assert (status, body) == ("200 OK", b"1")  # a new session, the cookie ignored
    assert no_unpickling == []


@pytest.mark.parametrize("kind", ["redis", "memcached", "locmem"])
def test_pickle_in_the_session_store_record_is_never_unpickled(
    kind: str, no_unpickling: list[str], request: pytest.FixtureRequest, make_app: Callable[..., Any]
) -> None:
    """Whoever can write to the store plants a pickle under a real session's key: it is not run."""
    if kind == "locmem":
        url = f"locmem://pickle-{secrets.token_hex(4)}"
    else:
        server: servers.ServerProcess = request.getfixturevalue(f"{kind}_server")
        url = f"{kind}://{server.address}" + ("/0" if kind == "redis" else "")
    app = make_app(url)
    client = Client(app)
    client.get("/count")
    session_id = client.cookies["session"]
    store: CacheStore = app.store  # type: ignore[attr-defined]
    for payload in exploit_payloads(f"store-{kind}"):
        store.records.set(store.store_key(session_id), payload)
        status, _, body = client.get("/count")
        assert (status, body) == ("200 OK", b"1")  # the record is unreadable: a new session
        session_id = client.cookies["session"]
    assert no_unpickling == []


def test_pickle_serializer_is_refused_for_sessions() -> None:
    from cachekit.exceptions import ConfigurationError
    from middleware.sessions import store_from_settings

    with pytest.raises(ConfigurationError, match="pickle"):
        store_from_settings({"SESSION_SERIALIZER": "cachekit.serializers.PickleSerializer"})


# -- secrets never in reprs or logs --------------------------------------------------------------

PASSWORD = "s3cr3t-Pa55word"
SECRET_KEY = "signing-key-" + secrets.token_hex(16)


def test_secrets_never_in_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dead = servers.free_port()
    cache = cachekit.from_url(f"redis://user:{PASSWORD}@127.0.0.1:{dead}/0?socket_timeout=0.2")
    store = SignedCookieStore([SECRET_KEY, SECRET_KEY + "-old"])
    cache_store = CacheStore(cache)
    texts = [repr(cache), repr(cache.backend), repr(store), repr(cache_store), str(cache_store.records)]
    assert cache.get("k", "missing") == "missing"  # an outage: logged with the server's address
    app = SessionMiddleware(lambda environ, start: [], cache_store)
    texts.append(repr(call_app(SessionMiddleware(_counter, cache_store), make_environ())))
    texts.append(repr(app))
    from cachekit.exceptions import ConfigurationError

    for url in (
        f"redis://user:{PASSWORD}@h:notaport/0",
        f"redis://u:{PASSWORD}@h:1/x",
        f"bogus://u:{PASSWORD}@h",
    ):
        with pytest.raises(ConfigurationError) as failure:
            cachekit.from_url(url)
        texts.append(str(failure.value))
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records  # the outage was logged
    for text in texts:
        assert PASSWORD not in text
        assert SECRET_KEY not in text


def _counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["cachekit.session"]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def test_session_ids_are_never_logged(
    caplog: pytest.LogCaptureFixture, redis_server: servers.ServerProcess, make_app: Callable[..., Any]
) -> None:
    """Every path that logs (outage 503s, conflicts, tampered cookies) at DEBUG: no id appears."""
    caplog.set_level(logging.DEBUG)
    app = make_app(f"redis://{redis_server.address}/0")
    client = Client(app)
    seen: set[str] = set()
    client.get("/count")
    seen.add(client.cookies["session"])
    client.request("/login?name=ada", "POST")  # cycles the id
    seen.add(client.cookies["session"])
    other = Client(app)
    other.get("/count")
    seen.add(other.cookies["session"])
    stale = other.cookies["session"]
    other.request("/logout", "POST")
    call_app(app, make_environ("/count", headers={"Cookie": f"session={stale}"}))
    call_app(app, make_environ("/count", headers={"Cookie": f"session={stale[:-1]}X"}))
    # The same sessions, with the store down: 503s, logged as errors.
    down = make_app(f"redis://127.0.0.1:{servers.free_port()}/0?socket_timeout=0.2")
    for session_id in seen:
        status, _, _ = call_app(down, make_environ("/count", headers={"Cookie": f"session={session_id}"}))
        assert status.startswith("503")
    assert any(record.levelno >= logging.ERROR for record in caplog.records)
    logged = "\n".join(record.getMessage() + repr(record.args) for record in caplog.records)
    for session_id in seen:
        assert session_id not in logged


# -- signatures ------------------------------------------------------------------------------------


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    store = SignedCookieStore([secrets.token_hex(16), secrets.token_hex(16)])
    client = Client(SessionMiddleware(_counter, store))
    client.get("/")
    good = client.cookies["session"]
    compared.clear()
    assert store.load(good[:-2] + ("AA" if good[-2:] != "AA" else "BB")) is None
    assert len(compared) == 2  # one constant-time comparison per key, and no other check
    compared.clear()
    assert store.load(good) is not None
    assert len(compared) == 1


# -- cookies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cache", "cookie"])
def test_cookie_flag_defaults(kind: str, make_app: Callable[..., Any]) -> None:
    store = SignedCookieStore(secrets.token_hex(16)) if kind == "cookie" else None
    client = Client(make_app(f"locmem://flags-{secrets.token_hex(4)}", store=store))
    _, headers, _ = client.get("/count")
    (line,) = header_values(headers, "Set-Cookie")
    attributes = [part.strip() for part in line.split(";")[1:]]
    names = [attribute.split("=")[0] for attribute in attributes]
    assert names == ["Expires", "Max-Age", "HttpOnly", "Path", "SameSite"]
    assert "Path=/" in attributes
    assert "SameSite=Lax" in attributes
    assert "Max-Age=1209600" in attributes  # two weeks, Django's SESSION_COOKIE_AGE
    assert "Secure" not in names  # off by default (plain-HTTP development); turn it on in production


def test_secret_key_rotation() -> None:
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    before = Client(SessionMiddleware(_counter, SignedCookieStore(old)))
    before.get("/")
    old_cookie = before.cookies["session"]

    rotated = Client(SessionMiddleware(_counter, SignedCookieStore([new, old])))
    rotated.cookies["session"] = old_cookie
    assert rotated.get("/")[2] == b"2"  # still logged in
    assert rotated.cookies["session"] != old_cookie  # and re-signed with the new key
    assert SignedCookieStore(new).load(rotated.cookies["session"]) is not None

    dropped = Client(SessionMiddleware(_counter, SignedCookieStore(new)))
    dropped.cookies["session"] = old_cookie
    assert dropped.get("/")[2] == b"1"  # the old key is gone: a new, empty session


# -- an attacker who can read Redis ------------------------------------------------------------------


def test_redis_reader_learns_hashes_not_session_ids(
    redis_server: servers.ServerProcess, make_app: Callable[..., Any]
) -> None:
    db = 7
    with redis.Redis(servers.HOST, redis_server.port, db=db) as reader:
        reader.flushdb()
        app = make_app(f"redis://{redis_server.address}/{db}")
        ids = []
        for name in ("ada", "grace"):
            client = Client(app)
            client.request(f"/login?name={name}", "POST")
            ids.append(client.cookies["session"])
        dump = {key: reader.get(key) for key in reader.scan_iter()}
    assert len(dump) == 2
    everything = b"".join(key + value for key, value in dump.items() if value)
    for session_id in ids:
        assert session_id.encode() not in everything
    store: CacheStore = app.store  # type: ignore[attr-defined]
    assert {key.decode().rsplit(":", 1)[-1] for key in dump} == {
        store.store_key(session_id) for session_id in ids
    }
    # What the reader does learn: the data, in JSON.
    assert all(b'"user":"' in value for value in dump.values() if value)
    # And a stored key is no cookie.
    hashed = next(iter(dump)).decode().rsplit(".", 1)[-1]
    assert call_app(app, make_environ("/me", headers={"Cookie": f"session={hashed}"}))[2] == b"user=None"


# -- cache busting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
def test_client_cache_control_makes_the_page_cache_render_again(
    directive: str, make_app: Callable[..., Any]
) -> None:
    cache = Cache(LocMemBackend(f"busting-{secrets.token_hex(4)}"))
    app = make_app(cache.backend)
    views = app.views  # type: ignore[attr-defined]
    for _ in range(3):
        call_app(app, make_environ("/page/1"))
    assert views.renders["/page/1"] == 1
    for n in range(3):
        status, headers, _ = call_app(app, make_environ("/page/1", headers={"Cache-Control": directive}))
        assert status == "200 OK"
        assert views.renders["/page/1"] == 2 + n  # RFC 9111: the client asked for a fresh response
    call_app(app, make_environ("/page/1"))
    assert views.renders["/page/1"] == 4  # and the fresh one was stored for everyone else
