"""A Django ``SESSION_ENGINE`` backed by any cachekit session store.

In ``settings.py``::

    CACHES = {"default": {"BACKEND": "cachekit.contrib.django.CacheBackend",
                          "LOCATION": "redis://127.0.0.1:6379/0"}}
    SESSION_ENGINE = "sessions.contrib.django"

``request.session`` then behaves as Django documents (``cycle_key``, ``flush``,
``set_expiry``, the async ``a*`` methods, :class:`SessionInterrupted` when a
concurrent request deleted the session), while the data lives in a cachekit
store. By default that is a :class:`~sessions.stores.cache.CacheStore` on the
cachekit cache named by ``SESSION_CACHE_ALIAS``, which must use
``cachekit.contrib.django.CacheBackend``; ``SESSION_COOKIE_AGE`` and
``SESSION_EXPIRE_AT_BROWSER_CLOSE`` set its expiry policy. Any other store is
chosen with ``CACHEKIT_SESSION_STORE``: a :class:`~sessions.stores.base.Store`,
a callable returning one, or the dotted path of either.

What it adds to Django's cache engine: **no lost updates**. A save applies only
the keys this request changed or deleted (found by comparing with a copy taken
at load, so values changed in place count too once ``modified`` is set) to the
latest stored copy, so overlapping requests that change different keys both
keep their writes. A cache outage raises
:class:`~cachekit.exceptions.BackendUnavailableError` instead of silently
starting an empty session (Django's cache engine swallows it).

**Outages** get the suite's one answer, ``503 Service Unavailable`` with
``Retry-After``, when you use this module's :class:`SessionMiddleware` in place
of Django's (``"sessions.contrib.django.SessionMiddleware"`` in ``MIDDLEWARE``):
it is Django's session middleware, plus the 503 for an outage met while the
view reads the session or while the response saves it. With Django's own
middleware an outage is a 500.

A session whose ``set_expiry()`` lies in the past (``set_expiry(-10)``) saves
as in Django: nothing is stored, any stored copy is deleted, and the cookie
Django sends is already expired.

What differs: the store, not Django, picks session ids, so
``save(must_create=True)`` stores the data under a *fresh* id rather than the
current one (never overwriting an existing session, which is what the flag
guards). ``clear_expired()`` does nothing: stores expire sessions themselves.
"""

from __future__ import annotations

import copy
import datetime
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.http import HttpResponse
from django.utils.module_loading import import_string

from cachekit.cache import Cache
from cachekit.exceptions import BackendUnavailableError
from cachekit.pages.wsgi import SESSION_ENVIRON_KEY
from sessions.contrib import RETRY_AFTER
from sessions.contrib import UNAVAILABLE_BODY
from sessions.contrib import UNAVAILABLE_STATUS
from sessions.exceptions import SessionConflictError
from sessions.exceptions import SessionCreateError
from sessions.session import Session
from sessions.state import USER_KEY
from sessions.state import apply_op
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore

#: The Django setting naming a custom store.
STORE_SETTING = "CACHEKIT_SESSION_STORE"
#: Where Django keeps a per-session expiry in the session data.
EXPIRY_KEY = "_session_expiry"

logger = logging.getLogger(__name__)
_stores: dict[tuple[Any, ...], Store] = {}
_stores_guard = threading.Lock()
_MISSING = object()


def _reset_stores(*, setting: str, **kwargs: Any) -> None:
    if setting in (STORE_SETTING, "CACHES", "SESSION_CACHE_ALIAS") or setting.startswith("SESSION_"):
        with _stores_guard:
            _stores.clear()


setting_changed.connect(_reset_stores, dispatch_uid="sessions.contrib.django")


def _default_store() -> Store:
    from django.core.cache import caches

    from cachekit.contrib.django import CacheBackend

    alias = settings.SESSION_CACHE_ALIAS
    django_cache = caches[alias]
    if not isinstance(django_cache, CacheBackend):
        raise ImproperlyConfigured(
            f"SESSION_ENGINE 'sessions.contrib.django' keeps sessions in CACHES[{alias!r}], which must use "
            f"'cachekit.contrib.django.CacheBackend' (it uses {type(django_cache).__name__}); or set "
            f"{STORE_SETTING} to a cachekit session store."
        )
    # Django's cache builds its own keys; sessions get cachekit's key function
    # under the same prefix, and JSON, never pickle (CacheStore sees to that).
    cache = Cache(
        django_cache.cache.backend,
        default_timeout=None,
        key_prefix=django_cache.key_prefix,
        on_error=django_cache.cache.on_error,
        name=f"django:{alias}",
    )
    return CacheStore(
        cache,
        age=settings.SESSION_COOKIE_AGE,
        expire_at_browser_close=settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
    )


