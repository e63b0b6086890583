"""Composition checks: what makes a cachekit setup unsafe although every part works.

cachekit holds the rules; the middlewares (which cachekit may not import) call
them with what they know, once, when they are built, and ``cachekit check``
runs them from the command line. Three findings:

``proxy-inside-page-cache``
    A proxy-header middleware (werkzeug's ``ProxyFix``, uvicorn's
    ``ProxyHeadersMiddleware``, hypercorn's ``ProxyFixMiddleware``, Django with
    ``USE_X_FORWARDED_HOST``/``USE_X_FORWARDED_PORT``/``SECURE_PROXY_SSL_HEADER``)
    sits *inside* the page cache: the app builds links from headers a client
    sends, and the page cache stores what one client's headers produced for
    everyone. Put it outside the page cache (or use the server's own option,
    uvicorn ``--proxy-headers``, gunicorn ``--forwarded-allow-ips``).
``sessions-on-local-memory``
    Sessions live in local memory while the server runs several worker
    processes (gunicorn ``-w``, uWSGI ``processes``, uvicorn ``--workers``,
    ``WEB_CONCURRENCY``): each process has its own sessions, so users are
    logged out whenever another worker answers.
``local-memory-fallback``
    A cache is on local memory because nothing said otherwise (no ``CACHES`` and
    no ``CACHEKIT_URL``, or a ``CACHES`` entry without ``BACKEND`` whose
    ``LOCATION`` is not a URL); see :meth:`cachekit.config.CacheHandler.fallback_reason`.

For middleware authors::

    from cachekit.ops import check

    check.warn_once(check.page_cache_findings(self.app))   # a page cache, on what it wraps
    check.warn_once(check.session_findings(self.store))    # a session middleware, on its store

:func:`warn_once` logs each finding once per process (logger ``cachekit.check``,
level WARNING); it never raises, and neither do the finding functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachekit.backends.aio_locmem import AsyncLocMemBackend
from cachekit.backends.locmem import LocMemBackend
from cachekit.config import caches
from cachekit.config import configure
from cachekit.config import read_setting
from cachekit.exceptions import ConfigurationError
from cachekit.ops.common import Register

logger = logging.getLogger("cachekit.check")  # the documented name, from before the move to cachekit.ops

PROXY_INSIDE = "proxy-inside-page-cache"
SESSIONS_LOCAL = "sessions-on-local-memory"
FALLBACK = "local-memory-fallback"

#: Proxy-header middlewares by ``module.QualName`` (subclasses count too).
PROXY_MIDDLEWARES: Mapping[str, str] = {
    "werkzeug.middleware.proxy_fix.ProxyFix": "werkzeug ProxyFix",
    "uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware": "uvicorn ProxyHeadersMiddleware",
    "hypercorn.middleware.proxy_fix.ProxyFixMiddleware": "hypercorn ProxyFixMiddleware",
}
_DJANGO_HANDLERS = frozenset(
    {"django.core.handlers.wsgi.WSGIHandler", "django.core.handlers.asgi.ASGIHandler"}
)
_DJANGO_PROXY_SETTINGS = ("USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT", "SECURE_PROXY_SSL_HEADER")
#: Classes that are page caches (cachekit's WSGI and ASGI middlewares, by name: they live above cachekit).
PAGE_CACHES = frozenset({"CacheMiddleware", "AsgiCacheMiddleware"})
# Attributes through which one app wraps the next: middlewares' .app, Flask's
# .wsgi_app, functools.wraps' __wrapped__, a bound method's __self__.
_LINKS = ("app", "wsgi_app", "__wrapped__", "__self__", "application")
_MAX_WALK = 200


@dataclass(frozen=True)
class Finding:
    """One unsafe composition: a stable ``code`` and a message saying what to change."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


# -- walking an app chain ---------------------------------------------------------


def _names(obj: object) -> Iterator[str]:
    kind = obj if isinstance(obj, type) else type(obj)
    for klass in getattr(kind, "__mro__", (kind,)):
        yield f"{klass.__module__}.{klass.__qualname__}"


def walk(app: object) -> Iterator[object]:
    """Yield ``app`` and everything it wraps, outermost first (each object once).

    Follows ``.app``, ``.wsgi_app``, ``__wrapped__``, bound methods' ``__self__``,
    ``.application`` and Starlette's ``user_middleware`` list (whose classes are
    yielded as classes). Attribute lookups that raise are skipped.
    """
    seen: set[int] = set()
    queue = [app]
    while queue and len(seen) < _MAX_WALK:
        obj = queue.pop(0)
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float)):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, type):
            continue
        for name in _LINKS:
            try:
                queue.append(getattr(obj, name, None))
            except Exception:  # a property that fails outside a request
                continue
        try:
            stack = list(getattr(obj, "user_middleware", None) or ())
        except Exception:
            stack = []
        queue.extend(getattr(entry, "cls", None) for entry in stack)


