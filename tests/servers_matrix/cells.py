"""The matrix's cells (one server in one process model each) and the means to run and inspect them.

A :class:`Cell` knows the command line that serves tests/servers_matrix/app.py
(or asgi_app.py) with two worker processes on a free loopback port. :func:`run`
starts it with :class:`tests.servers.ServerProcess` (stopped by PID) and waits
until it answers over HTTP. :class:`Running` counts, with psutil, the TCP
connections each of the server's processes holds to the cache server (Redis, or
memcached for the cells named so), and reads Redis's own ``CLIENT LIST`` for
the connections named after the cell.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import httpx
import psutil

from cachekit import from_url
from tests import servers
from tests.servers_matrix.names import CLOSE_LOG_VAR
from tests.servers_matrix.names import INSTANCE_VAR
from tests.servers_matrix.names import URL_VAR

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKERS = 2
#: Requests a worker serves before it is recycled; the module's tests send several times this.
MAX_REQUESTS = 40
START_DEADLINE = 40.0
WSGI_APP = "tests.servers_matrix.app:application"
ASGI_APP = "tests.servers_matrix.asgi_app:application"


@dataclass(frozen=True)
class Cell:
    """One server in one process model."""

    #: The test id, e.g. ``gunicorn-sync-preload``.
    name: str
    #: The executable that must be installed.
    binary: str
    #: Builds the command line from the port and a scratch directory.
    argv: Callable[[int, Path], list[str]]
    #: Requests one worker serves at once (threads, greenlets or tasks the test may drive).
    concurrency: int
    #: Whether the app (and its cache, with an open socket) is imported before the fork.
    preforked: bool = False
    #: Whether recycling a worker drops connections it had accepted but not served yet.
    drops_on_recycle: bool = False
    #: The cache server under the app: ``"redis"`` or ``"memcached"``.
    scheme: str = "redis"


def _gunicorn(*extra: str) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(WORKERS),
            "--bind",
            f"{servers.HOST}:{port}",
            "--chdir",
            str(ROOT),
            "--max-requests",
            str(MAX_REQUESTS),
            "--max-requests-jitter",
            "0",
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            *extra,
            WSGI_APP,
        ]

    return argv


def uwsgi_argv(*extra: str) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        return [
            str(BIN / "uwsgi"),
            "--http-socket",
            f"{servers.HOST}:{port}",
            "--master",
            "--processes",
            str(WORKERS),
            "--virtualenv",
            str(BIN.parent),
            "--chdir",
            str(ROOT),
            "--module",
            WSGI_APP,
            "--need-app",
            "--die-on-term",  # SIGTERM stops uWSGI 2.0 instead of reloading it
            "--max-requests",
            str(MAX_REQUESTS),
            "--harakiri",
            "20",
            # uWSGI ignores --max-requests until a worker is this old (default 10 s).
            "--min-worker-lifetime",
            "1",
            "--disable-logging",
            *extra,
        ]

    return argv


def _mod_wsgi(processes: int, threads: int) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        script = workdir / "matrix.wsgi"
        script.write_text(f"from {WSGI_APP.replace(':', ' import ')}\n")
        return [
            str(BIN / "mod_wsgi-express"),
            "start-server",
            str(script),
            "--host",
            servers.HOST,
            "--port",
            str(port),
            "--server-root",
            str(workdir / "apache"),
            "--python-path",
            str(ROOT),
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--maximum-requests",
            str(MAX_REQUESTS),
            "--graceful-timeout",
            "5",
            "--log-to-terminal",
            "--locale",
            "C.UTF-8",
            *_unprivileged(workdir),
        ]

    return argv


def _unprivileged(workdir: Path) -> list[str]:
    """Apache refuses to serve as root: run its children and daemons as ``nobody``.

    They must then read the app and Python (``.ci/run`` lets others traverse the
    directories above ``sys.base_prefix``) and write the close log.
    """
    if os.geteuid() != 0:
        return []
    workdir.chmod(0o755)
    log = workdir / "closed.log"
    log.touch()
    log.chmod(0o666)
    return ["--user", "nobody", "--group", "nogroup"]


def _uvicorn(port: int, workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        servers.HOST,
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--limit-max-requests",
        str(MAX_REQUESTS),
        "--timeout-graceful-shutdown",
        "5",
        "--log-level",
        "warning",
        ASGI_APP,
    ]


def _hypercorn(port: int, workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--bind",
        f"{servers.HOST}:{port}",
        "--workers",
        str(WORKERS),
        "--max-requests",
        str(MAX_REQUESTS),
        "--graceful-timeout",
        "5",
        ASGI_APP,
    ]


CELLS = [
    Cell("gunicorn-sync-preload", "gunicorn", _gunicorn("--preload"), concurrency=1, preforked=True),
    Cell("gunicorn-gthread", "gunicorn", _gunicorn("--worker-class", "gthread", "--threads", "4"), 4),
    Cell(
        "gunicorn-gevent", "gunicorn", _gunicorn("--worker-class", "gevent", "--worker-connections", "16"), 16
    ),
    Cell(
        "gunicorn-gevent-preload",
        "gunicorn",
        _gunicorn("--preload", "--worker-class", "gevent", "--worker-connections", "16"),
        16,
        preforked=True,
    ),
    Cell(
        "uwsgi-prefork",
        "uwsgi",
        uwsgi_argv(),
        concurrency=1,
        preforked=True,
        drops_on_recycle=True,  # seen: a connection closed unanswered during 160 writes with recycling
    ),
    Cell("uwsgi-lazy-apps", "uwsgi", uwsgi_argv("--lazy-apps"), concurrency=1),
    Cell(
        "uwsgi-threads",
        "uwsgi",
        uwsgi_argv("--threads", "4"),
        concurrency=4,
        preforked=True,
        drops_on_recycle=True,  # seen: 1 connection in 267 closed unanswered when a worker was recycled
    ),
    Cell("mod_wsgi-daemon", "mod_wsgi-express", _mod_wsgi(WORKERS, 4), concurrency=4),
    Cell("uvicorn", "uvicorn", _uvicorn, concurrency=16, drops_on_recycle=True),
    Cell("hypercorn", "hypercorn", _hypercorn, concurrency=16, drops_on_recycle=True),
]
# The preforking models again on memcached. uWSGI's default fork runs no Python fork hook
# (only with --py-call-osafterfork), so this cell shows that the memcached pool's own process
# id check keeps workers off the master's socket.
_BY_NAME = {cell.name: cell for cell in CELLS}
CELLS += [
    dataclasses.replace(
        _BY_NAME["gunicorn-sync-preload"], name="gunicorn-sync-preload-memcached", scheme="memcached"
    ),
    dataclasses.replace(
        _BY_NAME["uwsgi-prefork"],
        name="uwsgi-prefork-memcached",
        scheme="memcached",
        drops_on_recycle=True,  # seen: 1 connection closed unanswered in about 10 runs
    ),
]


def installed(cell: Cell) -> bool:
    """Whether the cell's server is installed in the venv (Apache too, for mod_wsgi)."""
    if not (BIN / cell.binary).exists():
        return False
    # apache2 lives in /usr/sbin, which a non-root PATH may lack.
    apache = shutil.which("apache2", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    return cell.binary != "mod_wsgi-express" or apache is not None


@dataclass
class Running:
    """A cell's server, started and answering."""

    cell: Cell
    server: servers.ServerProcess
    url: str
    #: The cache URL the app uses (without its client name).
    cache_url: str
    #: The port of the cache server (Redis or memcached).
    store_port: int
    #: The name its Redis connections carry; empty on memcached.
    client_name: str
    close_log: Path
    #: Every worker pid seen in ``X-Worker-Pid``.
    pids_seen: set[int] = field(default_factory=set)
    #: Requests sent through :meth:`send`, those that failed (no answer or a 5xx), and
    #: connections a recycled worker dropped unanswered (sent again, on cells that drop them).
    requests: int = 0
    errors: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def http(self) -> httpx.Client:
        """A client that opens a new connection per request, so the kernel spreads them over workers."""
        return httpx.Client(base_url=self.url, timeout=15.0, limits=httpx.Limits(max_keepalive_connections=0))

    def send(self, http: httpx.Client, method: str, path: str, **options: Any) -> httpx.Response:
        """Send one request, counting it (and counting it as an error if it fails or answers 5xx).

        On a cell that :attr:`~Cell.drops_on_recycle`, a connection closed without
        an answer is counted in :attr:`dropped` and sent again (up to 3 times).
        """
        with self._lock:
            self.requests += 1
        for attempt in range(4):
            try:
                response = http.request(method, path, **options)
                break
            except httpx.TransportError:
                if not self.cell.drops_on_recycle or attempt == 3:
                    with self._lock:
                        self.errors += 1
                    raise
                with self._lock:
                    self.dropped += 1
        if response.status_code >= 500:
            with self._lock:
                self.errors += 1
        return response

    def note(self, response: httpx.Response) -> int:
        """Record and return the pid of the worker that answered ``response``."""
        pid = int(response.headers["X-Worker-Pid"])
        self.pids_seen.add(pid)
        return pid

    def processes(self) -> list[psutil.Process]:
        """The server's processes now: the one started and all its descendants."""
        root = psutil.Process(self.server.pid)
        return [root, *root.children(recursive=True)]

    def store_connections(self) -> dict[int, set[int]]:
        """The local ports of established TCP connections to the cache server, per live process.

        A socket inherited across a fork shows in parent and child with the same port.
        """
        held: dict[int, set[int]] = {}
        for process in self.processes():
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            held[process.pid] = {
                conn.laddr.port
                for conn in connections
                if conn.raddr
                and conn.raddr.port == self.store_port
                and conn.status == psutil.CONN_ESTABLISHED
            }
        return held

    def client_list(self) -> int:
        """How many connections Redis's ``CLIENT LIST`` shows under this cell's client name."""
        import redis

        with redis.Redis(servers.HOST, self.store_port) as client:
            return sum(1 for entry in client.client_list() if entry.get("name") == self.client_name)

    def closed_pids(self) -> set[int]:
        """Pids that closed their cache at exit (written by the app's ``atexit``/lifespan hook)."""
        if not self.close_log.exists():
            return set()
        return {int(line) for line in self.close_log.read_text().split()}


def check_connections(running: Running) -> dict[str, Any]:
    """Check that no connection to the cache server leaks and each worker holds few; return the counts.

    On Redis, every connection ``CLIENT LIST`` shows under the cell's name must be
    held by a live process of the server (Redis may take a moment to drop a dead
    worker's: poll to a deadline). Everywhere, a worker holds at most one per
    request it serves at once, the master at most the one its import-time use
    opened, and only if it forked.
    """
    deadline = time.monotonic() + 5
    while True:
        held = running.store_connections()
        ports = set().union(*held.values())
        clients = running.client_list() if running.client_name else len(ports)
        if clients == len(ports) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert clients == len(ports), "Redis holds connections that no live process of the server holds"
    master = held.get(running.server.pid, set())
    # A socket inherited across the fork shows in the worker too: count only the worker's own.
    own = [len(ports - master) for pid, ports in held.items() if pid != running.server.pid]
    assert max(own) <= running.cell.concurrency
    assert sum(1 for count in own if count) <= WORKERS
    assert len(master) <= (1 if running.cell.preforked else 0)
    return {
        "redis_clients": clients,
        "connections_per_worker": sorted(count for count in own if count),
        "master_connections": len(master),
    }


def run(
    cell: Cell,
    store: servers.ServerProcess,
    db: int = 0,
    instance: str = "",
    flush: bool = True,
) -> Running:
    """Start ``cell``'s server on a free port over ``store``; wait until it answers.

    ``store`` is a Redis (database ``db``) or, for a cell whose ``scheme`` is
    ``"memcached"``, a memcached. ``instance`` names the app in ``X-Instance`` and in Redis's client
    list (default: the cell's name); ``flush`` empties the database first.

    Its scratch directory is its own (not pytest's, whose parents others may not
    search), because Apache's children change into it as ``nobody``.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"cachekit-{instance or cell.name}-"))
    instance = instance or cell.name
    if cell.scheme == "memcached":
        cache_url = app_url = f"memcached://{store.address}"
        client_name = ""
    else:
        client_name = f"matrix-{instance}"
        cache_url = f"redis://{store.address}/{db}"
        app_url = f"{cache_url}?client_name={client_name}"
    if flush and cell.scheme == "memcached":
        cache = from_url(cache_url)
        cache.clear()
        cache.close()
    elif flush:
        import redis

        with redis.Redis(servers.HOST, store.port, db=db) as client:
            client.flushdb()
    close_log = workdir / "closed.log"
    env = {
        **{name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"},
        URL_VAR: app_url,
        CLOSE_LOG_VAR: str(close_log),
        INSTANCE_VAR: instance,
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    port = servers.free_port()
    server = servers.ServerProcess(instance, port, cell.argv(port, workdir), workdir, env=env)
    server.start(deadline=START_DEADLINE)
    running = Running(
        cell, server, f"http://{servers.HOST}:{port}", cache_url, store.port, client_name, close_log
    )
    deadline = time.monotonic() + START_DEADLINE
    with running.http() as http:
        while True:
            try:
                if http.get("/me").status_code == 200:
                    return running
            except httpx.HTTPError:
                pass
            if (
                server.process is not None
                and server.process.poll() is not None
                or time.monotonic() > deadline
            ):
                server.stop()
                raise RuntimeError(f"{cell.name} did not answer on {running.url}:\n{server.output()}")
            time.sleep(0.1)
