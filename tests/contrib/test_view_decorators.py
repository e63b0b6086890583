"""Per-view page caching where views live: Flask view functions and Django views.

Both decorators drive the same engine as cachekit.pages.cache_page; each test
runs on local memory, real Redis and real memcached.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import cachekit
from cachekit.cache import Cache
from tests.servers import ServerProcess

_names = itertools.count()


@pytest.fixture(params=["locmem", "redis", "memcached"])
def page_store(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "locmem":
        cache = cachekit.from_url(f"locmem://views-{next(_names)}")
    else:
        server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
        cache = cachekit.from_url(f"{request.param}://{server.address}", key_prefix=f"views{next(_names)}")
    cache.clear()
    yield cache
    cache.clear()


# -- Flask -------------------------------------------------------------------------------


def flask_app(cache: Cache) -> tuple[Any, list[str]]:
    flask = pytest.importorskip("flask")
    from cachekit.contrib.flask import cache_page

    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "views-secret-0123456789abcdef"
    calls: list[str] = []

    @app.get("/news")
    @cache_page(60, cache=cache)
    def news() -> str:
        calls.append("news")
        return f"news {len(calls)}"

    @app.get("/data/<int:item>")
    @cache_page(60, cache=cache)
    def data(item: int) -> dict[str, int]:
        calls.append(f"data{item}")
        return {"item": item, "render": len(calls)}

    @app.get("/me")
    @cache_page(60, cache=cache)
    def me() -> str:
        calls.append("me")
        return f"hello {flask.session.get('user', 'anonymous')}"

    @app.get("/login/<user>")
    def login(user: str) -> str:
        flask.session["user"] = user
        return "ok"

    @app.route("/form", methods=["GET", "POST"])
    @cache_page(60, cache=cache)
    def form() -> str:
        calls.append(flask.request.method)
        return "form"

    return app, calls


def test_flask_view_is_cached(page_store: Cache) -> None:
    app, calls = flask_app(page_store)
    client = app.test_client()
    first = client.get("/news")
    second = client.get("/news")
    assert (first.data, second.data) == (b"news 1", b"news 1")
    assert calls == ["news"]
    assert "Age" in second.headers
    assert client.get("/data/1").json == {"item": 1, "render": 2}
    assert client.get("/data/1").json == {"item": 1, "render": 2}
    assert client.get("/data/2").json == {"item": 2, "render": 3}  # view arguments are the URL


def test_flask_conditional_request_is_answered_304(page_store: Cache) -> None:
    flask = pytest.importorskip("flask")
    from cachekit.contrib.flask import cache_page

    app = flask.Flask(__name__)
    calls: list[int] = []

    @app.get("/tagged")
    @cache_page(60, cache=page_store)
    def tagged() -> Any:
        calls.append(1)
        response = flask.make_response("tagged")
        response.set_etag("v1")
        return response

    client = app.test_client()
    etag = client.get("/tagged").headers["ETag"]
    revalidated = client.get("/tagged", headers={"If-None-Match": etag})
    assert revalidated.status_code == 304
    assert revalidated.data == b""
    assert calls == [1]


def test_flask_unsafe_methods_are_not_cached(page_store: Cache) -> None:
    app, calls = flask_app(page_store)
    client = app.test_client()
    client.post("/form")
    client.post("/form")
    assert calls == ["POST", "POST"]


def test_flask_session_pages_are_not_shared(page_store: Cache) -> None:
    app, _ = flask_app(page_store)
    ada = app.test_client()
    ada.get("/login/ada")
    assert ada.get("/me").data == b"hello ada"
    bob = app.test_client()
    bob.get("/login/bob")
    assert bob.get("/me").data == b"hello bob"
    assert app.test_client().get("/me").data == b"hello anonymous"
    assert "Cookie" in ada.get("/me").headers.get("Vary", "")


# -- Django ------------------------------------------------------------------------------


def django_setup() -> None:
    pytest.importorskip("django")
    from tests.django_settings import configure_django

    configure_django()


def test_django_view_is_cached(page_store: Cache) -> None:
    django_setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from cachekit.contrib.django import cache_page

    calls: list[int] = []

    @cache_page(60, cache=page_store)
    def report(request: Any, year: int) -> HttpResponse:
        calls.append(year)
        response = HttpResponse(f"report {year} #{len(calls)}")
        response["X-Year"] = str(year)
        return response

    factory = RequestFactory()
    first = report(factory.get("/report/2024"), 2024)
    second = report(factory.get("/report/2024"), 2024)
    assert first.content == second.content == b"report 2024 #1"
    assert second["X-Year"] == "2024"
    assert "Age" in second
    assert report(factory.get("/report/2025"), 2025).content == b"report 2025 #2"
    report(factory.post("/report/2024"), 2024)
    assert calls == [2024, 2025, 2024]


def test_django_views_that_set_cookies_or_use_the_session_are_not_shared(page_store: Cache) -> None:
    django_setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from cachekit.contrib.django import cache_page
    from sessions.contrib.django import SessionStore

    @cache_page(60, cache=page_store)
    def greet(request: Any) -> HttpResponse:
        return HttpResponse(f"hello {request.session.get('user', 'anonymous')}")

    @cache_page(60, cache=page_store)
    def sets_cookie(request: Any) -> HttpResponse:
        response = HttpResponse("cookie")
        response.set_cookie("seen", "1")
        return response

    factory = RequestFactory()
    ada = factory.get("/greet")
    ada.session = SessionStore()
    ada.session["user"] = "ada"
    assert greet(ada).content == b"hello ada"
    bob = factory.get("/greet", HTTP_COOKIE="sessionid=other")
    bob.session = SessionStore()
    bob.session["user"] = "bob"
    assert greet(bob).content == b"hello bob"
    first = sets_cookie(factory.get("/c"))
    assert first.cookies["seen"].value == "1"
    assert "Age" not in sets_cookie(factory.get("/c"))


def test_django_cache_page_in_urls_and_template_responses(page_store: Cache) -> None:
    django_setup()
    from django.template.response import TemplateResponse
    from django.test import RequestFactory

    from cachekit.contrib.django import cache_page

    renders: list[int] = []

    class Template:
        """A template backend's template: render(context, request)."""

        def render(self, context: Any = None, request: Any = None) -> str:
            return f"rendered {context['n']}"

    def view(request: Any) -> TemplateResponse:
        renders.append(1)
        return TemplateResponse(request, Template(), {"n": len(renders)})

    cached = cache_page(60, cache=page_store)(view)  # the urls.py form: path("x", cache_page(60)(view))
    factory = RequestFactory()
    assert cached(factory.get("/t")).content == b"rendered 1"
    assert cached(factory.get("/t")).content == b"rendered 1"
    assert renders == [1]


