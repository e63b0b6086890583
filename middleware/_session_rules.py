"""The session middleware's rules, with no I/O: shared by the WSGI and ASGI middleware.

Which cookie to read, when a session is saved, which ``Set-Cookie`` a response
gets (a new value, a deletion, nothing), the answer to a store outage (below),
and the ``SESSION_*`` settings. :class:`~middleware.sessions.SessionMiddleware`
and :class:`~middleware.asgi_sessions.AsgiSessionMiddleware` call these around
their own plumbing (``start_response`` or ``send``) and their own store calls
(blocking or awaited).

A store outage (:class:`~cachekit.exceptions.BackendUnavailableError`) is
answered the same way by both, whenever the session is loaded (lazily in WSGI,
before the app in ASGI with an async store, whose failure is then kept until
the app first touches the session):

=====================================================  ===============================
when the store is down                                 the answer
=====================================================  ===============================
the app never touches the session                      the app's response, untouched
the app reads or writes it and lets the error through  ``503`` + ``Retry-After``
the app catches the error and answers itself           that answer, with no ``Set-Cookie``
the save or a logout's delete, before the response     ``503`` + ``Retry-After``
after the response started                             the error propagates (the server
                                                       closes the connection)
=====================================================  ===============================

Tests: ``tests/middleware/test_session_outages.py`` runs this table through both
middlewares against a stopped Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any
from typing import Generic
from typing import TypedDict
from typing import TypeVar
from typing import overload

from cachekit import check
from cachekit.config import coerce_option
from cachekit.config import read_setting
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from sessions.aio import AsyncStore
from sessions.aio import RequestStore
from sessions.contrib import RETRY_AFTER
from sessions.contrib import UNAVAILABLE_BODY
from sessions.contrib import UNAVAILABLE_STATUS
from sessions.cookies import CookieAttributeError
from sessions.cookies import CookieFormat
from sessions.cookies import normalize_samesite
from sessions.cookies import read_cookie
from sessions.exceptions import SessionConflictError
from sessions.session import Session

logger = logging.getLogger("middleware.sessions")

#: The headers of the answer to a request whose session store is down (status and body:
#: :data:`sessions.contrib.UNAVAILABLE_STATUS`, :data:`~sessions.contrib.UNAVAILABLE_BODY`).
UNAVAILABLE_HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(UNAVAILABLE_BODY))),
    ("Retry-After", str(RETRY_AFTER)),
)


def eviction_warning(reason: str | None) -> None:
    """Warn once per process (finding ``sessions-may-be-evicted``) if the store may evict sessions."""
    if reason is not None:
        check.warn_once(
            [
                check.Finding(
                    "sessions-may-be-evicted",
                    f"sessions are stored where they can be evicted: {reason}. An evicted session is "
                    "a silent logout; keep sessions on a Redis instance of their own with "
                    "maxmemory-policy noeviction (docs/reliability.md, 'Sessions and eviction').",
                )
            ]
        )


def session_backend(store: object) -> object | None:
    """The cache backend a (sync or async) cache-backed session store writes to, else ``None``."""
    cache = getattr(store, "cache", None)
    return getattr(cache, "backend", None)


class _UnreachableStore(RequestStore):
    """A request's view of an async store that was down when the request began: loading raises."""

    __slots__ = ("_error",)

    def __init__(self, async_store: AsyncStore, error: BackendUnavailableError) -> None:
        super().__init__(async_store, None)
        self._error = error

    def load(self, cookie_value: str) -> None:
        """Raise the outage the load met, now that the app needs the session."""
        raise BackendUnavailableError(str(self._error)) from self._error


def unreachable_session(
    store: AsyncStore, cookie_value: str | None, error: BackendUnavailableError
) -> Session:
    """A session whose load failed with ``error`` before the app ran; touching it raises ``error``.

    So an app that never uses the session answers as under WSGI's lazy load,
    and one that does meets the outage where WSGI's would (see the table above).
    """
    return Session(_UnreachableStore(store, error), cookie_value)


class SessionCookieOptions(TypedDict, total=False):
    """The keyword arguments of :class:`SessionCookie`, which both session middlewares take too."""

    cookie_name: str
    cookie_path: str
    cookie_domain: str | None
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: str | None
    cookie_partitioned: bool
    save_every_request: bool


