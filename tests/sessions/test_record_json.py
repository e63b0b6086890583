"""The stores' record writer (``StoreBase._dump`` with the default serializer) writes the serializer's bytes.

``_dump`` writes a record in place (only the data tagged, the record's own
numbers as ``json`` writes them) instead of building ``state.to_record()`` and
handing it to ``TaggedJSONSerializer.dumps``; the bytes must be the same, for
every field the record may carry, and a field that is not a finite number falls
back to the serializer (which refuses a non-finite one as it always did).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import cachekit
from cachekit.exceptions import SerializationError
from sessions.serializers import TaggedJSONSerializer
from sessions.state import SessionState
from sessions.stores.cache import CacheStore
from tests.sessions.test_record_codec import DATA

SERIALIZER = TaggedJSONSerializer()


def _store() -> CacheStore:
    return CacheStore(cachekit.from_url("locmem://record-json"))


@pytest.mark.parametrize("until", [None, 1_900_000_300.0, 1_900_000_000.00051], ids=["none", "whole", "ms"])
@pytest.mark.parametrize("nonce", [None, 'n0"nce'])
@pytest.mark.parametrize("expiry", [None, 0, 1_900_000_000.1234], ids=["policy", "browser", "fixed"])
@pytest.mark.parametrize("name", DATA)
def test_dump_writes_the_serializers_bytes(
    name: str, expiry: float | None, nonce: str | None, until: float | None
) -> None:
    state = SessionState(dict(DATA[name]), 1_800_000_000.5555, 1_800_000_100.0004, expiry)
    state.nonce = nonce
    state.indexed_until = until
    assert _store()._dump(state) == SERIALIZER.dumps(state.to_record())


@pytest.mark.parametrize("created", [1_800_000_000, 1_800_000_000.0, 0.1 + 0.2, 1e21, 5e-324])
def test_numbers_are_written_as_json_writes_them(created: float) -> None:
    state = SessionState({"n": 1}, created, created, created)
    state.indexed_until = created
    assert _store()._dump(state) == SERIALIZER.dumps(state.to_record())


@pytest.mark.parametrize("field", ["created", "last_active", "expiry", "indexed_until"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_field_that_is_not_finite_is_refused(field: str, value: float) -> None:
    state = SessionState({"n": 1}, 1_800_000_000.0, 1_800_000_000.0)
    setattr(state, field, value)
    with pytest.raises(SerializationError):
        _store()._dump(state)


@pytest.mark.parametrize("value", [True, 1_900_000_000])
def test_a_field_of_another_type_is_left_to_the_serializer(value: Any) -> None:
    state = SessionState({"n": 1}, 1_800_000_000.0, 1_800_000_000.0)
    state.indexed_until = value
    assert _store()._dump(state) == SERIALIZER.dumps(state.to_record())


def test_data_that_cannot_be_stored_names_its_key() -> None:
    state = SessionState({"ok": 1, "bad": object()}, 1_800_000_000.0, 1_800_000_000.0)
    with pytest.raises(SerializationError) as caught:
        _store()._dump(state)
    assert caught.value.key == "bad"
