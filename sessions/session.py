"""The session: a mapping that remembers which keys were read, changed and deleted.

A :class:`Session` is built per request from the cookie the client sent and a
store (:mod:`sessions.stores`). Nothing is read from the store until the app
first touches the session. The store then saves only what changed: the changed
and deleted keys are applied to the latest stored copy, so two overlapping
requests that change different keys both keep their writes.

Values must be JSON types, ``datetime``, ``date``, ``Decimal`` or ``UUID`` (see
:mod:`sessions.serializers`). A value that cannot be stored raises
:class:`~cachekit.exceptions.SerializationError` naming the key, at assignment
or, for a nested value changed in place, at save.

Changing a nested value in place (``session["cart"].append(item)``) is not seen;
assign the value again or set ``session.modified = True``.

**Merged updates.** Plain assignment saves the value: for the same key, the
last save wins. :meth:`Session.incr`, :meth:`Session.append`,
:meth:`Session.add` and :meth:`Session.discard` instead record an operation
that a server-side store replays on the latest stored copy at save time
(inside its compare-and-set), so 40 concurrent ``incr`` end at 40. A cookie
store cannot merge: there the operation only changes this request's copy.

Expiry, computed by an :class:`~sessions.state.ExpiryPolicy` (in :mod:`sessions.state`
with :class:`~sessions.state.SessionState`, both importable from here too):

* absolute lifetime: ``age`` seconds after the session was created (or its key
  cycled at login); :meth:`Session.set_expiry` replaces it for one session;
* idle timeout: ``idle_timeout`` seconds after the last request that used the
  session, refreshed at most once per ``refresh_interval`` so that reads do not
  write on every request;
* both at once: whichever comes first;
* browser-length: no ``Max-Age`` on the cookie (the server still forgets the
  session after ``age``).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
from collections.abc import Iterator
from collections.abc import MutableMapping
from typing import TYPE_CHECKING
from typing import Any

from cachekit.exceptions import SerializationError
from sessions.serializers import TaggedJSONSerializer
from sessions.state import DEFAULT_AGE
from sessions.state import MERGE_OPS
from sessions.state import USER_KEY
from sessions.state import USER_META_KEY
from sessions.state import ExpiryPolicy
from sessions.state import SessionState
from sessions.state import apply_op

if TYPE_CHECKING:
    from sessions.stores.base import Store

_ATOMS = frozenset({str, int, float, bool, type(None)})
_UTC = datetime.timezone.utc
_STR = frozenset({str})

#: How many set_user() fingerprints of str-only metadata are remembered (see ``_str_fingerprint``).
_FINGERPRINTS_MAX = 256
_TAGGED_JSON = TaggedJSONSerializer()


def _digest(encoded: bytes) -> str:
    return hashlib.sha256(encoded).hexdigest()[:16]


@functools.lru_cache(maxsize=_FINGERPRINTS_MAX)
def _str_fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    """The fingerprint of metadata whose keys and values are all exact str, by its items.

    Remembered for the default serializer: an app calls set_user() with the same
    metadata on every request. Equal str items mean equal JSON; other values may be
    equal yet encode apart (1 and True), and a str subclass may compare equal to a
    str it does not serialize as, so only exact str are remembered.
    """
    return _digest(_TAGGED_JSON.dumps(dict(items)))


def _fingerprint(serializer: Any, metadata: dict[str, Any]) -> str:
    """The first 16 hex digits of the SHA-256 of ``metadata`` serialized.

    :raises SerializationError: if ``metadata`` cannot be stored.
    """
    if (
        type(serializer) is TaggedJSONSerializer
        and _STR.issuperset(map(type, metadata))
        and _STR.issuperset(map(type, metadata.values()))
    ):
        return _str_fingerprint(tuple(metadata.items()))
    try:
        encoded = serializer.dumps(metadata)
    except (SerializationError, TypeError, ValueError) as exc:
        raise SerializationError(f"Cannot store set_user() metadata: {exc}", key=USER_KEY) from exc
    return _digest(encoded)


class Session(MutableMapping[str, Any]):
    """One client's session data, loaded lazily and saved as a delta.

    :param store: where the session lives.
    :param cookie_value: what the client sent in the session cookie, if anything.
        It is only used if the store holds a live session for it: an unknown id
        is never adopted.
    """

    # Flags start as class attributes: one session is built per request, and
    # most of them never change these.
    #: True once the session was read or written in any way.
    accessed: bool = False
    _state: SessionState | None = None
    _key: str | None = None
    _modified: bool = False
    _expiry_changed: bool = False
    _cycle: bool = False
    _flushed: bool = False
    _ops: dict[str, list[tuple[str, Any]]] | None = None
    _pending_user: tuple[str | int, dict[str, Any]] | None = None

    def __init__(self, store: Store, cookie_value: str | None = None) -> None:
        #: The store this session loads from and saves to.
        self.store = store
        #: The cookie value the client sent, or ``None``.
        self.cookie_value = cookie_value
        #: The keys the app read.
        self.accessed_keys: set[str] = set()
        self._changed: set[str] = set()
        self._deleted: set[str] = set()

    def __repr__(self) -> str:
        if self._state is None:
            return f"<Session (not loaded) store={type(self.store).__name__}>"
        # Keys only: values and the session key are secrets.
        return f"<Session keys={sorted(self._state.data)!r} modified={self._modified}>"

    # -- loading ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The loaded state (loading it on first use); for stores."""
        state = self._state
        if state is None:
            state = self._load()
        return state

    def _load(self) -> SessionState:
        state = None
        if self.cookie_value:
            state = self.store.load(self.cookie_value)
        if state is None:
            state = SessionState.new(self.store.clock())
        else:
            self._key = self.cookie_value
        self._state = state
        return state

    @property
    def loaded(self) -> bool:
        """Whether the store has been read for this session."""
        return self._state is not None

    @property
    def session_key(self) -> str | None:
        """The id of a stored session (the cookie value), or ``None`` for a new one."""
        if self._state is None:
            self._load()
        return self._key

    @property
    def stored(self) -> bool:
        """Whether the session was loaded and is a stored one (not new); never loads it."""
        return self._key is not None and self._state is not None

    @property
    def is_new(self) -> bool:
        """True when the session is not stored yet."""
        if self._state is None:
            self._load()
        return self._key is None

    # -- mapping ---------------------------------------------------------------

    # The state is read as ``(self._state or self._load())`` below, not through the
    # ``state`` property: this is every request's path, and a state is always truthy.

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        self.accessed_keys.add(key)
        return (self._state or self._load()).data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value under ``key``, or ``default``."""
        self.accessed = True
        self.accessed_keys.add(key)
        return (self._state or self._load()).data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"Session keys must be str, got {type(key).__name__} {key!r}.")
        if type(value) not in _ATOMS or (type(value) is float and not math.isfinite(value)):
            self._check(key, value)
        data = (self._state or self._load()).data
        self.accessed = True
        data[key] = value
        self._changed.add(key)
        self._deleted.discard(key)
        self._modified = True
        if self._ops:
            self._ops.pop(key, None)

    def __delitem__(self, key: str) -> None:
        data = self.state.data
        self.accessed = True
        del data[key]
        if self._ops:
            self._ops.pop(key, None)
        self._deleted.add(key)
        self._changed.discard(key)
        self._modified = True

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(list(self.state.data))

    def __len__(self) -> int:
        self.accessed = True
        return len(self.state.data)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        if isinstance(key, str):
            self.accessed_keys.add(key)
        return key in self.state.data

    def clear(self) -> None:
        """Delete every key; the session keeps its id (see :meth:`flush` for logout)."""
        data = self.state.data
        self.accessed = True
        self._deleted.update(data)
        self._changed.clear()
        self._ops = None
        data.clear()
        self._modified = True

    # -- merged updates --------------------------------------------------------

    def _record(self, key: str, op: str, arg: Any) -> Any:
        if type(key) is not str:
            raise TypeError(f"Session keys must be str, got {type(key).__name__} {key!r}.")
        data = (self._state or self._load()).data
        value = apply_op(data, key, op, arg, strict=True)
        self.accessed = True
        self._modified = True
        if key in self._changed or key in self._deleted:
            # Assigned or deleted earlier in this request: the value is ours, saved as a plain write.
            self._deleted.discard(key)
            self._changed.add(key)
        else:
            ops = self._ops
            if ops is None:
                ops = self._ops = {}
            ops.setdefault(key, []).append((op, arg))
        return value

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the int under ``key`` (0 if absent) and return the new value.

        A server-side store adds ``delta`` to the latest stored value at save
        time, so concurrent requests never lose an increment (the value
        returned is this request's view). A cookie store cannot merge.

        :raises TypeError: if ``delta`` or the value held is not an int.
        """
        if type(delta) is not int:
            raise TypeError(f"session.incr() takes an int delta, got {delta!r}.")
        value: int = self._record(key, "incr", delta)
        return value

    def append(self, key: str, value: Any) -> None:
        """Append ``value`` to the list under ``key`` (created if absent), merged at save time.

        :raises TypeError: if the value held is not a list.
        """
        self._check_op(key, value)
        self._record(key, "append", value)

    def add(self, key: str, value: Any) -> None:
        """Add ``value`` to the set under ``key`` (a list without duplicates), merged at save time.

        :raises TypeError: if the value held is not a list.
        """
        self._check_op(key, value)
        self._record(key, "add", value)

    def discard(self, key: str, value: Any) -> None:
        """Remove ``value`` from the list under ``key`` if it is there, merged at save time.

        :raises TypeError: if the value held is not a list.
        """
        self._check_op(key, value)
        self._record(key, "discard", value)

    def _check_op(self, key: str, value: Any) -> None:
        if type(value) not in _ATOMS or (type(value) is float and not math.isfinite(value)):
            self._check(key, value)

    # -- the owner -------------------------------------------------------------

    def set_user(self, user_id: str | int, **metadata: Any) -> None:
        """Record who owns this session (call it at login, after :meth:`cycle_key`).

        The store then lists the session in :meth:`sessions_of` and ends it in
        ``revoke_user(user_id)``. ``metadata`` (JSON values, e.g.
        ``user_agent=...``, ``address=...``) is kept with the listing; the
        creation and last-seen times come from the session itself.

        Calling it again with the same owner and metadata on a stored session
        changes nothing and costs no write.

        :raises TypeError: if ``user_id`` is not a str or an int.
        :raises SerializationError: if ``metadata`` cannot be stored.
        """
        if type(user_id) not in (str, int):
            raise TypeError(f"set_user() takes a str or int user id, got {type(user_id).__name__}.")
        fingerprint = _fingerprint(self.store.serializer, metadata)
        data = (self._state or self._load()).data
        self.accessed = True
        if (
            self._key is not None
            and not self._cycle
            and data.get(USER_META_KEY) == fingerprint
            and data.get(USER_KEY) == user_id
            and type(data.get(USER_KEY)) is type(user_id)
        ):
            return
        self[USER_KEY] = user_id
        self[USER_META_KEY] = fingerprint
        self._pending_user = (user_id, metadata)

    @property
    def user_id(self) -> str | int | None:
        """The owner recorded by :meth:`set_user`, or ``None``."""
        value: str | int | None = (self._state or self._load()).data.get(USER_KEY)
        return value

    @property
    def pending_user(self) -> tuple[str | int, dict[str, Any]] | None:
        """``(user_id, metadata)`` from :meth:`set_user` not saved yet; for stores."""
        return self._pending_user

    @property
    def pending_ops(self) -> dict[str, tuple[tuple[str, Any], ...]]:
        """The merge operations recorded since the load or last save, per key, in order; for stores."""
        ops = self._ops
        return {key: tuple(items) for key, items in ops.items()} if ops else {}

    def _check(self, key: str, value: Any) -> None:
        try:
            self.store.serializer.dumps(value)
        except (SerializationError, TypeError, ValueError) as exc:
            raise SerializationError(
                f"Cannot store session[{key!r}] = {type(value).__name__}: {exc}", key=key
            ) from exc

    # -- change tracking (for stores and middleware) ---------------------------

    @property
    def modified(self) -> bool:
        """Whether the session must be saved: data, expiry or key changed."""
        return self._modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._set_modified(value)

    def _set_modified(self, value: bool) -> None:
        # Marking a session modified by hand (after an in-place change of a nested
        # value) re-saves every key this request sees. (A method, so a subclass that
        # overrides the property, as the Flask session does, can still call it.)
        if value:
            self._changed.update(self.state.data)
            self.accessed = True
        self._modified = bool(value)

    @property
    def changed_keys(self) -> frozenset[str]:
        """Keys set since the session was loaded or last saved."""
        return frozenset(self._changed)

    @property
    def deleted_keys(self) -> frozenset[str]:
        """Keys deleted since the session was loaded or last saved."""
        return frozenset(self._deleted)

    @property
    def expiry_changed(self) -> bool:
        """Whether :meth:`set_expiry` was called since the last save."""
        return self._expiry_changed

    @property
    def cycle_pending(self) -> bool:
        """Whether :meth:`cycle_key` asked for a new id at the next save."""
        return self._cycle

    @property
    def flushed(self) -> bool:
        """Whether :meth:`flush` was called during this request."""
        return self._flushed

    def saved(self, key: str, state: SessionState) -> None:
        """Record a successful save under ``key``; called by stores."""
        self._key = key
        self._state = state
        self._changed.clear()
        self._deleted.clear()
        self._ops = None
        self._pending_user = None
        self._modified = self._expiry_changed = self._cycle = False

    def needs_save(self, *, save_every_request: bool = False) -> bool:
        """Whether the middleware should save at the end of the request.

        A session is saved when it changed, when its store asks (a cookie signed
        with an old key), when the idle timeout needs fresh activity recorded, or
        on every request that used it with ``save_every_request``. A new session
        with no data is never stored.
        """
        state = self._state
        if state is None:
            return False
        if self._key is None:
            return bool(state.data) and (self._modified or save_every_request)
        if self._modified or state.stale or save_every_request:
            return True
        return self.store.policy.needs_refresh(state, self.store.clock())

    # -- lifecycle -------------------------------------------------------------

    def save(self) -> str:
        """Save the session through its store and return the cookie value to send.

        :raises SessionConflictError: if the session was deleted or expired meanwhile.
        :raises CookieTooLargeError: if a cookie store cannot hold the data.
        :raises BackendUnavailableError: if a server-side store's cache is down.
        """
        return self.store.save(self)

    def cycle_key(self) -> None:
        """Give the session a new id at the next save, keeping its data; the old id is deleted.

        Call it on login, so an id planted before login (fixation) is worthless after.
        """
        self.state  # noqa: B018  (load now: the old id must be known to delete it)
        self.accessed = True
        if self._key is not None:
            self._cycle = True
            self._modified = True

    def flush(self) -> None:
        """Delete the session from the store now and start an empty one with no id: logout.

        The middleware then deletes the client's cookie, unless new data is stored.
        """
        self.state  # noqa: B018
        if self._key is not None:
            self.store.delete(self._key)
        self._state = SessionState.new(self.store.clock())
        self._key = None
        self._changed.clear()
        self._deleted.clear()
        self._ops = None
        self._pending_user = None
        self.accessed = True
        self._modified = self._expiry_changed = self._cycle = False
        self._flushed = True

    def set_expiry(self, value: float | datetime.datetime | datetime.timedelta | None) -> None:
        """Choose when this session expires, replacing the absolute lifetime.

        :param value: seconds or a ``timedelta`` from now; an aware ``datetime``
            (a naive one is taken as UTC); ``0`` to end with the browser (the
            server still forgets it after the policy's ``age``); ``None`` to go
            back to the policy. An idle timeout still applies in every case.
        """
        state = self.state
        now = self.store.clock()
        expiry: float | None
        if value is None:
            expiry = None
        elif isinstance(value, datetime.datetime):
            when = value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
            expiry = when.timestamp()
        elif isinstance(value, datetime.timedelta):
            expiry = now + value.total_seconds()
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            expiry = 0.0 if value == 0 else now + value
        else:
            raise TypeError(f"set_expiry() takes seconds, a datetime, a timedelta or None, got {value!r}.")
        state.expiry = expiry
        self.accessed = True
        self._expiry_changed = True
        self._modified = True

    def get_expiry_age(self) -> float:
        """Return the seconds left before the session expires (never negative)."""
        return max(0.0, self.store.policy.expires_at(self.state) - self.store.clock())

    def get_expiry_date(self) -> datetime.datetime:
        """Return the moment the session expires, as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.store.policy.expires_at(self.state), _UTC)

    def get_expire_at_browser_close(self) -> bool:
        """Return whether the session cookie ends with the browser."""
        return self.store.policy.browser_session(self.state)


__all__ = [
    "DEFAULT_AGE",
    "MERGE_OPS",
    "USER_KEY",
    "USER_META_KEY",
    "ExpiryPolicy",
    "Session",
    "SessionState",
    "apply_op",
]
