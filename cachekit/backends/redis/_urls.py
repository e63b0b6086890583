"""Redis URLs and connection options, parsed into plain parameter objects.

Private to :mod:`cachekit.backends.redis.sync` and :mod:`cachekit.backends.redis.asyncio`:
both backends take the same URLs and options, so the parsing, the checks and
their error messages live here once, and each backend builds its own (sync or
asyncio) redis-py client from the same :class:`DirectURL`, :class:`SentinelURL`,
:class:`ClusterURL` or :class:`Standalone`. Nothing here imports redis-py.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import unquote
from urllib.parse import urlsplit

from cachekit.exceptions import ConfigurationError

#: Values above this many bytes are refused unless ``max_value_size`` says otherwise.
DEFAULT_MAX_VALUE_SIZE = 64 * 1024 * 1024
# Redis refuses strings above 512 MB ("proto-max-bulk-len").
REDIS_MAX_VALUE_SIZE = 512 * 1024 * 1024
#: Seconds to wait for a reply; a cache must not hang a request for long.
DEFAULT_SOCKET_TIMEOUT = 0.5
#: Seconds to wait for a TCP connection.
DEFAULT_SOCKET_CONNECT_TIMEOUT = 0.25
#: Connections per pool (per node for Cluster). A call finding all of them busy
#: waits up to ``pool_timeout`` for one, then fails as an outage.
DEFAULT_MAX_CONNECTIONS = 100
#: Seconds a call waits for a free pooled connection.
DEFAULT_POOL_TIMEOUT = 0.5
#: Circuit breaker defaults: this many outages within the window open it for the cool-down.
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_WINDOW = 10.0
DEFAULT_BREAKER_COOLDOWN = 2.0

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")

#: Options accepted by ``from_url``/``from_location`` (and URL query strings).
OPTIONS: Mapping[str, type] = {
    "db": int,
    "username": str,
    "password": str,
    "ssl": bool,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": bool,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "max_connections": int,
    "pool_timeout": float,
    "health_check_interval": float,
    "retries": int,
    "client_name": str,
    "max_value_size": int,
    "flush_db_on_clear": bool,
    "scan_count": int,
    "breaker_failures": int,
    "breaker_window": float,
    "breaker_cooldown": float,
    "near_cache": int,
    "near_cache_bytes": int,
    "near_cache_prefix": str,
    "sentinel_username": str,
    "sentinel_password": str,
}

# Options for the backend itself rather than for the redis-py client.
_BACKEND_ONLY = (
    "max_value_size",
    "flush_db_on_clear",
    "scan_count",
    "breaker_failures",
    "breaker_window",
    "breaker_cooldown",
    "near_cache",
    "near_cache_bytes",
    "near_cache_prefix",
)


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, for reprs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}"


def _netloc(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_positive(name: str, value: float) -> None:
    """:raises ConfigurationError: naming ``name`` unless ``value`` is above 0."""
    if not value > 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}.", setting=name)


def _connection_kwargs(
    *,
    username: str | None = None,
    password: str | None = None,
    ssl: bool = False,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_cert_reqs: str = "required",
    ssl_check_hostname: bool = True,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    health_check_interval: float = 30.0,
    client_name: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for redis-py clients and pools, TLS ones only with ``ssl``."""
    _check_positive("socket_timeout", socket_timeout)
    _check_positive("socket_connect_timeout", socket_connect_timeout)
    kwargs: dict[str, Any] = {
        "username": username,
        "password": password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
        "client_name": client_name,
        # Keys are any Python str, lone surrogates included; strict UTF-8 would
        # make such a key raise UnicodeEncodeError instead of being stored.
        "encoding_errors": "surrogatepass",
    }
    if ssl:
        kwargs.update(
            ssl=True,
            ssl_ca_certs=ssl_ca_certs,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_cert_reqs=ssl_cert_reqs,
            ssl_check_hostname=ssl_check_hostname,
        )
    return kwargs


