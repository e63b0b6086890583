"""Where a memcached key lives and what it is called there: nodes, generations, detours.

Private to :mod:`cachekit.backends.memcached` (its docstring explains the scheme).
:class:`Routing` is the part of :class:`~cachekit.backends.memcached.sync.MemcachedBackend`
that maps keys to ``(node, stored key)``; its I/O (reading generation tokens) goes
through the backend's ``_call``, so failures reach the circuit breakers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.memcached._keys import GEN_KEY
from cachekit.backends.memcached._keys import SCOPE_SEARCH
from cachekit.backends.memcached._keys import Generations
from cachekit.backends.memcached._keys import lock_tail
from cachekit.backends.memcached._keys import new_token
from cachekit.backends.memcached._keys import out_key
from cachekit.backends.memcached._keys import safe_key
from cachekit.backends.memcached._keys import safe_keys
from cachekit.backends.memcached._keys import scope_of
from cachekit.backends.memcached._pool import Connections
from cachekit.backends.memcached._pool import server_name
from cachekit.backends.memcached._pool import translate_error
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError

logger = logging.getLogger("cachekit.backends.memcached")  # the name sync.py logs under
_monotonic = time.monotonic


class Routing:
    """Key to ``(node, stored key)``: the single server, or the hash ring with its detours."""

    generation_ttl: float
    _hash: Any
    _single: Any
    _ring: Any
    _generations: Generations
    _single_heads: dict[str, tuple[str, float]]

    def _call(self, node: Any, operation: str, *args: Any) -> Any:
        raise NotImplementedError

    def _breaker(self, node: Any) -> CircuitBreaker:
        raise NotImplementedError

    def _node(self, route_key: str) -> Any:
        """The client of the server that holds ``route_key``."""
        if self._hash is None:
            return self._single
        try:
            return self._hash._get_client(route_key)
        except Exception as exc:
            raise translate_error(exc, "routing", None) from exc

    def _head(self, node: Any, scope: str) -> str:
        """The generation prefix for keys of ``scope`` on ``node``."""
        return self._generations.head(self._call, node, scope, self.generation_ttl)

    def _single_key(self, key: str) -> str:
        """The stored form of ``key`` on the one server (:meth:`_locate` with scope_of inlined)."""
        end = key.find(":", 0, SCOPE_SEARCH)
        return safe_key(self._single_head(key[: end + 1] if end >= 0 else ""), key)

    def _single_head(self, scope: str) -> str:
        """:meth:`_head` on the one server, its cached heads looked up first."""
        cached = self._single_heads.get(scope)
        if cached is not None and cached[1] > _monotonic():
            return cached[0]
        return self._head(self._single, scope)

    def _detour(self, route_key: str, node: Any) -> str:
        """The detour mark if ``route_key``'s home is out of the ring and ``node`` stands in, else ``""``."""
        home = self._ring.get_node(route_key)
        if self._hash.clients.get(home) is node:
            return ""
        return self._generations.detour(self._call, node, home, self.generation_ttl)

    def _locate(self, key: str) -> tuple[Any, str]:
        """Return the node holding ``key`` and the key as stored there."""
        if self._hash is None:
            return self._single, self._single_key(key)
        route = safe_key("", key)
        node = self._node(route)
        head = self._head(node, scope_of(key))
        if self._hash._dead_clients:
            head += self._detour(route, node)
        return node, safe_key(head, key)

    def server_for(self, key: str) -> str:
        """The address of the server that holds ``key`` (a backend key) now, e.g. ``"127.0.0.1:11211"``."""
        node = self._single if self._hash is None else self._node(safe_key("", key))
        return server_name(node.server)

    def _rejoin(self, node: Connections) -> bool:
        """Empty this backend's namespace on ``node`` before it rejoins the ring; ``False`` if unreachable.

        While the node was out, its keys were read, written and deleted on
        other nodes: its own copies are stale, and a logout or a tag
        invalidation made meanwhile would be undone if they were read again. A
        new global generation makes them unreachable for every client (others
        read it within ``generation_ttl``); renewing the node's outage token
        on the others retires what was written there during the outage.
        """
        try:
            node.set(GEN_KEY, new_token(), 0, False)
        except Exception as exc:
            logger.info(
                "memcached %s still unreachable, kept out of the ring: %r", server_name(node.server), exc
            )
            return False
        self._generations.forget_server(node.server)
        self._breaker(node).success()  # that write was its probe
        home = self._hash._make_client_key(node.server)
        for other in list(self._hash.clients.values()):
            if other is node or other.server in self._hash._dead_clients:
                continue
            try:
                other.set(out_key(home), new_token(), 0, False)
            except Exception as exc:  # that node is failing itself; its detour keys age out
                logger.info(
                    "memcached %s: outage token of %s not renewed: %r", server_name(other.server), home, exc
                )
        self._generations.forget_detours(home)
        logger.warning(
            "memcached %s rejoined the pool empty (new generation): values from before it left are dropped",
            server_name(node.server),
        )
        return True

    def _locate_lock(self, name: str) -> tuple[Any, str]:
        """Return the node holding lock ``name`` and its stored key."""
        tail = lock_tail(name)
        node = self._single if self._hash is None else self._node(tail)
        return node, self._head(node, scope_of(name)) + tail

    def _group(self, keys: Sequence[str]) -> tuple[dict[Any, dict[str, str]], list[BackendError]]:
        """Map each node to ``{stored key: key}``; nodes whose generation cannot be read are left out."""
        single = self._single
        if single is not None:
            scope = scope_of(keys[0]) if keys else ""
            if scope and all(map(str.startswith, keys, repeat(scope))):
                # One node, one scope (a Cache's keys): one head, the batch mapped at once.
                return {single: dict(zip(safe_keys(self._single_head(scope), keys), keys, strict=True))}, []
            # One node, several scopes: scope_of and _head inlined, heads looked up once per scope.
            heads: dict[str, str] = {}
            stored_keys: dict[str, str] = {}
            for key in keys:
                end = key.find(":", 0, SCOPE_SEARCH)
                scope = key[: end + 1] if end >= 0 else ""
                head = heads.get(scope)
                if head is None:
                    head = heads[scope] = self._head(single, scope)
                stored_keys[safe_key(head, key)] = key
            return {single: stored_keys}, []
        batches: dict[Any, dict[str, str]] = {}
        errors: list[BackendError] = []
        failed: set[Any] = set()
        detours = bool(self._hash._dead_clients)
        for key in keys:
            route = safe_key("", key)
            node = self._node(route)
            if node.server in failed:
                continue
            try:
                head = self._head(node, scope_of(key))
                if detours:
                    head += self._detour(route, node)
                stored = safe_key(head, key)
            except BackendUnavailableError as exc:
                failed.add(node.server)
                errors.append(exc)
                continue
            batches.setdefault(node, {})[stored] = key
        return batches, errors
