"""What a store keeps for a session (:class:`SessionState`), and when it ends (:class:`ExpiryPolicy`).

Plain data and pure rules, no I/O: the stores, the :class:`~sessions.session.Session`
mapping and the merge rules (:mod:`sessions.stores._merge`) share them. Also the
merge operations a session records (:func:`apply_op`) and the reserved session
keys (:data:`USER_KEY`, :data:`USER_META_KEY`). Every name here is also
importable from :mod:`sessions.session`, where it was first.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from cachekit.exceptions import ConfigurationError

Clock = Callable[[], float]

#: Two weeks, Django's ``SESSION_COOKIE_AGE``.
DEFAULT_AGE = 14 * 24 * 3600

_NUMBERS = frozenset({int, float})

#: The session key that holds the owner's id after :meth:`Session.set_user`.
USER_KEY = "cachekit.user"
#: A fingerprint of the metadata last given to :meth:`Session.set_user`.
USER_META_KEY = "cachekit.user_meta"

#: The merge operations a session records: ``incr``, ``append``, ``add``, ``discard``.
MERGE_OPS = frozenset({"incr", "append", "add", "discard"})


def apply_op(data: dict[str, Any], key: str, op: str, arg: Any, *, strict: bool = False) -> Any:
    """Apply one merge operation to ``data[key]`` in place and return the new value.

    ``incr`` adds ``arg`` to an int (a missing key counts as 0); ``append`` adds
    ``arg`` at the end of a list; ``add`` appends ``arg`` unless the list holds
    it (a set kept as a JSON list); ``discard`` removes it if present.

    :param strict: raise :class:`TypeError` when the current value has the
        wrong type (the caller's own copy); otherwise (a stored copy another
        request changed) the operation starts from an empty value, so a save
        never fails on someone else's assignment.
    """
    current = data.get(key)
    if op == "incr":
        if current is None or type(current) is not int:
            if current is not None and strict:
                raise TypeError(
                    f"session.incr({key!r}) needs an int, the session holds {type(current).__name__}."
                )
            current = 0
        value: Any = current + arg
    else:
        if current is None or type(current) is not list:
            if current is not None and strict:
                raise TypeError(
                    f"session.{op}({key!r}) needs a list, the session holds {type(current).__name__}."
                )
            current = []
        if op == "append" or (op == "add" and arg not in current):
            value = [*current, arg]
        elif op == "discard":
            value = [item for item in current if item != arg]
        else:
            value = current
    data[key] = value
    return value


def _positive(value: Any, setting: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == math.inf:
        raise ConfigurationError(
            f"{setting} must be a positive number of seconds, got {value!r}.", setting=setting
        )
    return float(value)


@dataclass(frozen=True)
class ExpiryPolicy:
    """When sessions expire; each store holds one.

    :param age: absolute lifetime in seconds (``SESSION_COOKIE_AGE``).
    :param idle_timeout: seconds of inactivity after which the session ends
        (``SESSION_IDLE_TIMEOUT``); ``None`` disables it.
    :param refresh_interval: least seconds between two writes that only record
        activity (``SESSION_IDLE_REFRESH_INTERVAL``); default a tenth of
        ``idle_timeout``.
    :param expire_at_browser_close: send cookies without ``Max-Age``/``Expires``
        (``SESSION_EXPIRE_AT_BROWSER_CLOSE``).
    :raises ConfigurationError: naming the setting that is not a positive number.
    """

    age: float = DEFAULT_AGE
    idle_timeout: float | None = None
    refresh_interval: float | None = None
    expire_at_browser_close: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "age", _positive(self.age, "SESSION_COOKIE_AGE"))
        idle = _positive(self.idle_timeout, "SESSION_IDLE_TIMEOUT", allow_none=True)
        object.__setattr__(self, "idle_timeout", idle)
        refresh = _positive(self.refresh_interval, "SESSION_IDLE_REFRESH_INTERVAL", allow_none=True)
        if refresh is None and idle is not None:
            refresh = idle / 10
        object.__setattr__(self, "refresh_interval", refresh)
        if not isinstance(self.expire_at_browser_close, bool):
            raise ConfigurationError(
                f"SESSION_EXPIRE_AT_BROWSER_CLOSE must be a bool, got {self.expire_at_browser_close!r}.",
                setting="SESSION_EXPIRE_AT_BROWSER_CLOSE",
            )

    def expires_at(self, state: SessionState) -> float:
        """Return the Unix time at which ``state`` expires."""
        expiry = state.expiry
        end = expiry if expiry else state.created + self.age
        if self.idle_timeout is not None:
            end = min(end, state.last_active + self.idle_timeout)
        return end

    def cookie_expires(self, state: SessionState) -> float | None:
        """Return the Unix time the cookie for ``state`` expires, or ``None`` if it ends with the browser."""
        expiry = state.expiry
        if expiry is None:
            if self.expire_at_browser_close:
                return None
            end = state.created + self.age
        elif expiry == 0:
            return None
        else:
            end = expiry
        if self.idle_timeout is not None:
            end = min(end, state.last_active + self.idle_timeout)
        return end

    def browser_session(self, state: SessionState) -> bool:
        """Return whether the cookie for ``state`` should end with the browser."""
        if state.expiry is None:
            return self.expire_at_browser_close
        return state.expiry == 0

    def needs_refresh(self, state: SessionState, now: float) -> bool:
        """Return whether enough time passed since the last activity to record a new one."""
        interval = self.refresh_interval
        return interval is not None and now - state.last_active >= interval


@dataclass
class SessionState:
    """What a store keeps for one session: the data and its timestamps (Unix seconds).

    ``expiry`` is what :meth:`Session.set_expiry` chose: ``None`` (the policy
    decides), ``0`` (ends with the browser) or a Unix time.
    """

    data: dict[str, Any]
    created: float
    last_active: float
    expiry: float | None = None
    # The two below are not constructor arguments: their defaults stay class
    # attributes until a store sets them, so building a state costs less.
    #: Not stored: the store asks for a save, e.g. to re-sign with the current key.
    stale: bool = field(default=False, init=False, compare=False)
    #: Not stored: private to the store that loaded the state (``CacheStore``
    #: keeps the cache key and the compare-and-set token here).
    token: Any = field(default=None, init=False, compare=False, repr=False)
    #: Stored when set: makes a record that carries merge operations unique, so a
    #: backend whose compare-and-set compares values (Redis) cannot take two
    #: writers' equal records for one write and lose an increment.
    nonce: str | None = field(default=None, init=False, compare=False, repr=False)
    #: Stored when set: the expiry the owner's index lists this session with (a
    #: server-side store with :meth:`Session.set_user`). While the session's latest
    #: expiry stays at or before it, a save leaves the index alone; ``None`` (an
    #: older record, or no owner) means "not indexed yet".
    indexed_until: float | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def new(cls, now: float) -> SessionState:
        """Return an empty state created at ``now``."""
        return cls({}, now, now)

    def to_record(self) -> dict[str, Any]:
        """Return the mapping a store serializes."""
        # Milliseconds are precision enough and keep cookies short.
        record: dict[str, Any] = {
            "d": self.data,
            "c": round(self.created, 3),
            "a": round(self.last_active, 3),
        }
        if self.expiry is not None:
            record["x"] = round(self.expiry, 3)
        if self.nonce is not None:
            record["u"] = self.nonce
        if self.indexed_until is not None:
            record["i"] = round(self.indexed_until, 3)
        return record

    @classmethod
    def from_record(cls, record: Any) -> SessionState:
        """Rebuild a state from :meth:`to_record`'s mapping.

        :raises ValueError: if ``record`` does not have that shape.
        """
        if not isinstance(record, dict):
            raise ValueError(f"session record must be an object, got {type(record).__name__}")
        try:
            data, created, active = record["d"], record["c"], record["a"]
        except KeyError:
            raise ValueError("session record is malformed") from None
        expiry = record.get("x")
        if (
            type(data) is not dict
            or type(created) not in _NUMBERS
            or type(active) not in _NUMBERS
            or not (expiry is None or type(expiry) in _NUMBERS)
        ):
            raise ValueError("session record is malformed")
        state = cls(data, created, active, expiry)
        until = record.get("i")
        if until is not None:
            if type(until) not in _NUMBERS:
                raise ValueError("session record is malformed")
            state.indexed_until = until
        return state

    def copy(self) -> SessionState:
        """Return a copy whose data dict can change independently."""
        return SessionState(dict(self.data), self.created, self.last_active, self.expiry)
