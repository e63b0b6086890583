"""The cachekit command: every subcommand on locmem, Redis and memcached, and its error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cachekit.cli import main
from tests import servers


@pytest.fixture(params=["locmem", "redis", "memcached"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "locmem":
        return "locmem://cli"
    server: servers.ServerProcess = request.getfixturevalue(f"{request.param}_server")
    return f"{request.param}://{server.address}"


def test_ping(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", url]) == 0
    assert capsys.readouterr().out.startswith("PONG")


def test_set_get_delete(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", url, "greeting", "hello", "--prefix", "cli"]) == 0
    assert main(["get", url, "greeting", "--prefix", "cli"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "hello"
    assert main(["set", url, "doc", '{"a": [1, 2]}', "--json", "--prefix", "cli"]) == 0
    assert main(["get", url, "doc", "--prefix", "cli"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"a": [1, 2]}
    assert main(["delete", url, "greeting", "--prefix", "cli"]) == 0
    assert main(["delete", url, "greeting", "--prefix", "cli"]) == 1
    assert main(["get", url, "greeting", "--prefix", "cli"]) == 1
    assert "(miss)" in capsys.readouterr().err


def test_stats(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cache"]["errors"] == 0
    if not url.startswith("locmem"):
        assert report["server"]


def test_clear_with_yes(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["set", url, "k", "v", "--prefix", "mine"])
    main(["set", url, "k", "v", "--prefix", "theirs"])
    assert main(["clear", url, "--prefix", "mine", "--yes"]) == 0
    assert main(["get", url, "k", "--prefix", "mine"]) == 1
    assert main(["get", url, "k", "--prefix", "theirs"]) == 0


def test_clear_refuses_without_yes_off_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["clear", "locmem://cli", "--prefix", "p"]) == 1


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        pytest.param(["ping", "bogus://x"], 2, "bogus", id="unknown-scheme"),
        pytest.param(["ping", "not-a-url"], 2, "scheme://", id="malformed"),
        pytest.param(["ping", "locmem://?max_entires=2"], 2, "max_entires", id="wrong-option"),
        pytest.param(["set", "locmem://", "k", "{oops", "--json"], 2, "JSON", id="bad-json"),
        pytest.param(["ping", "null://"], 1, "did not keep", id="null-backend"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], code: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_unreachable_server_names_address(scheme: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = servers.free_port()  # nothing listens there
    assert main(["ping", f"{scheme}://127.0.0.1:{port}"]) == 3
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_bench_locmem_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--backends", "locmem", "--operations", "200", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {row["operation"] for row in rows} == {"get hit", "get miss", "set", "get_many(100)"}
    assert all(row["ops_per_second"] > 0 for row in rows)
    assert "ops/s" in capsys.readouterr().out


def test_bench_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--backends", "nosuch"]) == 2


def test_help_on_every_subcommand() -> None:
    for command in ("demo", "ping", "stats", "clear", "get", "set", "delete", "bench"):
        result = subprocess.run(
            [sys.executable, "-m", "cachekit", command, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, command
        assert "usage: cachekit" in result.stdout


def test_bench_writes_a_png_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "bench.png"
    assert main(["bench", "--backends", "locmem", "--operations", "100", "--png", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