@dataclass(frozen=True, kw_only=True)
class Standalone:
    """The connection options of one server (the backends' constructor keywords).

    Defaults are :class:`~cachekit.backends.redis.sync.RedisBackend`'s; :meth:`check`
    validates them, :meth:`client_kwargs` turns them into ``redis.Redis`` arguments.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    unix_socket_path: str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    health_check_interval: float = 30.0
    retries: int = 1
    client_name: str | None = None

    def check(self, *, max_value_size: int, scan_count: int) -> None:
        """Refuse bad options, naming the setting, together with the backend's own two.

        :raises ConfigurationError: for the first bad option.
        """
        _check_positive("socket_timeout", self.socket_timeout)
        _check_positive("socket_connect_timeout", self.socket_connect_timeout)
        _check_positive("scan_count", scan_count)
        _check_positive("max_connections", self.max_connections)
        _check_positive("pool_timeout", self.pool_timeout)
        if self.retries < 0:
            raise ConfigurationError(f"retries must be 0 or more, got {self.retries!r}.", setting="retries")
        if self.health_check_interval < 0:
            raise ConfigurationError(
                f"health_check_interval must be 0 or more, got {self.health_check_interval!r}.",
                setting="health_check_interval",
            )
        if not 0 < max_value_size <= REDIS_MAX_VALUE_SIZE:
            raise ConfigurationError(
                f"max_value_size must be between 1 and {REDIS_MAX_VALUE_SIZE} (Redis's limit), "
                f"got {max_value_size!r}.",
                setting="max_value_size",
            )
        if self.ssl_cert_reqs not in ("required", "optional", "none"):
            raise ConfigurationError(
                f"ssl_cert_reqs must be 'required', 'optional' or 'none', got {self.ssl_cert_reqs!r}.",
                setting="ssl_cert_reqs",
            )

    @property
    def location(self) -> str:
        """The server as a URL without credentials, for reprs."""
        if self.unix_socket_path is not None:
            return f"unix://{self.unix_socket_path}?db={self.db}"
        return f"{'rediss' if self.ssl else 'redis'}://{_netloc(self.host, self.port)}/{self.db}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (sync or asyncio), all but ``retry``."""
        return {
            "host": self.host,
            "port": self.port,
            "unix_socket_path": self.unix_socket_path,
            "db": self.db,
            "max_connections": self.max_connections,
            **_connection_kwargs(
                username=self.username,
                password=self.password,
                ssl=self.ssl,
                ssl_ca_certs=self.ssl_ca_certs,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_cert_reqs=self.ssl_cert_reqs,
                ssl_check_hostname=self.ssl_check_hostname,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_connect_timeout,
                health_check_interval=self.health_check_interval,
                client_name=self.client_name,
            ),
        }


@dataclass(frozen=True)
class DirectURL:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL: one server."""

    #: Keyword arguments for the backend's constructor, connection options included.
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class SentinelURL:
    """A ``redis+sentinel://`` URL: the master of ``service`` as the sentinels name it."""

    #: The sentinels, as ``(host, port)`` pairs.
    nodes: list[tuple[str, int]]
    service: str
    db: int
    max_connections: int
    pool_timeout: float
    retries: int
    #: Keyword arguments for redis-py's ``Sentinel`` (and so the master's connections).
    connection: dict[str, Any]
    #: ``username``/``password`` for the sentinels themselves, those given only.
    sentinel_auth: dict[str, Any] = field(repr=False)
    #: ``max_value_size``, ``flush_db_on_clear``, ``scan_count``, those given only.
    backend_options: dict[str, Any]
    location: str

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the connections to the sentinels, all but ``retry``."""
        return {
            "socket_timeout": self.connection["socket_timeout"],
            "socket_connect_timeout": self.connection["socket_connect_timeout"],
            **self.sentinel_auth,
        }


@dataclass(frozen=True)
class ClusterURL:
    """A ``redis+cluster://`` URL: the startup nodes of a Redis Cluster."""

    nodes: list[tuple[str, int]]
    retries: int
    #: Keyword arguments for redis-py's ``RedisCluster``, all but ``startup_nodes`` and ``retry``.
    connection: dict[str, Any]
    #: ``max_value_size``, ``flush_db_on_clear``, ``scan_count``, those given only.
    backend_options: dict[str, Any]
    location: str


