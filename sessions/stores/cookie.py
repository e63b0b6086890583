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
* **no revocation without a cache**: :meth:`~sessions.session.Session.flush`
  deletes the browser's cookie, but a copy taken earlier stays valid until it
  expires. Give the store a ``revocation_cache`` (below), keep
  ``SESSION_COOKIE_AGE`` short, or use ``CacheStore``;
* **about 4 KB**: a session whose cookie would exceed ``max_size`` bytes raises
  :class:`~sessions.exceptions.CookieTooLargeError` at save, and the client
  keeps its previous cookie.

**Revocation with a cache.** ``SignedCookieStore(..., revocation_cache=cache)``
makes cookies of sessions with an owner (:meth:`~sessions.session.Session.set_user`)
revocable. Such a cookie carries the owner's *generation* (a random token kept
in the cache, one small key per user, without expiry) and a random id of its
own; loading it reads both from the cache in one ``get_many``.
:meth:`SignedCookieStore.revoke_user` replaces the generation, so every cookie
of that user issued before stops loading, copies included. Each such cookie
id is also recorded in the cache as *live* until the cookie would expire;
logout (``flush``) and ``cycle_key`` delete that record, so a replayed copy
stops loading too. A cookie loads only while both its generation and its live
record are in the cache: whatever the cache forgets (an eviction, an emptied
cache), a user is logged out, never let back in: revocation fails closed. (A
*revoked* record instead would fail open: evicting it, as Redis's
``volatile-lru`` does first of all, would revive the cookie.) A cache outage raises
:class:`~cachekit.exceptions.BackendUnavailableError` (the middleware answers
503), as ``CacheStore`` does. Cookies without an owner cost nothing extra.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from itsdangerous import BadData
from itsdangerous import BadSignature
from itsdangerous import Signer
from itsdangerous.encoding import base64_decode
from itsdangerous.encoding import base64_encode
from itsdangerous.encoding import want_bytes

from cachekit.cache import Cache
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from sessions.exceptions import CookieTooLargeError
from sessions.session import Session
from sessions.state import USER_KEY
from sessions.state import SessionState
from sessions.stores.base import BaseStore
from sessions.stores.base import StoreOptions

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from typing_extensions import Unpack

#: The largest cookie browsers keep, as Werkzeug and Django count it.
MAX_COOKIE_SIZE = 4093
_COMPRESS_FROM = 200
_MAX_INFLATED = 64 * 1024
#: Session keys of a revocable cookie: the owner's generation and the cookie's own id.
GENERATION_KEY = "cachekit.gen"
COOKIE_ID_KEY = "cachekit.sid"


class _Signer(Signer):
    """itsdangerous's :class:`~itsdangerous.Signer` for one key, with the key derived once.

    Cookies are byte-for-byte what ``URLSafeSerializer(key, salt=salt)`` makes
    and reads (a test checks both ways): ``[.]base64(payload).base64(hmac)``,
    a leading dot marking zlib. itsdangerous derives its HMAC key from the
    secret and the salt on every call; deriving it once here makes a session
    request several times cheaper.
    """

    def __init__(self, secret: bytes, salt: str) -> None:
        super().__init__(secret, salt=salt)  # itsdangerous's defaults: HMAC-SHA1, "django-concat"
        self._key = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        """The key derived from this signer's one secret (computed once, in ``__init__``)."""
        return self._key

    def get_signature(self, value: str | bytes) -> bytes:
        """The base64 signature of ``value``, with the key derived once."""
        # By name: hmac.digest takes OpenSSL's one-shot path for "sha1", not for
        # itsdangerous's digest_method (a Python function wrapping hashlib.sha1).
        return base64_encode(hmac.digest(self._key, want_bytes(value), "sha1"))

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        """Whether ``sig`` (base64, as sent) signs ``value``.

        Compared in its base64 form, as itsdangerous makes it: one encode
        instead of padding and decoding every request's signature.
        """
        return hmac.compare_digest(self.get_signature(value), want_bytes(sig))


