"""Finding the request's session in a WSGI environ or an ASGI scope.

:class:`middleware.SessionMiddleware` puts the session at
``environ["cachekit.session"]``; a plain ``environ[...]`` lookup in an app that
is not wrapped fails with a bare :class:`KeyError`. :func:`get_session` fails
with :class:`~sessions.exceptions.NoSessionError` instead, which says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessions.exceptions import NoSessionError
from sessions.session import Session

#: Where :class:`middleware.SessionMiddleware` puts the session in the WSGI environ.
ENVIRON_KEY = "cachekit.session"


def get_session(environ: Mapping[str, Any], key: str = ENVIRON_KEY) -> Session:
    """Return the session that session middleware put in ``environ`` (or an ASGI scope).

    :param environ: the WSGI environ, or an ASGI scope with ``key="session"``.
    :param key: where the middleware put the session (its ``environ_key`` / ``scope_key``).
    :raises NoSessionError: (a :class:`KeyError`) when no session middleware wraps the app.
    """
    session = environ.get(key)
    if not isinstance(session, Session):
        raise NoSessionError(key)
    return session


__all__ = ["ENVIRON_KEY", "get_session"]
