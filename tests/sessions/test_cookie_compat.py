"""Signed cookies made before the store used itsdangerous's ``Signer`` still load, and are made alike.

The constants below were made by the code before that change (commit 35e1d3e,
``sessions/stores/cookie.py`` with its own HMAC), with the clock fixed at
``T``: a deploy needs no key rotation and logs nobody out.
"""

from __future__ import annotations

import pytest

from sessions.session import Session
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.test_cookie_store import require_cryptography

T = 1_764_000_000.0
KEY = "cookie-compat-key-0123456789abcdef"
RETIRED = "retired-signing-key-0123456789abcdef"

SMALL = (
    "eyJkIjp7InVzZXIiOjQyLCJuYW1lIjoiYWRhIn0sImMiOjE3NjQwMDAwMDAuMCwiYSI6MTc2NDAwMDAwMC4wfQ"
    ".1uzjsFBKT0qws3Sn1qAQANdoFHU"
)
COMPRESSED = (
    ".eJyrVkpRsqpWyssvSS1WsopWKkotSE0sUchNVdIZZQ87dqyOUp6SlWGtjlIykDI3MzEAAz0DHaVEVIFaALHhqX8"
    ".BaQ6YlcXm2aEFRwY5lNHXDRGdo4"
)
SIGNED_BY_RETIRED = (
    "eyJkIjp7InVzZXIiOjd9LCJjIjoxNzY0MDAwMDAwLjAsImEiOjE3NjQwMDAwMDAuMH0.XV_fFKawyUWg5jOhpj0vliprTr8"
)
ENCRYPTED = (
    "gAAAAABrDsbDXxmyi2jr16PMH9KqmCU8wj3mxHsR_KTvUR6TuP6Xhl7mbPS0NWE4LMqbGgbmaPomU_SRCB-3QxuV3Z2veVuz"
    "FXuTNSNiV3Lrxb5Ed9n79XVaA1AgC2OsUsJNzjL3KOW8CMW8tSsVpD1VV1GC8ahVCA=="
)


def _store(keys: str | list[str] = KEY, *, encrypt: bool = False) -> SignedCookieStore:
    return SignedCookieStore(keys, encrypt=encrypt, clock=lambda: T)


def _made(store: SignedCookieStore, **data: object) -> str:
    session = Session(store)
    session.update(data)
    return session.save()


@pytest.mark.parametrize(
    ("cookie", "data"),
    [
        pytest.param(SMALL, {"user": 42, "name": "ada"}, id="small"),
        pytest.param(COMPRESSED, {"notes": ["repeat me"] * 40, "n": 1}, id="compressed"),
    ],
)
def test_a_cookie_signed_by_the_old_code_loads_and_is_made_the_same_again(
    cookie: str, data: dict[str, object]
) -> None:
    store = _store()
    state = store.load(cookie)
    assert state is not None
    assert state.data == data
    assert state.stale is False  # the current key verified it: no re-signing needed
    assert _made(store, **data) == cookie  # byte for byte what the old code made


def test_a_cookie_the_old_code_signed_with_a_key_now_retired_loads_and_is_re_signed() -> None:
    store = _store([KEY, RETIRED])
    state = store.load(SIGNED_BY_RETIRED)
    assert state is not None
    assert state.data == {"user": 7}
    assert state.stale is True
    assert _store(KEY).load(SIGNED_BY_RETIRED) is None  # without the fallback key: refused


def test_a_tampered_old_cookie_is_refused() -> None:
    payload, _, signature = SMALL.rpartition(".")
    assert _store().load(f"{payload}.{signature[:-1]}A") is None
    assert _store().load(f"{payload[:-1]}x.{signature}") is None


def test_an_encrypted_cookie_made_by_the_old_code_loads() -> None:
    require_cryptography()
    state = _store(encrypt=True).load(ENCRYPTED)
    assert state is not None
    assert state.data == {"user": 1}
