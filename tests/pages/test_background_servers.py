"""Background revalidation through a real server: gunicorn ``--preload``, 2 processes x 4 threads, Redis.

The app is the benchmark's (``benchmarks.bench_revalidate:make_app()``), with a
0.3 s render and pages fresh for 1 s: the request that finds the page stale is
answered from the stale copy, and one render follows for the expiry, whichever
process each request reaches. Renders are counted in Redis by the app. Before
background revalidation that request rendered inline and got the new page.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import redis

from benchmarks.bench_revalidate import RENDERS_KEY
from benchmarks.bench_revalidate import gunicorn
from tests import servers

FRESH = 1.0
DEADLINE = 10.0


@pytest.fixture
def served(redis_server: servers.ServerProcess) -> Iterator[tuple[int, redis.Redis, str]]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    prefix = f"rvt{uuid.uuid4().hex[:8]}"
    url = f"redis://{redis_server.address}/0"
    env = {
        **os.environ,
        "CACHEKIT_URL": url,
        "REVALIDATE_PREFIX": prefix,
        "REVALIDATE_RENDER_SECONDS": "0.3",
        "REVALIDATE_FRESH_SECONDS": str(FRESH),
        "PYTHONPATH": root,
    }
    port = servers.free_port()
    server = gunicorn(port, env, servers._workdir("gunicorn-revalidate"), processes=2, threads=4)
    try:
        yield port, redis.Redis.from_url(url), prefix + RENDERS_KEY
    finally:
        server.stop()


def _get(port: int) -> tuple[int, int, bytes]:
    """``(status, Age or -1, body)`` of ``GET /page``."""
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=DEADLINE)
    try:
        conn.request("GET", "/page")
        response = conn.getresponse()
        return response.status, int(response.getheader("Age") or -1), response.read()
    finally:
        conn.close()


def _until(predicate: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < end, f"not within {DEADLINE} s: {what}"
        time.sleep(0.02)


def test_a_stale_page_is_answered_stale_and_rendered_once_across_processes(
    served: tuple[int, redis.Redis, str],
) -> None:
    port, log, renders = served
    status, _, first = _get(port)
    assert status == 200
    assert log.llen(renders) == 1
    found_stale: list[tuple[int, int, bytes]] = []

    def stale_answer() -> bool:
        answer = _get(port)
        if answer[1] >= FRESH:  # an Age past the lifetime: this request found the page stale
            found_stale.append(answer)
            return True
        return False

    # Sequential polls: inline (before), the request that found it stale rendered, and none was stale.
    _until(stale_answer, "a request finds the page stale")
    assert found_stale[0][2] == first  # answered from the stale copy (inline before: the new page)
    # A burst meanwhile, spread over both processes: stale answers or the new page, no second render.
    bodies: list[bytes] = []
    threads = [threading.Thread(target=lambda: bodies.append(_get(port)[2])) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert len(bodies) == 16
    _until(lambda: _get(port)[2] != first, "the re-rendered page is served")
    assert log.llen(renders) == 2  # one render for the expiry, in the background
