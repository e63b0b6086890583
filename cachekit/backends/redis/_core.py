"""What both Redis backends share that does no I/O: construction, breakers, durable views.

Private to :mod:`cachekit.backends.redis`. :class:`RedisCore` is the base of
:class:`~cachekit.backends.redis.sync.RedisBackend` and
:class:`~cachekit.backends.redis.asyncio.AsyncRedisBackend`; each writes only its
calls to the client (``_call``, ``_recover``, the commands), as redis-py writes its
sync and asyncio clients.
"""

from __future__ import annotations

import copy
import importlib
import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any
from typing import ClassVar
from typing import TypeVar

from cachekit.backends.breaker import CircuitBreaker
from cachekit.backends.redis._clients import Clients
from cachekit.backends.redis._clients import blocking_client
from cachekit.backends.redis._errors import ERRORS
from cachekit.backends.redis._errors import backoff
from cachekit.backends.redis._errors import retryable
from cachekit.backends.redis._errors import translate_error
from cachekit.backends.redis._rules import BATCH
from cachekit.backends.redis._rules import WriteCalls
from cachekit.backends.redis._rules import add_calls
from cachekit.backends.redis._rules import cas_calls
from cachekit.backends.redis._rules import check_value_size
from cachekit.backends.redis._rules import direct_pool
from cachekit.backends.redis._rules import ms
from cachekit.backends.redis._rules import register_scripts
from cachekit.backends.redis._rules import wire_key
from cachekit.backends.redis._rules import wire_keys
from cachekit.backends.redis._urls import OPTIONS
from cachekit.backends.redis._urls import DirectURL
from cachekit.backends.redis._urls import ParsedURL
from cachekit.backends.redis._urls import SentinelURL
from cachekit.backends.redis._urls import Standalone
from cachekit.backends.redis._urls import parse_location
from cachekit.backends.redis._urls import parse_url
from cachekit.backends.redis._urls import redact_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import MissingKeyError

_B = TypeVar("_B", bound="RedisCore")
_T = TypeVar("_T")


