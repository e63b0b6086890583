"""Cookie rules pinned at their edges (issue 23): sizes, parsing, attributes, cycle, rotation.

Size limits are tested at exactly ``max_size`` and one byte over, with the exact
error type (:class:`~sessions.exceptions.CookieTooLargeError`, which is also a
``ValueError``, so ``pytest.raises(ValueError)`` alone would not tell it apart
from the bad-characters error).
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import zlib

import pytest
from itsdangerous.encoding import base64_encode

from cachekit.exceptions import ConfigurationError
from sessions.cookies import EPOCH
from sessions.cookies import CookieFormat
from sessions.cookies import delete_cookie
from sessions.cookies import dump_cookie
from sessions.cookies import http_date
from sessions.cookies import normalize_samesite
from sessions.cookies import read_cookie
from sessions.exceptions import CookieTooLargeError
from sessions.session import Session
from sessions.session import SessionState
from sessions.stores import cookie as cookie_module
from sessions.stores.cookie import MAX_COOKIE_SIZE
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import WallClock

KEY = "key-0000000000000000000000000000"
OLD_KEY = "old-0000000000000000000000000000"


def _noise(size: int) -> str:
    """Incompressible cookie-safe text of ``size`` characters."""
    text = base64.urlsafe_b64encode(random.Random(size).randbytes(size)).decode()
    return text[:size]


# -- CookieFormat / dump_cookie: the size limit ---------------------------------------


def _dump(cookie: CookieFormat, value: str, with_age: bool) -> str:
    """Both paths of ``dump``: the usual cookie (memoized line) and the browser-session one."""
    return cookie.dump(value, 10, 1000.0) if with_age else cookie.dump(value)


@pytest.mark.parametrize("with_age", [True, False], ids=["max-age", "browser-session"])
def test_set_cookie_at_exactly_max_size_is_allowed(with_age: bool) -> None:
    cookie = CookieFormat("sid", max_size=100)
    value = "v" * (100 - len("sid="))
    line = _dump(cookie, value, with_age)
    assert line.startswith(f"sid={value};")


@pytest.mark.parametrize("with_age", [True, False], ids=["max-age", "browser-session"])
def test_set_cookie_one_byte_over_max_size_raises_cookie_too_large(with_age: bool) -> None:
    cookie = CookieFormat("sid", max_size=100)
    value = "v" * (100 - len("sid=") + 1)
    with pytest.raises(CookieTooLargeError) as info:
        _dump(cookie, value, with_age)
    assert (info.value.size, info.value.limit) == (101, 100)


@pytest.mark.parametrize("with_age", [True, False], ids=["max-age", "browser-session"])
def test_bad_characters_raise_value_error_not_too_large(with_age: bool) -> None:
    cookie = CookieFormat("sid", max_size=100)
    for value in ("a b", 'a"b', "a;b", "a,b", "a\\b", "é"):
        with pytest.raises(ValueError, match="characters") as info:
            _dump(cookie, value, with_age)
        assert not isinstance(info.value, CookieTooLargeError)


def test_dump_cookie_default_limit_is_the_browser_limit() -> None:
    assert MAX_COOKIE_SIZE == 4093
    dump_cookie("s", "v" * (4093 - 2))
    with pytest.raises(CookieTooLargeError):
        dump_cookie("s", "v" * (4093 - 1))


def test_changing_max_size_is_seen_by_the_memoized_line() -> None:
    cookie = CookieFormat("sid", max_size=100)
    value = "v" * 90
    cookie.dump(value, 10, 1000.0)
    cookie.max_size = 50
    with pytest.raises(CookieTooLargeError):
        cookie.dump(value, 10, 1000.0)


# -- CookieFormat: attributes ---------------------------------------------------------


def test_attributes_in_werkzeug_order() -> None:
    line = dump_cookie(
        "sid", "abc", max_age=59.2, expires=0.0, domain="example.com", secure=True, samesite="strict"
    )
    assert line == (
        "sid=abc; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60; Secure; "
        "HttpOnly; Path=/; SameSite=Strict"
    )


def test_optional_attributes_can_be_left_out() -> None:
    assert dump_cookie("sid", "abc", path=None, httponly=False, samesite=None) == "sid=abc"
    assert (
        dump_cookie("sid", "abc", expires=0.0) == f"sid=abc; Expires={EPOCH}; HttpOnly; Path=/; SameSite=Lax"
    )
    assert dump_cookie("sid", "abc", max_age=-3) == "sid=abc; Max-Age=0; HttpOnly; Path=/; SameSite=Lax"


def test_negative_max_age_with_expires_is_zero() -> None:
    cookie = CookieFormat("sid")
    assert "; Max-Age=0;" in cookie.dump("abc", -5.5, 0.0)
    assert "; Max-Age=1;" in cookie.dump("abc", 0.2, 0.0)


def test_memoized_line_changes_with_value_expiry_and_age() -> None:
    cookie = CookieFormat("sid")
    first = cookie.dump("abc", 10, 1000.0)
    assert cookie.dump("abc", 10, 1000.9) == first  # the same second: the same line
    later = cookie.dump("abc", 10, 1001.0)  # the next second, straight after
    assert later != first
    assert "Expires=Thu, 01 Jan 1970 00:16:41 GMT" in later
    older = cookie.dump("abc", 11, 1001.0)  # only the age changed
    assert "; Max-Age=11;" in older
    assert cookie.dump("abd", 11, 1001.0) == older.replace("abc", "abd")  # only the value changed


def test_memo_fields_are_not_mixed_up() -> None:
    cookie = CookieFormat("sid")
    cookie.dump("v", 10, 5.0)
    assert "Expires=Thu, 01 Jan 1970 00:00:10 GMT" in cookie.dump("v", 10, 10.0)  # second == age
    cookie.dump("v", 10, 1000.0)
    assert "; Max-Age=4093;" in cookie.dump("v", 4093, 1000.0)  # age == max_size


def test_cookie_format_defaults() -> None:
    assert CookieFormat("sid").dump("v") == "sid=v; HttpOnly; Path=/; SameSite=Lax"
    assert CookieFormat("sid").delete() == f"sid=; Expires={EPOCH}; Max-Age=0; HttpOnly; Path=/; SameSite=Lax"
    assert delete_cookie("sid") == f"sid=; Expires={EPOCH}; Max-Age=0; HttpOnly; Path=/; SameSite=Lax"
    assert CookieFormat("sid").max_size == MAX_COOKIE_SIZE


def test_partitioned_cookies() -> None:
    line = CookieFormat("sid", secure=True, samesite="None", partitioned=True).dump("v", 10, 0.0)
    assert line.endswith("; Secure; HttpOnly; Path=/; SameSite=None; Partitioned")
    assert "Partitioned" not in CookieFormat("sid").dump("v", 10, 0.0)


def test_bad_characters_at_exactly_max_size_are_a_value_error() -> None:
    cookie = CookieFormat("sid", max_size=10)
    with pytest.raises(ValueError, match="characters") as info:
        cookie.dump("a b c ", 10, 0.0)  # "sid=" + 6 = exactly 10 bytes
    assert not isinstance(info.value, CookieTooLargeError)


def test_delete_line_matches_the_cookie() -> None:
    line = delete_cookie("sid", domain="example.com", secure=True, samesite="None")
    assert line == (
        f"sid=; Domain=example.com; Expires={EPOCH}; Max-Age=0; Secure; HttpOnly; Path=/; SameSite=None"
    )


@pytest.mark.parametrize(
    ("options", "word"),
    [
        pytest.param({"name": "bad name"}, "name", id="name"),
        pytest.param({"name": ""}, "name", id="empty-name"),
        pytest.param({"path": "/a;b"}, "path", id="path"),
        pytest.param({"domain": "a b"}, "domain", id="domain"),
        pytest.param({"samesite": "sometimes"}, "SameSite", id="samesite"),
        pytest.param({"samesite": "None"}, "Secure", id="samesite-none-insecure"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, str], word: str) -> None:
    name = options.pop("name", "sid")
    with pytest.raises(ValueError, match=word):
        CookieFormat(name, **options)  # type: ignore[arg-type]


def test_normalize_samesite() -> None:
    assert normalize_samesite(None, secure=False) is None
    assert normalize_samesite(False, secure=False) is None
    assert normalize_samesite("LAX", secure=False) == "Lax"
    assert normalize_samesite("strict", secure=False) == "Strict"
    assert normalize_samesite("none", secure=True) == "None"
    with pytest.raises(ValueError, match="Secure"):
        normalize_samesite("none", secure=False)
    with pytest.raises(ValueError, match="SameSite must be"):
        normalize_samesite(True, secure=True)


def test_http_date_formats_and_remembers_the_last_second() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(86400.7) == "Fri, 02 Jan 1970 00:00:00 GMT"
    assert http_date(86400.2) == "Fri, 02 Jan 1970 00:00:00 GMT"
    assert http_date(86401) == "Fri, 02 Jan 1970 00:00:01 GMT"


# -- read_cookie ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("session=abc", "abc", id="one"),
        pytest.param('session=""', "", id="one-empty-quoted"),
        pytest.param('session="a"', "a", id="one-short-quoted"),
        pytest.param(' session = "abc" ', "abc", id="one-quoted"),
        pytest.param('session="', '"', id="one-lone-quote"),
        pytest.param('a=1; session="abc"; b=2', "abc", id="many-quoted"),
        pytest.param('a=1; session="abc', '"abc', id="many-half-quoted"),
        pytest.param('a=1; session=""', "", id="many-empty-quoted"),
        pytest.param('a=1;session= "abc" ', "abc", id="many-quoted-spaces"),
        pytest.param('session=abc; session="abc"', "abc", id="twice-same-value-once-quoted"),
        pytest.param("session=abc; session=abd", None, id="twice-different"),
        pytest.param("a=1; session; b=2", None, id="many-no-equals"),
        pytest.param("a=session; b=2", None, id="name-only-as-a-value"),
        pytest.param("xsession=1; session=2", "2", id="longer-name-first"),
        pytest.param("sessionx=1", None, id="one-longer-name"),
        pytest.param("session", None, id="one-no-equals"),
        pytest.param("other=1", None, id="absent"),
    ],
)
def test_read_cookie(header: str, expected: str | None) -> None:
    assert read_cookie(header, "session") == expected


# -- SignedCookieStore: sizes ------------------------------------------------------------


def _state(clock: WallClock, **data: object) -> SessionState:
    return SessionState(dict(data), clock(), clock())


def test_store_cookie_at_exactly_max_size_and_one_over(wall_clock: WallClock) -> None:
    probe = SignedCookieStore(KEY, clock=wall_clock, max_size=MAX_COOKIE_SIZE)
    state = _state(wall_clock, blob=_noise(150))
    size = len(probe.create(state))
    exact = SignedCookieStore(KEY, clock=wall_clock, max_size=size)
    value = exact.create(state)
    assert len(value) == size
    assert exact.load(value) is not None  # a cookie of exactly max_size also loads
    under = SignedCookieStore(KEY, clock=wall_clock, max_size=size - 1)
    with pytest.raises(CookieTooLargeError) as info:
        under.create(state)
    assert (info.value.size, info.value.limit) == (size, size - 1)
    assert under.load(value) is None  # longer than max_size: refused before any crypto


def test_store_refuses_a_session_that_would_inflate_past_the_read_limit(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    state = _state(wall_clock, zeros="0" * (64 * 1024))
    with pytest.raises(CookieTooLargeError) as info:
        store.create(state)
    assert info.value.limit == 64 * 1024


def test_store_accepts_a_session_that_inflates_to_just_under_the_limit(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    overhead = len(store._dump(_state(wall_clock, z="")))
    state = _state(wall_clock, z="0" * (64 * 1024 - overhead))
    value = store.create(state)  # compresses to a few hundred bytes
    assert len(store._dump(state)) == 64 * 1024
    loaded = store.load(value)
    assert loaded is not None
    assert loaded.data == state.data


def test_a_cookie_inflating_past_the_limit_loads_nothing(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    bomb = b"." + base64_encode(zlib.compress(b"0" * (64 * 1024 + 1)))
    value = store._signers[0].sign(bomb).decode()
    assert len(value) < MAX_COOKIE_SIZE
    assert store.load(value) is None


@pytest.mark.parametrize("max_size", [63, 0, -1, 64.5, "4093"])
def test_max_size_below_64_or_not_an_int_is_refused(max_size: object) -> None:
    with pytest.raises(ConfigurationError, match="max_size"):
        SignedCookieStore(KEY, max_size=max_size)  # type: ignore[arg-type]


def test_max_size_of_64_is_allowed() -> None:
    assert SignedCookieStore(KEY, max_size=64).max_size == 64


def test_compression_starts_at_200_bytes_and_only_when_shorter() -> None:
    assert not cookie_module._pack(b"a" * 199).startswith(b".")
    assert cookie_module._pack(b"a" * 200).startswith(b".")
    noise = random.Random(1).randbytes(300)
    assert cookie_module._pack(noise) == base64_encode(noise)  # zlib would only grow it
    for data in (b"a" * 199, b"a" * 200, noise, b""):
        assert cookie_module._unpack(cookie_module._pack(data)) == data


def _saving(saved: int) -> bytes:
    """Data of 200 bytes or more that zlib shortens by exactly ``saved`` bytes (found by a seeded search)."""
    for seed in range(2000):
        rng = random.Random(seed)
        for run in range(0, 60):
            data = rng.randbytes(200 - run) + b"a" * run
            if len(data) - len(zlib.compress(data)) == saved:
                return data
    raise AssertionError(f"no data found that zlib shortens by {saved} bytes")  # pragma: no cover


def test_compression_must_save_more_than_its_marker() -> None:
    # The leading "." costs one byte: compression that saves exactly one is not used, two is.
    assert not cookie_module._pack(_saving(1)).startswith(b".")
    assert cookie_module._pack(_saving(2)).startswith(b".")


def test_non_ascii_cookie_loads_nothing(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    value = store.create(_state(wall_clock, a=1))
    assert store.load(value) is not None
    assert store.load(value[:-1] + "é") is None


# -- SignedCookieStore: cycle and rotation ------------------------------------------------


def test_cycle_signs_the_same_data_with_a_new_creation_time(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    session = Session(store)
    session["user"] = "ada"
    first = session.save()
    created = session.state.created
    wall_clock.advance(60)
    session = Session(store, first)
    second = store.cycle(session)
    assert second != first
    assert session.session_key == second
    assert not session.modified
    loaded = store.load(second)
    assert loaded is not None
    assert loaded.data == {"user": "ada"}
    assert loaded.created == pytest.approx(created + 60, abs=0.01)
    assert loaded.last_active == pytest.approx(wall_clock.now, abs=0.01)


def test_save_after_cycle_key_restarts_the_age(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock, age=100)
    session = Session(store)
    session["user"] = "ada"
    first = session.save()
    wall_clock.advance(90)
    session = Session(store, first)
    session.cycle_key()
    second = session.save()
    wall_clock.advance(50)  # 140 s after the first cookie, 50 s after the second
    assert store.load(first) is None
    assert store.load(second) is not None


def test_plain_save_keeps_the_creation_time(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock, age=100)
    session = Session(store)
    session["n"] = 1
    first = session.save()
    wall_clock.advance(90)
    session = Session(store, first)
    session["n"] = 2
    second = session.save()
    wall_clock.advance(20)
    assert store.load(second) is None  # the age counts from the first save


def test_fallback_key_loads_stale_and_current_key_loads_fresh(wall_clock: WallClock) -> None:
    old = SignedCookieStore(OLD_KEY, clock=wall_clock)
    new = SignedCookieStore([KEY, OLD_KEY], clock=wall_clock)
    old_value = old.create(_state(wall_clock, a=1))
    loaded = new.load(old_value)
    assert loaded is not None
    assert loaded.stale is True
    new_value = new.create(_state(wall_clock, a=1))
    fresh = new.load(new_value)
    assert fresh is not None
    assert fresh.stale is False
    assert old.load(new_value) is None  # signed by the new key only


def test_delete_does_nothing_and_the_cookie_still_loads(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    value = store.create(_state(wall_clock, a=1))
    store.delete(value)
    assert store.load(value) is not None  # no revocation: documented in the module docstring


def test_http_date_is_right_on_its_first_call_in_a_process() -> None:
    # The memo of the last second starts filled; before the fix it was (-1, ""), so a
    # fresh process formatted 1969-12-31 23:59:59 as "". A subprocess is a fresh process.
    code = "from sessions.cookies import http_date; print(http_date(-1)); print(http_date(0))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["Wed, 31 Dec 1969 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]


# -- SignedCookieStore: construction and what a cookie must not smuggle in -------------------


@pytest.mark.parametrize(
    "fallback", [pytest.param("", id="empty"), pytest.param(5, id="int"), pytest.param(None, id="none")]
)
def test_every_fallback_key_must_be_a_non_empty_string(fallback: object) -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY") as info:
        SignedCookieStore([KEY, fallback])  # type: ignore[list-item]
    assert info.value.setting == "SECRET_KEY"


def test_store_attributes_and_repr() -> None:
    store = SignedCookieStore([KEY, OLD_KEY])
    assert store.salt == "cachekit.session"
    assert SignedCookieStore(KEY, salt="other").salt == "other"
    assert store.encrypt is False
    assert store.max_size == MAX_COOKIE_SIZE
    assert repr(store) == "SignedCookieStore(keys=2, encrypt=False)"
    assert KEY not in repr(store)
    assert repr(SignedCookieStore(KEY, encrypt=True)) == "SignedCookieStore(keys=1, encrypt=True)"


def test_encrypt_without_cryptography_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)  # import now raises ImportError
    with pytest.raises(ConfigurationError, match="cryptography") as info:
        SignedCookieStore(KEY, encrypt=True)
    assert info.value.setting == "encrypt"


def test_a_record_padded_past_the_inflate_limit_loads_nothing(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    record = store._dump(_state(wall_clock, a=1))
    # Valid JSON whatever the cut: the record, then whitespace past 64 KiB once inflated.
    padded = b"." + base64_encode(zlib.compress(record + b" " * (64 * 1024)))
    value = store._signers[0].sign(padded).decode()
    assert len(value) < MAX_COOKIE_SIZE
    assert store.load(value) is None
    fits = store._signers[0].sign(b"." + base64_encode(zlib.compress(record + b" " * 100))).decode()
    assert store.load(fits) is not None  # the same record, short enough, loads


def test_save_records_the_new_cookie_on_the_session(wall_clock: WallClock) -> None:
    store = SignedCookieStore(KEY, clock=wall_clock)
    session = Session(store)
    session["a"] = 1
    value = session.save()
    assert session.session_key == value
    assert not session.modified
    assert session.changed_keys == frozenset()
