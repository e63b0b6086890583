"""Fields shared with caches in front, as tables run through both shells (WSGI and ASGI).

* ``Cache-Status`` (RFC 9211): what the page cache did with each response.
* Targeted ``Cache-Control`` (RFC 9213): which field decides storage, and ``cdn_cache_control``.
* Surrogate keys: tags a response declares, kept as page tags and stripped from the client.

Each case sends its requests in order (the clock moves between them as told)
to an app that answers ``v<n>`` on its n-th call, and checks the last answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import http_sf
import pytest

from cachekit import Cache
from cachekit import http
from cachekit.backends.locmem import LocMemBackend
from cachekit.pages import fields
from cachekit.pages.options import PageOptions
from cachekit.views import PageCache
from tests import wsgi
from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for

NOW = 1_700_000_000.0
Headers = list[tuple[str, str]]


class App:
    """Answers ``v<n>`` for its n-th call; ``status``/``headers`` may depend on the call number."""

    def __init__(
        self,
        status: str | Callable[[int], str] = "200 OK",
        headers: Iterable[tuple[str, str]] | Callable[[int], Headers] = (),
    ) -> None:
        self.status = status
        self.headers = headers
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        self.calls += 1
        status = self.status(self.calls) if callable(self.status) else self.status
        headers = self.headers(self.calls) if callable(self.headers) else list(self.headers)
        body = b"v%d" % self.calls
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return iter([b"" if environ["REQUEST_METHOD"] == "HEAD" else body])


@dataclass
class Step:
    """One request of a case, sent after the clock moved ``advance`` seconds."""

    advance: float = 0.0
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)


def run(
    shell: str, clock: FakeClock, app: App, steps: list[Step], **options: Any
) -> tuple[str, Headers, bytes]:
    """Send ``steps`` through a page cache in ``shell``; return the last answer."""
    engine = Shell(shell, app, clock=clock, **options)
    try:
        answer: tuple[str, Headers, bytes] = ("", [], b"")
        for step in steps:
            clock.advance(step.advance)
            answer = engine(environ_for(method=step.method, headers=step.headers))
        return answer
    finally:
        engine.close()


def members(value: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Parse a ``Cache-Status`` value (RFC 9211: an sf-list) into ``[(cache, params)]``."""
    assert value is not None, "no Cache-Status"
    parsed = http_sf.parse(value.encode("ascii"), tltype="list")
    return [
        (str(item), {k: (str(v) if isinstance(v, http_sf.types.Token) else v) for k, v in params.items()})
        for item, params in parsed
    ]  # type: ignore[union-attr]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


# -- Cache-Status ------------------------------------------------------------------------------