ParsedURL = DirectURL | SentinelURL | ClusterURL


def parse_url(url: str, options: Mapping[str, Any]) -> ParsedURL:
    """Parse a Redis URL without a query string, together with typed ``options``.

    :raises ConfigurationError: for a malformed URL or a bad option.
    """
    options = dict(options)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ConfigurationError(
            f"Not a Redis URL: {redact_url(url)!r}; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + ".",
            setting="LOCATION",
        )
    if "?" in rest:
        raise ConfigurationError(
            f"RedisBackend.from_url() takes options as keyword arguments, not in the query "
            f"string of {redact_url(url)!r}; cachekit.from_url() accepts both.",
            setting="LOCATION",
        )
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"Unknown option {unknown[0]!r} for RedisBackend; known options: {', '.join(sorted(OPTIONS))}.",
            setting=unknown[0],
        )
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        options.setdefault("username", unquote(user) or None)
        options.setdefault("password", unquote(password) or None)
    host_list, _, path = hostpart.partition("/")
    if scheme == "redis+sentinel":
        return _sentinel(url, host_list, path, options)
    for name in ("sentinel_username", "sentinel_password"):
        if options.pop(name, None) is not None:
            raise ConfigurationError(f"{name} applies to redis+sentinel:// URLs only.", setting=name)
    if scheme == "redis+cluster":
        return _cluster(url, host_list, path, options)
    if scheme == "unix":
        socket_path = unquote("/" + path if path else host_list)
        if not socket_path:
            raise ConfigurationError(
                f"unix:// URL {redact_url(url)!r} has no socket path.", setting="LOCATION"
            )
        return DirectURL({"unix_socket_path": socket_path, **options})
    host, port = _split_hosts(host_list or "127.0.0.1", 6379, url)[0]
    if "," in host_list:
        raise ConfigurationError(
            f"Redis URL {redact_url(url)!r} names several hosts; use redis+sentinel:// "
            "or redis+cluster:// for more than one server.",
            setting="LOCATION",
        )
    if path.strip("/") and "db" not in options:
        options["db"] = _db_number(path, url)
    if scheme == "rediss":
        options.setdefault("ssl", True)
    return DirectURL({"host": host, "port": port, **options})


def parse_location(location: str | Sequence[str] | None, options: Mapping[str, Any]) -> ParsedURL:
    """Parse a settings ``LOCATION``: a URL, ``"host:port"``, ``None`` or a list of URLs.

    A list holds ``redis+sentinel://`` or ``redis+cluster://`` URLs whose hosts
    are merged; several plain ``redis://`` URLs are refused.

    :raises ConfigurationError: for a malformed location or a bad option.
    """
    if location is None:
        return parse_url("redis://127.0.0.1:6379/0", options)
    if isinstance(location, str):
        return parse_url(location if "://" in location else f"redis://{location}", options)
    urls = list(location)
    if len(urls) == 1:
        return parse_location(urls[0], options)
    schemes = {url.partition("://")[0].lower() for url in urls}
    if not urls or len(schemes) != 1 or not schemes <= {"redis+sentinel", "redis+cluster"}:
        raise ConfigurationError(
            f"LOCATION for Redis must be one URL, or several redis+sentinel:// or "
            f"redis+cluster:// URLs, got {[redact_url(u) for u in urls]!r}.",
            setting="LOCATION",
        )
    scheme = schemes.pop()
    first_rest = urls[0].partition("://")[2]
    head, _, tail = first_rest.partition("/")
    # Credentials come from the first URL; the others contribute hosts only.
    hosts = [head] + [url.partition("://")[2].partition("/")[0].rpartition("@")[2] for url in urls[1:]]
    return parse_url(f"{scheme}://{','.join(hosts)}/{tail}".rstrip("/"), options)