class RedisCore:
    """The state and rules of a Redis backend, for the sync and the asyncio one alike."""

    #: Options accepted by ``from_url``/``from_location`` (and URL query strings).
    OPTIONS: ClassVar[Mapping[str, type]] = OPTIONS
    stores_objects: ClassVar[bool] = False
    #: The side's client builders (:data:`~cachekit.backends.redis._clients.SYNC` or ``ASYNC``).
    _clients: ClassVar[Clients]
    #: The class name shown by ``repr``.
    _kind: ClassVar[str]
    #: ``"module:Class"`` built instead when ``near_cache`` is set (only on the backend itself,
    #: not on that near-cache subclass).
    _near_variant: ClassVar[str]

    _node_guard = threading.Lock()
    _error = translate_error
    _check_size = check_value_size

    max_value_size: int
    flush_db_on_clear: bool
    scan_count: int
    retries: int
    _breaker: CircuitBreaker
    _breaker_options: dict[str, Any]
    _node_breakers: dict[str, CircuitBreaker]
    _wait: tuple[int, int] | None
    _client: Any
    #: The pool ``MGET``, ``GET`` and ``EVALSHA`` are sent on directly, or ``None`` (see ``direct_pool``).
    _direct: Any
    _scripts: dict[str, Any]
    _cluster: bool
    _location: str
    _factory: Callable[[], Any]

    def _setup(
        self,
        server: Standalone,
        client: Any,
        stored: tuple[int, bool, int],
        breaker: tuple[int, float, float],
    ) -> None:
        """Check the options and set the state; build the client unless one is given.

        ``stored`` is ``(max_value_size, flush_db_on_clear, scan_count)``, ``breaker``
        ``(breaker_failures, breaker_window, breaker_cooldown)``.
        """
        max_value_size, flush_db_on_clear, scan_count = stored
        breaker_failures, breaker_window, breaker_cooldown = breaker
        server.check(max_value_size=max_value_size, scan_count=scan_count)
        #: Largest value accepted, in bytes.
        self.max_value_size = max_value_size
        #: Whether ``clear()`` without a prefix may use ``FLUSHDB``.
        self.flush_db_on_clear = flush_db_on_clear
        #: Keys per ``SCAN``/``UNLINK`` batch in ``clear()``.
        self.scan_count = scan_count
        #: Times a call is retried after a lost connection.
        self.retries = server.retries
        self._breaker_options = {
            "failures": breaker_failures,
            "window": breaker_window,
            "cooldown": breaker_cooldown,
        }
        self._breaker = CircuitBreaker(**self._breaker_options, name="redis")
        self._node_breakers = {}
        # (replicas, timeout in ms) on a durable() view: writes then WAIT for replicas.
        self._wait = None
        self._client = None
        self._direct = None
        self._scripts = {}
        self._cluster = False
        if client is not None:
            self._location = f"client={getattr(client, '__name__', type(client).__name__)}"
            self._factory = client if callable(client) else lambda: client
            if not callable(client):
                self._bind(client)
            return
        self._location = server.location
        self._breaker.name = f"redis {server.location}"
        # redis.Redis connects on the first command, not here.
        redis_client = blocking_client(self._clients.module, server)
        self._factory = lambda: redis_client
        self._bind(redis_client)

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_url(cls: type[_B], url: str, **options: Any) -> _B:
        """Build the backend from a Redis URL without a query string.

        Schemes: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``
        and ``redis+cluster://`` (see :mod:`cachekit.backends.redis.sync` for their forms).

        :param options: typed options from :attr:`OPTIONS` (``cachekit.config`` converts
            a URL's query string into these).
        :raises ConfigurationError: for a malformed URL or a bad option.
        """
        return cls._build(parse_url(url, options))

    @classmethod
    def from_location(cls: type[_B], location: str | Sequence[str] | None, **options: Any) -> _B:
        """Build the backend from a settings ``LOCATION``.

        ``LOCATION`` is a URL, ``"host:port"``, ``None`` (``redis://127.0.0.1:6379/0``),
        or a list of ``redis+sentinel://``/``redis+cluster://`` URLs whose hosts are
        merged. Several plain ``redis://`` URLs are refused: this backend does not
        shard or split reads on the client.
        """
        return cls._build(parse_location(location, options))

    @classmethod
    def _build(cls: type[_B], parsed: ParsedURL) -> _B:
        make: Callable[..., _B] = cls
        if isinstance(parsed, DirectURL):
            return make(**parsed.kwargs)
        connect: Callable[[], Any]
        if isinstance(parsed, SentinelURL):
            connect = partial(cls._clients.sentinel, parsed)
        else:
            connect = partial(cls._clients.cluster, parsed)
        backend = make(client=connect, retries=parsed.retries, **parsed.backend_options)
        backend._location = parsed.location
        backend._breaker.name = f"redis {redact_url(parsed.location)}"
        return backend

    def _bind(self, client: Any) -> None:
        """Adopt ``client`` and register the scripts with it."""
        self._cluster = isinstance(client, self._clients.cluster_class)
        self._scripts = register_scripts(client)
        self._direct = direct_pool(client, self._clients.module.Redis)
        self._client = client

    def __new__(cls, *args: Any, near_cache: int = 0, **options: Any) -> Any:
        variant = cls.__dict__.get("_near_variant")
        if near_cache and variant:
            module_name, _, class_name = variant.partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
        return super().__new__(cls)

    def _connect(self) -> Any:
        """Build the client on first use; each side says how."""
        raise NotImplementedError

    def _run_script(self, name: str, keys: list[Any], args: list[Any], target: Any) -> Any:
        """Run the script ``name`` on ``target`` (the client or a pipeline); each side says how."""
        raise NotImplementedError

    def _bind_new(self) -> None:
        """Build and adopt a client from the factory; a failure counts against the breaker."""
        try:
            self._bind(self._factory())
        except ERRORS as exc:
            raise self._fail(self._breaker, exc, "connect") from exc

    @property
    def client(self) -> Any:
        """The underlying redis-py client (``Redis`` or ``RedisCluster``, sync or asyncio)."""
        client = self._client
        return client if client is not None else self._connect()

    def __repr__(self) -> str:
        return f"{self._kind}({redact_url(self._location)!r})"

    def _script(self, name: str) -> Any:
        """The registered script ``name``, building the client first if needed."""
        if self._client is None:
            self._connect()
        return self._scripts[name]

    # -- the breakers -------------------------------------------------------------

    def breakers(self) -> list[CircuitBreaker]:
        """The circuit breakers: the backend's own, plus one per Cluster node seen so far."""
        return [self._breaker, *self._node_breakers.values()]

    def _breaker_for(self, wire_key: str | bytes) -> CircuitBreaker:
        """The breaker guarding ``wire_key``: its master node's in Cluster mode, else the backend's."""
        if not self._cluster:
            return self._breaker
        try:
            node = self._client.get_node_from_key(wire_key)
        except ERRORS:
            return self._breaker  # no node covers the slot: count it against the cluster
        return self._node_breaker(node.name)

    def _node_breaker(self, name: str) -> CircuitBreaker:
        breaker = self._node_breakers.get(name)
        if breaker is None:
            with self._node_guard:
                breaker = self._node_breakers.setdefault(
                    name, CircuitBreaker(**self._breaker_options, name=f"redis node {name}")
                )
        return breaker

    def _fail(
        self, breaker: CircuitBreaker, exc: BaseException, operation: str, key: str | None = None
    ) -> BackendError:
        """Translate ``exc``; an outage counts against ``breaker``, any reply proves the server is up."""
        error = self._error(exc, operation, key)
        if isinstance(error, BackendUnavailableError):
            breaker.failure()
        else:
            breaker.success()
        return error

    def _by_node(self, client: Any, wire: Sequence[str | bytes]) -> dict[str, list[int]]:
        """Indexes of ``wire`` grouped by the name of the master node holding each key's slot."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(wire):
            try:
                name = client.get_node_from_key(key).name
            except ERRORS:
                name = ""  # no node covers the slot: its own group, which fails alone
            groups.setdefault(name, []).append(index)
        return groups

    def _pause_before_retry(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based) after ``exc``; ``None``: raise instead."""
        if attempt >= self.retries or not retryable(exc):
            return None
        return backoff(attempt)

    @staticmethod
    def _succeeded(breaker: CircuitBreaker, result: _T) -> _T:
        """``result``, after telling ``breaker`` the call went through."""
        breaker.success()
        return result

    @staticmethod
    def _raise_node_failures(failures: Sequence[BackendError], groups: int, operation: str) -> None:
        """After a per-node call: raise the first failure, unless a read got some node's answer."""
        if failures and (operation != "MGET" or len(failures) == groups):
            raise failures[0]

    # -- what the commands send (each side sends it) ------------------------------

    def _check_sizes(self, items: Mapping[str, bytes]) -> None:
        for key, value in items.items():
            if len(value) > self.max_value_size:
                self._check_size(key, value)

    def _set_args(self, key: str, value: bytes, ttl: float | None) -> tuple[Any, ...]:
        """``SET``'s arguments, for ``execute_command`` (it skips the dozen option checks of ``set()``)."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        wire = wire_key(key)
        return ("SET", wire, value) if ttl is None else ("SET", wire, value, "PX", ms(ttl))

    def _set_batches(
        self, client: Any, items: Mapping[str, bytes], ttl: float | None
    ) -> list[Callable[[], Any]]:
        """One call per batch of :data:`BATCH` items: ``MSET``, or the ``SET ... PX`` script."""
        wire = wire_keys(list(items))
        values = list(items.values())
        runs: list[Callable[[], Any]] = []
        for start in range(0, len(values), BATCH):
            keys, batch = wire[start : start + BATCH], values[start : start + BATCH]
            if ttl is None:
                runs.append(partial(client.mset, dict(zip(keys, batch, strict=True))))
            else:
                runs.append(partial(self._scripts["set_many_px"], keys=keys, args=[ms(ttl), *batch]))
        return runs

    @staticmethod
    def _queue_sets(
        pipe: Any, pairs: Sequence[tuple[str | bytes, bytes]], indexes: list[int], px: int | None
    ) -> None:
        """Queue the ``SET``s of one Cluster node's share of ``pairs`` on its pipeline."""
        for index in indexes:
            wire, value = pairs[index]
            pipe.set(wire, value, px=px)

    @staticmethod
    def _keep_hits(
        hits: dict[str, bytes], keys: Sequence[str], indexes: list[int], values: Sequence[bytes | None]
    ) -> None:
        """Add one Cluster node's ``MGET`` answer to ``hits``."""
        for index, value in zip(indexes, values, strict=True):
            if value is not None:
                hits[keys[index]] = value

    def _add_calls(self, key: str, value: bytes, ttl: float | None) -> tuple[str | bytes, WriteCalls]:
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        wire = wire_key(key)
        return wire, add_calls(self._script, wire, value, ttl, self._run_script)

    def _cas_calls(
        self, key: str, value: bytes, token: Any, ttl: float | None
    ) -> tuple[str | bytes, WriteCalls] | None:
        """``cas``'s calls, or ``None`` for a token no ``gets`` of this backend gave."""
        if len(value) > self.max_value_size:
            self._check_size(key, value)
        if not isinstance(token, bytes):
            return None
        wire = wire_key(key)
        return wire, cas_calls(self._script, wire, token, value, ttl, self._run_script)

    @staticmethod
    def _delete_calls(key: str) -> tuple[str | bytes, WriteCalls]:
        wire = wire_key(key)

        def run(target: Any) -> Any:
            return target.unlink(wire)

        return wire, (run, run)

    def _incr_call(self, key: str, delta: int) -> tuple[str | bytes, Callable[[], Any]]:
        wire = wire_key(key)
        return wire, partial(self._script("incr"), keys=[wire], args=[delta])

    @staticmethod
    def _incr_result(result: Any, key: str) -> int:
        if result is None:
            raise MissingKeyError(key)
        return int(result)

    def _touch_call(self, client: Any, key: str, ttl: float | None) -> tuple[str | bytes, Callable[[], Any]]:
        """``PEXPIRE``, or for ``None`` the ``PERSIST`` script (plain ``PERSIST`` hides a missing key)."""
        wire = wire_key(key)
        if ttl is None:
            return wire, partial(self._scripts["persist"], keys=[wire])
        return wire, partial(client.pexpire, wire, ms(ttl))

    # -- durable writes (WAIT) -------------------------------------------------------

    def durable(self: _B, replicas: int, timeout: float) -> _B:
        """A view of this backend whose ``add``, ``cas`` and ``delete`` wait for replicas.

        Each of those writes is sent with ``WAIT replicas timeout`` on the same
        connection, in one round trip; when fewer replicas than ``replicas``
        acknowledged it within ``timeout`` seconds the call fails with
        :class:`BackendUnavailableError` (the session middleware answers 503), so a
        write is acknowledged only once a failover cannot lose it. Keep ``timeout``
        below ``socket_timeout``. The view shares the client, pool and breakers.

        :raises ConfigurationError: for ``replicas`` below 1 or a ``timeout`` not above 0.
        """
        if replicas < 1 or not timeout > 0:
            raise ConfigurationError(
                f"durable() needs replicas >= 1 and timeout > 0, got {replicas!r} and {timeout!r}.",
                setting="replicas",
            )
        view = copy.copy(self)
        view._wait = (replicas, ms(timeout))
        return view

    def _waited(self, results: list[Any], operation: str, key: str | None) -> Any:
        """The write's own reply from ``[reply, WAIT's count]``, or an outage if too few replicas had it."""
        assert self._wait is not None
        replicas, timeout_ms = self._wait
        if int(results[-1]) < replicas:
            raise BackendUnavailableError(
                f"Redis at {self!r}: {operation} {key!r} reached the primary but only {results[-1]} of "
                f"{replicas} replicas acknowledged it within {timeout_ms} ms; it may be lost in a failover."
            )
        return results[0]
