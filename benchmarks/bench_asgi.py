"""ASGI sessions: AsgiSessionMiddleware against Starlette's SessionMiddleware, same app, same run.

Run from the repository root::

    python -m benchmarks.bench_asgi [--batch 200] [--number 5] [--rounds 15]

Everything runs in-process on one event loop: no server, so no ``taskset``
pinning is needed (``taskset -c 0 python -m benchmarks.bench_asgi`` steadies the
numbers on a shared machine). A request is one call of the ASGI app with an
HTTP scope, a ``receive`` and a ``send`` that keeps the response's
``Set-Cookie``; the cookie goes back with the next request, as a browser would.
Each timed unit is a batch of ``--batch`` requests in one
``run_until_complete``, so the loop's own start-up cost is spread thin.

Systems, each around the same bare ASGI app that reads ``scope["session"]``:

* ``cachekit signed-cookie``: ``AsgiSessionMiddleware`` + ``SignedCookieStore``;
* ``starlette SessionMiddleware``: Starlette's signed-cookie sessions;
* ``cachekit AsyncCacheStore locmem`` (no peer: server-side, for scale);
* ``no session middleware``: the bare app, to show what the session layer adds.

Scenarios: ``increment`` (the counter changes: both sign and send a cookie) and
``read`` (the counter is only read: Starlette re-signs and re-sends the cookie
anyway, cachekit does not). The order of the systems rotates every round; the
report gives medians per request and each system's ratio to ours. The goal
(issue 10): the signed-cookie request at least as fast as Starlette's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Coroutine
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import report
from cachekit import aio
from middleware.asgi_sessions import AsgiSessionMiddleware
from sessions.stores.aio_cache import AsyncCacheStore
from sessions.stores.cookie import SignedCookieStore

SECRET = "benchmark-secret-key-0123456789abcdef0123456789"
OURS = "cachekit signed-cookie"


def session_app(increment: bool) -> Any:
    """The bare ASGI app: reads (and maybe increments) a counter in ``scope["session"]``."""
    headers = [(b"content-type", b"text/plain")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope.get("session")
        if session is not None:
            count = session.get("n", 0)
            if increment or scope["path"] == "/login":
                session["n"] = count + 1
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


class Browser:
    """Calls an ASGI app in a loop, sending back the session cookie it was last given."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookie: bytes | None = None

    async def _receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            for name, value in message["headers"]:
                if name.lower() == b"set-cookie":
                    self.cookie = value.split(b";", 1)[0]

    def _scope(self, path: str) -> dict[str, Any]:
        headers = [(b"host", b"bench"), (b"user-agent", b"bench")]
        if self.cookie is not None:
            headers.append((b"cookie", self.cookie))
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "server": ("bench", 80),
            "client": ("127.0.0.1", 5000),
        }

    async def requests(self, count: int, path: str = "/") -> None:
        for _ in range(count):
            await self.app(self._scope(path), self._receive, self._send)


def systems(increment: bool) -> list[tuple[str, Any]]:
    from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware

    app = session_app(increment)
    return [
        (OURS, AsgiSessionMiddleware(app, SignedCookieStore([SECRET]))),
        ("starlette SessionMiddleware", StarletteSessionMiddleware(app, secret_key=SECRET)),
        (
            "cachekit AsyncCacheStore locmem",
            AsgiSessionMiddleware(app, AsyncCacheStore(aio.from_url("locmem://b"))),
        ),
        ("no session middleware", app),
    ]


def measure(
    loop: asyncio.AbstractEventLoop, scenario: str, increment: bool, batch: int, number: int, rounds: int
) -> list[Result]:
    """Median seconds per request of each system, rotating their order every round."""
    browsers = [(name, Browser(app)) for name, app in systems(increment)]

    def run(coroutine: Coroutine[Any, Any, None]) -> None:
        loop.run_until_complete(coroutine)

    def timed(browser: Browser) -> float:
        start = time.process_time()
        for _ in range(number):
            run(browser.requests(batch))
        return (time.process_time() - start) / (number * batch)

    samples: dict[str, list[float]] = {name: [] for name, _ in browsers}
    for _name, browser in browsers:
        run(browser.requests(1, "/login"))  # the session holds a counter from here on
        run(browser.requests(batch))  # warm up
    for round_no in range(rounds):
        shift = round_no % len(browsers)
        for name, browser in [*browsers[shift:], *browsers[:shift]]:
            samples[name].append(timed(browser))
    return [Result(scenario, name, statistics.median(times)) for name, times in samples.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=200, help="requests per timed batch")
    parser.add_argument("--number", type=int, default=5, help="batches per sample")
    parser.add_argument("--rounds", type=int, default=15, help="samples per system (median kept)")
    args = parser.parse_args(argv)
    loop = asyncio.new_event_loop()
    try:
        results = [
            *measure(loop, "increment", True, args.batch, args.number, args.rounds),
            *measure(loop, "read", False, args.batch, args.number, args.rounds),
        ]
    finally:
        loop.close()
    print(report(results, OURS, "ASGI session request (CPU time per request)"))
    for scenario in ("increment", "read"):
        rows = {r.system: r.seconds_per_op for r in results if r.scenario == scenario}
        bare = rows["no session middleware"]
        ours, theirs = rows[OURS], rows["starlette SessionMiddleware"]
        print(
            f"{scenario}: cachekit/starlette per request {ours / theirs:.2f}x; "
            f"added cost {(ours - bare) * 1e6:.1f}µs vs {(theirs - bare) * 1e6:.1f}µs "
            f"({(ours - bare) / (theirs - bare):.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
