"""The red team's findings on the edge purges (issue 18, D1-D14 but D11): each failed before its fix.

A queue's store is data anyone with access to it can write, a purger's address never
carries a credential, a purge value never leaves the path it was meant for, and a purge
our cache could not apply is never reported as "not cached".
"""

from __future__ import annotations

import json
import logging
import posixpath
import types
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.edge import AsyncPurges
from cachekit.edge import HTTPCall
from cachekit.edge import HTTPPurger
from cachekit.edge import InvalidPurgeError
from cachekit.edge import MemoryPurgeQueue
from cachekit.edge import PurgeJob
from cachekit.edge import Purges
from cachekit.edge import QueuedPurge
from cachekit.edge import RedisPurgeQueue
from cachekit.edge import VarnishPurger
from cachekit.edge import cloudflare_purger
from cachekit.edge import fastly_purger
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import ConfigurationError
from cachekit.pages.engine import LOCK_KEY
from cachekit.pages.soft import MAX_SOFT_GENERATIONS
from cachekit.pages.soft import SOFT_KEY_PREFIX
from cachekit.pages.soft import soft_invalidate_tags
from cachekit.pages.soft import soft_since
from cachekit.tags import TAG_KEY_PREFIX
from cachekit.tags import current_generations
from tests import servers
from tests.conftest import FakeClock
from tests.pages.shells import Shell
from tests.pages.shells import environ_for
from tests.recorder import Recorder
from tests.recorder import serving

TOKEN = "fastly-token-never-leaves"


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    made = (Recorder(), Recorder())
    with serving(*made):
        yield made


