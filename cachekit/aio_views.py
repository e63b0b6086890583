"""The page cache for ASGI apps: :class:`AsyncPageCache`, :class:`~cachekit.views.PageCache`'s rules awaited.

Every rule is :class:`~cachekit.views.PageCache`'s, called on an engine held
inside (:attr:`AsyncPageCache.rules`) and in :mod:`cachekit._page`: which
requests and responses are cacheable (RFC 9111 for a shared cache), how pages
are keyed (the learned ``Vary`` and per-URL nonce; the same keys as the WSGI
engine, so WSGI and ASGI apps on one cache share pages), freshness, ``304``
answers, ``Age``, stale-while-revalidate, stale-if-error, tags, the
stampede lock, purges racing a render and the session rules (the session is
read at ``scope["session"]``). Only the I/O differs: the cache is an
:class:`~cachekit.aio.AsyncCache`, locks are awaited, and the response is an
ASGI message stream.

Responses pass through as the app sends them, chunk by chunk: a response that
is not stored is not changed at all, and one that is stored is recorded while
it streams (up to ``max_body_size``; a longer body is served, not stored). A
page is stored once its last body chunk reached the server. ``lifespan`` and
``websocket`` scopes go straight to the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias

from cachekit._asgi import ASGIApp
from cachekit._asgi import Message
from cachekit._asgi import Receive
from cachekit._asgi import Scope
from cachekit._asgi import Send
from cachekit._asgi import request_headers
from cachekit._asgi import scope_url
from cachekit._asgi import to_raw_headers
from cachekit._asgi import to_str_headers
from cachekit._page import TAGS
from cachekit._page import Page
from cachekit._page import PageWrite
from cachekit._page import SessionUse
from cachekit._page import error_fallback
from cachekit._page import in_revalidate_window
from cachekit._page import is_fresh
from cachekit._page import page_for
from cachekit._page import page_response
from cachekit._page import page_write
from cachekit._page import servable
from cachekit._page import session_use
from cachekit._wsgi import canonical_url
from cachekit.aio import AsyncCache
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Timeout
from cachekit.exceptions import BackendUnavailableError
from cachekit.http import CACHEABLE_STATUSES
from cachekit.http import Storability
from cachekit.http import parse_cache_control
from cachekit.tags import Generations
from cachekit.views import _EMPTY
from cachekit.views import _HEADERS_KEY
from cachekit.views import _LOCK_NAME
from cachekit.views import _MEMO_SIZE
from cachekit.views import _NOLOCK_KEY
from cachekit.views import _NOLOCK_SECONDS
from cachekit.views import _SESSION_PRIVATE
from cachekit.views import MAX_BODY_SIZE
from cachekit.views import PageCache

if TYPE_CHECKING:
    from cachekit.backends.aio_base import AsyncLock

logger = logging.getLogger("cachekit.views")

#: Tags for a page: names, or a function of the request's ASGI scope returning names.
AsgiPageTags: TypeAlias = "Iterable[str] | Callable[[Scope], Iterable[str]]"

#: Where a session middleware puts the request's session; ``middleware.asgi_sessions``
#: uses this same key by default (its ``SCOPE_KEY``), as Starlette does.
SESSION_SCOPE_KEY = "session"


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class AsyncPageCache:
    """The page-cache engine for ASGI apps; call it as ``await engine(app, scope, receive, send)``.

    :param timeout: lifetime of responses that state none; ``DEFAULT_TIMEOUT``
        uses the cache's default, ``None`` keeps them until evicted, ``0``
        disables caching.
    :param cache: the :class:`~cachekit.aio.AsyncCache` to store into.
    :param tags: names, or ``f(scope) -> names``, for ``cache.invalidate_tags``.

    The other parameters are :class:`~cachekit.views.PageCache`'s, with the same meaning.
    """

    def __init__(
        self,
        timeout: Timeout = DEFAULT_TIMEOUT,
        *,
        cache: AsyncCache,
        key_prefix: str = "",
        vary_on: Iterable[str] = (),
        tags: AsgiPageTags = (),
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        max_body_size: int = MAX_BODY_SIZE,
        etag: bool = True,
        normalize_query: bool = False,
        statuses: Iterable[int] = CACHEABLE_STATUSES,
        lock: bool = True,
        lock_timeout: float | None = None,
    ) -> None:
        if not isinstance(cache, AsyncCache):
            raise TypeError(f"AsyncPageCache needs a cachekit.aio.AsyncCache, got {cache!r}.")
        if isinstance(tags, str):
            raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
        #: The rules (and settings) shared with the WSGI engine; never given a request.
        self.rules = PageCache(
            timeout,
            key_prefix=key_prefix,
            vary_on=vary_on,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            max_body_size=max_body_size,
            etag=etag,
            normalize_query=normalize_query,
            statuses=statuses,
            lock=lock,
            lock_timeout=lock_timeout,
        )
        #: The cache pages are stored in.
        self.cache = cache
        #: Tag names, or a function of the scope returning them.
        self.tags = tags if callable(tags) else tuple(tags)
        self._url_hashes: dict[tuple[Any, ...], str] = {}

    # -- keys ----------------------------------------------------------------------

    def _request_hash(self, scope: Scope, headers: Mapping[str, str]) -> str:
        memo_key = (
            scope.get("scheme"),
            headers.get("host"),
            scope.get("server"),
            scope.get("root_path"),
            scope.get("raw_path"),
            scope.get("path"),
            scope.get("query_string"),
        )
        url_hash = self._url_hashes.get(memo_key)
        if url_hash is None:
            if len(self._url_hashes) >= _MEMO_SIZE:
                self._url_hashes.clear()
            url = scope_url(scope, normalize_query=self.rules.normalize_query)
            url_hash = self._url_hashes[memo_key] = self.rules.url_hash(url)
        return url_hash

    def _page_key(self, url_hash: str, learned: tuple[Any, ...], headers: Mapping[str, str]) -> str:
        values = tuple([headers.get(name, "") for name in learned[0]])
        return self.rules._variant_key(url_hash, learned, values)

    async def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        rules = self.rules
        url_hash = rules.url_hash(canonical_url(url, normalize_query=rules.normalize_query))
        return await self.cache.delete(_HEADERS_KEY + url_hash)

    # -- the request -------------------------------------------------------------------

    async def __call__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request from the cache, or through ``app`` while storing its response."""
        method = scope.get("method", "GET") if scope["type"] == "http" else ""
        if method != "GET" and method != "HEAD":
            await app(scope, receive, send)
            return
        cache, rules = self.cache, self.rules
        lifetime = rules._default_lifetime(cache)  # type: ignore[arg-type]  # _CacheCore's rules
        if lifetime == 0:
            await app(scope, receive, send)
            return
        headers = request_headers(scope)
        url_hash = self._request_hash(scope, headers)
        request_cc = headers.get("cache-control")
        directives = parse_cache_control(request_cc) if request_cc else _EMPTY
        revalidate = "no-cache" in directives
        has_auth = bool(headers.get("authorization"))
        now = cache.clock()
        learned = await cache.get(_HEADERS_KEY + url_hash)
        page_key: str | None = None
        entry: Page | None = None
        if type(learned) is tuple:
            page_key = self._page_key(url_hash, learned, headers)
            if not revalidate:
                entry = await self._lookup(page_key, has_auth)
        if entry is not None and servable(entry, now, directives):
            await _serve(entry, headers, send, now, method)
            return
        if method == "HEAD":
            await app(scope, receive, send)  # a HEAD response has no body to store
            return
        lock_name = _LOCK_NAME + (page_key or url_hash)
        fallback = error_fallback(entry, now)
        request = _Request(
            scope, receive, send, url_hash, learned, now, lifetime, directives, has_auth, headers
        )
        if entry is not None and in_revalidate_window(entry, now):
            # Stale but within stale-while-revalidate: never wait; one request refreshes.
            lock = self._new_lock(lock_name)
            if lock is None or not await self._acquire(lock, blocking=False):
                self.cache._stale_serves += 1
                await _serve(entry, headers, send, now, method)
                return
            await self._fetch(app, request, lock, fallback)
            return
        lock = None
        if rules._may_lock(revalidate, has_auth) and not await cache.has_key(_NOLOCK_KEY + url_hash):
            lock = self._new_lock(lock_name)
            if lock is not None and not await self._acquire(lock, blocking=True):
                lock = None  # the computing request is slow or gone: compute too
            elif lock is not None:
                # Whoever held the lock may have stored the page meanwhile.
                learned = request.learned = await cache.get(_HEADERS_KEY + url_hash)
                if type(learned) is tuple:
                    found = await self._lookup(self._page_key(url_hash, learned, headers), has_auth)
                    if found is not None and is_fresh(found, now):
                        await self._release(lock)
                        await _serve(found, headers, send, cache.clock(), method)
                        return
        await self._fetch(app, request, lock, fallback)

    async def _lookup(self, page_key: str, has_auth: bool) -> Page | None:
        page = page_for(await self.cache.get(page_key), has_auth=has_auth)
        if page is not None and page[TAGS] and not await self.cache._generations_valid(page[TAGS]):
            return None  # invalidated by tag: not even a stale copy may be served
        return page

    # -- locking -----------------------------------------------------------------------

    def _new_lock(self, name: str) -> AsyncLock | None:
        cache = self.cache
        try:
            return cache.backend.lock(name, ttl=cache.lock_ttl)
        except BackendUnavailableError as exc:
            cache._failed("lock", exc)
            return None

    async def _acquire(self, lock: AsyncLock, *, blocking: bool) -> bool:
        cache = self.cache
        configured = self.rules._lock_timeout
        timeout = cache.lock_timeout if configured is None else configured
        try:
            return await lock.acquire(blocking, timeout if blocking else -1)
        except BackendUnavailableError as exc:
            cache._failed("lock", exc)
            return False

    async def _release(self, lock: AsyncLock) -> None:
        try:
            await lock.release()
        except BackendUnavailableError as exc:
            self.cache._failed("unlock", exc)

    # -- computing and storing -------------------------------------------------------

    async def _fetch(
        self, app: ASGIApp, request: _Request, lock: AsyncLock | None, fallback: Page | None
    ) -> None:
        """Run ``app``, streaming its response through, and store it if it may be stored."""
        recording = _Recording(self, request, lock, fallback)
        try:
            tags = self.tags(request.scope) if callable(self.tags) else self.tags
            recording.generations = await self.cache._current_generations(tags)
            try:
                await app(request.scope, request.receive, recording.send)
            except Exception:
                if fallback is None or recording.forwarded:
                    raise
                logger.exception("page %s failed; serving the stale copy", scope_url(request.scope))
                self.cache._stale_serves += 1
                await _serve(fallback, request.headers, request.send, self.cache.clock(), "GET")
                return
            if recording.replaced:
                self.cache._stale_serves += 1
                await _serve(fallback, request.headers, request.send, self.cache.clock(), "GET")  # type: ignore[arg-type]
                return
            if recording.complete and recording.chunks is not None and recording.verdict is not None:
                session = request.scope.get(SESSION_SCOPE_KEY)
                if session is not None and session_use(session, recording.headers) is not recording.use:
                    return  # the body used the session after the response started
                try:
                    await self._store(request, recording, b"".join(recording.chunks))
                except Exception:
                    logger.exception("page %s could not be stored", scope_url(request.scope))
        finally:
            await recording.release()

    async def _store(self, request: _Request, recording: _Recording, body: bytes) -> None:
        """Store a response, unless the page was purged since the request looked it up."""
        rules, url_hash = self.rules, request.url_hash
        assert recording.status is not None
        assert recording.verdict is not None
        write = page_write(
            lambda learned: self._page_key(url_hash, learned, request.headers),
            _status_line(recording.status),
            recording.headers,
            body,
            now=request.now,
            verdict=recording.verdict,
            generations=recording.generations,
            previous=request.learned,
            vary_on=rules.vary_on,
            etag=rules.etag,
            per_cookie=recording.use is SessionUse.PER_COOKIE,
        )
        if await self._claim(_HEADERS_KEY + url_hash, request.learned, write):
            await self.cache.set(write.page_key, write.page, write.keep)

    async def _claim(self, headers_key: str, previous: Any, write: PageWrite) -> bool:
        """Point the URL's headers key at ``write.learned``; ``False`` if a purge got there first.

        See :func:`cachekit.views._claim`, which this awaits.
        """
        cache = self.cache
        if type(previous) is not tuple:
            return await cache.add(headers_key, write.learned, write.keep)
        if write.learned == previous:
            return await cache.touch(headers_key, write.keep)
        nonce = previous[1]
        try:
            found = await cache.gets(headers_key)
            if found is None or type(found[0]) is not tuple or found[0][1] != nonce:
                return False
            return await cache.cas(headers_key, write.learned, found[1], write.keep)
        except NotImplementedError:
            # No compare-and-set in this backend: a purge between these two calls is lost.
            current = await cache.get(headers_key)
            if type(current) is not tuple or current[1] != nonce:
                return False
            await cache.set(headers_key, write.learned, write.keep)
            return True
        except BackendUnavailableError:
            return False  # counted by the cache; the page is simply not stored


