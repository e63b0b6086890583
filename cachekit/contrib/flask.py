"""``@cache_page`` for Flask view functions: cachekit's HTTP-correct page cache where Flask views live.

Put it under the route, as Flask-Caching's ``@cache.cached`` goes::

    from cachekit.contrib.flask import cache_page

    @app.get("/news")
    @cache_page(60)
    def news():
        return render_template("news.html")

The view keeps Flask's conventions (it returns whatever Flask accepts: a
string, a ``Response``, a ``(body, status, headers)`` tuple, a dict), and the
page goes through the same engine as :func:`cachekit.pages.cache_page` and
``CacheMiddleware``: ``GET``/``HEAD`` only, ``Vary`` honoured, never a response
that sets a cookie, is ``private``/``no-store`` or answers ``Authorization``;
conditional requests get 304 and served pages an ``Age``. A view that used
``flask.session`` gets ``Vary: Cookie`` before the page cache decides (Flask
itself adds it only after the view), so a page built from a session is never
served to another visitor.

The decorated view has ``page_cache`` (its :class:`~cachekit.pages.PageCache`)
and ``purge(url)``. Flask is imported only when this module is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar
from typing import cast

import flask

from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.cache import Timeout
from cachekit.pages import PageCache
from cachekit.pages import PageOptions

F = TypeVar("F", bound=Callable[..., Any])


def cache_page(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: Cache | None = None,
    options: PageOptions | None = None,
    **settings: Any,
) -> Callable[[F], F]:
    """Cache the responses of a Flask view function.

    :param timeout: lifetime of responses that state none; see :class:`~cachekit.pages.PageOptions`.
    :param cache: the cachekit cache to store into (default ``caches["default"]``).
    :param options: a ready :class:`~cachekit.pages.PageOptions`, or pass its fields as keywords.
    """
    if settings.get("key_prefix") is None:
        settings.pop("key_prefix", None)
    engine = PageCache(timeout, cache=cache, options=options, **settings)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> flask.Response:
            app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
            context = flask.globals.request_ctx._get_current_object()  # type: ignore[attr-defined]

            def render(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
                if not flask.has_request_context():
                    # A background re-render (stale_while_revalidate) after the request ended:
                    # in a copy of its context, so the view still finds request, session and g.
                    with context.copy():
                        return render(environ, start_response)
                response = app.make_response(view(*args, **kwargs))
                if getattr(flask.session, "accessed", False):
                    response.vary.add("Cookie")
                return cast(Iterable[bytes], response(environ, start_response))

            def cached(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
                return engine(render, environ, start_response)

            response: flask.Response = app.response_class.from_app(cached, flask.request.environ)
            return response

        wrapper.page_cache = engine  # type: ignore[attr-defined]
        wrapper.purge = engine.purge  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


__all__ = ["cache_page"]