# D1: a planted queue item never sends the token to another host -----------------------------
def test_a_queued_item_is_only_delivered_to_a_target_its_purger_has(
    recorders: tuple[Recorder, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    api, attacker = recorders
    queue = MemoryPurgeQueue()
    purges = Purges(None, [fastly_purger("SID", TOKEN, endpoint=api.origin)], queue=queue)
    # What anyone who can write the shared Redis queue can plant: the same purger, another target.
    planted = QueuedPurge("fastly", attacker.origin, PurgeJob.urls(["http://example.com/"]))
    assert queue.put(planted, 0.0)
    with caplog.at_level(logging.ERROR, logger="cachekit.edge"):
        report = purges.deliver_queued()
    assert attacker.requests == []  # was: POST /purge/example.com/ with Fastly-Key: <token>
    assert api.requests == []
    assert report.failed == [f"fastly {attacker.origin}"]
    assert len(queue) == 0
    assert "not a target of purger fastly" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "member",
    [
        pytest.param(json.dumps(["fastly\r\nFAKE log line", "http://127.0.0.1:1", "x"]), id="crlf-in-name"),
        pytest.param(json.dumps(["fastly", "http://127.0.0.1:1/\r\nX: y", "x"]), id="crlf-in-target"),
        pytest.param(json.dumps(["fastly", "http://u:p@127.0.0.1:1", "x"]), id="userinfo-target"),
        pytest.param(
            json.dumps(["fastly", "http://127.0.0.1:1", '["url",["http://a/\\r\\n"],false]']), id="bad-job"
        ),
        pytest.param(json.dumps({"a": 1}), id="not-a-list"),
        pytest.param("[", id="not-json"),
    ],
)
def test_a_planted_member_is_refused_when_read(member: str) -> None:
    with pytest.raises(InvalidPurgeError) as caught:
        QueuedPurge.from_member(member)
    assert "\n" not in str(caught.value)  # what is logged of it stays on one line


def test_a_custom_purgers_target_that_is_no_origin_still_reads_back() -> None:
    item = QueuedPurge("custom", "primary", PurgeJob.tags(["a"]), 2, 1)
    assert QueuedPurge.from_member(item.member, 2, 1) == item


# D2: one bad member is dropped, the rest delivered ------------------------------------------
@pytest.mark.parametrize(
    ("member", "attempts"),
    [
        pytest.param('["varnish","x","not json', "0", id="not-json"),
        pytest.param(b'["varnish","\xff\xfe', "0", id="not-utf8"),
        pytest.param(None, "many", id="attempts-not-a-number"),
    ],
)
def test_one_undecodable_member_does_not_stall_the_redis_purge_queue(
    redis_server: servers.ServerProcess,
    recorders: tuple[Recorder, Recorder],
    member: str | bytes | None,
    attempts: str,
) -> None:
    import redis

    varnish, _ = recorders
    client = redis.Redis.from_url(f"redis://{redis_server.address}/0")
    queue = RedisPurgeQueue(client, name="redteam.poison")
    client.delete(*queue.keys)
    purger = VarnishPurger([varnish.origin])
    purges = Purges(None, [purger], queue=queue, clock=lambda: 100.0)
    good = QueuedPurge("varnish", purger.hosts[0], PurgeJob.urls(["http://example.com/good"]))
    assert queue.put(good, 0.0)
    if member is None:  # a well-formed item whose attempts counter is garbage
        bad = QueuedPurge("varnish", purger.hosts[0], PurgeJob.urls(["http://example.com/bad"]))
        assert queue.put(bad, 0.0)
        client.hset(queue.keys[1], bad.member, attempts)
    else:
        client.zadd(queue.keys[0], {member: 0.0})  # garbage, due first
    try:
        assert len(queue.items()) == 1
        purges.deliver_queued()  # was: JSONDecodeError out of claim(), the good item leased and stuck
        assert [path for _, path, _, _ in varnish.requests] == ["/good"]
        assert len(queue) == 0
    finally:
        client.delete(*queue.keys)
        client.close()


# D3: no credential in a purger's address --------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: VarnishPurger(["http://admin:hunter2-secret@127.0.0.1:6081"]),
        lambda: VarnishPurger(["admin:hunter2-secret@127.0.0.1:6081"]),
        lambda: HTTPPurger(
            "api", "https://svc:hunter2-secret@api.example.com", {"url": HTTPCall("POST", "/purge")}
        ),
        lambda: fastly_purger("SID", TOKEN, endpoint="https://k:hunter2-secret@api.fastly.com"),
    ],
    ids=["varnish-url", "varnish-host-port", "http-endpoint", "fastly-endpoint"],
)
def test_a_password_in_a_purger_address_is_refused_and_never_shown(make: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make()  # was: built, and repr, describe() and the queued member carried the password
    assert "hunter2" not in str(caught.value)


# D4: a purge value never climbs out of the API's purge path ------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/../../service/SID/purge_all",
        "http://example.com/a/%2e%2E/%2E./service/SID/purge_all",
        "http://example.com/./x",
        "http://../service/SID/purge_all",
        "http://example.com/a\\..\\..\\service",
    ],
)
def test_a_purge_url_cannot_climb_out_of_the_fastly_purge_path(url: str) -> None:
    with pytest.raises(InvalidPurgeError):
        PurgeJob.urls([url])  # was: POST /purge/example.com/../../service/SID/purge_all


def test_a_purge_value_cannot_make_a_dot_segment_in_an_api_path(recorders: tuple[Recorder, Recorder]) -> None:
    api, _ = recorders
    purger = HTTPPurger("api", api.origin, {"tags": HTTPCall("POST", "/zones/Z/purge/$value")})
    with pytest.raises(InvalidPurgeError):
        purger.request(PurgeJob.tags([".."]), purger.targets()[0])
    fastly = fastly_purger("SID", TOKEN, endpoint="https://api.fastly.com")
    request = fastly.request(PurgeJob.urls(["http://example.com/a/b..c/.d"]), fastly.targets()[0])
    assert request is not None
    path = urlsplit(request.url).path
    assert posixpath.normpath(unquote(path)) == "/purge/example.com/a/b..c/.d"


# D5: Fastly URL purges name the query string ---------------------------------------------
def test_a_fastly_url_purge_names_the_query_string() -> None:
    purger = fastly_purger("SID", TOKEN, endpoint="https://api.fastly.com")
    request = purger.request(PurgeJob.urls(["http://example.com/list?page=2&q=a%20b"]), purger.targets()[0])
    assert request is not None
    # was: POST /purge/example.com/list (page 1's URL)
    assert request.url == "https://api.fastly.com/purge/example.com/list?page=2&q=a%20b"
    plain = purger.request(PurgeJob.urls(["http://example.com/list"]), purger.targets()[0])
    assert plain is not None
    assert plain.url == "https://api.fastly.com/purge/example.com/list"


