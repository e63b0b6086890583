"""The demo app behind ``cachekit demo``: cachekit's page cache and sessions, shown live.

It runs on the local-memory default with no server, or on any cache URL::

    cachekit demo --url redis://127.0.0.1:6379/0

``/`` is the showcase: a live chart of hits, misses and latency, buttons that
fire concurrent requests at a cold page (one render), show
stale-while-revalidate, purge a page and invalidate a tag, and the session
panel (log in, log out, the session id cycled on login). ``/cached``, ``/slow``
and ``/swr`` are the cached pages the buttons use; ``/stats`` and
``/stats.json`` the counters. Everything, styles and script included, is served
by the demo itself (``middleware/demo_static/``).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from importlib.resources import files
from string import Template
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

from cachekit.cache import Cache
from cachekit.config import DEFAULT_URL
from cachekit.config import ENV_VAR
from cachekit.config import from_url
from cachekit.config import redact_url
from cachekit.views import cache_page
from cachekit.views import purge
from middleware.sessions import SessionMiddleware
from sessions.environ import get_session
from sessions.session import Session
from sessions.stores import CacheStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

#: Lifetimes of the demo's cached pages, in seconds.
CACHED_FOR, SLOW_FOR, SWR_FRESH_FOR, SWR_STALE_FOR = 30, 300, 2, 60
#: How long the deliberately slow pages take to render.
RENDER_SECONDS = 0.3
TAG = "demo"
_MARKER = b"<!--cache-status-->"
_STATIC = {
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
_DOCS = (
    ("quickstart.md", "Quickstart"),
    ("views.md", "Per-view caching"),
    ("sessions.md", "Sessions"),
    ("cli.md", "Command line"),
    ("api.md", "API reference"),
)


def _static(name: str) -> bytes:
    return files("middleware").joinpath("demo_static", name).read_bytes()


def _page(title: str, body: str, *, script: bool = False) -> bytes:
    heading = "cachekit demo" if title == "cachekit demo" else f"{title} · cachekit demo"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(heading)}</title>"
        "<link rel='icon' href='/static/favicon.svg' type='image/svg+xml'>"
        "<link rel='stylesheet' href='/static/style.css'>"
        + ("<script src='/static/app.js' defer></script>" if script else "")
        + "</head><body><header><img src='/static/favicon.svg' alt=''><div><h1>cachekit</h1>"
        "<p>One cache API over local memory, Redis and memcached; a page cache that follows HTTP; "
        "sessions that never lose an update.</p></div>"
        "<nav><a href='/'>Showcase</a><a href='/cached'>Cached page</a><a href='/stats'>Stats</a></nav>"
        f"</header>{body}<footer>Docs in the repository's <code>docs/</code>: "
        + " · ".join(f"<code>{name}</code> ({html.escape(label)})" for name, label in _DOCS)
        + "</footer></body></html>"
    ).encode()


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str = "text/html; charset=utf-8"
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response: StartResponse, data: Any) -> list[bytes]:
    return _respond(start_response, "200 OK", json.dumps(data).encode(), "application/json")


def _redirect(start_response: StartResponse, location: str) -> list[bytes]:
    start_response("303 See Other", [("Location", location), ("Content-Length", "0")])
    return []


def fingerprint(session: Session) -> str:
    """A short, one-way tag of the session id: shows it change on login without showing the id."""
    key = session.session_key
    return hashlib.sha256(key.encode()).hexdigest()[:10] if key else "(not stored yet)"


_SHOWCASE = Template(_static("showcase.html").decode())


class DemoApp:
    """The demo's WSGI app; wrap it in :class:`SessionMiddleware` (see :func:`build_app`)."""

    def __init__(self, page_cache: Cache, store: CacheStore, url: str = DEFAULT_URL) -> None:
        self.page_cache = page_cache
        self.store = store
        self.session_cache = store.records
        self.url = url
        self._lock = threading.Lock()
        #: Responses of the cached pages, by how they were served: hit, stale or miss.
        self.served: Counter[str] = Counter()
        self.total_ms = 0.0
        #: Renders of the slow page per ``run`` query value (the stampede button).
        self.renders: Counter[str] = Counter()
        self.render_count = 0
        self.cached_page = cache_page(CACHED_FOR, cache=page_cache, tags=[TAG])(self._render_cached)
        self.slow_page = cache_page(SLOW_FOR, cache=page_cache)(self._render_slow)
        self.swr_page = cache_page(
            SWR_FRESH_FOR, cache=page_cache, stale_while_revalidate=SWR_STALE_FOR, tags=[TAG]
        )(self._render_slow)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        post = environ.get("REQUEST_METHOD", "GET") == "POST"
        if path in _STATIC:
            name, content_type = _STATIC[path]
            return _respond(start_response, "200 OK", _static(name), content_type)
        routes = {
            ("/", False): self.index,
            ("/login", True): self.login,
            ("/logout", True): self.logout,
            ("/api/purge", True): self.api_purge,
            ("/api/invalidate-tag", True): self.api_invalidate_tag,
            ("/api/stampede", True): self.api_stampede,
            ("/api/swr", True): self.api_swr,
        }
        handler = routes.get((path, post))
        if handler is not None:
            return handler(environ, start_response)
        if path in ("/login", "/logout"):
            return _redirect(start_response, "/#session")  # a bookmarked or typed URL: the form is on /
        pages = {"/cached": self.cached_page, "/slow": self.slow_page, "/swr": self.swr_page}
        if path in pages:
            return self.serve_cached(pages[path], environ, start_response)
        if path == "/api/renders":
            run = (parse_qs(environ.get("QUERY_STRING", "")).get("run") or [""])[0]
            return _json(start_response, {"run": run, "renders": self.renders[run]})
        if path == "/stats":
            return _respond(start_response, "200 OK", _page("Stats", self._stats_table()))
        if path == "/stats.json":
            return _json(start_response, self.stats())
        return _respond(
            start_response, "404 Not Found", _page("Not found", "<main><p>No such page.</p></main>")
        )

    # -- the showcase --------------------------------------------------------------------

    def index(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = get_session(environ)
        visits = session.get("visits", 0) + 1
        session["visits"] = visits
        return _respond(
            start_response, "200 OK", _page("cachekit demo", self._panels(session, visits), script=True)
        )

    def _session_panel(self, session: Session, visits: int) -> str:
        user = session.get("user")
        previous = session.get("previous_fingerprint")
        if user:
            account = (
                f"<p>Logged in as <strong id='user'>{html.escape(user)}</strong>.</p>"
                "<form method='post' action='/logout'><button id='logout'>Log out</button></form>"
            )
        else:
            account = (
                "<form method='post' action='/login'><label>Name <input name='name' id='name' required>"
                "</label> <button id='login'>Log in</button></form>"
            )
        cycled = (
            f"<p id='cycled'>Logging in cycled the session id: <code>{html.escape(previous)}</code> → "
            f"<code>{fingerprint(session)}</code> (same data, new id: no session fixation).</p>"
            if previous and user
            else ""
        )
        return (
            "<section id='session'><h2>Session</h2><p class='what'>A <code>CacheStore</code> session behind "
            "<code>SessionMiddleware</code>: loaded on first use, saved only when changed, an "
            "<code>HttpOnly</code>, <code>SameSite=Lax</code> cookie.</p>"
            f"<p>You have visited this page <strong id='visits'>{visits}</strong> "
            f"{'time' if visits == 1 else 'times'} in this session.</p>"
            f"<p>Session id fingerprint: <code id='fingerprint'>{fingerprint(session)}</code></p>"
            f"{cycled}{account}</section>"
        )

    def _panels(self, session: Session, visits: int) -> str:
        return _SHOWCASE.substitute(
            cached_for=CACHED_FOR,
            render_ms=f"{RENDER_SECONDS * 1000:.0f}",
            swr_fresh=SWR_FRESH_FOR,
            swr_stale=SWR_STALE_FOR,
            tag=TAG,
            session_panel=self._session_panel(session, visits),
        )

    # -- the cached pages ----------------------------------------------------------------

    def _render_cached(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._count_render()
        rendered = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        body = (
            f"<main><section class='wide'><h2>Cached page</h2><p>Rendered at <strong id='rendered'>{rendered}"
            f"</strong>.</p><p id='status'>{_MARKER.decode()}</p><p>Open it again from the menu: the time "
            f"stays the same for {CACHED_FOR} s. (The reload button asks for a fresh copy, and the cache "
            "honours that.)</p></section></main>"
        )
        return _respond(start_response, "200 OK", _page("Cached page", body))

    def _render_slow(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        run = (parse_qs(environ.get("QUERY_STRING", "")).get("run") or [""])[0]
        with self._lock:
            self.renders[run] += 1
        self._count_render()
        time.sleep(RENDER_SECONDS)  # a slow database query, say
        body = f"rendered at {time.time():.3f}\n".encode()
        return _respond(start_response, "200 OK", body, "text/plain; charset=utf-8")

    def _count_render(self) -> None:
        with self._lock:
            self.render_count += 1

    def serve_cached(
        self, page: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Serve a cached page, marking whether this response came from the cache.

        ``X-Cache`` says HIT, STALE (as old as its lifetime or older, served while another
        request regenerates it) or MISS. The marker is filled in here, outside the
        page cache, so the stored page stays the same and every response tells the
        truth about itself; the browser is told not to keep its own copy, so each
        click reaches the page cache.
        """
        started = time.perf_counter()
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = page(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        kept = {"content-length", "cache-control", "expires", "etag", "last-modified"}
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in kept]
        age = next((v for k, v in captured["headers"] if k.lower() == "age"), None)
        lifetime = SWR_FRESH_FOR if page is self.swr_page else CACHED_FOR
        verdict = "MISS" if age is None else "STALE" if int(age) >= lifetime else "HIT"
        status_text = (
            f"<span class='hit' id='cache-status'>Served from cache (age {age} s)</span>"
            if age is not None
            else "<span class='miss' id='cache-status'>Freshly rendered (cache miss)</span>"
        )
        body = body.replace(_MARKER, status_text.encode())
        headers += [("X-Cache", verdict), ("Cache-Control", "no-store"), ("Content-Length", str(len(body)))]
        start_response(captured["status"], headers)
        with self._lock:
            self.served[verdict] += 1
            self.total_ms += (time.perf_counter() - started) * 1000
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []

    # -- actions -------------------------------------------------------------------------

    def login(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = get_session(environ)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(min(length, 10_000)).decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip()[:40]
        if name:
            before = fingerprint(session)
            session.cycle_key()  # a new id on login: no session fixation
            session["user"] = name
            session["previous_fingerprint"] = before
        return _redirect(start_response, "/#session")

    def logout(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        get_session(environ).flush()  # deletes the stored session and, with it, the cookie
        body = (
            "<main><section class='wide'><h2>Logged out</h2><p id='logged-out'>You are logged out; your "
            "session is gone (stored copy deleted, cookie expired).</p><p><a href='/'>Back to the showcase"
            "</a></p></section></main>"
        )
        return _respond(start_response, "200 OK", _page("Logged out", body))

    def api_purge(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}/cached"
        return _json(start_response, {"url": url, "purged": purge(url, cache=self.page_cache)})

    def api_invalidate_tag(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.page_cache.invalidate_tags(TAG)
        return _json(start_response, {"tag": TAG, "invalidated": True})

    def burst(self, environ: WSGIEnvironment, path: str, count: int) -> list[tuple[str, float]]:
        """Send ``count`` requests for ``path`` at the same moment, from threads; return (X-Cache, ms) each.

        The burst starts here rather than in the browser: a browser queues identical
        requests behind the first (its own cache lock), which would hide the stampede.
        """
        page, _, query = path.partition("?")
        barrier = threading.Barrier(count)
        results: list[tuple[str, float]] = []

        def one() -> None:
            request: dict[str, Any] = {
                key: value for key, value in environ.items() if key.isupper() and key != "HTTP_COOKIE"
            }
            request.update(
                {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": page,
                    "QUERY_STRING": query,
                    "wsgi.input": io.BytesIO(),
                }
            )
            request.update({k: v for k, v in environ.items() if k.startswith("wsgi.") and k != "wsgi.input"})
            found: dict[str, str] = {}

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                found.update(headers)
                return lambda data: None

            barrier.wait()
            started = time.perf_counter()
            b"".join(self(request, start_response))
            with self._lock:
                results.append((found.get("X-Cache", "?"), (time.perf_counter() - started) * 1000))

        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def api_stampede(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        count = max(2, min(100, int((query.get("n") or ["20"])[0] or 20)))
        run = uuid.uuid4().hex  # a page nobody has asked for yet: cold
        results = self.burst(environ, f"/slow?run={run}", count)
        return _json(
            start_response,
            {
                "requests": count,
                "renders": self.renders[run],
                "slowest_ms": round(max(ms for _, ms in results), 1),
                "statuses": Counter(status for status, _ in results),
            },
        )

    def api_swr(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.burst(environ, "/swr", 1)  # cached (or already stale)
        time.sleep(SWR_FRESH_FOR + 0.6)  # let it go stale
        with self._lock:
            before = self.render_count
        results = self.burst(environ, "/swr", 8)
        # Every request was answered stale; the re-render runs after them, in the background.
        self.swr_page.page_cache.background.wait(10)  # type: ignore[attr-defined]
        with self._lock:
            renders = self.render_count - before
        stale = [ms for status, ms in results if status == "STALE"]
        fresh = [ms for status, ms in results if status != "STALE"]
        return _json(
            start_response,
            {
                "stale": len(stale),
                "regenerated": renders,
                "background": renders - len(fresh),
                "stale_ms": round(sum(stale) / len(stale), 1) if stale else None,
                "regenerated_ms": round(sum(fresh) / len(fresh), 1) if fresh else None,
            },
        )

    # -- counters ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The demo's counters: responses of its cached pages, renders, and the caches' own stats."""
        with self._lock:
            served = dict(self.served)
            total_ms, renders = self.total_ms, self.render_count
        hits, stale, misses = served.get("HIT", 0), served.get("STALE", 0), served.get("MISS", 0)
        answered = hits + stale + misses
        count = getattr(self.session_cache.backend, "count", None)
        return {
            "backend": redact_url(self.url),
            # One served page is one hit here; the page cache's own counters below count backend
            # lookups (a page is two: its headers, then its body).
            "pages": {
                "hits": hits,
                "stale": stale,
                "misses": misses,
                "served": answered,
                "renders": renders,
                "total_ms": round(total_ms, 3),
            },
            "hit_ratio": (hits + stale) / answered if answered else 0.0,
            "page_cache": self.page_cache.stats(),
            "sessions": self.session_cache.stats(),
            "session_count": count(self.session_cache.key_prefix + ":") if callable(count) else None,
        }

    def _stats_table(self) -> str:
        stats = self.stats()
        rows = [
            f"<tr><td>pages</td><td>{name}</td><td id='pages-{name}'>{value}</td></tr>"
            for name, value in stats["pages"].items()
        ]
        rows.append(
            f"<tr><td>pages</td><td>hit_ratio</td><td id='pages-hit_ratio'>{stats['hit_ratio']:.1%}</td></tr>"
        )
        for section in ("page_cache", "sessions"):
            for name, value in stats[section].items():
                shown = f"{value:.1%}" if name == "hit_ratio" else str(value)
                rows.append(
                    f"<tr><td>{section}</td><td>{name}</td><td id='{section}-{name}'>{shown}</td></tr>"
                )
        count = stats["session_count"]
        rows.append(
            "<tr><td>sessions</td><td>stored sessions</td>"
            f"<td id='session-count'>{count if count is not None else 'n/a for this backend'}</td></tr>"
        )
        backend = html.escape(stats["backend"])
        return (
            f"<main><section class='wide'><h2>Stats</h2><p class='what'>Cache: <code>{backend}</code>. "
            "<em>pages</em> counts responses of the demo's cached pages; <em>page_cache</em> the "
            "page cache's backend lookups (two per served page).</p><table><tr><th>cache</th>"
            "<th>counter</th><th>value</th></tr>" + "".join(rows) + "</table></section></main>"
        )


def build_app(url: str | None = None) -> WSGIApplication:
    """Return the demo WSGI app on ``url`` (default: ``$CACHEKIT_URL`` or ``locmem://``)."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    page_cache = from_url(url, key_prefix="demo-pages", name="pages")
    session_cache = from_url(url, key_prefix="demo-sessions", name="sessions", timeout=None)
    store = CacheStore(session_cache)
    app = DemoApp(page_cache, store, url)
    wrapped = SessionMiddleware(app, store)
    wrapped.demo = app  # type: ignore[attr-defined]
    return wrapped


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Logs failed requests only: the buttons send hundreds of requests."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code)[:1] in ("4", "5"):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(host: str = "127.0.0.1", port: int = 8000, url: str | None = None) -> None:
    """Serve the demo until interrupted."""
    app = build_app(url)
    with make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler) as server:
        shown = redact_url(url or os.environ.get(ENV_VAR) or DEFAULT_URL)
        print(f"cachekit demo on http://{host}:{server.server_port}/ (cache: {shown}); Ctrl-C stops it")
        sys.stdout.flush()
        server.serve_forever()