def _proxy_in(obj: object) -> str | None:
    for name in _names(obj):
        label = PROXY_MIDDLEWARES.get(name)
        if label is not None:
            return label
        if name in _DJANGO_HANDLERS:
            return _django_proxy_settings()
    return None


def _django_proxy_settings() -> str | None:
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None)
    if settings is None or not getattr(settings, "configured", False):
        return None
    trusted = [name for name in _DJANGO_PROXY_SETTINGS if getattr(settings, name, None)]
    return f"Django with {', '.join(trusted)}" if trusted else None


def page_cache_findings(inner_app: object) -> list[Finding]:
    """Check what a page cache wraps: a proxy-header middleware there is a finding.

    :param inner_app: the app the page cache calls (its ``.app``).
    """
    findings = []
    for obj in walk(inner_app):
        label = _proxy_in(obj)
        if label is not None:
            findings.append(
                Finding(
                    PROXY_INSIDE,
                    f"{label} runs inside the page cache: pages built from one client's "
                    "X-Forwarded-* headers would be served to everyone. Apply it outside the page "
                    "cache (wrap CacheMiddleware with it) or use the server's option "
                    "(uvicorn --proxy-headers, gunicorn --forwarded-allow-ips).",
                )
            )
    return findings


def app_findings(app: object) -> list[Finding]:
    """Find every page cache in ``app``'s chain and check what each wraps."""
    findings: list[Finding] = []
    for obj in walk(app):
        if not isinstance(obj, type) and type(obj).__name__ in PAGE_CACHES:
            findings.extend(page_cache_findings(getattr(obj, "app", None)))
    return list(dict.fromkeys(findings))


# -- servers and stores -------------------------------------------------------------


def _option(args: Sequence[str], short: str, long: str) -> str | None:
    """The value of ``-w 4``, ``-w4``, ``--workers 4`` or ``--workers=4`` in ``args`` (the last one wins)."""
    found = None
    for index, arg in enumerate(args):
        if arg in (short, long) and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith(long + "="):
            found = arg[len(long) + 1 :]
        elif short and arg.startswith(short) and arg != short and not arg.startswith("--"):
            found = arg[len(short) :]
    return found


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def worker_processes(
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    modules: Mapping[str, Any] | None = None,
) -> tuple[str, int] | None:
    """Return ``(server, processes)`` when a multi-process server runs this process, else ``None``.

    uWSGI is seen by its ``uwsgi`` module (``uwsgi.numproc``); gunicorn and uvicorn
    by the command line (``-w``/``--workers``, gunicorn's ``GUNICORN_CMD_ARGS``)
    and ``WEB_CONCURRENCY``. A worker count set only in a gunicorn config file is
    not visible here: pass ``cachekit check --workers N`` for that.
    """
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    modules = sys.modules if modules is None else modules
    uwsgi = modules.get("uwsgi")
    if uwsgi is not None:
        count = getattr(uwsgi, "numproc", None)
        if isinstance(count, int) and count > 1:
            return "uWSGI", count
        return None
    first = argv[0] if argv else ""
    # ``python -m uvicorn`` runs with argv[0] = ".../uvicorn/__main__.py".
    parts = os.path.normpath(first).split(os.sep)
    program = parts[-2] if parts[-1] == "__main__.py" and len(parts) > 1 else parts[-1]
    args = list(argv[1:])
    while args and (program == "-m" or program.startswith("python")):
        program = args.pop(0)
    if "gunicorn" in program or "gunicorn.arbiter" in modules:
        args = shlex.split(environ.get("GUNICORN_CMD_ARGS", "")) + args
        server = "gunicorn"
        count = _count(_option(args, "-w", "--workers"))
    elif "uvicorn" in program:
        server = "uvicorn"
        count = _count(_option(args, "", "--workers"))
    else:
        return None
    if count is None:
        count = _count(environ.get("WEB_CONCURRENCY"))
    return (server, count) if count is not None and count > 1 else None


def _is_local_memory(backend: object) -> bool:
    return isinstance(backend, (LocMemBackend, AsyncLocMemBackend))


def _fallback_findings(cache: object) -> list[Finding]:
    alias = caches.alias_of(cache)
    reason = None if alias is None else caches.fallback_reason(alias)
    return [] if reason is None else [Finding(FALLBACK, reason)]


def cache_findings(cache: object) -> list[Finding]:
    """Check a cache a middleware stores into: did it fall back to local memory?"""
    return _fallback_findings(cache)


