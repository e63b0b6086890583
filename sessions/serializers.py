"""Tagged JSON: the session serializer.

Session data is JSON, never pickle: a session store or cookie an attacker can
influence must not be able to run code when it is read. A few types JSON
cannot hold round-trip through a *tag*, a one-key object whose key starts with
a space:

=====================  ===========================================  ===============
Python value           encoded as                                   comes back as
=====================  ===========================================  ===============
``datetime.datetime``  ``{" dt": "2024-05-01T12:00:00+00:00"}``     equal datetime
``datetime.date``      ``{" d": "2024-05-01"}``                     equal date
``decimal.Decimal``    ``{" dec": "1.10"}``                         equal Decimal
``uuid.UUID``          ``{" u": "12345678123456781234567812345678"}``  equal UUID
``tuple``              ``{" t": [1, 2]}``                           equal tuple
``bytes``              ``{" b": "/w=="}`` (base64)                  equal bytes
``markupsafe.Markup``  ``{" m": "<b>hi</b>"}`` (anything with       ``Markup``
                       ``__html__``)
a dict with one key    ``{" di": [key, value]}``                    the same dict
that starts with " "
=====================  ===========================================  ===============

The tags cover what Flask's ``TaggedJSONSerializer`` keeps (tuple, bytes,
Markup, UUID, datetime), so a Flask app switching to a cachekit store gets its
flashed ``(category, message)`` tuples and markup back unchanged. A naive
datetime stays naive and an aware one keeps its UTC offset (a ``zoneinfo``
zone comes back as a fixed offset). Dict keys must be strings: JSON would
silently turn ``1`` into ``"1"``. Floats must be finite.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import json
import json.encoder
import math
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from cachekit.exceptions import SerializationError

_ATOMS = (str, int, bool, type(None))
_ESCAPE = " di"


_PLAIN = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})


def _tag_dict(value: dict[Any, Any]) -> dict[str, Any]:
    # Fast path, the common case: str keys, plain values, no key that needs escaping.
    if (
        _STR.issuperset(map(type, value))
        and _PLAIN.issuperset(map(type, value.values()))
        and (len(value) != 1 or next(iter(value))[:1] != " ")
    ):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be str, got {type(key).__name__} {key!r}")
            key = str(key)
        out[key] = tag(item)
    if len(out) == 1:
        ((only, item),) = out.items()
        if only[:1] == " ":
            return {_ESCAPE: [only, item]}
    return out


def tag(value: Any) -> Any:
    """Return ``value`` with every non-JSON type replaced by its tag.

    :raises TypeError: for a type that has no tag, a non-str dict key or a
        float that is not finite.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return _tag_dict(value)
    if kind is list:
        return [tag(item) for item in value]
    if kind is tuple:
        return {" t": [tag(item) for item in value]}
    if kind is bytes:
        return {" b": base64.b64encode(value).decode("ascii")}
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"float {value!r} is not finite")
        return value
    if isinstance(value, datetime.datetime):
        return {" dt": value.isoformat()}
    if isinstance(value, datetime.date):
        return {" d": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {" dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {" u": value.hex}
    if hasattr(value, "__html__"):
        return {" m": str(value.__html__())}
    if isinstance(value, _ATOMS):
        return value  # str and int subclasses (enums) encode as their base value
    if isinstance(value, float):
        return tag(float(value))
    if isinstance(value, dict):
        return _tag_dict(value)
    if isinstance(value, list):
        return [tag(item) for item in value]
    if isinstance(value, tuple):
        return {" t": [tag(item) for item in value]}
    if isinstance(value, (bytes, bytearray)):
        return {" b": base64.b64encode(value).decode("ascii")}
    raise TypeError(
        f"{type(value).__name__} {value!r} cannot be stored in a session; store JSON types, "
        "datetime, date, Decimal, UUID, tuple, bytes or Markup"
    )


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    ((name, value),) = obj.items()
    if name[:1] != " ":
        return obj
    if name == " dt":
        return datetime.datetime.fromisoformat(value)
    if name == " d":
        return datetime.date.fromisoformat(value)
    if name == " dec":
        return decimal.Decimal(value)
    if name == " u":
        return uuid.UUID(hex=value)
    if name == " t":
        if type(value) is not list:
            raise ValueError("malformed tuple tag")
        return tuple(value)
    if name == " b":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValueError(f"malformed bytes tag: {exc}") from None
    if name == " m":
        if type(value) is not str:
            raise ValueError("malformed markup tag")
        try:
            from markupsafe import Markup
        except ImportError:  # written by an app that had markupsafe; read as text
            return value
        return Markup(value)
    if name == _ESCAPE:
        key, item = value
        return {key: item}
    raise ValueError(f"unknown tag {name!r}")


# Built once: json.dumps/json.loads with options build a new coder on every call, and so
# does JSONEncoder.encode (its iterencode makes the C encoder anew), so dumps calls the C
# encoder made here. No circularity check: ``tag`` walks every value first, so a cycle
# fails there (RecursionError). Neither keeps state between calls: threads may share them.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False)
_ENCODE: Callable[[Any, int], Iterable[str]]
if json.encoder.c_make_encoder is not None:  # type: ignore[attr-defined]
    _ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
else:  # pragma: no cover  (an interpreter without json's C accelerator)

    def _ENCODE(value: Any, _level: int) -> Iterable[str]:  # noqa: N802
        return _ENCODER.iterencode(value)


_DECODER = json.JSONDecoder(object_hook=_untag)


class TaggedJSONSerializer:
    """JSON with tags for datetime, date, Decimal, UUID, tuple, bytes and Markup; the session serializer.

    Satisfies :class:`cachekit.serializers.Serializer`, so it can serialize a
    :class:`~cachekit.Cache`'s values too.
    """

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as compact UTF-8 JSON.

        :raises SerializationError: if some part of ``value`` has no JSON form.
        """
        try:
            return "".join(_ENCODE(tag(value), 0)).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"Cannot serialize session data: {exc}.") from exc

    def loads(self, data: bytes | str) -> Any:
        """Return the value ``data`` encodes.

        :raises SerializationError: if ``data`` is not tagged JSON.
        """
        try:
            return _DECODER.decode(data.decode() if isinstance(data, bytes) else data)
        except Exception as exc:  # a malformed tag can fail in any of its decoders
            raise SerializationError(f"Cannot deserialize session data: {exc}.") from exc


__all__ = ["TaggedJSONSerializer", "tag"]
