"""The rules of server-side session records, shared by the sync and async cache stores.

Pure functions with no I/O: how a session id looks and is hashed into a cache
key, how a :class:`~sessions.session.SessionState` is encoded for a backend and
decoded again, and how a save's delta (changed and deleted keys, a new expiry)
is merged into the latest stored copy before the compare-and-set.
:class:`~sessions.stores.aio_cache.AsyncCacheStore` calls them around awaited
``gets``/``cas``; the sync :class:`~sessions.stores.cache.CacheStore`, generated
from it by ``.ci/unasync.py``, around blocking ones.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import math
import random
import re
import secrets
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from cachekit.serializers import Serializer
from sessions.serializers import TaggedJSONSerializer
from sessions.state import USER_KEY
from sessions.state import ExpiryPolicy
from sessions.state import SessionState
from sessions.state import apply_op

if TYPE_CHECKING:
    from sessions.session import Session

#: What a session id looks like: ``secrets.token_urlsafe(32)``.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
#: Fresh ids tried by ``create`` before it gives up.
CREATE_ATTEMPTS = 10
_PLAIN = frozenset({str, int, float, bool, type(None)})


class RawSerializer:
    """Passes a store's own serialized bytes through a cache untouched."""

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as bytes, unchanged."""
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        """Return ``data`` as bytes, unchanged."""
        return bytes(data)


def is_session_id(value: str) -> bool:
    """Whether ``value`` has the shape of a session id (anything else is never looked up)."""
    return SESSION_ID.fullmatch(value) is not None


def new_session_id() -> str:
    """Return a fresh random session id: 256 bits from :mod:`secrets`."""
    return secrets.token_urlsafe(32)


def hashed_key(key_prefix: str, session_key: str) -> str:
    """Return the cache key of a session id: a hash, so the id never appears in the cache."""
    return key_prefix + hashlib.sha256(session_key.encode()).hexdigest()


def encode_state(state: SessionState, *, objects: bool, dump: Callable[[SessionState], bytes]) -> Any:
    """Return what the backend stores for ``state``.

    :param objects: the backend keeps Python objects (local memory): a session of
        plain values is stored as a flat tuple of immutable values,
        ``(created, active, expiry, key1, ..., keyN, value1, ..., valueN)``, with
        no serialization at all (and so no pickle either), and
        :attr:`~SessionState.indexed_until` last when it is set (an even length).
    :param dump: serializes ``state`` otherwise (JSON, never pickle).
    """
    data = state.data
    if objects and _PLAIN.issuperset(map(type, data.values())):
        until = state.indexed_until
        if until is None:
            return (state.created, state.last_active, state.expiry, *data, *data.values())
        return (state.created, state.last_active, state.expiry, *data, *data.values(), until)
    return dump(state)


_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _load_plain_record(stored: Any) -> Any:
    """The record in ``stored`` if it is JSON with no tag in it (the usual session), else ``None``.

    What TaggedJSONSerializer's ``loads`` returns for such bytes, without its
    per-object hook: a record whose data holds only str, int, float, bool and
    None values (and is not a one-key mapping, which may be an escaped key)
    holds no tag. Anything else, malformed input included, is left to ``loads``.
    """
    if type(stored) is bytes:
        try:
            text = stored.decode()
        except UnicodeDecodeError:
            return None
    elif type(stored) is str:
        text = stored
    else:
        return None
    try:
        record, end = _SCAN(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(text) or type(record) is not dict or len(record) == 1:
        return None
    data = record.get("d")
    if (
        type(data) is not dict
        or not _PLAIN.issuperset(map(type, data.values()))
        or (len(data) == 1 and next(iter(data))[:1] == " ")
    ):
        return None
    return record


def decode_state(stored: Any, serializer: Serializer) -> SessionState | None:
    """Return the state :func:`encode_state` stored, or ``None`` if ``stored`` is not one."""
    try:
        if type(stored) is tuple:
            # (created, active, expiry, keys..., values...): an odd length, so
            # both halves below are as long; an even one ends with indexed_until.
            # (zip's strict= keyword alone costs more than the rest of this line.)
            size = len(stored)
            if size & 1:
                values = (size + 3) >> 1
                data = dict(zip(stored[3:values], stored[values:]))  # noqa: B905
                return SessionState(data, stored[0], stored[1], stored[2])
            until = stored[-1] if size > 3 else None
            if type(until) not in (int, float):
                return None
            values = (size + 2) >> 1
            data = dict(zip(stored[3:values], stored[values:-1]))  # noqa: B905
            state = SessionState(data, stored[0], stored[1], stored[2])
            state.indexed_until = until
            return state
        if type(serializer) is TaggedJSONSerializer:
            record = _load_plain_record(stored)
            if record is not None:
                return SessionState.from_record(record)
        return SessionState.from_record(serializer.loads(stored))
    except (SerializationError, ValueError, TypeError):
        return None


def unchanged_since_load(state: SessionState, now: float) -> SessionState:
    """The state to compare-and-set when nobody saved since the load: ours, with activity at ``now``."""
    return SessionState(state.data, state.created, now, state.expiry)


#: Per key, the merge operations a save replays on the stored copy, in order.
Ops = Mapping[str, tuple[tuple[str, Any], ...]]


def session_delta(session: Session) -> tuple[dict[str, Any], frozenset[str]]:
    """Return ``(changed, deleted)``: the keys this request set, with values, and those it deleted.

    Keys with merge operations are left out of ``changed`` (they are replayed
    by :func:`merge_delta` instead), even after ``session.modified = True``.
    """
    data = session.state.data
    ops = session.pending_ops
    return {name: data[name] for name in session.changed_keys if name not in ops}, session.deleted_keys


def merge_delta(
    current: SessionState,
    changed: Mapping[str, Any],
    deleted: Iterable[str],
    *,
    expiry_changed: bool,
    expiry: float | None,
    now: float,
    ops: Ops | None = None,
) -> SessionState:
    """Apply a save's delta to ``current`` (the latest stored copy) in place and return it.

    Keys set elsewhere since our load survive; ours win for the keys we set
    (last write wins); merge operations (``incr``, ``append``, ``add``,
    ``discard``) are replayed on the stored values, so none is lost; a new
    expiry replaces the stored one only if this request chose it.
    """
    data = current.data
    data.update(changed)
    for name in deleted:
        data.pop(name, None)
    if ops:
        for name, items in ops.items():
            for op, arg in items:
                apply_op(data, name, op, arg)
    if expiry_changed:
        current.expiry = expiry
    current.last_active = now
    return current


def mark_unique(state: SessionState, ops: Ops, *, objects: bool) -> None:
    """Give a record that carries merge operations a random nonce (see :attr:`SessionState.nonce`).

    Not for a backend that keeps objects (local memory): its compare-and-set
    compares identity, never values.
    """
    state.nonce = secrets.token_urlsafe(6) if ops and not objects else None


def durable_backend(backend: Any, replicas: int, timeout: float) -> Any:
    """``backend`` itself, or with ``replicas`` its view whose writes wait for replicas (``WAIT``).

    :raises ConfigurationError: if replicas are asked of a backend that cannot wait for them.
    """
    if not replicas:
        return backend
    durable = getattr(backend, "durable", None)
    if durable is None:
        raise ConfigurationError(
            f"replicas={replicas!r} needs a Redis backend (WAIT); {backend!r} cannot wait for replicas.",
            setting="replicas",
        )
    return durable(replicas, timeout)


# -- sessions per user ------------------------------------------------------------------

#: A user's index: session ref (the hashed id) -> ``[indexed until, metadata]``: a moment
#: at or after the session's latest expiry (see :func:`reindex_until`).
Index = dict[str, list[Any]]

#: The most headroom an index entry gets past its session's latest expiry: a session
#: whose expiry slides (a permanent Flask session) rewrites its owner's index at
#: most once per this much of its own activity, and an evicted index goes at most
#: this long unrebuilt by an active session (seconds). Short, because ``revoke_user``
#: ("log out everywhere") misses what an evicted index no longer lists; a rewrite
#: every five minutes of a session's activity costs next to nothing.
REINDEX_SLACK = 300.0


@dataclass(frozen=True)
class UserSession:
    """One live session of a user, as ``sessions_of`` lists it.

    ``ref`` is the SHA-256 of the session id (the cookie value never appears);
    pass the current session to ``sessions_of`` to have it marked ``current``.
    """

    ref: str
    created: float
    last_seen: float
    expires: float
    metadata: dict[str, Any] = field(default_factory=dict)
    current: bool = False


def session_ref(session_key: str) -> str:
    """The reference of a session id in user indexes: its SHA-256, as in its cache key."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def user_index_key(key_prefix: str, user_id: str | int) -> str:
    """The cache key of a user's index of sessions (the user id is hashed, typed)."""
    kind = "i" if type(user_id) is int else "s"
    return f"{key_prefix}user.{hashlib.sha256(f'{kind}:{user_id}'.encode()).hexdigest()}"


