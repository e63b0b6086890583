"""The WSGI shell of the page cache: :class:`PageCache`, ``@cache_page`` and ``purge``.

It moves bytes between a WSGI app and the server and asks the engine
(:mod:`cachekit.pages.engine`) everything else; see :mod:`cachekit.views` for
what is and is not cached. The response is held until its status and headers
are known (so a failure can still be answered with the stale page). A
storable body is read from the app up to ``max_body_size`` before the client
gets any of it: the page is stored and the stampede lock released as soon as
the app has produced it, so a slow client never holds the lock. A longer body
is streamed on, uncached. A body that is not stored is the app's own iterable.
The plumbing that knows nothing of storing (the held ``start_response``, status
lines, the environ copy of a background render) is :mod:`cachekit.pages.serving`;
its names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from collections.abc import Iterable
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
from cachekit.pages.record import page_response
from cachekit.pages.rules import Storability
from cachekit.pages.rules import bypass_reason
from cachekit.pages.rules import parse_cache_control
from cachekit.pages.serving import _ENVIRON_KEYS as _ENVIRON_KEYS
from cachekit.pages.serving import _NOT_BACKGROUND as _NOT_BACKGROUND
from cachekit.pages.serving import Capture as Capture
from cachekit.pages.serving import Write as Write
from cachekit.pages.serving import _answer as _answer
from cachekit.pages.serving import _Chained as _Chained
from cachekit.pages.serving import _discard as _discard
from cachekit.pages.serving import _environ_header as _environ_header
from cachekit.pages.serving import _ignore as _ignore
from cachekit.pages.serving import _marking as _marking
from cachekit.pages.serving import _raise as _raise
from cachekit.pages.serving import background_environ as background_environ
from cachekit.pages.serving import close_iterable as close_iterable
from cachekit.pages.serving import serve_page as serve_page
from cachekit.pages.serving import status_code as status_code
from cachekit.pages.urls import environ_key
from cachekit.pages.urls import request_url

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("cachekit.views")

F = TypeVar("F", bound=Callable[..., Iterable[bytes]])

#: Where a session middleware puts the request's session (``middleware.sessions``'s
#: ``ENVIRON_KEY``; ``sessions.contrib.flask`` puts its session there too). The
#: engine reads it to learn whether the response read a stored or an anonymous session.
SESSION_ENVIRON_KEY = "cachekit.session"

_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(PageOptions))
_DONE = object()


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


def _delete(key: str) -> Any:
    return (yield ("delete", key))


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
