"""SignedCookieStore: key rotation, tampering, size limit, compression and encryption."""

from __future__ import annotations

import base64
import random
import zlib

import pytest
from itsdangerous import URLSafeSerializer

from cachekit.exceptions import ConfigurationError
from sessions.exceptions import CookieTooLargeError
from sessions.serializers import TaggedJSONSerializer
from sessions.session import Session
from sessions.stores.cookie import SignedCookieStore
from tests.conftest import IN_CI
from tests.sessions.helpers import WallClock


def require_cryptography() -> None:
    """Skip locally, fail in CI, when the 'crypto' extra is not installed."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("cryptography is not installed; .ci/run installs the 'crypto' extra")
        pytest.skip("cryptography is not installed (the 'crypto' extra)")


def saved(store: SignedCookieStore, **data: object) -> str:
    session = Session(store)
    session.update(data)
    return session.save()


@pytest.fixture(params=[False, True], ids=["signed", "encrypted"])
def encrypt(request: pytest.FixtureRequest) -> bool:
    if request.param:
        require_cryptography()
    return bool(request.param)


def test_first_key_signs_every_key_verifies(encrypt: bool) -> None:
    old = SignedCookieStore(["old-key-000000000000000000000000"], encrypt=encrypt)
    rotated = SignedCookieStore(
        ["new-key-000000000000000000000000", "old-key-000000000000000000000000"], encrypt=encrypt
    )
    new_only = SignedCookieStore(["new-key-000000000000000000000000"], encrypt=encrypt)
    value = saved(old, user="ada")
    state = rotated.load(value)
    assert state is not None
    assert state.data == {"user": "ada"}
    assert state.stale  # verified by a fallback key: asks to be re-signed
    assert new_only.load(value) is None
    session = Session(rotated, value)
    assert session["user"] == "ada"
    assert session.needs_save()
    resigned = session.save()
    fresh = new_only.load(resigned)
    assert fresh is not None
    assert fresh.data == {"user": "ada"}
    assert not fresh.stale


def test_wrong_key_and_wrong_salt_load_nothing(encrypt: bool) -> None:
    value = saved(SignedCookieStore("key-0000000000000000000000000000", encrypt=encrypt), a=1)
    assert SignedCookieStore("other-00000000000000000000000000", encrypt=encrypt).load(value) is None
    assert (
        SignedCookieStore(
            "key-0000000000000000000000000000", salt="other-00000000000000000000000000", encrypt=encrypt
        ).load(value)
        is None
    )


def test_signed_and_encrypted_cookies_do_not_mix() -> None:
    require_cryptography()
    signed = saved(SignedCookieStore("key-0000000000000000000000000000"), a=1)
    encrypted = saved(SignedCookieStore("key-0000000000000000000000000000", encrypt=True), a=1)
    assert SignedCookieStore("key-0000000000000000000000000000", encrypt=True).load(signed) is None
    assert SignedCookieStore("key-0000000000000000000000000000").load(encrypted) is None


def test_encrypted_payload_is_unreadable() -> None:
    require_cryptography()
    value = saved(
        SignedCookieStore("key-0000000000000000000000000000", encrypt=True), secret_note="attack at dawn"
    )
    assert "attack" not in value
    padded = value + "=" * (-len(value) % 4)
    assert b"attack" not in base64.urlsafe_b64decode(padded)


def test_signed_payload_is_compressed_when_that_helps() -> None:
    store = SignedCookieStore("key-0000000000000000000000000000")
    small = saved(store, a=1)
    big = saved(store, text="abc" * 500)
    assert big.startswith(".")  # itsdangerous marks zlib payloads with a leading dot
    assert len(big) < 500
    payload = big[1:].split(".")[0]
    assert b"abcabc" in zlib.decompress(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert store.load(small) is not None


def test_too_large_raises_with_size_and_keeps_previous_cookie(encrypt: bool) -> None:
    store = SignedCookieStore("key-0000000000000000000000000000", encrypt=encrypt)
    previous = saved(store, a=1)
    session = Session(store, previous)
    session["blob"] = base64.b64encode(random.Random(0).randbytes(4096)).decode()  # incompressible
    with pytest.raises(CookieTooLargeError) as info:
        session.save()
    assert info.value.size > info.value.limit == 4093
    assert isinstance(info.value, ValueError)
    assert session.session_key == previous
    assert store.load(previous) is not None


def test_max_age_enforced_on_load(encrypt: bool) -> None:
    clock = WallClock()
    store = SignedCookieStore("key-0000000000000000000000000000", encrypt=encrypt, age=60, clock=clock)
    value = saved(store, a=1)
    clock.advance(59)
    assert store.load(value) is not None
    clock.advance(2)
    assert store.load(value) is None


@pytest.mark.parametrize("keys", [None, "", [], [""], ["ok", 5]], ids=repr)
def test_missing_or_bad_secret_key_fails_at_construction(keys: object) -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY") as info:
        SignedCookieStore(keys)  # type: ignore[arg-type]
    assert info.value.setting == "SECRET_KEY"


@pytest.mark.parametrize("keys", ["k", "x" * 31, [b"y" * 31, "z" * 40]], ids=["one-char", "31", "31-bytes"])
def test_short_signing_key_is_refused_with_how_to_make_one(keys: str | list[str | bytes]) -> None:
    with pytest.raises(ConfigurationError, match="at least 32") as info:
        SignedCookieStore(keys)
    assert info.value.setting == "SECRET_KEY"
    assert "secrets.token_urlsafe" in str(info.value)


def test_short_fallback_key_still_verifies_while_rotated_out() -> None:
    # A cookie signed before the 32-byte minimum, with a short key that now sits in the fallbacks.
    rotated = SignedCookieStore(["n" * 32, "old"])
    legacy = URLSafeSerializer("old", salt="cachekit.session", serializer=_Text())
    state = rotated.load(legacy.dumps({"d": {"a": 1}, "c": rotated.clock(), "a": rotated.clock()}))
    assert state is not None
    assert state.data == {"a": 1}


TAMPERS = [
    pytest.param(lambda v: v[:-1], id="truncated-signature"),
    pytest.param(lambda v: v[: len(v) // 2], id="truncated-half"),
    pytest.param(lambda v: v.upper(), id="upper"),
    pytest.param(lambda v: v.replace(".", "", 1) if "." in v else v[:20] + v[21:], id="separator-dropped"),
    pytest.param(lambda v: v[:30] + ("A" if v[30] != "A" else "B") + v[31:], id="one-char-changed"),
    pytest.param(lambda v: "x" + v, id="prefixed"),
    pytest.param(lambda v: v[::-1], id="reversed"),
    pytest.param(lambda v: v + "A" * 5000, id="oversized"),
    pytest.param(lambda v: v[:5] + "\xff" + v[6:], id="latin1-byte"),
]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampered_cookies_load_nothing(encrypt: bool, tamper: object) -> None:
    store = SignedCookieStore("key-0000000000000000000000000000", encrypt=encrypt)
    value = saved(store, admin=False)
    assert callable(tamper)
    tampered = tamper(value)
    assert tampered != value
    assert store.load(tampered) is None


class _Text:
    """itsdangerous's serializer interface over the session serializer."""

    def dumps(self, value: object) -> str:
        return TaggedJSONSerializer().dumps(value).decode()

    def loads(self, data: str | bytes) -> object:
        return TaggedJSONSerializer().loads(data if isinstance(data, bytes) else data.encode())