def latest_expiry(policy: ExpiryPolicy, state: SessionState) -> float:
    """The latest moment ``state`` can be live (an idle timeout only brings it closer)."""
    expiry = state.expiry
    end: float = expiry if expiry else state.created + policy.age
    return end


def reindex_until(policy: ExpiryPolicy, state: SessionState, now: float) -> float:
    """The moment to list ``state`` until in its owner's index, entered at ``now``.

    Its latest expiry plus headroom: a quarter of the time it has left, at most
    :data:`REINDEX_SLACK`, rounded up to a whole second (exact in a record). A
    save whose latest expiry stays within it leaves the index alone.
    """
    latest = latest_expiry(policy, state)
    return float(math.ceil(latest + min(REINDEX_SLACK, max(latest - now, 0.0) / 4)))


def is_indexed(policy: ExpiryPolicy, state: SessionState) -> bool:
    """Whether the owner's index entry ``state`` records outlasts its latest expiry."""
    until = state.indexed_until
    return until is not None and latest_expiry(policy, state) <= until


def decode_index(stored: Any, serializer: Serializer) -> Index:
    """Return a user's index from its stored bytes; anything malformed reads as empty."""
    try:
        index = serializer.loads(bytes(stored))
    except (SerializationError, ValueError, TypeError):
        return {}
    if type(index) is not dict:
        return {}
    return {
        ref: entry
        for ref, entry in index.items()
        if type(entry) is list
        and len(entry) == 2
        and type(entry[0]) in (int, float)
        and type(entry[1]) is dict
    }


