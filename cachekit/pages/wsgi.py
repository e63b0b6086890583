"""The WSGI shell of the page cache: :class:`PageCache`, ``@cache_page`` and ``purge``.

It moves bytes between a WSGI app and the server and asks the engine
(:mod:`cachekit.pages.engine`) everything else; see :mod:`cachekit.views` for
what is and is not cached. The response is held until its status and headers
are known (so a failure can still be answered with the stale page). A
storable body is read from the app up to ``max_body_size`` before the client
gets any of it: the page is stored and the stampede lock released as soon as
the app has produced it, so a slow client never holds the lock. A longer body
is streamed on, uncached. A body that is not stored is the app's own iterable.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar
from typing import cast

from cachekit.background import ThreadWorkers
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.cache import Timeout
from cachekit.pages.engine import _EMPTY
from cachekit.pages.engine import LOOKUP_KEY
from cachekit.pages.engine import PageEngine
from cachekit.pages.engine import Plan
from cachekit.pages.engine import Request
from cachekit.pages.fields import marked
from cachekit.pages.fields import with_status
from cachekit.pages.io import SyncRecords
from cachekit.pages.options import PageOptions
from cachekit.pages.options import page_options
from cachekit.pages.record import Page
from cachekit.pages.record import page_response
from cachekit.pages.rules import Storability
from cachekit.pages.rules import bypass_reason
from cachekit.pages.rules import parse_cache_control
from cachekit.pages.urls import environ_key
from cachekit.pages.urls import request_url

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("cachekit.views")

F = TypeVar("F", bound=Callable[..., Iterable[bytes]])
Write = Callable[[bytes], object]

#: Where a session middleware puts the request's session (``middleware.sessions``'s
#: ``ENVIRON_KEY``; ``sessions.contrib.flask`` puts its session there too). The
#: engine reads it to learn whether the response read a stored or an anonymous session.
SESSION_ENVIRON_KEY = "cachekit.session"

_ENVIRON_KEYS: dict[str, str] = {}
_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(PageOptions))
_DONE = object()

# Not carried into a background render: a condition or range would make the app answer
# 304 or 206 (not a page to store), and the server's handles are done with the response.
_NOT_BACKGROUND = frozenset(
    {
        "HTTP_IF_NONE_MATCH",
        "HTTP_IF_MODIFIED_SINCE",
        "HTTP_IF_MATCH",
        "HTTP_IF_UNMODIFIED_SINCE",
        "HTTP_IF_RANGE",
        "HTTP_RANGE",
        "wsgi.file_wrapper",
    }
)


def _environ_header(environ: WSGIEnvironment, name: str) -> str | None:
    """The engine's header reader for a WSGI environ (lower-case name in, value out)."""
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = _ENVIRON_KEYS[name] = environ_key(name)
    value: str | None = environ.get(key)
    return value


def close_iterable(iterable: Iterable[bytes]) -> None:
    """Call ``close()`` on a WSGI response iterable if it has one."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def status_code(status: str | None, default: int = 0) -> int:
    """Return the numeric code of a WSGI status line such as ``"200 OK"`` (``default`` if malformed).

    The one parser of status lines: the page cache takes 0 (not storable), the
    session middleware 500 (``middleware._wsgi``).
    """
    try:
        return int(status[:3]) if status else default
    except ValueError:
        return default


class Capture:
    """A ``start_response`` stand-in that holds the status and headers until :meth:`send`.

    Data the app gives the ``write`` callable before then is kept in
    :attr:`written` (the shell sends it first); after, it goes straight on.
    """

    def __init__(self, start_response: StartResponse) -> None:
        self._start_response = start_response
        self._write: Write | None = None
        #: The status line given by the app, once it called ``start_response``.
        self.status: str | None = None
        #: The headers given by the app.
        self.headers: list[tuple[str, str]] = []
        #: The ``exc_info`` given by the app, if any.
        self.exc_info: OptExcInfo | None = None
        #: Body bytes the app passed to ``write()``, in order.
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Write:
        self.status, self.headers, self.exc_info = status, headers, exc_info
        if self._write is not None:  # already sent: the server decides (WSGI re-raises exc_info)
            self._write = self._start_response(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable handed to the app (WSGI's legacy imperative API)."""
        self.written.append(data)
        if self._write is not None:
            self._write(data)

    def send(self) -> list[bytes]:
        """Pass the held ``start_response`` call on; return what the app wrote before it."""
        if self._write is None and self.status is not None:
            self._write = self._start_response(self.status, self.headers, self.exc_info)
        return list(self.written)