@dataclass
class StatusCase:
    id: str
    steps: list[Step]
    expect: dict[str, Any]
    status: str | Callable[[int], str] = "200 OK"
    headers: tuple[tuple[str, str], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    #: Parameters that must be absent.
    absent: tuple[str, ...] = ()
    body: bytes | None = None


def _raise() -> str:
    raise RuntimeError("the origin failed")


ONE = [Step()]
TWO = [Step(), Step(advance=10)]
SHORT = (("Cache-Control", "max-age=10"),)

STATUS_CASES = [
    StatusCase(
        "miss-stored",
        ONE,
        {"fwd": "uri-miss", "fwd-status": 200, "stored": True, "ttl": 60},
        absent=("hit", "detail"),
        body=b"v1",
    ),
    StatusCase("hit-with-remaining-ttl", TWO, {"hit": True, "ttl": 50}, absent=("fwd", "stored"), body=b"v1"),
    StatusCase(
        "stale-rendered-again",
        [Step(), Step(advance=20)],
        {"fwd": "stale", "stored": True, "ttl": 10},
        headers=(("Cache-Control", "max-age=10, stale-if-error=60"),),
        body=b"v2",
    ),
    StatusCase(
        "vary-miss",
        [Step(headers={"Accept-Language": "en"}), Step(headers={"Accept-Language": "fr"})],
        {"fwd": "vary-miss", "stored": True},
        headers=(("Vary", "Accept-Language"),),
        body=b"v2",
    ),
    StatusCase(
        "expired-page-of-a-known-url-is-a-miss",
        [Step(), Step(advance=30)],
        {"fwd": "miss"},
        headers=SHORT,
        body=b"v2",
    ),
    StatusCase(
        "request-no-cache",
        [Step(), Step(headers={"Cache-Control": "no-cache"})],
        {"fwd": "request", "fwd-status": 200, "stored": True},
        body=b"v2",
    ),
    StatusCase(
        "request-max-age",
        [Step(), Step(advance=10, headers={"Cache-Control": "max-age=5"})],
        {"fwd": "request", "stored": True},
        body=b"v2",
    ),
    StatusCase(
        "not-stored-private",
        ONE,
        {"fwd": "uri-miss", "fwd-status": 200, "detail": "Cache-Control: private"},
        headers=(("Cache-Control", "private"),),
        absent=("stored", "ttl"),
    ),
    StatusCase(
        "not-stored-set-cookie",
        ONE,
        {"detail": "response sets a cookie"},
        headers=(("Set-Cookie", "a=b"),),
        absent=("stored",),
    ),
    StatusCase(
        "not-stored-status",
        ONE,
        {"fwd-status": 500, "detail": "status 500 is not cacheable"},
        status="500 Internal Server Error",
        absent=("stored",),
    ),
    StatusCase(
        "not-stored-too-large",
        ONE,
        {"fwd": "uri-miss", "detail": "body larger than max_body_size"},
        options={"max_body_size": 1},
        absent=("stored",),
    ),
    StatusCase(
        "bypass-when-off",
        ONE,
        {"fwd": "bypass", "detail": "caching is off (timeout 0)"},
        options={"timeout": 0},
    ),
    StatusCase(
        "bypass-untrusted-forwarded",
        [Step(headers={"X-Forwarded-Host": "evil.example"})],
        {"fwd": "bypass", "fwd-status": 200},
    ),
    StatusCase("method-post", [Step(method="POST")], {"fwd": "method", "fwd-status": 200}),
    StatusCase(
        "head-miss-is-passed",
        [Step(method="HEAD")],
        {"fwd": "uri-miss", "detail": "HEAD responses are not stored"},
        absent=("stored",),
    ),
    StatusCase(
        "conditional-hit-304",
        [Step(), Step(headers={"If-None-Match": '"x"'})],
        {"hit": True},
        headers=(("ETag", '"x"'),),
        body=b"",
    ),
    StatusCase(
        "stale-if-error-serves-the-stale-page",
        [Step(), Step(advance=20)],
        {"fwd": "stale", "fwd-status": 500, "detail": "stale-if-error", "ttl": -10},
        status=lambda n: "200 OK" if n == 1 else "500 Internal Server Error",
        headers=(("Cache-Control", "max-age=10, stale-if-error=60"),),
        absent=("hit", "stored"),
        body=b"v1",
    ),
    StatusCase(
        "must-revalidate-error-passes-on",
        [Step(), Step(advance=20)],
        {"fwd": "stale", "fwd-status": 500, "detail": "status 500 is not cacheable"},
        status=lambda n: "200 OK" if n == 1 else "500 Internal Server Error",
        headers=(("Cache-Control", "max-age=10, must-revalidate"),),
        options={"stale_if_error": 60},
        body=b"v2",
    ),
    StatusCase(
        "must-revalidate-raise-is-a-504",
        [Step(), Step(advance=20)],
        {"fwd": "stale", "detail": "must-revalidate and the origin failed"},
        status=lambda n: "200 OK" if n == 1 else _raise(),
        headers=(("Cache-Control", "max-age=10, must-revalidate"),),
        options={"stale_if_error": 60},
        absent=("fwd-status", "stored"),
    ),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in STATUS_CASES])
def test_cache_status(case: StatusCase, shell: str, clock: FakeClock) -> None:
    """Every Cache-Status outcome, through the WSGI and the ASGI shell."""
    app = App(case.status, case.headers)
    _, headers, body = run(shell, clock, app, case.steps, cache_status=True, **case.options)
    ((name, params),) = members(http.header(headers, "cache-status"))
    assert name == "cachekit"
    for key, value in case.expect.items():
        assert params.get(key) == value, f"{key}: {params}"
    for key in case.absent:
        assert key not in params, f"{key} in {params}"
    if case.body is not None:
        assert body == case.body


@pytest.mark.parametrize("shell", SHELLS)
def test_cache_status_is_off_unless_asked(shell: str, clock: FakeClock) -> None:
    _, headers, _ = run(shell, clock, App(), TWO)
    assert http.header(headers, "cache-status") is None


