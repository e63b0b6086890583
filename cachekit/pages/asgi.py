"""The ASGI shell of the page cache: :class:`AsyncPageCache`, the WSGI shell's rules awaited.

Every rule is the engine's (:mod:`cachekit.pages.engine`), the same one the
WSGI :class:`~cachekit.pages.wsgi.PageCache` drives; pages are keyed the same
way, so WSGI and ASGI apps on one cache share them. Only the I/O differs: the
cache is an :class:`~cachekit.aio.AsyncCache` and the response an ASGI message
stream. A response that is not stored passes through message by message,
unchanged. A storable one is held until the app has produced it (up to
``max_body_size``), then stored, the lock released, and sent: a slow client
never holds the lock; a longer body is sent on as it comes, uncached.
``lifespan`` and ``websocket`` scopes go straight to the app.

The session is read at ``scope["session"]``: our ``AsgiSessionMiddleware``'s
session, or the plain dict of Starlette's ``SessionMiddleware``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import MutableMapping
from http import HTTPStatus
from typing import Any
from typing import TypeAlias

from cachekit.aio import AsyncCache
from cachekit.background import TaskWorkers
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Timeout
from cachekit.pages.engine import LOOKUP_KEY
from cachekit.pages.engine import PageEngine
from cachekit.pages.engine import Plan
from cachekit.pages.engine import Request
from cachekit.pages.engine import directives
from cachekit.pages.fields import marked
from cachekit.pages.fields import with_status
from cachekit.pages.io import AsyncRecords
from cachekit.pages.options import PageOptions
from cachekit.pages.options import page_options
from cachekit.pages.record import Page
from cachekit.pages.record import page_response
from cachekit.pages.rules import Storability
from cachekit.pages.rules import bypass_reason
from cachekit.pages.urls import scope_url
from cachekit.tags import Generations

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Raw ASGI headers: lower-case names and values as bytes.
RawHeaders: TypeAlias = "list[tuple[bytes, bytes]]"
#: Tags for a page: names, or a function of the request's ASGI scope returning names.
AsgiPageTags: TypeAlias = "Iterable[str] | Callable[[Scope], Iterable[str]]"

#: Where a session middleware puts the request's session; ``middleware.asgi_sessions``
#: uses this same key by default (its ``SCOPE_KEY``), as Starlette does.
SESSION_SCOPE_KEY = "session"

logger = logging.getLogger("cachekit.views")

# Not carried into a background render: a condition or range would make the app
# answer 304 or 206, not the whole page to store.
_NOT_BACKGROUND = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range", b"range"}
)


def request_header(scope: Scope, name: bytes) -> str | None:
    """Return request header ``name`` (lower-case bytes), repeated values joined with ``", "``."""
    found = [value for key, value in scope.get("headers", ()) if key == name]
    if not found:
        return None
    return (found[0] if len(found) == 1 else b", ".join(found)).decode("latin-1")


def request_headers(scope: Scope) -> dict[str, str]:
    """Return every request header as ``{lower-case name: value}``, repeated ones joined with ``", "``.

    A ``_`` in a name reads as ``-``: WSGI bridges (asgiref's ``WsgiToAsgi``) give
    ``x_forwarded_host`` to the app as ``HTTP_X_FORWARDED_HOST``, so the cache must
    bypass or key it as ``X-Forwarded-Host`` (and ``accept_language`` as a ``Vary`` value).
    """
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        name = key.decode("latin-1").lower().replace("_", "-")
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def to_str_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Raw ASGI headers as ``(str, str)`` pairs, the shape :mod:`cachekit.pages.rules` works on."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def to_raw_headers(headers: Iterable[tuple[str, str]]) -> RawHeaders:
    """``(str, str)`` header pairs as raw ASGI headers."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_plain(send: Send, status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> None:
    """Send a whole response with ``status``, ``headers`` and ``body``."""
    await send({"type": "http.response.start", "status": status, "headers": to_raw_headers(headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The engine's header reader for ASGI headers gathered by :func:`request_headers`."""
    return headers.get(name)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


async def _serve(answer: tuple[str, list[tuple[str, str]], bytes], send: Send) -> None:
    status, headers, body = answer
    await send_plain(send, int(status[:3]), body, headers)


def _answer(
    page: Page, headers: Mapping[str, str], now: float, method: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    return page_response(page, now, method, headers.get("if-none-match"), headers.get("if-modified-since"))


def _marking(send: Send, member_of: Callable[[int], str | None]) -> Send:
    """A ``send`` that adds the ``Cache-Status`` member ``member_of(status)`` to the response start."""

    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            member = member_of(message["status"])
            if member is not None:
                headers = with_status(to_str_headers(message.get("headers", ())), member)
                message = {**message, "headers": to_raw_headers(headers)}
        await send(message)

    return marked


class AsyncPageCache:
    """The page cache for ASGI apps; call it as ``await engine(app, scope, receive, send)``.

    :param timeout: lifetime of responses that state none (see :class:`PageOptions`).
    :param cache: the :class:`~cachekit.aio.AsyncCache` to store into.
    :param options: a ready :class:`PageOptions`; or pass its fields as keywords
        (``tags`` may be a function of the scope).
    """

    def __init__(
        self,
        timeout: Timeout = DEFAULT_TIMEOUT,
        *,
        cache: AsyncCache,
        options: PageOptions | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(cache, AsyncCache):
            raise TypeError(f"AsyncPageCache needs a cachekit.aio.AsyncCache, got {cache!r}.")
        if timeout is not DEFAULT_TIMEOUT:
            settings["timeout"] = timeout
        #: The settings.
        self.options = page_options(options, settings)
        #: The rules, shared with the WSGI shell.
        self.engine = PageEngine(self.options)
        #: The cache pages are stored in.
        self.cache = cache
        self._records = AsyncRecords(cache)
        self._forwarded = frozenset(self.options.untrusted_forwarded)
        #: The background re-renders (``background_revalidate``), tasks on the running loop:
        #: ``await background.wait(timeout)`` waits for those in flight (as ``lifespan.shutdown`` does).
        self.background = TaskWorkers(self.options.revalidate_workers)

    async def purge(self, url: str) -> bool:
        """Remove every stored variant of the page at absolute ``url``; return whether it was cached."""
        return bool(await self._records.run(_delete(LOOKUP_KEY + self.engine.purge_hash(url))))

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
        normalize = self.options.normalize_query
        host = headers.get("host")
        return self.engine.url_hash(
            memo_key, lambda: scope_url(scope, host, normalize_query=normalize), _header, headers
        )

    async def __call__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request from the cache, or through ``app`` while storing its response."""
        method = scope.get("method", "GET") if scope["type"] == "http" else ""
        engine, cache = self.engine, self.cache
        if scope["type"] == "lifespan":
            await app(scope, self._draining(receive), send)
            return
        status_on = self.options.cache_status
        if method != "GET" and method != "HEAD":
            if status_on and method:
                send = self._passing(send, "method", f"{method} is not cached")
            if engine.is_unsafe(method):
                await self._unsafe(app, scope, receive, send)
            else:
                await app(scope, receive, send)
            return
        headers = request_headers(scope)
        length = headers.get("content-length")
        why = bypass_reason(
            off=engine.default_lifetime(cache) == 0,
            has_body=bool(length and length != "0") or "transfer-encoding" in headers,
            untrusted_forwarded=not headers.keys().isdisjoint(self._forwarded),
        )
        if why is not None:
            if status_on:
                send = self._passing(send, "bypass", why)
            await app(scope, receive, send)
            return
        get = headers.get
        url_hash = self._request_hash(scope, headers)
        asked = directives(get("cache-control"))
        has_auth, now = bool(get("authorization")), cache.clock()
        records = self._records
        split = scope.get("root_path", "") or ""
        lookup, page_key, stored = await records.variant(
            engine, url_hash, _header, headers, split, "no-cache" in asked
        )
        page = engine.fresh(stored, now, has_auth, asked)
        if page is not None:
            answer = _answer(page, headers, now, method)
            if status_on:
                answer = marked(answer, engine.hit_status(page, now))
            await _serve(answer, send)
            return
        request = Request(method, url_hash, _header, headers, now, asked, has_auth, lookup, page_key, split)
        plan: Plan = await records.run(engine.lookup(request, stored))
        if plan.action == "run" and plan.page is not None and self.options.background_revalidate:
            plan = await self._revalidate_later(app, request, plan, scope)
        if plan.action == "serve":
            if plan.stale:
                cache.recorder.stale_serves += 1
            await _serve(
                engine.serve_plan(plan, request, lambda page, at: _answer(page, headers, at, method)), send
            )
        elif plan.action == "pass":
            if status_on:
                send = self._passing(send, request.fwd, "HEAD responses are not stored")
            await app(scope, receive, send)
        else:
            await _Render(self, request, plan, scope, send, headers).run(app, receive)

    async def _revalidate_later(self, app: ASGIApp, request: Request, plan: Plan, scope: Scope) -> Plan:
        """Hand the re-render of a stale page to a background task; the request is served stale.

        The task takes over the request's render lock. With ``revalidate_workers``
        tasks in flight, the lock is let go at once: the page stays stale and a
        later request retries.
        """
        job = _Revalidation(self, request, app, background_scope(scope))
        if not self.background.submit(job.run):
            await job.release()
        return Plan("serve", plan.page, stale=True)

    def _draining(self, receive: Receive) -> Receive:
        """The lifespan ``receive``: at ``lifespan.shutdown``, wait for background re-renders first.

        At most the cache's ``lock_ttl``: by then another process may render anyway.
        """

        async def draining() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and not await self.background.wait(
                self.cache.lock_ttl
            ):
                logger.warning("background page re-renders still running at lifespan shutdown")
            return message

        return draining

    def _passing(self, send: Send, fwd: str, detail: str) -> Send:
        engine = self.engine
        return _marking(send, lambda code: engine.pass_status(fwd, code, detail))

    async def _unsafe(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        url_hash = self._request_hash(scope, headers)
        url = scope_url(scope, headers.get("host"), normalize_query=self.options.normalize_query)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = message.get("headers", ())
                steps = self.engine.invalidate(url, url_hash, message["status"], to_str_headers(answer))
                await self._records.run(steps)
            await send(message)

        await app(scope, receive, watch)


def _delete(key: str) -> Any:
    return (yield ("delete", key))


def background_scope(scope: Scope) -> Scope:
    """A copy of ``scope`` for rendering the page after its request was answered.

    Conditions and ranges are dropped from its headers (the render must produce
    the whole page); everything else, such as the session a middleware put
    there, stays: the engine still reads it to decide whether the page is stored.
    """
    copy = dict(scope)
    copy["headers"] = [
        (name, value) for name, value in scope.get("headers", ()) if name not in _NOT_BACKGROUND
    ]
    return copy


async def _discard(message: Message) -> None:
    """The ``send`` of a background render: nobody is listening."""


class _Revalidation:
    """One background re-render of a stale page, under the lock its request took."""

    def __init__(self, shell: AsyncPageCache, served: Request, app: ASGIApp, scope: Scope) -> None:
        self.shell = shell
        self.app = app
        self.scope = scope
        #: The task's own Request (the served one is done with), on the copied scope's headers.
        self.request = served.handed_over(request_headers(scope), _header)
        self._body_sent = False

    async def release(self) -> None:
        await self.shell._records.run(self.shell.engine.release(self.request))

    async def receive(self) -> Message:
        """An empty request body, then (after ``lock_ttl``, for an app that waits on it) a disconnect.

        Not a disconnect at once: a streaming response that listens for one would stop.
        """
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(self.shell.cache.lock_ttl)
        return {"type": "http.disconnect"}

    async def run(self) -> None:
        request, headers = self.request, self.request.source
        url = scope_url(self.scope, headers.get("host"))
        try:
            request.now = self.shell.cache.clock()
            if await self.shell._records.run(self.shell.engine.rendered_meanwhile(request)):
                return
            render = _Render(self.shell, request, Plan("run"), self.scope, _discard, headers)
            await render.run(self.app, self.receive)
            if not 200 <= render.status < 500:
                logger.error(
                    "background re-render of %s answered %s; the stale copy stays", url, render.status
                )
        except Exception:
            logger.exception("background re-render of %s failed; the stale copy stays", url)
        finally:
            await self.release()


class _Render:
    """One render of the app on a miss: the ``send`` handed to the app, deciding, holding, storing."""

    def __init__(
        self,
        shell: AsyncPageCache,
        request: Request,
        plan: Plan,
        scope: Scope,
        send: Send,
        headers: Mapping[str, str],
    ) -> None:
        self.shell = shell
        self.engine = shell.engine
        self.records = shell._records
        self.request = request
        self.plan = plan
        self.scope = scope
        self.server_send = send
        self.headers = headers
        self.generations: Generations = ()
        #: ``"start"`` (nothing seen), ``"hold"`` (buffering a storable response),
        #: ``"pass"`` (forwarding), ``"drop"`` (a 5xx being replaced by the stale page).
        self.mode = "start"
        self.status = 0
        self.response_headers: list[tuple[str, str]] = []
        self.verdict: Storability | None = None
        self.held: list[Message] = []
        self.size = 0
        self.forwarded = False

    async def release(self) -> None:
        await self.records.run(self.engine.release(self.request))

    async def run(self, app: ASGIApp, receive: Receive) -> None:
        try:
            self.generations = await self.records.run(self.engine.generations(self.request, self.scope))
            try:
                await app(self.scope, receive, self.send)
            except Exception:
                if self.forwarded:
                    raise
                await self.release()
                await self.failed("raised", reraise=True)
                return
            if self.mode == "drop":
                await self.failed(f"answered {self.status}", reraise=False)
            elif self.mode == "hold":  # the app returned without ending its body
                await self.flush(None)
        finally:
            await self.release()

    async def send(self, message: Message) -> None:
        mode = self.mode
        if mode == "pass":
            self.forwarded = True
            await self.server_send(message)
        elif mode == "hold":
            await self.hold(message)
        elif mode == "start" and message["type"] == "http.response.start":
            await self.start(message)

    async def start(self, message: Message) -> None:
        engine, request = self.engine, self.request
        self.status = message["status"]
        self.response_headers = to_str_headers(message.get("headers", ()))
        if self.plan.fallback is not None and self.status >= 500:
            self.mode = "drop"
            await self.release()
            return
        request.session = self.scope.get(SESSION_SCOPE_KEY)
        self.verdict = await self.records.run(
            engine.on_start(request, self.status, self.response_headers, False)
        )
        if self.verdict.storable:
            self.mode = "hold"
            self.held.append(message)
        else:
            self.mode = "pass"
            self.forwarded = True
            await self.server_send(self.outgoing(message, stored=False))

    async def hold(self, message: Message) -> None:
        self.held.append(message)
        if message["type"] != "http.response.body":
            await self.flush(None)  # trailers, pathsend...: not a response this cache can replay
            return
        self.size += len(message.get("body", b""))
        if self.size > self.engine.options.max_body_size:
            await self.flush(None)
        elif not message.get("more_body", False):
            await self.flush(b"".join(held.get("body", b"") for held in self.held[1:]))

    async def flush(self, body: bytes | None) -> None:
        """The app produced the response (or it cannot be stored): store it, release, send what was held."""
        assert self.verdict is not None
        self.mode = "pass"
        steps = self.engine.finish(
            self.request,
            _status_line(self.status),
            self.response_headers,
            body,
            self.verdict,
            self.generations,
        )
        stored = False
        try:
            stored = await self.records.run(steps)
        except Exception:
            self.request.detail = "the cache failed to store it"
            logger.exception("page %s could not be stored", self.url())
        held, self.held = self.held, []
        self.forwarded = True
        held[0] = self.outgoing(held[0], stored=stored)
        for message in held:
            await self.server_send(message)

    def outgoing(self, start: Message, *, stored: bool) -> Message:
        """The client's response start: surrogate keys dropped, CDN-Cache-Control and Cache-Status added."""
        assert self.verdict is not None
        engine = self.engine
        headers = engine.page_headers(self.response_headers, self.verdict)
        member = engine.render_status(self.request, self.status, self.verdict, stored)
        if member is not None:
            headers = with_status(headers, member)
        if headers is self.response_headers:
            return start  # nothing to change: the app's message as it was
        return {**start, "headers": to_raw_headers(headers)}

    def url(self) -> str:
        return scope_url(self.scope, self.headers.get("host"))

    async def failed(self, what: str, *, reraise: bool) -> None:
        """The app failed: the stale copy (stale-if-error), a 504 (must-revalidate), or the failure."""
        plan = self.plan
        if plan.fallback is not None:
            if reraise:
                logger.exception("page %s %s; serving the stale copy", self.url(), what)
            else:
                logger.error("page %s %s; serving the stale copy", self.url(), what)
            cache = self.shell.cache
            cache.recorder.stale_serves += 1
            now = cache.clock()
            member = self.engine.error_status(self.request, self.status, plan.fallback, now)
            await _serve(marked(_answer(plan.fallback, self.headers, now, "GET"), member), self.server_send)
            return
        gateway = self.engine.error_answer(plan)
        if gateway is not None:
            logger.exception("page %s %s; it must be revalidated: 504", self.url(), what)
            member = self.engine.error_status(self.request, self.status, None, self.request.now)
            await _serve(marked(gateway, member), self.server_send)
            return
        if reraise:
            raise  # the app's exception, which the caller is handling
