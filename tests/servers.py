"""Start real cache servers for tests on free loopback ports, and stop them by PID.

Every start waits for the port to answer until a deadline and fails clearly,
with the server's own output, if the process died or never listened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_DEADLINE = 10.0


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


@dataclass
class ServerProcess:
    """A server started by :func:`start_server`; stop it with :meth:`stop`."""

    name: str
    port: int
    argv: list[str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    #: The environment to start it with; ``None`` inherits this process's.
    env: dict[str, str] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, deadline: float = START_DEADLINE) -> ServerProcess:
        """Start the process and wait until its port answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before listening on "
                    f"{self.address}:\n{self.output()}"
                )
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not listen on {self.address} within {deadline} s:\n{self.output()}"
        )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process by PID: SIGTERM, then SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        end = time.monotonic() + timeout
        while port_open(self.port) and time.monotonic() < end:
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def restart(self) -> ServerProcess:
        """Start the same server again on the same port."""
        self.stop()
        return self.start()


def _workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"cachekit-{name}-"))


def redis_server_argv(port: int, workdir: Path, extra: Sequence[str] = ()) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "no",
        *extra,
    ]


def start_redis(extra: Sequence[str] = (), port: int | None = None) -> ServerProcess:
    """Start ``redis-server`` on a free loopback port (or ``port``)."""
    port = port or free_port()
    workdir = _workdir("redis")
    return ServerProcess("redis-server", port, redis_server_argv(port, workdir, extra), workdir).start()


def memcached_argv(port: int, extra: Sequence[str] = ()) -> list[str]:
    binary = shutil.which("memcached")
    if binary is None:
        raise FileNotFoundError("memcached is not installed")
    argv = [binary, "-l", HOST, "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    return [*argv, *extra]


def start_memcached(extra: Sequence[str] = (), port: int | None = None) -> ServerProcess:
    """Start ``memcached`` on a free loopback port (or ``port``)."""
    port = port or free_port()
    return ServerProcess("memcached", port, memcached_argv(port, extra), _workdir("memcached")).start()


# -- Redis Cluster and Sentinel --------------------------------------------------------


@contextlib.contextmanager
def redis_db(server: ServerProcess, db: int) -> Iterator[Any]:
    """A redis-py client of ``server``'s database ``db``, flushed before and after.

    The session's server is shared: each test file that flushes keeps to a database of its own.
    """
    import redis

    client = redis.Redis(HOST, server.port, db=db)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def redis_commands(raw: Any, action: Callable[[], object]) -> dict[str, int]:
    """The commands a Redis server ran for ``action``, by name, from ``INFO commandstats``.

    A script's inner commands count too (``evalsha`` and the ``get`` it ran). ``raw`` is a
    redis-py client of that server, used for nothing else meanwhile.
    """
    raw.config_resetstat()
    action()
    stats = raw.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    for own in ("info", "config|resetstat"):
        calls.pop(own, None)
    return calls


def _redis_info(port: int, *command: str) -> Any:
    """Send one command to the Redis (or Sentinel) on ``port``; ``None`` if it does not answer."""
    import redis

    client = redis.Redis(HOST, port, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return client.execute_command(*command)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _wait_for(
    what: str, predicate: Callable[[], bool], deadline: float, servers: Sequence[ServerProcess]
) -> None:
    """Poll ``predicate`` until true; stop ``servers`` and fail with their output past ``deadline``."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            logs = "\n".join(f"--- {server.name} {server.address}:\n{server.output()}" for server in servers)
            for server in servers:
                server.stop()
            raise RuntimeError(f"{what} not reached within {deadline} s:\n{logs}")
        time.sleep(0.05)


@dataclass
class RedisClusterProcesses:
    """The masters of a Redis Cluster started by :func:`start_redis_cluster`."""

    nodes: list[ServerProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(masters: int = 3, deadline: float = 30.0) -> RedisClusterProcesses:
    """Start ``masters`` cluster-enabled ``redis-server``s and join them with ``redis-cli --cluster create``.

    The cluster bus gets its own free port (``--cluster-port``) rather than port + 10000,
    which may be taken or above 65535. ``cluster-require-full-coverage no`` keeps the
    other masters serving when one dies, as a cache cluster should.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        raise FileNotFoundError("redis-cli is not installed")
    nodes: list[ServerProcess] = []
    try:
        for _ in range(masters):
            port, bus_port = free_port(), free_port()
            workdir = _workdir("redis-cluster")
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-port",
                str(bus_port),
                "--cluster-node-timeout",
                "1000",
                "--cluster-require-full-coverage",
                "no",
            ]
            argv = redis_server_argv(port, workdir, extra)
            nodes.append(ServerProcess("redis-cluster-node", port, argv, workdir).start())
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(node.address for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=deadline,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout.decode()}{created.stderr.decode()}"
            )

        def ready() -> bool:
            for node in nodes:
                info = _redis_info(node.port, "CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else ""
                if "cluster_state:ok" not in text or f"cluster_known_nodes:{masters}" not in text:
                    return False
            return True

        _wait_for("cluster_state:ok on every node", ready, deadline, nodes)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return RedisClusterProcesses(nodes)


@dataclass
class RedisSentinelProcesses:
    """A master, its replica and one Sentinel watching them, from :func:`start_redis_sentinel`."""

    master: ServerProcess
    replica: ServerProcess
    sentinel: ServerProcess
    service: str

    @property
    def url(self) -> str:
        return f"redis+sentinel://{self.sentinel.address}/{self.service}/0"

    def master_port(self) -> int | None:
        """The master's port as the Sentinel sees it now."""
        answer = _redis_info(self.sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(answer[1]) if answer else None

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()


def start_redis_sentinel(
    service: str = "cachekit", down_after_ms: int = 1000, deadline: float = 30.0
) -> RedisSentinelProcesses:
    """Start a master, a replica of it and a ``redis-server --sentinel`` (quorum 1) watching them.

    Returns once the replica is in sync and the Sentinel knows it, so a failover
    can promote it.
    """
    started: list[ServerProcess] = []
    try:
        # A diskless full sync waits 5 s by default for more replicas to join; one is all there is.
        master = start_redis(["--repl-diskless-sync-delay", "0"])
        started.append(master)
        replica = start_redis(["--replicaof", HOST, str(master.port)])
        started.append(replica)

        def replica_synced() -> bool:
            info = _redis_info(replica.port, "INFO", "replication")
            return isinstance(info, dict) and info.get("master_link_status") == "up"

        _wait_for("replica in sync", replica_synced, deadline, started)
        port = free_port()
        workdir = _workdir("redis-sentinel")
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind {HOST}\ndir {workdir}\n"
            f"sentinel monitor {service} {HOST} {master.port} 1\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} 5000\n"
        )
        binary = shutil.which("redis-server") or "redis-server"
        sentinel = ServerProcess("redis-sentinel", port, [binary, str(conf), "--sentinel"], workdir).start()
        started.append(sentinel)

        def sentinel_knows_replica() -> bool:
            for entry in _redis_info(port, "SENTINEL", "REPLICAS", service) or []:
                fields = dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else entry
                if (
                    fields.get(b"port") == str(replica.port).encode()
                    and fields.get(b"flags") == b"slave"
                    and fields.get(b"master-link-status") == b"ok"
                ):
                    return True
            return False

        _wait_for("sentinel discovers the replica", sentinel_knows_replica, deadline, started)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return RedisSentinelProcesses(master, replica, sentinel, service)
