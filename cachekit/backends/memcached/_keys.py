"""memcached key names: legal keys, scopes, lock keys and the namespace generations.

Private to :mod:`cachekit.backends.memcached`, whose docstring explains the
scheme: a stored key is ``<generation head><key>``, or ``<head>~<sha256>`` when
the key does not fit memcached's rules; the head is the global generation token
plus the token of the key's scope, both kept in memcached on each node. A key
whose home node is out of the ring lives on another node as
``<head>~D<outage token>:<key>``, the token kept on that node per absent node.
:class:`Generations` reads and caches those heads; the I/O goes through the
backend's ``call(node, operation, *args)`` so that pool failures are counted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from cachekit.backends.memcached._pool import server_name
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

#: memcached's key length limit, in bytes.
MAX_KEY = 250
#: A scope is looked for only in a key's first characters, so a long key without ':' is cheap.
SCOPE_SEARCH = 100
_TOKEN_BYTES = 6  # 8 URL-safe characters
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{8}")
#: Internal keys contain '.', which no generation token does, so they never meet a data key.
GEN_KEY = "cachekit.gen"
# Lock keys live in the generation namespace as "<head>~L<sha256>": no data key takes that form.
_LOCK_MARK = "~L"

# Keys whose home node is out of the ring are stored on another node as "<head>~D<token>:<key>":
# the token names that outage there, so they never meet the home node's own keys.
_DETOUR_MARK = "~D"
#: Prefix of the keys (on every node) holding the outage token of another node.
OUT_KEY = "cachekit.out:"

#: ``call(node, operation, *args)``: run one pymemcache call on ``node``.
Call = Callable[..., Any]


def digest(text: str) -> str:
    """SHA-256 of ``text`` in hex; lone surrogates are kept, not refused."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _fits(text: str) -> bool:
    """Whether every character of ``text`` may stand in a memcached key: printable ASCII, no space."""
    return text.isascii() and text.isprintable() and " " not in text


def safe_key(head: str, key: str) -> str:
    """Return ``head + key`` if memcached can hold it, else ``head + "~" + sha256(key)``."""
    full = head + key
    if len(full) <= MAX_KEY and _fits(full) and key[:1] != "~":
        return full
    return f"{head}~{digest(key)}"


def safe_keys(head: str, keys: Sequence[str]) -> list[str]:
    """:func:`safe_key` of each key under one ``head``.

    The common batch, every key legal as it is and no ``~`` anywhere, is checked in
    one pass over all of them; any other batch goes key by key.
    """
    fulls = [head + key for key in keys]
    joined = "".join(fulls)
    if max(map(len, fulls), default=0) <= MAX_KEY and _fits(joined) and "~" not in joined:
        return fulls
    return [safe_key(head, key) for key in keys]


def scope_of(key: str) -> str:
    """The part of ``key`` whose generation it carries: up to its first ``:``, or ``""``."""
    end = key.find(":", 0, SCOPE_SEARCH)
    return key[: end + 1] if end >= 0 else ""


def generation_key(scope: str) -> str:
    """The memcached key holding the generation token of ``scope`` (``""``: the global one)."""
    return safe_key(GEN_KEY + ":", scope) if scope else GEN_KEY


def lock_tail(name: str) -> str:
    """The stored key of lock ``name``, without its generation head."""
    return _LOCK_MARK + digest(name)


def out_key(home: str) -> str:
    """The key holding, on a substitute node, the outage token of the node named ``home``."""
    return safe_key(OUT_KEY, home)


def new_token() -> bytes:
    """A fresh random generation token."""
    return secrets.token_urlsafe(_TOKEN_BYTES).encode()


class Generations:
    """The generation heads read from memcached, per server and scope, each trusted for a while.

    Plain dicts without a lock: two threads racing for one head only cost a re-read.
    """

    def __init__(self) -> None:
        #: server -> scope -> (key head, trusted until).
        self.by_server: dict[Any, dict[str, tuple[str, float]]] = {}
        #: (substitute server, home node name) -> (detour mark, trusted until).
        self.detours: dict[tuple[Any, str], tuple[str, float]] = {}

    def heads(self, server: Any) -> dict[str, tuple[str, float]]:
        """The cached heads of ``server``: the dict itself, for callers that inline the lookup."""
        heads = self.by_server.get(server)
        if heads is None:
            heads = self.by_server.setdefault(server, {})
        return heads

    def head(self, call: Call, node: Any, scope: str, ttl: float) -> str:
        """The generation prefix for keys of ``scope`` on ``node``, read again after ``ttl`` seconds.

        A missing token is created with ``add`` (whoever adds first wins).

        :raises BackendUnavailableError: if the node cannot be reached.
        :raises BackendError: if a generation key holds something else than a token.
        """
        heads = self.heads(node.server)
        cached = heads.get(scope)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        keys = [GEN_KEY, generation_key(scope)] if scope else [GEN_KEY]
        found = call(node, "get_many", keys)
        tokens = [self._checked(call, node, key, found.get(key)) for key in keys]
        head = b"".join(tokens).decode("ascii") + ":"
        heads[scope] = (head, time.monotonic() + ttl)
        return head

    def _token(self, call: Call, node: Any, key: str) -> bytes:
        """The token under ``key`` on ``node``, created with ``add`` if missing (whoever adds first wins)."""
        return self._checked(call, node, key, call(node, "get", key))

    @staticmethod
    def _checked(call: Call, node: Any, key: str, token: bytes | None) -> bytes:
        """``token`` as read from ``key``: created with ``add`` if missing, refused if not a token."""
        if token is None:
            fresh = new_token()
            token = fresh if call(node, "add", key, fresh, 0) else call(node, "get", key)
            if token is None:
                raise BackendUnavailableError(
                    f"memcached {server_name(node.server)} dropped generation key {key!r} at once."
                )
        if not _TOKEN.fullmatch(token):
            raise BackendError(
                f"Generation key {key!r} on memcached {server_name(node.server)} holds "
                f"{token[:20]!r}, not a token; delete it to start a new generation."
            )
        return bytes(token)

    def detour(self, call: Call, node: Any, home: str, ttl: float) -> str:
        """The mark keys of the out-of-ring node ``home`` carry on ``node`` while they live there.

        Every client that finds ``home`` out of the ring reads the same token on
        ``node``, so they share those keys; when ``home`` rejoins, the token is
        renewed (:meth:`renew_detours`), so what was written during this outage is
        never read again, not even in the next one.
        """
        slot = (node.server, home)
        cached = self.detours.get(slot)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        mark = _DETOUR_MARK + self._token(call, node, out_key(home)).decode("ascii") + ":"
        self.detours[slot] = (mark, time.monotonic() + ttl)
        return mark

    def forget_server(self, server: Any) -> None:
        """Drop every cached head of ``server`` (its generation was just renewed)."""
        self.by_server.get(server, {}).clear()

    def forget_detours(self, home: str) -> None:
        """Drop the cached detour marks of ``home`` on every node."""
        for slot in [slot for slot in self.detours if slot[1] == home]:
            self.detours.pop(slot, None)

    def forget(self, scope: str) -> None:
        """Drop the cached heads of ``scope`` on every server (``""``: every head)."""
        for heads in self.by_server.values():
            if scope:
                heads.pop(scope, None)
            else:
                heads.clear()