def test_django_cache_page_uses_the_default_alias_and_refuses_others() -> None:
    django_setup()
    from django.core.cache import caches
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.test.utils import override_settings

    from cachekit.contrib.django import cache_page
    from cachekit.exceptions import ConfigurationError

    calls: list[int] = []

    @cache_page(60)
    def page(request: Any) -> HttpResponse:
        calls.append(1)
        return HttpResponse("default alias")

    caches["default"].clear()
    factory = RequestFactory()
    page(factory.get("/alias"))
    assert "Age" in page(factory.get("/alias"))
    assert calls == [1]
    caches["default"].clear()
    other = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=other):
        refused = cache_page(60)(page)
        with pytest.raises(ConfigurationError, match="CacheBackend"):
            refused(factory.get("/alias"))


def test_plain_wsgi_cache_page_on_a_flask_view_says_what_to_use() -> None:
    flask = pytest.importorskip("flask")
    from cachekit.pages import cache_page

    app = flask.Flask(__name__)

    @app.get("/")
    @cache_page(60)
    def index() -> str:
        return "x"

    @app.get("/item/<int:item>")
    @cache_page(60)
    def item(item: int) -> str:
        return str(item)

    client = app.test_client()
    for path in ("/", "/item/1"):
        app.testing = True
        with pytest.raises(TypeError, match=r"cachekit\.contrib\.flask\.cache_page"):
            client.get(path)


def test_plain_wsgi_cache_page_on_a_django_view_says_what_to_use() -> None:
    django_setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from cachekit.pages import cache_page

    @cache_page(60)
    def view(request: Any) -> HttpResponse:
        return HttpResponse("x")

    with pytest.raises(TypeError, match=r"cachekit\.contrib\.django\.cache_page"):
        view(RequestFactory().get("/"))