#: The ``SESSION_*`` setting of each cookie attribute (:attr:`CookieAttributeError.attribute`).
_SETTINGS = {
    "name": "SESSION_COOKIE_NAME",
    "path": "SESSION_COOKIE_PATH",
    "domain": "SESSION_COOKIE_DOMAIN",
    "samesite": "SESSION_COOKIE_SAMESITE",
}


@dataclass(frozen=True)
class SessionCookie:
    """The session cookie's options and the rules that decide each response's ``Set-Cookie``.

    Immutable: :func:`dataclasses.replace` (or setting an option on a middleware,
    which does that) gives a new one, checked like the first.

    :param cookie_name: the session cookie's name.
    :param cookie_path: its ``Path``.
    :param cookie_domain: its ``Domain``; ``None`` for the request's host only.
    :param cookie_secure: add ``Secure`` (send over HTTPS only).
    :param cookie_httponly: add ``HttpOnly`` (hidden from JavaScript).
    :param cookie_samesite: ``"Lax"``, ``"Strict"``, ``"None"`` (needs ``cookie_secure``) or ``None``.
    :param cookie_partitioned: add ``Partitioned`` (CHIPS: one cookie per top-level site, for
        embedded apps; needs ``cookie_secure`` in browsers), as Flask's ``SESSION_COOKIE_PARTITIONED``.
    :param save_every_request: save (and re-send the cookie) on every request that used the
        session, not only when it changed.
    :raises ConfigurationError: for an invalid cookie option, naming its setting.
    """

    cookie_name: str = "session"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool = False
    cookie_httponly: bool = True
    cookie_samesite: str | None = "Lax"
    cookie_partitioned: bool = False
    save_every_request: bool = False
    _format: CookieFormat = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        secure = bool(self.cookie_secure)
        try:
            cookie_format = CookieFormat(
                self.cookie_name,
                path=self.cookie_path,
                domain=self.cookie_domain,
                secure=secure,
                httponly=bool(self.cookie_httponly),
                samesite=self.cookie_samesite,
                partitioned=bool(self.cookie_partitioned),
            )
        except CookieAttributeError as exc:
            setting = _SETTINGS[exc.attribute]
            raise ConfigurationError(f"{setting}: {exc}", setting=setting) from None
        # Frozen: the checked, normalized values are set once, here.
        set_once = object.__setattr__
        set_once(self, "_format", cookie_format)
        set_once(self, "cookie_secure", secure)
        set_once(self, "cookie_httponly", bool(self.cookie_httponly))
        set_once(self, "cookie_samesite", normalize_samesite(self.cookie_samesite, secure=secure))
        set_once(self, "cookie_partitioned", bool(self.cookie_partitioned))
        set_once(self, "save_every_request", bool(self.save_every_request))

    def value_from(self, cookie_header: str | None) -> str | None:
        """Return the session cookie's value from a request's ``Cookie`` header, if any."""
        return read_cookie(cookie_header, self.cookie_name) if cookie_header else None

    def should_save(self, session: Session, status: int) -> bool:
        """Whether the session is to be saved before a response with ``status`` starts.

        Never on a 5xx; otherwise when it changed, when its store asks, when the
        idle timeout needs new activity recorded, or with ``save_every_request``.
        """
        return status < 500 and session.needs_save(save_every_request=self.save_every_request)

    def saved(self, session: Session, value: str) -> str:
        """Return the ``Set-Cookie`` value for a session just saved as ``value``.

        :raises CookieTooLargeError: if the value is too long for a cookie.
        """
        store = session.store
        expires = store.policy.cookie_expires(session.state)
        if expires is None:
            return self._format.dump(value)
        return self._format.dump(value, expires - store.clock(), expires)

    def unsaved(self, session: Session, status: int) -> str | None:
        """Return the ``Set-Cookie`` for a session not saved: a deletion after logout, or ``None``."""
        if status < 500 and session.flushed and session.cookie_value is not None:
            return self._format.delete()
        return None

    def conflict(self, session: Session, exc: SessionConflictError) -> str | None:
        """Log a save dropped because the session was deleted meanwhile; leave the cookie alone.

        The id is dead either way: the next request with it gets a fresh
        session. Deleting the cookie here would be worse than useless when the
        session was cycled at login by a concurrent request: if this response
        arrived last, the browser would drop the brand-new login cookie.
        """
        logger.info("session not saved: %s", exc)
        return None