def _sentinel(url: str, host_list: str, path: str, options: dict[str, Any]) -> SentinelURL:
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise ConfigurationError(
            f"redis+sentinel:// URL {redact_url(url)!r} needs a service name: "
            "redis+sentinel://host:26379/service_name[/db].",
            setting="LOCATION",
        )
    if db_text and "db" not in options:
        options["db"] = _db_number(db_text, url)
    # Userinfo in the URL authenticates at the master (the data), not at the sentinels.
    sentinel_auth = {
        "username": options.pop("sentinel_username", None),
        "password": options.pop("sentinel_password", None),
    }
    conn, backend_options = _split_backend_options(options)
    db = conn.pop("db", 0)
    max_connections = conn.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
    pool_timeout = conn.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
    _check_positive("max_connections", max_connections)
    _check_positive("pool_timeout", pool_timeout)
    nodes = _split_hosts(host_list, 26379, url)
    retries = conn.pop("retries", 1)
    return SentinelURL(
        nodes=nodes,
        service=service,
        db=db,
        max_connections=max_connections,
        pool_timeout=pool_timeout,
        retries=retries,
        connection=_connection_kwargs(**conn),
        sentinel_auth={k: v for k, v in sentinel_auth.items() if v is not None},
        backend_options=backend_options,
        location=f"redis+sentinel://{host_list}/{service}/{db}",
    )


def _cluster(url: str, host_list: str, path: str, options: dict[str, Any]) -> ClusterURL:
    if path.strip("/") not in ("", "0") or options.get("db") not in (None, 0):
        raise ConfigurationError(
            f"Redis Cluster has only database 0; drop the database from {redact_url(url)!r}.",
            setting="db",
        )
    options.pop("db", None)
    _refuse_pool_timeout(options, "redis-py's Cluster client keeps its own pool per node")
    conn, backend_options = _split_backend_options(options)
    max_connections = conn.pop("max_connections", None)
    retries = conn.pop("retries", 1)
    kwargs = _connection_kwargs(**conn)
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    return ClusterURL(
        nodes=_split_hosts(host_list, 6379, url),
        retries=retries,
        connection=kwargs,
        backend_options=backend_options,
        location=f"redis+cluster://{host_list}",
    )


def _refuse_pool_timeout(options: Mapping[str, Any], why: str) -> None:
    """:raises ConfigurationError: if ``pool_timeout`` is given where it cannot apply."""
    if "pool_timeout" in options:
        raise ConfigurationError(
            f"pool_timeout does not apply to redis+cluster:// URLs ({why}; "
            "max_connections bounds it, and a call beyond the bound is an outage).",
            setting="pool_timeout",
        )


def _split_hosts(host_list: str, default_port: int, url: str) -> list[tuple[str, int]]:
    """Parse ``host1:port1,host2:port2`` (IPv6 in brackets) into ``(host, port)`` pairs."""
    nodes: list[tuple[str, int]] = []
    for part in host_list.split(","):
        part = part.strip()
        if not part:
            continue
        parsed = urlsplit(f"//{part}")
        try:
            port = parsed.port or default_port
        except ValueError:
            raise ConfigurationError(
                f"Bad port in Redis URL {redact_url(url)!r}: {part!r}.", setting="LOCATION"
            ) from None
        nodes.append((parsed.hostname or "127.0.0.1", port))
    if not nodes:
        raise ConfigurationError(f"Redis URL {redact_url(url)!r} names no host.", setting="LOCATION")
    return nodes


def _db_number(text: str, url: str) -> int:
    try:
        return int(text.strip("/"))
    except ValueError:
        raise ConfigurationError(
            f"Redis database in {redact_url(url)!r} must be a number, got {text.strip('/')!r}.",
            setting="db",
        ) from None


def _split_backend_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate connection options (for the redis-py client) from the backend's own."""
    backend = {name: options.pop(name) for name in _BACKEND_ONLY if name in options}
    return options, backend
