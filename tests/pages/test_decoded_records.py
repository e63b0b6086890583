"""Issue 21: a record read from a server is parsed once per process, by its exact bytes."""

from __future__ import annotations

import pytest

from cachekit.pages import record
from cachekit.pages.record import decode
from cachekit.pages.record import encode
from cachekit.pages.record import make_page
from cachekit.pages.rules import Storability


def _page(body: bytes) -> tuple[object, ...]:
    return make_page(
        "200 OK",
        [("Content-Type", "text/html")],
        body,
        now=1000.0,
        verdict=Storability(60.0),
        etag=None,
        generations=(),
    )


def test_equal_bytes_give_the_one_decoded_page() -> None:
    data = encode(_page(b"hello"))
    first = decode(bytes(bytearray(data)))  # another bytes object, as each server reply is
    assert first == _page(b"hello")
    assert decode(bytes(bytearray(data))) is first


def test_different_bytes_are_never_taken_for_a_kept_page() -> None:
    kept = decode(encode(_page(b"one")))
    other = decode(encode(_page(b"two")))
    assert kept is not None
    assert other is not None
    assert (kept[3], other[3]) == (b"one", b"two")
    assert decode(encode(_page(b"one"))[:-1] + b"X")[3] == b"onX"  # type: ignore[index]


def test_large_pages_are_parsed_each_time() -> None:
    data = encode(_page(b"x" * (record._DECODED_MAX_RECORD + 1)))
    first = decode(data)
    assert first is not None
    assert decode(bytes(bytearray(data))) is not first
    assert data not in record._DECODED


def test_the_kept_decodes_stay_within_their_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "_DECODED_BUDGET", 4096)
    monkeypatch.setattr(record, "_DECODED", {})
    monkeypatch.setattr(record, "_decoded_bytes", 0)
    for n in range(100):
        assert decode(encode(_page(b"%d" % n * 50))) is not None
        assert sum(map(len, record._DECODED)) <= 4096
    assert record._DECODED


def test_what_is_not_a_record_is_not_kept() -> None:
    assert decode(b"not a record") is None
    assert b"not a record" not in record._DECODED
