"""The composition check inside real multi-process servers: gunicorn (WSGI) and uvicorn (ASGI).

Each server runs two workers of tests/cachekit/check_served.py; every worker
builds its session middleware on local memory and must log the
``sessions-on-local-memory`` finding (with the worker count it saw). With one
worker nothing about processes is logged. Servers are stopped by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachekit import check
from cachekit.config import ENV_VAR
from tests import servers

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


def _command(server: str, workers: int, port: int) -> list[str]:
    if server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{servers.HOST}:{port}",
            "--chdir", str(ROOT), "--log-level", "warning", "tests.cachekit.check_served:wsgi_app",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", "--workers", str(workers), "--host", servers.HOST,
        "--port", str(port), "--log-level", "warning", "tests.cachekit.check_served:asgi_app",
    ]  # fmt: skip


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator[Callable[[str, int], str]]:
    started: list[subprocess.Popen[bytes]] = []

    def run(server: str, workers: int) -> str:
        """Start ``server`` with ``workers``; return its log once every worker has booted."""
        log_path = tmp_path / f"{server}-{workers}.log"
        env = {
            k: v for k, v in os.environ.items() if k not in (ENV_VAR, "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")
        }
        env["PYTHONPATH"] = str(ROOT)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                _command(server, workers, servers.free_port()),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )
        started.append(process)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and process.poll() is None:
            text = log_path.read_text(errors="replace")
            if text.count("local-memory-fallback") >= workers:
                time.sleep(0.2)  # let the line after it (the process finding) land too
                return log_path.read_text(errors="replace")
            time.sleep(0.1)
        return log_path.read_text(errors="replace")

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_workers_with_local_memory_sessions_are_reported(
    server: str, run_server: Callable[[str, int], str]
) -> None:
    log = run_server(server, 2)
    lines = [line for line in log.splitlines() if check.SESSIONS_LOCAL in line]
    assert len(lines) == 2, log  # once per worker process
    assert all(f"{server} runs 2 worker processes" in line for line in lines), log


def test_one_gunicorn_worker_is_not_reported(run_server: Callable[[str, int], str]) -> None:
    log = run_server("gunicorn", 1)
    assert "local-memory-fallback" in log
    assert check.SESSIONS_LOCAL not in log
