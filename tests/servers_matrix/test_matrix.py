"""The cross-process matrix: every server and process model in tests/servers_matrix/cells.py, over one Redis.

Each cell serves tests/servers_matrix/app.py (asgi_app.py for uvicorn and
hypercorn) with two workers and recycles each worker after ``MAX_REQUESTS``,
so workers are replaced while the tests run. On each cell, over real HTTP with
a new TCP connection per request (so the kernel spreads them over workers):

* a session written by one worker is read by another;
* a page cached by one worker is served by another, rendered once;
* 40 concurrent writes to one session (different keys) are all kept;
* a stampede of 12 concurrent requests on a cold page renders it once
  (renders are counted in Redis, by every worker);
* every worker gets its own replies: 40 concurrent requests, each writing and
  reading back 25 distinct keys, see no reply meant for another key, on cells
  whose app opened a Redis socket before the fork as well;
* recycling loses nothing (4 sessions x 40 sequential increments, all kept, no
  error), every recycled worker closed its cache at exit, and no connection
  leaks: each Redis connection ``CLIENT LIST`` shows is held by a live process,
  each worker holds at most as many as it serves requests at once.

Set ``$CACHEKIT_MATRIX_REPORT`` to a file to get each cell's figures as JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cachekit import Cache
from cachekit import from_url
from tests import servers
from tests.conftest import IN_CI
from tests.servers_matrix.cells import CELLS
from tests.servers_matrix.cells import MAX_REQUESTS
from tests.servers_matrix.cells import Running
from tests.servers_matrix.cells import check_connections
from tests.servers_matrix.cells import installed
from tests.servers_matrix.cells import run
from tests.servers_matrix.names import RENDERS_KEY

pytestmark = pytest.mark.slow
#: Figures per cell, written to ``$CACHEKIT_MATRIX_REPORT`` when the cell's server stops.
FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", params=CELLS, ids=[cell.name for cell in CELLS])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    cell = request.param
    if not installed(cell):
        message = f"{cell.binary} is not installed; .ci/run installs it (pyproject.toml dev extra, apt-get)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    store: servers.ServerProcess = request.getfixturevalue(f"{cell.scheme}_server")
    served = run(cell, store, db=10 + CELLS.index(cell) % 5)
    FIGURES[cell.name] = {"cell": cell.name}
    yield served
    served.server.stop()
    figures = FIGURES[cell.name] | {
        "requests": served.requests,
        "errors": served.errors,
        "dropped_on_recycle": served.dropped,
    }
    report = os.environ.get("CACHEKIT_MATRIX_REPORT")
    if report:
        with open(report, "a") as out:
            out.write(json.dumps(figures) + "\n")


@pytest.fixture
def shared(running: Running) -> Iterator[Cache]:
    """The test's own cache on the cell's Redis database, to read the counters the workers write."""
    cache = from_url(running.cache_url)
    yield cache
    cache.close()


def cookie(response: httpx.Response) -> dict[str, str]:
    """The ``Cookie`` header that sends back the session ``response`` set."""
    return {"Cookie": f"session={response.cookies['session']}"}


def until_another_worker(
    running: Running, send: Callable[[], httpx.Response], not_pid: int, within: float = 20.0
) -> httpx.Response:
    """Send concurrent bursts until a worker other than ``not_pid`` answers; return its response."""
    deadline = time.monotonic() + within
    with ThreadPoolExecutor(6) as pool:
        while time.monotonic() < deadline:
            for response in pool.map(lambda _: send(), range(6)):
                assert response.status_code == 200, response.text
                if running.note(response) != not_pid:
                    return response
    pytest.fail(f"only worker {not_pid} answered within {within:g} s")


def renders(shared: Cache, path: str) -> int:
    value = shared.get(RENDERS_KEY + path)
    assert isinstance(value, int), f"no render of {path} was counted"
    return value


def test_a_session_written_by_one_worker_is_read_by_another(running: Running) -> None:
    with running.http() as http:
        login = running.send(http, "POST", "/login?name=Ada")
        assert login.status_code == 200
        other = until_another_worker(
            running, lambda: running.send(http, "GET", "/me", headers=cookie(login)), running.note(login)
        )
    assert other.text == "user=Ada"


def test_a_page_cached_by_one_worker_is_served_by_another(running: Running, shared: Cache) -> None:
    path = f"/page/cross-{uuid.uuid4().hex}"
    with running.http() as http:
        first = running.send(http, "GET", path)
        assert first.status_code == 200
        found = re.search(r"rendered by (\d+)", first.text)
        assert found is not None
        other = until_another_worker(running, lambda: running.send(http, "GET", path), int(found.group(1)))
    assert other.text == first.text
    assert "Age" in other.headers  # served from the cache, not rendered again
    assert renders(shared, path) == 1


def test_concurrent_writes_to_one_session_lose_nothing(running: Running) -> None:
    burst, rounds = 40, 4
    sent: list[str] = []
    writers: set[int] = set()
    with running.http() as http:
        login = running.send(http, "POST", "/login?name=Grace")
        headers = cookie(login)
        # Bursts until two workers have written (the kernel may hand one burst to one worker).
        with ThreadPoolExecutor(8) as pool:
            while len(writers) < 2 and len(sent) < burst * rounds:
                names = [f"{len(sent) + i:03d}" for i in range(burst)]
                responses = list(
                    pool.map(
                        lambda name: running.send(http, "POST", f"/add?item={name}", headers=headers), names
                    )
                )
                assert [response.status_code for response in responses] == [200] * burst
                sent += names
                writers |= {running.note(response) for response in responses}
        items = running.send(http, "GET", "/items", headers=headers).text.split()
    lost = len(sent) - len(items)
    FIGURES[running.cell.name] |= {"session_writes": len(sent), "lost_writes": lost, "writers": len(writers)}
    assert len(writers) >= 2, f"{len(sent)} writes all went to one worker; the test proves nothing"
    assert items == sent


def test_a_stampede_on_a_cold_page_renders_once(running: Running, shared: Cache) -> None:
    path = f"/page/cold-{uuid.uuid4().hex}"
    clients = 12
    with running.http() as http, ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(lambda _: running.send(http, "GET", path), range(clients)))
    assert [response.status_code for response in responses] == [200] * clients
    assert len({response.text for response in responses}) == 1
    count = renders(shared, path)
    FIGURES[running.cell.name] |= {"stampede_requests": clients, "renders_per_cold_page": count}
    assert count == 1


def test_every_worker_gets_its_own_replies(running: Running, shared: Cache) -> None:
    if running.cell.preforked:
        # The precondition that makes this test bite: the process that forked used the cache.
        assert shared.get("matrix.booted") == running.server.pid
    burst, keys = 40, 25
    answered_by: set[int] = set()
    replies: set[str] = set()
    deadline = time.monotonic() + 20
    with running.http() as http, ThreadPoolExecutor(8) as pool:
        while len(answered_by) < 2 and time.monotonic() < deadline:
            responses = list(
                pool.map(
                    lambda _: running.send(http, "GET", f"/echo?token={uuid.uuid4().hex}&n={keys}"),
                    range(burst),
                )
            )
            assert [response.status_code for response in responses] == [200] * burst
            replies |= {response.text for response in responses}
            answered_by |= {running.note(response) for response in responses}
    assert replies == {"bad=0"}
    assert len(answered_by) >= 2, "one worker took every request; the test proves nothing"
    FIGURES[running.cell.name] |= check_connections(running)


def test_recycling_loses_nothing_and_leaks_no_connections(running: Running) -> None:
    sessions, per_session = 4, MAX_REQUESTS

    def count_up(_: int) -> list[int]:
        with running.http() as http:
            first = running.send(http, "GET", "/count")
            headers = cookie(first)
            answers = [int(first.text)]
            for _ in range(per_session - 1):
                response = running.send(http, "GET", "/count", headers=headers)
                running.note(response)
                answers.append(int(response.text))
            return answers

    # Servers recycle at their own pace (gevent's worker checks once a second): send
    # rounds of sessions until a worker has been replaced, to a deadline.
    rounds = 0
    recycled: set[int] = set()
    deadline = time.monotonic() + 20
    while not recycled and time.monotonic() < deadline:
        with ThreadPoolExecutor(sessions) as pool:
            answers = list(pool.map(count_up, range(sessions)))
        rounds += 1
        if running.cell.drops_on_recycle:
            # A dropped request sent again may have counted once already; none may be lost.
            for session in answers:
                assert all(later > earlier for earlier, later in zip(session, session[1:], strict=False))
        else:
            assert answers == [list(range(1, per_session + 1))] * sessions
        recycled = running.pids_seen - {process.pid for process in running.processes()}
    assert running.errors == 0
    assert recycled, f"no worker was recycled; workers seen: {sorted(running.pids_seen)}"
    deadline = time.monotonic() + 5
    while not recycled <= running.closed_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recycled <= running.closed_pids(), "a recycled worker exited without closing its cache"
    # Wake every worker (lazy servers import the app at a new worker's first request).
    with running.http() as http, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: running.send(http, "GET", "/echo?token=wake&n=1"), range(16)))
    after = check_connections(running)
    FIGURES[running.cell.name] |= {
        "recycle_rounds": rounds,
        "recycled_workers": len(recycled),
        "redis_clients_after_recycling": after["redis_clients"],
        "connections_per_worker_after_recycling": after["connections_per_worker"],
    }
