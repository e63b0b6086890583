"""Purgers, the purge queue and Purges, against a recording HTTP server on loopback (no Varnish needed)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cachekit import Cache
from cachekit.aio import AsyncCache
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
from cachekit.edge import purgers_from_settings
from cachekit.edge.queue import queue_for
from cachekit.exceptions import ConfigurationError
from tests import servers
from tests.recorder import Recorder
from tests.recorder import serving

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    with serving(server):
        yield server


def closed_port() -> str:
    return f"{servers.HOST}:{servers.free_port()}"


# -- what each purger sends ---------------------------------------------------------------


def test_varnish_purges_urls_bans_prefixes_and_sends_tags_in_xkey(recorder: Recorder) -> None:
    second = Recorder()
    with serving(second):
        purges = Purges(purgers=[VarnishPurger([recorder.address, f"http://{second.address}"])])
        assert purges.purge("http://example.com/a?x=1", "https://example.com/b").ok
        assert purges.invalidate_tags("t1", "t2", soft=True).ok
        assert purges.invalidate_tags("t3").ok
        assert purges.purge_prefix("http://example.com/blog/").ok
        assert purges.ban(r"^/a", r"\.css$").ok
        assert purges.purge("http://example.com/c", soft=True).ok
    assert [r[:2] for r in recorder.requests] == [r[:2] for r in second.requests]
    seen = [
        (method, path, {k.lower(): v for k, v in headers.items()})
        for method, path, headers, _ in recorder.requests
    ]
    assert seen[0][:2] == ("PURGE", "/a?x=1")
    assert seen[0][2]["host"] == "example.com"
    assert seen[1][:2] == ("PURGE", "/b")
    assert "cachekit-soft-purge" not in seen[1][2]
    assert seen[2][0] == "PURGE"
    assert seen[2][2]["xkey-softpurge"] == "t1 t2"
    assert "xkey" not in seen[2][2]
    assert seen[3][2]["xkey"] == "t3"
    assert seen[4][0] == "BAN"
    assert seen[4][2]["host"] == "example.com"
    assert seen[4][2]["cachekit-ban"] == r"^/blog/"
    assert seen[5][0] == "BAN"
    assert seen[5][2]["cachekit-ban"] == r"(^/a)|(\.css$)"
    assert seen[5][2]["cachekit-ban-any-host"] == "1"
    assert seen[6][:2] == ("PURGE", "/c")
    assert seen[6][2]["cachekit-soft-purge"] == "1"
    assert len(seen) == 7
    assert recorder.hosts[0] == ["example.com"]  # one Host: the page's, not the Varnish address


def test_fastly_sends_keys_in_surrogate_key_and_soft_purge_header(recorder: Recorder) -> None:
    purger = fastly_purger("SVC1", TOKEN, endpoint=f"http://{recorder.address}")
    purges = Purges(purgers=[purger])
    assert purges.invalidate_tags("a", "b", soft=True).ok
    assert purges.purge("https://www.example.com/p/1").ok
    (m1, p1, h1, _), (m2, p2, h2, _) = recorder.requests
    assert (m1, p1) == ("POST", "/service/SVC1/purge")
    assert (h1["Surrogate-Key"], h1["Fastly-Soft-Purge"], h1["Fastly-Key"]) == ("a b", "1", TOKEN)
    assert (m2, p2) == ("POST", "/purge/www.example.com/p/1")
    assert "Fastly-Soft-Purge" not in h2


def test_cloudflare_sends_files_tags_and_prefixes_in_a_json_body(recorder: Recorder) -> None:
    purges = Purges(purgers=[cloudflare_purger("Z9", TOKEN, endpoint=f"http://{recorder.address}")])
    assert purges.purge("https://example.com/a", "https://example.com/b").ok
    assert purges.invalidate_tags("x", "y").ok
    assert purges.purge_prefix("https://example.com/blog").ok
    report = purges.ban("^/a")
    assert report.unsupported == [f"cloudflare http://{recorder.address}"]
    assert report.ok
    bodies = [
        (method, path, headers["Authorization"], json.loads(body))
        for method, path, headers, body in recorder.requests
    ]
    path = "/client/v4/zones/Z9/purge_cache"
    bearer = f"Bearer {TOKEN}"
    assert bodies == [
        ("POST", path, bearer, {"files": ["https://example.com/a", "https://example.com/b"]}),
        ("POST", path, bearer, {"tags": ["x", "y"]}),
        ("POST", path, bearer, {"prefixes": ["example.com/blog"]}),
    ]


def test_an_http_purger_with_a_value_in_its_path_sends_one_request_per_value(recorder: Recorder) -> None:
    purger = HTTPPurger(
        "api",
        f"http://{recorder.address}",
        {"tags": HTTPCall("DELETE", "/keys/$value", body='{"key": $value, "all": $values}')},
    )
    Purges(purgers=[purger]).invalidate_tags("a/b", "c")
    assert [(m, p, json.loads(b)) for m, p, _, b in recorder.requests] == [
        ("DELETE", "/keys/a%2Fb", {"key": "a/b", "all": ["a/b"]}),
        ("DELETE", "/keys/c", {"key": "c", "all": ["c"]}),
    ]


# -- hostile values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a\r\nX-Evil: 1",
        "http://example.com/a b",
        "http://example.com/\x00",
        "http://example.com/é",
        "/relative/path",
        "ftp://example.com/",
        "http://user:secret@example.com/",
        "http://example.com/" + "a" * 3000,
        "",
        'http://example.com/a"b',
        "http://example.com/a\\b",
        "http://example.com/../x",
        "http://example.com/a/..",
        "http://example.com/./x",
        "http://example.com/%2e%2E/x",
        "http://example.com/.%2e/x",
        "http://example.com/%2E/x",
        "http://../x",
        "http://./x",
        "http://exa mple.com/",
        "http://[::1/",
        "http://example.com:80:80/",
    ],
)
def test_a_hostile_url_is_refused_before_any_request(recorder: Recorder, url: str) -> None:
    purges = Purges(purgers=[VarnishPurger([recorder.address])])
    with pytest.raises(InvalidPurgeError):
        purges.purge(url)
    with pytest.raises(InvalidPurgeError):
        purges.purge_prefix(url)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "tag", ["a b", "a,b", "a\r\nxkey: all", "a\nb", "\t", 'a"b', "x" * 1025, "", "tag\x7f", "ünï"]
)
def test_a_hostile_tag_is_refused_before_any_request(recorder: Recorder, tag: str) -> None:
    cache = Cache(LocMemBackend())
    purges = Purges(cache, [VarnishPurger([recorder.address])])
    with pytest.raises(InvalidPurgeError):
        purges.invalidate_tags("fine", tag)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a..b/.c/c./...",
        "http://[::1]:8080/",
        "http://127.0.0.1:1/a",
        "http://my_host.example.com./a?x=../y",
        "https://EXAMPLE.com/%2e%2ex",
    ],
)
def test_urls_with_dots_that_are_no_dot_segments_are_purged(url: str) -> None:
    assert PurgeJob.urls([url]).values == (url,)


def test_a_ban_pattern_with_spaces_or_a_bad_regex_is_refused(recorder: Recorder) -> None:
    purges = Purges(purgers=[VarnishPurger([recorder.address])])
    for pattern in ("^/a && obj.status", "^/(", "a\r\nb"):
        with pytest.raises(InvalidPurgeError):
            purges.ban(pattern)
    assert recorder.requests == []


def test_too_many_values_in_one_purge_are_refused() -> None:
    with pytest.raises(InvalidPurgeError, match="at most"):
        PurgeJob.tags([f"t{i}" for i in range(300)])
    with pytest.raises(InvalidPurgeError, match="in one header"):
        PurgeJob.tags([f"{i}" + "x" * 1000 for i in range(9)])  # 9 KB of tags in one xkey line
    assert len(PurgeJob.tags([f"{i}" + "x" * 1000 for i in range(7)]).values) == 7


def test_an_unreachable_queue_store_is_reported_not_raised(recorder: Recorder) -> None:
    redis = pytest.importorskip("redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from cachekit.exceptions import BackendUnavailableError

    client = redis.Redis(
        host=servers.HOST, port=servers.free_port(), socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = RedisPurgeQueue(client)
    purges = Purges(purgers=[VarnishPurger([closed_port()], timeout=1.0)], queue=store)
    report = purges.invalidate_tags("x")
    assert report.failed
    assert report.queued == []
    with pytest.raises(BackendUnavailableError):
        purges.deliver_queued()


def test_credentials_are_never_logged_nor_shown(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    recorder.status = 503
    purger = cloudflare_purger("Z9", TOKEN, endpoint=f"http://{recorder.address}")
    purges = Purges(purgers=[purger, fastly_purger("S", TOKEN, endpoint=f"http://{closed_port()}")])
    with caplog.at_level(logging.DEBUG, logger="cachekit.edge"):
        report = purges.invalidate_tags("x")
        recorder.status = 403
        time.sleep(0.01)
        purges.purge("https://example.com/")
    assert len(report.queued) == 2
    assert recorder.requests
    assert caplog.records
    assert f"POST http://{recorder.address}/client/v4/zones/Z9/purge_cache: answered 403" in caplog.text
    text = caplog.text + repr(purges) + repr(purger) + "".join(item.member for item in purges.queue.items())
    assert TOKEN not in text  # ...but never logged, shown or queued
    request = purger.request(PurgeJob.tags(["x"]), purger.endpoint)
    assert request is not None
    assert TOKEN not in repr(request)
    assert "<redacted>" in repr(request)


# -- delivery outcomes ---------------------------------------------------------------------


def test_the_limits_are_inclusive_and_a_purge_of_nothing_is_refused() -> None:
    url = "http://example.com/" + "a" * (2048 - len("http://example.com/"))
    assert PurgeJob.urls([url]).values == (url,)
    with pytest.raises(InvalidPurgeError, match="longer than 2048"):
        PurgeJob.urls([url + "a"])
    assert len(PurgeJob.tags([f"t{i}" for i in range(256)]).values) == 256
    with pytest.raises(InvalidPurgeError, match="at most 256"):
        PurgeJob.tags([f"t{i}" for i in range(257)])
    assert PurgeJob.tags(["x" * 1024]).values == ("x" * 1024,)
    for build in (PurgeJob.urls, PurgeJob.prefixes, PurgeJob.patterns, PurgeJob.tags):
        with pytest.raises(InvalidPurgeError, match="nothing to purge"):
            build([])
    with pytest.raises(InvalidPurgeError, match="nothing to purge"):
        Purges().invalidate_tags()


def test_purges_are_hard_unless_asked() -> None:
    jobs = [
        PurgeJob.urls(["http://e/"]),
        PurgeJob.prefixes(["http://e/"]),
        PurgeJob.patterns(["^/"]),
        PurgeJob.tags(["t"]),
    ]
    assert [job.soft for job in jobs] == [False] * 4
    assert PurgeJob.tags(["t"], soft=True).soft


def test_a_header_value_with_a_control_character_is_refused(recorder: Recorder) -> None:
    purger = HTTPPurger(
        "api",
        f"http://{recorder.address}",
        {"tags": HTTPCall("POST", "/")},
        headers={"X-Team": "a\r\nX-Evil: 1"},
    )
    with pytest.raises(InvalidPurgeError, match="control character"):
        Purges(purgers=[purger]).invalidate_tags("x")
    assert recorder.requests == []


def test_tags_fill_one_header_up_to_its_limit() -> None:
    tags = [f"{i:04d}" + "x" * 996 for i in range(7)] + ["0007" + "x" * 989]  # 7,993 + 7 spaces
    assert len(" ".join(tags)) == 8000
    assert PurgeJob.tags(tags).values == tuple(tags)
    with pytest.raises(InvalidPurgeError, match="in one header"):
        PurgeJob.tags([*tags[:-1], tags[-1] + "y"])


@pytest.mark.parametrize(
    "job",
    [
        PurgeJob.urls(["http://example.com/a"], soft=True),
        PurgeJob.prefixes(["http://example.com/b/"]),
        PurgeJob.patterns([r"^/c\d+$"]),
        PurgeJob.tags(["d", "e"], soft=True),
    ],
    ids=["url", "prefix", "regex", "tags"],
)
def test_a_queued_job_reads_back_as_it_was_written(job: PurgeJob) -> None:
    assert PurgeJob.from_json(job.to_json()) == job


def test_a_queued_item_of_an_unknown_kind_is_refused() -> None:
    member = json.dumps(["varnish", "http://h", json.dumps(["drop-table", ["x"], False])])
    with pytest.raises(InvalidPurgeError, match="unknown purge kind"):
        QueuedPurge.from_member(member)


def test_an_https_endpoint_that_does_not_speak_tls_is_unreachable(recorder: Recorder) -> None:
    purges = Purges(purgers=[cloudflare_purger("Z", TOKEN, endpoint=f"https://{recorder.address}")])
    assert purges.invalidate_tags("x").queued == [f"cloudflare https://{recorder.address}"]


@pytest.mark.parametrize("status", [300, 302, 304, 404])
def test_a_redirect_or_not_found_is_not_a_purge(recorder: Recorder, status: int) -> None:
    recorder.status = status
    report = Purges(purgers=[VarnishPurger([recorder.address])]).invalidate_tags("x")
    assert report.failed == [f"varnish http://{recorder.address}"]


def test_refused_purges_are_reported_and_not_queued(recorder: Recorder) -> None:
    recorder.status = 405
    purges = Purges(purgers=[VarnishPurger([recorder.address])])
    report = purges.purge("http://example.com/")
    assert report.failed == [f"varnish http://{recorder.address}"]
    assert not report.ok
    assert len(purges.queue) == 0


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_are_queued(recorder: Recorder, status: int) -> None:
    recorder.status = status
    purges = Purges(purgers=[VarnishPurger([recorder.address])])
    report = purges.invalidate_tags("x")
    assert report.queued == [f"varnish http://{recorder.address}"]
    assert report.ok
    assert len(purges.queue) == 1


def test_only_the_unreachable_host_gets_the_purge_again(recorder: Recorder) -> None:
    down = closed_port()
    purges = Purges(purgers=[VarnishPurger([recorder.address, down], timeout=1.0)], backoff=0.0)
    report = purges.invalidate_tags("x")
    assert report.delivered == [f"varnish http://{recorder.address}"]
    assert report.queued == [f"varnish http://{down}"]
    recorder.requests.clear()
    again = purges.deliver_queued()
    assert again.queued == [f"varnish http://{down}"]
    assert recorder.requests == []


def test_a_purge_with_no_cache_and_no_purger_is_a_configuration_of_nothing() -> None:
    report = Purges().invalidate_tags("x")
    assert (report.delivered, report.queued, report.failed) == ([], [], [])


def test_our_cache_is_purged_with_the_proxies() -> None:
    from cachekit.views import cache_page

    cache = Cache(LocMemBackend())
    renders: list[int] = []

    @cache_page(60, cache=cache, tags=["t"])
    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    def hit() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/p",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "80",
        }
        environ.update({"wsgi.url_scheme": "http", "HTTP_HOST": "example.com"})
        b"".join(view(environ, lambda *a: None))

    hit(), hit()
    assert len(renders) == 1
    assert Purges(cache).purge("http://example.com/p").cached == 1
    hit()
    assert len(renders) == 2
    Purges(cache).invalidate_tags("t")
    hit()
    assert len(renders) == 3


# -- the queue -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def queue(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield MemoryPurgeQueue(max_length=3, lease=5.0)
        return
    redis = pytest.importorskip("redis")
    server = request.getfixturevalue("redis_server")
    client = redis.Redis(host=servers.HOST, port=server.port)
    name = f"test.purge.{time.monotonic_ns()}"
    yield RedisPurgeQueue(client, name, max_length=3, lease=5.0)
    client.delete(*RedisPurgeQueue(client, name).keys)


def item(value: str, target: str = "http://h1") -> QueuedPurge:
    return QueuedPurge("varnish", target, PurgeJob.tags([value]))


def test_the_same_purge_queued_twice_waits_once(queue: Any) -> None:
    assert queue.put(item("a"), 0.0)
    assert queue.put(item("a"), 0.0)
    assert queue.put(item("a", "http://h2"), 0.0)
    assert len(queue) == 2


def test_a_full_queue_refuses_new_items(queue: Any) -> None:
    assert all(queue.put(item(v), 0.0) for v in "abc")
    assert not queue.put(item("d"), 0.0)
    assert queue.put(item("a"), 0.0)  # already there: no room needed
    assert sorted(i.job.values[0] for i in queue.items()) == ["a", "b", "c"]


def test_claimed_items_are_leased_and_retried_items_wait_their_backoff(queue: Any) -> None:
    queue.put(item("a"), 10.0)
    queue.put(item("b"), 20.0)
    assert queue.claim(5.0, 10) == []
    (first,) = queue.claim(15.0, 10)
    assert first.job.values == ("a",)
    assert first.attempts == 0
    assert queue.claim(16.0, 10) == []  # leased until 20
    queue.retry(first, 30.0)
    (second,) = queue.claim(25.0, 10)
    assert second.job.values == ("b",)
    queue.done(second)
    (again,) = queue.claim(31.0, 10)
    assert again.attempts == 1


def test_a_delivered_item_is_dropped_unless_queued_again_meanwhile(queue: Any) -> None:
    queue.put(item("a"), 0.0)
    (claimed,) = queue.claim(1.0, 10)
    queue.put(item("a"), 0.0)  # the same purge, asked again while the first delivery runs
    queue.done(claimed)
    (again,) = queue.claim(2.0, 10)  # delivered once more: the second purge is not lost
    queue.done(again)
    assert len(queue) == 0
    assert queue.claim(3.0, 10) == []


def test_backoff_doubles_up_to_its_cap() -> None:
    purges = Purges(purgers=[VarnishPurger(["127.0.0.1:1"])], backoff=1.0, max_backoff=8.0)
    waits = [purges._delivery.wait(attempt) for attempt in range(6)]
    for attempt, wait in enumerate(waits):
        assert min(8.0, 2.0**attempt) * 0.5 <= wait <= min(8.0, 2.0**attempt)


def test_the_queue_is_on_the_caches_redis_when_it_has_one(redis_url: str) -> None:
    from cachekit import from_url

    assert isinstance(queue_for(from_url(redis_url, key_prefix="app1")), RedisPurgeQueue)
    assert queue_for(from_url(redis_url, key_prefix="app1")).keys[0] == "{app1:cachekit.purge}.due"
    assert isinstance(queue_for(Cache(LocMemBackend())), MemoryPurgeQueue)
    assert not queue_for(None).durable


def test_a_redis_queue_survives_the_purges_object(recorder: Recorder, redis_url: str) -> None:
    from cachekit import from_url

    down = closed_port()
    cache = from_url(redis_url, key_prefix=f"survive{time.monotonic_ns()}")
    first = Purges(cache, [VarnishPurger([down], timeout=1.0)], backoff=0.0)
    assert first.invalidate_tags("x").queued
    # A new process (a new Purges) on the same Redis, with the host now answering there.
    later = Purges(cache, [VarnishPurger([down], timeout=1.0)], backoff=0.0)
    assert len(later.queue) == 1
    purger = VarnishPurger([down])
    purger.deliver = lambda request: 200  # type: ignore[method-assign]
    later._delivery.purgers["varnish"] = purger
    assert later.deliver_queued().delivered == [f"varnish http://{down}"]
    assert len(later.queue) == 0


def test_the_background_thread_delivers_once_the_proxy_answers(recorder: Recorder) -> None:
    recorder.status = 503
    purges = Purges(purgers=[VarnishPurger([recorder.address])], backoff=0.01, max_backoff=0.05)
    assert purges.invalidate_tags("x").queued
    recorder.status = 200
    purges.start_delivery(interval=0.02)
    try:
        deadline = time.monotonic() + 5.0
        while len(purges.queue) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        purges.stop_delivery()
    assert len(purges.queue) == 0
    assert [r[2]["xkey"] for r in recorder.requests if r[0] == "PURGE"][-1] == "x"


def test_a_queued_item_for_a_purger_no_longer_configured_is_dropped() -> None:
    queue = MemoryPurgeQueue()
    queue.put(QueuedPurge("gone", "http://h", PurgeJob.tags(["x"])), 0.0)
    report = Purges(purgers=[VarnishPurger(["127.0.0.1:1"])], queue=queue).deliver_queued()
    assert report.failed == ["gone http://h"]
    assert len(queue) == 0


# -- configuration -------------------------------------------------------------------------


def test_purgers_from_settings() -> None:
    varnish, fastly, cloudflare = purgers_from_settings(
        [
            {"BACKEND": "varnish", "HOSTS": ["127.0.0.1:6081", "10.0.0.2:80"]},
            {"backend": "fastly", "service_id": "S", "api_token": TOKEN},
            {"BACKEND": "cloudflare", "ZONE_ID": "Z", "API_TOKEN": TOKEN, "NAME": "cf"},
        ]
    )
    assert isinstance(varnish, VarnishPurger)
    assert varnish.hosts == (
        "http://127.0.0.1:6081",
        "http://10.0.0.2:80",
    )
    assert fastly.name == "fastly"
    assert cloudflare.name == "cf"
    with pytest.raises(ConfigurationError, match="unknown BACKEND"):
        purgers_from_settings([{"BACKEND": "squid"}])
    with pytest.raises(ConfigurationError, match="API_TOKEN"):
        purgers_from_settings([{"BACKEND": "fastly", "SERVICE_ID": "S"}])
    with pytest.raises(ConfigurationError, match="two purgers"):
        Purges(purgers=[VarnishPurger(["h:1"]), VarnishPurger(["h:2"])])


def test_purges_from_a_settings_mapping() -> None:
    settings = {"PURGERS": [{"BACKEND": "varnish", "HOSTS": ["127.0.0.1:6081"]}], "PURGE_QUEUE_LENGTH": 2}
    purges = Purges.from_settings(settings, Cache(LocMemBackend("edge-settings")), backoff=5.0)
    assert list(purges.purgers) == ["varnish"]
    assert isinstance(purges.queue, MemoryPurgeQueue)
    assert purges.queue.max_length == 2
    assert purges._delivery.backoff == 5.0
    assert Purges.from_settings({}).purgers == {}
    with pytest.raises(ConfigurationError, match="PURGE_QUEUE_LENGTH"):
        Purges.from_settings({"PURGE_QUEUE_LENGTH": 0})


# -- async ---------------------------------------------------------------------------------


def test_async_purges_reach_the_async_cache_and_the_proxies(recorder: Recorder) -> None:
    from cachekit.backends.aio_locmem import AsyncLocMemBackend

    async def main() -> tuple[Any, Any, Any]:
        cache = AsyncCache(AsyncLocMemBackend())
        calls = 0

        async def compute() -> int:
            nonlocal calls
            calls += 1
            return calls

        purges = AsyncPurges(cache, [VarnishPurger([recorder.address])])
        first = await cache.get_or_set("k", compute, tags=["t"])
        report = await purges.invalidate_tags("t")
        second = await cache.get_or_set("k", compute, tags=["t"])
        url_report = await purges.purge("http://example.com/x")
        return (first, second), report, url_report

    values, report, url_report = asyncio.run(main())
    assert values == (1, 2)
    assert report.delivered == url_report.delivered == [f"varnish http://{recorder.address}"]
    assert [r[0] for r in recorder.requests] == ["PURGE", "PURGE"]


def test_purges_need_no_client_library() -> None:
    import subprocess
    import sys

    code = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('redis', 'pymemcache', 'httpx', 'requests'):\n"
        "        raise ImportError('blocked ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import cachekit\n"
        "from cachekit.edge import Purges, VarnishPurger\n"
        f"p = Purges(cachekit.from_url('locmem://'), [VarnishPurger(['{closed_port()}'])])\n"
        "assert p.invalidate_tags('x').queued and not p.queue.durable\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
