"""Connections to memcached servers: address parsing, a lock-free pool, a thread-safe HashClient.

Private to :mod:`cachekit.backends.memcached.sync`. pymemcache's ``PooledClient``
costs microseconds per call and its ``HashClient`` keeps failure bookkeeping
that races between threads; these small classes fix both, and turn pymemcache's
errors into cachekit's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheClientError
from pymemcache.exceptions import MemcacheError
from pymemcache.exceptions import MemcacheServerError
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from pymemcache.exceptions import MemcacheUnknownCommandError
from pymemcache.exceptions import MemcacheUnknownError

from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError

DEFAULT_PORT = 11211

#: A server: ``(host, port)`` or the path of a unix socket.
Server = tuple[str, int] | str


def parse_server(spec: str) -> Server:
    """Parse ``host[:port]``, ``[v6addr][:port]``, ``unix:/path`` or ``/path``.

    :raises ConfigurationError: for an empty host or a bad port.
    """
    text = spec.strip()
    if text.startswith("unix:"):
        text = text[5:]
        if not text:
            raise ConfigurationError(f"Empty unix socket path in {spec!r}.", setting="LOCATION")
        return text
    if text.startswith("/"):
        return text
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"Malformed memcached address {spec!r}.", setting="LOCATION")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise ConfigurationError(
            f"Malformed memcached address {spec!r}: write IPv6 addresses as [addr]:port.",
            setting="LOCATION",
        )
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigurationError(f"Missing host in memcached address {spec!r}.", setting="LOCATION")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigurationError(
                f"Bad port in memcached address {spec!r}; expected host:port.", setting="LOCATION"
            )
        port = int(port_text)
    return (host, port)


def server_name(server: Any) -> str:
    if isinstance(server, tuple):
        host, port = server
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{server}"


class _FailedServers(dict[Any, dict[str, Any]]):
    """HashClient's record of failing servers, tolerant of threads racing on it.

    HashClient checks ``server in failed`` and then reads or pops it without a
    lock; another thread may have removed the entry in between.
    """

    def __missing__(self, server: Any) -> dict[str, Any]:
        return {"failed_time": 0.0, "attempts": 0}

    def pop(self, server: Any, default: Any = None) -> Any:
        return super().pop(server, default)


# First bytes of the reply lines pymemcache raises for: ERROR, CLIENT_ERROR, SERVER_ERROR.
_ERROR_STARTS = (b"E", b"C", b"S")


class ErrorLineReplyError(MemcacheUnknownCommandError):  # type: ignore[misc]
    """An ``ERROR <text>`` reply, with its text (pymemcache keeps only the command's name).

    memcached answers ``ERROR Too many open connections`` (and closes) past ``-c``.
    """


class _CheckedKeysClient(Client):  # type: ignore[misc]
    """A pymemcache ``Client`` that trusts its keys: ``_memcached_keys.safe_key`` has already checked them.

    pymemcache checks every key again (encode, split on whitespace, look for
    NUL), which costs more per key of a ``get_many`` than building the key did.
    """

    def check_key(self, key: str, key_prefix: bytes) -> bytes:
        return key.encode("ascii")

    def _raise_errors(self, line: bytes, name: bytes) -> None:
        # Called on every line of a reply: a VALUE or END line (no E, C or S first) returns at once.
        if line[:1] not in _ERROR_STARTS:
            return
        if line.startswith(b"ERROR "):
            raise ErrorLineReplyError(line.decode("ascii", "replace"))
        super()._raise_errors(line, name)


class Connections:
    """A thread-safe set of connections to one server, with pymemcache ``Client``'s methods.

    Each call borrows an idle ``Client`` (or opens one), runs, and gives it
    back; a client that raised is closed, so a broken socket is never reused.
    pymemcache's ``PooledClient`` does the same under a lock inside a
    generator-based context manager, which costs about 3 µs a call, several
    per cent of a loopback round trip; ``list.pop``/``append`` are atomic, so
    this needs no lock. At most ``max_idle`` idle connections are kept.

    Every borrow checks the process id, as redis-py's pool does: a server that
    forks without running Python's fork hooks (uWSGI without
    ``--py-call-osafterfork``) must not hand a worker its master's sockets,
    or workers read each other's replies.
    """

    def __init__(self, server: Any, *, max_idle: int | None = None, **client_options: Any) -> None:
        #: The server as pymemcache spells it: ``(host, port)`` or a socket path.
        self.server = server
        self._options = client_options
        self._idle: list[Any] = []
        self._max_idle = max_idle if max_idle is not None else 2**31
        self._pid = os.getpid()

    def _borrow(self) -> Any:
        if self._pid != os.getpid():
            self._adopt()
        try:
            return self._idle.pop()
        except IndexError:
            return _CheckedKeysClient(self.server, **self._options)

    def _adopt(self) -> None:
        # In a forked child: the idle clients' sockets are the parent's; never use them.
        inherited, self._idle = self._idle, []
        self._pid = os.getpid()
        for client in inherited:
            client.close()

    def _give_back(self, client: Any) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(client)
        else:
            client.close()

    def _run(self, operation: str, *args: Any) -> Any:
        client = self._borrow()
        try:
            result = getattr(client, operation)(*args)
        except BaseException:
            client.close()
            raise
        self._give_back(client)
        return result

    def get(self, key: str) -> Any:
        client = self._borrow()
        try:
            result = client.get(key)
        except BaseException:
            client.close()
            raise
        self._give_back(client)
        return result

    def set(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        client = self._borrow()
        try:
            result = client.set(key, value, expire, noreply)
        except BaseException:
            client.close()
            raise
        self._give_back(client)
        return result

    def get_many(self, keys: Sequence[str]) -> Any:
        return self._run("get_many", keys)

    def gets(self, key: str) -> Any:
        return self._run("gets", key)

    def set_many(self, values: Mapping[str, bytes], expire: int = 0, noreply: bool | None = None) -> Any:
        return self._run("set_many", values, expire, noreply)

    def add(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        return self._run("add", key, value, expire, noreply)

    def cas(self, key: str, value: bytes, cas: Any, expire: int = 0, noreply: bool = False) -> Any:
        return self._run("cas", key, value, cas, expire, noreply)

    def delete(self, key: str, noreply: bool | None = None) -> Any:
        return self._run("delete", key, noreply)

    def delete_many(self, keys: Sequence[str], noreply: bool | None = None) -> Any:
        return self._run("delete_many", keys, noreply)

    def incr(self, key: str, value: int, noreply: bool = False) -> Any:
        return self._run("incr", key, value, noreply)

    def decr(self, key: str, value: int, noreply: bool = False) -> Any:
        return self._run("decr", key, value, noreply)

    def touch(self, key: str, expire: int = 0, noreply: bool | None = None) -> Any:
        return self._run("touch", key, expire, noreply)

    def flush_all(self, delay: int = 0, noreply: bool | None = None) -> Any:
        return self._run("flush_all", delay, noreply)

    def raw_command(self, command: str | bytes, end_tokens: str | bytes = b"\r\n") -> Any:
        return self._run("raw_command", command, end_tokens)

    def stats(self, *args: str) -> Any:
        return self._run("stats", *args)

    def close(self) -> None:
        """Close the idle connections; borrowed ones are closed or kept when given back."""
        while self._idle:
            try:
                client = self._idle.pop()
            except IndexError:
                break
            client.close()

    def __del__(self) -> None:
        # A backend dropped without close() must not leave its sockets to the garbage
        # collector. No module globals here: at interpreter exit they may be None.
        try:  # noqa: SIM105 - contextlib may already be None at interpreter exit
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<memcached connections to {server_name(self.server)}>"


#: Called with a dead node's connections before it rejoins the ring; False keeps it out.
Rejoin = Callable[[Connections], bool]


class PoolClient(HashClient):  # type: ignore[misc]
    """pymemcache's HashClient over :class:`Connections`, its node bookkeeping made thread-safe.

    It also keeps a node's connections when the node rejoins the ring, rather
    than replacing them and leaving the old sockets to the garbage collector,
    and runs a ``rejoin`` hook first: a node that was out of the ring may hold
    values that were changed or deleted elsewhere meanwhile, so the backend
    empties its namespace there before any key maps back to it. A node whose
    hook fails (still unreachable) stays out for another ``dead_timeout``.
    """

    # Set by HashClient; declared for the type checker.
    _last_dead_check_time: float
    _dead_clients: dict[Any, float]

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        max_idle: int | None,
        rejoin: Callable[[], Rejoin | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self._guard = threading.RLock()
        self._max_idle = max_idle
        # A weak reference (WeakMethod) to the backend's hook, so the backend is not kept alive by its client.
        self._rejoin = rejoin
        super().__init__(servers, use_pooling=False, **kwargs)
        self._failed_clients = _FailedServers()

    def add_server(self, server: Any, port: Any = None) -> None:
        if port is not None:
            server = (server, port)
        with self._guard:
            key = self._make_client_key(server)
            if key not in self.clients:
                self.clients[key] = Connections(server, max_idle=self._max_idle, **self.default_kwargs)
            self.hasher.add_node(key)

    def remove_server(self, server: Any, port: Any = None) -> None:
        with self._guard:
            if self._make_client_key(server) in self.hasher.nodes:
                super().remove_server(server, port)

    def _mark_failed_server(self, server: Any) -> None:
        with self._guard:
            super()._mark_failed_server(server)

    def _retry_dead(self) -> None:
        # HashClient's own version, with the rejoin hook run before a node is put back.
        with self._guard:
            now = time.time()
            if now - self._last_dead_check_time <= self.dead_timeout:
                return
            self._last_dead_check_time = now
            hook = self._rejoin() if self._rejoin is not None else None
            for server, dead_time in list(self._dead_clients.items()):
                if now - dead_time <= self.dead_timeout:
                    continue
                node = self.clients.get(self._make_client_key(server))
                if hook is not None and node is not None and not hook(node):
                    self._dead_clients[server] = now
                    continue
                self.add_server(server)
                del self._dead_clients[server]


#: The starts of memcached error replies (lower case) that mean "not now" rather than "never like this".
OUTAGE_REPLIES = (
    # Memory full and nothing evictable (-M, or every slab's items in use): storing,
    # reading a request, writing a get response or stats, incrementing.
    "server_error out of memory",
    # An item fetched by too many clients at once: retrying later succeeds.
    "server_error refcount overflow",
    # Past the connection limit (-c); the server closes the connection too.
    "error too many open connections",
)


def error_reply(exc: BaseException) -> str | None:
    """The error reply behind a pymemcache exception (``"SERVER_ERROR out of memory ..."``), or ``None``."""
    if isinstance(exc, ErrorLineReplyError):
        return str(exc.args[0])
    if isinstance(exc, MemcacheUnknownCommandError):
        return "ERROR"
    for kind, word in ((MemcacheServerError, "SERVER_ERROR"), (MemcacheClientError, "CLIENT_ERROR")):
        if isinstance(exc, kind):
            text = exc.args[0] if exc.args else b""
            if isinstance(text, bytes):
                text = text.decode("ascii", "replace")
            return f"{word} {text}".rstrip()
    return None


def reply_is_outage(reply: str) -> bool:
    """Whether a memcached error reply means an outage (retry later) rather than a bug in the request.

    Memory and connection exhaustion (:data:`OUTAGE_REPLIES`) are outages. Every
    other reply is a bug: ``ERROR`` (unknown command), ``CLIENT_ERROR ...`` (a
    malformed request, a non-numeric ``incr``), ``SERVER_ERROR object too large
    for cache`` (this value will never fit) and unknown ``SERVER_ERROR`` texts.
    Pure, so the table test covers it without a server.
    """
    return reply.lower().startswith(OUTAGE_REPLIES)


def _unavailable(exc: BaseException) -> bool:
    # A reply the client cannot parse means the stream is out of step (a broken connection,
    # or not memcached at all): the connection is closed, and only a retry can succeed.
    if isinstance(exc, (OSError, MemcacheUnexpectedCloseError, MemcacheUnknownError)):
        return True
    reply = error_reply(exc)
    if reply is not None:
        return reply_is_outage(reply)
    # HashClient's "All servers seem to be down" is a bare MemcacheError.
    return type(exc) is MemcacheError


def translate_error(exc: BaseException, operation: str, server: Any) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    where = server_name(server) if server is not None else "memcached"
    if _unavailable(exc):
        return BackendUnavailableError(f"memcached {where} unavailable during {operation}: {exc!r}")
    return BackendError(f"memcached {where} failed during {operation}: {exc!r}")
