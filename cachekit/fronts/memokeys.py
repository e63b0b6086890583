"""The keys of ``@memoize``: a function's name and its bound arguments in a canonical text form.

The form is the same in every process: no ``hash()``, no ``id()``; see
:mod:`cachekit.memoize` for which arguments can be keyed. Sync and async
memoization of one function build the same keys here.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import re
from collections.abc import Callable
from typing import Any

_SIMPLE = (type(None), bool, int, float, str, bytes)

# Typed Any: mypy takes any two __repr__ for the same function and calls the test always-true.
_OBJECT_REPR: Any = object.__repr__

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

#: How many keys of int and str arguments one function keeps (then it starts again),
#: and the longest str argument kept: the memo stays small whatever the calls.
_MADE_SIZE = 256
_MADE_LENGTH = 64

#: Prefix of memoized keys: ``cachekit.memo.<module>.<qualname>:<digest>``.
KEY_PREFIX = "cachekit.memo."


def _canonical(value: Any) -> str:
    """Return a text form of ``value`` that is equal across processes for equal values."""
    kind = type(value)
    if kind in _SIMPLE:
        return f"{kind.__name__}:{value!r}"
    if kind is tuple or kind is list:
        return f"{kind.__name__}(" + ",".join(_canonical(item) for item in value) + ")"
    if kind is dict:
        items = sorted((_canonical(k), _canonical(v)) for k, v in value.items())
        return "dict(" + ",".join(f"{k}={v}" for k, v in items) + ")"
    if kind is set or kind is frozenset:
        return f"{kind.__name__}(" + ",".join(sorted(_canonical(item) for item in value)) + ")"
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, enum.Enum):
        return f"enum:{kind.__module__}.{kind.__qualname__}.{value.name}"
    cache_key = getattr(value, "__cache_key__", None)
    if cache_key is not None:
        return f"{kind.__module__}.{kind.__qualname__}:{cache_key()}"
    if kind.__repr__ is not _OBJECT_REPR:
        text = repr(value)
        # Functions, lambdas, partials and bound methods have a repr of their own,
        # but it holds a memory address: another object may reuse it later.
        if not _ADDRESS.search(text):
            return f"{kind.__module__}.{kind.__qualname__}:{text}"
    raise TypeError(
        f"Cannot build a stable cache key from {kind.__qualname__!r} objects: their repr holds an "
        f"address that differs between processes. Give {kind.__qualname__} a __cache_key__() method "
        f"returning a str, or pass key= to @memoize."
    )


class MemoKeys:
    """Builds the cache key of each call of one function."""

    __slots__ = ("_defaults", "_key", "_made", "_name", "_names", "_required", "_signature")

    def __init__(self, func: Callable[..., Any], key: Callable[..., str] | None) -> None:
        self._key = key
        self._signature = inspect.signature(func)
        self._name = f"{KEY_PREFIX}{func.__module__}.{func.__qualname__}"
        # Positional calls of a function without *args, **kwargs or keyword-only parameters
        # bind by position: their text is built without Signature.bind (1.5 us of a 2.7 us key).
        params = tuple(self._signature.parameters.values())
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        by_position = all(param.kind in plain for param in params)
        #: The parameters' names, when positional calls can bind by position.
        self._names: tuple[str, ...] | None = tuple(p.name for p in params) if by_position else None
        #: Their defaults, for the parameters a call leaves out; the first ``_required`` have none.
        self._defaults: tuple[Any, ...] = tuple(p.default for p in params)
        self._required = sum(p.default is inspect.Parameter.empty for p in params)
        #: Keys of recent positional calls whose arguments are all ``int`` or short ``str``.
        self._made: dict[tuple[Any, ...], str] = {}

    def make_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key a call with these arguments uses.

        :raises TypeError: if an argument has no stable key (see :mod:`cachekit.memoize`).
        """
        if self._key is not None:
            return f"{self._name}:{self._key(*args, **kwargs)}"
        names = self._names
        given = len(args)
        if names is not None and not kwargs and given <= len(names):
            # Equal tuples of exact ints and strs have equal keys (bool and float, equal to
            # ints, are other types), so their key is looked up: 0.2 us instead of 1.3.
            for value in args:
                kind = type(value)
                if kind is not int and (kind is not str or len(value) > _MADE_LENGTH):
                    break
            else:
                made = self._made.get(args)
                if made is not None:
                    return made
                made = self._positional_key(names, args)
                if len(self._made) >= _MADE_SIZE:
                    self._made.clear()
                self._made[args] = made
                return made
            return self._positional_key(names, args)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        text = ",".join([f"{name}={_canonical(value)}" for name, value in bound.arguments.items()])
        return self._digest(text)

    def _positional_key(self, names: tuple[str, ...], args: tuple[Any, ...]) -> str:
        """The key of a call of at most ``len(names)`` positional arguments and no others."""
        given = len(args)
        if given < self._required:
            self._signature.bind(*args)  # raises the TypeError naming the missing argument
        values = args + self._defaults[given:]  # one per name: zip cannot cut it short
        # A list, not a generator: join() builds one from a generator anyway, 0.3 us later.
        text = ",".join([f"{name}={_canonical(value)}" for name, value in zip(names, values)])  # noqa: B905
        return self._digest(text)

    def _digest(self, text: str) -> str:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return f"{self._name}:{digest}"


__all__ = ["KEY_PREFIX", "MemoKeys"]
