"""sessions.contrib.starlette.SessionMiddleware runs Starlette's own session scenarios.

Every test runs on Starlette's SessionMiddleware (the spec) and on ours: with the
default signed cookie and with a server-side store on local memory, real Redis
and real memcached.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import PlainTextResponse
from starlette.routing import Route

with warnings.catch_warnings():
    # Starlette 1.x asks for the httpx2 fork; httpx (what this suite installs) still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from cachekit import aio
from cachekit.exceptions import ConfigurationError
from sessions.contrib.starlette import SessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from tests.servers import ServerProcess
from tests.servers import free_port

KINDS = ["starlette", "cookie", "locmem", "redis", "memcached"]
SECRET = "starlette-peer-secret-0123456789abcdef"
_names = itertools.count()


async def set_values(request: Request) -> PlainTextResponse:
    for key, value in request.query_params.items():
        request.session[key] = value
    return PlainTextResponse("set")


async def merge(request: Request) -> PlainTextResponse:
    session = request.session
    session |= {"merged": True, "n": 1}
    return PlainTextResponse("merged")


async def show(request: Request) -> JSONResponse:
    return JSONResponse(request.session)


async def look(request: Request) -> PlainTextResponse:
    request.session.mark_accessed()  # type: ignore[attr-defined]
    return PlainTextResponse(str(type(request.session).__mro__[-2].__name__))


async def untouched(request: Request) -> PlainTextResponse:
    return PlainTextResponse("untouched")


async def clear(request: Request) -> PlainTextResponse:
    request.session.clear()
    return PlainTextResponse("cleared")


async def pop(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.pop(request.query_params["key"], None)))


ROUTES = [
    Route("/set", set_values),
    Route("/merge", merge),
    Route("/show", show),
    Route("/look", look),
    Route("/untouched", untouched),
    Route("/clear", clear),
    Route("/pop", pop),
]


def make_client(kind: str, request: pytest.FixtureRequest, **options: Any) -> TestClient:
    caches: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for cache in caches:  # close async connections on the loop that made them
            await cache.close()

    if kind == "starlette":
        middleware = Middleware(StarletteSessionMiddleware, secret_key=SECRET, **options)
    elif kind == "cookie":
        middleware = Middleware(SessionMiddleware, secret_key=SECRET, **options)
    else:
        if kind == "locmem":
            url = f"locmem://starlette-{next(_names)}"
        else:
            server: ServerProcess = request.getfixturevalue(f"{kind}_server")
            url = f"{kind}://{server.address}"
        cache = aio.from_url(url, key_prefix=f"st{next(_names)}")
        caches.append(cache)
        store = AsyncCacheStore(cache)
        middleware = Middleware(SessionMiddleware, secret_key=SECRET, store=store, **options)
    app = Starlette(routes=ROUTES, middleware=[middleware], lifespan=lifespan)
    client = TestClient(app, base_url="https://example.test")
    client.__enter__()  # one event loop for every request: async Redis connections belong to one
    request.addfinalizer(lambda: client.__exit__(None, None, None))
    return client


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cookie_attributes(response: Any) -> list[str]:
    header = response.headers["set-cookie"]
    parts = [part.strip().lower() for part in header.split(";")[1:]]
    return sorted(part for part in parts if not part.startswith("expires="))


def test_round_trip_and_request_session_is_a_dict(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    response = client.get("/set", params={"user": "ada"})
    assert "set-cookie" in response.headers
    assert response.headers["vary"] == "Cookie"
    assert client.get("/show").json() == {"user": "ada"}
    assert client.get("/look").text == "dict"


def test_ior_merges_and_saves(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.get("/set", params={"user": "ada"})
    client.get("/merge")
    assert client.get("/show").json() == {"user": "ada", "merged": True, "n": 1}


def test_read_only_use_sends_vary_but_no_cookie(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.get("/set", params={"user": "ada"})
    for path in ("/show", "/look"):
        response = client.get(path)
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Cookie"


def test_untouched_session_no_cookie_no_vary(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.get("/set", params={"user": "ada"})
    response = client.get("/untouched")
    assert "set-cookie" not in response.headers
    assert "vary" not in response.headers


def test_clear_deletes_the_cookie(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.get("/set", params={"user": "ada"})
    response = client.get("/clear")
    assert "01 jan 1970" in response.headers["set-cookie"].lower()
    assert client.get("/show").json() == {}
    # Clearing a session that never existed sends nothing.
    fresh = make_client(kind, request)
    assert "set-cookie" not in fresh.get("/clear").headers


def test_pop_of_the_last_key_deletes_the_cookie(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.get("/set", params={"user": "ada"})
    assert client.get("/pop", params={"key": "user"}).text == "ada"
    assert client.get("/show").json() == {}


def test_a_tampered_cookie_is_a_new_empty_session(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request)
    client.cookies.set("session", "tampered.value", domain="example.test")
    assert client.get("/show").json() == {}


OPTIONS: list[dict[str, Any]] = [
    {},
    {"session_cookie": "sid"},
    {"max_age": 60},
    {"max_age": None},
    {"path": "/app"},
    {"same_site": "strict"},
    {"https_only": True},
    {"domain": "example.test"},
    {"partitioned": True, "https_only": True},
    {"same_site": "none", "https_only": True},
]


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_cookie_options(kind: str, options: dict[str, Any], request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request, **options)
    response = client.get("/set", params={"user": "ada"})
    assert response.headers["set-cookie"].startswith(options.get("session_cookie", "session") + "=")
    expected = [f"path={options.get('path', '/')}", "httponly", f"samesite={options.get('same_site', 'lax')}"]
    max_age = options.get("max_age", 14 * 24 * 60 * 60)
    if max_age is not None:
        expected.append(f"max-age={max_age}")
    if options.get("https_only"):
        expected.append("secure")
    if options.get("domain"):
        expected.append(f"domain={options['domain']}")
    if options.get("partitioned"):
        expected.append("partitioned")
    assert cookie_attributes(response) == sorted(expected)
    if max_age is None:
        assert "expires=" not in response.headers["set-cookie"].lower()


@pytest.mark.parametrize("max_age", [0, -5])
def test_max_age_zero_or_below_is_accepted_and_keeps_nothing(
    kind: str, max_age: int, request: pytest.FixtureRequest
) -> None:
    client = make_client(kind, request, max_age=max_age)
    response = client.get("/set", params={"user": "ada"})
    assert response.status_code == 200
    assert "set-cookie" in response.headers
    assert client.get("/show").json() == {}


def test_sessions_expire_after_max_age(kind: str, request: pytest.FixtureRequest) -> None:
    client = make_client(kind, request, max_age=1)
    client.get("/set", params={"user": "ada"})
    assert client.get("/show").json() == {"user": "ada"}
    time.sleep(2.2)  # Starlette's signer counts whole seconds
    cookie = client.cookies.get("session")
    client.cookies.clear()
    if cookie is not None:  # a client that ignores Max-Age still gets nothing
        client.cookies.set("session", cookie, domain="example.test")
    assert client.get("/show").json() == {}


# -- ours only -----------------------------------------------------------------------


def test_same_site_none_without_https_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError):
        SessionMiddleware(Starlette(), secret_key=SECRET, same_site="none")


def test_a_secret_key_or_a_store_is_required() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        SessionMiddleware(Starlette())


@pytest.mark.parametrize("value", [("a", 1), b"\xff"], ids=["tuple", "bytes"])
def test_values_keep_their_types(value: Any) -> None:
    async def put(request: Request) -> PlainTextResponse:
        request.session["v"] = value
        return PlainTextResponse("put")

    async def get(request: Request) -> PlainTextResponse:
        return PlainTextResponse(repr(request.session["v"]))

    app = Starlette(routes=[Route("/put", put), Route("/get", get)])
    app.add_middleware(SessionMiddleware, secret_key=SECRET)
    client = TestClient(app)
    client.get("/put")
    assert client.get("/get").text == repr(value)


def test_server_side_session_can_be_revoked() -> None:
    store = AsyncCacheStore(aio.from_url(f"locmem://starlette-revoke-{next(_names)}"))
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, store=store)
    client = TestClient(app)
    client.get("/set", params={"user": "ada"})
    cookie = client.cookies["session"]
    assert len(cookie) < 64  # an id, not the data

    import asyncio

    asyncio.run(store.delete(cookie))
    assert client.get("/show").json() == {}


def test_an_outage_is_a_503_with_retry_after() -> None:
    cache = aio.from_url(f"redis://127.0.0.1:{free_port()}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, store=AsyncCacheStore(cache))
    client = TestClient(app)
    client.cookies.set("session", "a" * 43)
    response = client.get("/show")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "set-cookie" not in response.headers
