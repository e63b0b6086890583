"""Varnish (xkey from varnish-modules) in front of tests/edge/app.py under gunicorn, on free loopback ports.

:func:`start_varnish` writes ``cachekit.vcl`` with the app's port and the
purgers' ACL into a work directory and runs ``varnishd -F`` there; everything
is stopped by PID. Under CI a missing ``varnishd`` or xkey vmod is a failure
(``.ci/run`` installs ``varnish`` and ``varnish-modules``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import IN_CI
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
VCL = Path(__file__).with_name("cachekit.vcl")
START_DEADLINE = 30.0
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
    app_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    redis_url: str

    @property
    def varnish_url(self) -> str:
        return f"http://{self.varnish.address}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] + "\n--- varnishd:\n" + self.varnish.output()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(5)


@pytest.fixture(scope="module")
def stack(redis_server: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """tests/edge/app.py under gunicorn (2 workers) on our Redis, Varnish in front; stopped by PID."""
    requests = pytest.importorskip("requests")
    require_varnish()
    app_port, varnish_port = servers.free_port(), servers.free_port()
    redis_url = f"redis://{redis_server.address}/0"
    log_path = tmp_path_factory.mktemp("edge") / "gunicorn.log"
    env = {
        **os.environ,
        "EDGE_REDIS_URL": redis_url,
        "EDGE_VARNISH": f"{servers.HOST}:{varnish_port}",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"{servers.HOST}:{app_port}",
                "--chdir",
                str(ROOT),
                "--timeout",
                "30",
                "--graceful-timeout",
                "2",
                "--log-level",
                "warning",
                "tests.edge.app:app",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    varnish = None
    try:
        app_url = f"http://{servers.HOST}:{app_port}"
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(app_url + "/admin/queue", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer within {START_DEADLINE} s:\n{log_path.read_text()}")
            time.sleep(0.05)
        varnish = start_varnish(app_port, port=varnish_port)
        yield Stack(varnish, app_url, process, log_path, redis_url)
    finally:
        if varnish is not None:
            varnish.stop()
        _stop(process)
