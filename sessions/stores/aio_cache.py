"""AsyncCacheStore: server-side sessions in an :class:`cachekit.aio.AsyncCache`, for async apps.

The async twin of :class:`~sessions.stores.cache.CacheStore`, with the same
records, keys and rules (:mod:`sessions.stores._merge`): a sync and an async
store on one cache and key prefix share their sessions. Every method that
talks to the cache is a coroutine; nothing blocks the event loop.

**No lost updates**, as in ``CacheStore``: a save applies only the request's
changed and deleted keys to the latest stored copy with compare-and-set
(``AsyncCache.gets``/``cas``), retrying with a short random back-off (an
``asyncio.sleep``) when another request saved in between. A session deleted
meanwhile is never brought back:
:class:`~sessions.exceptions.SessionConflictError`.

**Outages are raised**, whatever the cache's ``on_error`` policy:
:class:`~cachekit.exceptions.BackendUnavailableError`, which
:class:`middleware.AsgiSessionMiddleware` answers with ``503``.

A :class:`~sessions.session.Session` loads lazily and synchronously, which an
async store cannot serve: use :func:`sessions.aio.open_session` (the ASGI
middleware does), which awaits the load before the app runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from cachekit.aio import AsyncCache
from cachekit.backends.aio_base import AsyncSupportsCas
from cachekit.exceptions import ConfigurationError
from cachekit.serializers import Serializer
from sessions.exceptions import SessionConflictError
from sessions.exceptions import SessionCreateError
from sessions.session import DEFAULT_AGE
from sessions.session import USER_KEY
from sessions.session import Session
from sessions.session import SessionState
from sessions.stores._merge import CREATE_ATTEMPTS
from sessions.stores._merge import Index
from sessions.stores._merge import RawSerializer
from sessions.stores._merge import SessionCounters
from sessions.stores._merge import UserSession
from sessions.stores._merge import decode_index
from sessions.stores._merge import decode_state
from sessions.stores._merge import encode_state
from sessions.stores._merge import hashed_key
from sessions.stores._merge import index_ttl
from sessions.stores._merge import is_session_id
from sessions.stores._merge import latest_expiry
from sessions.stores._merge import live_sessions
from sessions.stores._merge import live_user_session
from sessions.stores._merge import mark_unique
from sessions.stores._merge import merge_delta
from sessions.stores._merge import new_session_id
from sessions.stores._merge import prune_index
from sessions.stores._merge import retry_delay
from sessions.stores._merge import session_delta
from sessions.stores._merge import session_ref
from sessions.stores._merge import unchanged_since_load
from sessions.stores._merge import user_index_key
from sessions.stores.base import BaseStore
from sessions.stores.cache import durable_backend


class AsyncCacheStore(BaseStore):
    """Server-side sessions in an :class:`~cachekit.aio.AsyncCache`; coroutine methods.

    :param cache: an async cache whose backend supports compare-and-set
        (locmem, Redis and memcached all do).
    :param key_prefix: prepended to the hashed id in cache keys.
    :param max_retries: compare-and-set attempts per save before giving up with
        :class:`~sessions.exceptions.SessionConflictError`.
    :param age: absolute lifetime in seconds (``SESSION_COOKIE_AGE``).
    :param idle_timeout: seconds of inactivity before a session ends, or ``None``.
    :param refresh_interval: least seconds between activity-only writes.
    :param expire_at_browser_close: send cookies without ``Max-Age``.
    :param serializer: defaults to tagged JSON; pickle is never used.
    :param clock: Unix time in seconds.
    :param replicas: with a Redis backend, acknowledge a session write only once this many
        replicas hold it (``WAIT``), so a failover to a replica cannot lose it; a write
        that fewer replicas acknowledged in ``replica_timeout`` seconds fails as an
        outage (503). 0 (the default) does not wait.
    :param replica_timeout: seconds a write waits for ``replicas``; keep it below the
        backend's ``socket_timeout``.
    :raises ConfigurationError: if ``cache`` is not an ``AsyncCache`` with compare-and-set.
    """

    server_side = True

    def __init__(
        self,
        cache: AsyncCache,
        *,
        key_prefix: str = "cachekit.session.",
        max_retries: int = 50,
        age: float = DEFAULT_AGE,
        idle_timeout: float | None = None,
        refresh_interval: float | None = None,
        expire_at_browser_close: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] = time.time,
        replicas: int = 0,
        replica_timeout: float = 0.25,
    ) -> None:
        super().__init__(
            age=age,
            idle_timeout=idle_timeout,
            refresh_interval=refresh_interval,
            expire_at_browser_close=expire_at_browser_close,
            serializer=serializer,
            clock=clock,
        )
        if not isinstance(cache, AsyncCache):
            raise ConfigurationError(
                f"AsyncCacheStore needs a cachekit.aio.AsyncCache, got {cache!r}; "
                "for a sync cachekit.Cache use CacheStore.",
                setting="SESSION_CACHE_ALIAS",
            )
        if not isinstance(cache.backend, AsyncSupportsCas):
            raise ConfigurationError(
                f"AsyncCacheStore needs a backend with compare-and-set (gets/cas); "
                f"{cache.backend!r} has none.",
                setting="SESSION_CACHE_ALIAS",
            )
        if not isinstance(max_retries, int) or max_retries < 1:
            raise ConfigurationError(
                f"max_retries must be a positive int, got {max_retries!r}.", setting="max_retries"
            )
        #: The user's cache (its prefix, version and backend are shared).
        self.cache = cache
        #: Prepended to hashed ids.
        self.key_prefix = key_prefix
        #: Compare-and-set attempts per save.
        self.max_retries = max_retries
        self._objects = bool(getattr(cache.backend, "stores_objects", False))
        #: The cache the session records go through: the user's cache with the
        #: store's own (JSON) serialization; its ``stats()`` count sessions.
        self.records: AsyncCache = cache.replace(
            default_timeout=None,
            serializer=RawSerializer(),
            on_error="raise",
            backend=durable_backend(cache.backend, replicas, replica_timeout),
        )
        self._count = SessionCounters()

    def stats(self) -> dict[str, int]:
        """Session counters of this store object since it was built (:class:`SessionCounters`).

        Live sessions are not counted: no cache can list them without a scan.
        """
        return self._count.snapshot()

    def __repr__(self) -> str:
        return f"AsyncCacheStore({self.cache!r})"

    def store_key(self, session_key: str) -> str:
        """Return the cache key for a session id: a hash, so the id never appears in the cache."""
        return hashed_key(self.key_prefix, session_key)

    def _encode(self, state: SessionState) -> Any:
        return encode_state(state, objects=self._objects, dump=self._dump)

    def _ttl(self, state: SessionState) -> float:
        return self.policy.expires_at(state) - self.clock()

    # -- reading ---------------------------------------------------------------

    async def _fetch(self, key: str) -> tuple[SessionState, Any] | None:
        found = await self.records.gets(key)
        if found is None:
            return None
        stored, token = found
        state = decode_state(stored, self.serializer)
        if state is None:
            return None
        state.token = (key, token)
        return state, token

    async def load(self, cookie_value: str) -> SessionState | None:
        """Return the live session for ``cookie_value``, or ``None``.

        :raises BackendUnavailableError: if the cache is down.
        """
        if not is_session_id(cookie_value):
            return None
        found = await self._fetch(self.store_key(cookie_value))
        if found is None:
            return None
        if not self._live(found[0]):
            self._count("expired")
            return None
        return found[0]

    async def exists(self, cookie_value: str) -> bool:  # type: ignore[override]
        """Return whether ``cookie_value`` names a live session."""
        return await self.load(cookie_value) is not None

    # -- writing ---------------------------------------------------------------

    async def create(self, state: SessionState) -> str:
        """Store ``state`` under a fresh random id with ``add``, never overwriting a session.

        :raises SessionCreateError: if no id could be stored after several attempts.
        :raises BackendUnavailableError: if the cache is down.
        """
        ttl = self._ttl(state)
        if ttl <= 0:
            raise SessionCreateError("The session would be expired already; check set_expiry().")
        record = self._encode(state)
        for _ in range(CREATE_ATTEMPTS):
            session_key = new_session_id()
            key = self.store_key(session_key)
            if await self.records.add(key, record, ttl):
                self._count("created")
                return session_key
        raise SessionCreateError(f"No new session id could be stored after {CREATE_ATTEMPTS} attempts.")

    async def save(self, session: Session) -> str:
        """Apply the session's changes to the latest stored copy; return the session id.

        Same rules as :meth:`sessions.stores.cache.CacheStore.save`.

        :raises SessionConflictError: if the session was deleted or expired
            meanwhile, or every compare-and-set attempt lost.
        :raises BackendUnavailableError: if the cache is down.
        """
        owner: tuple[str | int, dict[str, Any] | None] | None = session.pending_user
        replaces = None
        if owner is None and (session.cycle_pending or session.expiry_changed):
            user_id = session.state.data.get(USER_KEY)
            if user_id is not None:
                owner, replaces = (user_id, None), session.session_key
        session_key = await self._save(session)
        if owner is not None:
            await self._register(owner[0], session_key, session.state, owner[1], replaces)
        return session_key

    async def _save(self, session: Session) -> str:
        session_key = session.session_key
        if session_key is None or session.cycle_pending:
            return await self.cycle(session)
        state = session.state
        ops = session.pending_ops
        if state.token is not None:
            key, token = state.token
            current = unchanged_since_load(state, self.clock())
            mark_unique(current, ops, objects=self._objects)
            ttl = self._ttl(current)
            if ttl > 0 and await self.records.cas(key, self._encode(current), token, ttl):
                session.saved(session_key, current)
                return session_key
            state.token = None
        else:
            key = self.store_key(session_key)
        changed, deleted = session_delta(session)
        for attempt in range(self.max_retries):
            found = await self._fetch(key)
            if found is None:
                raise SessionConflictError("The session was deleted or expired before it could be saved.")
            current, token = found
            mark_unique(current, ops, objects=self._objects)
            merge_delta(
                current,
                changed,
                deleted,
                expiry_changed=session.expiry_changed,
                expiry=state.expiry,
                now=self.clock(),
                ops=ops,
            )
            ttl = self._ttl(current)
            if ttl <= 0:
                await self.records.delete(key)
                raise SessionConflictError("The session expired before it could be saved.")
            if await self.records.cas(key, self._encode(current), token, ttl):
                session.saved(session_key, current)
                return session_key
            self._count("conflicts_retried")
            await asyncio.sleep(retry_delay(attempt))
        raise SessionConflictError(
            f"The session could not be saved: {self.max_retries} compare-and-set attempts lost to "
            "concurrent writers."
        )

    async def cycle(self, session: Session) -> str:
        """Store the session's data under a new id, then delete the old id; return the new id."""
        old_key = session.session_key
        state = self._next_state(session, fresh=True)
        new_key = await self.create(state)
        if old_key is not None:
            await self.delete(old_key)
        session.saved(new_key, state)
        return new_key

    async def delete(self, cookie_value: str) -> None:
        """Delete the session; it is gone for every later load and save.

        :raises BackendUnavailableError: if the cache is down (the session may still exist).
        """
        if not is_session_id(cookie_value):
            return
        key = self.store_key(cookie_value)
        await self.records.delete(key)

    # -- sessions per user -------------------------------------------------------

    def _user_key(self, user_id: str | int) -> str:
        return user_index_key(self.key_prefix, user_id)

    async def _write_index(self, key: str, index: Index, found: tuple[Any, Any] | None, now: float) -> bool:
        data = self.serializer.dumps(index)
        if found is None:
            return await self.records.add(key, data, index_ttl(index, now))
        return await self.records.cas(key, data, found[1], index_ttl(index, now))

    async def _register(
        self,
        user_id: str | int,
        session_key: str,
        state: SessionState,
        metadata: dict[str, Any] | None,
        replaces: str | None,
    ) -> None:
        """Enter a session in its owner's index (moving the entry of the id it replaces)."""
        key = self._user_key(user_id)
        ref = session_ref(session_key)
        old = session_ref(replaces) if replaces else None
        for attempt in range(self.max_retries):
            found = await self.records.gets(key)
            now = self.clock()
            index = prune_index(decode_index(found[0], self.serializer), now) if found else {}
            previous = index.pop(old, None) if old else index.get(ref)
            meta = metadata if metadata is not None else (previous[1] if previous else {})
            index[ref] = [latest_expiry(self.policy, state), meta]
            if await self._write_index(key, index, found, now):
                return
            self._count("conflicts_retried")
            await asyncio.sleep(retry_delay(attempt))
        raise SessionConflictError(
            f"The index of sessions per user could not be updated in {self.max_retries} attempts."
        )

    async def sessions_of(
        self, user_id: str | int, current: str | Session | None = None
    ) -> list[UserSession]:
        """The live sessions of ``user_id``, most recently seen first.

        Each entry of the owner's index is checked against the stored session
        (live, and still this user's), so an expired, deleted or revoked session
        is never listed; stale entries are pruned.

        :param current: the request's session (or its id), marked ``current``.
        :raises BackendUnavailableError: if the cache is down.
        """
        key = self._user_key(user_id)
        found = await self.records.gets(key)
        if found is None:
            return []
        now = self.clock()
        index = decode_index(found[0], self.serializer)
        stored = await self.records.get_many([self.key_prefix + ref for ref in index])
        current_key = current.session_key if isinstance(current, Session) else current
        listed, live, expired = live_sessions(
            index,
            stored,
            key_prefix=self.key_prefix,
            serializer=self.serializer,
            user_id=user_id,
            policy=self.policy,
            now=now,
            current_ref=session_ref(current_key) if current_key else None,
        )
        if expired:
            self._count("expired", expired)
        if len(live) < len(index):
            # Best effort: one attempt; a concurrent writer's index is as good.
            await self._write_index(key, live, found, now)
        return listed

    async def revoke_user(self, user_id: str | int, keep: str | Session | None = None) -> int:
        """End every session of ``user_id`` except ``keep``; return how many live ones were ended.

        "Log out other devices" passes the current session as ``keep``; a
        password change passes it too, after :meth:`Session.cycle_key`. Every
        session the owner's index lists is deleted, then the index is
        rewritten with only the kept one (compare-and-set, retried, so a
        session registered meanwhile is ended too).

        :raises BackendUnavailableError: if the cache is down (some sessions may remain).
        """
        key = self._user_key(user_id)
        keep_key = keep.session_key if isinstance(keep, Session) else keep
        keep_ref = session_ref(keep_key) if keep_key else None
        ended: set[str] = set()
        for attempt in range(self.max_retries):
            found = await self.records.gets(key)
            if found is None:
                break
            index = decode_index(found[0], self.serializer)
            victims = [self.key_prefix + ref for ref in index if ref != keep_ref]
            stored = await self.records.get_many(victims)
            now = self.clock()
            for victim, record in stored.items():
                if live_user_session(decode_state(record, self.serializer), user_id, self.policy, now):
                    ended.add(victim)
            await self.records.delete_many(victims)
            kept: Index = {ref: entry for ref, entry in index.items() if ref == keep_ref}
            if await self._write_index(key, kept, found, self.clock()):
                break
            self._count("conflicts_retried")
            await asyncio.sleep(retry_delay(attempt))
        self._count("revoked", len(ended))
        return len(ended)


__all__ = ["AsyncCacheStore"]
