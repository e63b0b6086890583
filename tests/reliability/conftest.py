"""Fixtures for the reliability suite: Hypothesis budgets, servers of our own, gunicorn serving the app.

Hypothesis budgets (``HYPOTHESIS_PROFILE`` picks one; default ``ci`` when
``CI`` is set, else ``dev``):

* ``ci``: 50 examples per property, derandomized (the same examples every
  run, so CI is reproducible), no deadline (a shared 2-core machine has slow
  moments), no example database;
* ``dev``: 50 random examples per run, remembered in ``.hypothesis/``;
* ``deep``: 2,000 random examples per property, for a search on demand:
  ``HYPOTHESIS_PROFILE=deep python -m pytest tests/reliability -k hostile``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

from tests import servers
from tests.conftest import IN_CI
from tests.conftest import require_binary
from tests.gunicorn import Gunicorn
from tests.gunicorn import start_gunicorn
from tests.reliability.app import URL_VAR
from tests.reliability.app import build_app

ROOT = Path(__file__).resolve().parents[2]

# Function-scoped fixtures (a backend, an app) are shared by a property's examples on purpose.
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile(
    "ci", max_examples=50, deadline=None, derandomize=True, database=None, suppress_health_check=_SUPPRESS
)
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("deep", max_examples=2000, deadline=None, suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


@pytest.fixture
def own_redis() -> Iterator[servers.ServerProcess]:
    """A Redis of this test's own, which it may stop, kill or restart; stopped by PID afterwards.

    It persists every write before answering (``appendfsync always``), so a
    restart loses nothing that was acknowledged, as a session store should be set up.
    """
    require_binary("redis-server")
    server = servers.start_redis(["--appendonly", "yes", "--appendfsync", "always"])
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.pid, signal.SIGCONT)  # in case a test paused it
    server.stop()


@pytest.fixture
def make_app() -> Iterator[Callable[..., Any]]:
    """:func:`tests.reliability.app.build_app`, with every app's connections closed after the test."""
    built: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        app = build_app(*args, **kwargs)
        built.append(app)
        return app

    yield make
    for app in built:
        app.close()


@pytest.fixture
def gunicorn_on_own_redis(own_redis: servers.ServerProcess, tmp_path: Path) -> Iterator[Gunicorn]:
    """``tests.reliability.app:app`` under gunicorn (2 sync workers) on this test's own Redis."""
    served = start_gunicorn(
        "tests.reliability.app:app",
        probe="/stats.json",
        log_path=tmp_path / "gunicorn.log",
        env={URL_VAR: f"redis://{own_redis.address}/0"},
    )
    yield served
    served.stop()
