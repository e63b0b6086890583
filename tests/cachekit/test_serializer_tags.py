"""PickleSerializer's tagged str and bytes: loaded without pickle; old pickles load, unknown tags refused."""

from __future__ import annotations

import pickle
import zlib

import pytest

from cachekit import Cache
from cachekit.exceptions import SerializationError
from cachekit.serializers import PickleSerializer
from cachekit.serializers import UnknownFormatError
from cachekit.signing import SignedSerializer
from tests.bytes_backend import BytesBackend

KEY = "k" * 32


class Name(str):
    """A str subclass: must come back as itself, so it is pickled."""


@pytest.mark.parametrize(
    ("value", "tag"),
    [("x" * 100, 0xF0), ("", 0xF0), ("ünïcødé ✓ \x00", 0xF0), (b"\x80raw\xff", 0xF1), (b"", 0xF1)],
)
def test_str_and_bytes_are_tagged(value: str | bytes, tag: int) -> None:
    serializer = PickleSerializer()
    data = serializer.dumps(value)
    assert data[0] == tag
    assert data[1:] == (value.encode() if isinstance(value, str) else value)
    for decoded in (serializer.loads(data), serializer.loads_many([data])[0]):
        assert decoded == value
        assert type(decoded) is type(value)


@pytest.mark.parametrize("value", [Name("x"), "lone \udc80 surrogate", bytearray(b"x"), ["x"]])
def test_other_values_stay_pickles(value: object) -> None:
    serializer = PickleSerializer()
    data = serializer.dumps(value)
    assert data[:1] == b"\x80"
    decoded = serializer.loads(data)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_values_stored_as_plain_pickles_still_load(protocol: int) -> None:
    serializer = PickleSerializer()
    old = [
        pickle.dumps("x" * 100, protocol),
        pickle.dumps(b"raw", protocol),
        pickle.dumps({"a": 1}, protocol),
    ]
    assert [serializer.loads(data) for data in old] == ["x" * 100, b"raw", {"a": 1}]
    assert serializer.loads_many(old) == ["x" * 100, b"raw", {"a": 1}]
    assert serializer.loads_many(iter(old[:1] * 3)) == ["x" * 100] * 3


def test_a_mixed_batch_loads_in_order() -> None:
    serializer = PickleSerializer(compress_threshold=50)
    values = ["a", b"b", 7, "y" * 200, [1], pickle.dumps("old", 2)]
    datas = [serializer.dumps(value) for value in values[:-1]] + [values[-1]]
    assert datas[3][:1] == b"Z"
    assert serializer.loads_many(datas) == [*values[:-1], "old"]


@pytest.mark.parametrize("tag", range(0xF2, 0x100))
def test_an_unknown_tag_is_a_specific_error(tag: int) -> None:
    serializer = PickleSerializer()
    data = bytes([tag]) + b"payload"
    with pytest.raises(UnknownFormatError, match=f"format tag 0x{tag:02X}"):
        serializer.loads(data)
    with pytest.raises(UnknownFormatError):
        serializer.loads(b"Z" + zlib.compress(data))
    with pytest.raises(SerializationError):
        serializer.loads_many([serializer.dumps("ok"), data])


@pytest.mark.parametrize("tag", range(0xF0, 0x100))
def test_a_reader_without_tags_refuses_them(tag: int) -> None:
    # Before the tags, PickleSerializer handed such bytes to pickle.loads, which must refuse
    # them (a miss there) rather than load something else.
    with pytest.raises(pickle.UnpicklingError, match="invalid load key"):
        pickle.loads(bytes([tag]) + pickle.dumps("x", 2))


@pytest.mark.parametrize("data", [b"\xf0\xff\xfe", b"\xf0\xc3"])
def test_a_tagged_str_that_is_not_utf8_is_a_serialization_error(data: bytes) -> None:
    serializer = PickleSerializer()
    with pytest.raises(SerializationError, match=f"Cannot deserialize {len(data)} stored bytes"):
        serializer.loads(data)
    with pytest.raises(SerializationError):
        serializer.loads_many([data, data])


def test_signed_values_sign_the_tagged_bytes() -> None:
    inner = PickleSerializer()
    signed = SignedSerializer(inner, KEY)
    data = signed.dumps_for("ctx", "text")
    assert data.endswith(inner.dumps("text"))
    assert signed.loads_for("ctx", data) == "text"
    with pytest.raises(SerializationError):
        signed.loads_for("ctx", data[:-5] + b"other")


def test_get_many_counts_an_unknown_format_as_undecodable() -> None:
    backend = BytesBackend()
    cache = Cache(backend, key_prefix="p")
    cache.set("new", "text")
    backend.data[cache.make_key("old")] = pickle.dumps("old", 4)
    backend.data[cache.make_key("later")] = b"\xf7from a later version"
    assert cache.get_many(["new", "old", "later", "absent"]) == {"new": "text", "old": "old"}
    assert cache.get("later", "default") == "default"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 3)
