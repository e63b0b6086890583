"""Red-team review of this session's new rules: each test pins a property an attack tried to break.

Edge purges (hostile URLs, tags, patterns and queued items), Varnish's purge ACL, the
one-round-trip page hint, records decoded once per process, background re-renders,
the near cache's decoded-value memo and the itsdangerous-signed session cookie.
Defects found are in the red-team report, not here: every test below passes and can fail.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import pytest

import cachekit
from cachekit.edge import InvalidPurgeError
from cachekit.edge import MemoryPurgeQueue
from cachekit.edge import PurgeJob
from cachekit.edge import Purges
from cachekit.edge import QueuedPurge
from cachekit.edge import VarnishPurger
from cachekit.edge import fastly_purger
from cachekit.exceptions import BackendUnavailableError
from cachekit.pages.engine import LOOKUP_KEY
from cachekit.pages.record import decode
from sessions.session import Session
from sessions.stores.cookie import SignedCookieStore
from tests import servers
from tests import wsgi
from tests.conftest import FakeClock
from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for
from tests.recorder import Recorder
from tests.recorder import serving

TOKEN = "red-team-api-token-0123"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder(pages=True)
    with serving(server):
        yield server


# -- 1. edge purges: nothing hostile reaches a proxy --------------------------------------------

HOSTILE_URLS = [
    "http://example.com/a\r\nX-Injected: 1",
    "http://example.com/a\nBAN / HTTP/1.1",
    "http://example.com/a b",
    "http://example.com/a\tb",
    "http://example.com/a\x00",
    "http://example.com/\u2028x",  # a Unicode line separator: not ASCII
    "http://user:pw@example.com/",  # its netloc would become the Host header
    "//example.com/relative",
    "javascript:alert(1)",
]
HOSTILE_TAGS = ["a\r\nxkey: *", "a b", "a,b", 'a"b', "a\x7f", "é", ""]
HOSTILE_PATTERNS = ["^/a\r\nHost: x", "^/a b", "(", "^/a\x0b"]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_url_is_refused_before_any_request(recorder: Recorder, url: str) -> None:
    purges = Purges(
        None, [VarnishPurger([recorder.origin]), fastly_purger("SID", TOKEN, endpoint=recorder.origin)]
    )
    with pytest.raises(InvalidPurgeError):
        purges.purge(url)
    with pytest.raises(InvalidPurgeError):
        purges.purge_prefix(url)
    assert recorder.requests == []


@pytest.mark.parametrize("tag", HOSTILE_TAGS)
def test_a_hostile_tag_is_refused_before_any_request(recorder: Recorder, tag: str) -> None:
    purges = Purges(None, [VarnishPurger([recorder.origin])])
    with pytest.raises(InvalidPurgeError):
        purges.invalidate_tags("fine", tag)
    assert recorder.requests == []


@pytest.mark.parametrize("pattern", HOSTILE_PATTERNS)
def test_a_hostile_ban_pattern_is_refused_before_any_request(recorder: Recorder, pattern: str) -> None:
    purges = Purges(None, [VarnishPurger([recorder.origin])])
    with pytest.raises(InvalidPurgeError):
        purges.ban(pattern)
    assert recorder.requests == []


def test_a_queued_job_is_checked_again_when_read_back() -> None:
    """A queue is data: a member planted with a CRLF URL never becomes a request."""
    planted = '["varnish","http://127.0.0.1:1","[\\"url\\",[\\"http://x/\\\\r\\\\nX: y\\"],false]"]'
    with pytest.raises(InvalidPurgeError):
        QueuedPurge.from_member(planted)
    with pytest.raises(InvalidPurgeError):
        PurgeJob.from_json('["exec",["x"],false]')


def test_a_purge_to_an_api_never_shows_its_token(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.server_close()  # unreachable: the purge is queued and logged
    queue = MemoryPurgeQueue()
    purges = Purges(None, [fastly_purger("SID", TOKEN, endpoint=recorder.origin)], queue=queue)
    with caplog.at_level("DEBUG", logger="cachekit.edge"):
        report = purges.invalidate_tags("news")
        request = purges.purgers["fastly"].request(PurgeJob.tags(["news"]), recorder.origin)
    assert report.queued
    shown = [caplog.text, repr(report), repr(purges), repr(request), *(item.member for item in queue.items())]
    assert all(TOKEN not in text for text in shown)


def test_the_caches_redis_password_never_shows_when_its_purge_queue_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down, varnish = servers.free_port(), servers.free_port()  # nothing listens on either
    cache = cachekit.from_url(f"redis://:sup3r-secret-pw@127.0.0.1:{down}/0?socket_connect_timeout=0.5")
    purges = Purges(cache, [VarnishPurger([f"127.0.0.1:{varnish}"])])
    with caplog.at_level("DEBUG"):
        with pytest.raises(BackendUnavailableError) as raised:
            purges.invalidate_tags("news")  # our cache is down: said, after the proxies were tried
        with pytest.raises(BackendUnavailableError) as url_raised:
            purges.purge("http://example.com/")  # a URL purge too (issue 18 D14), after the proxies
    assert f"purge for varnish http://127.0.0.1:{varnish} not queued" in caplog.text  # the queue is down too
    shown = [caplog.text, str(raised.value), repr(raised.value), repr(purges), str(url_raised.value)]
    assert all("sup3r-secret-pw" not in text for text in shown)


def test_the_memory_purge_queue_is_bounded_and_holds_a_repeated_purge_once() -> None:
    queue = MemoryPurgeQueue(max_length=3)
    job = PurgeJob.urls(["http://example.com/"])
    for n in range(5):
        assert queue.put(QueuedPurge("varnish", f"http://127.0.0.1:{n + 1}", job), 0.0) is (n < 3)
    assert queue.put(QueuedPurge("varnish", "http://127.0.0.1:1", job), 0.0)  # already held: noted again
    assert len(queue) == 3


# -- 1a. soft purge: never undoes a hard one -----------------------------------------------------


class _HardPurgeDuring:
    """A cache through which a soft purge runs while another process hard-purges at ``step``."""

    def __init__(self, cache: Any, step: str) -> None:
        self._cache, self._step, self.fired = cache, step, False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._cache, name)
        if name != self._step:
            return real

        def racing(*args: Any, **kwargs: Any) -> Any:
            if not self.fired:
                self.fired = True
                self._cache.invalidate_tags("news")  # the hard purge lands here
            return real(*args, **kwargs)

        return racing


@pytest.mark.parametrize("step", ["incr", "set"], ids=["before-its-incr", "before-its-marker"])
def test_a_hard_purge_racing_a_soft_one_is_never_undone(step: str) -> None:
    from cachekit import Cache
    from cachekit.backends.locmem import LocMemBackend
    from cachekit.pages.soft import soft_invalidate_tags
    from cachekit.pages.soft import soft_since
    from cachekit.tags import current_generations

    clock = FakeClock()
    cache = Cache(LocMemBackend(f"redteam-soft-{uuid.uuid4().hex[:8]}", clock=clock), clock=clock)
    before = current_generations(cache, ["news"])  # a page stored before both purges
    soft_invalidate_tags(cache, ["news"])
    assert soft_since(cache, before) == clock()  # soft alone: stale since the purge
    stored = current_generations(cache, ["news"])  # a page stored after that soft purge
    racing = _HardPurgeDuring(cache, step)
    soft_invalidate_tags(racing, ["news"])
    assert racing.fired
    assert soft_since(cache, before) is None  # hard-purged: never served again, not even stale
    assert soft_since(cache, stored) is None


# -- 1b. Varnish's ACL: no header makes a client a purger ----------------------------------------


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection((servers.HOST, port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_varnish_refuses_purges_whatever_a_client_claims_and_strips_purge_headers(recorder: Recorder) -> None:
    from tests.edge.conftest import start_varnish

    # Only 192.0.2.1 (TEST-NET-1, nobody here) may purge: the test client on 127.0.0.1 may not.
    varnish = start_varnish(recorder.server_address[1], purgers=("192.0.2.1",))
    try:
        port, host = varnish.port, varnish.address.encode()
        get = b"GET /acl HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host
        assert b"page /acl" in _raw(port, get)
        claims = (
            b"Host: %s\r\nX-Forwarded-For: 192.0.2.1\r\n" % host,
            b"Host: %s\r\nX-Real-IP: 192.0.2.1\r\nForwarded: for=192.0.2.1\r\n" % host,
            b"Host: cachekit-purge\r\n",  # the Host the purgers send for tags and bans
            b"Host: 192.0.2.1\r\nX-Forwarded-For: 127.0.0.1, 192.0.2.1\r\n",
        )
        for claim in claims:
            for line in (b"PURGE /acl", b"BAN /", b"PURGE /", b"PURGE http://192.0.2.1/acl"):
                answer = _raw(
                    port,
                    line + b" HTTP/1.1\r\n%sxkey: redteam\r\nCachekit-Ban: ^/\r\n"
                    b"Connection: close\r\n\r\n" % claim,
                )
                assert answer.startswith(b"HTTP/1.1 405"), (claim, line, answer[:120])
        assert b"HIT" in _raw(port, get.replace(b"Connection", b"X-Probe: 1\r\nConnection"))
        # Purge headers on an ordinary request never reach the app.
        sneaky = (
            b"GET /other HTTP/1.1\r\nHost: %s\r\nxkey: redteam\r\nxkey-softpurge: redteam\r\n"
            b"Cachekit-Ban: ^/\r\nCachekit-Soft-Purge: 1\r\nConnection: close\r\n\r\n" % host
        )
        assert b"page /other" in _raw(port, sneaky)
        sent = {
            name.lower() for _, path, headers, _ in recorder.requests if path == "/other" for name in headers
        }
        assert sent, recorder.requests
        assert sent.isdisjoint({"xkey", "xkey-softpurge", "cachekit-ban", "cachekit-soft-purge"})
        assert b"HIT" in _raw(port, get)  # and nothing above purged /acl
    finally:
        varnish.stop()


# -- 2. the one-round-trip hint and records decoded once -----------------------------------------


class _ByLanguage:
    """A page per Accept-Language: ``<lang> render <n>``; ``Vary: Accept-Language``."""

    def __init__(self) -> None:
        self.renders = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.renders += 1
        lang = environ.get("HTTP_ACCEPT_LANGUAGE", "none")
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
        )
        return [f"{lang} render {self.renders}".encode()]


@pytest.mark.parametrize("kind", SHELLS)
def test_a_stale_hint_never_serves_another_variant_or_a_purged_page(redis_url: str, kind: str) -> None:
    prefix = {"key_prefix": f"redteam-{uuid.uuid4().hex[:8]}"}
    app = _ByLanguage()
    # Two processes on one Redis: each page cache has its own hints.
    first = Shell(kind, app, url=redis_url, cache_options=prefix)
    second = Shell(kind, app, url=redis_url, cache_options=prefix)

    def served(shell: Shell, lang: str) -> bytes:
        return shell(environ_for("/hinted", headers={"Accept-Language": lang}))[2]

    try:
        assert served(first, "en") == b"en render 1"
        assert served(first, "en") == b"en render 1"  # the hint is learned: one round trip
        assert served(first, "fr") == b"fr render 2"
        for _ in range(2):  # the hint names the other variant's key each time: never its page
            assert served(first, "en") == b"en render 1"
            assert served(first, "fr") == b"fr render 2"
        assert second.purge("http://example.com/hinted")  # another process purges and re-renders
        assert served(second, "en") == b"en render 3"
        assert served(first, "en") == b"en render 3"  # first's hint still names render 1's key
        assert served(first, "fr") == b"fr render 4"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("tags", [[], ["news"]], ids=["one-trip-hit", "tagged-hit"])
def test_a_record_decoded_once_is_deeply_immutable_so_no_request_can_change_it_for_another(
    redis_url: str, tags: list[str]
) -> None:
    shell = Shell("wsgi", _ByLanguage(), url=redis_url, tags=tags)
    try:
        environ = environ_for("/page", headers={"Accept-Language": "en"})
        assert shell(dict(environ))[2] == b"en render 1"
        keys = [key for key in shell.engine.keys_for(dict(environ)) if not key.startswith(LOOKUP_KEY)]
        raw = shell.cache.backend.get(shell.cache.make_key(keys[0]))
        assert type(raw) is bytes
        page = decode(raw)
        assert page is not None
        assert decode(bytes(raw)) is page

        def frozen(value: Any) -> bool:
            if type(value) is tuple:
                return all(frozen(item) for item in value)
            return type(value) in (str, bytes, int, float, bool, type(None))

        assert frozen(page)  # headers, tags, body: nothing a request could mutate in place
        # PEP 3333 lets whoever receives the headers change the list: a hit hands out its own.
        seen: list[list[tuple[str, str]]] = []

        def site(env: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                headers.append(("Set-Cookie", "sid=" + env["HTTP_ACCEPT_LANGUAGE"]))
                seen.append(list(headers))
                return start_response(status, headers, exc_info)

            return shell.engine(shell.app, env, start)

        assert wsgi.call_app(site, dict(environ))[2] == b"en render 1"
        assert wsgi.call_app(site, dict(environ))[2] == b"en render 1"
        assert [value for name, value in seen[-1] if name == "Set-Cookie"] == ["sid=en"]
        assert decode(raw) is page
        assert frozen(page)
    finally:
        shell.close()


# -- 3. background re-renders share nothing the inline render would not -------------------------


class _Personal:
    """Public for anonymous requests; for a credential (cookie or Authorization) a private page.

    Adds ``Vary: Cookie`` only when a cookie came (as session middlewares do), never ``public``.
    """

    def __init__(self) -> None:
        self.renders = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.renders += 1
        who = environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_COOKIE") or "anonymous"
        headers = [("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=10")]
        if environ.get("HTTP_COOKIE"):
            headers = [("Content-Type", "text/plain"), ("Cache-Control", "max-age=10"), ("Vary", "Cookie")]
        elif environ.get("HTTP_AUTHORIZATION"):
            headers = [("Content-Type", "text/plain"), ("Cache-Control", "max-age=10")]
        start_response("200 OK", headers)
        return [f"{who} render {self.renders}".encode()]


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
@pytest.mark.parametrize("credential", [{"Cookie": "sid=alice"}, {"Authorization": "Bearer alice"}])
@pytest.mark.parametrize("kind", SHELLS)
def test_a_re_render_for_a_users_request_is_never_stored_for_others(
    kind: str, credential: dict[str, str], background: bool
) -> None:
    clock, app = FakeClock(), _Personal()
    shell = Shell(kind, app, clock=clock, stale_while_revalidate=30, background_revalidate=background)
    try:
        assert shell(environ_for("/p"))[2] == b"anonymous render 1"
        clock.advance(15)  # stale, within its window
        answered = shell(environ_for("/p", headers=credential))[2]
        # In the background: answered stale at once; inline: alice's own render, not shared.
        assert answered == b"anonymous render 1" if background else b"alice" in answered
        workers = shell.engine.background

        def settle() -> None:
            assert workers.wait(5) if shell._runner is None else shell._runner.run(workers.wait(5))

        settle()
        assert app.renders == 2  # alice's request re-rendered, in the background or inline
        # Her render was not stored: not for her cookie to get back (after a logout), nor for others.
        assert b"alice render 2" not in shell(environ_for("/p", headers=credential))[2]
        settle()
        assert app.renders == 3
        for _ in range(2):
            served = shell(environ_for("/p"))[2]
            assert b"alice" not in served, served
    finally:
        shell.close()


# -- 4. the near cache's decoded-value memo ------------------------------------------------------


class _Label(str):
    """A str subclass (may carry attributes): not an atom, so never shared."""


def test_near_hits_never_share_a_value_a_caller_can_mutate(redis_url: str) -> None:
    cache = cachekit.from_url(redis_url + "?near_cache=100", key_prefix=f"redteam-{uuid.uuid4().hex[:8]}")
    near = cache.backend.near
    try:
        assert near.wait_ready(5.0)
        cache.set("nested", ("a", ["b"]))
        cache.set("label", _Label("x"))
        for _ in range(3):  # the first reads fill the near cache; later ones hit it
            mine = cache.get("nested")
            mine[1].append("mutated")
            assert cache.get("nested") == ("a", ["b"])
            label = cache.get("label")
            label.note = "mutated"  # type: ignore[attr-defined]
            assert not hasattr(cache.get("label"), "note")
        assert near.lookup(cache.make_key("nested")) is not None
        assert cache.make_key("nested") not in near.decoded
        assert cache.make_key("label") not in near.decoded
    finally:
        cache.clear()
        cache.backend.close()


# -- 5. the itsdangerous-signed session cookie ---------------------------------------------------

KEY = "red-team-cookie-key-0123456789abcdefgh"


def _cookie(store: SignedCookieStore, predicate: Callable[[str], bool] = lambda sig: True) -> str:
    for n in range(500):
        session = Session(store)
        session.update({"user": "ada", "n": n})
        value = session.save()
        if predicate(value.rpartition(".")[2]):
            return value
    raise AssertionError("no cookie with such a signature in 500 tries")


def _variants(value: str) -> dict[str, str]:
    payload, _, sig = value.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 20 HMAC-SHA1 bytes in 27 characters: the last one's two low bits are unused by the decoder.
    loose = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    assert base64.urlsafe_b64decode(loose + "=") == base64.urlsafe_b64decode(sig + "=")
    return {
        "padded": f"{payload}.{sig}=",
        "non-canonical last character": f"{payload}.{loose}",
        "standard alphabet": f"{payload}.{sig.replace('-', '+').replace('_', '/')}",
        "whitespace": f"{payload}. {sig}",
        "payload padded": f"{payload}=.{sig}",
        "truncated": f"{payload}.{sig[:-1]}",
    }


def test_a_signed_cookie_loads_only_in_the_exact_form_it_was_signed() -> None:
    store = SignedCookieStore(KEY)
    value = _cookie(store, lambda sig: "-" in sig or "_" in sig)
    assert store.load(value) is not None
    for name, variant in _variants(value).items():
        assert store.load(variant) is None, name


def test_a_cookie_signed_for_another_salt_or_by_a_retired_key_is_handled_as_such() -> None:
    other_salt = _cookie(SignedCookieStore(KEY, salt="another.purpose"))
    assert SignedCookieStore(KEY).load(other_salt) is None
    retired = _cookie(SignedCookieStore("an-older-key-0123456789abcdefghijkl"))
    rotated = SignedCookieStore([KEY, "an-older-key-0123456789abcdefghijkl"])
    state = rotated.load(retired)
    assert state is not None
    assert state.stale
    assert SignedCookieStore(KEY).load(retired) is None  # once the old key is dropped, it ends


def test_a_cookie_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from sessions.stores import cookie

    store = SignedCookieStore(KEY)
    value = _cookie(store)
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(cookie.hmac, "compare_digest", spy)
    assert store.load(value) is not None
    assert store.load(value[:-2] + ("AA" if value[-2:] != "AA" else "BB")) is None
    assert len(compared) == 2
