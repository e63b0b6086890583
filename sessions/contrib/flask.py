"""A Flask ``SessionInterface`` over any cachekit session store.

One line after creating the app::

    app.session_interface = CacheKitSessionInterface(CacheStore(cachekit.from_url(url)))

``flask.session`` is then a :class:`FlaskSession`: a
:class:`sessions.Session` (lazy load, delta saves that never lose a
concurrent write to another key, ``cycle_key()`` for login, ``flush()`` for
logout) that is also a Flask ``SessionMixin``. The cookie follows Flask's
``SESSION_COOKIE_*`` settings and the session Flask's rules:

* it is saved when ``session.modified`` is true (set it after changing a
  nested value in place), or on every request with a *permanent* session
  while ``SESSION_REFRESH_EACH_REQUEST`` is on (Flask's default): then even a
  request whose view never touched the session reads it, to learn whether it
  is permanent, and refreshes it, as Flask does; ``session.modified`` stays
  true after the save, as in Flask;
* a permanent session (``session.permanent = True``) lasts
  ``PERMANENT_SESSION_LIFETIME`` from its last save, in the store and in the
  cookie's ``Expires``; any other one gets a browser-session cookie, and the
  store forgets it after its policy's ``age``;
* a session emptied with ``clear()`` or ``flush()`` is deleted from the store
  and its cookie removed.

* values keep the types Flask's tagged JSON keeps (tuple, bytes, ``Markup``,
  UUID, datetime; see :mod:`sessions.serializers`), so flashed
  ``(category, message)`` pairs and flashed markup come back unchanged;
* ``Vary: Cookie`` whenever the session was read, set or deleted.

An outage gets the suite's one answer, ``503 Service Unavailable`` with
``Retry-After``, never a 500: a load that fails inside the view raises
:class:`SessionUnavailableError` (a Werkzeug ``ServiceUnavailable`` and a
:class:`~cachekit.exceptions.BackendUnavailableError`; register an error handler
for it to answer differently), and a save that fails turns the response into
the 503 (its ``Set-Cookie`` dropped). A session deleted by a concurrent request
(logout in another tab) is not brought back by a late save: the save is
dropped and the cookie removed.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from typing import Any

from flask.sessions import SessionInterface
from flask.sessions import SessionMixin
from flask.wrappers import Response as FlaskResponse
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.http import dump_cookie

from cachekit.exceptions import BackendUnavailableError
from cachekit.pages.wsgi import SESSION_ENVIRON_KEY
from sessions.contrib import RETRY_AFTER
from sessions.contrib import UNAVAILABLE_BODY
from sessions.contrib import UNAVAILABLE_STATUS
from sessions.cookies import http_date
from sessions.cookies import read_cookie
from sessions.exceptions import SessionConflictError
from sessions.session import Session
from sessions.stores.base import Store

if TYPE_CHECKING:
    from flask import Flask
    from flask import Request
    from flask import Response

logger = logging.getLogger(__name__)

#: Cookie values Werkzeug's ``dump_cookie`` sends unquoted (a subset of its own rule):
#: session ids and signed cookies. Any other value goes through ``dump_cookie``.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.~=:-]*")
# Stand-ins for the value and the date in a line built once by ``dump_cookie``.
_VALUE = "cachekitsessionvalue"
_DATE = "cachekitsessiondate"
#: The values of :meth:`CacheKitSessionInterface._attributes`, in its order: a template's key.
_Attributes = tuple[Any, ...]
#: ``Set-Cookie`` for one set of attributes, split around the value and the date:
#: ``(head, tail without Expires, before the date, after the date)``.
_Template = tuple[str, str, str, str]
#: Flask's ``Response.max_cookie_size`` (the current app's ``MAX_COOKIE_SIZE``, read
#: through two context-local proxies): a response class that keeps it is asked the app.
_FLASK_MAX_COOKIE_SIZE = vars(FlaskResponse).get("max_cookie_size")
#: Werkzeug's own ``set_cookie``: a response class that overrides it, or a response that
#: replaces it on itself, is always asked.
_WERKZEUG_SET_COOKIE = FlaskResponse.set_cookie


def _template(attributes: dict[str, Any]) -> _Template | None:
    """Werkzeug's ``Set-Cookie`` line for ``attributes`` (``set_cookie``'s keywords), cut where
    the value and date go.

    ``None`` when the attributes are ones ``dump_cookie`` refuses or a stand-in
    cannot be found unambiguously: each cookie is then built by ``dump_cookie``.
    """
    try:
        plain = dump_cookie(value=_VALUE, max_size=0, **attributes)
        dated = dump_cookie(value=_VALUE, expires=_DATE, max_size=0, **attributes)
    except ValueError:
        return None
    if plain.count(_VALUE) != 1 or dated.count(_VALUE) != 1 or dated.count(_DATE) != 1:
        return None
    head, _, tail = plain.partition(_VALUE)
    before, _, after = dated.partition(_VALUE)[2].partition(_DATE)
    return head, tail, before, after


class SessionUnavailableError(ServiceUnavailable, BackendUnavailableError):
    """The session store is down: Flask answers it as ``503`` with ``Retry-After``.

    Raised where a view first uses ``flask.session``; catch it (or
    :class:`~cachekit.exceptions.BackendUnavailableError`) to degrade instead.
    """

    def __init__(self, cause: BaseException) -> None:
        ServiceUnavailable.__init__(self, UNAVAILABLE_BODY.decode().strip(), retry_after=RETRY_AFTER)
        self.__cause__ = cause


class FlaskSession(Session, SessionMixin):
    """A :class:`sessions.Session` that Flask accepts as ``flask.session``."""

    #: Set by the interface once a changed session was saved: Flask keeps
    #: ``session.modified`` true after the save.
    _saved_modified = False
    #: Set when loading met an outage: the response (503, or what the app's
    #: handler made of it) must not try the store again.
    load_failed = False

    @property
    def new(self) -> bool:  # type: ignore[override]  # SessionMixin.new is a plain attribute
        """True when the session is loaded and not stored yet (Flask's ``session.new``)."""
        return self.loaded and self.session_key is None

    @property
    def modified(self) -> bool:
        """Whether the session changed in this request (still true after the save, as in Flask)."""
        return self._modified or self._saved_modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._set_modified(value)
        if not value:
            self._saved_modified = False

    def _load(self) -> Any:
        try:
            return super()._load()
        except BackendUnavailableError as exc:
            self.load_failed = True
            raise SessionUnavailableError(exc) from exc


class CacheKitSessionInterface(SessionInterface):
    """Keep Flask sessions in a cachekit store.

    :param store: where sessions live; default a
        :class:`~sessions.stores.cache.CacheStore` on ``cachekit.caches.for_sessions()``
        (the default cache, or on local memory a store of its own that pages
        cannot evict), built on first use.
    """

    #: The session class handed to views.
    session_class = FlaskSession

    def __init__(self, store: Store | None = None) -> None:
        self._store = store
        # Set-Cookie templates per attribute set (the config rarely changes; bounded anyway).
        self._templates: dict[_Attributes, _Template | None] = {}

    @property
    def store(self) -> Store:
        """The session store (the default one is built on first use)."""
        if self._store is None:
            from cachekit.config import caches
            from sessions.stores.cache import CacheStore

            self._store = CacheStore(caches.for_sessions())
        return self._store

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        """Return the request's session; nothing is read from the store until a view uses it.

        A cookie name sent twice with different values (one planted for a
        parent domain or another path) is ambiguous: the request gets a new
        session rather than possibly the planted one.
        """
        # read_cookie, not request.cookies: the one cookie needed, without parsing them all.
        header = request.environ.get("HTTP_COOKIE")
        value = read_cookie(header, self.get_cookie_name(app)) if header else None
        session = self.session_class(self.store, value or None)
        # Tells a page cache around the app whether the page read a stored session or an anonymous one.
        request.environ.setdefault(SESSION_ENVIRON_KEY, session)
        return session

    def is_null_session(self, obj: object) -> bool:
        """Whether ``obj`` is Flask's null session (never one of ours: checked by type first)."""
        return type(obj) is not self.session_class and super().is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Save the session if Flask's rules ask for it and set or delete the cookie.

        :raises BackendUnavailableError: if the store's cache is down.
        """
        # type() first: isinstance() of an ABC (a MutableMapping) costs more, on every response.
        if type(session) is not self.session_class and not isinstance(session, FlaskSession):
            return
        try:
            self._save(app, session, response)
        except BackendUnavailableError as exc:
            logger.warning("session store unavailable while saving: %s", exc)
            self._unavailable(response)

    def _save(self, app: Flask, session: FlaskSession, response: Response) -> None:
        vary = session.accessed
        if vary:
            _vary_cookie(response)
        if session.load_failed:
            return
        if not session.loaded:
            # Flask refreshes a permanent session on every request, used or not;
            # only the stored data says whether it is permanent.
            if not (session.cookie_value and app.config["SESSION_REFRESH_EACH_REQUEST"]):
                return
            if not session.state.data.get("_permanent"):
                return
        had_cookie = session.cookie_value is not None
        if not session:
            if session.modified or session.flushed:
                # Emptied (clear()) or logged out (flush(), which deleted it already).
                if session.session_key is not None:
                    session.store.delete(session.session_key)
                if had_cookie:
                    self._delete_cookie(app, response)
            return
        if not (self.should_set_cookie(app, session) or session.needs_save()):
            return
        modified = session.modified
        # Flask's lifetimes: a permanent session lasts PERMANENT_SESSION_LIFETIME
        # from this save; any other ends with the browser (expiry 0, set once: an
        # unchanged expiry is left alone, so a lost race keeps the stored one).
        if session.permanent:
            session.set_expiry(app.permanent_session_lifetime)
        elif session.state.expiry != 0:
            session.set_expiry(0)
        try:
            value = session.save()
        except SessionConflictError as exc:
            logger.info("session not saved: %s", exc)
            if had_cookie:
                self._delete_cookie(app, response)
            return
        if modified:
            session._saved_modified = True
        if not vary:
            _vary_cookie(response)
        self._set_cookie(app, response, value, session.store.policy.cookie_expires(session.state))

    def _set_cookie(self, app: Flask, response: Response, value: str, expires: float | None) -> None:
        """Add the session's ``Set-Cookie``: Werkzeug's line, from a template built once per attribute set."""
        attributes = self._attributes(app)
        key = tuple(attributes.values())
        templates = self._templates
        try:
            template = templates[key]
        except KeyError:
            if len(templates) >= 32:
                templates.clear()
            template = templates[key] = _template(attributes)
        except TypeError:  # an unhashable attribute from an overridden get_cookie_*
            template = None
        werkzeug_set_cookie = type(response).set_cookie is _WERKZEUG_SET_COOKIE
        own_set_cookie = not werkzeug_set_cookie or "set_cookie" in vars(response)
        if template is not None and not own_set_cookie and _PLAIN_VALUE.fullmatch(value):
            head, tail, before, after = template
            if expires is None:
                line = f"{head}{value}{tail}"
            else:
                # Werkzeug dates a number through a datetime, which rounds it to the microsecond.
                line = f"{head}{value}{before}{http_date(round(expires, 6))}{after}"
            # Werkzeug warns about a line longer than this; let it, by building that one itself.
            if getattr(type(response), "max_cookie_size", None) is _FLASK_MAX_COOKIE_SIZE:
                limit: int = app.config["MAX_COOKIE_SIZE"]
            else:
                limit = response.max_cookie_size
            if len(line) <= limit:
                response.headers.add("Set-Cookie", line)
                return
        response.set_cookie(value=value, expires=expires, **attributes)

    @staticmethod
    def _unavailable(response: Response) -> None:
        """Turn ``response`` into the suite's outage answer: 503, ``Retry-After``, no cookie."""
        response.status_code = UNAVAILABLE_STATUS
        response.set_data(UNAVAILABLE_BODY)
        response.content_type = "text/plain; charset=utf-8"
        response.headers["Retry-After"] = str(RETRY_AFTER)
        del response.headers["Set-Cookie"]  # every one: nothing unsaved is confirmed

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        _vary_cookie(response)
        response.delete_cookie(**self._attributes(app))

    def _attributes(self, app: Flask) -> dict[str, Any]:
        """The session cookie's attributes from Flask's config, for setting and deleting it alike."""
        return {
            "key": self.get_cookie_name(app),
            "path": self.get_cookie_path(app),
            "domain": self.get_cookie_domain(app),
            "secure": self.get_cookie_secure(app),
            "httponly": self.get_cookie_httponly(app),
            "samesite": self.get_cookie_samesite(app),
            "partitioned": self.get_cookie_partitioned(app),
        }


def _vary_cookie(response: Response) -> None:
    """Add ``Cookie`` to the response's ``Vary``, as ``response.vary.add("Cookie")`` does.

    The common cases skip Werkzeug's parse and rewrite of the header: no
    ``Vary`` yet, or one that is ``Cookie`` already. (``getlist``, since
    ``get`` of a missing header raises and catches an HTTP exception.)
    """
    headers = response.headers
    current = headers.getlist("Vary")
    if not current:
        headers.add("Vary", "Cookie")
    elif current != ["Cookie"]:
        response.vary.add("Cookie")


__all__ = ["CacheKitSessionInterface", "FlaskSession", "SessionUnavailableError"]
