"""The cachekit command through the installed console script: every subcommand and error path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cachekit.cli import main
from tests import servers

SCRIPT = Path(sys.executable).with_name("cachekit")


def cachekit(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cachekit`` script, as a user would."""
    assert SCRIPT.exists(), f"console script missing: {SCRIPT} (pip install -e .)"
    return subprocess.run(
        [str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr


@pytest.fixture(params=["redis", "memcached"])
def url(request: pytest.FixtureRequest) -> str:
    server: servers.ServerProcess = request.getfixturevalue(f"{request.param}_server")
    return f"{request.param}://{server.address}"


def test_version_and_help_show_no_markup() -> None:
    import cachekit as package

    assert cachekit("--version").stdout.strip() == f"cachekit {package.__version__}"
    top = cachekit("--help")
    assert top.returncode == 0
    assert "``" not in top.stdout
    assert "Exit codes" in top.stdout


def test_every_argument_has_help() -> None:
    from cachekit.cli import build_parser

    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.choices and action.dest == "command")
    assert isinstance(subparsers.choices, dict)
    for name, command in subparsers.choices.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"cachekit {name}: {action.dest} has no help"


def test_help_on_every_subcommand() -> None:
    for command in (
        "demo",
        "ping",
        "stats",
        "clear",
        "get",
        "set",
        "delete",
        "inspect",
        "ttl",
        "purge",
        "bench",
    ):
        result = cachekit(command, "--help")
        assert result.returncode == 0, command
        assert f"usage: cachekit {command}" in result.stdout


def test_ping(url: str) -> None:
    result = cachekit("ping", url)
    assert result.returncode == 0
    assert result.stdout.startswith("PONG")


def test_set_get_inspect_ttl_delete(url: str) -> None:
    assert cachekit("set", url, "greeting", "hello", "--prefix", "cli", "--timeout", "120").returncode == 0
    got = cachekit("get", url, "greeting", "--prefix", "cli")
    assert (got.returncode, got.stdout) == (0, "hello\n")
    assert cachekit("set", url, "doc", '{"a": [1, 2]}', "--json", "--prefix", "cli").returncode == 0
    assert json.loads(cachekit("get", url, "doc", "--prefix", "cli").stdout) == {"a": [1, 2]}

    facts = cachekit("inspect", url, "greeting", "--prefix", "cli")
    assert facts.returncode == 0
    assert re.search(r"^type\s+str$", facts.stdout, re.M)
    assert re.search(r"^size\s+\d+ bytes serialized$", facts.stdout, re.M)
    seconds = float(re.search(r"^ttl\s+([\d.]+) s remaining$", facts.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert 100 < seconds <= 121
    assert 100 < float(cachekit("ttl", url, "greeting", "--prefix", "cli").stdout) <= 121
    assert cachekit("ttl", url, "doc", "--prefix", "cli").stdout.strip() == "none"
    assert re.search(r"^type\s+dict$", cachekit("inspect", url, "doc", "--prefix", "cli").stdout, re.M)

    assert cachekit("delete", url, "greeting", "--prefix", "cli").stdout.startswith("deleted")
    for command in ("delete", "get", "inspect", "ttl"):
        result = cachekit(command, url, "greeting", "--prefix", "cli")
        assert result.returncode == 1, command
        assert result.stderr == "(miss) 'greeting'\n", command  # the same word for every miss


def test_stats_human_raw_and_json(url: str) -> None:
    cachekit("set", url, "k", "v")
    cachekit("get", url, "k")
    human = cachekit("stats", url)
    assert human.returncode == 0
    for label in ("hit ratio", "memory", "evictions", "connections", "keys"):
        assert re.search(rf"^  {label}\s+\S", human.stdout, re.M), label
    assert re.search(r"hit ratio\s+\d+\.\d% \(", human.stdout)
    assert len(human.stdout.splitlines()) < 15  # not the server's whole dump

    raw = cachekit("stats", url, "--raw")
    assert "[server]" in raw.stdout
    assert len(raw.stdout.splitlines()) > len(human.stdout.splitlines())
    assert "{" not in raw.stdout  # nested statistics (memcached per node, Redis per db) as lines, not reprs

    report = json.loads(cachekit("stats", url, "--json").stdout)
    assert report["cache"]["errors"] == 0
    assert report["server"]


def test_stats_shows_the_breaker_when_the_backend_has_one() -> None:
    from cachekit.ops.stats import format_stats

    closed = format_stats("redis://x", {"redis_version": "7"}, {"breaker_open": 0, "breaker_trips": 2})
    assert re.search(r"breaker\s+closed \(2 trips, 0 calls refused", closed)
    opened = format_stats("redis://x", {"redis_version": "7"}, {"breaker_open": 1, "breaker_rejections": 9})
    assert re.search(r"breaker\s+1 open \(0 trips, 9 calls refused", opened)
    assert "breaker" not in format_stats("redis://x", {"redis_version": "7"}, {"hits": 1})


def test_stats_shows_the_near_cache_when_the_backend_has_one(redis_server: servers.ServerProcess) -> None:
    from cachekit.backends.redis import RedisBackend
    from cachekit.ops.stats import format_stats

    url = f"redis://{redis_server.address}/0"
    worker = RedisBackend.from_url(url, near_cache=10)  # an application process's near cache
    assert worker.near.wait_ready(5.0)  # type: ignore[attr-defined]
    near = cachekit("stats", url + "?near_cache=100")
    worker.close()
    assert near.returncode == 0
    # The server counts the listeners of the processes with a near cache (CLIENT TRACKING BCAST).
    assert re.search(r"^  tracking\s+[1-9]\d* clients receive invalidations", near.stdout, re.M), near.stdout
    assert re.search(
        r"^  near cache\s+\S.* hits, \d+ misses, \d+ invalidations, \d+ flushes", near.stdout, re.M
    )
    assert not re.search(r"^  near cache", cachekit("stats", url).stdout, re.M)
    line = format_stats(
        "redis://x",
        {"redis_version": "7"},
        {"near_hits": 5, "near_misses": 2, "near_invalidations": 3, "near_flushes": 1, "near_ready": 1},
    )
    assert re.search(
        r"near cache\s+receiving invalidations; 5 hits, 2 misses, 3 invalidations, 1 flushes", line
    )
    not_ready = format_stats("redis://x", {"redis_version": "7"}, {"near_hits": 0, "near_ready": 0})
    assert "not ready (serves nothing)" in not_ready


def test_clear_with_yes(url: str) -> None:
    cachekit("set", url, "k", "v", "--prefix", "mine")
    cachekit("set", url, "k", "v", "--prefix", "theirs")
    assert cachekit("clear", url, "--prefix", "mine", "--yes").returncode == 0
    assert cachekit("get", url, "k", "--prefix", "mine").returncode == 1
    assert cachekit("get", url, "k", "--prefix", "theirs").returncode == 0


def test_clear_refuses_without_yes_off_terminal(url: str) -> None:
    one_line_error(cachekit("clear", url, "--prefix", "p"), 1, "--yes")


def test_purge_pages_and_tags(redis_server: servers.ServerProcess) -> None:
    from cachekit import from_url
    from cachekit.views import cache_page
    from tests.wsgi import call_app
    from tests.wsgi import make_environ

    url = f"redis://{redis_server.address}"
    cache = from_url(url)
    renders: list[int] = []

    @cache_page(60, cache=cache, tags=["news"])
    def page(environ: dict[str, object], start_response: object) -> list[bytes]:
        renders.append(1)
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"page"]

    environ = make_environ("/news")
    call_app(page, environ)
    call_app(page, make_environ("/news"))
    assert len(renders) == 1
    purged = cachekit("purge", url, "http://testserver/news")
    assert (purged.returncode, purged.stdout) == (0, "purged http://testserver/news\n")
    call_app(page, make_environ("/news"))
    assert len(renders) == 2
    again = cachekit("purge", url, "http://testserver/other")
    assert (again.returncode, again.stdout) == (1, "(miss) http://testserver/other\n")
    tagged = cachekit("purge", url, "--tag", "news")
    assert (tagged.returncode, tagged.stdout) == (0, "invalidated tag news\n")
    call_app(page, make_environ("/news"))
    assert len(renders) == 3
    cache.close()


@pytest.mark.parametrize("command", ["get", "set", "delete", "inspect", "ttl", "stats", "clear", "purge"])
def test_locmem_is_refused_where_each_run_would_see_an_empty_cache(command: str) -> None:
    argv = {"set": ["k", "v"], "stats": [], "clear": ["--yes"], "purge": ["--tag", "t"]}.get(command, ["k"])
    one_line_error(cachekit(command, "locmem://", *argv), 2, "lives in this process only")


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        pytest.param(["ping", "bogus://x"], 2, "bogus", id="unknown-scheme"),
        pytest.param(["ping", "not-a-url"], 2, "scheme://", id="malformed"),
        pytest.param(["ping", "locmem://?max_entires=2"], 2, "max_entires", id="wrong-option"),
        pytest.param(["set", "memcached://127.0.0.1:1", "k", "{oops", "--json"], 2, "JSON", id="bad-json"),
        pytest.param(["ping", "null://"], 1, "did not keep", id="null-backend"),
        pytest.param([], 2, "COMMAND", id="no-command"),
        pytest.param(["frobnicate"], 2, "invalid choice", id="unknown-command"),
        pytest.param(["get", "redis://127.0.0.1:1"], 2, "KEY", id="missing-argument"),
        pytest.param(["set", "redis://x", "k", "v", "--timeout", "soon"], 2, "timeout", id="bad-timeout"),
        pytest.param(["bench", "--operations", "0"], 2, "at least 1", id="bench-zero-operations"),
        pytest.param(["bench", "--backends", "nosuch"], 2, "nosuch", id="bench-unknown-backend"),
        pytest.param(["purge", "redis://127.0.0.1:1"], 2, "nothing to purge", id="purge-nothing"),
        pytest.param(["purge", "redis://127.0.0.1:1", "relative"], 2, "absolute", id="purge-relative-url"),
    ],
)
def test_errors_are_one_line(argv: list[str], code: int, fragment: str) -> None:
    one_line_error(cachekit(*argv), code, fragment)


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_unreachable_server_names_address(scheme: str) -> None:
    port = servers.free_port()  # nothing listens there
    one_line_error(cachekit("ping", f"{scheme}://127.0.0.1:{port}"), 3, f"127.0.0.1:{port}")