@pytest.mark.parametrize("size", [10, 2000], ids=["small", "compressed"])
def test_wire_format_is_itsdangerous_url_safe_serializer(size: int) -> None:
    reference = URLSafeSerializer(
        "key-0000000000000000000000000000", salt="cachekit.session", serializer=_Text()
    )
    store = SignedCookieStore("key-0000000000000000000000000000")
    value = saved(store, text="x" * size)
    record = reference.loads(value)
    assert record["d"] == {"text": "x" * size}
    made = reference.dumps({"d": {"from": "itsdangerous"}, "c": store.clock(), "a": store.clock()})
    state = store.load(made)
    assert state is not None
    assert state.data == {"from": "itsdangerous"}


def test_decompression_bomb_is_refused() -> None:
    reference = URLSafeSerializer(
        "key-0000000000000000000000000000", salt="cachekit.session", serializer=_Text()
    )
    bomb = reference.dumps({"d": {"x": "a" * 200_000}, "c": 0, "a": 0})
    assert len(bomb) < 4093
    assert SignedCookieStore("key-0000000000000000000000000000").load(bomb) is None


def test_session_that_would_inflate_past_the_read_limit_is_refused() -> None:
    from sessions.exceptions import CookieTooLargeError
    from sessions.session import Session
    from sessions.stores.cookie import SignedCookieStore

    store = SignedCookieStore(["k" * 32])
    session = Session(store)
    session["notes"] = "same text " * 8000  # about 80 KB, compresses to a few hundred bytes
    with pytest.raises(CookieTooLargeError):
        store.save(session)
