"""Signed cache values: an HMAC over the serialized bytes, checked before anything is loaded.

The cache's default serializer is pickle, and loading a pickle runs code. Whoever
can write to the cache server (a shared Redis, a memcached open on the network)
could otherwise make every worker run code of their choosing on its next read.
:class:`SignedSerializer` wraps any serializer: it prefixes the serialized bytes
with ``HMAC-SHA256(key, bytes)`` on write and, on read, hands the bytes to the
inner serializer only when the tag matches one of its keys. A value with a
missing or wrong tag raises :class:`BadSignatureError` (a
:class:`~cachekit.exceptions.SerializationError`), which :class:`~cachekit.Cache`
turns into a miss, counted in ``stats()["bad_signatures"]`` and logged once per
cache.

The tag also covers a *context*: :class:`~cachekit.Cache` passes its key prefix
and the key, so a signed value copied to another key (or into another cache's
prefix) does not verify there either. The tag does not cover the version, the
expiry or time: a writer can still delete values, and put back a value that
was stored under the same key earlier (a replay).

Keys are a list, rotated like session keys: values are signed with the first and
accepted under any, so a new key goes first and the old one stays until the
values it signed have expired. Each key is turned into its HMAC key once, when
the serializer is built (the secret is never used directly, as itsdangerous's
key derivation does), so a call costs one ``hmac.digest`` per key tried.

Integers stay unsigned ASCII digits, so ``incr`` keeps running on the server; a
forged integer is only a wrong number, never code. Nothing else is accepted
unsigned.

Configure it with ``SIGNING_KEYS`` in a ``CACHES`` entry, ``signing_keys=`` to
:func:`cachekit.from_url` / :func:`cachekit.aio.from_url`, or the
``CACHEKIT_SIGNING_KEYS`` environment variable (keys separated by whitespace or
commas). Never in a URL: URLs end up in logs and process lists.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from cachekit.serializers import Serializer

#: Environment variable holding signing keys for caches built from settings or URLs.
ENV_VAR = "CACHEKIT_SIGNING_KEYS"
#: Shortest accepted key, in bytes (a guessable key signs nothing).
MIN_KEY_BYTES = 32

# One byte marking a signed value: not a digit, "-", "Z" (compressed) or 0x80 (pickle),
# so it can never be mistaken for an unsigned value of either serializer.
_MARK = b"\x01"
_TAG_SIZE = hashlib.sha256().digest_size
_HEAD = len(_MARK) + _TAG_SIZE
_DIGIT_STARTS = frozenset(b"-0123456789")
_SALT = b"cachekit.signing.v1"


def _message(context: str, data: bytes) -> bytes:
    """What the tag covers: the context, length-prefixed so no two contexts run together, then the bytes."""
    head = context.encode("utf-8", "surrogatepass")  # cache keys may hold lone surrogates
    return b"%d:%s" % (len(head), head) + data


class BadSignatureError(SerializationError):
    """Stored bytes are unsigned or their signature matches none of the keys; never loaded."""


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise ConfigurationError(
            f"SIGNING_KEYS must hold str or bytes keys, got {type(key).__name__}.", setting="SIGNING_KEYS"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"SIGNING_KEYS: each key must be at least {MIN_KEY_BYTES} bytes of random data "
            f"(got one of {len(key)}); try secrets.token_urlsafe(32).",
            setting="SIGNING_KEYS",
        )
    return key


def normalize_keys(keys: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    """Return ``keys`` (one key, or several, newest first) as a non-empty list of bytes.

    :raises ConfigurationError: for no keys, a key that is not str/bytes, or one
        shorter than :data:`MIN_KEY_BYTES`.
    """
    items: Iterable[Any] = [keys] if isinstance(keys, (str, bytes)) else keys
    try:
        result = [_key_bytes(key) for key in items]
    except TypeError:
        raise ConfigurationError(
            f"SIGNING_KEYS must be a key or a list of keys, got {type(keys).__name__}.",
            setting="SIGNING_KEYS",
        ) from None
    if not result:
        raise ConfigurationError("SIGNING_KEYS must hold at least one key.", setting="SIGNING_KEYS")
    return result


def keys_from_env(value: str | None) -> list[bytes] | None:
    """Parse the :data:`ENV_VAR` value: keys separated by whitespace or commas; ``None`` if empty."""
    if not value or not value.strip():
        return None
    return normalize_keys(value.replace(",", " ").split())


class SignedSerializer:
    """Wrap ``inner`` so every stored value carries an HMAC-SHA256 tag (see the module docstring).

    :param inner: the serializer whose bytes are signed (pickle or JSON).
    :param keys: one key or a list, newest first: values are signed with the
        first and verified against each in turn.
    :raises ConfigurationError: for missing or short keys.
    """

    def __init__(self, inner: Serializer, keys: str | bytes | Iterable[str | bytes]) -> None:
        #: The wrapped serializer.
        self.inner = inner
        # Derived once: per call only the HMAC of the value itself is computed.
        self._keys = [hmac.digest(key, _SALT, "sha256") for key in normalize_keys(keys)]
        self._signing_key = self._keys[0]

    def __repr__(self) -> str:
        return f"SignedSerializer({self.inner!r}, keys=<{len(self._keys)}>)"

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value`` with the inner serializer and prefix the tag; ints stay digits."""
        return self.dumps_for("", value)

    def loads(self, data: bytes) -> Any:
        """Check the tag against every key, then load with the inner serializer.

        :raises BadSignatureError: for unsigned or wrongly signed bytes (not loaded).
        """
        return self.loads_for("", data)

    def dumps_for(self, context: str, value: Any) -> bytes:
        """Like :meth:`dumps`, with ``context`` (a cache's prefix and key) covered by the tag."""
        data = self.inner.dumps(value)
        if type(value) is int:
            return data
        return _MARK + hmac.digest(self._signing_key, _message(context, data), "sha256") + data

    def loads_for(self, context: str, data: bytes) -> Any:
        """Like :meth:`loads`; the tag must have been made for the same ``context``.

        :raises BadSignatureError: for unsigned bytes, a wrong key or another context.
        """
        if data[:1] != _MARK:
            if data and data[0] in _DIGIT_STARTS and data.isascii():
                try:
                    return int(data)  # written by incr or as an int: a number, never code
                except ValueError:
                    pass
            raise BadSignatureError(f"Refusing {len(data)} unsigned stored bytes.")
        tag = data[len(_MARK) : _HEAD]
        payload = data[_HEAD:]
        message = _message(context, payload)
        for key in self._keys:
            if hmac.compare_digest(tag, hmac.digest(key, message, "sha256")):
                return self.inner.loads(payload)
        raise BadSignatureError(
            f"Refusing {len(data)} stored bytes: the signature matches no key for this cache key."
        )


__all__ = ["ENV_VAR", "BadSignatureError", "SignedSerializer", "keys_from_env", "normalize_keys"]