# Compression is itsdangerous's format too (URLSafeSerializer's ``load_payload``), but that
# inflates without a limit: these two keep the format and refuse a zip bomb.
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
    :param options: the :class:`~sessions.stores.base.StoreOptions` of ``StoreBase``:
    :param age: absolute lifetime in seconds (``SESSION_COOKIE_AGE``), checked
        on load against the signed creation time.
    :param idle_timeout: seconds of inactivity before a session ends, or ``None``.
    :param refresh_interval: least seconds between activity-only re-signs.
    :param expire_at_browser_close: send cookies without ``Max-Age``.
    :param serializer: defaults to tagged JSON.
    :param clock: Unix time in seconds.
    :param revocation_cache: a cache (Redis or memcached for more than one
        process) that makes cookies of sessions with an owner revocable by
        :meth:`revoke_user` and logout; see the module docstring.
    :param revocation_prefix: prepended to the keys kept in ``revocation_cache``.
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
        revocation_cache: Cache | None = None,
        revocation_prefix: str = "cachekit.revoked.",
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(**options)
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
        if revocation_cache is not None and not isinstance(revocation_cache, Cache):
            raise ConfigurationError(
                f"revocation_cache must be a cachekit.Cache, got {revocation_cache!r}.",
                setting="revocation_cache",
            )
        #: Where generations and revoked cookie ids are kept (``None``: cookies cannot be revoked).
        #: Outages raise, whatever the cache's ``on_error``: a check that silently passed would
        #: let a revoked cookie in.
        self.revocation_cache = (
            None if revocation_cache is None else revocation_cache.replace(on_error="raise")
        )
        self.revocation_prefix = revocation_prefix

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
        return self._signers[0].sign(_pack(data)).decode("ascii")

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
            try:
                payload = signer.unsign(token)
            except BadSignature:
                continue
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
        if self.revocation_cache is not None and USER_KEY in state.data and not self._unrevoked(state.data):
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
        return self._issue(session, fresh=session.session_key is None or session.cycle_pending)

    def cycle(self, session: Session) -> str:
        """Return a newly signed cookie value with the same data and a new creation time."""
        return self._issue(session, fresh=True)

    def _issue(self, session: Session, *, fresh: bool) -> str:
        state = self._next_state(session, fresh=fresh)
        if self.revocation_cache is not None:
            self._mark(session, state, fresh)
        value = self.create(state)
        session.saved(value, state)
        return value

    def delete(self, cookie_value: str) -> None:
        """Revoke this cookie with a ``revocation_cache`` (logout); without one, do nothing.

        Without a cache a cookie cannot be revoked: a copy stays valid until it expires.

        :raises BackendUnavailableError: if the revocation cache is down.
        """
        if self.revocation_cache is None:
            return
        state = self.load(cookie_value)
        if state is not None:
            self._revoke_cookie(state)

    # -- revocation ------------------------------------------------------------

    def _generation_key(self, user_id: str | int) -> str:
        kind = "i" if type(user_id) is int else "s"
        return self.revocation_prefix + "gen." + hashlib.sha256(f"{kind}:{user_id}".encode()).hexdigest()

    def _cookie_key(self, cookie_id: str) -> str:
        # "live.", not the "sid." of the revoked marks that came before: such a mark is not a live record.
        return self.revocation_prefix + "live." + cookie_id

    def _unrevoked(self, data: dict[str, Any]) -> bool:
        cache = self.revocation_cache
        assert cache is not None
        generation_key = self._generation_key(data[USER_KEY])
        cookie_id = data.get(COOKIE_ID_KEY)
        if type(cookie_id) is not str:
            return False
        cookie_key = self._cookie_key(cookie_id)
        found = cache.get_many([generation_key, cookie_key])
        generation = found.get(generation_key)
        return generation is not None and generation == data.get(GENERATION_KEY) and cookie_key in found

    def _generation(self, user_id: str | int) -> str:
        cache = self.revocation_cache
        assert cache is not None
        key = self._generation_key(user_id)
        generation = cache.get(key)
        if generation is None:
            cache.add(key, secrets.token_urlsafe(12), timeout=None)
            generation = cache.get(key)
        if type(generation) is not str:
            raise SerializationError(f"The revocation generation under {key!r} is not a token.", key=key)
        return generation

    def _revoke_cookie(self, state: SessionState) -> None:
        cookie_id = state.data.get(COOKIE_ID_KEY)
        cache = self.revocation_cache
        if type(cookie_id) is str and cache is not None:
            cache.delete(self._cookie_key(cookie_id))

    def _mark(self, session: Session, state: SessionState, fresh: bool) -> None:
        """Put the owner's generation and a cookie id in an owned cookie; on a cycle, revoke the old one."""
        pending = session.pending_user
        user_id = state.data.get(USER_KEY)
        if user_id is None:
            return
        if fresh and session.session_key is not None:
            self._revoke_cookie(session.state)  # the cookie before cycle_key() ends
        if pending is not None or fresh or GENERATION_KEY not in state.data:
            state.data[GENERATION_KEY] = self._generation(user_id)
        cache = self.revocation_cache
        assert cache is not None
        left = self.policy.expires_at(state) - self.clock()
        if fresh or COOKIE_ID_KEY not in state.data:
            state.data[COOKIE_ID_KEY] = cookie_id = secrets.token_urlsafe(12)
            cache.set(self._cookie_key(cookie_id), 1, timeout=max(left, 1.0))
        else:
            # Only extended, never re-created: a copy saved after its logout must stay dead.
            cache.touch(self._cookie_key(state.data[COOKIE_ID_KEY]), timeout=max(left, 1.0))

    def revoke_user(self, user_id: str | int, keep: Session | None = None) -> None:
        """End every cookie session of ``user_id`` issued so far, copies included, except ``keep``.

        Needs a ``revocation_cache``. ``keep`` (the request's session, loaded)
        gets the new generation and is saved again by the middleware, so the
        browser receives a fresh cookie; the copy of its old cookie ends too.
        Cookies cannot be counted, so nothing is returned.

        :raises ConfigurationError: without a ``revocation_cache``: cookie sessions cannot be revoked.
        :raises TypeError: if ``keep`` is a cookie value (pass the Session, whose cookie must be re-issued).
        :raises BackendUnavailableError: if the revocation cache is down.
        """
        cache = self.revocation_cache
        if cache is None:
            raise ConfigurationError(
                "SignedCookieStore cannot revoke sessions without revocation_cache=<a cachekit.Cache>.",
                setting="revocation_cache",
            )
        if keep is not None and not isinstance(keep, Session):
            raise TypeError(
                "revoke_user(keep=) on a cookie store takes the Session, whose cookie is re-issued."
            )
        generation = secrets.token_urlsafe(12)
        cache.set(self._generation_key(user_id), generation, timeout=None)
        if keep is not None and keep.state.data.get(USER_KEY) == user_id:
            keep.state.data[GENERATION_KEY] = generation
            keep.modified = True

    def sessions_of(self, user_id: str | int, current: object = None) -> list[Any]:
        """Cookie sessions cannot be listed: the server does not keep them.

        :raises NotImplementedError: always; use ``CacheStore`` to list a user's sessions.
        """
        raise NotImplementedError("SignedCookieStore cannot list sessions; use CacheStore for sessions_of().")


__all__ = ["COOKIE_ID_KEY", "GENERATION_KEY", "MAX_COOKIE_SIZE", "MIN_SECRET_BYTES", "SignedCookieStore"]
