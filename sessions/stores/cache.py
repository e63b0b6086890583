# Generated from sessions/stores/aio_cache.py by .ci/unasync.py; do not edit.
"""CacheStore: sessions kept in any cachekit Cache (local memory, Redis, memcached).

``aio_cache.py`` is the source of both stores: ``.ci/unasync.py`` generates
``cache.py``, the sync :class:`~sessions.stores.cache.CacheStore`, from it
(edit only ``aio_cache.py``). Both follow the same records, keys and rules
(:mod:`sessions.stores._merge`), and a sync and an async store on one cache
and key prefix share their sessions.

The cookie holds only a random id (256 bits from :mod:`secrets`). The cache
key is a SHA-256 hash of that id, so whoever can list the cache's keys still
cannot forge a cookie from them. Each session is one JSON mapping (never
pickle, whatever the cache's own serializer; in local memory a session of
plain values is kept as an immutable tuple, not serialized at all), stored
with a TTL equal to the time it has left, so expired sessions vanish from
Redis and memcached by themselves.

**No lost updates.** A save applies only this request's changed and deleted
keys to the latest stored copy, with compare-and-set (``gets``/``cas``):
if another request saved in between, the store reloads and re-applies, up to
``max_retries`` times with a short random back-off. Two overlapping requests
that change different keys both persist; for the same key the later save
wins. A session deleted meanwhile (logout in another tab) is never brought
back: the save raises :class:`~sessions.exceptions.SessionConflictError`.

**Outages are raised, not swallowed.** Whatever the cache's ``on_error``
policy, a backend that is down while a session is loaded, created, saved or
deleted raises :class:`~cachekit.exceptions.BackendUnavailableError`.
Treating it as a miss would log users out (or, on delete, keep a logged-out
session alive) without a trace; the session middlewares answer such requests
with ``503 Service Unavailable``.

Async apps use the store of ``aio_cache.py``: each of its methods that talks
to the cache is a coroutine, so nothing blocks the event loop. A
:class:`~sessions.session.Session` loads lazily and synchronously, which an
async store cannot serve: :func:`sessions.aio.open_session` (which the ASGI
session middleware calls) awaits the load before the app runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from typing import Any

from cachekit import Cache
from cachekit.backends.base import SupportsCas
from cachekit.exceptions import ConfigurationError
from sessions.exceptions import SessionConflictError
from sessions.exceptions import SessionCreateError
from sessions.session import Session
from sessions.state import USER_KEY
from sessions.state import SessionState
from sessions.stores._merge import CREATE_ATTEMPTS
from sessions.stores._merge import SESSION_ID
from sessions.stores._merge import Index
from sessions.stores._merge import RawSerializer
from sessions.stores._merge import SessionCounters
from sessions.stores._merge import UserSession
from sessions.stores._merge import decode_index
from sessions.stores._merge import decode_state
from sessions.stores._merge import durable_backend
from sessions.stores._merge import encode_state
from sessions.stores._merge import hashed_key
from sessions.stores._merge import index_ttl
from sessions.stores._merge import is_indexed
from sessions.stores._merge import is_session_id
from sessions.stores._merge import latest_expiry
from sessions.stores._merge import live_sessions
from sessions.stores._merge import live_user_session
from sessions.stores._merge import mark_unique
from sessions.stores._merge import merge_delta
from sessions.stores._merge import new_session_id
from sessions.stores._merge import prune_index
from sessions.stores._merge import reindex_until
from sessions.stores._merge import retry_delay
from sessions.stores._merge import session_delta
from sessions.stores._merge import session_ref
from sessions.stores._merge import user_index_key
from sessions.stores.base import BaseStore
from sessions.stores.base import StoreOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack


class CacheStore(BaseStore):
    """Server-side sessions in a cachekit :class:`~cachekit.cache.Cache`.

    :param cache: a cache whose backend supports compare-and-set
        (``gets``/``cas``: locmem, Redis and memcached all do).
    :param key_prefix: prepended to the hashed id in cache keys.
    :param max_retries: compare-and-set attempts per save before giving up with
        :class:`~sessions.exceptions.SessionConflictError`.
    :param options: the :class:`~sessions.stores.base.StoreOptions` of :class:`BaseStore`:
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
    :raises ConfigurationError: if ``cache`` is not a cachekit ``Cache`` with compare-and-set.
    """

    server_side = True

    def __init__(
        self,
        cache: Cache,
        *,
        key_prefix: str = "cachekit.session.",
        max_retries: int = 50,
        replicas: int = 0,
        replica_timeout: float = 0.25,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(**options)
        if not isinstance(cache, Cache):
            raise ConfigurationError(
                f"CacheStore needs a cachekit.Cache, got {cache!r}.",
                setting="SESSION_CACHE_ALIAS",
            )
        if not isinstance(cache.backend, SupportsCas):
            raise ConfigurationError(
                f"CacheStore needs a backend with compare-and-set (gets/cas); {cache.backend!r} has none.",
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
        #: The cache the session records go through: the user's cache (same backend,
        #: keys and prefix) with the store's own JSON serialization, so session data
        #: never goes through pickle; its ``stats()`` count sessions. It raises on
        #: every outage (``on_error="raise"``), so a failed ``add`` or ``delete`` is
        #: never mistaken for a collision or an absent session.
        self.records: Cache = cache.replace(
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
        return f"CacheStore({self.cache!r})"

    def store_key(self, session_key: str) -> str:
        """Return the cache key for a session id: a hash, so the id never appears in the cache."""
        return hashed_key(self.key_prefix, session_key)

    def _encode(self, state: SessionState) -> Any:
        return encode_state(state, objects=self._objects, dump=self._dump)

    def _ttl(self, state: SessionState) -> float:
        return self.policy.expires_at(state) - self.clock()

    # -- reading ---------------------------------------------------------------

    def _fetch(self, key: str) -> tuple[SessionState, Any] | None:
        found = self.records.gets(key)
        if found is None:
            return None
        stored, token = found
        state = decode_state(stored, self.serializer)
        if state is None:
            return None
        state.token = (key, token)
        return state, token

    def load(self, cookie_value: str) -> SessionState | None:
        """Return the live session for ``cookie_value``, or ``None``.

        :raises BackendUnavailableError: if the cache is down.
        """
        if SESSION_ID.fullmatch(cookie_value) is None:
            return None
        # _fetch, _live and store_key, inlined: this runs on every request that reads a session.
        key = hashed_key(self.key_prefix, cookie_value)
        found = self.records.gets(key)
        if found is None:
            return None
        state = decode_state(found[0], self.serializer)
        if state is None:
            return None
        if self.policy.expires_at(state) <= self.clock():
            self._count("expired")
            return None
        state.token = (key, found[1])
        return state

    # -- writing ---------------------------------------------------------------

    def create(self, state: SessionState) -> str:
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
            if self.records.add(key, record, ttl):
                self._count("created")
                return session_key
        raise SessionCreateError(f"No new session id could be stored after {CREATE_ATTEMPTS} attempts.")

    def save(self, session: Session) -> str:
        """Apply the session's changes to the latest stored copy; return the session id.

        A new session is created, and one whose key was cycled is copied to a new
        id first. Otherwise the changed and deleted keys (and a new expiry, if one
        was set) are merged into the stored copy with compare-and-set, and merge
        operations (:meth:`Session.incr` ...) replayed on it. A session with an
        owner (:meth:`Session.set_user`) is entered in the owner's index when it
        gets a new owner or id, or when its latest expiry passes the one its index
        entry records (:func:`~sessions.stores._merge.reindex_until` gives that
        headroom, so a session whose expiry slides on every request rewrites the
        index about once per five minutes of its activity, not on every save).

        :raises SessionConflictError: if the session was deleted or expired
            meanwhile, or every compare-and-set attempt lost.
        :raises BackendUnavailableError: if the cache is down.
        """
        session_key = session.session_key
        if session_key is None or session.cycle_pending:
            return self.cycle(session)
        state = session.state
        ops = session.pending_ops
        pending = session.pending_user
        indexed: tuple[str | int, float] | None = None
        if state.token is not None:
            if ops:
                mark_unique(state, ops, objects=self._objects)
            # Nobody else saved since our load (the compare-and-set checks it): the
            # local state already is the stored copy plus our changes, with activity
            # now. (On a lost race, the merge below starts from the stored copy.)
            key, token = state.token
            state.token = None
            now = self.clock()
            state.last_active = now
            ttl = self.policy.expires_at(state) - now
            if ttl > 0:
                if USER_KEY in state.data or state.indexed_until is not None:
                    indexed = self._index(session_key, state, pending, now, indexed)
                if self.records.cas(
                    key, encode_state(state, objects=self._objects, dump=self._dump), token, ttl
                ):
                    session.saved(session_key, state)
                    return session_key
        else:
            key = self.store_key(session_key)
        changed, deleted = session_delta(session)
        for attempt in range(self.max_retries):
            found = self._fetch(key)
            if found is None:
                raise SessionConflictError("The session was deleted or expired before it could be saved.")
            now = self.clock()
            current = merge_delta(
                found[0],
                changed,
                deleted,
                expiry_changed=session.expiry_changed,
                expiry=state.expiry,
                now=now,
                ops=ops,
            )
            token = found[1]
            mark_unique(current, ops, objects=self._objects)
            ttl = self._ttl(current)
            if ttl <= 0:
                self.records.delete(key)
                raise SessionConflictError("The session expired before it could be saved.")
            indexed = self._index(session_key, current, pending, now, indexed)
            if self.records.cas(key, self._encode(current), token, ttl):
                session.saved(session_key, current)
                return session_key
            # Lost the race to another writer: back off a little, at random, and merge again.
            self._count("conflicts_retried")
            time.sleep(retry_delay(attempt))
        raise SessionConflictError(
            f"The session could not be saved: {self.max_retries} compare-and-set attempts lost to "
            "concurrent writers."
        )

    def cycle(self, session: Session) -> str:
        """Store the session's data under a new id, then delete the old id; return the new id.

        A session with an owner is entered in the owner's index under the new id
        (the old id's entry moves to it, unless :meth:`Session.set_user` gave new
        metadata).
        """
        old_key = session.session_key
        pending = session.pending_user
        state = self._next_state(session, fresh=True)
        user_id: str | int | None = state.data.get(USER_KEY)
        if user_id is not None:
            state.indexed_until = reindex_until(self.policy, state, state.last_active)
        new_key = self.create(state)
        if old_key is not None:
            self.delete(old_key)
        session.saved(new_key, state)
        until = state.indexed_until
        if user_id is not None and until is not None:
            # Nobody else knows the new id yet, so the record may go first here.
            meta = pending[1] if pending else None
            self._register(user_id, new_key, until, meta, None if pending else old_key)
        return new_key

    def delete(self, cookie_value: str) -> None:
        """Delete the session; it is gone for every later load and save.

        :raises BackendUnavailableError: if the cache is down (the session may still exist).
        """
        if not is_session_id(cookie_value):
            return
        key = self.store_key(cookie_value)
        self.records.delete(key)

    # -- sessions per user -------------------------------------------------------

    def _user_key(self, user_id: str | int) -> str:
        return user_index_key(self.key_prefix, user_id)

    def _write_index(self, key: str, index: Index, found: tuple[Any, Any] | None, now: float) -> bool:
        data = self.serializer.dumps(index)
        if found is None:
            return self.records.add(key, data, index_ttl(index, now))
        return self.records.cas(key, data, found[1], index_ttl(index, now))

    def _index(
        self,
        session_key: str,
        state: SessionState,
        pending: tuple[str | int, dict[str, Any]] | None,
        now: float,
        indexed: tuple[str | int, float] | None,
    ) -> tuple[str | int, float] | None:
        """Before ``state`` is written: enter it in its owner's index if its entry may not outlive it.

        Sets ``state.indexed_until`` to what the index lists, and returns
        ``(owner, until)`` once this save wrote the index (``indexed``: an
        earlier attempt of this save that did). The index goes first, so a
        stored record never claims an entry its owner's index lacks.
        """
        user_id = state.data.get(USER_KEY)
        if user_id is None:
            state.indexed_until = None
            return indexed
        if pending is None and is_indexed(self.policy, state):
            return indexed
        if (
            indexed is not None
            and indexed[0] == user_id
            and type(indexed[0]) is type(user_id)
            and latest_expiry(self.policy, state) <= indexed[1]
        ):
            state.indexed_until = indexed[1]
            return indexed
        until = reindex_until(self.policy, state, now)
        self._register(user_id, session_key, until, pending[1] if pending else None, None)
        state.indexed_until = until
        return user_id, until

    def _register(
        self,
        user_id: str | int,
        session_key: str,
        until: float,
        metadata: dict[str, Any] | None,
        replaces: str | None,
    ) -> None:
        """Enter a session in its owner's index until ``until`` (moving the entry of the id it replaces).

        An entry already there keeps the later of its moment and ``until``: a
        concurrent save of the session may have recorded the later one.
        """
        key = self._user_key(user_id)
        ref = session_ref(session_key)
        old = session_ref(replaces) if replaces else None
        for attempt in range(self.max_retries):
            found = self.records.gets(key)
            now = self.clock()
            index = prune_index(decode_index(found[0], self.serializer), now) if found else {}
            previous = index.pop(old, None) if old else index.get(ref)
            meta = metadata if metadata is not None else (previous[1] if previous else {})
            index[ref] = [until if old or previous is None else max(until, previous[0]), meta]
            if self._write_index(key, index, found, now):
                return
            self._count("conflicts_retried")
            time.sleep(retry_delay(attempt))
        raise SessionConflictError(
            f"The index of sessions per user could not be updated in {self.max_retries} attempts."
        )

    def sessions_of(self, user_id: str | int, current: str | Session | None = None) -> list[UserSession]:
        """The live sessions of ``user_id``, most recently seen first.

        Each entry of the owner's index is checked against the stored session
        (live, and still this user's), so an expired, deleted or revoked session
        is never listed; stale entries are pruned.

        :param current: the request's session (or its id), marked ``current``.
        :raises BackendUnavailableError: if the cache is down.
        """
        key = self._user_key(user_id)
        found = self.records.gets(key)
        if found is None:
            return []
        now = self.clock()
        index = decode_index(found[0], self.serializer)
        stored = self.records.get_many([self.key_prefix + ref for ref in index])
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
            self._write_index(key, live, found, now)
        return listed

    def revoke_user(self, user_id: str | int, keep: str | Session | None = None) -> int:
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
            found = self.records.gets(key)
            if found is None:
                break
            index = decode_index(found[0], self.serializer)
            victims = [self.key_prefix + ref for ref in index if ref != keep_ref]
            stored = self.records.get_many(victims)
            now = self.clock()
            for victim, record in stored.items():
                if live_user_session(decode_state(record, self.serializer), user_id, self.policy, now):
                    ended.add(victim)
            self.records.delete_many(victims)
            kept: Index = {ref: entry for ref, entry in index.items() if ref == keep_ref}
            if self._write_index(key, kept, found, self.clock()):
                break
            self._count("conflicts_retried")
            time.sleep(retry_delay(attempt))
        self._count("revoked", len(ended))
        return len(ended)


__all__ = ["CacheStore"]
