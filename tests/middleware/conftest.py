"""Fixtures for middleware tests: the demo app served over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests import servers


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    port = servers.free_port()
    env = {**os.environ, "CACHEKIT_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "cachekit", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 15
    while not servers.port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"demo did not start: {output}")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)
    if process.stdout:
        process.stdout.close()