def test_bench_locmem_json_with_progress(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = cachekit("bench", "--backends", "locmem", "--operations", "200", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert {row["operation"] for row in rows} == {"get hit", "get miss", "set", "get_many(100)"}
    assert all(row["ops_per_second"] > 0 for row in rows)
    assert "ops/s" in result.stdout
    # Not a terminal: one plain progress line per step, no carriage returns.
    assert result.stderr.splitlines()[-1] == "bench: 12/12 locmem get_many(100)"
    assert "\r" not in result.stderr


def test_bench_png_without_matplotlib_fails_before_running(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    results = tmp_path / "results.json"
    path = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
    result = cachekit(
        "bench",
        "--operations",
        "1000",
        "--json",
        str(results),
        "--png",
        str(tmp_path / "c.png"),
        env={"PYTHONPATH": path},
    )
    one_line_error(result, 2, "--png needs matplotlib")
    assert not results.exists()  # refused before the run, not after it
    assert "bench: 1/" not in result.stderr  # no progress line: nothing was measured


def test_bench_writes_a_png_chart(tmp_path: Path) -> None:
    chart = tmp_path / "bench.png"
    assert main(["bench", "--backends", "locmem", "--operations", "100", "--png", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_reference_page_is_current() -> None:
    from cachekit.ops.cli_docs import render

    page = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert page.read_text() == render(), "regenerate: python -m cachekit.ops.cli_docs > docs/cli.md"
    for command in (
        "demo",
        "ping",
        "stats",
        "clear",
        "get",
        "set",
        "delete",
        "inspect",
        "ttl",
        "purge",
        "check",
        "bench",
    ):
        assert f"## cachekit {command}\n" in page.read_text()


def test_demo_on_a_busy_port_is_a_one_line_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(cachekit("demo", "--port", str(port)), 2, f"cannot listen on 127.0.0.1:{port}")
