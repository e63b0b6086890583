"""SignedCookieStore: the whole session in a signed (optionally encrypted) cookie.

The data is tagged JSON (:mod:`sessions.serializers`), zlib-compressed when
that makes it shorter (payloads of 200 bytes or more), and signed in
:mod:`itsdangerous`'s ``URLSafeSerializer`` format (HMAC-SHA1 over a key
derived from the secret key and the salt, as Django and Flask do). With
``encrypt=True`` it is encrypted and authenticated with Fernet from the
``cryptography`` package instead (install the ``crypto`` extra), so the client
cannot read it either; encrypted payloads are not compressed, because
compressing secrets next to data an attacker chooses leaks them through the
length (CRIME).

Secret keys rotate: the first key signs, every key verifies. A cookie that
only an older key verifies is loaded and re-signed with the current key in the
same response.

What cookie sessions cannot do, by design:

* **no merge of concurrent changes**: each response carries the whole session,
  so of two overlapping requests the later ``Set-Cookie`` wins and the other's
  changes are lost;
* **no revocation**: :meth:`~sessions.session.Session.flush` deletes the
  browser's cookie, but a copy taken earlier stays valid until it expires.
  Keep ``SESSION_COOKIE_AGE`` short, or use ``CacheStore``;
* **about 4 KB**: a session whose cookie would exceed ``max_size`` bytes raises
  :class:`~sessions.exceptions.CookieTooLargeError` at save, and the client
  keeps its previous cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from itsdangerous import BadData
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode
from itsdangerous.encoding import base64_encode

from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from cachekit.serializers import Serializer
from sessions.exceptions import CookieTooLargeError
from sessions.session import DEFAULT_AGE
from sessions.session import SessionState
from sessions.stores.base import BaseStore

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from sessions.session import Session

#: The largest cookie browsers keep, as Werkzeug and Django count it.
MAX_COOKIE_SIZE = 4093
_COMPRESS_FROM = 200
_MAX_INFLATED = 64 * 1024


class _Signer:
    """itsdangerous's ``URLSafeSerializer`` wire format for one key, with the key derived once.

    Cookies are byte-for-byte what ``URLSafeSerializer(key, salt=salt)`` makes
    and reads (a test checks both ways): ``[.]base64(payload).base64(hmac)``,
    a leading dot marking zlib. itsdangerous derives its HMAC key from the
    secret and the salt on every call; doing it once here makes a session
    request several times cheaper.
    """

    def __init__(self, secret: bytes, salt: str) -> None:
        self._key = URLSafeSerializer(secret, salt=salt).make_signer().derive_key()

    def _signature(self, payload: bytes) -> bytes:
        return base64_encode(hmac.digest(self._key, payload, "sha1"))

    def sign(self, payload: bytes) -> str:
        return (payload + b"." + self._signature(payload)).decode("ascii")

    def unsign(self, value: bytes) -> bytes | None:
        payload, sep, signature = value.rpartition(b".")
        if not sep or not hmac.compare_digest(self._signature(payload), signature):
            return None
        return payload


def _pack(data: bytes) -> bytes:
    # Compression cannot pay for itself on small payloads; try it from 200 bytes.
    if len(data) >= _COMPRESS_FROM:
        packed = zlib.compress(data)
        if len(packed) < len(data) - 1:
            return b"." + base64_encode(packed)
    return base64_encode(data)


def _unpack(payload: bytes) -> bytes:
    if payload[:1] != b".":
        return base64_decode(payload)
    inflater = zlib.decompressobj()
    # A 4 KB cookie can inflate to megabytes: refuse anything larger than we would write.
    data = inflater.decompress(base64_decode(payload[1:]), _MAX_INFLATED)
    if inflater.unconsumed_tail:
        raise ValueError("compressed session cookie is too large")
    return data


#: The shortest signing key accepted, in bytes (256 bits, the size of the HMAC-SHA256 key).
MIN_SECRET_BYTES = 32


def _secret_list(secret_keys: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    if isinstance(secret_keys, (str, bytes)):
        keys: list[Any] = [secret_keys]
    elif isinstance(secret_keys, (list, tuple)):
        keys = list(secret_keys)
    else:
        keys = []
    if not keys or any(not isinstance(key, (str, bytes)) or not key for key in keys):
        raise ConfigurationError(
            "SECRET_KEY must be set to a long, random, non-empty string for signed cookie sessions "
            "(SECRET_KEY_FALLBACKS, if given, must be a list of such strings).",
            setting="SECRET_KEY",
        )
    encoded = [key.encode() if isinstance(key, str) else key for key in keys]
    if len(encoded[0]) < MIN_SECRET_BYTES:
        # Only the signing key: an older, shorter key may stay in the fallbacks while it is rotated out.
        raise ConfigurationError(
            f"SECRET_KEY is {len(encoded[0])} bytes; signing needs at least {MIN_SECRET_BYTES}. "
            'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
            setting="SECRET_KEY",
        )
    return encoded


def _fernet(secret: bytes, salt: bytes) -> Fernet:
    from cryptography.fernet import Fernet

    key = hmac.new(secret, b"cachekit.fernet:" + salt, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


class SignedCookieStore(BaseStore):
    """Client-side sessions: the data travels in a signed cookie.

    :param secret_keys: the current key, or a list whose first key signs and
        every key verifies (``[SECRET_KEY, *SECRET_KEY_FALLBACKS]``).
    :param salt: separates these signatures from others made with the same key.
    :param encrypt: encrypt with Fernet (needs ``cryptography``) instead of only signing.
    :param max_size: the largest cookie value produced, in bytes.
    :param age: absolute lifetime in seconds (``SESSION_COOKIE_AGE``), checked
        on load against the signed creation time.
    :param idle_timeout: seconds of inactivity before a session ends, or ``None``.
    :param refresh_interval: least seconds between activity-only re-signs.
    :param expire_at_browser_close: send cookies without ``Max-Age``.
    :param serializer: defaults to tagged JSON.
    :param clock: Unix time in seconds.
    :raises ConfigurationError: for a missing or empty secret key, a signing
        (first) key shorter than :data:`MIN_SECRET_BYTES`, or ``encrypt=True``
        without ``cryptography``.
    """

    server_side = False

    def __init__(
        self,
        secret_keys: str | bytes | Sequence[str | bytes],
        *,
        salt: str = "cachekit.session",
        encrypt: bool = False,
        max_size: int = MAX_COOKIE_SIZE,
        age: float = DEFAULT_AGE,
        idle_timeout: float | None = None,
        refresh_interval: float | None = None,
        expire_at_browser_close: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            age=age,
            idle_timeout=idle_timeout,
            refresh_interval=refresh_interval,
            expire_at_browser_close=expire_at_browser_close,
            serializer=serializer,
            clock=clock,
        )
        keys = _secret_list(secret_keys)
        if not isinstance(max_size, int) or max_size < 64:
            raise ConfigurationError(f"max_size must be an int >= 64, got {max_size!r}.", setting="max_size")
        #: Whether payloads are encrypted as well as authenticated.
        self.encrypt = bool(encrypt)
        #: The largest cookie value produced, in bytes.
        self.max_size = max_size
        #: The salt mixed into every derived key.
        self.salt = salt
        self._fernets: list[Fernet] = []
        self._signers: list[_Signer] = []
        if self.encrypt:
            try:
                self._fernets = [_fernet(key, salt.encode()) for key in keys]
            except ImportError:
                raise ConfigurationError(
                    "Encrypted cookie sessions need the 'cryptography' package: "
                    "pip install 'cachekit-suite[crypto]'.",
                    setting="encrypt",
                ) from None
        else:
            # One signer per key (rather than itsdangerous's key list) tells us
            # which key verified, so fallback-signed cookies can be re-signed.
            self._signers = [_Signer(key, salt) for key in keys]

    def __repr__(self) -> str:
        keys = len(self._fernets or self._signers)
        return f"SignedCookieStore(keys={keys}, encrypt={self.encrypt})"  # never the keys themselves

    # -- encoding --------------------------------------------------------------

    def _encode(self, state: SessionState) -> str:
        data = self._dump(state)
        if len(data) > _MAX_INFLATED:
            # Reading refuses to inflate more than this (zip bombs), so writing must
            # refuse it too: a cookie that compresses small would log the user out.
            raise CookieTooLargeError(len(data), _MAX_INFLATED)
        if self._fernets:
            return self._fernets[0].encrypt(data).decode("ascii")
        return self._signers[0].sign(_pack(data))

    def _decode(self, value: str) -> tuple[Any, bool]:
        """Return ``(record, verified_by_current_key)``; raise ``ValueError`` if no key verifies."""
        token = value.encode("ascii")
        if self._fernets:
            from cryptography.fernet import InvalidToken

            for index, fernet in enumerate(self._fernets):
                try:
                    plain = fernet.decrypt(token)
                except InvalidToken:
                    continue
                return self.serializer.loads(plain), index == 0
            raise ValueError("no key decrypts the cookie")
        for index, signer in enumerate(self._signers):
            payload = signer.unsign(token)
            if payload is not None:
                return self.serializer.loads(_unpack(payload)), index == 0
        raise ValueError("no key verifies the cookie")

    # -- Store -----------------------------------------------------------------

    def load(self, cookie_value: str) -> SessionState | None:
        """Return the session in ``cookie_value`` if a key verifies it and it has not expired."""
        # Oversized values are rejected before any crypto work; neither we nor a
        # browser would have produced them.
        if len(cookie_value) > self.max_size or not cookie_value.isascii():
            return None
        try:
            record, current = self._decode(cookie_value)
            state = SessionState.from_record(record)
        except (ValueError, SerializationError, UnicodeError, TypeError, zlib.error, BadData):
            return None
        if not self._live(state):
            return None
        state.stale = not current
        return state

    def create(self, state: SessionState) -> str:
        """Return a cookie value holding ``state``.

        :raises CookieTooLargeError: if it would exceed ``max_size`` bytes.
        """
        value = self._encode(state)
        if len(value) > self.max_size:
            raise CookieTooLargeError(len(value), self.max_size)
        return value

    def save(self, session: Session) -> str:
        """Return a cookie value holding the whole session, signed with the current key.

        :raises CookieTooLargeError: if it would exceed ``max_size`` bytes; the
            session keeps its previous cookie value.
        """
        fresh = session.session_key is None or session.cycle_pending
        state = self._next_state(session, fresh=fresh)
        value = self.create(state)
        session.saved(value, state)
        return value

    def cycle(self, session: Session) -> str:
        """Return a newly signed cookie value with the same data and a new creation time."""
        state = self._next_state(session, fresh=True)
        value = self.create(state)
        session.saved(value, state)
        return value

    def delete(self, cookie_value: str) -> None:
        """Do nothing: a cookie cannot be revoked from the server (see the module docstring)."""


__all__ = ["MAX_COOKIE_SIZE", "MIN_SECRET_BYTES", "SignedCookieStore"]
