"""memcached key mapping: the batch form agrees with the per-key rule on every kind of key."""

from __future__ import annotations

import pytest

from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.memcached._keys import MAX_KEY
from cachekit.backends.memcached._keys import safe_key
from cachekit.backends.memcached._keys import safe_keys
from tests import servers

KINDS = {
    "plain": ["a", "b:c", "key99"],
    "long": ["x" * (MAX_KEY - 10), "y" * MAX_KEY],
    "space": ["has space", "ok"],
    "control": ["tab\there", "nl\n"],
    "unicode": ["café", "ok", "\udcff"],
    "tilde first": ["~looks-hashed", "ok"],
    "tilde inside": ["a~b", "ok"],
    "empty": ["", "ok"],
    "none": [],
}


@pytest.mark.parametrize("head", ["", "Abc_-123Def45678:", "Abc_-123~Dtoken12:"])
@pytest.mark.parametrize("kind", KINDS)
def test_safe_keys_is_safe_key_of_each(head: str, kind: str) -> None:
    keys = KINDS[kind]
    assert safe_keys(head, keys) == [safe_key(head, key) for key in keys]


def test_an_illegal_key_is_hashed_and_the_others_kept() -> None:
    stored = safe_keys("h:", ["good", "bad key", "x" * 300])
    assert stored[0] == "h:good"
    assert stored[1].startswith("h:~")
    assert len(stored[1]) == len("h:~") + 64
    assert stored[2].startswith("h:~")
    assert len(stored[2]) <= MAX_KEY


def test_get_many_over_one_and_several_scopes(memcached_server: servers.ServerProcess) -> None:
    """One scope takes the batch path, mixed scopes the per-scope one; both see clear(prefix)."""
    backend = MemcachedBackend.from_url(f"memcached://{memcached_server.address}")
    try:
        backend.set_many({"a:1": b"1", "a:2": b"2", "b:1": b"3", "plain": b"4", "a:~x": b"5"}, None)
        assert backend.get_many(["a:1", "a:2", "a:~x", "a:1"]) == {"a:1": b"1", "a:2": b"2", "a:~x": b"5"}
        assert backend.get_many(["a:1", "b:1", "plain", "gone"]) == {"a:1": b"1", "b:1": b"3", "plain": b"4"}
        backend.clear("a:")
        assert backend.get_many(["a:1", "a:2"]) == {}
        assert backend.get_many(["b:1", "a:1"]) == {"b:1": b"3"}
    finally:
        backend.clear()
        backend.close()