# D6: a second soft purge does not extend the first one's window ---------------------------
class _Counter:
    def __init__(self) -> None:
        self.renders = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.renders += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=600")])
        return [f"render {self.renders}".encode()]


def test_a_second_soft_purge_does_not_extend_the_stale_window_of_a_page_stale_since_the_first() -> None:
    clock, app = FakeClock(), _Counter()
    shell = Shell("wsgi", app, clock=clock, tags=["news"], stale_while_revalidate=30, lock_timeout=0.05)
    try:
        assert shell(environ_for("/page"))[2] == b"render 1"
        purges = Purges(shell.cache)
        purges.invalidate_tags("news", soft=True)  # render 1 is stale from now: served until +30 s
        clock.advance(25)
        purges.invalidate_tags("news", soft=True)  # another edit; nobody asked for the page between
        clock.advance(10)  # 35 s after render 1 went stale: past its window
        name = shell.cache.make_key(LOCK_KEY + shell.engine.engine.purge_hash("http://example.com/page"))
        lock = shell.cache.backend.lock(name, ttl=30)
        assert lock.acquire(
            False, -1
        )  # another request is re-rendering: nothing stale may be served past +30
        try:
            assert shell(environ_for("/page"))[2] == b"render 2"  # was: b"render 1", 35 s stale
        finally:
            lock.release()
    finally:
        shell.close()


def test_a_page_stored_between_two_soft_purges_is_stale_from_the_second() -> None:
    clock, app = FakeClock(), _Counter()
    shell = Shell("wsgi", app, clock=clock, tags=["news"], stale_while_revalidate=30, lock_timeout=0.05)
    try:
        assert shell(environ_for("/page"))[2] == b"render 1"
        purges = Purges(shell.cache)
        purges.invalidate_tags("news", soft=True)
        clock.advance(1)
        shell(environ_for("/page"))  # stale: served, and re-rendered (inline or in the background)
        assert shell.engine.background.wait(5.0)
        assert shell(environ_for("/page"))[2] == b"render 2"
        clock.advance(24)
        purges.invalidate_tags("news", soft=True)  # render 2 stale from now: served until +30 s
        clock.advance(10)
        name = shell.cache.make_key(LOCK_KEY + shell.engine.engine.purge_hash("http://example.com/page"))
        lock = shell.cache.backend.lock(name, ttl=30)
        assert lock.acquire(False, -1)
        try:
            assert shell(environ_for("/page"))[2] == b"render 2"  # stale 10 s of its 30: served
        finally:
            lock.release()
    finally:
        shell.close()


# D7: Cloudflare takes at most 100 values per request --------------------------------------
@pytest.mark.parametrize(("max_values", "sizes"), [(None, [100, 50]), (40, [40, 40, 40, 30])])
def test_a_cloudflare_purge_never_sends_more_values_than_one_call_takes(
    recorders: tuple[Recorder, Recorder], max_values: int | None, sizes: list[int]
) -> None:
    api, _ = recorders
    bodies: list[dict[str, Any]] = []
    extra = {} if max_values is None else {"max_values": max_values}
    purger = cloudflare_purger("ZONE", TOKEN, endpoint=api.origin, **extra)
    real = purger.deliver

    def deliver(request: Any) -> int:
        bodies.append(json.loads(request.body))
        return real(request)

    purger.deliver = deliver  # type: ignore[method-assign]
    report = Purges(None, [purger]).invalidate_tags(*(f"t{n}" for n in range(150)))
    assert report.delivered
    assert report.ok
    # Cloudflare: at most 100 operations per purge_cache request (developers.cloudflare.com, "Purge cache").
    assert [len(body["tags"]) for body in bodies] == sizes
    assert [tag for body in bodies for tag in body["tags"]] == [f"t{n}" for n in range(150)]


