"""More than one machine: two app instances behind HAProxy (round-robin, no stickiness), one Redis.

Each instance is a gunicorn with 2 workers (``--preload``, recycled every 40
requests) serving tests/servers_matrix/app.py and naming itself in
``X-Instance``; HAProxy, started from its own config on a free loopback port,
sends each request to the next instance (``balance roundrobin``,
``option http-server-close``: no cookie, no source hashing). Over real HTTP:

* consecutive requests alternate between the instances, so nothing is sticky;
* a login made through one instance is seen by every later request, on both;
* a page cached through one is served from the cache by the other;
* a purge, or a tag invalidation, made through one instance is seen by the
  other on its very next request (the page renders again).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cachekit import Cache
from cachekit import from_url
from tests import servers
from tests.conftest import require_binary
from tests.servers_matrix.cells import CELLS
from tests.servers_matrix.cells import Running
from tests.servers_matrix.cells import installed
from tests.servers_matrix.cells import run
from tests.servers_matrix.names import RENDERS_KEY

pytestmark = pytest.mark.slow
DB = 15
INSTANCE_CELL = next(cell for cell in CELLS if cell.name == "gunicorn-sync-preload")


@dataclass
class Site:
    """Two instances and the load balancer in front of them."""

    instances: dict[str, Running]
    balancer: servers.ServerProcess

    @property
    def url(self) -> str:
        return f"http://{self.balancer.address}"


def haproxy_config(port: int, backends: list[Running]) -> str:
    """Round-robin over ``backends``, one request per server connection, no stickiness."""
    lines = [
        "global",
        "    maxconn 256",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 15s",
        "    timeout server 15s",
        "    option http-server-close",
        "frontend site",
        f"    bind {servers.HOST}:{port}",
        "    default_backend apps",
        "backend apps",
        "    balance roundrobin",
        *(
            f"    server {name} {backend.server.address}"
            for name, backend in zip("ab", backends, strict=True)
        ),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    require_binary("haproxy")
    if not installed(INSTANCE_CELL):
        require_binary("gunicorn")
    redis_server: servers.ServerProcess = request.getfixturevalue("redis_server")
    instances: dict[str, Running] = {}
    balancer = None
    try:
        for index, name in enumerate(("a", "b")):
            instances[name] = run(INSTANCE_CELL, redis_server, db=DB, instance=name, flush=index == 0)
        workdir = Path(tempfile.mkdtemp(prefix="cachekit-haproxy-"))
        port = servers.free_port()
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(port, list(instances.values())))
        binary = shutil.which("haproxy") or "haproxy"
        balancer = servers.ServerProcess("haproxy", port, [binary, "-f", str(config), "-db"], workdir).start()
        yield Site(instances, balancer)
    finally:
        if balancer is not None:
            balancer.stop()
        for instance in instances.values():
            instance.server.stop()


@pytest.fixture
def shared(site: Site) -> Iterator[Cache]:
    cache = from_url(site.instances["a"].cache_url)
    yield cache
    cache.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


def rendered_at(response: httpx.Response) -> str:
    found = re.search(r"rendered by \d+ at ([\d.]+)", response.text)
    assert found is not None, response.text
    return found.group(1)


def test_requests_alternate_between_the_instances(site: Site, http: httpx.Client) -> None:
    served_by = [http.get(site.url + "/me").headers["X-Instance"] for _ in range(6)]
    assert served_by in (["a", "b"] * 3, ["b", "a"] * 3)


def test_a_login_on_one_instance_is_seen_on_the_other(site: Site, http: httpx.Client) -> None:
    login = http.post(site.url + "/login?name=Ada")
    assert login.status_code == 200
    cookie = {"Cookie": f"session={login.cookies['session']}"}
    answers = [http.get(site.url + "/me", headers=cookie) for _ in range(6)]
    assert {response.headers["X-Instance"] for response in answers} == {"a", "b"}
    assert [response.text for response in answers] == ["user=Ada"] * 6


def test_a_page_cached_through_one_instance_is_served_by_the_other(
    site: Site, http: httpx.Client, shared: Cache
) -> None:
    path = f"/page/lb-{uuid.uuid4().hex}"
    first, second = http.get(site.url + path), http.get(site.url + path)
    assert {first.headers["X-Instance"], second.headers["X-Instance"]} == {"a", "b"}
    assert second.text == first.text
    assert shared.get(RENDERS_KEY + path) == 1


@pytest.mark.parametrize("how", ["purge", "tag"])
def test_an_invalidation_through_one_instance_is_seen_by_the_other_at_once(
    site: Site, http: httpx.Client, shared: Cache, how: str
) -> None:
    name = f"lb-{how}-{uuid.uuid4().hex}"
    path = f"/page/{name}"
    # The page's cache key holds the host the client asked for: the balancer's.
    host = {"Host": site.balancer.address}
    a, b = site.instances["a"].url, site.instances["b"].url
    cached = http.get(site.url + path)
    assert http.get(b + path, headers=host).text == cached.text  # b serves the stored copy
    if how == "purge":
        answer = http.post(a + "/purge", params={"url": site.url + path})
        assert answer.text == "purged=True"
    else:
        answer = http.post(a + "/invalidate", params={"tag": f"page:{name}"})
        assert answer.text == "invalidated"
    fresh = http.get(b + path, headers=host)
    assert fresh.status_code == 200
    assert rendered_at(fresh) != rendered_at(cached)
    assert shared.get(RENDERS_KEY + path) == 2