@pytest.mark.parametrize("shell", SHELLS)
def test_cache_status_name_and_the_member_of_an_inner_cache(shell: str, clock: FakeClock) -> None:
    """Our member goes last (nearest the client); an inner cache's is not replayed on hits."""
    app = App(headers=[("Cache-Status", "origin-cache; fwd=uri-miss")])
    engine = Shell(shell, app, clock=clock, cache_status=True, cache_status_name="edge 1")
    try:
        miss = engine(environ_for())
        hit = engine(environ_for())
    finally:
        engine.close()
    assert [name for name, _ in members(http.header(miss[1], "cache-status"))] == ["origin-cache", "edge 1"]
    assert members(http.header(hit[1], "cache-status")) == [("edge 1", {"hit": True, "ttl": 60})]


def test_a_collapsed_request_says_so(clock: FakeClock) -> None:
    """A request that waited for another's render reports fwd and collapsed (WSGI: threads)."""
    cache = Cache(LocMemBackend("edge-collapsed"), lock_timeout=5)
    rendering, finish = threading.Event(), threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        rendering.set()
        assert finish.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    engine = PageCache(60, cache=cache, cache_status=True)
    results: dict[str, Headers] = {}
    backend_lock, acquires, waiting = cache.backend.lock, [], threading.Event()

    class Probe:
        """The backend's lock, telling when the second request asks for it."""

        def __init__(self, name: str, ttl: Any) -> None:
            self.real = backend_lock(name, ttl=ttl)

        def acquire(self, blocking: bool, wait: float) -> bool:
            acquires.append(blocking)
            if len(acquires) == 2:
                waiting.set()
            return bool(self.real.acquire(blocking, wait))

        def release(self) -> None:
            self.real.release()

    cache.backend.lock = Probe  # type: ignore[method-assign,assignment]

    def fetch(name: str) -> None:
        results[name] = wsgi.call_app(lambda e, s: engine(app, e, s), environ_for("/collapse"))[1]

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    assert rendering.wait(5)
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    assert waiting.wait(5)  # the second request asks for the lock the first holds
    finish.set()
    first.join(5)
    second.join(5)
    cache.clear()
    assert members(http.header(results["first"], "cache-status"))[0][1]["stored"] is True
    ((_, params),) = members(http.header(results["second"], "cache-status"))
    assert params["collapsed"] is True
    assert params["fwd"] == "uri-miss"
    assert "hit" not in params


def test_a_stale_page_served_while_another_renders_is_a_hit_with_negative_ttl() -> None:
    """stale-while-revalidate: the request that finds the lock taken gets the stale page at once."""
    clock = FakeClock(NOW)
    cache = Cache(LocMemBackend("edge-swr", clock=clock), clock=clock, lock_timeout=5)
    rendering, finish = threading.Event(), threading.Event()
    renders: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        renders.append(1)
        if len(renders) == 2:
            rendering.set()
            assert finish.wait(5)
        start_response("200 OK", [("Cache-Control", "max-age=10, stale-while-revalidate=60")])
        return [b"v%d" % len(renders)]

    engine = PageCache(cache=cache, cache_status=True)

    def fetch() -> tuple[str, Headers, bytes]:
        return wsgi.call_app(lambda e, s: engine(app, e, s), environ_for("/swr"))

    fetch()
    clock.advance(15)
    refresher = threading.Thread(target=fetch)
    refresher.start()
    assert rendering.wait(5)
    try:
        _, headers, body = fetch()
    finally:
        finish.set()
        refresher.join(5)
        cache.clear()
    assert body == b"v1"
    assert members(http.header(headers, "cache-status")) == [("cachekit", {"hit": True, "ttl": -5})]


def test_status_member_serialization() -> None:
    assert fields.status_member("cachekit", hit=True, ttl=12.7) == "cachekit;hit;ttl=12"
    assert (
        fields.status_member("a b", fwd="stale", detail='say "why"\n')
        == '"a b";fwd=stale;detail="say \\"why\\""'
    )
    assert fields.with_status([("Cache-Status", "inner; hit")], "outer; hit") == [
        ("Cache-Status", "inner; hit, outer; hit")
    ]


# -- targeted Cache-Control (RFC 9213) ------------------------------------------------------------------


