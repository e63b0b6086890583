"""Sessions: the cost SessionMiddleware adds to a request, against Django, Flask and Beaker.

Run from the repository root::

    python -m benchmarks.bench_sessions [--requests 500] [--rounds 21]

Everything runs in-process (no server, so no ``taskset`` pinning is needed;
pin the whole run with ``taskset -c 0`` for steadier numbers), and time is
this process's CPU time, so other work on a shared machine does not count.
Each request reads and increments a counter in the session, and the cookie
from each response is sent with the next, as a browser would. Each app builds
a fresh header list per response (Beaker appends its ``Set-Cookie`` to the
list it is given). Each system is measured against the same app without sessions in the same
framework, and what matters is the difference: the cost the session layer
adds per request.

* cachekit ``SessionMiddleware`` with ``CacheStore`` on locmem, and with
  ``SignedCookieStore``, around a bare WSGI app;
* Beaker ``SessionMiddleware`` (``memory`` and ``cookie``) around the same app;
* Django ``SessionMiddleware`` (``cache`` engine on locmem, ``signed_cookies``)
  against a Django handler without it;
* Flask's default signed-cookie session against a Flask view that does not use it;
* a request that only reads its (stored) session, ours and Beaker memory's;
* the counter as ``session.incr`` and with ``session.set_user`` on every request,
  against the plain write (goal: within 1.5x of its added cost).

``--redis`` (needs ``redis-server``; issue 21) prints only the Redis table: the
counter on one ``redis-server`` through ``SessionMiddleware`` (against the bare
app) and through ``CacheKitSessionInterface`` in Flask, against Flask-Session's
Redis interface (both against the same Flask app without a session), with the
commands each request costs the server (``INFO commandstats``). The Flask case
also runs as a logged-in user's permanent session (``session.permanent`` and
``set_user``), whose expiry slides on every request as Flask-Session's does.
Each side's floor is printed too: its two commands sent in a loop by a plain
redis-py client, with nothing else running (so with warm caches: inside a
request the same client code costs more); and ours as the Redis backend sends
them for a plain client (each packed by hiredis and sent on a pooled connection,
without redis-py's command layer).

The acceptance goal: ours at most half the cost of the cheapest peer of the
same kind (Beaker memory for server-side stores, Beaker cookie for cookies).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import types
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

import cachekit
from benchmarks._harness import Result
from middleware.sessions import SessionMiddleware
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

SECRET = "benchmark-secret-key-0123456789abcdef0123456789"


def _environ(path: str, cookie: str | None) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    return environ


def browser(app: WSGIApplication, path: str) -> Callable[[], None]:
    """Return a function that sends one request to ``app``, keeping cookies between calls."""
    jar: dict[str, str] = {}
    captured: list[list[tuple[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured.append(headers)
        return None

    def request() -> None:
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items()) if jar else None
        captured.clear()
        body = app(_environ(path, cookie), start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        for name, value in captured[-1]:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                jar[key.strip()] = val.strip('"')

    return request


# -- the bare app and its session twins ---------------------------------------------------


def plain_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"0"]


def cachekit_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    session = environ["cachekit.session"]
    count = session.get("count", 0) + 1
    session["count"] = count
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def cachekit_reader(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Writes the counter on the first request only; every later request only reads it."""
    session = environ["cachekit.session"]
    count = session.get("count")
    if count is None:
        session["count"] = count = 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def cachekit_incr(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The counter as a merge operation: the store adds 1 to the stored value at save."""
    count = environ["cachekit.session"].incr("count")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def cachekit_set_user(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The counter, and the owner recorded on every request (the store updates its index)."""
    session = environ["cachekit.session"]
    count = session.get("count", 0) + 1
    session["count"] = count
    session.set_user("user-1", user_agent="bench")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def beaker_reader(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    session = environ["beaker.session"]
    count = session.get("count")
    if count is None:
        session["count"] = count = 1
        session.save()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def beaker_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    session = environ["beaker.session"]
    count = session.get("count", 0) + 1
    session["count"] = count
    session.save()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(count).encode()]


def beaker(kind: str, inner: WSGIApplication = beaker_app) -> WSGIApplication:
    from beaker.middleware import SessionMiddleware as BeakerSessionMiddleware

    options: dict[str, Any] = {"session.type": kind, "session.key": "session"}
    if kind == "cookie":
        options["session.validate_key"] = SECRET
    app: WSGIApplication = BeakerSessionMiddleware(inner, options)
    return app


# -- Django --------------------------------------------------------------------------------


def django_apps() -> dict[str, WSGIApplication]:
    """Return Django handlers without sessions, with the cache engine and with signed cookies."""
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpRequest
    from django.http import HttpResponse
    from django.test.utils import override_settings
    from django.urls import path

    def session_view(request: HttpRequest) -> HttpResponse:
        count = request.session.get("count", 0) + 1
        request.session["count"] = count
        return HttpResponse(str(count), content_type="text/plain")

    def plain_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("0", content_type="text/plain")

    urls = types.ModuleType("benchmarks._session_urls")
    urls.urlpatterns = [path("s", session_view), path("b", plain_view)]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls
    if not settings.configured:
        settings.configure(
            SECRET_KEY=SECRET,
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=urls.__name__,
            INSTALLED_APPS=["django.contrib.sessions"],
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            MIDDLEWARE=[],
            USE_TZ=True,
        )
        django.setup()
    apps: dict[str, WSGIApplication] = {}
    session_mw = ["django.contrib.sessions.middleware.SessionMiddleware"]
    for name, middleware, engine in (
        ("plain", [], "django.contrib.sessions.backends.cache"),
        ("cache", session_mw, "django.contrib.sessions.backends.cache"),
        ("signed_cookies", session_mw, "django.contrib.sessions.backends.signed_cookies"),
    ):
        # The middleware list and the session engine are read when the handler is built.
        with override_settings(MIDDLEWARE=middleware, SESSION_ENGINE=engine):
            apps[name] = WSGIHandler()
    return apps


# -- Flask ---------------------------------------------------------------------------------


def flask_app() -> WSGIApplication:
    from flask import Flask
    from flask import session

    app = Flask("bench_sessions")
    app.secret_key = SECRET

    @app.route("/s")
    def with_session() -> str:
        count = session.get("count", 0) + 1
        session["count"] = count
        return str(count)

    @app.route("/b")
    def without_session() -> str:
        return "0"

    wsgi: WSGIApplication = app.wsgi_app
    return wsgi


# -- run -----------------------------------------------------------------------------------

#: (system, its baseline, kind) — kind groups systems for the acceptance ratio.
SYSTEMS = [
    ("cachekit CacheStore(locmem)", "bare WSGI", "server"),
    ("cachekit SignedCookieStore", "bare WSGI", "cookie"),
    ("beaker memory", "bare WSGI", "server"),
    ("beaker cookie", "bare WSGI", "cookie"),
    ("django cache(locmem)", "django, no sessions", "server"),
    ("django signed_cookies", "django, no sessions", "cookie"),
    ("flask cookie session", "flask, no session", "cookie"),
    ("cachekit CacheStore read-only", "bare WSGI", "read"),
    ("cachekit CacheStore incr", "bare WSGI", "ops"),
    ("cachekit CacheStore set_user", "bare WSGI", "ops"),
    ("beaker memory read-only", "bare WSGI", "read"),
]


def build() -> list[tuple[str, Callable[[], None]]]:
    django = django_apps()
    flask = flask_app()
    return [
        ("bare WSGI", browser(plain_app, "/")),
        (
            "cachekit CacheStore(locmem)",
            browser(
                SessionMiddleware(cachekit_app, CacheStore(cachekit.from_url("locmem://bench-sessions"))), "/"
            ),
        ),
        (
            "cachekit SignedCookieStore",
            browser(SessionMiddleware(cachekit_app, SignedCookieStore(SECRET)), "/"),
        ),
        ("beaker memory", browser(beaker("memory"), "/")),
        ("beaker cookie", browser(beaker("cookie"), "/")),
        ("django, no sessions", browser(django["plain"], "/b")),
        ("django cache(locmem)", browser(django["cache"], "/s")),
        ("django signed_cookies", browser(django["signed_cookies"], "/s")),
        ("flask, no session", browser(flask, "/b")),
        ("flask cookie session", browser(flask, "/s")),
        (
            "cachekit CacheStore read-only",
            browser(
                SessionMiddleware(
                    cachekit_reader, CacheStore(cachekit.from_url("locmem://bench-sessions-ro"))
                ),
                "/",
            ),
        ),
        ("beaker memory read-only", browser(beaker("memory", beaker_reader), "/")),
        (
            "cachekit CacheStore incr",
            browser(
                SessionMiddleware(cachekit_incr, CacheStore(cachekit.from_url("locmem://bench-incr"))), "/"
            ),
        ),
        (
            "cachekit CacheStore set_user",
            browser(
                SessionMiddleware(cachekit_set_user, CacheStore(cachekit.from_url("locmem://bench-user"))),
                "/",
            ),
        ),
    ]


def summarize(results: list[Result]) -> str:
    per_request = {r.system: r.seconds_per_op for r in results}
    lines = [
        "## Session middleware: cost added per request over the same app without sessions",
        "",
        f"{'system':<30} {'median/request':>15} {'baseline':>10} {'added cost':>11}",
    ]
    added: dict[str, float] = {}
    for system, baseline, _kind in SYSTEMS:
        added[system] = per_request[system] - per_request[baseline]
    for name, seconds in per_request.items():
        base = next((b for s, b, _ in SYSTEMS if s == name), None)
        extra = f"{added[name] * 1e6:>9.1f}µs" if base else f"{'-':>11}"
        lines.append(f"{name:<30} {seconds * 1e6:>13.1f}µs {base or '':>10.10} {extra}")
    lines += [
        "",
        "Ratio of added cost, ours / peer (lower is better; goal <= 0.5 vs beaker of the same kind):",
    ]
    for ours, kind in (("cachekit CacheStore(locmem)", "server"), ("cachekit SignedCookieStore", "cookie")):
        for peer, _base, peer_kind in SYSTEMS:
            if peer_kind == kind and not peer.startswith("cachekit"):
                ratio = added[ours] / added[peer] if added[peer] > 0 else float("nan")
                lines.append(f"  {ours:<28} / {peer:<24} {ratio:6.2f}")
    ours, peer = "cachekit CacheStore read-only", "beaker memory read-only"
    ratio = added[ours] / added[peer] if added[peer] > 0 else float("nan")
    lines += ["", "A request that only reads its session, ours / beaker memory:", f"  {ratio:6.2f}"]
    lines += ["", "Merge operations and owners, added cost / a plain write (goal <= 1.5):"]
    plain = added["cachekit CacheStore(locmem)"]
    for ours in ("cachekit CacheStore incr", "cachekit CacheStore set_user"):
        ratio = added[ours] / plain if plain > 0 else float("nan")
        lines.append(f"  {ours:<28} {ratio:6.2f}")
    return "\n".join(lines)


def cpu_per_op(operation: Callable[[], None], number: int) -> float:
    """Run ``operation`` ``number`` times; return CPU seconds of this process per call."""
    start = time.process_time()
    for _ in range(number):
        operation()
    return (time.process_time() - start) / number


def measure_cpu(systems: list[tuple[str, Callable[[], None]]], number: int, rounds: int) -> list[Result]:
    """Like :func:`benchmarks._harness.measure`, but in process CPU time.

    The machine is shared: wall time counts the moments another process holds
    the core, CPU time of this process does not.
    """
    samples: dict[str, list[float]] = {name: [] for name, _ in systems}
    for _name, operation in systems:
        cpu_per_op(operation, max(number // 10, 1))
    for round_no in range(rounds):
        shift = round_no % len(systems)
        for name, operation in [*systems[shift:], *systems[:shift]]:
            samples[name].append(cpu_per_op(operation, number))
    return [Result("session counter", name, statistics.median(times)) for name, times in samples.items()]


# -- on Redis (issue 21) ---------------------------------------------------------------------


def redis_systems(url: str) -> list[tuple[str, Callable[[], None]]]:
    """The counter on one Redis: ours (middleware, and Flask's interface) against Flask-Session."""
    import redis
    from flask import Flask
    from flask import session
    from flask_session import Session as FlaskSession

    from sessions.contrib.flask import CacheKitSessionInterface

    def counter() -> str:
        count = session.get("count", 0) + 1
        session["count"] = count
        return str(count)

    plain = Flask("bench-plain")
    plain.add_url_rule("/s", "s", lambda: "0")
    ours = Flask("bench-cachekit")
    ours.secret_key = SECRET
    ours.session_interface = CacheKitSessionInterface(CacheStore(cachekit.from_url(url, key_prefix="ck")))
    ours.add_url_rule("/s", "s", counter)

    def owned_counter() -> str:
        # A logged-in user's permanent session: its expiry slides on every request.
        session.permanent = True
        session.set_user("user-1", user_agent="bench")  # writes nothing once recorded
        return counter()

    owned = Flask("bench-cachekit-owned")
    owned.secret_key = SECRET
    owned.session_interface = CacheKitSessionInterface(
        CacheStore(cachekit.from_url(url, key_prefix="ck-owned"))
    )
    owned.add_url_rule("/s", "s", owned_counter)
    peer = Flask("bench-flask-session")
    peer.secret_key = SECRET
    peer.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(url))
    FlaskSession(peer)
    peer.add_url_rule("/s", "s", counter)
    store = CacheStore(cachekit.from_url(url, key_prefix="mw"))
    return [
        ("bare WSGI", browser(plain_app, "/")),
        ("cachekit SessionMiddleware", browser(SessionMiddleware(cachekit_app, store), "/")),
        ("flask, no session", browser(plain.wsgi_app, "/s")),
        ("cachekit Flask interface", browser(ours.wsgi_app, "/s")),
        ("cachekit Flask, set_user", browser(owned.wsgi_app, "/s")),
        ("flask-session (Redis)", browser(peer.wsgi_app, "/s")),
        *floors(redis.Redis.from_url(url)),
    ]


#: The record a floor writes: about the size of the counter's session record.
_FLOOR_RECORD = b'{"d":{"count":1},"c":1800000000.123,"a":1800000000.123,"x":0.0}'


def floors(client: Any) -> list[tuple[str, Callable[[], None]]]:
    """Each session layer's two round trips alone, on a plain redis-py client: no framework, no session.

    Flask-Session sends ``GET`` then ``SET ... EX``; our stores send ``GET`` then the
    compare-and-set script (``EVALSHA`` with the old and the new record).
    """
    from hiredis import pack_command

    cas = client.register_script(
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
        "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1"
    )
    client.set("floor", _FLOOR_RECORD)

    def get_set() -> None:
        client.get("floor")
        client.set("floor", _FLOOR_RECORD, ex=2678400)

    def get_evalsha() -> None:
        token = client.get("floor")
        client.evalsha(cas.sha, 1, "floor", token, _FLOOR_RECORD, 1209600000)

    pool = client.connection_pool

    def command(*args: Any) -> Any:
        connection = pool.get_connection()
        try:
            connection.send_packed_command([pack_command(args)])
            return connection.read_response()
        finally:
            pool.release(connection)

    def pooled_get_evalsha() -> None:
        token = command("GET", "floor")
        command("EVALSHA", cas.sha, 1, "floor", token, _FLOOR_RECORD, 1209600000)

    cas(keys=["floor"], args=[_FLOOR_RECORD, _FLOOR_RECORD, 1209600000])  # SCRIPT LOAD, once
    return [
        ("floor: redis-py GET + SET", get_set),
        ("floor: redis-py GET + EVALSHA", get_evalsha),
        (POOLED_FLOOR, pooled_get_evalsha),
    ]


#: Our stores' two commands as the Redis backend sends them for a plain client: each packed by
#: hiredis and sent on a pooled connection, without redis-py's command layer.
POOLED_FLOOR = "floor: pooled GET + EVALSHA"


def commands_per_request(
    url: str, systems: list[tuple[str, Callable[[], None]]], number: int = 100
) -> dict[str, str]:
    """Per system, the commands the server ran per request (``INFO commandstats``).

    A script's own commands count too, under their names: ``evalsha 1, get 2, set 1``
    is one ``GET``, then one script that ran a ``GET`` and a ``SET``: two round trips.
    """
    import redis

    raw = redis.Redis.from_url(url)
    found: dict[str, str] = {}
    try:
        for name, operation in systems:
            raw.config_resetstat()
            for _ in range(number):
                operation()
            calls = {
                key.removeprefix("cmdstat_"): int(value["calls"])
                for key, value in raw.info("commandstats").items()
            }
            calls.pop("config|resetstat", None)
            calls.pop("info", None)
            found[name] = (
                ", ".join(f"{key} {count / number:g}" for key, count in sorted(calls.items())) or "-"
            )
    finally:
        raw.close()
    return found


def redis_report(requests: int, rounds: int) -> str:
    """Added cost per request on Redis, ours against Flask-Session (goal: <= 1.0)."""
    import shutil

    if shutil.which("redis-server") is None:
        return "sessions on Redis: skipped, redis-server is not installed"
    from tests import servers

    server = servers.start_redis()
    try:
        url = f"redis://{server.address}/0"
        systems = redis_systems(url)
        per_request = {r.system: r.seconds_per_op for r in measure_cpu(systems, requests, rounds)}
        commands = commands_per_request(url, systems)
    finally:
        server.stop()
    added = {
        "cachekit SessionMiddleware": per_request["cachekit SessionMiddleware"] - per_request["bare WSGI"],
        "cachekit Flask interface": per_request["cachekit Flask interface"]
        - per_request["flask, no session"],
        "cachekit Flask, set_user": per_request["cachekit Flask, set_user"]
        - per_request["flask, no session"],
        "flask-session (Redis)": per_request["flask-session (Redis)"] - per_request["flask, no session"],
    }
    for floor in ("floor: redis-py GET + SET", "floor: redis-py GET + EVALSHA", POOLED_FLOOR):
        added[floor] = per_request[floor]
    lines = [
        "## Sessions on Redis: cost added per request (process CPU time, medians)",
        "",
        f"{'system':<30} {'added cost':>11}  commands per request (INFO commandstats)",
    ]
    for name, seconds in added.items():
        lines.append(f"{name:<30} {seconds * 1e6:>9.1f}µs  {commands[name]}")
    peer = added["flask-session (Redis)"]
    lines.append("")
    for name in ("cachekit SessionMiddleware", "cachekit Flask interface", "cachekit Flask, set_user"):
        lines.append(f"{name} / flask-session = {added[name] / peer:.2f} (goal <= 1.0)")
    ours_floor, peer_floor = added["floor: redis-py GET + EVALSHA"], added["floor: redis-py GET + SET"]
    lines += ["", "Added cost minus the floor of the same two commands (redis-py alone, in a loop):"]
    for name, its_floor in (
        ("cachekit SessionMiddleware", ours_floor),
        ("cachekit Flask interface", ours_floor),
        ("cachekit Flask, set_user", ours_floor),
        ("flask-session (Redis)", peer_floor),
    ):
        lines.append(f"  {name:<28} {(added[name] - its_floor) * 1e6:>7.1f}µs")
    lines += [
        "",
        "Ours minus the floor of its two commands as the backend sends them (pooled, hiredis-packed):",
    ]
    for name in ("cachekit SessionMiddleware", "cachekit Flask interface", "cachekit Flask, set_user"):
        lines.append(f"  {name:<28} {(added[name] - added[POOLED_FLOOR]) * 1e6:>7.1f}µs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=500, help="requests per system per round")
    parser.add_argument("--rounds", type=int, default=21, help="rounds (system order rotates each round)")
    parser.add_argument("--redis", action="store_true", help="only the Redis table (needs redis-server)")
    args = parser.parse_args(argv)
    if args.redis:
        print(redis_report(args.requests, args.rounds))
        return
    print(summarize(measure_cpu(build(), args.requests, args.rounds)))
    print(f"\n(median of {args.rounds} rounds x {args.requests} requests, process CPU time)")


if __name__ == "__main__":
    main()