def _build_store(configured: Any) -> Store:
    if configured is None:
        return _default_store()
    found = import_string(configured) if isinstance(configured, str) else configured
    if not isinstance(found, Store) and callable(found):
        found = found()
    if not isinstance(found, Store):
        raise ImproperlyConfigured(
            f"{STORE_SETTING} must be a cachekit session store, a callable returning one, or the dotted "
            f"path of either; got {configured!r}."
        )
    return found


def get_store() -> Store:
    """Return the session store the current settings choose, built once per configuration.

    :raises ImproperlyConfigured: if ``CACHEKIT_SESSION_STORE`` is not a store,
        or (without it) ``CACHES[SESSION_CACHE_ALIAS]`` is not a cachekit cache.
    """
    configured = getattr(settings, STORE_SETTING, None)
    if isinstance(configured, Store):
        return configured
    identity = (
        configured if isinstance(configured, str) else id(configured),
        settings.SESSION_CACHE_ALIAS,
        settings.SESSION_COOKIE_AGE,
        settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
    )
    store = _stores.get(identity)
    if store is None:
        with _stores_guard:
            store = _stores.get(identity)
            if store is None:
                store = _stores[identity] = _build_store(configured)
    return store


def _store_expiry(value: Any) -> float | datetime.datetime | None:
    """Translate Django's ``_session_expiry`` value into :meth:`Session.set_expiry`'s terms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value  # 0: ends with the browser; else seconds from this save, as Django counts them
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if isinstance(value, datetime.datetime):
        # Django writes naive local times when USE_TZ is False.
        return value if value.tzinfo is not None else value.astimezone()
    return None


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's session API over a cachekit :class:`~sessions.stores.base.Store`.

    Subclass it and override :meth:`get_store` to pick a store in code rather
    than in settings.

    :param session_key: the session cookie's value, if the client sent one.
    """

    # A property of SessionBase (validated on assignment); declared for mypy.
    _session_key: str | None

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self.get_store()  # a misconfiguration fails here, when Django makes the session
        # The cachekit session that carries changes to the store, and a deep
        # copy of the data as last loaded or saved: the delta is taken against it.
        self._backing: Session | None = None
        self._snapshot: dict[str, Any] = {}
        # set_user() and merge operations, handed to the backing session at save.
        self._owner: tuple[str | int, dict[str, Any]] | None = None
        self._ops: dict[str, list[tuple[str, Any]]] = {}

    def set_user(self, user_id: str | int, **metadata: Any) -> None:
        """Record the session's owner, as :meth:`sessions.Session.set_user` (call it after ``login()``)."""
        self[USER_KEY] = user_id
        self._owner = (user_id, metadata)

    def _op(self, key: str, op: str, arg: Any) -> Any:
        data = self._get_session()
        # A key assigned in this request is saved as a plain write, the op included.
        plain = key not in self._ops and self._snapshot.get(key, _MISSING) != data.get(key, _MISSING)
        value = apply_op(data, key, op, arg, strict=True)
        if not plain:
            self._ops.setdefault(key, []).append((op, arg))
        self.modified = True
        return value

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to ``key``, merged into the stored value at save (:meth:`sessions.Session.incr`)."""
        value: int = self._op(key, "incr", delta)
        return value

    def append(self, key: str, value: Any) -> None:
        """Append to the list under ``key``, merged at save (:meth:`sessions.Session.append`)."""
        self._op(key, "append", value)

    def add(self, key: str, value: Any) -> None:
        """Add to the set (list) under ``key``, merged at save (:meth:`sessions.Session.add`)."""
        self._op(key, "add", value)

    def discard(self, key: str, value: Any) -> None:
        """Remove from the list under ``key``, merged at save (:meth:`sessions.Session.discard`)."""
        self._op(key, "discard", value)

    def _hand_over(self, backing: Session) -> None:
        for key, ops in self._ops.items():
            for op, arg in ops:
                getattr(backing, op)(key, arg)
        owner = self._owner
        if owner is not None:
            backing.set_user(owner[0], **owner[1])
        elif backing.session_key is None and USER_KEY in backing:
            backing.set_user(backing[USER_KEY])  # cycle_key() of an owned session: index the new id
        self._owner = None
        self._ops = {}

    @classmethod
    def get_store(cls) -> Store:
        """Return the store sessions live in; by default as :func:`get_store` finds it."""
        return get_store()

    @property
    def store(self) -> Store:
        """The cachekit store holding the data, for the settings in force now.

        Looked up on each use, as Django reads ``SESSION_COOKIE_AGE`` and
        ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` live: a settings change reaches
        sessions already made.
        """
        return type(self).get_store()

    def _expired_already(self) -> bool:
        """Whether ``set_expiry()`` put the end of this session in the past (or now)."""
        expiry = self._get_session(no_load=True).get(EXPIRY_KEY)
        if isinstance(expiry, bool):
            return False
        if isinstance(expiry, (int, float)):
            return expiry < 0  # 0 ends with the browser
        when = _store_expiry(expiry)
        return isinstance(when, datetime.datetime) and when.timestamp() <= self.store.clock()

    def _drop_as_expired(self) -> None:
        """Save a session that has expired already, as Django does: nothing stays loadable.

        The stored copy (if any) is deleted and the session gets a fresh id that
        names nothing, so the cookie Django sends (already expired) carries no data.
        """
        if self._session_key is not None:
            self.store.delete(self._session_key)
        self._session_key = secrets.token_urlsafe(32)
        self._backing = None
        self._snapshot = {}
        self.modified = True

    # -- expiry: the store's policy stands in for Django's global settings ------

    def get_session_cookie_age(self) -> int:
        """Return the store's absolute session lifetime, in seconds."""
        return int(self.store.policy.age)

    def get_expire_at_browser_close(self) -> bool:
        """Return whether the cookie ends with the browser (``set_expiry(0)`` or the store's policy)."""
        expiry = self.get(EXPIRY_KEY)
        if expiry is None:
            return self.store.policy.expire_at_browser_close
        return bool(expiry == 0)

    async def aget_expire_at_browser_close(self) -> bool:
        """Async :meth:`get_expire_at_browser_close`."""
        expiry = await self.aget(EXPIRY_KEY)
        if expiry is None:
            return self.store.policy.expire_at_browser_close
        return bool(expiry == 0)

    # -- SessionBase's storage contract ------------------------------------------

    def exists(self, session_key: str | None) -> bool:
        """Return whether ``session_key`` names a live session in the store."""
        return bool(session_key and self.store.exists(session_key))

    def load(self) -> dict[str, Any]:
        """Return the stored data, or an empty dict (and no session key) if there is none.

        :raises BackendUnavailableError: if the store's cache is down.
        """
        backing = Session(self.store, self.session_key)
        if backing.session_key is None:
            self._session_key = None
            self._backing = None
            self._snapshot = {}
            return {}
        self._backing = backing
        data = backing.state.data
        self._snapshot = copy.deepcopy(data)
        return dict(data)

    def create(self) -> None:
        """Store the current data under a new id that was never used.

        :raises CreateError: if the store found no free id.
        """
        if self._expired_already():
            self._drop_as_expired()
            return
        data = self._get_session(no_load=True)
        backing = Session(self.store)
        for key, value in data.items():
            backing[key] = value
        if EXPIRY_KEY in data:
            backing.set_expiry(_store_expiry(data[EXPIRY_KEY]))
        self._ops = {}  # a new session stores its values as they are
        self._hand_over(backing)
        try:
            session_key = backing.save()
        except SessionCreateError as exc:
            raise CreateError(str(exc)) from exc
        self._session_key = session_key
        self._backing = backing
        self._snapshot = copy.deepcopy(data)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Save the session: create it if new, else merge this request's changes into the stored copy.

        :param must_create: store the data as a new session (under a fresh id).
        :raises CreateError: if a new session could not be stored.
        :raises UpdateError: if the session was deleted or expired meanwhile;
            Django's middleware turns it into :class:`SessionInterrupted`.
        :raises BackendUnavailableError: if the store's cache is down.
        """
        if self.session_key is None or must_create:
            self.create()
            return
        data = self._get_session()
        if self.session_key is None:  # loading found nothing: the session is gone
            raise UpdateError
        if self._expired_already():
            self._drop_as_expired()
            return
        backing = self._backing
        if backing is None or backing.session_key != self.session_key:
            # The data was replaced without a load (clear()): learn what is stored.
            backing = Session(self.store, self.session_key)
            if backing.session_key is None:
                raise UpdateError
            self._snapshot = copy.deepcopy(backing.state.data)
        snapshot = self._snapshot
        for key, value in data.items():
            if snapshot.get(key, _MISSING) != value and key not in self._ops:
                backing[key] = value
        for key in snapshot:
            if key not in data and key in backing:
                del backing[key]
        expiry = data.get(EXPIRY_KEY)
        # An int expiry counts from each save, as in Django; others only change when set.
        if expiry != snapshot.get(EXPIRY_KEY) or (isinstance(expiry, (int, float)) and expiry):
            backing.set_expiry(_store_expiry(expiry))
        self._hand_over(backing)
        try:
            session_key = backing.save()
        except SessionConflictError as exc:
            self._backing = None
            raise UpdateError(str(exc)) from exc
        self._session_key = session_key
        self._backing = backing
        self._snapshot = copy.deepcopy(data)

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session ``session_key`` (default: this one) from the store."""
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self.store.delete(session_key)
        if session_key == self.session_key:
            self._backing = None

    @classmethod
    def clear_expired(cls) -> None:
        """Do nothing: stores expire sessions by themselves (cache TTLs, signed timestamps)."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Do nothing, asynchronously."""


def unavailable_response() -> HttpResponse:
    """Return the suite's answer to a session-store outage: 503 with ``Retry-After``."""
    response = HttpResponse(
        UNAVAILABLE_BODY, status=UNAVAILABLE_STATUS, content_type="text/plain; charset=utf-8"
    )
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class _PageSignal:
    """What the page cache reads of a Django session (``cachekit.pages.record.session_use``).

    At ``environ["cachekit.session"]``: whether the view read the session, and
    whether it was a stored one (then the page is one user's and not stored)
    or an anonymous one (then it is kept per ``Cookie``).
    """

    __slots__ = ("_session",)
    flushed = False

    def __init__(self, session: Any) -> None:
        self._session = session

    @property
    def accessed(self) -> bool:
        return bool(self._session.accessed)

    @property
    def modified(self) -> bool:
        return bool(self._session.modified)

    @property
    def loaded(self) -> bool:
        return hasattr(self._session, "_session_cache")

    @property
    def is_new(self) -> bool:
        return self._session.session_key is None  # load() found no stored session


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's session middleware, answering a session-store outage with 503 and ``Retry-After``.

    Put ``"sessions.contrib.django.SessionMiddleware"`` where Django's is in
    ``MIDDLEWARE``; nothing else changes. An outage the view meets (loading the
    session) and one the save meets both become the 503; the view's own
    response is then dropped, so nothing half-saved is confirmed to the client.
    """

    def process_request(self, request: HttpRequest) -> None:
        """Open the session as Django does, and tell a page cache around the app how it is used."""
        super().process_request(request)
        request.META.setdefault(SESSION_ENVIRON_KEY, _PageSignal(request.session))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer 503 for an outage raised inside the view; leave other errors to Django."""
        if isinstance(exception, BackendUnavailableError):
            logger.warning("session store unavailable during the view: %s", exception)
            return unavailable_response()
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Save the session as Django does; answer 503 if the store is down.

        With ``SESSION_COOKIE_PARTITIONED = True`` (Flask's setting name; Django
        has none) the session cookie also carries ``Partitioned`` (CHIPS).
        """
        try:
            result: HttpResponse = super().process_response(request, response)
        except BackendUnavailableError as exc:
            logger.warning("session store unavailable while saving: %s", exc)
            return unavailable_response()
        morsel = result.cookies.get(settings.SESSION_COOKIE_NAME)
        if morsel is not None and getattr(settings, "SESSION_COOKIE_PARTITIONED", False):
            if "partitioned" in morsel._reserved:  # Python 3.14's Morsel knows the attribute
                morsel["partitioned"] = True
            elif "Partitioned" not in morsel["path"]:
                # Older Morsels have no flag for it: it rides after the Path value.
                morsel["path"] = f"{morsel['path'] or '/'}; Partitioned"
        return result


#: ``CACHEKIT_SESSION_STORE`` may also name a factory with this signature.
StoreFactory = Callable[[], Store]

__all__ = [
    "EXPIRY_KEY",
    "STORE_SETTING",
    "SessionMiddleware",
    "SessionStore",
    "StoreFactory",
    "get_store",
    "unavailable_response",
]
