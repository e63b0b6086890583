"""Issue 13 item 8 through real servers: a client that stops reading never holds the page lock.

gunicorn (two sync workers) and uvicorn serve an 8 MiB page behind the page
cache on Redis (``slow_app.py``). One raw socket asks for it and stops reading
after the first bytes; a second client must then get the whole page at once,
not after the lock's ``lock_timeout`` (30 s). Each server is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests import servers
from tests.pages.slow_app import CHUNK
from tests.pages.slow_app import CHUNKS
from tests.pages.slow_app import LOCK_TIMEOUT

requests = pytest.importorskip("requests")

BOUND = LOCK_TIMEOUT / 3  # far longer than serving 8 MiB on loopback, far shorter than the lock wait


def _argv(server: str, port: int) -> list[str]:
    bin_dir = os.path.dirname(sys.executable)
    if server == "gunicorn":
        return [
            os.path.join(bin_dir, "gunicorn"), "-w", "2", "-b", f"{servers.HOST}:{port}",
            "--timeout", "120", "tests.pages.slow_app:wsgi_app",
        ]  # fmt: skip
    return [
        os.path.join(bin_dir, "uvicorn"), "--host", servers.HOST, "--port", str(port),
        "--no-access-log", "tests.pages.slow_app:asgi_app",
    ]  # fmt: skip


@contextlib.contextmanager
def _running(name: str, argv: list[str], redis_server: servers.ServerProcess) -> Iterator[str]:
    """Start ``argv`` (listening on its last free port) with the cache on Redis; stop it by PID."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "CACHEKIT_URL": f"redis://{redis_server.address}/0",
        "PAGES_PREFIX": f"pages{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": root,
    }
    port = (
        int(argv[argv.index("--port") + 1])
        if "--port" in argv
        else int(argv[argv.index("-b") + 1].split(":")[1])
    )
    process = servers.ServerProcess(name, port, argv, servers._workdir(name), env=env)
    process.workdir.mkdir(parents=True, exist_ok=True)
    process.start(deadline=30.0)
    try:
        yield f"http://{process.address}"
    finally:
        process.stop()


@pytest.fixture(params=["gunicorn", "uvicorn"])
def served(request: pytest.FixtureRequest, redis_server: servers.ServerProcess) -> Iterator[str]:
    name = str(request.param)
    if shutil.which(name, path=os.path.dirname(sys.executable)) is None:
        pytest.skip(f"{name} is not installed")
    with _running(name, _argv(name, servers.free_port()), redis_server) as url:
        yield url


def test_13_8_a_client_that_stops_reading_holds_no_lock(served: str) -> None:
    host, port = served.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)), timeout=BOUND)
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(f"GET /big HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert slow.recv(16).startswith(b"HTTP/1.1 200")  # it started answering; now stop reading
        started = time.monotonic()
        response = requests.get(f"{served}/big", timeout=BOUND)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert len(response.content) == len(CHUNK) * CHUNKS
        assert elapsed < BOUND, f"waited {elapsed:.1f} s behind the slow client's lock"
    finally:
        slow.close()


@pytest.fixture
def uvicorn_proxy_headers(redis_server: servers.ServerProcess) -> Iterator[str]:
    argv = [
        os.path.join(os.path.dirname(sys.executable), "uvicorn"), "--host", servers.HOST,
        "--port", str(servers.free_port()), "--proxy-headers", "--forwarded-allow-ips", servers.HOST,
        "--no-access-log", "tests.pages.slow_app:links_app",
    ]  # fmt: skip
    with _running("uvicorn-proxy", argv, redis_server) as url:
        yield url


def test_13_3_uvicorn_proxy_headers_with_the_forwarded_proto_keyed(uvicorn_proxy_headers: str) -> None:
    """The documented order: uvicorn applies X-Forwarded-Proto first, the cache keys it."""
    url = f"{uvicorn_proxy_headers}/page"
    https = {"X-Forwarded-Proto": "https"}
    first = requests.get(url, headers=https, timeout=BOUND).text
    assert first.startswith('<a href="https://')
    assert requests.get(url, timeout=BOUND).text.startswith('<a href="http://')  # its own page
    assert requests.get(url, headers=https, timeout=BOUND).text == first  # and from the cache
