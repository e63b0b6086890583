"""Sessions in async code: the :class:`AsyncStore` protocol and a session's async life cycle.

A :class:`~sessions.session.Session` is a plain mapping whose first access
loads it from its store, synchronously. An async store (such as
:class:`~sessions.stores.aio_cache.AsyncCacheStore`) cannot be called from
there, so async code opens and closes sessions with three coroutines::

    session = await open_session(store, cookie_value)   # awaits the load (if a cookie came)
    session["user"] = "ada"                              # sync mapping, as ever
    await apply_deletes(session)                         # flush()/logout deletes, awaited
    if session.needs_save():
        cookie_value = await save_session(session)

:class:`middleware.AsgiSessionMiddleware` does exactly this. With an async
store the session is loaded *before* the app runs, whenever the request
carries a session cookie, and :meth:`~sessions.session.Session.flush` deletes
the stored session when :func:`apply_deletes` runs (at the end of the
request) rather than at once. A sync store (``SignedCookieStore``, which only
signs and verifies) is used as it is, lazily, with no awaiting at all.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Protocol
from typing import runtime_checkable

from cachekit.serializers import Serializer
from sessions.session import Session
from sessions.state import ExpiryPolicy
from sessions.state import SessionState
from sessions.stores.base import StoreAttributes

if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from sessions.stores.base import Store


@runtime_checkable
class AsyncStore(StoreAttributes, Protocol):
    """The :class:`~sessions.stores.base.Store` protocol with coroutine methods."""

    async def load(self, cookie_value: str) -> SessionState | None:
        """Return the live session named by ``cookie_value``, or ``None``."""
        ...

    async def create(self, state: SessionState) -> str:
        """Store ``state`` under a new id; return the cookie value."""
        ...

    async def save(self, session: Session) -> str:
        """Persist the session's changes; return the cookie value."""
        ...

    async def delete(self, cookie_value: str) -> None:
        """Forget the session named by ``cookie_value``."""
        ...

    async def exists(self, cookie_value: str) -> bool:
        """Return whether ``cookie_value`` names a live session."""
        ...

    async def cycle(self, session: Session) -> str:
        """Store the session's data under a new id and delete the old one; return the cookie value."""
        ...


def is_async_store(store: Store | AsyncStore) -> TypeIs[AsyncStore]:
    """Whether ``store``'s methods are coroutines (an :class:`AsyncStore`) rather than a sync ``Store``."""
    return inspect.iscoroutinefunction(getattr(store, "load", None))


class RequestStore:
    """What a :class:`Session` sees of an async store during one request.

    It hands over the state loaded (awaited) before the app ran, and queues
    the deletes that :meth:`Session.flush` asks for until :func:`apply_deletes`.
    Anything else must be awaited on the async store itself: calling
    ``session.save()`` directly raises ``RuntimeError``.
    """

    __slots__ = ("_state", "async_store", "deletes")

    def __init__(self, async_store: AsyncStore, state: SessionState | None) -> None:
        #: The async store behind this request's session.
        self.async_store = async_store
        #: Cookie values whose stored sessions are to be deleted.
        self.deletes: list[str] = []
        self._state = state

    @property
    def server_side(self) -> bool:
        """The async store's ``server_side``."""
        return self.async_store.server_side

    @property
    def policy(self) -> ExpiryPolicy:
        """The async store's expiry policy."""
        return self.async_store.policy

    @property
    def clock(self) -> Callable[[], float]:
        """The async store's clock."""
        return self.async_store.clock

    @property
    def serializer(self) -> Serializer:
        """The async store's serializer."""
        return self.async_store.serializer

    def load(self, cookie_value: str) -> SessionState | None:
        """Return the state loaded before the request, once."""
        state, self._state = self._state, None
        return state

    def delete(self, cookie_value: str) -> None:
        """Queue ``cookie_value``'s session for deletion by :func:`apply_deletes`."""
        self.deletes.append(cookie_value)

    def _awaited_only(self, *_: object) -> str:
        raise RuntimeError(
            "This session's store is async: save it with `await sessions.aio.save_session(session)` "
            "(AsgiSessionMiddleware does so at the end of the request)."
        )

    create = save = cycle = _awaited_only

    def exists(self, cookie_value: str) -> bool:
        """Not available synchronously; see :class:`RequestStore`."""
        self._awaited_only()
        return False


async def open_session(store: Store | AsyncStore, cookie_value: str | None) -> Session:
    """Return the session for ``cookie_value``: loaded now from an async store, lazily from a sync one.

    :raises BackendUnavailableError: if a server-side store's cache is down.
    """
    if not is_async_store(store):
        return Session(store, cookie_value)
    state = await store.load(cookie_value) if cookie_value else None
    return Session(RequestStore(store, state), cookie_value)


async def apply_deletes(session: Session) -> None:
    """Delete the stored sessions that :meth:`Session.flush` asked to delete, in order.

    :raises BackendUnavailableError: if a server-side store's cache is down.
    """
    store: object = session.store
    if isinstance(store, RequestStore):
        while store.deletes:
            await store.async_store.delete(store.deletes[0])
            del store.deletes[0]


async def save_session(session: Session) -> str:
    """Save ``session`` (after its pending deletes) and return the cookie value to send.

    :raises SessionConflictError: if the session was deleted or expired meanwhile.
    :raises CookieTooLargeError: if a cookie store cannot hold the data.
    :raises BackendUnavailableError: if a server-side store's cache is down.
    """
    store: object = session.store
    if isinstance(store, RequestStore):
        await apply_deletes(session)
        return await store.async_store.save(session)
    return session.save()


__all__ = ["AsyncStore", "RequestStore", "apply_deletes", "is_async_store", "open_session", "save_session"]
