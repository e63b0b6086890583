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
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

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
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
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
