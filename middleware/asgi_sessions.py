"""AsgiSessionMiddleware: sessions for any ASGI app (Starlette, FastAPI, Django ASGI, Quart, bare).

Wrap the app once::

    store = AsyncCacheStore(cachekit.aio.from_url("redis://127.0.0.1:6379/0"))
    app = AsgiSessionMiddleware(app, store)

and read the session from ``scope["session"]``, a :class:`sessions.Session`:
Starlette's and FastAPI's ``request.session`` is that object. The rules are
those of the WSGI :class:`~middleware.sessions.SessionMiddleware` (shared
through :mod:`middleware._session_rules`): ``Vary: Cookie`` when the session
was read, a save only when needed (never on a 5xx), ``Set-Cookie`` with the
same attributes, the cookie deleted after a logout, the same answers to a
store outage (the table in :mod:`middleware._session_rules`: ``503`` with
``Retry-After`` once the app needs the session, the app's own response when it
never touches it), and a save dropped (logged at INFO, the cookie left alone)
when the session was deleted concurrently.

Stores: an async store (:class:`~sessions.stores.aio_cache.AsyncCacheStore`
on an :class:`~cachekit.aio.AsyncCache`) is awaited and never blocks the event
loop; a sync store is called directly, which suits ``SignedCookieStore`` (CPU
work only) but would block the loop on a network cache: use the async store
there.

What it will not do:

* load lazily from an async store: a request that carries a session cookie has
  its session loaded (one awaited ``gets``) before the app runs, used or not
  (if that load meets an outage, the error waits until the app touches it);
  ``flush()`` deletes the stored session when the response starts;
* see changes made after the response started (while the body streams): the
  session is saved before ``http.response.start`` is passed on, as in WSGI;
* touch ``lifespan`` or ``websocket`` scopes: they pass through untouched, with
  no session. Response bodies pass through as they are sent, chunk by chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cachekit import check
from cachekit.eviction import aeviction_risk
from cachekit.eviction import eviction_risk
from cachekit.exceptions import BackendUnavailableError
from cachekit.pages.asgi import ASGIApp
from cachekit.pages.asgi import Message
from cachekit.pages.asgi import Receive
from cachekit.pages.asgi import Scope
from cachekit.pages.asgi import Send
from cachekit.pages.asgi import send_plain
from middleware._session_rules import UNAVAILABLE_BODY
from middleware._session_rules import UNAVAILABLE_HEADERS
from middleware._session_rules import UNAVAILABLE_STATUS
from middleware._session_rules import CookieOptions
from middleware._session_rules import SessionCookie
from middleware._session_rules import SessionCookieOptions
from middleware._session_rules import eviction_warning
from middleware._session_rules import private_cache_control
from middleware._session_rules import session_backend
from middleware._session_rules import unreachable_session
from middleware._wsgi import add_vary
from sessions.aio import AsyncStore
from sessions.aio import apply_deletes
from sessions.aio import is_async_store
from sessions.aio import open_session
from sessions.aio import save_session
from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.stores.base import Store

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("middleware.sessions")

#: The scope key holding the request's :class:`~sessions.Session` (Starlette's ``request.session``).
SCOPE_KEY = "session"


class AsgiSessionMiddleware(CookieOptions):
    """Give an ASGI app a session at ``scope["session"]``; see the module docstring.

    :param app: the ASGI app to wrap.
    :param store: an async store (``AsyncCacheStore``) or a sync one (``SignedCookieStore``).
    :param scope_key: where the session is put in the scope.
    :param cookie: the session cookie's options, as for the WSGI
        :class:`~middleware.sessions.SessionMiddleware` (``cookie_name``, ``cookie_path``,
        ``cookie_domain``, ``cookie_secure``, ``cookie_httponly``, ``cookie_samesite``,
        ``cookie_partitioned``, ``save_every_request``); each is also an attribute.
    :raises ConfigurationError: for an invalid cookie option, naming it.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: AsyncStore | Store,
        *,
        scope_key: str = SCOPE_KEY,
        **cookie: Unpack[SessionCookieOptions],
    ) -> None:
        #: The wrapped app.
        self.app = app
        #: Where sessions live.
        self.store = store
        self.cookie = SessionCookie(**cookie)
        #: The scope key holding the session.
        self.scope_key = scope_key
        # The store once more, typed by kind: exactly one of the two is set.
        self._aio: AsyncStore | None = store if is_async_store(store) else None
        self._sync: Store | None = None if is_async_store(store) else store
        self._async = self._aio is not None
        # Whether the store's servers were asked if they evict (on the first request: that needs a loop).
        self._checked = False
        # Once per process: sessions on local memory under a multi-process server.
        check.warn_once(check.session_findings(store))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._checked:
            self._checked = True
            await self._check_eviction()
        cookie_value = self.cookie.value_from(_cookie_header(scope))
        if self._aio is not None:
            try:
                session = await open_session(self._aio, cookie_value)
            except BackendUnavailableError as exc:
                # Not a 503 yet: an app that never touches the session answers as under WSGI.
                logger.info("session store unavailable while loading: %s", exc)
                session = unreachable_session(self._aio, cookie_value, exc)
        else:
            assert self._sync is not None
            session = Session(self._sync, cookie_value)
        scope[self.scope_key] = session
        started = failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal started, failed
            if failed:
                return  # the app's response was replaced by a 503
            if message["type"] == "http.response.start":
                started = True
                if session.accessed:
                    try:
                        message = await self._finish(session, message)
                    except BackendUnavailableError as exc:
                        logger.error("session store unavailable while saving: %s", exc)
                        failed = True
                        await _unavailable(send)
                        return
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        except BackendUnavailableError as exc:
            if started:
                raise
            logger.error("session store unavailable while loading: %s", exc)
            await _unavailable(send)

    async def _check_eviction(self) -> None:
        """Warn once if the store's servers may evict sessions (see :mod:`cachekit.eviction`)."""
        backend = session_backend(self.store)
        if backend is not None:
            eviction_warning(await aeviction_risk(backend) if self._async else eviction_risk(backend))

    async def _finish(self, session: Session, message: Message) -> Message:
        """Return the start message with ``Vary`` and ``Set-Cookie`` added, saving the session as needed."""
        status: int = message["status"]
        private = _private_header(session, message.get("headers", ()))
        cookie = self.cookie
        if self._async:
            await apply_deletes(session)
        if cookie.should_save(session, status):
            set_cookie: str | None
            try:
                value = await save_session(session) if self._async else session.save()
                set_cookie = cookie.saved(session, value)
            except SessionConflictError as exc:
                set_cookie = cookie.conflict(session, exc)
        else:
            set_cookie = cookie.unsaved(session, status)
        headers = list(message.get("headers", ()))
        _add_vary_cookie(headers)
        if private is not None:
            headers = [(name, value) for name, value in headers if name.lower() != b"cache-control"]
            headers.append((b"cache-control", private.encode("latin-1")))
        if set_cookie is not None:
            headers.append((b"set-cookie", set_cookie.encode("latin-1")))
        return {**message, "headers": headers}


def _cookie_header(scope: Scope) -> str | None:
    """The request's ``Cookie`` header; several (HTTP/2 sends one per cookie) joined with ``"; "``."""
    found: str | None = None
    for name, value in scope["headers"]:
        if name == b"cookie":
            text = value.decode("latin-1")
            found = text if found is None else f"{found}; {text}"
    return found


def _private_header(session: Session, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The ``Cache-Control`` to set (judged before the save), or ``None`` to keep the app's."""
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"cache-control"]
    return private_cache_control(session, ", ".join(values) if values else None)


def _add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            merged = [("Vary", value.decode("latin-1"))]
            add_vary(merged, "Cookie")
            headers[index] = (name, merged[0][1].encode("latin-1"))
            return
    headers.append((b"vary", b"Cookie"))


async def _unavailable(send: Send) -> None:
    await send_plain(send, UNAVAILABLE_STATUS, UNAVAILABLE_BODY, UNAVAILABLE_HEADERS)


__all__ = ["SCOPE_KEY", "AsgiSessionMiddleware"]
