"""``cachekit purge`` reaching Varnish: URLs, tags, a queued purge delivered by ``--retry-queued``."""

from __future__ import annotations

import time

from tests.cachekit.test_cli import cachekit
from tests.edge.conftest import Stack
from tests.edge.test_varnish import cached_in_varnish
from tests.edge.test_varnish import get


def test_cachekit_purge_reaches_our_cache_and_varnish(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/cli1")
    cached_in_varnish(stack, "/page/cli2")
    varnish = stack.varnish.address

    by_url = cachekit(
        "purge", stack.redis_url, stack.varnish_url + "/page/cli1", "--prefix", "edge", "--varnish", varnish
    )
    by_tag = cachekit(
        "purge", stack.redis_url, "--prefix", "edge", "--varnish", varnish, "--tag", "page-cli2"
    )

    assert (by_url.returncode, by_url.stdout) == (
        0,
        f"purged {stack.varnish_url}/page/cli1\n  varnish http://{varnish}: purged\n",
    ), by_url.stderr
    assert (by_tag.returncode, by_tag.stdout) == (
        0,
        f"invalidated tag page-cli2\n  varnish http://{varnish}: purged\n",
    )
    for path in ("/page/cli1", "/page/cli2"):
        after = get(stack, path)
        assert (after.headers["X-Cache"], after.text) == ("MISS", f"{path} render 2")


def test_a_hostile_tag_is_a_one_line_usage_error(stack: Stack) -> None:
    result = cachekit("purge", stack.redis_url, "--varnish", stack.varnish.address, "--tag", "a\r\nxkey: all")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "must not contain" in result.stderr


def test_retry_queued_delivers_what_waited_while_varnish_was_down(stack: Stack) -> None:
    cached_in_varnish(stack, "/page/cli3")
    varnish = stack.varnish.address
    stack.varnish.stop()
    try:
        queued = cachekit(
            "purge", stack.redis_url, "--prefix", "edge", "--varnish", varnish, "--tag", "page-cli3"
        )
        assert queued.returncode == 0, queued.stderr
        assert "unreachable, queued" in queued.stdout
    finally:
        stack.varnish.start()
    cached_in_varnish(stack, "/page/cli3")  # Varnish restarted empty: it holds the page again
    deadline = time.monotonic() + 5.0
    while True:
        retried = cachekit(
            "purge", stack.redis_url, "--prefix", "edge", "--varnish", varnish, "--retry-queued"
        )
        if "delivered 1 " in retried.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # the first backoff (at most 1 s) has not passed yet
    assert retried.returncode == 0, retried.stderr
    assert (
        retried.stdout
        == f"delivered 1 queued purge(s); 0 still waiting\n  varnish http://{varnish}: purged\n"
    )
    assert get(stack, "/page/cli3").headers["X-Cache"] == "MISS"