# D8: a bad port is a configuration error -------------------------------------------------
@pytest.mark.parametrize(
    "host", ["127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "http://[::1:6081", ".."]
)
def test_a_purger_address_with_a_bad_port_is_refused_when_configured(host: str) -> None:
    with pytest.raises(ConfigurationError):
        VarnishPurger([host])  # was: built; then every purge raised InvalidURL or was queued forever
    with pytest.raises(ConfigurationError):
        HTTPPurger("api", host, {"url": HTTPCall("POST", "/purge")})


# D9: a URL purge reaches pages keyed with trusted forwarded headers ----------------------
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize(
    ("trusted", "headers", "public"),
    [
        (["x-forwarded-proto"], {"X-Forwarded-Proto": "https"}, "https://example.com/page"),
        (
            ["x-forwarded-host", "x-forwarded-proto"],
            {"X-Forwarded-Host": "www.example.org", "X-Forwarded-Proto": "https"},
            "https://www.example.org/page",
        ),
        (
            ["forwarded"],
            {"Forwarded": 'for=192.0.2.1;proto=https;host="www.example.org"'},
            "https://www.example.org/page",
        ),
        (["x-forwarded-prefix"], {"X-Forwarded-Prefix": "/blog"}, "http://example.com/blog/page"),
    ],
    ids=["proto", "host-and-proto", "forwarded", "prefix"],
)
def test_a_url_purge_reaches_pages_keyed_with_trusted_forwarded_headers(
    kind: str, trusted: list[str], headers: dict[str, str], public: str
) -> None:
    app = _Counter()
    shell = Shell(kind, app, trusted_forwarded=trusted)
    try:
        behind = environ_for("/page", headers=headers)
        assert shell(dict(behind))[2] == b"render 1"
        assert shell(dict(behind))[2] == b"render 1"
        assert shell(environ_for("/page"))[2] == b"render 2"  # the direct request: its own page
        assert shell.purge(public)  # the URL the client asked for, as operators and proxies name it
        assert shell(dict(behind))[2] == b"render 3"  # was: render 1, kept until it expired
        assert shell(environ_for("/page"))[2] == b"render 2"  # another URL: untouched
    finally:
        shell.close()


def test_the_raw_forwarded_values_stay_in_the_key_and_purges_through_purges_reach_them() -> None:
    app = _Counter()
    shell = Shell("wsgi", app, trusted_forwarded=["x-forwarded-host"])
    try:
        lower = environ_for("/page", headers={"X-Forwarded-Host": "www.example.org"})
        upper = environ_for("/page", headers={"X-Forwarded-Host": "WWW.example.org"})
        assert shell(dict(lower))[2] == b"render 1"
        assert shell(dict(upper))[2] == b"render 2"  # one URL, but the app may echo the raw value
        assert shell(dict(lower))[2] == b"render 1"
        report = Purges(shell.cache).purge("http://www.example.org/page")
        assert report.cached == 1
        assert shell(dict(lower))[2] == b"render 3"
        assert shell(dict(upper))[2] == b"render 4"  # every variant under the URL went
    finally:
        shell.close()


# D10: cachekit purge says each outcome once ----------------------------------------------
def test_cachekit_purge_says_each_proxy_outcome_once(
    recorders: tuple[Recorder, Recorder], redis_server: servers.ServerProcess
) -> None:
    from tests.cachekit.test_cli import cachekit

    varnish, _ = recorders
    address = varnish.origin.removeprefix("http://")
    result = cachekit(
        "purge",
        f"redis://{redis_server.address}/0",
        "http://example.com/a",
        "http://example.com/b",
        "--varnish",
        address,
    )
    assert result.returncode in (0, 1), result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip().endswith(": purged")]
    assert len(varnish.requests) == 2
    assert len(lines) == 2, result.stdout  # was: 3 lines (the first URL's twice)


# D12: quotes are refused, as the docs and the VCL say --------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: PurgeJob.patterns(['^/a"']),
        lambda: PurgeJob.urls(['http://example.com/a"b']),
        lambda: PurgeJob.prefixes(['http://"example.com/']),
        lambda: PurgeJob.tags(['a"b']),
    ],
    ids=["pattern", "url", "prefix-host", "tag"],
)
def test_quotes_are_refused_as_the_docs_and_the_vcl_say(make: Any) -> None:
    with pytest.raises(InvalidPurgeError):
        make()


