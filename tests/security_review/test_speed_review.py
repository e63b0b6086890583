"""Red-team review of issue 21's speed changes: the guarantees each shortcut must keep.

Serializer tags (``PickleSerializer``'s 0xF0/0xF1 and ``loads_many``), local memory (read and
overwritten inline by the front until 1a083fb reverted it), the Flask session adapter's
hand-built ``Set-Cookie``, ``Vary`` and cookie reading, and session records coded as JSON.
The tests named ``RT-n`` pin a defect of the red-team report (strict xfails until fixed; all
four are fixed now, RT-3 and RT-4 by the revert); the others pin attacks that held and that
the suite did not cover yet.
"""

from __future__ import annotations

import datetime
import pickle
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from cachekit import Cache
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.null import NullBackend
from cachekit.exceptions import BackendUnavailableError
from cachekit.serializers import PickleSerializer
from tests.bytes_backend import BytesBackend

flask = pytest.importorskip("flask")

from werkzeug.http import http_date as werkzeug_http_date  # noqa: E402
from werkzeug.http import parse_cookie  # noqa: E402

from sessions.contrib.flask import CacheKitSessionInterface  # noqa: E402
from sessions.cookies import read_cookie  # noqa: E402
from sessions.stores import CacheStore  # noqa: E402


def _location() -> str:
    return f"speed-review-{uuid.uuid4().hex}"


# -- serializer tags ---------------------------------------------------------------------------


class Name(str):
    """A str subclass: must come back as itself (a pickle), not as a tagged str."""


def test_a_batch_of_tagged_str_with_one_bad_value_keeps_the_good_ones() -> None:
    # loads_many's one-format fast path fails on the bad value; the front must then decode one
    # by one, dropping only that value (counted once as a miss), never the whole batch.
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p")
    for key in "abc":
        cache.set(key, f"text {key}")
    backend.data[cache.make_key("bad")] = b"\xf0\xff\xfe"  # tagged str, not UTF-8
    backend.data[cache.make_key("empty")] = b""  # no first byte at all
    assert cache.get_many(["a", "bad", "b", "empty", "c"]) == {"a": "text a", "b": "text b", "c": "text c"}
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (3, 2)


def test_every_type_comes_back_as_itself_through_get_many() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p", serializer=PickleSerializer(compress_threshold=40))
    values: dict[str, Any] = {
        "str": "x",
        "empty str": "",
        "empty bytes": b"",
        "bytes like a tag": b"\xf0abc",
        "str like a pickle": "\x80\x04",
        "subclass": Name("n"),
        "surrogate": "lone \udc80",
        "bytearray": bytearray(b"\xf1"),
        "long str": "y" * 200,  # compressed: Z + zlib(0xF0 + ...)
        "int": 7,
        "digits str": "7",
    }
    for key, value in values.items():
        cache.set(key, value)
    backend.data[cache.make_key("old")] = pickle.dumps("old", 2)
    got = cache.get_many([*values, "old"])
    assert got == {**values, "old": "old"}
    assert {key: type(value) for key, value in got.items()} == {
        **{key: type(value) for key, value in values.items()},
        "old": str,
    }


# -- local memory (RT-3, RT-4: the inline access, reverted in 1a083fb) ---------------------------


@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_patched_backend_get_is_still_called(where: str) -> None:
    backend = LocMemBackend(_location())
    cache = Cache(backend, key_prefix="p")
    cache.set("k", "v")
    target: Any = backend if where == "instance" else LocMemBackend
    with mock.patch.object(target, "get", side_effect=BackendUnavailableError("down")) as get:
        assert cache.get("k", "default") == "default"  # the outage the test patched in
        assert get.called
    backend.clear()


def test_a_reassigned_backend_is_the_one_read_and_written() -> None:
    old = LocMemBackend(_location())
    cache = Cache(old, key_prefix="p")
    cache.set("k", "v")
    cache.backend = NullBackend()  # a public attribute ("the backend this cache stores into")
    got = cache.get("k", "default")
    cache.set("k", "w")  # same size: must not land in the store the cache no longer holds
    assert (got, old.get(cache.make_key("k"))) == ("default", "v")
    old.clear()


