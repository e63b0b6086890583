"""End to end: Varnish (cachekit.vcl, xkey) in front of gunicorn serving tests/edge/app.py on our Redis.

Each test uses its own page names, so they share one stack. ``X-Cache`` says
whether Varnish answered from its cache; the body says which render of the
page it is, so a page served from our cache (same render) and a new render
are told apart.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.edge.conftest import Stack

requests = pytest.importorskip("requests")

TIMEOUT = 10.0


def get(stack: Stack, path: str) -> Any:
    response = requests.get(stack.varnish_url + path, timeout=TIMEOUT)
    assert response.status_code == 200, stack.log()
    return response


def admin(stack: Stack, endpoint: str, **params: str) -> Any:
    response = requests.get(stack.app_url + "/admin/" + endpoint, params=params, timeout=TIMEOUT)
    assert response.status_code == 200, stack.log()
    return response.json()


def cached_in_varnish(stack: Stack, path: str) -> str:
    """Fetch ``path`` until Varnish holds it; return the body it holds."""
    first = get(stack, path)
    second = get(stack, path)
    assert second.headers["X-Cache"] == "HIT", (first.headers, second.headers)
    assert second.text == first.text
    assert "xkey" not in second.headers  # the VCL strips the tags the app shows Varnish
    return str(second.text)


def test_a_tag_purge_from_the_app_removes_the_page_from_varnish_and_from_our_cache(stack: Stack) -> None:
    assert cached_in_varnish(stack, "/page/t1") == "/page/t1 render 1"
    assert cached_in_varnish(stack, "/page/t2") == "/page/t2 render 1"

    report = admin(stack, "purge-tag", tag="page-t1")

    assert report["delivered"] == [f"varnish http://{stack.varnish.address}"]
    assert report["queued"] == report["failed"] == []
    after = get(stack, "/page/t1")
    assert after.headers["X-Cache"] == "MISS"
    assert after.text == "/page/t1 render 2"  # not render 1: our cache dropped it too
    other = get(stack, "/page/t2")
    assert (other.headers["X-Cache"], other.text) == ("HIT", "/page/t2 render 1")


def test_a_url_purge_reaches_our_cache_and_varnish(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/u1")

    report = admin(stack, "purge-url", url=stack.varnish_url + "/page/u1")

    assert report["cached"] == 1
    assert report["delivered"] == [f"varnish http://{stack.varnish.address}"]
    after = get(stack, "/page/u1")
    assert (after.headers["X-Cache"], after.text) == ("MISS", "/page/u1 render 2")


def test_a_prefix_ban_reaches_varnish_only(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/b1")
    cached_in_varnish(stack, "/page/c1")

    report = admin(stack, "ban-prefix", prefix=stack.varnish_url + "/page/b")

    assert report["delivered"] == [f"varnish http://{stack.varnish.address}"]
    banned = get(stack, "/page/b1")
    # Gone from Varnish; our cache cannot find pages by prefix and still holds it (docs).
    assert (banned.headers["X-Cache"], banned.text) == ("MISS", "/page/b1 render 1")
    kept = get(stack, "/page/c1")
    assert kept.headers["X-Cache"] == "HIT"


def test_purge_and_ban_are_refused_to_clients_outside_the_acl(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/acl")
    for request in (
        b"PURGE /page/acl HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
        b"PURGE / HTTP/1.1\r\nHost: %s\r\nxkey: page-acl\r\nConnection: close\r\n\r\n",
        b"BAN / HTTP/1.1\r\nHost: %s\r\nCachekit-Ban: ^/\r\nConnection: close\r\n\r\n",
    ):
        # 127.0.0.2 is loopback too, but not in the purgers ACL.
        with socket.create_connection(
            ("127.0.0.1", stack.varnish.port), timeout=TIMEOUT, source_address=("127.0.0.2", 0)
        ) as sock:
            sock.sendall(request % stack.varnish.address.encode())
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 405"), answer[:200]
    assert get(stack, "/page/acl").headers["X-Cache"] == "HIT"


def test_a_purge_during_a_varnish_outage_is_queued_and_delivered_once_it_is_back(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/o1")
    target = f"varnish http://{stack.varnish.address}"
    stack.varnish.stop()
    try:
        report = admin(stack, "purge-tag", tag="page-o1")
        assert (report["queued"], report["delivered"], report["failed"]) == ([target], [], [])
        time.sleep(0.2)  # past the first backoff (0.05-0.1 s)
        again = admin(stack, "deliver")
        assert (again["queued"], again["delivered"]) == ([target], [])
        assert admin(stack, "queue") == [[f"http://{stack.varnish.address}", 1]]
    finally:
        stack.varnish.start()
    # Varnish is back, empty; it caches the page again (render 2: our cache was purged at once).
    assert cached_in_varnish(stack, "/page/o1") == "/page/o1 render 2"

    deadline = time.monotonic() + 5.0
    delivered: list[str] = []
    while not delivered and time.monotonic() < deadline:
        time.sleep(0.1)  # the backoff after two failures is at most 0.4 s
        delivered = admin(stack, "deliver")["delivered"]

    assert delivered == [target]
    assert admin(stack, "queue") == []
    after = get(stack, "/page/o1")
    assert (after.headers["X-Cache"], after.text) == ("MISS", "/page/o1 render 2")
    assert admin(stack, "deliver")["delivered"] == []  # at most once: nothing left to send
    assert get(stack, "/page/o1").headers["X-Cache"] == "HIT"


def test_a_soft_url_purge_serves_stale_from_varnish_and_revalidates(stack: Stack) -> None:
    assert cached_in_varnish(stack, "/page/su1") == "/page/su1 render 1"

    report = admin(stack, "purge-url", url=stack.varnish_url + "/page/su1", soft="1")

    assert report["delivered"] == [f"varnish http://{stack.varnish.address}"]
    stale = get(stack, "/page/su1")
    assert (stale.headers["X-Cache"], stale.text) == ("HIT", "/page/su1 render 1")  # purge.soft(): in grace
    deadline = time.monotonic() + 10.0
    body = stale.text
    while body == "/page/su1 render 1" and time.monotonic() < deadline:
        time.sleep(0.1)
        body = get(stack, "/page/su1").text
    assert body == "/page/su1 render 2"


def test_a_soft_purge_serves_stale_from_varnish_and_revalidates(stack: Stack) -> None:
    assert cached_in_varnish(stack, "/page/s1") == "/page/s1 render 1"

    report = admin(stack, "purge-tag", tag="page-s1", soft="1")

    assert report["delivered"] == [f"varnish http://{stack.varnish.address}"]
    stale = get(stack, "/page/s1")
    # Answered at once from Varnish's grace copy, while Varnish refetches in the background.
    assert (stale.headers["X-Cache"], stale.text) == ("HIT", "/page/s1 render 1")
    deadline = time.monotonic() + 10.0
    body = stale.text
    while body == "/page/s1 render 1" and time.monotonic() < deadline:
        time.sleep(0.1)
        body = get(stack, "/page/s1").text
    assert body == "/page/s1 render 2"
    assert admin(stack, "renders", path="/page/s1") == 2  # one re-render for the purge
