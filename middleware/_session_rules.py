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
from typing import Any

from cachekit import check
from cachekit.config import coerce_option
from cachekit.config import read_setting
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from sessions.aio import AsyncStore
from sessions.aio import RequestStore
from sessions.cookies import CookieFormat
from sessions.cookies import normalize_samesite
from sessions.cookies import read_cookie
from sessions.exceptions import SessionConflictError
from sessions.session import Session

logger = logging.getLogger("middleware.sessions")

#: The answer to a request whose session store is down.
UNAVAILABLE_STATUS = 503
UNAVAILABLE_BODY = b"Service Unavailable: the session store is not reachable.\n"
UNAVAILABLE_HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(UNAVAILABLE_BODY))),
    ("Retry-After", "5"),
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
    return Session(_UnreachableStore(store, error), cookie_value)  # type: ignore[arg-type]


class SessionCookie:
    """The session cookie's options and the rules that decide each response's ``Set-Cookie``.

    :param cookie_name: the session cookie's name.
    :param cookie_path: its ``Path``.
    :param cookie_domain: its ``Domain``; ``None`` for the request's host only.
    :param cookie_secure: add ``Secure``.
    :param cookie_httponly: add ``HttpOnly``.
    :param cookie_samesite: ``"Lax"``, ``"Strict"``, ``"None"`` (needs ``cookie_secure``) or ``None``.
    :param save_every_request: save on every request that used the session.
    :param cookie_partitioned: add ``Partitioned`` (CHIPS), as Flask's ``SESSION_COOKIE_PARTITIONED``.
    :raises ConfigurationError: for an invalid cookie option, naming it.
    """

    __slots__ = (
        "_format",
        "cookie_domain",
        "cookie_httponly",
        "cookie_name",
        "cookie_partitioned",
        "cookie_path",
        "cookie_samesite",
        "cookie_secure",
        "save_every_request",
    )

    def __init__(
        self,
        *,
        cookie_name: str = "session",
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_secure: bool = False,
        cookie_httponly: bool = True,
        cookie_samesite: str | None = "Lax",
        save_every_request: bool = False,
        cookie_partitioned: bool = False,
    ) -> None:
        try:
            self._format = CookieFormat(
                cookie_name,
                path=cookie_path,
                domain=cookie_domain,
                secure=bool(cookie_secure),
                httponly=bool(cookie_httponly),
                samesite=cookie_samesite,
                partitioned=bool(cookie_partitioned),
            )
        except ValueError as exc:
            raise ConfigurationError(f"{_setting_for(exc)}: {exc}", setting=_setting_for(exc)) from None
        self.cookie_name = cookie_name
        self.cookie_path = cookie_path
        self.cookie_domain = cookie_domain
        self.cookie_secure = bool(cookie_secure)
        self.cookie_httponly = bool(cookie_httponly)
        self.cookie_samesite = normalize_samesite(cookie_samesite, secure=bool(cookie_secure))
        self.save_every_request = bool(save_every_request)
        self.cookie_partitioned = bool(cookie_partitioned)

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


def _setting_for(exc: ValueError) -> str:
    text = str(exc)
    for word, setting in (
        ("name", "SESSION_COOKIE_NAME"),
        ("path", "SESSION_COOKIE_PATH"),
        ("domain", "SESSION_COOKIE_DOMAIN"),
    ):
        if f"cookie {word}" in text:
            return setting
    return "SESSION_COOKIE_SAMESITE"


def cookie_options(settings: Any) -> dict[str, Any]:
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
    "eviction_warning",
    "session_backend",
    "unreachable_session",
    "UNAVAILABLE_HEADERS",
    "UNAVAILABLE_STATUS",
    "SessionCookie",
    "cookie_options",
]
