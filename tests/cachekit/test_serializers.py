"""The serializers' decode paths: the pickle fast path keeps every rule of the slow one."""

from __future__ import annotations

import pickle
import zlib

import pytest

from cachekit.exceptions import SerializationError
from cachekit.serializers import PickleSerializer


@pytest.mark.parametrize("value", ["x" * 100, {"a": [1, 2.5, None]}, b"\x80raw", 2**70, -3.5, ()])
def test_a_pickle_round_trips(value: object) -> None:
    serializer = PickleSerializer()
    data = serializer.dumps(value)
    # str and bytes carry a one-byte tag (tests/cachekit/test_serializer_tags.py), ints are digits.
    assert data[:1] == {str: b"\xf0", bytes: b"\xf1", int: data[:1]}.get(type(value), b"\x80")
    assert serializer.loads(data) == value


def test_ints_stay_digits_and_compressed_values_still_load() -> None:
    serializer = PickleSerializer(compress_threshold=10)
    assert serializer.dumps(42) == b"42"
    assert serializer.loads(b"42") == 42
    data = serializer.dumps("y" * 1000)
    assert data[:1] == b"Z"
    assert serializer.loads(data) == "y" * 1000
    assert serializer.loads(b"Z" + zlib.compress(pickle.dumps([1, 2], 2))) == [1, 2]


@pytest.mark.parametrize("data", [b"\x80\x05garbage", b"\x80", b"Zbroken", b"not a pickle", b""])
def test_undecodable_bytes_are_a_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError, match=f"Cannot deserialize {len(data)} stored bytes"):
        PickleSerializer().loads(data)
