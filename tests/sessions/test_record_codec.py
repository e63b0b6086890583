"""Session records in JSON: the same bytes as ever, and read back as the serializer reads them, faster.

``TaggedJSONSerializer.dumps`` calls json's C encoder built once; it must write
exactly what ``json.dumps`` of the tagged value with its settings writes (other
processes, the async twin and older code read the same records). ``decode_state``
reads a record without tags past the serializer's per-object hook, and must read
back exactly what the serializer's ``loads`` gives, for records with tags in them,
malformed ones and look-alikes of tags included.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

import pytest

from cachekit.backends.locmem import LocMemBackend
from cachekit.cache import Cache
from cachekit.exceptions import SerializationError
from sessions.serializers import TaggedJSONSerializer
from sessions.serializers import tag
from sessions.state import SessionState
from sessions.stores._merge import decode_state
from sessions.stores.cache import CacheStore

SERIALIZER = TaggedJSONSerializer()

DATA: dict[str, dict[str, Any]] = {
    "empty": {},
    "plain": {"count": 5, "name": "ada", "ratio": 0.25, "on": True, "none": None},
    "unicode": {"näme": 'ü\u2028"quoted"\\', "emoji": "\U0001f600"},
    "nested": {"cart": [1, "two", {"three": 3}], "prefs": {"theme": "dark"}},
    "tags": {
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 1),
        "price": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=7),
        "pair": (1, 2),
        "raw": b"\xff\x00",
    },
    "escaped key": {" t": [1, 2]},  # one key starting with a space: escaped, not a tag
    "space keys": {" a": 1, " b": 2},
    "big int": {"n": 10**30},
}


@pytest.mark.parametrize("expiry", [None, 0, 1_900_000_000.1234], ids=["policy", "browser", "fixed"])
@pytest.mark.parametrize("name", DATA)
@pytest.mark.parametrize("nonce", [None, "n0nce"])
def test_records_are_the_serializers_bytes_and_read_back_alike(
    name: str, expiry: float | None, nonce: str | None
) -> None:
    state = SessionState(dict(DATA[name]), 1_800_000_000.5555, 1_800_000_100.0004, expiry)
    state.nonce = nonce
    data = SERIALIZER.dumps(state.to_record())
    # What the serializer wrote before its encoder was built once: json.dumps with its settings.
    settings: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}
    assert data == json.dumps(tag(state.to_record()), **settings).encode()
    back = decode_state(data, SERIALIZER)
    assert back is not None
    expected = SessionState.from_record(SERIALIZER.loads(data))
    assert back == expected
    assert back.data == DATA[name]
    assert [type(value) for value in back.data.values()] == [type(value) for value in DATA[name].values()]


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b" ",
        b"not json",
        b'{"d":{},"c":1,"a":2} trailing',
        b'{"d":{},"c":1,"a":2}\n',  # trailing white space is JSON; the serializer reads it
        b' {"d":{},"c":1,"a":2}',
        b"\xff\xfe",
        b"[1, 2]",
        b'{" t":[1,2]}',  # a record that is a tag
        b'{"d":[],"c":1,"a":2}',
        b'{"d":{"x":1},"c":"1","a":2}',
        b'{"d":{" t":[1]},"c":1,"a":2}',  # data that is a tuple tag
        b'{"d":{" u":"00000000000000000000000000000007"},"c":1,"a":2}',  # data that is a UUID tag
        b'{"d":{" x":1},"c":1,"a":2}',  # data that is an unknown tag
        b'{"d":{"k":{" b":"!!"}},"c":1,"a":2}',  # a malformed bytes tag inside
        b'{"d":{"k":{" zz":1}},"c":1,"a":2}',  # an unknown tag
        b'{"d":{"k":NaN},"c":1,"a":2}',
        b"[" * 100_000,
        '{"d":{"s":1},"c":1,"a":2}',  # a str, as a backend may hand back
        b'{"d":{"x":1},"c":1,"a":2,"x":0,"u":"n"}',
    ],
)
def test_anything_else_decodes_as_the_serializer_would(stored: bytes | str) -> None:
    try:
        record = SERIALIZER.loads(stored)
        expected: SessionState | None = SessionState.from_record(record)
    except (SerializationError, ValueError, TypeError):
        expected = None
    got = decode_state(stored, SERIALIZER)
    assert got == expected
    if expected is not None:
        assert got is not None
        assert got.data == expected.data


def test_a_value_with_no_json_form_names_its_key() -> None:
    store = CacheStore(Cache(LocMemBackend(f"codec-{uuid.uuid4().hex}")))
    store._objects = False  # JSON records, as on Redis and memcached
    state = SessionState({"fine": 1, "bad": object()}, 1.0, 1.0)
    with pytest.raises(SerializationError) as caught:
        store._dump(state)
    assert caught.value.key == "bad"
    state = SessionState({"nan": float("nan")}, 1.0, 1.0)
    with pytest.raises(SerializationError) as caught:
        store._dump(state)
    assert caught.value.key == "nan"


class _Upper(TaggedJSONSerializer):
    """A serializer of the store's own: the fast coder must step aside for it."""

    def dumps(self, value: Any) -> bytes:
        return super().dumps(value).upper()

    def loads(self, data: bytes | str) -> Any:
        raw = data.decode() if isinstance(data, bytes) else data
        return super().loads(raw.lower())


def test_a_custom_serializer_is_used_as_given() -> None:
    store = CacheStore(Cache(LocMemBackend(f"codec-{uuid.uuid4().hex}")), serializer=_Upper())
    store._objects = False
    state = SessionState({"name": "ada"}, 1.0, 2.0)
    data = store._dump(state)
    assert data == b'{"D":{"NAME":"ADA"},"C":1.0,"A":2.0}'
    assert decode_state(b'{"D":{"NAME":"ADA"},"C":1.0,"A":2.0}', store.serializer) == SessionState(
        {"name": "ada"}, 1.0, 2.0
    )
