"""The pure rules both Redis backends follow: scripts, key mapping, TTLs and write calls.

Private to :mod:`cachekit.backends.redis`. Nothing here does I/O, so the sync and the
asyncio backend share every line of it; each writes only its own calls to the client.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import redis

from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py without hiredis: each connection packs with its own packer
    _pack_command = None  # type: ignore[assignment]

_command_name = inspect.signature(redis.ConnectionPool.get_connection).parameters.get("command_name")
#: What ``get_connection`` of a pool is given: redis-py before 5.3 wants a command's name
#: (and ignores it: any name does for every command sent directly).
CHECKOUT_ARGS: tuple[str, ...] = (
    ("GET",) if _command_name is not None and _command_name.default is inspect.Parameter.empty else ()
)

# Keys per command in set_many/clear batches: bounds the time one command blocks the server.
BATCH = 1000
# How often a blocked lock.acquire() asks again.
LOCK_POLL = 0.025

# INCRBY creates a missing key, so check first; INCRBY keeps the key's TTL.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
# PERSIST answers 0 both for a missing key and for one without a TTL.
_PERSIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
"""
# One round trip for set_many with a timeout (Redis 7 has no multi-key SET with PX).
_SET_MANY_PX = """
local px = ARGV[1]
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'PX', px) end
return #KEYS
"""
# The token is the value gets() saw; a vanished key reads as false and never matches.
_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""
# Only when retried after a lost reply: a key already holding the new value counts as
# stored, because the first run most likely applied. Never on a first run: two writers
# that read the same token and write equal bytes (both turn 5 into 6) must not both win.
_CAS_AGAIN = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] and current ~= ARGV[1] then return 1 end
if current ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""
# add() retried after a lost reply: the key holding exactly our value means the first
# attempt stored it (the bytes are the caller's own), so it reports True, not "taken".
_ADD_AGAIN = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
_ADD_AGAIN_FOREVER = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
# The lock: taken with a random token; a holder that finds its own token (its earlier
# attempt took the lock, the reply was lost) holds it, and refreshes its TTL.
_LOCK_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Delete the lock only if it still holds our token (it may have expired and been retaken).
_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def ms(ttl: float) -> int:
    """Seconds to whole milliseconds, at least 1 (``PX 0`` is an error)."""
    return max(1, round(ttl * 1000))


def glob_escape(text: str) -> str:
    """Escape ``SCAN MATCH`` glob characters so a prefix matches literally."""
    for char in "\\*?[]":
        text = text.replace(char, "\\" + char)
    return text


def register_scripts(client: Any) -> dict[str, Any]:
    """Register this backend's Lua scripts with a sync or async redis-py client."""
    return {
        name: client.register_script(source)
        for name, source in (
            ("incr", _INCR),
            ("persist", _PERSIST),
            ("set_many_px", _SET_MANY_PX),
            ("cas", _CAS),
            ("cas_again", _CAS_AGAIN),
            ("add_again", _ADD_AGAIN),
            ("add_again_forever", _ADD_AGAIN_FOREVER),
            ("lock_acquire", _LOCK_ACQUIRE),
            ("lock_release", _LOCK_RELEASE),
        )
    }


#: A write as the backends send it: ``first(target)`` once, ``again(target)`` after a lost reply.
WriteCalls = tuple[Callable[[Any], Any], Callable[[Any], Any]]


#: Runs the registered script of that name with ``keys`` and ``args`` on a client or pipeline:
#: a backend's ``_run_script`` (sync, or returning an awaitable).
RunScript = Callable[[str, list[Any], list[Any], Any], Any]


def _through_scripts(script: Callable[[str], Any]) -> RunScript:
    """A :data:`RunScript` calling the redis-py ``Script`` objects ``script(name)`` returns."""

    def run(name: str, keys: list[Any], args: list[Any], target: Any) -> Any:
        return script(name)(keys=keys, args=args, client=target)

    return run


def add_calls(
    script: Callable[[str], Any],
    wire: str | bytes,
    value: bytes,
    ttl: float | None,
    run: RunScript | None = None,
) -> WriteCalls:
    """``add``'s two calls, for the sync and async clients alike: ``SET NX``, then the retry script.

    The retry counts the key already holding this very value as added (the lost attempt stored it).
    It runs through ``run`` when given (the backends' own, which may send ``EVALSHA`` directly),
    else through the ``Script`` objects that ``script(name)`` returns.
    """
    run = run or _through_scripts(script)
    args: list[Any]
    if ttl is None:
        again_script, args = "add_again_forever", [value]
        command: tuple[Any, ...] = ("SET", wire, value, "NX")
    else:
        again_script, args = "add_again", [value, ms(ttl)]
        command = ("SET", wire, value, "PX", ms(ttl), "NX")

    def first(target: Any) -> Any:
        return target.execute_command(*command)

    def again(target: Any) -> Any:
        return run(again_script, [wire], args, target)

    return first, again