class _Chained:
    """Yields ``first`` then ``rest``; closing it closes the app's iterable."""

    def __init__(self, first: list[bytes], rest: Iterator[bytes], iterable: Iterable[bytes]) -> None:
        self._first = first
        self._rest = rest
        self._iterable = iterable

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        close_iterable(self._iterable)


def serve_page(
    answer: tuple[str, list[tuple[str, str]], bytes], start_response: StartResponse, method: str
) -> Iterable[bytes]:
    """Send one whole ``(status, headers, body)`` answer.

    The header list handed on is always a new one: PEP 3333 lets a middleware outside us append to
    it, and an answer such as the fixed 504 is shared by every request.
    """
    status, headers, body = answer
    start_response(status, list(headers))
    return [body] if body or (method != "HEAD" and status[:3] != "304") else []


def _answer(
    page: Page, environ: WSGIEnvironment, now: float, method: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    return page_response(
        page, now, method, environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MODIFIED_SINCE")
    )


def _marking(start_response: StartResponse, member_of: Callable[[int], str | None]) -> StartResponse:
    """A ``start_response`` that adds the ``Cache-Status`` member ``member_of(status code)``."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Write:
        member = member_of(status_code(status))
        return start_response(status, headers if member is None else with_status(headers, member), exc_info)

    return cast("StartResponse", start)


class PageCache:
    """The page cache for WSGI, shared by ``@cache_page`` and ``CacheMiddleware``.

    Call it as ``engine(app, environ, start_response)``.

    :param timeout: lifetime of responses that state none (see :class:`PageOptions`).
    :param cache: the :class:`~cachekit.Cache` to store into; default
        ``caches["default"]``, looked up on first use.
    :param options: a ready :class:`PageOptions`; or pass its fields as keywords.
    """

    def __init__(
        self,
        timeout: Timeout = DEFAULT_TIMEOUT,
        *,
        cache: Cache | None = None,
        options: PageOptions | None = None,
        **settings: Any,
    ) -> None:
        if timeout is not DEFAULT_TIMEOUT:
            settings["timeout"] = timeout
        #: The settings.
        self.options = page_options(options, settings)
        #: The rules.
        self.engine = PageEngine(self.options)
        self._cache = cache
        self._records: SyncRecords | None = None
        self._forwarded = frozenset(environ_key(name) for name in self.options.untrusted_forwarded)
        #: The background re-renders (``background_revalidate``): ``background.wait(timeout)``
        #: waits for those in flight. One pool per process for every page cache with the same
        #: ``revalidate_workers``, made on first use.
        self.background = ThreadWorkers.shared(self.options.revalidate_workers)

    def __getattr__(self, name: str) -> Any:
        # The settings read as attributes, as before PageOptions: engine.max_body_size...
        if name != "options" and "options" in self.__dict__ and hasattr(self.options, name):
            return getattr(self.options, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OPTION_NAMES and "options" in self.__dict__:
            raise AttributeError(
                f"{name} is a PageOptions setting, fixed at construction: pass {name}={value!r} "
                "to the constructor (or options=PageOptions(...))."
            )
        super().__setattr__(name, value)

    @property
    def cache(self) -> Cache:
        """The cache pages are stored in (``caches["default"]`` unless one was given)."""
        if self._cache is None:
            from cachekit.config import caches

            self._cache = caches["default"]
        return self._cache

    def _io(self, cache: Cache) -> SyncRecords:
        records = self._records
        if records is None or records.cache is not cache:
            records = self._records = SyncRecords(cache)
        return records

    def url_hash(self, url: str) -> str:
        """Return the hash that names the page at canonical ``url`` in this engine."""
        return self.engine.hash_url(url)

    def _request_hash(self, environ: WSGIEnvironment) -> str:
        memo_key = (
            environ.get("wsgi.url_scheme", "http"),
            # Host and SERVER_NAME apart: "Host: a" on port 8080 is not "no Host, a:8080".
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME", ""),
            environ.get("SERVER_PORT", ""),
            environ.get("SCRIPT_NAME", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
        )
        if not self.options.trusted_forwarded:
            known = self.engine._url_hashes.get(memo_key)  # the hit path's memo, read inline
            if known is not None:
                return known
        normalize = self.options.normalize_query
        return self.engine.url_hash(
            memo_key, lambda: request_url(environ, normalize_query=normalize), _environ_header, environ
        )

    def keys_for(self, environ: WSGIEnvironment) -> list[str]:
        """The keys (before the cache prefix) a ``GET`` of ``environ`` reads: lookup record, page."""
        url_hash = self._request_hash(environ)
        lookup_key = LOOKUP_KEY + url_hash
        lookup = self._io(self.cache).get(lookup_key)
        page_key = self.engine.page_key_of(
            url_hash, lookup, _environ_header, environ, environ.get("SCRIPT_NAME", "")
        )
        return [lookup_key] + ([page_key] if page_key else [])

    def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        cache = self.cache
        return bool(self._io(cache).run(_delete(LOOKUP_KEY + self.engine.purge_hash(url))))

    # -- the request -------------------------------------------------------------------

    def __call__(
        self, app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer one request from the cache, or through ``app`` while storing its response."""
        method = environ.get("REQUEST_METHOD", "GET")
        status_on = self.options.cache_status
        if method != "GET" and method != "HEAD":
            if status_on:
                start_response = self._passing(start_response, "method", f"{method} is not cached")
            if self.engine.is_unsafe(method):
                return self._unsafe(app, environ, start_response)
            return app(environ, start_response)
        cache = self._cache or self.cache
        length = environ.get("CONTENT_LENGTH")
        why = bypass_reason(
            off=self.engine.default_lifetime(cache) == 0,
            has_body=bool(length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ,
            untrusted_forwarded=not environ.keys().isdisjoint(self._forwarded),
        )
        if why is not None:
            if status_on:
                start_response = self._passing(start_response, "bypass", why)
            return app(environ, start_response)
        url_hash = self._request_hash(environ)
        cc = environ.get("HTTP_CACHE_CONTROL")
        asked = parse_cache_control(cc) if cc else _EMPTY
        has_auth, now = bool(environ.get("HTTP_AUTHORIZATION")), cache.clock()
        records, engine = self._records, self.engine
        if records is None or records.cache is not cache:
            records = self._io(cache)
        split = environ.get("SCRIPT_NAME", "")
        lookup, page_key, stored = records.variant(
            engine, url_hash, _environ_header, environ, split, "no-cache" in asked
        )
        page = engine.fresh(stored, now, has_auth, asked)
        if page is not None:
            inm, ims = environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MODIFIED_SINCE")
            answer = page_response(page, now, method, inm, ims)
            if status_on:
                answer = marked(answer, engine.hit_status(page, now))
            return serve_page(answer, start_response, method)
        request = Request(
            method, url_hash, _environ_header, environ, now, asked, has_auth, lookup, page_key, split
        )
        plan: Plan = records.run(engine.lookup(request, stored))
        if plan.action == "run" and plan.page is not None and self.options.background_revalidate:
            plan = self._revalidate_later(app, records, request, plan, environ)
        if plan.action == "serve":
            if plan.stale:
                cache.recorder.stale_serves += 1
            answer = engine.serve_plan(plan, request, lambda page, at: _answer(page, environ, at, method))
            return serve_page(answer, start_response, method)
        if plan.action == "pass":
            if status_on:
                start_response = self._passing(start_response, request.fwd, "HEAD responses are not stored")
            return app(environ, start_response)
        return _Render(self, records, request, plan, environ).run(app, start_response)

    def _revalidate_later(
        self,
        app: WSGIApplication,
        records: SyncRecords,
        request: Request,
        plan: Plan,
        environ: WSGIEnvironment,
    ) -> Plan:
        """Hand the re-render of a stale page to a background thread; the request is served stale.

        The job takes over the request's render lock. With every worker busy, the
        lock is let go at once: the page stays stale and a later request retries.
        """
        job = _Revalidation(self, records, request, app, background_environ(environ))
        if not self.background.submit(job.run):
            job.release()
        return Plan("serve", plan.page, stale=True)

    def _passing(self, start_response: StartResponse, fwd: str, detail: str) -> StartResponse:
        engine = self.engine
        return _marking(start_response, lambda code: engine.pass_status(fwd, code, detail))

    def _unsafe(
        self, app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        cache = self._cache or self.cache
        url_hash = self._request_hash(environ)
        url = request_url(environ, normalize_query=self.options.normalize_query)

        def start(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Write:
            self._io(cache).run(self.engine.invalidate(url, url_hash, status_code(status), headers))
            return start_response(status, headers, exc_info)

        return app(environ, start)


def _raise(exc: Exception) -> Iterator[bytes]:
    raise exc
    yield b""  # pragma: no cover - makes this a generator


def _delete(key: str) -> Any:
    return (yield ("delete", key))


def background_environ(environ: WSGIEnvironment) -> WSGIEnvironment:
    """A copy of ``environ`` for rendering the page after its request was answered.

    The input stream is an empty one (a cached ``GET`` has no body, and the
    server's stream is done); conditions and ranges are dropped (the render must
    produce the whole page), as are ``wsgi.file_wrapper`` and the server's sockets
    (``gunicorn.socket``...). Everything else, such as the session a middleware
    put there, stays: the engine still reads it to decide whether the page is stored.
    """
    copy = {key: value for key, value in environ.items() if key not in _NOT_BACKGROUND}
    for key in [key for key in copy if key.endswith(".socket")]:
        del copy[key]
    copy["wsgi.input"] = io.BytesIO(b"")
    return copy


def _discard(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Write:
    """The ``start_response`` of a background render: nobody is listening."""
    return _ignore


def _ignore(data: bytes) -> None:
    return None


class _Revalidation:
    """One background re-render of a stale page, under the lock its request took."""

    def __init__(
        self,
        shell: PageCache,
        records: SyncRecords,
        served: Request,
        app: WSGIApplication,
        environ: WSGIEnvironment,
    ) -> None:
        self.shell = shell
        self.records = records
        self.app = app
        #: The job's own Request (the served one is done with), on the copied environ.
        self.request = served.handed_over(environ, _environ_header)

    def release(self) -> None:
        self.records.run(self.shell.engine.release(self.request))

    def run(self) -> None:
        request, url = self.request, request_url(self.request.source)
        try:
            request.now = self.records.cache.clock()
            if self.records.run(self.shell.engine.rendered_meanwhile(request)):
                return
            render = _Render(self.shell, self.records, request, Plan("run"), request.source)
            close_iterable(render.run(self.app, cast("StartResponse", _discard)))
            if not 200 <= render.code < 500:
                logger.error("background re-render of %s answered %s; the stale copy stays", url, render.code)
        except Exception:
            logger.exception("background re-render of %s failed; the stale copy stays", url)
        finally:
            self.release()


class _Render:
    """One render of the app on a miss: hold the start, decide, buffer, store, release."""

    def __init__(
        self, shell: PageCache, records: SyncRecords, request: Request, plan: Plan, environ: WSGIEnvironment
    ) -> None:
        self.shell = shell
        self.engine = shell.engine
        self.records = records
        self.request = request
        self.plan = plan
        self.environ = environ
        #: The app's status code, once it started its response (0 before).
        self.code = 0

    def release(self) -> None:
        self.records.run(self.engine.release(self.request))

    def run(self, app: WSGIApplication, start_response: StartResponse) -> Iterable[bytes]:
        engine, records, request, environ = self.engine, self.records, self.request, self.environ
        try:
            generations = records.run(engine.generations(request, environ))
        except Exception:
            self.release()
            raise
        capture = Capture(start_response)
        result: Iterable[bytes] = ()
        held: list[bytes] = []
        try:
            result = app(environ, capture)
            iterator = iter(result)
            while capture.status is None:  # a generator app starts its response lazily
                chunk = next(iterator, _DONE)
                if chunk is _DONE:
                    break
                held.append(chunk)  # type: ignore[arg-type]
        except Exception:
            close_iterable(result)
            self.release()
            return self.failed(start_response, "raised", reraise=True)
        code = self.code = status_code(capture.status)
        if self.plan.fallback is not None and (capture.status is None or code >= 500):
            close_iterable(result)
            self.release()
            return self.failed(start_response, f"answered {capture.status}", reraise=False)
        request.session = environ.get(SESSION_ENVIRON_KEY)
        verdict = records.run(engine.on_start(request, code, capture.headers, capture.exc_info is not None))
        if not verdict.storable:
            self.outgoing(capture, code, verdict, stored=False)
            head = capture.send()
            if not head and not held:
                return result  # not stored: the app's own iterable, untouched
            return _Chained(head + held, iterator, result)
        size = sum(len(chunk) for chunk in capture.written) + sum(len(chunk) for chunk in held)
        limit = engine.options.max_body_size
        written = len(capture.written)
        try:
            for chunk in iterator if size <= limit else ():
                held.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            complete = size <= limit
        except Exception as exc:
            self.release()
            if self.plan.fallback is not None or self.engine.error_answer(self.plan) is not None:
                close_iterable(result)
                return self.failed(start_response, "raised", reraise=True)
            # As without a cache: what the app produced, then its error, while iterating.
            return _Chained(capture.send() + held, _raise(exc), result)
        body = b"".join([*capture.written, *held]) if complete and len(capture.written) == written else None
        assert capture.status is not None
        stored = False
        try:
            stored = records.run(
                engine.finish(request, capture.status, capture.headers, body, verdict, generations)
            )
        except Exception:
            request.detail = "the cache failed to store it"
            logger.exception("page %s could not be stored", request_url(environ))
        self.outgoing(capture, code, verdict, stored=stored)
        return _Chained(capture.send() + held, iterator, result)

    def outgoing(self, capture: Capture, code: int, verdict: Storability, *, stored: bool) -> None:
        """The client's headers: surrogate keys dropped, ``CDN-Cache-Control`` and ``Cache-Status`` added."""
        engine = self.engine
        headers = engine.page_headers(capture.headers, verdict)
        member = engine.render_status(self.request, code, verdict, stored)
        capture.headers = headers if member is None else with_status(headers, member)

    def failed(self, start_response: StartResponse, what: str, *, reraise: bool) -> Iterable[bytes]:
        """The app failed: the stale copy (stale-if-error), a 504 (must-revalidate), or the failure."""
        plan, url = self.plan, request_url(self.environ)
        if plan.fallback is not None:
            if reraise:
                logger.exception("page %s %s; serving the stale copy", url, what)
            else:
                logger.error("page %s %s; serving the stale copy", url, what)
            cache = self.records.cache
            cache.recorder.stale_serves += 1
            now = cache.clock()
            member = self.engine.error_status(self.request, self.code, plan.fallback, now)
            answer = marked(_answer(plan.fallback, self.environ, now, "GET"), member)
            return serve_page(answer, start_response, "GET")
        gateway = self.engine.error_answer(plan)
        if gateway is not None:
            logger.exception("page %s %s; it must be revalidated: 504", url, what)
            member = self.engine.error_status(self.request, self.code, None, self.request.now)
            return serve_page(marked(gateway, member), start_response, "GET")
        if reraise:
            raise  # the app's exception, which the caller is handling
        return []


def _not_wsgi(view: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The message for ``@cache_page`` put on something that is not called as a WSGI app."""
    called = ", ".join([*(type(arg).__name__ for arg in args), *(f"{name}=..." for name in kwargs)])
    return (
        f"cache_page wraps WSGI callables, called as (environ, start_response); "
        f"{getattr(view, '__qualname__', view)!s} was called with ({called}). For a Flask view use "
        "cachekit.contrib.flask.cache_page, for a Django view cachekit.contrib.django.cache_page."
    )


def cache_page(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: Cache | None = None,
    options: PageOptions | None = None,
    **settings: Any,
) -> Callable[[F], F]:
    """Cache the responses of a WSGI callable (a function, or a method taking ``self`` first).

    ::

        @cache_page(60, tags=["news"])
        def news(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [render_news()]

    The decorated callable has ``page_cache`` (its :class:`PageCache`) and
    ``purge(url)``. The keyword settings are :class:`PageOptions`' (or pass
    ``options=``); see :mod:`cachekit.views` for what is and is not cached.
    """
    if settings.get("key_prefix") is None:
        settings.pop("key_prefix", None)
    engine = PageCache(timeout, cache=cache, options=options, **settings)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Iterable[bytes]:
            if kwargs or len(args) < 2 or not isinstance(args[-2], dict) or not callable(args[-1]):
                raise TypeError(_not_wsgi(view, args, kwargs))
            if len(args) == 2:
                return engine(view, args[0], args[1])
            *bound, environ, start_response = args
            return engine(functools.partial(view, *bound), environ, start_response)

        wrapper.page_cache = engine  # type: ignore[attr-defined]
        wrapper.purge = engine.purge  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def purge(
    url: str, *, cache: Cache | None = None, key_prefix: str | None = None, normalize_query: bool = False
) -> bool:
    """Remove every stored variant (all ``Vary`` values) of the page at absolute ``url``.

    One ``delete``: the variants' keys embed a per-URL nonce that dies with it.
    Pass the ``key_prefix`` and ``normalize_query`` the page was cached with.

    :returns: whether the page was cached.
    :raises ValueError: if ``url`` is not absolute.
    """
    engine = PageCache(cache=cache, key_prefix=key_prefix or "", normalize_query=normalize_query)
    return engine.purge(url)
