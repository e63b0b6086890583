"""set_user()'s metadata fingerprint: remembered for str metadata, never confused between metadata.

An app calls ``set_user(user_id, user_agent=...)`` on every request; the
fingerprint of its metadata (the first 16 hex digits of the SHA-256 of the
serialized metadata, kept in the session) tells whether the owner's listing must
be rewritten. With the default serializer, metadata whose values are all str is
fingerprinted once per process and then looked up by its items; the fingerprint
is the same as computed afresh (records written before keep matching), and two
metadata that serialize apart never share one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import cachekit
from sessions import session as session_module
from sessions.serializers import TaggedJSONSerializer
from sessions.session import Session
from sessions.state import USER_META_KEY
from sessions.stores.cache import CacheStore

SERIALIZER = TaggedJSONSerializer()


def _expected(metadata: dict[str, Any]) -> str:
    return hashlib.sha256(SERIALIZER.dumps(metadata)).hexdigest()[:16]


def _fingerprint_of(store: CacheStore, session_key: str | None, **metadata: Any) -> str:
    session = Session(store, session_key)
    session.set_user("ada", **metadata)
    value: str = session.state.data[USER_META_KEY]
    return value


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"user_agent": "UA"},
        {"user_agent": "UA", "address": "10.0.0.1"},
        {"address": "10.0.0.1", "user_agent": "UA"},  # another order is other JSON
        {"user_agent": "ü\u2028\"'"},
        {"n": 1},
        {"n": True},
        {"n": 1.0},
        {"n": None},
        {"nested": {"a": "b"}},
    ],
)
def test_the_fingerprint_is_the_sha256_of_the_serialized_metadata_first_and_again(
    metadata: dict[str, Any],
) -> None:
    store = CacheStore(cachekit.from_url("locmem://owner-fingerprint"))
    session_module._str_fingerprint.cache_clear()
    assert _fingerprint_of(store, None, **metadata) == _expected(metadata)
    assert _fingerprint_of(store, None, **metadata) == _expected(metadata)  # remembered, if str


def test_metadata_that_serialize_apart_never_share_a_fingerprint() -> None:
    store = CacheStore(cachekit.from_url("locmem://owner-fingerprint-apart"))
    variants: list[dict[str, Any]] = [
        {"user_agent": "UA"},
        {"user_agent": "UA2"},
        {"user_agent": "UA", "address": "a"},
        {"address": "a", "user_agent": "UA"},
        {"n": 1},
        {"n": True},
        {"n": 1.0},
        {"n": "1"},
    ]
    for _ in range(2):
        prints = [_fingerprint_of(store, None, **metadata) for metadata in variants]
        assert len(set(prints)) == len(variants)


def test_new_metadata_on_a_stored_session_updates_the_listing() -> None:
    store = CacheStore(cachekit.from_url("locmem://owner-fingerprint-listing"))
    session = Session(store)
    session.set_user("ada", user_agent="UA")
    key = session.save()
    for agent in ("UA", "UA2", "UA2", "UA"):
        again = Session(store, key)
        again.set_user("ada", user_agent=agent)
        assert again.save() == key
        assert [entry.metadata for entry in store.sessions_of("ada")] == [{"user_agent": agent}]


def test_the_remembered_fingerprints_stay_bounded() -> None:
    store = CacheStore(cachekit.from_url("locmem://owner-fingerprint-bounded"))
    for n in range(session_module._FINGERPRINTS_MAX * 3):
        assert _fingerprint_of(store, None, user_agent=str(n)) == _expected({"user_agent": str(n)})
    assert session_module._str_fingerprint.cache_info().currsize <= session_module._FINGERPRINTS_MAX
