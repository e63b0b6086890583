"""Sessions for cachekit: the :class:`Session` mapping and its stores.

``CacheStore`` keeps sessions in any :class:`cachekit.Cache` and never loses
concurrent updates; ``SignedCookieStore`` keeps them in a signed cookie. Use
them through :class:`middleware.SessionMiddleware`, and read the request's
session with :func:`get_session`.
"""

from sessions.environ import get_session
from sessions.exceptions import CookieTooLargeError
from sessions.exceptions import NoSessionError
from sessions.exceptions import SessionConflictError
from sessions.exceptions import SessionCreateError
from sessions.exceptions import SessionError
from sessions.serializers import TaggedJSONSerializer
from sessions.session import Session
from sessions.state import ExpiryPolicy
from sessions.state import SessionState
from sessions.stores import BaseStore
from sessions.stores import CacheStore
from sessions.stores import SignedCookieStore
from sessions.stores import Store

__all__ = [
    "BaseStore",
    "CacheStore",
    "CookieTooLargeError",
    "ExpiryPolicy",
    "NoSessionError",
    "Session",
    "SessionConflictError",
    "SessionCreateError",
    "SessionError",
    "SessionState",
    "SignedCookieStore",
    "Store",
    "TaggedJSONSerializer",
    "get_session",
]
