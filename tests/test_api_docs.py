"""The API reference covers every public name, and every public name has a docstring."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cachekit", "sessions", "middleware")


def public_objects(package: str) -> Iterator[tuple[str, object]]:
    """Each exported class and function, and each public method and property of the classes."""
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # data (caches, DEFAULT_TIMEOUT, __version__): described in the module docstring
        yield f"{package}.{name}", obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, property):
                    yield f"{package}.{name}.{attr}", value.fget
                elif isinstance(value, (staticmethod, classmethod)):
                    yield f"{package}.{name}.{attr}", value.__func__
                elif inspect.isfunction(value):
                    yield f"{package}.{name}.{attr}", value


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package: str) -> None:
    names = list(public_objects(package))
    assert names
    missing = [name for name, obj in names if not (getattr(obj, "__doc__", None) or "").strip()]
    assert missing == []


@pytest.fixture(scope="module")
def api_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    import os
    import subprocess
    import sys

    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return (site / "api" / "index.html").read_text()


@pytest.mark.parametrize("package", PACKAGES)
def test_api_page_has_an_entry_for_every_public_name(package: str, api_html: str) -> None:
    anchors = set(re.findall(r'id="([A-Za-z_][\w.]*)"', api_html))
    module = importlib.import_module(package)
    names = [name for name in module.__all__ if name != "__version__"]
    missing = [
        name
        for name in names
        if f"{package}.{name}" not in anchors and not any(a.endswith(f".{name}.{name}") for a in anchors)
    ]
    assert missing == []


def test_the_check_catches_a_missing_docstring(monkeypatch: pytest.MonkeyPatch) -> None:
    import sessions

    def undocumented() -> None:
        pass

    monkeypatch.setattr(sessions, "undocumented", undocumented, raising=False)
    monkeypatch.setattr(sessions, "__all__", [*sessions.__all__, "undocumented"])
    with pytest.raises(AssertionError):
        test_every_public_name_has_a_docstring("sessions")
