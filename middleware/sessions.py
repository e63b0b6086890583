"""SessionMiddleware: sessions for any WSGI app, on any cachekit cache or in a signed cookie.

Wrap the app once::

    app = SessionMiddleware(app, store=CacheStore(cachekit.caches["default"]))
    app = SessionMiddleware.from_settings(app, settings)   # SESSION_* settings

and read the session from ``environ["cachekit.session"]``, a
:class:`sessions.Session`. It is loaded on first access only; a request that
does not touch it costs no store round trip and gets no ``Set-Cookie``.

When the app starts its response, the middleware

* adds ``Vary: Cookie`` if the session was accessed;
* saves the session if it changed, if the store asks (a cookie signed with an
  old key), if the idle timeout needs new activity recorded, or on every
  request that used it with ``save_every_request``; then sends ``Set-Cookie``
  (``HttpOnly``, ``SameSite=Lax``, ``Path=/`` by default; ``Max-Age`` and
  ``Expires`` unless the session ends with the browser);
* deletes the cookie of a session that was flushed (logout) and not refilled;
* saves nothing on a 5xx response.

When it is built, it asks the session store's servers whether they may evict
keys when full (:func:`cachekit.eviction.eviction_risk`) and logs a warning if
so: an evicted session is a silent logout.

What it will not do:

* see changes made after the app called ``start_response`` (while the body
  streams): like Flask and Django, the session is saved before the body is sent;
* pass through a save whose store is down: with ``CacheStore`` a cache outage
  during load or save is answered ``503 Service Unavailable`` (with
  ``Retry-After``) rather than silently losing the session; if the app itself
  turns the load error into a response, that response stands;
* send a cookie that browsers would drop: a session too large for a cookie
  raises :class:`~sessions.exceptions.CookieTooLargeError` (a 500 from the
  server) and the client keeps its previous cookie.

A session deleted by a concurrent request (logout in another tab) is not
brought back by a late save: the save is dropped and logged at INFO, and the
response leaves the cookie alone (the id is dead either way; deleting the
cookie could drop the new login cookie a concurrent request just set, see
:meth:`~middleware._session_rules.SessionCookie.conflict`). Bodies pass
through byte for byte, and the app's own iterable is returned whenever the app
started its response before returning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from cachekit import check
from cachekit.config import caches
from cachekit.eviction import eviction_risk
from cachekit.exceptions import BackendUnavailableError
from middleware._session_rules import UNAVAILABLE_BODY
from middleware._session_rules import UNAVAILABLE_HEADERS
from middleware._session_rules import CookieOptions
from middleware._session_rules import SessionCookie
from middleware._session_rules import SessionCookieOptions
from middleware._session_rules import cookie_options
from middleware._session_rules import eviction_warning
from middleware._session_rules import private_cache_control
from middleware._session_rules import session_backend
from middleware._wsgi import ReplaceableBody
from middleware._wsgi import add_vary
from middleware._wsgi import close_iterable
from middleware._wsgi import status_code
from sessions.cookies import read_cookie
from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.settings import store_from_settings
from sessions.settings import warn_unknown_settings
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore

if TYPE_CHECKING:
    from _typeshed import OptExcInfo as ExcInfo
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

#: The environ key holding the request's :class:`~sessions.Session`.
ENVIRON_KEY = "cachekit.session"
_UNAVAILABLE = "503 Service Unavailable"
_MERGED = frozenset({"vary", "cache-control"})


class _Response:
    """One request's session bookkeeping around the app's ``start_response``."""

    __slots__ = ("failed", "middleware", "session", "start_response", "started")

    def __init__(
        self, middleware: SessionMiddleware, session: Session, start_response: StartResponse
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.start_response = start_response
        self.started = False
        self.failed = False

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
        self.started = True
        if self.session.accessed:
            headers = list(headers)
            try:
                self.middleware.finish(self.session, status, headers)
            except BackendUnavailableError as exc:
                logger.error("session store unavailable while saving: %s", exc)
                self.failed = True
                _unavailable(self.start_response)
                return _discard
        return self.start_response(status, headers, exc_info)

    def replacement(self) -> list[bytes] | None:
        return [UNAVAILABLE_BODY] if self.failed else None


def _discard(data: bytes) -> None:
    """The ``write`` callable handed to an app whose response was replaced."""


class SessionMiddleware(CookieOptions):
    """Give a WSGI app a session at ``environ["cachekit.session"]``.

    :param app: the WSGI app to wrap.
    :param store: a session store; default ``CacheStore(caches.for_sessions())``: the
        default cache, or on local memory a store of its own that pages cannot evict.
    :param environ_key: where the session is put in the environ.
    :param cookie: the session cookie's options, as :class:`~middleware._session_rules.SessionCookie`
        takes them: ``cookie_name`` [``"session"``], ``cookie_path`` [``"/"``],
        ``cookie_domain`` [None: the request's host only], ``cookie_secure`` [False],
        ``cookie_httponly`` [True], ``cookie_samesite`` [``"Lax"``; ``"Strict"``,
        ``"None"`` (needs ``cookie_secure``) or None], ``cookie_partitioned`` [False; CHIPS]
        and ``save_every_request`` [False: save only when the session changed]. Each is
        also an attribute of the middleware; setting it takes effect from the next response.
    :raises ConfigurationError: for an invalid cookie option, naming it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        store: Store | None = None,
        *,
        environ_key: str = ENVIRON_KEY,
        **cookie: Unpack[SessionCookieOptions],
    ) -> None:
        #: The wrapped app.
        self.app = app
        #: Where sessions live.
        self.store: Store = store if store is not None else CacheStore(caches.for_sessions())
        self.cookie = SessionCookie(**cookie)
        #: The environ key holding the session.
        self.environ_key = environ_key
        backend = session_backend(self.store)
        if backend is not None:
            eviction_warning(eviction_risk(backend))
        # Once per process: sessions on local memory under a multi-process server, a fallback cache.
        check.warn_once(check.session_findings(self.store))

    # -- configuration -----------------------------------------------------------

    @classmethod
    def from_settings(cls, app: WSGIApplication, settings: Any) -> SessionMiddleware:
        """Build the middleware from ``SESSION_*`` settings in a dict, module or object.

        Settings (defaults in brackets): ``SESSION_ENGINE`` [``"cache"``;
        ``"signed_cookies"``, or a dotted path to a store class with a
        ``from_settings(settings)`` classmethod], ``SESSION_CACHE_ALIAS``
        [``"default"``], ``SESSION_COOKIE_NAME`` [``"session"``],
        ``SESSION_COOKIE_AGE`` [1209600], ``SESSION_COOKIE_DOMAIN`` [None],
        ``SESSION_COOKIE_PATH`` [``"/"``], ``SESSION_COOKIE_SECURE`` [False],
        ``SESSION_COOKIE_HTTPONLY`` [True], ``SESSION_COOKIE_SAMESITE``
        [``"Lax"``], ``SESSION_SAVE_EVERY_REQUEST`` [False],
        ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` [False], ``SESSION_IDLE_TIMEOUT``
        [None], ``SESSION_IDLE_REFRESH_INTERVAL`` [a tenth of the idle
        timeout], ``SESSION_SERIALIZER`` [``"json"`` or a dotted path; pickle is
        refused], ``SESSION_COOKIE_ENCRYPT`` [False; signed cookies only, needs
        ``cryptography``], ``SESSION_REVOCATION_CACHE`` [None; a ``CACHES`` alias
        that makes signed cookies revocable], ``SECRET_KEY`` (required for signed cookies) and
        ``SECRET_KEY_FALLBACKS`` [()].

        An unknown ``SESSION_*`` name (neither these nor Django's or Flask's) is
        warned about with the closest known name
        (:class:`~sessions.settings.UnknownSettingWarning`).

        :raises ConfigurationError: naming the first missing or invalid setting.
        """
        warn_unknown_settings(settings)
        return cls(app, store_from_settings(settings), **cookie_options(settings))

    # -- WSGI --------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_COOKIE")
        session = Session(self.store, read_cookie(header, self.cookie.cookie_name) if header else None)
        environ[self.environ_key] = session
        response = _Response(self, session, start_response)
        try:
            app_iter = self.app(environ, response)
        except BackendUnavailableError as exc:
            if response.started:
                raise
            logger.error("session store unavailable while loading: %s", exc)
            return _unavailable(start_response)
        if response.failed:
            close_iterable(app_iter)
            return [UNAVAILABLE_BODY]
        if response.started:
            return app_iter
        # A generator app starts its response only when iterated.
        return ReplaceableBody(app_iter, response.replacement)

    def finish(self, session: Session, status: str, headers: list[tuple[str, str]]) -> None:
        """Add ``Vary`` and ``Set-Cookie`` to a response's headers, saving the session as needed.

        :raises BackendUnavailableError: if the store is down.
        :raises CookieTooLargeError: if a cookie store cannot hold the session.
        """
        _vary_and_private(session, headers)
        code = status_code(status)
        cookie = self.cookie
        if cookie.should_save(session, code):
            set_cookie: str | None
            try:
                set_cookie = cookie.saved(session, session.store.save(session))
            except SessionConflictError as exc:
                set_cookie = cookie.conflict(session, exc)
        else:
            set_cookie = cookie.unsaved(session, code)
        if set_cookie is not None:
            headers.append(("Set-Cookie", set_cookie))


