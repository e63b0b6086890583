"""One way to start gunicorn for a test: a free loopback port, a log file, a bounded wait, stop by PID.

The examples, the reliability tests and the edge stack serve their apps the same way; each
passes its app, environment and the path that answers 200 once a worker is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers

ROOT = Path(__file__).resolve().parents[1]
#: Seconds gunicorn may take to answer its probe (a loaded 2-core CI machine imports slowly).
START_DEADLINE = 30.0


@dataclass
class Gunicorn:
    """A running gunicorn master (its own process group) and where it logs."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{servers.HOST}:{self.port}"

    def log(self) -> str:
        """The end of gunicorn's log, for a failure message."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """SIGTERM the group (the master stops its workers), SIGKILL it if that takes over 10 s."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def start_gunicorn(
    app: str, *, probe: str, log_path: Path, env: Mapping[str, str] = {}, workers: int = 2
) -> Gunicorn:
    """Serve ``app`` (``module:attribute`` from the repository root) until ``probe`` answers 200.

    :param env: added to this process's environment (DeprecationWarnings are silenced in the workers).
    """
    requests = pytest.importorskip("requests")
    port = servers.free_port()
    # fmt: off
    argv = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{servers.HOST}:{port}",
        "--chdir", str(ROOT), "--timeout", "30", "--graceful-timeout", "2", "--log-level", "warning", app,
    ]
    # fmt: on
    environment = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **env}
    environment.pop("DJANGO_SETTINGS_MODULE", None)  # an example configures Django itself
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    served = Gunicorn(port, process, log_path)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{served.log()}")
        try:
            if requests.get(served.url + probe, timeout=1).status_code == 200:
                return served
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            served.stop()
            pytest.fail(f"gunicorn did not answer {probe} within {START_DEADLINE} s:\n{served.log()}")
        time.sleep(0.05)