class _Request:
    """One request's facts, computed once, that the fetch and the store need."""

    __slots__ = (
        "directives",
        "has_auth",
        "headers",
        "learned",
        "lifetime",
        "now",
        "receive",
        "scope",
        "send",
        "url_hash",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url_hash: str,
        learned: Any,
        now: float,
        lifetime: float | None,
        directives: Mapping[str, str | None],
        has_auth: bool,
        headers: Mapping[str, str],
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.url_hash = url_hash
        #: What the URL's headers key held at lookup (a page is stored only if no purge came since).
        self.learned = learned
        self.now = now
        self.lifetime = lifetime
        self.directives = directives
        self.has_auth = has_auth
        self.headers = headers


class _Recording:
    """The ``send`` handed to the app: forwards every message at once, recording the response."""

    def __init__(
        self, engine: AsyncPageCache, request: _Request, lock: AsyncLock | None, fallback: Page | None
    ):
        self.engine = engine
        self.request = request
        self.lock = lock
        self.fallback = fallback
        self.generations: Generations = ()
        #: The response status, once the app started its response.
        self.status: int | None = None
        #: Its headers, as ``str`` pairs.
        self.headers: list[tuple[str, str]] = []
        #: The storability verdict; ``None`` until started or when not storable.
        self.verdict: Storability | None = None
        #: How the response used the request's session, once started.
        self.use = SessionUse.UNUSED
        #: The body so far, or ``None`` once it cannot be stored.
        self.chunks: list[bytes] | None = []
        self.size = 0
        #: The last body chunk reached the server.
        self.complete = False
        #: Something reached the server.
        self.forwarded = False
        #: A 5xx replaced by the stale page (stale-if-error).
        self.replaced = False

    async def release(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            await self.engine._release(lock)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.replaced:
            return  # the app's 5xx is being replaced by the stale page: drop its body
        if kind == "http.response.start":
            await self._start(message)
            if self.replaced:
                return
        elif kind == "http.response.body":
            chunks = self.chunks
            if chunks is not None:
                body = message.get("body", b"")
                self.size += len(body)
                if self.size > self.engine.rules.max_body_size:
                    self.chunks = None  # too large to store: stop keeping it, keep streaming
                else:
                    chunks.append(body)
        else:
            self.chunks = None  # trailers, pathsend...: not a response this cache can replay
        self.forwarded = True
        await self.request.send(message)
        if kind == "http.response.body" and not message.get("more_body", False):
            self.complete = True

    async def _start(self, message: Message) -> None:
        engine, request = self.engine, self.request
        status: int = message["status"]
        self.status = status
        self.headers = to_str_headers(message.get("headers", ()))
        verdict = engine.rules._verdict(
            status,
            self.headers,
            request.now,
            request.lifetime,
            request.has_auth,
            request.directives,
            failed=False,
        )
        session = request.scope.get(SESSION_SCOPE_KEY)
        if verdict.storable and session is not None:
            self.use = session_use(session, self.headers)
            if self.use is SessionUse.PRIVATE:
                verdict = _SESSION_PRIVATE
        if verdict.storable:
            self.verdict = verdict
        else:
            self.chunks = None
            if self.lock is not None:
                await engine.cache.set(_NOLOCK_KEY + request.url_hash, True, _NOLOCK_SECONDS)
            await self.release()
        if self.fallback is not None and status >= 500:
            logger.error("page %s answered %s; serving the stale copy", scope_url(request.scope), status)
            self.replaced = True


async def _serve(page: Page, headers: Mapping[str, str], send: Send, now: float, method: str) -> None:
    status, served, body = page_response(
        page, now, method, headers.get("if-none-match"), headers.get("if-modified-since")
    )
    await send({"type": "http.response.start", "status": int(status[:3]), "headers": to_raw_headers(served)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = ["AsgiPageTags", "AsyncPageCache"]
