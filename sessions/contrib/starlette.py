"""Starlette's ``SessionMiddleware``, on cachekit session stores.

Change one import and nothing else::

    # from starlette.middleware.sessions import SessionMiddleware
    from sessions.contrib.starlette import SessionMiddleware

    app.add_middleware(SessionMiddleware, secret_key="...", max_age=3600, same_site="strict")

The signature is Starlette's (``secret_key``, ``session_cookie``, ``max_age``,
``path``, ``same_site``, ``https_only``, ``domain``, ``partitioned``) and so is
the behaviour: ``request.session`` is a ``dict`` (Starlette's own session
class: pass it to ``JSONResponse``, use ``|=``, call ``mark_accessed()``), a
cookie is sent only when the session changed, a cleared session's cookie is
deleted, ``Vary: Cookie`` whenever the session was used, ``max_age=None`` gives
a browser-session cookie, and a ``max_age`` of 0 or less is accepted (the
browser keeps no session, as with Starlette).

By default the session is signed into the cookie by a
:class:`~sessions.stores.cookie.SignedCookieStore` keyed with ``secret_key``.
Pass ``store=`` for a server-side store, so that the cookie carries only a
random id and a session can be revoked::

    store = AsyncCacheStore(cachekit.aio.from_url("redis://127.0.0.1:6379/0"))
    app.add_middleware(SessionMiddleware, secret_key="...", store=store)

Concurrent requests changing different keys of one server-side session both
persist (the save applies this request's changes to the latest stored copy).
Values keep the types of :mod:`sessions.serializers` (tuple, bytes, datetime,
UUID ...), where Starlette's plain JSON turns tuples into lists.

What differs, deliberately:

* an outage of a server-side store gets the suite's one answer,
  ``503 Service Unavailable`` with ``Retry-After``, never a 500;
* ``same_site="none"`` needs ``https_only=True`` (browsers drop the cookie
  otherwise): refused at start-up with :class:`~cachekit.exceptions.ConfigurationError`;
* a session is loaded when the request arrives with a cookie, as Starlette
  does; with a server-side store that is one read per such request.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session as StarletteSession

from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from sessions.aio import AsyncStore
from sessions.aio import is_async_store
from sessions.aio import open_session
from sessions.aio import save_session
from sessions.contrib import RETRY_AFTER
from sessions.contrib import UNAVAILABLE_BODY
from sessions.contrib import UNAVAILABLE_STATUS
from sessions.cookies import CookieFormat
from sessions.cookies import read_cookie
from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.state import DEFAULT_AGE
from sessions.stores.base import Store
from sessions.stores.cookie import SignedCookieStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp
    from starlette.types import Message
    from starlette.types import Receive
    from starlette.types import Scope
    from starlette.types import Send

logger = logging.getLogger(__name__)

_MISSING = object()
_UNAVAILABLE_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
    (b"retry-after", str(RETRY_AFTER).encode()),
]


class SessionMiddleware:
    """Starlette's ``SessionMiddleware`` with the data in a cachekit store.

    :param app: the ASGI app.
    :param secret_key: signs the cookie of the default store; may be ``None`` when ``store`` is given.
    :param session_cookie: the cookie's name.
    :param max_age: seconds a session lives from its last change; ``None`` for a
        browser-session cookie; 0 or less keeps nothing.
    :param path: the cookie's ``Path``.
    :param same_site: ``"lax"``, ``"strict"`` or ``"none"`` (needs ``https_only``).
    :param https_only: add ``Secure``.
    :param domain: the cookie's ``Domain``.
    :param partitioned: add ``Partitioned`` (CHIPS).
    :param store: a cachekit session store, sync or async; default a signed cookie.
    :raises ConfigurationError: for a missing key or an invalid cookie option.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: Any = None,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: Store | AsyncStore | None = None,
    ) -> None:
        self.app = app
        if store is None:
            if secret_key is None or not str(secret_key):
                raise ConfigurationError(
                    "SessionMiddleware needs secret_key (or a server-side store=).", setting="secret_key"
                )
            age = max_age if max_age is not None and max_age > 0 else DEFAULT_AGE
            store = SignedCookieStore(str(secret_key), age=age, expire_at_browser_close=max_age is None)
        #: Where sessions live.
        self.store: Store | AsyncStore = store
        #: Seconds a session lives from its last change (``None``: browser session).
        self.max_age = max_age
        self.session_cookie = session_cookie
        try:
            self._cookie = CookieFormat(
                session_cookie,
                path=path,
                domain=domain,
                secure=bool(https_only),
                httponly=True,
                samesite=same_site,
                partitioned=bool(partitioned),
            )
        except ValueError as exc:
            raise ConfigurationError(f"SessionMiddleware: {exc}", setting="same_site") from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Load the session into ``scope["session"]``, run the app, save what changed."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                header = f"{header}; {value.decode('latin-1')}" if header else value.decode("latin-1")
        cookie_value = read_cookie(header, self.session_cookie) if header else None
        try:
            backing = await open_session(self.store, cookie_value)
            stored = backing.session_key is not None
        except BackendUnavailableError as exc:
            logger.warning("session store unavailable while loading: %s", exc)
            await self._unavailable(scope, send)
            return
        data = backing.state.data
        snapshot = copy.deepcopy(data)
        session = StarletteSession(data)
        scope["session"] = session
        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's response was replaced by the 503
            if message["type"] == "http.response.start":
                try:
                    line = await self._finish(backing, session, snapshot, stored)
                except BackendUnavailableError as exc:
                    logger.warning("session store unavailable while saving: %s", exc)
                    replaced = True
                    await self._unavailable(scope, send)
                    return
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if session.accessed:
                    headers.add_vary_header("Cookie")
                if line is not None:
                    headers.append("Set-Cookie", line)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _finish(
        self, backing: Session, session: StarletteSession, snapshot: dict[str, Any], stored: bool
    ) -> str | None:
        """Save a changed session; return the ``Set-Cookie`` value to send, if any."""
        if not session.modified:
            return None
        if not session or self.max_age is not None and self.max_age <= 0:
            if stored:
                await self._delete(backing)
                return self._cookie.delete()
            if session and self.max_age is not None:
                return self._cookie.delete()  # max_age <= 0: the browser keeps nothing
            return None
        for key, value in session.items():
            if snapshot.get(key, _MISSING) != value:
                backing[key] = value
        for key in snapshot:
            if key not in session and key in backing:
                del backing[key]
        backing.set_expiry(self.max_age if self.max_age is not None else 0)
        try:
            value = await save_session(backing)
        except SessionConflictError as exc:
            logger.info("session not saved: %s", exc)
            return self._cookie.delete() if stored else None
        if self.max_age is None:
            return self._cookie.dump(value)
        return self._cookie.dump(value, self.max_age, time.time() + self.max_age)

    async def _delete(self, backing: Session) -> None:
        key = backing.session_key
        if key is None:
            return
        if is_async_store(self.store):
            await self.store.delete(key)
        else:
            self.store.delete(key)

    @staticmethod
    async def _unavailable(scope: Scope, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1011})
            return
        await send(
            {"type": "http.response.start", "status": UNAVAILABLE_STATUS, "headers": _UNAVAILABLE_HEADERS}
        )
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})


__all__ = ["SessionMiddleware"]