T = TypeVar("T")


class _CookieOption(Generic[T]):
    """An attribute of a middleware that reads its :class:`SessionCookie`'s option of the same
    name; setting it replaces the middleware's ``cookie`` with one that has the new value."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _CookieOption[T]: ...
    @overload
    def __get__(self, obj: CookieOptions, owner: type | None = None) -> T: ...
    def __get__(self, obj: CookieOptions | None, owner: type | None = None) -> _CookieOption[T] | T:
        if obj is None:
            return self
        value: T = getattr(obj.cookie, self.name)
        return value

    def __set__(self, obj: CookieOptions, value: T) -> None:
        changes: dict[str, Any] = {self.name: value}
        obj.cookie = replace(obj.cookie, **changes)


class CookieOptions:
    """The session cookie's options as attributes of a session middleware.

    Each reads ``self.cookie``; setting one (``mw.cookie_name = "sid"``) replaces
    ``self.cookie`` with a :class:`SessionCookie` that has it, checked as in the
    constructor, so the next response uses it.
    """

    #: The cookie options and the rules shared by the WSGI and ASGI middlewares.
    cookie: SessionCookie
    #: The session cookie's name.
    cookie_name = _CookieOption[str]()
    #: Its ``Path``.
    cookie_path = _CookieOption[str]()
    #: Its ``Domain``, or ``None``.
    cookie_domain = _CookieOption["str | None"]()
    #: Whether it carries ``Secure``.
    cookie_secure = _CookieOption[bool]()
    #: Whether it carries ``HttpOnly``.
    cookie_httponly = _CookieOption[bool]()
    #: Its ``SameSite`` value, or ``None``.
    cookie_samesite = _CookieOption["str | None"]()
    #: Whether it carries ``Partitioned``.
    cookie_partitioned = _CookieOption[bool]()
    #: Save on every request that used the session.
    save_every_request = _CookieOption[bool]()


_CACHE_DECISIONS = ("public", "private", "no-store", "no-cache")


def private_cache_control(session: Session, value: str | None) -> str | None:
    """Return the ``Cache-Control`` a response that used ``session`` should carry, or ``None``.

    A response that read a stored session shows one user's data: no shared
    cache may keep it, even keyed per cookie (a cookie stolen later, or kept
    after logout, would replay the page). So ``private`` is added unless the
    app already decided (``public``, ``private``, ``no-store`` or ``no-cache``);
    ``public`` is how an app opts a per-user page into shared caching on purpose.
    Anonymous visitors, whose session was empty, keep their shared pages.
    ``None`` means leave the header as it is.
    """
    if not session.stored:
        return None
    if value is None or not value.strip():
        return "private"
    directives = {part.split("=", 1)[0].strip().lower() for part in value.split(",")}
    if directives.intersection(_CACHE_DECISIONS):
        return None
    return f"{value}, private"


def cookie_options(settings: Any) -> SessionCookieOptions:
    """Return :class:`SessionCookie`'s keyword arguments from ``SESSION_*`` settings.

    :raises ConfigurationError: naming the first invalid setting.
    """

    def get(name: str, default: Any, kind: type) -> Any:
        return coerce_option(name, read_setting(settings, name, default), kind)

    return {
        "cookie_name": get("SESSION_COOKIE_NAME", "session", str),
        "cookie_path": get("SESSION_COOKIE_PATH", "/", str),
        "cookie_domain": get("SESSION_COOKIE_DOMAIN", None, str),
        "cookie_secure": get("SESSION_COOKIE_SECURE", False, bool),
        "cookie_httponly": get("SESSION_COOKIE_HTTPONLY", True, bool),
        "cookie_samesite": read_setting(settings, "SESSION_COOKIE_SAMESITE", "Lax"),
        "save_every_request": get("SESSION_SAVE_EVERY_REQUEST", False, bool),
        "cookie_partitioned": get("SESSION_COOKIE_PARTITIONED", False, bool),
    }


__all__ = [
    "UNAVAILABLE_BODY",
    "CookieOptions",
    "eviction_warning",
    "session_backend",
    "unreachable_session",
    "UNAVAILABLE_HEADERS",
    "UNAVAILABLE_STATUS",
    "SessionCookie",
    "SessionCookieOptions",
    "cookie_options",
]
