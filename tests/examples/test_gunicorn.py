"""The example apps under gunicorn with two worker processes, sharing sessions and pages in Redis.

Over real HTTP (``requests``): a session created by one worker is read by the
other, a page cached by one is served from cache by the other, and 200
concurrent requests from 20 clients, each adding a note to its own session,
lose no write. ``X-Worker-Pid`` (added by tests/examples/served.py) says which
worker answered; requests go out in concurrent bursts so that both workers
take some. Each app's server is stopped by PID when its tests end.
"""

from __future__ import annotations

import re
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
from tests.gunicorn import Gunicorn
from tests.gunicorn import start_gunicorn

requests = pytest.importorskip("requests")

WORKERS = 2
TIMEOUT = 10.0  # per HTTP request
BURST = 6  # concurrent requests per round when looking for the other worker


@dataclass
class Served:
    """One example under gunicorn."""

    name: str
    url: str


def _gunicorn_running(name: str, redis_server: servers.ServerProcess, db: int, log_path: Path) -> Gunicorn:
    redis = pytest.importorskip("redis")
    with redis.Redis(host=servers.HOST, port=redis_server.port, db=db) as client:
        client.flushdb()
    env = {"CACHEKIT_URL": f"redis://{redis_server.address}/{db}", "CACHEKIT_EXAMPLE": name}
    return start_gunicorn(
        "tests.examples.served:app", probe="/cached", log_path=log_path, env=env, workers=WORKERS
    )


@pytest.fixture(scope="module", params=EXAMPLES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis_server: servers.ServerProcess = request.getfixturevalue("redis_server")
    name: str = request.param
    log_path = tmp_path_factory.mktemp("gunicorn") / f"{name}.log"
    gunicorn = _gunicorn_running(name, redis_server, db=1 + EXAMPLES.index(name), log_path=log_path)
    yield Served(name, gunicorn.url)
    gunicorn.stop()


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