def test_inline_reads_and_overwrites_race_deletes_clears_and_evictions() -> None:
    # Each worker owns its keys: after its own delete it must read nothing, and after its own
    # overwrite the new value or nothing (another worker's clear or eviction), never the old
    # one; meanwhile the others overwrite, delete, clear and evict.
    bounded = LocMemBackend(_location(), max_entries=40, max_bytes=4_000)
    cache = Cache(bounded, key_prefix="p", latency_sample_every=0)
    errors: list[BaseException] = []
    stale: list[tuple[str, Any]] = []

    def work(worker: int) -> None:
        try:
            for n in range(1500):
                key = f"{worker}:{n % 8}"
                old, new = f"{worker}-a" * 4, f"{worker}-b" * 4  # the same size (what the inline path took)
                cache.set(key, old)
                cache.set(key, new)
                got = cache.get(key)
                if got not in (new, None):
                    stale.append((key, got))
                cache.delete(key)
                got = cache.get(key)
                if got is not None:
                    stale.append((key, got))
                cache.set(f"{worker}:fill{n % 50}", "f" * 60)  # evicts under the bounds
                if n % 97 == worker:
                    bounded.clear()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert stale == []
    entries = bounded._data
    assert len(entries) <= 40
    assert bounded._store.size == sum(entry.size for entry in entries.values()) <= 4_000
    bounded.clear()


# -- the Flask session adapter ------------------------------------------------------------------


def _count() -> str:
    flask.session["n"] = flask.session.get("n", 0) + 1
    return str(flask.session["n"])


def _app(store: CacheStore, view: Callable[[], Any] = _count, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(config)
    app.session_interface = CacheKitSessionInterface(store)
    app.add_url_rule("/", "view", view)
    return app


def _store(clock: Callable[[], float] | None = None) -> CacheStore:
    cache = Cache(LocMemBackend(_location()))
    return CacheStore(cache) if clock is None else CacheStore(cache, clock=clock)


class StrictCookies(flask.Response):
    """An app's response class that adds its own cookie policy in ``set_cookie``."""

    def set_cookie(self, key: str, value: str = "", *args: Any, **kwargs: Any) -> None:
        kwargs["samesite"] = "Strict"
        super().set_cookie(key, value, *args, **kwargs)


# RT-1 (fixed in 936eadd): the Set-Cookie template bypassed a response class's own set_cookie.
def test_a_response_class_with_its_own_set_cookie_is_used() -> None:
    app = _app(_store())
    app.response_class = StrictCookies
    (line,) = app.test_client().get("/").headers.getlist("Set-Cookie")
    assert "; SameSite=Strict" in line


# RT-2 (fixed in 936eadd): Expires was the expiry truncated, where Werkzeug rounds to the microsecond.
def test_expires_is_the_date_werkzeug_sends_for_a_fractional_expiry() -> None:
    now = 1_800_000_000.9999997  # the expiry's fraction rounds up at microseconds
    store = _store(clock=lambda: now)

    def view() -> str:
        flask.session.permanent = True
        return _count()

    app = _app(store, view, PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=1))
    line = app.test_client().get("/").headers["Set-Cookie"]
    # What Flask's own interface passes to set_cookie: the session's expiry as a datetime.
    expected = werkzeug_http_date(datetime.datetime.fromtimestamp(now + 3600, datetime.timezone.utc))
    assert f"; Expires={expected};" in line


@pytest.mark.parametrize(
    "app_vary",
    [["*"], ["Cookie", "Accept"], ["accept", "COOKIE"], [""], ["Accept,Cookie"], ["Origin", "Origin"]],
)
def test_vary_is_what_werkzeug_makes_of_the_view_s_vary(app_vary: list[str]) -> None:
    def view() -> Any:
        response = flask.make_response(_count())
        for value in app_vary:
            response.headers.add("Vary", value)
        return response

    response = _app(_store(), view).test_client().get("/")
    werkzeug = flask.Response()
    for value in app_vary:
        werkzeug.headers.add("Vary", value)
    werkzeug.vary.add("Cookie")
    assert response.headers.getlist("Vary") == werkzeug.headers.getlist("Vary")


_ID = "jNG0-Zk9c0qvyKHO5GU7fOsxzYU966bI3GPyjWjY1iA"


@pytest.mark.parametrize(
    "header",
    [
        f"session={_ID}",
        f'a=1; session="{_ID}"; b=2',
        f"session={_ID};session={_ID}",
        f"session={_ID}; session=other",  # another path's cookie: ambiguous
        f"session=; session={_ID}",
        f"xsession={_ID}; sessionx=1",
        f"Session={_ID}",
        f"$Version=1; session={_ID}; $Path=/",
        f"junk\x7f\x01; session={_ID}; =x; ;",
        "session",
        "",
    ],
)
def test_the_session_cookie_is_read_as_werkzeug_reads_it(header: str) -> None:
    # Flask's interface used set(request.cookies.getlist(name)): one distinct value or none.
    values = set(parse_cookie(header).getlist("session"))
    werkzeug = values.pop() if len(values) == 1 else None
    ours = read_cookie(header, "session") if header else None
    assert (ours or None) == (werkzeug or None)
