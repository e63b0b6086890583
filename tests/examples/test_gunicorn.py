"""The example apps under gunicorn with two worker processes, sharing sessions and pages in Redis.

Over real HTTP (``requests``): a session created by one worker is read by the
other, a page cached by one is served from cache by the other, and 200
concurrent requests from 20 clients, each adding a note to its own session,
lose no write. ``X-Worker-Pid`` (added by tests/examples/served.py) says which
worker answered; requests go out in concurrent bursts so that both workers
take some. Each app's server is stopped by PID when its tests end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.examples.apps import EXAMPLES
from tests.examples.apps import ROOT

requests = pytest.importorskip("requests")

WORKERS = 2
START_DEADLINE = 30.0
TIMEOUT = 10.0  # per HTTP request
BURST = 6  # concurrent requests per round when looking for the other worker


@dataclass
class Served:
    """One example under gunicorn."""

    name: str
    url: str
    process: subprocess.Popen[bytes]


def _gunicorn_running(name: str, redis_server: servers.ServerProcess, db: int, log_path: Path) -> Served:
    redis = pytest.importorskip("redis")
    with redis.Redis(host=servers.HOST, port=redis_server.port, db=db) as client:
        client.flushdb()
    port = servers.free_port()
    env = {
        **os.environ,
        "CACHEKIT_URL": f"redis://{redis_server.address}/{db}",
        "CACHEKIT_EXAMPLE": name,
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(WORKERS),
                "--bind",
                f"{servers.HOST}:{port}",
                "--chdir",
                str(ROOT),
                "--timeout",
                "30",
                "--graceful-timeout",
                "2",
                "--log-level",
                "warning",
                "tests.examples.served:app",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://{servers.HOST}:{port}"
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(url + "/cached", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"gunicorn did not answer within {START_DEADLINE} s:\n{log_path.read_text()}")
        time.sleep(0.05)
    return Served(name, url, process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # gunicorn's master stops its workers on SIGTERM
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module", params=EXAMPLES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis_server: servers.ServerProcess = request.getfixturevalue("redis_server")
    name: str = request.param
    log_path = tmp_path_factory.mktemp("gunicorn") / f"{name}.log"
    app = _gunicorn_running(name, redis_server, db=1 + EXAMPLES.index(name), log_path=log_path)
    yield app
    _stop(app.process)


def pid(response: Any) -> int:
    return int(response.headers["X-Worker-Pid"])


def until_another_worker(send: Callable[[], Any], not_pid: int, within: float = 20.0) -> Any:
    """Send concurrent bursts until a worker other than ``not_pid`` answers; return its response.

    Bounded by time rather than count: on a loaded machine the second worker
    may still be importing the app when the first already answers.
    """
    deadline = time.monotonic() + within
    sent = 0
    with ThreadPoolExecutor(BURST) as pool:
        while time.monotonic() < deadline:
            responses = list(pool.map(lambda _: send(), range(BURST)))
            sent += len(responses)
            for response in responses:
                assert response.status_code == 200, response.text
                if pid(response) != not_pid:
                    return response
            time.sleep(0.05)
    pytest.fail(f"every response in {sent} over {within:g} s came from worker {not_pid}")


def user(response: Any) -> str | None:
    found = re.search(r"<b id='user'>(.*?)</b>", response.text)
    return found.group(1) if found else None


def test_a_session_created_by_one_worker_is_read_by_another(served: Served) -> None:
    login = requests.post(served.url + "/login", data={"name": "Ada"}, allow_redirects=False, timeout=TIMEOUT)
    assert login.status_code == 303
    cookie = {"session": login.cookies["session"]}
    other = until_another_worker(
        lambda: requests.get(served.url + "/", cookies=cookie, timeout=TIMEOUT), not_pid=pid(login)
    )
    assert user(other) == "Ada"


def test_a_page_cached_by_one_worker_is_served_by_another(served: Served) -> None:
    first = requests.get(served.url + "/cached", timeout=TIMEOUT)
    assert first.status_code == 200
    rendered_by = re.search(r"by process (\d+)", first.text)
    assert rendered_by is not None
    renderer = int(rendered_by.group(1))
    other = until_another_worker(lambda: requests.get(served.url + "/cached", timeout=TIMEOUT), renderer)
    assert other.text == first.text  # rendered by the first worker, served by the other
    if served.name != "django_app":
        assert "Age" in other.headers  # cachekit marks copies served from cache


def test_concurrent_session_writes_are_all_kept(served: Served) -> None:
    clients = 20
    per_client = 10
    cookies = []
    for _ in range(clients):
        response = requests.get(served.url + "/", timeout=TIMEOUT)
        assert response.status_code == 200
        cookies.append({"session": response.cookies["session"]})

    def add_note(job: int) -> tuple[int, int]:
        client, note = job % clients, job // clients
        response = requests.post(
            served.url + "/notes",
            data={"text": f"client {client} note {note}"},
            cookies=cookies[client],
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        return response.status_code, pid(response)

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(add_note, range(clients * per_client)))
    assert [status for status, _ in results] == [303] * (clients * per_client)
    assert len({worker for _, worker in results}) == WORKERS  # both processes took writes
    for client, cookie in enumerate(cookies):
        page = requests.get(served.url + "/", cookies=cookie, timeout=TIMEOUT)
        found = sorted(re.findall(r"<li class='note'>(.*?)</li>", page.text))
        assert found == sorted(f"client {client} note {note}" for note in range(per_client))