def cas_calls(
    script: Callable[[str], Any],
    wire: str | bytes,
    token: bytes,
    value: bytes,
    ttl: float | None,
    run: RunScript | None = None,
) -> WriteCalls:
    """``cas``'s two calls: the strict script, then the retry that counts ``value`` there as stored.

    Both run through ``run`` when given, else through the ``Script`` objects of ``script(name)``.
    """
    run = run or _through_scripts(script)
    keys, args = [wire], [token, value, "" if ttl is None else ms(ttl)]

    def first(target: Any) -> Any:
        return run("cas", keys, args, target)

    def again(target: Any) -> Any:
        return run("cas_again", keys, args, target)

    return first, again


def check_value_size(backend: Any, key: str, value: bytes) -> None:
    """Refuse a value over ``backend.max_value_size``; a method of both backends."""
    if len(value) > backend.max_value_size:
        raise BackendError(
            f"Value for {key!r} is {len(value)} bytes, above max_value_size="
            f"{backend.max_value_size}; store less or raise the max_value_size option."
        )


def wire_key(key: str) -> str | bytes:
    """The key as sent: itself when ASCII, else UTF-8 with surrogates kept.

    hiredis encodes ``str`` arguments as strict UTF-8, so a key holding a lone
    surrogate would raise; encoding it here keeps every ``str`` a storable key.
    """
    return key if key.isascii() else key.encode("utf-8", "surrogatepass")


def wire_keys(keys: Sequence[str]) -> Sequence[str | bytes]:
    """:func:`wire_key` for each key; ``keys`` itself when all are ASCII (the common case)."""
    if "".join(keys).isascii():  # one C pass over the batch, 5x faster than a check per key
        return keys
    return [wire_key(key) for key in keys]


def direct_pool(client: Any, plain_class: type[Any]) -> Any | None:
    """The pool the hot commands are sent on directly, or ``None`` to send them through ``client``.

    Those commands are ``get_many``'s ``MGET``, ``get``'s ``GET`` and the ``EVALSHA``
    of ``cas`` and of the write retries' scripts, each packed by :func:`packed` and sent
    on a connection checked out of this pool (each backend's ``_command``). redis-py's
    command layer (its per-argument packing checks, retry wrapper and metrics hooks)
    costs more client CPU than the round trip for 100 keys, and several microseconds
    of a single ``GET``.

    Only a client of exactly ``plain_class`` (``redis.Redis`` or ``redis.asyncio.Redis``;
    not a subclass, which may change how commands run) with a connection pool, no
    single pinned connection, no client-side cache and no retries of redis-py's own
    qualifies (the backend's clients turn those retries off; a ready-made client keeps
    them, so it keeps the client's commands too). Such a client gives up redis-py's own
    command metrics (off unless configured) and what tracing tools see by patching
    ``execute_command``. It keeps the rest: the pool still checks the process id,
    blocks, health-checks and reconnects; each connection still disconnects on any
    error; the backend retries and counts failures as around any call.
    """
    if type(client) is not plain_class or getattr(client, "connection", None) is not None:
        return None
    retry = client.get_retry()
    if retry is not None and retry.get_retries() != 0:
        return None
    # The sync client names it with an underscore, the asyncio one without.
    pinned = getattr(client, "single_connection_client", False)
    if pinned or getattr(client, "_single_connection_client", False):
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return None
    return pool


def packed(connection: Any, command: tuple[Any, ...]) -> list[bytes]:
    """``command`` (name and arguments) packed for ``connection.send_packed_command``.

    By hiredis in one C call; without hiredis by the connection's own packer (its encoder).
    Arguments are ``str`` (ASCII keys, see :func:`wire_key`), ``bytes`` or ``int``, which
    both pack alike.
    """
    if _pack_command is None:
        chunks: list[bytes] = connection.pack_command(*command)
        return chunks
    return [_pack_command(command)]


def evalsha_command(script: Any, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
    """The ``EVALSHA`` a redis-py ``Script`` call sends first, for :func:`packed`."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def found(keys: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """``MGET``'s answer as ``get_many`` returns it: the found keys only."""
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


def incr_error(exc: BackendError, key: str, delta: int) -> BackendError:
    """The message for a refused ``incr``: not an integer, an overflow, or the error as it came."""
    text = str(exc.__cause__ or exc)
    if isinstance(exc, BackendUnavailableError):
        return exc
    if "not an integer" in text:
        return BackendError(f"Value under {key!r} is not an integer; incr needs one.")
    if "overflow" in text:
        return BackendError(f"Adding {delta!r} to {key!r} would overflow 64 bits.")
    return exc


def lock_pause(deadline: float | None) -> float | None:
    """How long a blocked lock acquisition waits before asking again; ``None`` once past ``deadline``."""
    if deadline is None:
        return LOCK_POLL
    left = deadline - time.monotonic()
    return min(LOCK_POLL, left) if left > 0 else None
