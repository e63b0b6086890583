"""The stored page as plain data: encode/decode round trips, and anything else reads as a miss."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from cachekit.pages.options import PageOptions
from cachekit.pages.record import MARK
from cachekit.pages.record import SessionUse
from cachekit.pages.record import decode
from cachekit.pages.record import encode
from cachekit.pages.record import make_page
from cachekit.pages.record import new_lookup
from cachekit.pages.record import session_use
from cachekit.pages.rules import Storability

PAGE = make_page(
    "200 OK",
    [("Content-Type", "text/html"), ("X-Ünïcode", "välue")],
    b"\x00body\nwith newlines\xff",
    now=1000.0,
    verdict=Storability(60.0, stale_if_error=30.0, shareable_with_auth=True),
    etag='"abc"',
    generations=(("news", 7),),
)


def test_a_page_round_trips() -> None:
    data = encode(PAGE)
    assert data.startswith(MARK.encode() + b"\n")
    assert decode(data) == PAGE


def test_a_lookup_record_round_trips() -> None:
    lookup = new_lookup(["accept-language", "cookie"], None)
    assert decode(encode(lookup)) == lookup
    assert new_lookup(["x"], lookup)[2] == lookup[2]  # the nonce is kept


def _fields(page: tuple[Any, ...]) -> list[Any]:
    return json.loads(encode(page).split(b"\n", 2)[1])


def _with(index: int, value: Any) -> bytes:
    fields = _fields(PAGE)
    fields[index] = value
    return MARK.encode() + b"\n" + json.dumps(fields).encode() + b"\n" + PAGE[3]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pickle.dumps(PAGE), id="pickle-of-a-page"),
        pytest.param(pickle.dumps({"x": 1}), id="pickle"),
        pytest.param(b"", id="empty"),
        pytest.param(b"cachekit.page/1\n[]\n", id="older-layout"),
        pytest.param(b"cachekit.page/3\n[]\n", id="newer-layout"),
        pytest.param(MARK.encode() + b"\n", id="no-fields"),
        pytest.param(MARK.encode() + b"\n{not json\nbody", id="bad-json"),
        pytest.param(MARK.encode() + b"\n[1, 2]\nbody", id="too-few-fields"),
        pytest.param(_with(0, 200), id="status-not-str"),
        pytest.param(_with(1, [["a", 1]]), id="header-value-not-str"),
        pytest.param(_with(1, {"a": "b"}), id="headers-not-a-list"),
        pytest.param(_with(2, "now"), id="time-not-a-number"),
        pytest.param(_with(8, "yes"), id="flag-not-bool"),
        pytest.param(_with(9, [["news", "7"]]), id="generation-not-int"),
        pytest.param(b'cachekit.vary/2\n[[1], "n"]', id="lookup-name-not-str"),
        pytest.param(b"cachekit.vary/2\n{}", id="lookup-not-a-list"),
    ],
)
def test_anything_else_reads_as_a_miss(data: bytes) -> None:
    assert decode(data) is None


def test_objects_that_are_not_bytes_read_as_a_miss() -> None:
    assert decode(PAGE) is None  # a tuple where bytes were expected
    assert decode(None) is None


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        pytest.param({"max_body_size": -1}, ValueError, id="negative-body-size"),
        pytest.param({"stale_if_error": "5"}, ValueError, id="str-window"),
        pytest.param({"max_variants": True}, ValueError, id="bool-count"),
        pytest.param({"tags": "news"}, TypeError, id="one-str-tag"),
        pytest.param({"vary_on": "Accept"}, TypeError, id="one-str-vary"),
        pytest.param({"trusted_forwarded": ["x-real-ip"]}, ValueError, id="not-a-forwarding-header"),
    ],
)
def test_bad_options_fail_at_construction(settings: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        PageOptions(**settings)


def test_options_are_normalized() -> None:
    options = PageOptions(vary_on=["Accept-Language"], trusted_forwarded=["X-Forwarded-Host"], statuses=[200])
    assert options.vary_on == ("accept-language",)
    assert options.trusted_forwarded == ("x-forwarded-host",)
    assert "x-forwarded-host" not in options.untrusted_forwarded
    assert options.statuses == frozenset({200})


def test_settings_cannot_be_changed_on_a_built_page_cache() -> None:
    from cachekit.views import PageCache

    engine = PageCache(60, lock=False)
    assert engine.lock is False  # read as before
    with pytest.raises(AttributeError, match="pass lock=True to the constructor"):
        engine.lock = True  # type: ignore[misc]


class _UnreadableSession:
    """Our Session's shape, whose store is down: reading anything that loads it raises."""

    accessed = False
    modified = False
    flushed = False
    loaded = False

    @property
    def is_new(self) -> bool:
        raise ConnectionError("the session store is down")


def test_an_untouched_session_is_never_read() -> None:
    # A page that never touched its session must not load it: during an outage that raised (a 500).
    assert session_use(_UnreadableSession(), []) is SessionUse.UNUSED