def prune_index(index: Index, now: float) -> Index:
    """The entries of ``index`` that may still be live at ``now``."""
    return {ref: entry for ref, entry in index.items() if entry[0] > now}


def index_ttl(index: Index, now: float) -> float:
    """Seconds a user's index must live: until its last entry can expire (at least one)."""
    last: float = max([entry[0] for entry in index.values()] + [now + 1.0])
    return last - now


def live_user_session(
    state: SessionState | None, user_id: str | int, policy: ExpiryPolicy, now: float
) -> bool:
    """Whether a stored ``state`` is a live session of ``user_id`` (the index alone is never trusted)."""
    return state is not None and state.data.get(USER_KEY) == user_id and policy.expires_at(state) > now


def live_sessions(
    index: Index,
    stored: Mapping[str, Any],
    *,
    key_prefix: str,
    serializer: Serializer,
    user_id: str | int,
    policy: ExpiryPolicy,
    now: float,
    current_ref: str | None,
) -> tuple[list[UserSession], Index, int]:
    """Check a user's ``index`` against the ``stored`` records (by store key) it names.

    :returns: the live sessions most recently seen first, the index with only
        their entries (to prune it), and how many listed sessions had expired.
    """
    listed: list[UserSession] = []
    live: Index = {}
    expired = 0
    for ref, entry in index.items():
        record = stored.get(key_prefix + ref)
        state = None if record is None else decode_state(record, serializer)
        if state is None or not live_user_session(state, user_id, policy, now):
            if state is not None and policy.expires_at(state) <= now:
                expired += 1
            continue
        live[ref] = entry
        listed.append(
            UserSession(
                ref,
                state.created,
                state.last_active,
                policy.expires_at(state),
                dict(entry[1]),
                ref == current_ref,
            )
        )
    listed.sort(key=lambda session: session.last_seen, reverse=True)
    return listed, live, expired


class SessionCounters:
    """What a server-side store counts (``stats()``): thread-safe, since the last build.

    ``created`` sessions (new ids, cycles included), ``revoked`` by
    ``revoke_user``, ``expired`` (found expired on load or in a user's index;
    sessions the server dropped by TTL unseen are not counted),
    ``conflicts_retried`` (compare-and-set attempts lost to a concurrent writer
    and retried).
    """

    NAMES = ("created", "revoked", "expired", "conflicts_retried")

    def __init__(self) -> None:
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._lock = threading.Lock()

    def __call__(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """The counters now."""
        with self._lock:
            return dict(self._counts)


def retry_delay(attempt: int) -> float:
    """Seconds to back off after losing compare-and-set attempt ``attempt`` (0-based): random, capped."""
    return random.uniform(0, min(0.05, 0.0005 * 2**attempt))


__all__ = [
    "CREATE_ATTEMPTS",
    "REINDEX_SLACK",
    "SESSION_ID",
    "Index",
    "Ops",
    "UserSession",
    "RawSerializer",
    "SessionCounters",
    "decode_state",
    "durable_backend",
    "encode_state",
    "hashed_key",
    "decode_index",
    "index_ttl",
    "is_indexed",
    "is_session_id",
    "latest_expiry",
    "live_user_session",
    "prune_index",
    "reindex_until",
    "session_ref",
    "user_index_key",
    "mark_unique",
    "merge_delta",
    "new_session_id",
    "retry_delay",
    "session_delta",
    "unchanged_since_load",
]
