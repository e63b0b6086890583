"""Every ``python`` code block in README.md and docs/ runs, against real servers where named.

Blocks that name ``127.0.0.1:6379`` (Redis) or ``127.0.0.1:11211`` (memcached)
are pointed at the servers the fixtures started.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cachekit
from tests import servers

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKIP_FILES = {"docs/examples"}


def code_blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        relative = str(path.relative_to(ROOT))
        if any(relative.startswith(prefix) for prefix in SKIP_FILES):
            continue
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((relative, line, match.group(1)))
    return found


BLOCKS = code_blocks()


@pytest.mark.parametrize(("path", "line", "code"), BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_doc_block_runs(path: str, line: int, code: str, request: pytest.FixtureRequest) -> None:
    if "127.0.0.1:6379" in code:
        server: servers.ServerProcess = request.getfixturevalue("redis_server")
        code = code.replace("127.0.0.1:6379", server.address)
    if "127.0.0.1:11211" in code:
        server = request.getfixturevalue("memcached_server")
        code = code.replace("127.0.0.1:11211", server.address)
    try:
        exec(compile(code, f"{path}:{line}", "exec"), {"__name__": "__docs__"})
    finally:
        cachekit.caches.configure(None)


def test_docs_build_strictly(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_every_option_is_documented() -> None:
    """The configuration pages name every option the code accepts."""
    from cachekit.backends.locmem import LocMemBackend
    from cachekit.backends.memcached import MemcachedBackend
    from cachekit.backends.redis import RedisBackend
    from cachekit.config import _CACHE_OPTIONS

    text = (ROOT / "docs" / "configuration.md").read_text() + (ROOT / "docs" / "backends.md").read_text()
    options = [*_CACHE_OPTIONS, *LocMemBackend.OPTIONS, *RedisBackend.OPTIONS, *MemcachedBackend.OPTIONS]
    missing = [name for name in options if f"`{name}`" not in text]
    assert missing == []


def test_every_session_setting_is_documented() -> None:
    import inspect

    from middleware import _session_rules
    from sessions import settings as session_settings

    # Where the settings are read: the store's (sessions.settings), the cookie's (_session_rules).
    readers = (
        session_settings.store_from_settings,
        session_settings._secret_keys,
        session_settings._serializer_from_setting,
        _session_rules.cookie_options,
    )
    source = "".join(inspect.getsource(reader) for reader in readers)
    settings = set(re.findall(r'"(SESSION_[A-Z_]+|SECRET_KEY(?:_FALLBACKS)?)"', source))
    text = (ROOT / "docs" / "sessions.md").read_text()
    assert settings
    assert sorted(name for name in settings if f"`{name}`" not in text) == []
