"""Signed cache values: a writer to the cache server without the key cannot make a worker unpickle.

The hostile bytes are written raw into a real redis-server, under the key the
cache would read, as someone with access to the server would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import cachekit
from cachekit import Cache
from cachekit.aio import from_url as async_from_url
from cachekit.config import from_settings
from cachekit.exceptions import ConfigurationError
from cachekit.serializers import JSONSerializer
from cachekit.serializers import PickleSerializer
from cachekit.signing import ENV_VAR
from cachekit.signing import BadSignatureError
from cachekit.signing import SignedSerializer

KEY = "k" * 32
OLD_KEY = "o" * 32
OTHER_KEY = "x" * 32
VALUE = {"user": 42, "roles": ["admin", "staff"], "nested": {"a": [1, 2]}}


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: proof that a load ran attacker-chosen code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_cache(redis_url: str, raw_redis: redis.Redis) -> Iterator[Callable[..., Cache]]:
    built: list[Cache] = []

    def make(**options: Any) -> Cache:
        cache = cachekit.from_url(redis_url, key_prefix="signed", **options)
        built.append(cache)
        return cache

    yield make
    for cache in built:
        cache.close()


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _signed() -> bytes:
    return SignedSerializer(PickleSerializer(), KEY).dumps(VALUE)


TAMPERED = [
    pytest.param(lambda b: _flip(b, len(b) - 1), id="last-payload-byte-flipped"),
    pytest.param(lambda b: _flip(b, 5), id="tag-byte-flipped"),
    pytest.param(lambda b: b[:-1], id="truncated"),
    pytest.param(lambda b: b[:20], id="cut-inside-tag"),
    pytest.param(lambda b: b[1:], id="mark-dropped"),
    pytest.param(lambda b: b[33:], id="tag-dropped"),
    pytest.param(lambda b: b + b"\x00", id="byte-appended"),
    pytest.param(lambda b: b"", id="empty"),
    pytest.param(lambda b: pickle.dumps(VALUE), id="unsigned-pickle"),
    pytest.param(lambda b: b"Z" + b[1:], id="compressed-mark"),
    pytest.param(lambda b: b"12.5", id="not-an-int"),
    pytest.param(lambda b: SignedSerializer(PickleSerializer(), OTHER_KEY).dumps(VALUE), id="wrong-key"),
]


# -- the serializer --------------------------------------------------------------


def test_round_trip_and_rotation() -> None:
    old = SignedSerializer(PickleSerializer(), OLD_KEY)
    rotated = SignedSerializer(PickleSerializer(), [KEY, OLD_KEY])
    assert rotated.loads(rotated.dumps(VALUE)) == VALUE
    assert rotated.loads(old.dumps(VALUE)) == VALUE  # values signed before the rotation still read
    with pytest.raises(BadSignatureError):
        old.loads(rotated.dumps(VALUE))  # new values are signed with the new key only


@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampered_bytes_are_refused(tamper: Callable[[bytes], bytes]) -> None:
    serializer = SignedSerializer(PickleSerializer(), KEY)
    with pytest.raises(BadSignatureError):
        serializer.loads(tamper(_signed()))


def test_integers_stay_digits_for_incr() -> None:
    serializer = SignedSerializer(JSONSerializer(), KEY)
    assert serializer.dumps(41) == b"41"
    assert serializer.loads(b"-7") == -7
    assert serializer.loads(serializer.dumps(1.5)) == 1.5


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param([], id="none"),
        pytest.param("short", id="short"),
        pytest.param([KEY, 7], id="not-a-str"),
        pytest.param(42, id="not-a-list"),
    ],
)
def test_bad_keys_are_configuration_errors(keys: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SignedSerializer(PickleSerializer(), keys)
    assert info.value.setting == "SIGNING_KEYS"


# -- through a real redis-server ------------------------------------------------


def test_signed_cache_round_trip_on_redis(make_cache: Callable[..., Cache], raw_redis: redis.Redis) -> None:
    cache = make_cache(signing_keys=[KEY])
    cache.set("v", VALUE)
    assert cache.get("v") == VALUE
    stored = raw_redis.get(cache.make_key("v"))
    assert stored is not None
    assert stored[:1] == b"\x01"
    cache.set("n", 1)
    assert cache.incr("n", 4) == 5
    assert cache.get("n") == 5


@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampered_value_in_redis_reads_as_a_miss(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis, tamper: Callable[[bytes], bytes]
) -> None:
    cache = make_cache(signing_keys=[KEY], on_error="raise")  # a forgery is a miss even so
    cache.set("v", VALUE)
    stored = raw_redis.get(cache.make_key("v"))
    assert stored is not None
    raw_redis.set(cache.make_key("v"), tamper(stored))
    assert cache.get("v", "miss") == "miss"
    assert cache.get_many(["v"]) == {}
    assert cache.stats()["bad_signatures"] == 2


def test_bad_signatures_are_counted_and_logged_once(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(signing_keys=[KEY])
    raw_redis.set(cache.make_key("v"), pickle.dumps(VALUE))
    with caplog.at_level(logging.WARNING, logger="cachekit.cache"):
        for _ in range(5):
            assert cache.get("v") is None
    assert cache.stats()["bad_signatures"] == 5
    warnings = [r for r in caplog.records if "bad signature" in r.getMessage()]
    assert len(warnings) == 1


def test_signed_value_moved_to_another_key_or_prefix_is_refused(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis, redis_url: str
) -> None:
    cache = make_cache(signing_keys=[KEY])
    cache.set("alice:is_admin", {"admin": [True]})
    cache.set("bob:is_admin", {"admin": [False]})
    signed = raw_redis.get(cache.make_key("alice:is_admin"))
    assert signed is not None
    raw_redis.set(cache.make_key("bob:is_admin"), signed)
    assert cache.get("bob:is_admin") is None
    tenant = cachekit.from_url(redis_url, key_prefix="tenant", signing_keys=[KEY])
    raw_redis.set(tenant.make_key("alice:is_admin"), signed)
    assert tenant.get("alice:is_admin") is None
    assert cache.get("alice:is_admin") == {"admin": [True]}
    tenant.close()


def test_bad_signatures_are_a_prometheus_counter(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis
) -> None:
    from cachekit.metrics import samples

    cache = make_cache(signing_keys=[KEY], name="signed")
    raw_redis.set(cache.make_key("v"), pickle.dumps(VALUE))
    cache.get("v")
    found = {(name, label): value for name, label, value in samples(lambda: [cache])}
    assert [value for (name, _label), value in found.items() if name == "cachekit_bad_signatures_total"] == [
        1.0
    ]


def test_rotated_key_reads_old_values(make_cache: Callable[..., Cache]) -> None:
    before = make_cache(signing_keys=[OLD_KEY])
    before.set("v", VALUE)
    after = make_cache(signing_keys=[KEY, OLD_KEY])
    assert after.get("v") == VALUE
    after.set("w", VALUE)
    assert before.get("w") is None  # the old key alone does not accept new-key values
    assert make_cache(signing_keys=[KEY]).get("v") is None  # the old key retired: old values miss


def test_pickle_payload_written_raw_never_runs(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis, tmp_path: Path
) -> None:
    signed = make_cache(signing_keys=[KEY])
    target = tmp_path / "pwned"
    raw_redis.set(signed.make_key("v"), pickle.dumps(_CreatesFile(target)))
    assert signed.get("v") is None
    assert not target.exists()
    # Forged with a guessed key, it is refused too.
    raw_redis.set(
        signed.make_key("v"), SignedSerializer(PickleSerializer(), OTHER_KEY).dumps(_CreatesFile(target))
    )
    assert signed.get("v") is None
    assert not target.exists()
    # The control: an unsigned cache does run the payload, so this test can fail.
    raw_redis.set(signed.make_key("v"), pickle.dumps(_CreatesFile(target)))
    unsigned = make_cache()
    opened = unsigned.get("v")
    opened.close()
    assert target.exists()


def test_get_or_set_recomputes_over_a_forgery(
    make_cache: Callable[..., Cache], raw_redis: redis.Redis, tmp_path: Path
) -> None:
    cache = make_cache(signing_keys=[KEY])
    target = tmp_path / "pwned"
    raw_redis.set(cache.make_key("v"), pickle.dumps(_CreatesFile(target)))
    assert cache.get_or_set("v", lambda: "fresh") == "fresh"
    assert cache.get("v") == "fresh"  # the forgery was replaced by a signed value
    assert not target.exists()


def test_async_cache_refuses_forgeries(redis_url: str, raw_redis: redis.Redis, tmp_path: Path) -> None:
    target = tmp_path / "pwned"

    async def run() -> tuple[Any, Any, Any]:
        cache = async_from_url(redis_url, key_prefix="signed", signing_keys=[KEY])
        try:
            await cache.set("v", VALUE)
            good = await cache.get("v")
            raw_redis.set(cache.make_key("v"), pickle.dumps(_CreatesFile(target)))
            forged = await cache.get("v", "miss")
            many = await cache.get_many(["v"])
            return good, forged, (many, cache.stats()["bad_signatures"])
        finally:
            await cache.close()

    good, forged, (many, bad) = asyncio.run(run())
    assert good == VALUE
    assert forged == "miss"
    assert many == {}
    assert bad == 2
    assert not target.exists()


# -- configuration -----------------------------------------------------------------


def test_signing_keys_setting(redis_url: str, raw_redis: redis.Redis) -> None:
    cache = from_settings({"LOCATION": redis_url, "SIGNING_KEYS": [KEY, OLD_KEY]}, name="s")
    assert isinstance(cache.serializer, SignedSerializer)
    cache.set("v", VALUE)
    raw = raw_redis.get(cache.make_key("v"))
    assert raw is not None
    assert raw[:1] == b"\x01"
    newest_only = cachekit.from_url(redis_url, signing_keys=KEY)  # signed with the first key
    assert newest_only.get("v") == VALUE
    newest_only.close()
    cache.close()
    named = from_settings({"BACKEND": "locmem", "LOCATION": "signed-setting", "SIGNING_KEYS": KEY})
    assert isinstance(named.serializer, SignedSerializer)
    json_signed = from_settings(
        {"BACKEND": "locmem", "OPTIONS": {"serializer": "json", "signing_keys": [KEY]}}
    )
    assert isinstance(json_signed.serializer, SignedSerializer)
    assert isinstance(json_signed.serializer.inner, JSONSerializer)


@pytest.mark.parametrize("name", ["signing_key", "signing_keys", "SIGNING_KEYS"])
def test_keys_in_a_url_are_refused(redis_url: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        cachekit.from_url(f"{redis_url}?{name}={KEY}")
    assert KEY not in str(info.value)


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, f"{KEY}, {OLD_KEY}")
    cache = cachekit.from_url("locmem://signed-env")
    assert isinstance(cache.serializer, SignedSerializer)
    assert cache.serializer.loads(SignedSerializer(PickleSerializer(), OLD_KEY).dumps(VALUE)) == VALUE
    monkeypatch.setenv(ENV_VAR, "short")
    with pytest.raises(ConfigurationError):
        cachekit.from_url("locmem://signed-env")
    monkeypatch.delenv(ENV_VAR)
    assert not isinstance(cachekit.from_url("locmem://signed-env").serializer, SignedSerializer)
    assert os.environ.get(ENV_VAR) is None


def test_signing_benchmark_runs() -> None:
    from benchmarks.bench_signing import run

    results = run(number=5, rounds=1)
    assert {r.system for r in results} == {"signed", "signed, old key", "pickle"}
    assert all(r.seconds_per_op > 0 for r in results)
