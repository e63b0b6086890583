"""The errors raised by sessions and session stores.

They all derive from :class:`cachekit.exceptions.SessionError`, itself a
:class:`~cachekit.exceptions.CacheKitError`::

    SessionError
    ├── SessionCreateError                          no free session id found on create
    ├── SessionConflictError                        deleted, expired or changed concurrently
    ├── CookieTooLargeError(SessionError, ValueError)
    └── NoSessionError(SessionError, KeyError)      no session middleware in front of the app

A tampered, expired or unknown session cookie is *not* an error: the store
answers "no such session" and the request gets a new, empty session.

A cache outage while a server-side session is read or written is raised as
:class:`cachekit.exceptions.BackendUnavailableError`, never swallowed: see
:class:`sessions.stores.cache.CacheStore`.
"""

from __future__ import annotations

from cachekit.exceptions import SessionError


class SessionCreateError(SessionError):
    """A new session could not be stored under a fresh id.

    The store retries with another random id on a collision, so seeing this
    means the store refused every attempt: a full or misbehaving cache.
    """


class SessionConflictError(SessionError):
    """A save could not be applied to the stored session.

    Raised when the session was deleted (logged out in another tab) or expired
    between load and save, which must not bring it back, or when concurrent
    writers kept winning the compare-and-set race beyond the retry limit.
    """


class CookieTooLargeError(SessionError, ValueError):
    """The session does not fit in a cookie.

    Browsers drop cookies larger than about 4 KiB without a word, so the store
    refuses to produce one; the cookie the client holds stays as it was.

    :param size: the size in bytes the cookie would have had.
    :param limit: the largest size allowed.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The session cookie would be {size} bytes, over its {limit}-byte limit (browsers "
            "drop cookies over about 4 KiB); store less in the session or use a server-side store "
            "(SESSION_ENGINE='cache')."
        )
        #: The size in bytes the cookie would have had.
        self.size = size
        #: The largest size allowed, in bytes.
        self.limit = limit


class NoSessionError(SessionError, KeyError):
    """The request carries no session: no session middleware wraps the app.

    A :class:`KeyError` too, so code that catches the plain ``environ[...]``
    lookup error keeps working, but it says what to do.

    :param key: the environ or scope key that was looked up.
    """

    def __init__(self, key: str) -> None:
        super().__init__(
            f"No session at {key!r}: wrap the app in middleware.SessionMiddleware (WSGI) or "
            "middleware.AsgiSessionMiddleware (ASGI), e.g. app = SessionMiddleware(app, store=...), "
            "or read it with sessions.get_session(environ) only inside such an app."
        )
        #: The environ or scope key that was looked up.
        self.key = key

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; show the sentence as written.
        return str(self.args[0])


__all__ = [
    "CookieTooLargeError",
    "NoSessionError",
    "SessionConflictError",
    "SessionCreateError",
    "SessionError",
]
