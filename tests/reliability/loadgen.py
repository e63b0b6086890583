"""A bounded HTTP load generator, run as its own process: ``python -m tests.reliability.loadgen``.

Each client is a thread with its own session cookie that sends a fixed number
of requests one after another: ``GET /count`` (its session counter) and, every
``--page-every``-th request, ``GET /page/<n>`` (a cached page). With
``--interval`` a client starts its k-th request no earlier than ``k *
interval`` seconds after the start (an open-loop pace, so a run spans a known
time even while requests fail fast). Every request is recorded as a JSON
line on stdout::

    {"client": 3, "kind": "count", "start": 1717.1, "end": 1717.2, "status": 200,
     "body": "17", "retry_after": null, "error": null}

``start``/``end`` are Unix times, comparable with the test process's clock.
A connection error is recorded with ``status`` 0 and the error text. Each
client ends with one line giving its last cookie: ``{"client": 3, "final_cookie": "..."}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 10.0


class Client:
    """One simulated browser: a cookie jar of one cookie and a request loop."""

    def __init__(self, number: int, host: str, port: int, cookie_name: str) -> None:
        self.number = number
        self.host = host
        self.port = port
        self.cookie_name = cookie_name
        self.cookie: str | None = None

    def request(self, kind: str, path: str) -> dict[str, Any]:
        record: dict[str, Any] = {"client": self.number, "kind": kind, "start": time.time()}
        headers = {"Cookie": f"{self.cookie_name}={self.cookie}"} if self.cookie else {}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
            record.update(status=response.status, body=body, error=None)
            record["retry_after"] = response.getheader("Retry-After")
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                if name.strip() == self.cookie_name:
                    self.cookie = rest.split(";", 1)[0] or None
        except (OSError, http.client.HTTPException) as exc:
            record.update(status=0, body=None, retry_after=None, error=repr(exc))
        finally:
            connection.close()
        record["end"] = time.time()
        return record


def run(
    url: str, clients: int, requests: int, page_every: int, pages: int, interval: float, cookie_name: str
) -> None:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise SystemExit(f"expected a URL with a host and a port, got {url!r}")
    lock = threading.Lock()
    start = time.monotonic()

    def work(number: int) -> None:
        client = Client(number, parts.hostname or "", parts.port or 80, cookie_name)
        for k in range(requests):
            if interval:
                pause = start + k * interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            if page_every and k % page_every == page_every - 1:
                record = client.request("page", f"/page/{(number + k) % pages}")
            else:
                record = client.request("count", "/count")
            line = json.dumps(record)
            with lock:
                sys.stdout.write(line + "\n")
        with lock:
            sys.stdout.write(json.dumps({"client": number, "final_cookie": client.cookie}) + "\n")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument("--page-every", type=int, default=3, help="every n-th request is a page (0: none)")
    parser.add_argument("--pages", type=int, default=20, help="distinct cached pages")
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between a client's request starts"
    )
    parser.add_argument("--cookie-name", default="session")
    args = parser.parse_args(argv)
    run(args.url, args.clients, args.requests, args.page_every, args.pages, args.interval, args.cookie_name)


if __name__ == "__main__":
    main()
