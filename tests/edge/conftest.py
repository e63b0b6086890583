"""Varnish (xkey from varnish-modules) in front of tests/edge/app.py under gunicorn, on free loopback ports.

:func:`start_varnish` writes ``cachekit.vcl`` with the app's port and the
purgers' ACL into a work directory and runs ``varnishd -F`` there; everything
is stopped by PID. Under CI a missing ``varnishd`` or xkey vmod is a failure
(``.ci/run`` installs ``varnish`` and ``varnish-modules``).
"""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import IN_CI
from tests.conftest import require_binary
from tests.gunicorn import START_DEADLINE
from tests.gunicorn import Gunicorn
from tests.gunicorn import start_gunicorn

VCL = Path(__file__).with_name("cachekit.vcl")
VMOD_GLOBS = ("/usr/lib/*/varnish/vmods/libvmod_xkey.so", "/usr/lib/varnish/vmods/libvmod_xkey.so")


def require_varnish() -> str:
    """The path of ``varnishd`` with the xkey vmod installed; skip locally, fail in CI."""
    require_binary("varnishd")
    if not any(glob.glob(pattern) for pattern in VMOD_GLOBS):
        message = "the xkey vmod is not installed; .ci/run installs varnish-modules with apt-get"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    path = shutil.which("varnishd")
    assert path is not None
    return path


def start_varnish(
    backend_port: int, purgers: tuple[str, ...] = ("127.0.0.1", "::1"), port: int | None = None
) -> servers.ServerProcess:
    """``varnishd -F`` with ``cachekit.vcl`` in front of ``backend_port``; PURGE/BAN only from ``purgers``."""
    binary = require_varnish()
    port = port or servers.free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-varnish-"))
    acl = "\n    ".join(f'"{address}";' for address in purgers)
    vcl = VCL.read_text().replace("@BACKEND_PORT@", str(backend_port)).replace("@PURGERS@", acl)
    (workdir / "cachekit.vcl").write_text(vcl)
    argv = [
        binary,
        "-F",
        "-j",
        "none",
        "-n",
        str(workdir / "instance"),
        "-a",
        f"{servers.HOST}:{port}",
        "-T",
        "none",
        "-f",
        str(workdir / "cachekit.vcl"),
        "-s",
        "malloc,32m",
        "-p",
        "thread_pool_min=5",
        "-p",
        "thread_pools=1",
    ]
    return servers.ServerProcess("varnishd", port, argv, workdir).start(deadline=START_DEADLINE)


@dataclass
class Stack:
    """Varnish in front of gunicorn; ``redis_url`` is our cache's."""

    varnish: servers.ServerProcess
    gunicorn: Gunicorn
    redis_url: str

    @property
    def app_url(self) -> str:
        return self.gunicorn.url

    @property
    def varnish_url(self) -> str:
        return f"http://{self.varnish.address}"

    def log(self) -> str:
        return self.gunicorn.log() + "\n--- varnishd:\n" + self.varnish.output()


@pytest.fixture(scope="module")
def stack(redis_server: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """tests/edge/app.py under gunicorn (2 workers) on our Redis, Varnish in front; stopped by PID."""
    require_varnish()
    varnish_port = servers.free_port()
    redis_url = f"redis://{redis_server.address}/0"
    env = {"EDGE_REDIS_URL": redis_url, "EDGE_VARNISH": f"{servers.HOST}:{varnish_port}"}
    log_path = tmp_path_factory.mktemp("edge") / "gunicorn.log"
    gunicorn = start_gunicorn("tests.edge.app:app", probe="/admin/queue", log_path=log_path, env=env)
    varnish = None
    try:
        varnish = start_varnish(gunicorn.port, port=varnish_port)
        yield Stack(varnish, gunicorn, redis_url)
    finally:
        if varnish is not None:
            varnish.stop()
        gunicorn.stop()
