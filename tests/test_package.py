"""Package hygiene: imports point down, and each __all__ lists exactly the public names."""

from __future__ import annotations

import ast
import importlib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"cachekit": ("sessions", "middleware"), "sessions": ("middleware",), "middleware": ()}


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("package", FORBIDDEN)
def test_imports_point_down(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] not in FORBIDDEN[package], f"{path} imports {module}"


@pytest.mark.parametrize("package", FORBIDDEN)
def test_all_is_exact(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    declared = set(getattr(module, "__all__", ()))
    assert public == declared - {"__version__"}


@pytest.mark.parametrize("package", FORBIDDEN)
def test_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").exists()


def test_core_needs_no_client_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('redis', 'pymemcache', 'django', 'flask'):\n"
        "        raise ImportError('blocked ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import cachekit\n"
        "c = cachekit.from_url('locmem://')\n"
        "c.set('k', 1); assert c.get('k') == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