@dataclass
class TargetCase:
    id: str
    headers: tuple[tuple[str, str], ...]
    cached: bool
    options: dict[str, Any] = field(default_factory=dict)
    advance: float = 0.0


TARGET_CASES = [
    TargetCase(
        "cdn-field-wins-over-no-store",
        (("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")),
        True,
    ),
    TargetCase(
        "own-field-wins-over-cdn-field",
        (("CDN-Cache-Control", "max-age=60"), ("Cachekit-Cache-Control", "no-store")),
        False,
    ),
    TargetCase(
        "own-field-stores-what-cache-control-forbids",
        (("Cache-Control", "private"), ("Cachekit-Cache-Control", "max-age=60")),
        True,
    ),
    TargetCase(
        "invalid-targeted-field-is-ignored",
        (("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=6 0")),
        False,
    ),
    TargetCase(
        "invalid-own-field-falls-to-the-next",
        (("Cachekit-Cache-Control", 'max-age="x'), ("CDN-Cache-Control", "no-store")),
        False,
    ),
    TargetCase(
        "targeted-lifetime-wins",
        (("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "max-age=10")),
        False,
        advance=20,
    ),
    TargetCase(
        "cache-control-lifetime-without-targeted", (("Cache-Control", "max-age=3600"),), True, advance=20
    ),
    TargetCase(
        "expires-ignored-under-a-targeted-field",
        (("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("CDN-Cache-Control", "max-age=60")),
        True,
    ),
    TargetCase("false-boolean-is-no-directive", (("CDN-Cache-Control", "no-store=?0, max-age=60"),), True),
    TargetCase(
        "no-target-fields-reads-cache-control-only",
        (("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")),
        False,
        {"target_fields": ()},
    ),
    TargetCase(
        "a-configured-target-field",
        (("Cache-Control", "no-store"), ("Edge-Cache-Control", "max-age=60")),
        True,
        {"target_fields": ["Edge-Cache-Control"]},
    ),
    TargetCase(
        "a-field-not-on-the-list-changes-nothing",
        (("Cache-Control", "no-store"), ("Other-Cache-Control", "max-age=60")),
        False,
    ),
    TargetCase("targeted-private-is-not-stored", (("CDN-Cache-Control", "private"),), False),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in TARGET_CASES])
def test_targeted_field_precedence(case: TargetCase, shell: str, clock: FakeClock) -> None:
    """Which field decides storage, through the WSGI and the ASGI shell."""
    app = App(headers=case.headers)
    status, headers, body = run(shell, clock, app, [Step(), Step(advance=case.advance)], **case.options)
    assert body == (b"v1" if case.cached else b"v2")
    # The client and downstream caches get the response's own Cache-Control.
    own = dict(case.headers).get("Cache-Control")
    if own is not None:
        assert http.header(headers, "cache-control") == own


@pytest.mark.parametrize("shell", SHELLS)
def test_a_targeted_lifetime_is_not_told_to_the_client(shell: str, clock: FakeClock) -> None:
    """A page kept for CDN-Cache-Control's max-age gets no Cache-Control or Expires of ours."""
    plain = Shell(shell, App(), clock=clock)
    targeted = Shell(shell, App(headers=[("CDN-Cache-Control", "max-age=600")]), clock=clock)
    try:
        plain(environ_for())
        told = plain(environ_for())
        targeted(environ_for())
        hit = targeted(environ_for())
    finally:
        plain.close()
        targeted.close()
    assert http.header(told[1], "cache-control") == "max-age=60"  # the default lifetime is told
    assert hit[2] == b"v1"
    assert http.header(hit[1], "cache-control") is None
    assert http.header(hit[1], "expires") is None


@pytest.mark.parametrize("shell", SHELLS)
def test_cdn_cache_control_is_set_for_downstream_caches(shell: str, clock: FakeClock) -> None:
    """On stored responses (miss and hit) only; the app's own value wins; our own cache ignores it."""
    app = App(
        headers=lambda n: [("Cache-Control", "max-age=10")] if n != 3 else [("Cache-Control", "private")]
    )
    engine = Shell(shell, app, clock=clock, cdn_cache_control="max-age=600, stale-while-revalidate=30")
    own = Shell(
        shell, App(headers=[("CDN-Cache-Control", "max-age=5")]), clock=clock, cdn_cache_control="max-age=600"
    )
    try:
        miss = engine(environ_for())
        hit = engine(environ_for())
        clock.advance(20)  # stale for us (max-age=10) although the CDN value says 600
        again = engine(environ_for())
        clock.advance(20)
        private = engine(environ_for())
        kept = own(environ_for())
    finally:
        engine.close()
        own.close()
    assert (miss[2], hit[2], again[2]) == (b"v1", b"v1", b"v2")
    for answer in (miss, hit, again):
        assert http.header(answer[1], "cdn-cache-control") == "max-age=600, stale-while-revalidate=30"
    assert http.header(private[1], "cdn-cache-control") is None
    assert http.header(kept[1], "cdn-cache-control") == "max-age=5"


def test_cdn_cache_control_must_be_a_dictionary() -> None:
    with pytest.raises(ValueError, match="cdn_cache_control"):
        PageOptions(cdn_cache_control="max-age=6 0")
    with pytest.raises(TypeError, match="target_fields"):
        PageOptions(target_fields="cdn-cache-control")
    with pytest.raises(ValueError, match="cache_status_name"):
        PageOptions(cache_status_name="caché")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60, no-store", {"max-age": "60", "no-store": None}),
        ('private="set-cookie"', {"private": "set-cookie"}),
        ('no-cache=("set-cookie" "x-id")', {"no-cache": "set-cookie, x-id"}),
        ("max-age=60;x=1", {"max-age": "60"}),
        ("max-age=", None),
        ("", None),
        ("MAX-AGE=60", None),  # dictionary keys are lower-case
    ],
)
def test_targeted_directives(value: str, expected: dict[str, str | None] | None) -> None:
    assert fields.targeted_directives([("CDN-Cache-Control", value)], ("cdn-cache-control",)) == expected


# -- surrogate keys --------------------------------------------------------------------------------


SURROGATE = [("Surrogate-Key", "news  story-1"), ("Cache-Tag", "front,sport"), ("xkey", "author-7")]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("tag", ["news", "story-1", "front", "sport", "author-7"])
def test_declared_tags_invalidate_the_page(shell: str, tag: str, clock: FakeClock) -> None:
    """Each declared key becomes a page tag: invalidating it drops the page; another tag does not."""
    engine = Shell(shell, App(headers=SURROGATE), clock=clock)
    try:
        miss = engine(environ_for())
        engine.invalidate_tags("unrelated")
        hit = engine(environ_for())
        engine.invalidate_tags(tag)
        after = engine(environ_for())
    finally:
        engine.close()
    assert (miss[2], hit[2], after[2]) == (b"v1", b"v1", b"v2")
    for answer in (miss, hit, after):
        for name in ("surrogate-key", "cache-tag", "xkey"):
            assert http.header(answer[1], name) is None, f"{name} reached the client"


@pytest.mark.parametrize("shell", SHELLS)
def test_declared_tags_join_the_known_ones(shell: str, clock: FakeClock) -> None:
    engine = Shell(shell, App(headers=[("Surrogate-Key", "story-1")]), clock=clock, tags=["section"])
    try:
        engine(environ_for())
        engine.invalidate_tags("section")
        first = engine(environ_for())
        engine.invalidate_tags("story-1")
        second = engine(environ_for())
    finally:
        engine.close()
    assert (first[2], second[2]) == (b"v2", b"v3")


@pytest.mark.parametrize("shell", SHELLS)
def test_surrogate_keys_exposed_and_configured(shell: str, clock: FakeClock) -> None:
    """expose_surrogate_keys sends them on; surrogate_key_headers picks which headers are read."""
    exposed = Shell(shell, App(headers=SURROGATE), clock=clock, expose_surrogate_keys=True)
    custom = Shell(
        shell,
        App(headers=[("X-Tags", "a b"), ("Surrogate-Key", "c")]),
        clock=clock,
        surrogate_key_headers=["X-Tags"],
    )
    try:
        shown = exposed(environ_for())
        exposed(environ_for())
        custom(environ_for())
        custom.invalidate_tags("c")  # not a tag here: Surrogate-Key is not read
        kept = custom(environ_for())
        custom.invalidate_tags("b")
        dropped = custom(environ_for())
    finally:
        exposed.close()
        custom.close()
    assert http.header(shown[1], "surrogate-key") == "news  story-1"
    assert http.header(shown[1], "xkey") == "author-7"
    assert (kept[2], dropped[2]) == (b"v1", b"v2")
    assert http.header(kept[1], "x-tags") is None
    assert http.header(kept[1], "surrogate-key") == "c"


@pytest.mark.parametrize("shell", SHELLS)
def test_surrogate_keys_stripped_from_responses_not_stored(shell: str, clock: FakeClock) -> None:
    _, headers, _ = run(
        shell, clock, App(headers=[("Cache-Control", "private"), ("Surrogate-Key", "a")]), ONE
    )
    assert http.header(headers, "surrogate-key") is None


def test_surrogate_key_parsing() -> None:
    headers = [("Surrogate-Key", "a b  a"), ("cache-tag", "c, d,e"), ("XKEY", "f")]
    assert fields.surrogate_keys(headers, fields.SURROGATE_KEY_HEADERS) == ("a", "b", "c", "d", "e", "f")
    assert fields.surrogate_keys(headers, ()) == ()


def test_an_invalidation_during_a_re_render_wins_for_tags_the_page_declared_before() -> None:
    """WSGI: the stored page's declared tags are read before the re-render, as ``tags=`` are.

    Re-renders of a page invalidated by tag, and of a stale page within its
    stale windows (the page is still stored, so its tags are known).
    """
    clock = FakeClock(NOW)
    cache = Cache(LocMemBackend("edge-rerender", clock=clock), clock=clock)
    invalidate_on: set[int] = {2, 4}

    def headers(n: int) -> Headers:
        if n in invalidate_on:
            cache.invalidate_tags("story-1")  # lands while the page is (re-)rendered
        declared = "story-1" if n < 6 else "story-2"
        return [("Cache-Control", "max-age=10, stale-while-revalidate=30"), ("Surrogate-Key", declared)]

    app = App(headers=headers)
    # Inline re-renders, in request order (in the background: tests/pages/test_background.py).
    engine = PageCache(cache=cache, background_revalidate=False)

    def fetch() -> bytes:
        return wsgi.call_app(lambda e, s: engine(app, e, s), environ_for("/story"))[2]

    try:
        bodies = [fetch()]
        cache.invalidate_tags("story-1")  # published: the page goes
        bodies += [fetch(), fetch()]  # v2 rendered while story-1 changed again: not kept
        bodies.append(fetch())
        clock.advance(15)  # stale, within stale-while-revalidate: this request re-renders
        bodies += [fetch(), fetch(), fetch()]  # v4 rendered while story-1 changed: not kept
        clock.advance(15)
        bodies.append(fetch())  # v6 declares story-2 only: story-1 of the page before is dropped
        cache.invalidate_tags("story-1")
        bodies.append(fetch())
    finally:
        cache.clear()
    assert bodies == [b"v1", b"v2", b"v3", b"v3", b"v4", b"v5", b"v5", b"v6", b"v6"]


def test_an_invalidation_during_a_re_render_wins_under_asgi() -> None:
    """ASGI: a page invalidated by tag, re-rendered while the tag changes again, is not kept."""
    import asyncio

    from cachekit.aio import AsyncCache
    from cachekit.aio_views import AsyncPageCache
    from cachekit.backends.aio_locmem import AsyncLocMemBackend
    from tests.asgi import call_asgi
    from tests.pages.shells import scope_for

    clock = FakeClock(NOW)
    calls: list[int] = []

    async def scenario() -> list[bytes]:
        cache = AsyncCache(AsyncLocMemBackend("edge-rerender-asgi", clock=clock), clock=clock)
        engine = AsyncPageCache(cache=cache)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            calls.append(1)
            if len(calls) == 2:
                await cache.invalidate_tags("story-1")
            headers = [(b"cache-control", b"max-age=60"), (b"surrogate-key", b"story-1")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"v%d" % len(calls)})

        async def served(scope: Any, receive: Any, send: Any) -> None:
            await engine(app, scope, receive, send)

        async def fetch() -> bytes:
            return (await call_asgi(served, scope_for(environ_for("/story")), b"")).body

        bodies = [await fetch()]
        await cache.invalidate_tags("story-1")
        bodies += [await fetch(), await fetch(), await fetch()]
        await cache.clear()
        return bodies

    assert asyncio.run(scenario()) == [b"v1", b"v2", b"v3", b"v3"]
