"""uWSGI's ``--harakiri``: a worker stuck in one request is killed; only that request is lost.

A worker of tests/servers_matrix/app.py under uWSGI (preforking, ``--harakiri 2``)
sleeps 6 s inside a request that changed the session. uWSGI kills it (gracefully, then SIGKILL,
so no ``atexit``): the client gets no answer, the session keeps what earlier
requests saved and not the killed request's change, a new worker replaces the
dead one, and Redis holds no connection of the dead worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import httpx
import pytest

from tests import servers
from tests.conftest import IN_CI
from tests.servers_matrix.cells import CELLS
from tests.servers_matrix.cells import Running
from tests.servers_matrix.cells import check_connections
from tests.servers_matrix.cells import installed
from tests.servers_matrix.cells import run
from tests.servers_matrix.cells import uwsgi_argv

pytestmark = pytest.mark.slow
HARAKIRI = 2
CELL = dataclasses.replace(
    next(cell for cell in CELLS if cell.name == "uwsgi-prefork"),
    name="uwsgi-harakiri",
    argv=uwsgi_argv("--harakiri", str(HARAKIRI)),  # the later value wins
)


@pytest.fixture(scope="module")
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    if not installed(CELL):
        message = "uwsgi is not installed; it is in the dev extra of pyproject.toml"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    redis_server: servers.ServerProcess = request.getfixturevalue("redis_server")
    served = run(CELL, redis_server, db=15)
    yield served
    served.server.stop()


def test_harakiri_loses_only_the_killed_request(running: Running) -> None:
    with running.http() as http:
        login = running.send(http, "POST", "/login?name=Ada")
        headers = {"Cookie": f"session={login.cookies['session']}"}
        assert running.send(http, "POST", "/add?item=kept", headers=headers).status_code == 200
        before = {process.pid for process in running.processes()}
        started = time.monotonic()
        with pytest.raises(httpx.TransportError):  # the 15 s client timeout outlasts the 6 s sleep
            http.get("/slow", params={"seconds": "6"}, headers=headers)
        assert time.monotonic() - started < 6, "harakiri did not cut the request short"
        assert running.send(http, "GET", "/me", headers=headers).text == "user=Ada"
        assert running.send(http, "GET", "/items", headers=headers).text == "kept"
    # The master kills the worker (gracefully first) and then forks a new one: poll.
    deadline = time.monotonic() + 10
    while True:
        live = {process.pid for process in running.processes()}
        if (len(live) == 3 and live != before) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(live) == len(before) == 3  # the master and two workers
    assert len(live - before) == 1, "a new worker replaced the killed one"
    check_connections(running)
