"""The ASGI examples (docs/examples/starlette_app.py, django_asgi_app.py) under uvicorn, over real HTTP.

Each app runs in its own uvicorn process on a free loopback port, on a real
Redis (sessions through ``AsyncCacheStore`` on ``redis.asyncio``), and is driven
with httpx, which keeps cookies like a browser: the session counter, login
(a new session id) and logout (the cookie deleted, the session gone), and a
page served from cache. Startup is bounded; the server is stopped by PID.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import servers
from tests.examples.apps import EXAMPLES_DIR
from tests.examples.apps import ROOT

START_DEADLINE = 30.0
TIMEOUT = 10.0  # per HTTP request
#: example -> the uvicorn arguments naming its app.
ASGI_EXAMPLES = {
    "starlette_app": ["--factory", "starlette_app:create_app"],
    "django_asgi_app": ["django_asgi_app:application"],
}


@dataclass
class Served:
    """One example under uvicorn."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module", params=list(ASGI_EXAMPLES))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis_server: servers.ServerProcess = request.getfixturevalue("redis_server")
    name: str = request.param
    db = 8 + list(ASGI_EXAMPLES).index(name)
    redis = pytest.importorskip("redis")
    with redis.Redis(host=servers.HOST, port=redis_server.port, db=db) as client:
        client.flushdb()
    port = servers.free_port()
    log_path = tmp_path_factory.mktemp("uvicorn") / f"{name}.log"
    env = {**os.environ, "CACHEKIT_URL": f"redis://{redis_server.address}/{db}", "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--host",
                servers.HOST,
                "--port",
                str(port),
                "--app-dir",
                str(EXAMPLES_DIR),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "2",
                *ASGI_EXAMPLES[name],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    url = f"http://{servers.HOST}:{port}"
    deadline = time.monotonic() + START_DEADLINE
    while not servers.port_open(port):
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"uvicorn did not listen within {START_DEADLINE} s:\n{log_path.read_text()}")
        time.sleep(0.05)
    yield Served(name, url, process, log_path)
    _stop(process)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        yield http


def visits(response: httpx.Response) -> int:
    found = re.search(r"<b id='visits'>(\d+)</b>", response.text)
    assert found, response.text
    return int(found.group(1))


def test_session_counter(client: httpx.Client) -> None:
    first = client.get("/")
    assert first.status_code == 200
    set_cookie = first.headers["set-cookie"]
    assert set_cookie.startswith("session=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Cookie" in first.headers["vary"]
    assert [visits(first), *(visits(client.get("/")) for _ in range(3))] == [1, 2, 3, 4]


def test_login_and_logout(client: httpx.Client, served: Served) -> None:
    client.get("/")
    before = client.cookies["session"]
    login = client.post("/login", data={"name": "ada"}, follow_redirects=False)
    assert login.status_code == 303
    after = client.cookies["session"]
    assert after != before  # a new id at login
    home = client.get("/")
    assert "Logged in as <b id='user'>ada</b>" in home.text
    assert visits(home) == 2
    # The pre-login id is worthless.
    with httpx.Client(base_url=served.url, timeout=TIMEOUT, cookies={"session": before}) as stranger:
        assert visits(stranger.get("/")) == 1
    logout = client.post("/logout", follow_redirects=False)
    assert logout.status_code == 303
    assert "Max-Age=0" in logout.headers["set-cookie"]
    assert "session" not in client.cookies
    assert visits(client.get("/")) == 1
    # The logged-out session is gone from the store, not only from this browser.
    with httpx.Client(base_url=served.url, timeout=TIMEOUT, cookies={"session": after}) as replay:
        assert "Logged in" not in replay.get("/").text


def test_notes_from_concurrent_requests_all_persist(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as first:
        first.get("/")
        cookie = first.cookies["session"]

    def add(index: int) -> int:
        with httpx.Client(base_url=served.url, timeout=TIMEOUT, cookies={"session": cookie}) as http:
            return http.post("/notes", data={"text": f"note {index}"}, follow_redirects=False).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(add, range(16))) == [303] * 16
    with httpx.Client(base_url=served.url, timeout=TIMEOUT, cookies={"session": cookie}) as reader:
        assert reader.get("/").text.count("<li class='note'>") == 16


def test_cached_page_is_served_from_cache(client: httpx.Client) -> None:
    first = client.get("/cached")
    second = client.get("/cached")
    assert first.status_code == second.status_code == 200
    assert "set-cookie" not in first.headers
    assert second.text == first.text  # the same rendering: not computed again
    assert "age" in second.headers
    assert second.headers.get("etag")
    revalidated = client.get("/cached", headers={"If-None-Match": second.headers["etag"]})
    assert revalidated.status_code == 304
