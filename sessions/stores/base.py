"""The Store protocol every session store implements, and shared plumbing.

A store turns a cookie value into a :class:`~sessions.session.SessionState`
and back. Server-side stores (:class:`~sessions.stores.cache.CacheStore`)
put a random id in the cookie and keep the data; cookie stores
(:class:`~sessions.stores.cookie.SignedCookieStore`) put the signed data
itself in the cookie. Both pass the same conformance suite
(``tests/sessions/test_store_conformance.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import ClassVar
from typing import Protocol
from typing import TypedDict
from typing import runtime_checkable

from cachekit.exceptions import SerializationError
from cachekit.serializers import Serializer
from sessions.serializers import TaggedJSONSerializer
from sessions.state import DEFAULT_AGE
from sessions.state import ExpiryPolicy
from sessions.state import SessionState

if TYPE_CHECKING:
    from sessions.session import Session


@runtime_checkable
class StoreAttributes(Protocol):
    """What every store, sync (:class:`Store`) or async (:class:`~sessions.aio.AsyncStore`), has."""

    # Read-only properties, so a store may compute them (RequestStore does).
    @property
    def server_side(self) -> bool:
        """True when the store keeps the data (so ``delete`` revokes a session and
        concurrent saves merge); False for cookie stores."""
        ...

    @property
    def policy(self) -> ExpiryPolicy:
        """When sessions expire."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """Wall clock (Unix seconds); tests pass a fake one."""
        ...

    @property
    def serializer(self) -> Serializer:
        """Turns session data into bytes; JSON-based, never pickle."""
        ...


@runtime_checkable
class Store(StoreAttributes, Protocol):
    """Loads, creates, saves and deletes sessions named by their cookie value."""

    def load(self, cookie_value: str) -> SessionState | None:
        """Return the live session named by ``cookie_value``, or ``None``.

        ``None`` covers unknown, expired, tampered and malformed values alike.
        """
        ...

    def create(self, state: SessionState) -> str:
        """Store ``state`` under a new id that was never used; return the cookie value."""
        ...

    def save(self, session: Session) -> str:
        """Persist the session's changes (creating or cycling it as needed); return the cookie value.

        :raises SessionConflictError: if the stored session vanished meanwhile.
        """
        ...

    def delete(self, cookie_value: str) -> None:
        """Forget the session named by ``cookie_value`` (a no-op for cookie stores)."""
        ...

    def exists(self, cookie_value: str) -> bool:
        """Return whether ``cookie_value`` names a live session."""
        ...

    def cycle(self, session: Session) -> str:
        """Store the session's data under a new id and delete the old one; return the cookie value."""
        ...


class StoreOptions(TypedDict, total=False):
    """The keyword arguments of :class:`StoreBase`, which every bundled store takes (its defaults apply)."""

    age: float
    idle_timeout: float | None
    refresh_interval: float | None
    expire_at_browser_close: bool
    serializer: Serializer | None
    clock: Callable[[], float]


class StoreBase:
    """Expiry policy, clock and serializer handling shared by the bundled stores, sync and async.

    Sync stores derive from :class:`BaseStore`, which adds :meth:`~BaseStore.exists`.

    :param age: absolute lifetime in seconds (``SESSION_COOKIE_AGE``).
    :param idle_timeout: seconds of inactivity before the session ends, or ``None``.
    :param refresh_interval: least seconds between activity-only writes.
    :param expire_at_browser_close: send cookies without ``Max-Age``.
    :param serializer: defaults to :class:`~sessions.serializers.TaggedJSONSerializer`.
    :param clock: Unix time in seconds.
    """

    server_side: ClassVar[bool] = True

    def __init__(
        self,
        *,
        age: float = DEFAULT_AGE,
        idle_timeout: float | None = None,
        refresh_interval: float | None = None,
        expire_at_browser_close: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: When sessions expire.
        self.policy = ExpiryPolicy(age, idle_timeout, refresh_interval, expire_at_browser_close)
        #: Turns session data into bytes.
        self.serializer: Serializer = serializer or TaggedJSONSerializer()
        #: Wall clock in Unix seconds.
        self.clock = clock

    def _live(self, state: SessionState) -> bool:
        return self.policy.expires_at(state) > self.clock()

    def _unstorable(self, state: SessionState, exc: SerializationError) -> SerializationError:
        """Turn a failed save into an error naming the first key that cannot be stored."""
        for key, value in state.data.items():
            try:
                self.serializer.dumps({key: value})
            except SerializationError as inner:
                return SerializationError(f"Cannot store session[{key!r}]: {inner}", key=key)
        return exc

    def _dump(self, state: SessionState) -> bytes:
        """Serialize ``state`` for storage.

        :raises SerializationError: naming the key whose value cannot be stored.
        """
        try:
            return self.serializer.dumps(state.to_record())
        except SerializationError as exc:
            raise self._unstorable(state, exc) from exc

    def _next_state(self, session: Session, *, fresh: bool) -> SessionState:
        """The state to write now: activity recorded, and a new creation time for new ids."""
        state = session.state.copy()
        now = self.clock()
        state.last_active = now
        if fresh:
            state.created = now
        return state


class BaseStore(StoreBase):
    """:class:`StoreBase` for a sync store: ``exists`` from ``load``, which the store defines."""

    def load(self, cookie_value: str) -> SessionState | None:
        """Return the live session named by ``cookie_value``, or ``None`` (each store defines it)."""
        raise NotImplementedError

    def exists(self, cookie_value: str) -> bool:
        """Return whether ``cookie_value`` names a live session."""
        return self.load(cookie_value) is not None


__all__ = ["BaseStore", "Store", "StoreAttributes", "StoreBase", "StoreOptions"]
