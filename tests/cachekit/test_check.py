"""The composition check: each finding through WSGI and ASGI, the once-per-process warning, the CLI.

``cachekit check`` runs through the installed console script, as a user runs it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from cachekit import aio
from cachekit import check
from cachekit.config import ENV_VAR
from cachekit.config import caches
from middleware.asgi_cache import AsgiCacheMiddleware
from middleware.asgi_sessions import AsgiSessionMiddleware
from middleware.cache import CacheMiddleware
from middleware.sessions import SessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cookie import SignedCookieStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("cachekit")
GUNICORN_4 = ["/venv/bin/gunicorn", "-w", "4", "app:app"]


def wsgi_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def asgi_page(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    caches.configure(None)
    check.reset_warnings()
    yield
    check.reset_warnings()
    caches.configure(None)


def codes(findings: Iterable[check.Finding]) -> list[str]:
    return [finding.code for finding in findings]


# -- proxy-header middleware inside the page cache -------------------------------


def test_proxyfix_inside_the_wsgi_page_cache() -> None:
    inside = CacheMiddleware(ProxyFix(wsgi_page, x_host=1))
    assert codes(check.page_cache_findings(inside.app)) == [check.PROXY_INSIDE]
    assert codes(check.app_findings(SessionMiddleware(inside))) == [check.PROXY_INSIDE]
    assert "werkzeug ProxyFix" in check.app_findings(inside)[0].message


def test_proxyfix_outside_the_wsgi_page_cache_is_fine() -> None:
    assert check.app_findings(ProxyFix(CacheMiddleware(wsgi_page), x_host=1)) == []
    assert check.app_findings(CacheMiddleware(wsgi_page)) == []


def test_proxyfix_on_a_flask_wsgi_app_inside_the_page_cache() -> None:
    flask_app = Flask("check")
    flask_app.wsgi_app = ProxyFix(flask_app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    assert codes(check.app_findings(CacheMiddleware(flask_app))) == [check.PROXY_INSIDE]
    plain = Flask("check-plain")
    assert check.app_findings(CacheMiddleware(plain)) == []


def test_uvicorn_proxy_headers_inside_the_asgi_page_cache() -> None:
    cache = aio.from_url("locmem://check-asgi")
    inside = AsgiCacheMiddleware(ProxyHeadersMiddleware(asgi_page, trusted_hosts="*"), cache=cache)  # type: ignore[arg-type]
    assert codes(check.app_findings(inside)) == [check.PROXY_INSIDE]
    outside = ProxyHeadersMiddleware(AsgiCacheMiddleware(asgi_page, cache=cache), trusted_hosts="*")  # type: ignore[arg-type]
    assert check.app_findings(outside) == []


def test_starlette_middleware_stack_inside_the_asgi_page_cache() -> None:
    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts="*")  # type: ignore[arg-type]
    cache = aio.from_url("locmem://check-starlette")
    assert codes(check.app_findings(AsgiCacheMiddleware(app, cache=cache))) == [check.PROXY_INSIDE]


def test_django_trusting_forwarded_headers_inside_the_page_cache() -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from tests.django_settings import configure_django

    configure_django()
    handler = WSGIHandler()
    assert check.app_findings(CacheMiddleware(handler)) == []
    with override_settings(USE_X_FORWARDED_HOST=True):
        findings = check.app_findings(CacheMiddleware(handler))
    assert codes(findings) == [check.PROXY_INSIDE]
    assert "Django with USE_X_FORWARDED_HOST" in findings[0].message


# -- multi-process servers with sessions on local memory -------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(["/v/bin/gunicorn", "-w", "4", "app:app"], {}, ("gunicorn", 4), id="gunicorn-w"),
        pytest.param(["/v/bin/gunicorn", "-w4", "app:app"], {}, ("gunicorn", 4), id="gunicorn-w4"),
        pytest.param(["gunicorn", "--workers=3", "app:app"], {}, ("gunicorn", 3), id="gunicorn-workers="),
        pytest.param(
            ["gunicorn", "app:app"], {"GUNICORN_CMD_ARGS": "--workers 2"}, ("gunicorn", 2), id="cmd-args"
        ),
        pytest.param(
            ["gunicorn", "app:app"], {"WEB_CONCURRENCY": "5"}, ("gunicorn", 5), id="web-concurrency"
        ),
        pytest.param(["gunicorn", "app:app"], {}, None, id="gunicorn-one-worker"),
        pytest.param(
            ["python", "-m", "uvicorn", "app:app", "--workers", "2"], {}, ("uvicorn", 2), id="uvicorn"
        ),
        pytest.param(
            ["/v/lib/uvicorn/__main__.py", "app:app", "--workers", "2"], {}, ("uvicorn", 2), id="uvicorn-m"
        ),
        pytest.param(["uvicorn", "app:app"], {}, None, id="uvicorn-one"),
        pytest.param(["flask", "run"], {"WEB_CONCURRENCY": "8"}, None, id="not-a-server"),
    ],
)
def test_worker_processes(argv: list[str], environ: dict[str, str], expected: tuple[str, int] | None) -> None:
    assert check.worker_processes(environ, argv, {}) == expected


def test_uwsgi_is_seen_by_its_module() -> None:
    class FakeUwsgi:
        numproc = 4

    assert check.worker_processes({}, ["uwsgi"], {"uwsgi": FakeUwsgi()}) == ("uWSGI", 4)
    FakeUwsgi.numproc = 1
    assert check.worker_processes({}, ["uwsgi"], {"uwsgi": FakeUwsgi()}) is None


def test_wsgi_session_middleware_warns_once_under_gunicorn_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", GUNICORN_4)
    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        SessionMiddleware(wsgi_page)
        SessionMiddleware(wsgi_page)
    messages = [r.getMessage() for r in caplog.records if r.name == "cachekit.check"]
    assert sum(check.SESSIONS_LOCAL in m for m in messages) == 1
    assert sum(check.FALLBACK in m for m in messages) == 1
    assert any("gunicorn runs 4 worker processes" in m for m in messages)


def test_wsgi_sessions_on_redis_or_in_cookies_are_fine(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", GUNICORN_4)
    caches.configure({"default": "redis://127.0.0.1:1/0"})  # never contacted: findings need no server
    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        SessionMiddleware(wsgi_page)
        SessionMiddleware(wsgi_page, SignedCookieStore(["k" * 32]))
    assert [r for r in caplog.records if r.name == "cachekit.check"] == []


def test_one_process_with_sessions_on_local_memory_is_only_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        SessionMiddleware(wsgi_page)
    messages = [r.getMessage() for r in caplog.records if r.name == "cachekit.check"]
    assert len(messages) == 1
    assert check.FALLBACK in messages[0]


def test_asgi_session_middleware_warns_under_uvicorn_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["uvicorn", "app:app", "--workers", "3"])
    store = AsyncCacheStore(aio.from_url("locmem://check-asgi-sessions"))
    with caplog.at_level(logging.WARNING, logger="cachekit.check"):
        AsgiSessionMiddleware(asgi_page, store)
    messages = [r.getMessage() for r in caplog.records if r.name == "cachekit.check"]
    assert len(messages) == 1
    assert check.SESSIONS_LOCAL in messages[0]
    assert "uvicorn runs 3 worker processes" in messages[0]


# -- settings that fell back to local memory --------------------------------------


@pytest.mark.parametrize(
    ("settings", "env", "fell_back"),
    [
        pytest.param(None, None, True, id="nothing-configured"),
        pytest.param(None, "redis://127.0.0.1:6379/0", False, id="env-url"),
        pytest.param({"default": {"LOCATION": "10.0.0.5:6379"}}, None, True, id="host-port-location"),
        pytest.param({"default": {"LOCATION": "redis://10.0.0.5:6379/0"}}, None, False, id="url-location"),
        pytest.param({"default": {"BACKEND": "locmem"}}, None, False, id="locmem-on-purpose"),
        pytest.param({"default": "memcached://10.0.0.5:11211"}, None, False, id="url-string"),
    ],
)
def test_fallback_reason(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any] | None, env: str | None, fell_back: bool
) -> None:
    if env is not None:
        monkeypatch.setenv(ENV_VAR, env)
    caches.configure(settings)
    assert (caches.fallback_reason("default") is not None) is fell_back
    found = codes(check.cache_findings(caches["default"]))
    assert found == ([check.FALLBACK] if fell_back else [])


# -- the command line -------------------------------------------------------------


def cachekit_check(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT} (pip install -e .)"
    environ = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "WEB_CONCURRENCY")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [str(SCRIPT), "check", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        env={**environ, **env},
    )


def test_cli_reports_every_finding() -> None:
    result = cachekit_check(
        "--settings",
        "tests.cachekit.check_settings",
        "--app",
        "tests.cachekit.check_settings:unsafe_app",
        "--workers",
        "3",
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert f"[{check.FALLBACK}]" in lines[0]
    assert "10.0.0.5:6379" in lines[0]
    assert f"[{check.SESSIONS_LOCAL}]" in lines[1]
    assert f"[{check.PROXY_INSIDE}]" in lines[2]


def test_cli_clean_composition() -> None:
    result = cachekit_check(
        "--app", "tests.cachekit.check_settings:safe_app", CACHEKIT_URL="redis://127.0.0.1:1/0"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok: no unsafe composition found"


def test_cli_workers_from_web_concurrency() -> None:
    result = cachekit_check(WEB_CONCURRENCY="2")
    assert result.returncode == 1
    assert f"[{check.SESSIONS_LOCAL}]" in result.stdout


def test_cli_unimportable_settings_is_a_usage_error() -> None:
    result = cachekit_check("--settings", "tests.cachekit.no_such_settings")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--settings" in result.stderr