def _vary_and_private(session: Session, headers: list[tuple[str, str]]) -> None:
    """Add ``Vary: Cookie``, and ``Cache-Control: private`` for a stored session, in one pass."""
    for name, _value in headers:
        if name.lower() in _MERGED:
            break
    else:
        # The usual response, with neither header yet: private_cache_control(session, None).
        headers.append(("Vary", "Cookie"))
        if session.stored:
            headers.append(("Cache-Control", "private"))
        return
    vary = control = -1
    for index, (name, _value) in enumerate(headers):
        lowered = name.lower()
        if lowered == "vary":
            if vary < 0:
                vary = index
        elif lowered == "cache-control" and control < 0:
            control = index
    if vary < 0:
        headers.append(("Vary", "Cookie"))
    else:
        add_vary(headers, "Cookie")
    if control < 0:
        changed = private_cache_control(session, None)
        if changed is not None:
            headers.append(("Cache-Control", changed))
        return
    # Several Cache-Control lines are one list (RFC 9110 section 5.3): decide on all
    # of them, and add "private" as a line of its own.
    value = ", ".join(v for n, v in headers if n.lower() == "cache-control")
    if private_cache_control(session, value) is not None:
        headers.append(("Cache-Control", "private"))


def _unavailable(start_response: StartResponse) -> list[bytes]:
    start_response(_UNAVAILABLE, list(UNAVAILABLE_HEADERS))
    return [UNAVAILABLE_BODY]


# store_from_settings lives in sessions.settings (it builds sessions objects); this path keeps working.
__all__ = ["ENVIRON_KEY", "SessionMiddleware", "store_from_settings"]
