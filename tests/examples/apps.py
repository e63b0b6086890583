"""Import the apps in docs/examples (they are scripts, not a package); used by tests and gunicorn."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "docs" / "examples"
EXAMPLES = ["flask_app", "django_app", "bottle_app", "pyramid_app", "wsgi_app"]


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` as module ``name``, once per process."""
    if name in sys.modules:
        return sys.modules[name]
    if str(EXAMPLES_DIR) not in sys.path:
        sys.path.append(str(EXAMPLES_DIR))  # the examples import their shared demo_pages as a sibling
    spec = importlib.util.spec_from_file_location(name, EXAMPLES_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wsgi_app(name: str, url: str | None = None) -> Any:
    """Return the WSGI app of example ``name``; Django's reads its cache URL from the environment."""
    module = load_example(name)
    return module.application if name == "django_app" else module.create_app(url)


def with_worker_pid(app: WSGIApplication) -> WSGIApplication:
    """Add ``X-Worker-Pid`` (the serving process) to every response, outside all caching."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)

        return app(environ, start)

    return wrapped
