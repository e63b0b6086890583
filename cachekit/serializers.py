"""Serializers turn cached values into bytes and back.

Both serializers store ``int`` values as ASCII digits (``b"42"``), so a backend
can run ``incr`` on the server, and both can compress large payloads with zlib
above a size threshold. The first byte tells the formats apart: digits or ``-``
for integers, ``Z`` for compressed data, anything else for the serializer's own
format (pickle always starts with ``0x80``).

:class:`PickleSerializer` stores an exact ``str`` as ``0xF0`` and its UTF-8
bytes, and exact ``bytes`` as ``0xF1`` and the bytes: they load with a slice
(and a decode) instead of ``pickle.loads``, twice as fast, which is most of
``get_many``'s decoding. The bytes ``0xF0``-``0xFF`` are kept for such tags:
they never start a pickle, digits, the compression mark or a signed value,
and ``pickle.loads`` refuses them, so a cachekit from before the tags counts
such a value as undecodable (a miss) rather than loading garbage, and this
one raises :class:`UnknownFormatError` for a tag it does not know. Values
stored as plain pickles load as before.

* :class:`PickleSerializer` is the cache's default: the cache store is trusted
  and pickle round-trips any Python object.
* :class:`JSONSerializer` is for data a client can influence (sessions): it can
  never run code while loading.
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Collection
from collections.abc import Iterable
from operator import itemgetter
from typing import Any
from typing import Protocol

from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError

_COMPRESSED = b"Z"
# Pickle protocol 2 and later start with the PROTO opcode.
_PICKLE = b"\x80"
_PROTO = _PICKLE[0]
_DIGIT_STARTS = frozenset(b"-0123456789")
# PickleSerializer's tags (see the module docstring); 0xF2-0xFF are for later formats.
_STR = 0xF0
_BYTES = 0xF1
_FIRST_TAG = 0xF0
_first = itemgetter(0)
_tail = itemgetter(slice(1, None))


class UnknownFormatError(SerializationError):
    """Stored bytes carry a format tag this version does not know (a newer cachekit wrote them)."""


class Serializer(Protocol):
    """Converts values to bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as bytes.

        :raises SerializationError: if the value cannot be serialized.
        """
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value ``data`` encodes.

        :raises SerializationError: if ``data`` is not valid for this serializer.
        """
        ...


class _CompressingSerializer:
    """Shared integer fast path and optional zlib compression."""

    def __init__(self, *, compress_threshold: int | None = None, compress_level: int = 6) -> None:
        if compress_threshold is not None and compress_threshold < 0:
            raise ConfigurationError(
                f"compress_threshold must be >= 0 or None, got {compress_threshold!r}.",
                setting="compress_threshold",
            )
        if not 0 <= compress_level <= 9:
            raise ConfigurationError(
                f"compress_level must be 0..9, got {compress_level!r}.", setting="compress_level"
            )
        #: Payloads longer than this many bytes are zlib-compressed; ``None`` disables.
        self.compress_threshold = compress_threshold
        #: zlib level used when compressing.
        self.compress_level = compress_level

    def _encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``; integers become ASCII digits."""
        try:
            if type(value) is int:
                return str(value).encode()  # may hit Python's int-to-str digit limit
            data = self._encode(value)
        except SerializationError:
            raise
        except Exception as exc:  # pickle and json raise many unrelated types
            raise SerializationError(
                f"Cannot serialize a value of type {type(value).__name__!r}: {exc}"
            ) from exc
        threshold = self.compress_threshold
        if threshold is not None and len(data) > threshold:
            packed = zlib.compress(data, self.compress_level)
            if len(packed) + 1 < len(data):
                return _COMPRESSED + packed
        return data

    def loads(self, data: bytes) -> Any:
        """Deserialize bytes written by :meth:`dumps`."""
        try:
            if data[:1] == _COMPRESSED:
                return self._decode(zlib.decompress(data[1:]))
            if data and data[0] in _DIGIT_STARTS:
                try:
                    return int(data)
                except ValueError:
                    pass  # a float or other JSON text: let the format decide
            return self._decode(data)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"Cannot deserialize {len(data)} stored bytes: {exc}") from exc

    def loads_many(self, datas: Iterable[bytes]) -> list[Any]:
        """:meth:`loads` of each, in order, in one pass (``Cache.get_many``).

        :raises SerializationError: if any of them is not valid for this serializer.
        """
        return [self.loads(data) for data in datas]


class PickleSerializer(_CompressingSerializer):
    """Pickle, for the trusted cache store; the default for :class:`cachekit.Cache`."""

    def __init__(
        self,
        *,
        protocol: int = pickle.HIGHEST_PROTOCOL,
        compress_threshold: int | None = None,
        compress_level: int = 6,
    ) -> None:
        super().__init__(compress_threshold=compress_threshold, compress_level=compress_level)
        #: The pickle protocol; must be 2 or higher so pickles start with ``0x80``.
        self.protocol = max(protocol, 2)

    def _encode(self, value: Any) -> bytes:
        if type(value) is str:
            try:
                return b"\xf0" + value.encode()
            except UnicodeEncodeError:
                pass  # a lone surrogate: pickle keeps it
        elif type(value) is bytes:
            return b"\xf1" + value
        return pickle.dumps(value, self.protocol)

    def _decode(self, data: bytes) -> Any:
        first = data[0]
        if first == _STR:
            return data[1:].decode()
        if first == _BYTES:
            return data[1:]
        if first >= _FIRST_TAG:
            raise UnknownFormatError(
                f"Cannot deserialize {len(data)} stored bytes: format tag 0x{first:02X} is not known to "
                "this version of cachekit (a newer one wrote it?)."
            )
        return pickle.loads(data)

    def loads(self, data: bytes) -> Any:
        """Deserialize bytes written by :meth:`dumps`; a pickle or a tagged str/bytes goes straight in."""
        try:
            first = data[0]
            if first == _PROTO:  # neither digits nor the compression mark start like this
                return pickle.loads(data)
            if first == _STR:
                return data[1:].decode()
        except Exception as exc:
            raise SerializationError(f"Cannot deserialize {len(data)} stored bytes: {exc}") from exc
        return super().loads(data)

    def loads_many(self, datas: Iterable[bytes]) -> list[Any]:
        """:meth:`loads` of each, in order; a batch of one format is decoded by C-level maps alone.

        :raises SerializationError: if any of them is not valid for this serializer.
        """
        if not isinstance(datas, Collection):
            datas = list(datas)  # read twice below
        try:
            firsts = set(map(_first, datas))
            if len(firsts) == 1:
                first = firsts.pop()
                if first == _STR:
                    return list(map(bytes.decode, map(_tail, datas)))
                if first == _PROTO:
                    return list(map(pickle.loads, datas))
        except Exception as exc:
            raise SerializationError(f"Cannot deserialize a stored value: {exc}") from exc
        return list(map(self.loads, datas))


class JSONSerializer(_CompressingSerializer):
    """Compact UTF-8 JSON; never executes code on load."""

    def _encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def _decode(self, data: bytes) -> Any:
        return json.loads(data)


__all__ = ["JSONSerializer", "PickleSerializer", "Serializer", "UnknownFormatError"]