# D13: settings from a module --------------------------------------------------------------
def test_purges_from_a_settings_module_as_its_docstring_says() -> None:
    settings = types.ModuleType("settings")
    settings.PURGERS = [{"BACKEND": "varnish", "HOSTS": ["127.0.0.1:6081"]}]  # type: ignore[attr-defined]
    settings.PURGE_QUEUE_LENGTH = 5  # type: ignore[attr-defined]
    purges = Purges.from_settings(settings)  # was: AttributeError: module has no attribute 'get'
    assert list(purges.purgers) == ["varnish"]
    assert isinstance(purges.queue, MemoryPurgeQueue)
    assert purges.queue.max_length == 5


# D14: a URL purge our cache could not apply raises, after the proxies ----------------------
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_url_purge_our_cache_could_not_apply_is_not_reported_as_a_miss(
    kind: str, recorders: tuple[Recorder, Recorder]
) -> None:
    varnish, _ = recorders
    app = _Counter()
    shell = Shell(kind, app)
    try:
        assert shell(environ_for("/page"))[2] == b"render 1"
        backend = shell.cache.backend
        real = backend.delete

        def partitioned(key: str) -> bool:
            raise BackendUnavailableError("partitioned")

        async def apartitioned(key: str) -> bool:
            raise BackendUnavailableError("partitioned")

        # our cache unreachable during the purge, as invalidate_tags is tested
        backend.delete = partitioned if kind == "wsgi" else apartitioned
        try:
            purgers = [VarnishPurger([varnish.origin])]
            if kind == "wsgi":
                with pytest.raises(BackendUnavailableError):  # as Purges.invalidate_tags raises
                    Purges(shell.cache, purgers).purge("http://example.com/page")
            else:
                purge = AsyncPurges(shell.cache, purgers).purge("http://example.com/page")
                with pytest.raises(BackendUnavailableError):
                    shell._runner.run(purge)
        finally:
            backend.delete = real
        assert [path for _, path, _, _ in varnish.requests] == ["/page"]  # the proxies were purged first
        # the partition heals: the caller knows the purge must be made again; then it holds
        assert shell(environ_for("/page"))[2] == b"render 1"
        assert shell.purge("http://example.com/page")
        assert shell(environ_for("/page"))[2] == b"render 2"
    finally:
        shell.close()


def test_each_softly_retired_generation_keeps_its_own_time_and_a_marker_is_bounded() -> None:
    clock = FakeClock()
    cache = Cache(LocMemBackend(f"edge-soft-{uuid.uuid4().hex[:8]}", clock=clock), clock=clock)
    ((_, first),) = current_generations(cache, ["a"])
    ((_, b_first),) = current_generations(cache, ["b"])
    retired = {}
    for n in range(MAX_SOFT_GENERATIONS + 3):
        retired[first + n] = clock()
        soft_invalidate_tags(cache, ["a"])
        clock.advance(10)
    # Each page goes stale when the generation it was stored with was retired, not at the latest purge.
    for generation in (first + 3, first + MAX_SOFT_GENERATIONS + 2):
        assert soft_since(cache, [("a", generation)]) == retired[generation]
    assert soft_since(cache, [("a", first)]) is None  # older than the marker keeps: a miss, as if hard
    # Two tags: stale since the earlier of their purges.
    soft_invalidate_tags(cache, ["b"])
    assert soft_since(cache, [("a", first + 5), ("b", b_first)]) == retired[first + 5]


def test_a_marker_written_before_per_generation_times_still_reads() -> None:
    cache = Cache(LocMemBackend(f"edge-soft-{uuid.uuid4().hex[:8]}"))
    ((_, generation),) = current_generations(cache, ["a"])
    cache.incr(TAG_KEY_PREFIX + "a")
    cache.set(SOFT_KEY_PREFIX + "a", (generation, generation + 1, 123.0), timeout=None)
    assert soft_since(cache, [("a", generation)]) == 123.0
    soft_invalidate_tags(cache, ["a"])  # extends the old marker: its generation keeps its time
    assert soft_since(cache, [("a", generation)]) == 123.0
