"""Per-view caching: the page-cache engine, ``@cache_page`` and ``purge``.

:class:`PageCache` caches whole WSGI responses with the rules of a shared HTTP
cache (:mod:`cachekit.http`). ``@cache_page`` wraps one WSGI callable with it
and ``middleware.CacheMiddleware`` wraps a whole application; both run this
one engine.

What is cached: responses to ``GET`` whose status is in ``statuses`` and which
neither set a cookie, nor say ``private``, ``no-store``, ``no-cache`` or
``Vary: *``, nor answer a request carrying ``Authorization`` (unless they say
``public`` or ``s-maxage``). A ``HEAD`` is answered from a stored ``GET``.
The response's ``s-maxage``/``max-age``/``Expires`` set its lifetime, else the
``timeout``.

Sessions: when the engine runs inside a session middleware (``@cache_page``
on a view of an app wrapped in ``SessionMiddleware``), it sees the response
before the middleware adds ``Vary: Cookie``, ``Cache-Control: private`` and
``Set-Cookie``, so it applies the same rules itself from the session at
``environ["cachekit.session"]``: a page that read a stored session is not
stored (unless it says ``public``: then it is kept per ``Cookie``), nor one
whose session will be saved; a page that read an anonymous session is kept
per ``Cookie`` and served with ``Vary: Cookie``.

How entries are keyed: by scheme, host, path and query string, plus the values
of the request headers the response varies on. The ``Vary`` list is learned
per URL (as Django's ``learn_cache_key`` does) and stored with a per-URL
nonce that is part of every variant's key, so :func:`purge` drops every
variant of a URL by deleting one key. A render already running when the purge
happens does not store its page: it may hold data from before the purge.

What is not changed: a response that is not served from cache passes through
byte for byte, with its headers untouched, even when it is stored; served
copies get ``Age`` and, if the app set none, ``Cache-Control: max-age``,
``Expires`` and a strong ``ETag`` computed from the body. Bodies stream
through as the app yields them; a body longer than ``max_body_size`` is
served but not stored. The app's iterable is always closed.

Stampedes: on a miss, one request per page computes while the others wait for
it (up to ``lock_timeout``, then compute themselves), across processes through
the backend's lock. Within a ``stale_while_revalidate`` window one request
regenerates while the others get the stale page at once; within a
``stale_if_error`` window a regeneration that raises or answers 5xx is
replaced by the stale page, and the error logged.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias
from typing import TypeVar
from typing import cast

from cachekit._page import Page
from cachekit._page import PageWrite
from cachekit._page import SessionUse
from cachekit._page import error_fallback
from cachekit._page import in_revalidate_window
from cachekit._page import is_fresh
from cachekit._page import page_write
from cachekit._page import servable
from cachekit._page import serve_page
from cachekit._page import session_use
from cachekit._page import usable_page
from cachekit._wsgi import SESSION_ENVIRON_KEY
from cachekit._wsgi import Capture
from cachekit._wsgi import Recorder
from cachekit._wsgi import canonical_url
from cachekit._wsgi import close_iterable
from cachekit._wsgi import environ_key
from cachekit._wsgi import prepend
from cachekit._wsgi import request_url
from cachekit._wsgi import status_code
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.cache import Timeout
from cachekit.exceptions import BackendUnavailableError
from cachekit.http import CACHEABLE_STATUSES
from cachekit.http import Storability
from cachekit.http import header
from cachekit.http import parse_cache_control
from cachekit.http import storability
from cachekit.memoize import memoize
from cachekit.tags import Generations
from cachekit.tags import current_generations

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

    from cachekit.backends.base import Lock

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Iterable[bytes]])

#: Tags for a page: names, or a function of the request's environ returning names.
PageTags: TypeAlias = "Iterable[str] | Callable[[WSGIEnvironment], Iterable[str]]"

#: Default largest body stored, in bytes; larger responses are served but not stored.
MAX_BODY_SIZE = 1024 * 1024

_HEADERS_KEY = "cachekit.page.headers."
_PAGE_KEY = "cachekit.page.GET."
_NOLOCK_KEY = "cachekit.page.nolock."
_LOCK_NAME = "cachekit.lock:page:"
# How long a URL that answered with an uncacheable response skips the stampede lock:
# waiting for a response that will not be stored would only serialize its requests.
_NOLOCK_SECONDS = 60.0

_EMPTY: Mapping[str, str | None] = {}
_MEMO_SIZE = 4096


def _digest(*parts: str) -> str:
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class PageCache:
    """The page-cache engine shared by ``@cache_page`` and ``CacheMiddleware``.

    Call it as ``engine(app, environ, start_response)``.

    :param timeout: lifetime of responses that state none; ``DEFAULT_TIMEOUT``
        uses the cache's default, ``None`` keeps them until evicted, ``0``
        disables caching.
    :param cache: the :class:`~cachekit.Cache` to store into; default
        ``caches["default"]``, looked up on first use.
    :param key_prefix: separates pages of different engines on one cache.
    :param vary_on: request headers to key on even when the response does not
        list them in ``Vary``.
    :param tags: names (or ``f(environ) -> names``) for ``cache.invalidate_tags``.
    :param stale_while_revalidate: seconds a stale page is served while one
        request regenerates it; a response's own ``stale-while-revalidate`` wins.
    :param stale_if_error: seconds a stale page stands in for an error; a
        response's own ``stale-if-error`` wins.
    :param max_body_size: bodies longer than this many bytes are not stored.
    :param etag: add a strong ``ETag`` from the body hash when the app set none.
    :param normalize_query: sort query parameters before keying.
    :param statuses: the status codes that may be stored.
    :param lock: let one request compute a missing page while others wait.
    :param lock_timeout: seconds a request waits for another to compute the
        page; default: the cache's ``lock_timeout``.
    """

    def __init__(
        self,
        timeout: Timeout = DEFAULT_TIMEOUT,
        *,
        cache: Cache | None = None,
        key_prefix: str = "",
        vary_on: Iterable[str] = (),
        tags: PageTags = (),
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        max_body_size: int = MAX_BODY_SIZE,
        etag: bool = True,
        normalize_query: bool = False,
        statuses: Iterable[int] = CACHEABLE_STATUSES,
        lock: bool = True,
        lock_timeout: float | None = None,
    ) -> None:
        for option, value in (
            ("stale_while_revalidate", stale_while_revalidate),
            ("stale_if_error", stale_if_error),
            ("max_body_size", max_body_size),
        ):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{option} must be a number >= 0, got {value!r}.")
        if isinstance(tags, str):
            raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
        #: Lifetime of responses that state none, as given.
        self.timeout = timeout
        #: Namespace of this engine's keys.
        self.key_prefix = key_prefix or ""
        #: Request headers always keyed on, lower-cased.
        self.vary_on = tuple(dict.fromkeys(name.lower() for name in vary_on))
        #: Tag names, or a function of the environ returning them.
        self.tags = tags if callable(tags) else tuple(tags)
        #: Default stale-while-revalidate window in seconds.
        self.stale_while_revalidate = float(stale_while_revalidate)
        #: Default stale-if-error window in seconds.
        self.stale_if_error = float(stale_if_error)
        #: Largest body stored, in bytes.
        self.max_body_size = int(max_body_size)
        #: Whether to add a strong ETag to stored responses that lack one.
        self.etag = etag
        #: Whether query parameters are sorted before keying.
        self.normalize_query = normalize_query
        #: Status codes that may be stored.
        self.statuses = frozenset(statuses)
        #: Whether one request computes a missing page while the others wait.
        self.lock = lock
        self._lock_timeout = lock_timeout
        self._cache = cache
        self._lifetime: tuple[Cache, float | None] | None = None
        self._environ_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Memos for the hit path, bounded by being emptied when full: the hashing they
        # save is most of a hit's cost.
        self._url_hashes: dict[tuple[str, ...], str] = {}
        self._page_keys: dict[tuple[Any, ...], str] = {}

    @property
    def cache(self) -> Cache:
        """The cache pages are stored in (``caches["default"]`` unless one was given)."""
        if self._cache is None:
            from cachekit.config import caches

            self._cache = caches["default"]
        return self._cache

    def _default_lifetime(self, cache: Cache) -> float | None:
        known = self._lifetime
        if known is not None and known[0] is cache:
            return known[1]
        lifetime = cache._ttl(self.timeout)
        self._lifetime = (cache, lifetime)
        return lifetime

    def _request_hash(self, environ: WSGIEnvironment) -> str:
        memo_key = (
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""),
            environ.get("SERVER_PORT", ""),
            environ.get("SCRIPT_NAME", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
        )
        url_hash = self._url_hashes.get(memo_key)
        if url_hash is None:
            if len(self._url_hashes) >= _MEMO_SIZE:
                self._url_hashes.clear()
            url = request_url(environ, normalize_query=self.normalize_query)
            url_hash = self._url_hashes[memo_key] = _digest(self.key_prefix, url)
        return url_hash

    # -- keys ----------------------------------------------------------------

    def url_hash(self, url: str) -> str:
        """Return the hash that names the page at canonical ``url`` in this engine."""
        return _digest(self.key_prefix, url)

    def _page_key(self, url_hash: str, learned: tuple[Any, ...], environ: WSGIEnvironment) -> str:
        names = learned[0]
        keys = self._environ_keys.get(names)
        if keys is None:
            keys = self._environ_keys[names] = tuple(environ_key(name) for name in names)
        return self._variant_key(url_hash, learned, tuple([environ.get(key, "") for key in keys]))

    def _variant_key(self, url_hash: str, learned: tuple[Any, ...], values: tuple[str, ...]) -> str:
        """The page key of one variant: URL, learned ``Vary`` names and nonce, the request's values."""
        names, nonce = learned
        memo_key = (url_hash, learned, values)
        page_key = self._page_keys.get(memo_key)
        if page_key is None:
            if len(self._page_keys) >= _MEMO_SIZE:
                self._page_keys.clear()
            page_key = _PAGE_KEY + _digest(url_hash, nonce, *names, *values)
            self._page_keys[memo_key] = page_key
        return page_key

    def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        url_hash = self.url_hash(canonical_url(url, normalize_query=self.normalize_query))
        return self.cache.delete(_HEADERS_KEY + url_hash)

    # -- the request -----------------------------------------------------------

    def __call__(
        self, app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer one request from the cache, or through ``app`` while storing its response."""
        method = environ.get("REQUEST_METHOD", "GET")
        if method != "GET" and method != "HEAD":
            return app(environ, start_response)
        cache = self._cache or self.cache
        lifetime = self._default_lifetime(cache)
        if lifetime == 0:
            return app(environ, start_response)
        url_hash = self._request_hash(environ)
        request_cc = environ.get("HTTP_CACHE_CONTROL")
        directives = parse_cache_control(request_cc) if request_cc else _EMPTY
        revalidate = "no-cache" in directives
        has_auth = bool(environ.get("HTTP_AUTHORIZATION"))
        now = cache.clock()
        learned = cache.get(_HEADERS_KEY + url_hash)
        page_key: str | None = None
        entry: Page | None = None
        if type(learned) is tuple:
            page_key = self._page_key(url_hash, learned, environ)
            if not revalidate:
                entry = self._lookup(cache, page_key, has_auth)
        if entry is not None and servable(entry, now, directives):
            return serve_page(entry, environ, start_response, now, method)
        if method == "HEAD":
            return app(environ, start_response)  # a HEAD response has no body to store
        lock_name = _LOCK_NAME + (page_key or url_hash)
        fallback = error_fallback(entry, now)
        if entry is not None and in_revalidate_window(entry, now):
            # Stale but within stale-while-revalidate: never wait; one request refreshes.
            lock = self._new_lock(cache, lock_name)
            if lock is None or not self._acquire(cache, lock, blocking=False):
                cache._stale_serves += 1
                return serve_page(entry, environ, start_response, now, method)
            return self._fetch(
                app,
                environ,
                start_response,
                cache,
                url_hash,
                learned,
                now,
                lifetime,
                directives,
                lock,
                fallback,
            )
        lock = None
        if self._may_lock(revalidate, has_auth) and not cache.has_key(_NOLOCK_KEY + url_hash):
            lock = self._new_lock(cache, lock_name)
            if lock is not None and not self._acquire(cache, lock, blocking=True):
                lock = None  # the computing request is slow or gone: compute too
            elif lock is not None:
                # Whoever held the lock may have stored the page meanwhile.
                learned = cache.get(_HEADERS_KEY + url_hash)
                if type(learned) is tuple:
                    found = self._lookup(cache, self._page_key(url_hash, learned, environ), has_auth)
                    if found is not None and is_fresh(found, now):
                        self._release(cache, lock)
                        return serve_page(found, environ, start_response, cache.clock(), method)
        return self._fetch(
            app, environ, start_response, cache, url_hash, learned, now, lifetime, directives, lock, fallback
        )

    def _may_lock(self, revalidate: bool, has_auth: bool) -> bool:
        """Whether a missing page is computed under the stampede lock.

        Not when the client asked to revalidate (it must not get another's copy)
        nor with ``Authorization`` (the response is unlikely to be shared).
        """
        return self.lock and not revalidate and not has_auth

    def _lookup(self, cache: Cache, page_key: str, has_auth: bool) -> Page | None:
        return usable_page(cache, cache.get(page_key), has_auth=has_auth)

    # -- locking -----------------------------------------------------------------

    def _new_lock(self, cache: Cache, name: str) -> Lock | None:
        try:
            return cache.backend.lock(name, ttl=cache.lock_ttl)
        except BackendUnavailableError as exc:
            cache._failed("lock", exc)
            return None

    def _acquire(self, cache: Cache, lock: Lock, *, blocking: bool) -> bool:
        timeout = cache.lock_timeout if self._lock_timeout is None else self._lock_timeout
        try:
            return lock.acquire(blocking, timeout if blocking else -1)
        except BackendUnavailableError as exc:
            cache._failed("lock", exc)
            return False

    def _release(self, cache: Cache, lock: Lock) -> None:
        try:
            lock.release()
        except BackendUnavailableError as exc:
            cache._failed("unlock", exc)

    # -- computing and storing -------------------------------------------------------

    def _fetch(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        cache: Cache,
        url_hash: str,
        learned: Any,
        now: float,
        lifetime: float | None,
        directives: Mapping[str, str | None],
        lock: Lock | None,
        fallback: Page | None,
    ) -> Iterable[bytes]:
        """Run ``app``, passing its response through, and store it if it may be stored.

        ``learned`` is what the URL's headers key held at lookup: the page is
        stored only if a purge did not remove it meanwhile.
        """
        held = [lock]

        def release() -> None:
            if held[0] is not None:
                self._release(cache, held[0])
                held[0] = None

        try:
            tags = self.tags(environ) if callable(self.tags) else self.tags
            generations = current_generations(cache, tags)
        except Exception:
            release()
            raise
        verdicts: list[Storability] = []
        uses: list[SessionUse] = []
        capture = Capture(start_response, forward=fallback is None)

        def on_start(status: str, headers: list[tuple[str, str]]) -> None:
            verdict = self._verdict(
                status_code(status),
                headers,
                now,
                lifetime,
                bool(environ.get("HTTP_AUTHORIZATION")),
                directives,
                failed=capture.exc_info is not None,
            )
            use = SessionUse.UNUSED
            session = environ.get(SESSION_ENVIRON_KEY)
            if verdict.storable and session is not None:
                use = session_use(session, headers)
                if use is SessionUse.PRIVATE:
                    verdict = _SESSION_PRIVATE
            verdicts.append(verdict)
            uses.append(use)
            if not verdict.storable:
                if held[0] is not None:
                    cache.set(_NOLOCK_KEY + url_hash, True, _NOLOCK_SECONDS)
                release()

        capture.on_start = on_start

        def serve_stale(stale: Page) -> Iterable[bytes]:
            """Answer with the stale copy instead of the app's failure (stale-if-error)."""
            cache._stale_serves += 1
            return serve_page(stale, environ, start_response, cache.clock(), "GET")

        try:
            result = app(environ, capture)
        except Exception:
            release()
            if fallback is not None:
                logger.exception("page %s failed; serving the stale copy", request_url(environ))
                return serve_stale(fallback)
            raise
        body: Iterable[bytes] = result
        held_back: list[bytes] = []
        if fallback is not None:
            # Hold the response until its status is known, so a 5xx can still be replaced.
            iterator = iter(result)
            try:
                while capture.status is None:
                    chunk = next(iterator, None)
                    if chunk is None:
                        break
                    held_back.append(chunk)
            except Exception:
                close_iterable(result)
                release()
                logger.exception("page %s failed; serving the stale copy", request_url(environ))
                return serve_stale(fallback)
            if capture.status is None or status_code(capture.status) >= 500:
                close_iterable(result)
                release()
                logger.error(
                    "page %s answered %s; serving the stale copy", request_url(environ), capture.status
                )
                return serve_stale(fallback)
            capture.send()
            body = prepend(held_back, iterator, result)
        elif verdicts and not verdicts[0].storable:
            return result  # not stored: the app's own iterable, untouched
        written = list(capture.written)

        def on_close(data: bytes | None) -> None:
            try:
                if data is None or not verdicts or not verdicts[0].storable or capture.exc_info is not None:
                    return
                if len(capture.written) != len(written):
                    return  # the app mixed write() into iteration: do not guess the order
                session = environ.get(SESSION_ENVIRON_KEY)
                if session is not None and session_use(session, capture.headers) is not uses[0]:
                    return  # the body used the session after the response started
                assert capture.status is not None
                self._store(
                    cache,
                    url_hash,
                    environ,
                    learned,
                    capture.status,
                    capture.headers,
                    data,
                    now,
                    verdicts[0],
                    generations,
                    per_cookie=uses[0] is SessionUse.PER_COOKIE,
                )
            except Exception:
                logger.exception("page %s could not be stored", request_url(environ))

        return Recorder(
            body,
            limit=self.max_body_size,
            head=written if fallback is not None else (),
            prefix=written,
            on_close=on_close,
            finally_=release,
        )

    def _verdict(
        self,
        status: int,
        headers: list[tuple[str, str]],
        now: float,
        lifetime: float | None,
        has_auth: bool,
        directives: Mapping[str, str | None],
        *,
        failed: bool,
    ) -> Storability:
        """Whether the response with ``status`` and ``headers`` may be stored, and for how long."""
        if failed:
            return Storability(None, "the app reported an error")
        length = header(headers, "content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            return Storability(None, "body larger than max_body_size")
        return storability(
            status,
            headers,
            default_timeout=lifetime,
            now=now,
            has_authorization=has_auth,
            request_no_store="no-store" in directives,
            statuses=self.statuses,
            stale_while_revalidate=self.stale_while_revalidate,
            stale_if_error=self.stale_if_error,
        )

    def _store(
        self,
        cache: Cache,
        url_hash: str,
        environ: WSGIEnvironment,
        previous: Any,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        now: float,
        verdict: Storability,
        generations: Generations,
        *,
        per_cookie: bool,
    ) -> None:
        """Store a response, unless the page was purged since ``previous`` was looked up."""
        headers_key = _HEADERS_KEY + url_hash
        write = page_write(
            lambda learned: self._page_key(url_hash, learned, environ),
            status,
            headers,
            body,
            now=now,
            verdict=verdict,
            generations=generations,
            previous=previous,
            vary_on=self.vary_on,
            etag=self.etag,
            per_cookie=per_cookie,
        )
        if _claim(cache, headers_key, previous, write):
            cache.set(write.page_key, write.page, write.keep)


#: The verdict on a response that read one user's stored session or will set the session cookie.
_SESSION_PRIVATE = Storability(None, "the response used a stored session or changes the session")


def _claim(cache: Cache, headers_key: str, previous: Any, write: PageWrite) -> bool:
    """Point the URL's headers key at ``write.learned``; ``False`` if a purge got there first.

    ``previous`` is what the key held at lookup, before the render read its
    data. A purge since then deleted the key, and this page, which may hold
    data from before the purge, must not bring it back. So: ``add`` when there
    was none (a purge and a newer render in between keep theirs), ``touch``
    (which cannot re-create a key) when the learned ``Vary`` is unchanged, and
    compare-and-set on the nonce when it changed. If the key holds another
    nonce by then, the page goes under the purged one, which no lookup reaches.
    """
    if type(previous) is not tuple:
        return cache.add(headers_key, write.learned, write.keep)
    if write.learned == previous:
        return cache.touch(headers_key, write.keep)
    nonce = previous[1]
    try:
        found = cache.gets(headers_key)
        if found is None or type(found[0]) is not tuple or found[0][1] != nonce:
            return False
        return cache.cas(headers_key, write.learned, found[1], write.keep)
    except NotImplementedError:
        # No compare-and-set in this backend: a purge between these two calls is lost.
        current = cache.get(headers_key)
        if type(current) is not tuple or current[1] != nonce:
            return False
        cache.set(headers_key, write.learned, write.keep)
        return True
    except BackendUnavailableError:
        return False  # counted by the cache; the page is simply not stored


def cache_page(
    timeout: Timeout = DEFAULT_TIMEOUT,
    *,
    cache: Cache | None = None,
    key_prefix: str | None = None,
    vary_on: Iterable[str] = (),
    tags: PageTags = (),
    stale_while_revalidate: float = 0,
    stale_if_error: float = 0,
    max_body_size: int = MAX_BODY_SIZE,
    etag: bool = True,
    normalize_query: bool = False,
) -> Callable[[F], F]:
    """Cache the responses of a WSGI callable (a function, or a method taking ``self`` first).

    ::

        @cache_page(60, tags=["news"])
        def news(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [render_news()]

    The decorated callable has ``page_cache`` (its :class:`PageCache`) and
    ``purge(url)``. See :class:`PageCache` for the parameters and the module
    docstring for what is and is not cached.
    """
    engine = PageCache(
        timeout,
        cache=cache,
        key_prefix=key_prefix or "",
        vary_on=vary_on,
        tags=tags,
        stale_while_revalidate=stale_while_revalidate,
        stale_if_error=stale_if_error,
        max_body_size=max_body_size,
        etag=etag,
        normalize_query=normalize_query,
    )

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any) -> Iterable[bytes]:
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


__all__ = ["MAX_BODY_SIZE", "PageCache", "PageTags", "cache_page", "memoize", "purge"]