def session_findings(store: object, *, processes: tuple[str, int] | None = None) -> list[Finding]:
    """Check a session store: local memory under a multi-process server, a fallback cache.

    :param store: a session store; one with a ``cache`` attribute (``CacheStore``,
        ``AsyncCacheStore``) is checked, others (signed cookies) have nothing to report.
    :param processes: the server's ``(name, processes)``; default :func:`worker_processes`.
    """
    cache = getattr(store, "cache", None)
    if cache is None:
        return []
    findings = _fallback_findings(cache)
    server = worker_processes() if processes is None else processes
    if server is not None and _is_local_memory(getattr(cache, "backend", None)):
        name, count = server
        findings.append(
            Finding(
                SESSIONS_LOCAL,
                f"sessions are kept in local memory but {name} runs {count} worker processes: each "
                "has its own sessions, so users are logged out whenever another worker answers. "
                "Keep sessions in Redis or memcached (SESSION_CACHE_ALIAS) or in signed cookies.",
            )
        )
    return findings


# -- reporting ----------------------------------------------------------------------

_warned: set[Finding] = set()
_warned_guard = threading.Lock()


def warn_once(findings: Iterable[Finding]) -> list[Finding]:
    """Log each finding at WARNING the first time this process sees it; return the new ones.

    Middlewares call this from their constructors; it never raises.
    """
    new = []
    with _warned_guard:
        for finding in findings:
            if finding not in _warned:
                _warned.add(finding)
                new.append(finding)
    for finding in new:
        logger.warning("cachekit check: %s", finding)
    return new


def reset_warnings() -> None:
    """Forget which findings were logged, so they are logged again (for tests)."""
    with _warned_guard:
        _warned.clear()


# -- the command line ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``cachekit check``'s options to its sub-parser."""
    parser.add_argument(
        "--settings",
        metavar="MODULE",
        help="a settings module (dotted name, importable from the current directory) holding "
        "CACHES and SESSION_*; default: $CACHEKIT_URL or nothing configured",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="the WSGI/ASGI app as the server loads it, e.g. myproject.wsgi:app",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes the server runs (default: read from $WEB_CONCURRENCY, else 1)",
    )


def _import_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    return obj


def _load(option: str, load: Any, path: str | None) -> Any:
    if path is None:
        return None
    try:
        return load(path)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{option} {path!r} cannot be imported: {exc}", setting=option) from None


def register(command: Register) -> None:
    """Add ``cachekit check`` to the parser."""
    add_arguments(command("check", "report unsafe compositions of caches, sessions and proxies", run_cli))


def findings_for(settings: Any, app: object | None, workers: int | None) -> list[Finding]:
    """What ``cachekit check`` reports for ``settings`` (a module or mapping), ``app`` and ``workers``."""
    findings: list[Finding] = []
    for alias in list(caches):
        reason = caches.fallback_reason(alias)
        if reason is not None:
            findings.append(Finding(FALLBACK, reason))
    if workers is None:
        workers = _count(os.environ.get("WEB_CONCURRENCY"))
    engine = read_setting(settings, "SESSION_ENGINE", "cache") if settings is not None else "cache"
    if engine == "cache" and workers is not None and workers > 1:
        alias = (
            read_setting(settings, "SESSION_CACHE_ALIAS", "default") if settings is not None else "default"
        )
        if _is_local_memory(caches.for_sessions(alias).backend):
            findings.append(
                Finding(
                    SESSIONS_LOCAL,
                    f"sessions are kept in local memory (CACHES[{alias!r}]) but the server runs "
                    f"{workers} worker processes: each has its own sessions, so users are logged out "
                    "whenever another worker answers. Keep sessions in Redis or memcached.",
                )
            )
    if app is not None:
        findings.extend(app_findings(app))
    return list(dict.fromkeys(findings))


def run_cli(args: argparse.Namespace) -> int:
    """Run ``cachekit check``: print each finding; exit 1 if there are any, 0 if none."""
    sys.path.insert(0, os.getcwd())  # as gunicorn and manage.py do: the project is importable
    settings = _load("--settings", importlib.import_module, args.settings)
    configure(settings)
    app = _load("--app", _import_object, args.app)
    findings = findings_for(settings, app, args.workers)
    for finding in findings:
        print(f"warning {finding}")
    if not findings:
        print("ok: no unsafe composition found")
    return 1 if findings else 0


__all__ = [
    "FALLBACK",
    "PROXY_INSIDE",
    "SESSIONS_LOCAL",
    "Finding",
    "app_findings",
    "cache_findings",
    "page_cache_findings",
    "reset_warnings",
    "session_findings",
    "walk",
    "warn_once",
    "worker_processes",
]
