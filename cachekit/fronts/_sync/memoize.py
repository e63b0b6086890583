# Generated from cachekit/fronts/_async/memoize.py by .ci/unasync.py; do not edit.
"""The memoized function of ``@memoize``, its cache calls awaited; see :mod:`cachekit.memoize`.

This is the source of :class:`~cachekit.aio.Memoized`; the sync
:class:`~cachekit.memoize.Memoized` is generated from it. Keys come from
:class:`~cachekit.fronts.memokeys.MemoKeys`, so sync and async memoization of one
function agree on them.

Every entry of one function is stored under its key plus the function's
*generation*, a tag counter (:mod:`cachekit.tags`) read with each call.
:meth:`Memoized.cache_clear` moves it on, so every process stops reading the
function's old entries at once (they expire in the backend). A counter the backend
lost starts at a new random value, which clears the function too, never revives
old entries.

The counter costs no round trip of its own: a call reads it together with the
entry under the generation this object last saw, in one ``get_many``, and uses
that entry only if the counter still holds that generation; otherwise (after a
clear) it reads the entry under the new one. A wrong guess costs one more read,
never a stale value. A local-memory backend has no round trip to save: there the
counter and the entry are two plain reads, cheaper than one ``get_many``.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import NamedTuple
from typing import ParamSpec
from typing import TypeAlias
from typing import TypedDict
from typing import TypeVar

from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import SerializationError
from cachekit.fronts._core import _MISSING
from cachekit.fronts._core import Timeout
from cachekit.fronts._sync.tags import current_generations
from cachekit.fronts._sync.tags import generations_valid
from cachekit.fronts._sync.tags import invalidate_tags
from cachekit.fronts._sync_only import default_cache
from cachekit.fronts.entries import REFRESHING
from cachekit.fronts.entries import CacheEntry
from cachekit.fronts.entries import refresh_due
from cachekit.fronts.entries import tag_key
from cachekit.fronts.memokeys import MemoKeys

if TYPE_CHECKING:
    from cachekit.fronts._sync.cache import Cache

P = ParamSpec("P")
R = TypeVar("R")

#: Tags for memoized results: names, or a function of the call's arguments returning names.
MemoTags: TypeAlias = "Iterable[str] | Callable[..., Iterable[str]]"


class MemoOptions(TypedDict, total=False):
    """``memoize``'s keyword options after ``cache``, handed on to the memoized function as they are."""

    key: Callable[..., str] | None
    tags: MemoTags
    stale_while_revalidate: float
    stale_if_error: float
    beta: float
    refresh_ahead: float
    unless: Callable[..., bool] | None


#: Prefix of the tag naming every entry of one memoized function (its generation).
FUNCTION_TAG_PREFIX = "cachekit.memoize:"


class CacheInfo(NamedTuple):
    """This process's calls of a memoized function, as ``functools.lru_cache``'s ``cache_info()``.

    ``maxsize`` and ``currsize`` are always ``None``: the backend is shared and evicts by itself.
    """

    #: Calls answered from the cache (a stale or refreshed-ahead value included).
    hits: int
    #: Calls that computed the result (``unless`` bypasses count as neither).
    misses: int
    maxsize: int | None = None
    currsize: int | None = None


def _names(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of names, not one str: use tags=[{tags!r}].")
    return tuple(tags)


def _read_two(cache: Cache, first: str, second: str) -> tuple[Any, Any]:
    """``cache.get_many((first, second))`` as ``(value or None, value or _MISSING)``.

    The front's rules for exactly two keys of the cache's own key scheme (failure
    policy, decoding, counters, latency samples) without the batch's bookkeeping,
    which costs a Redis hit 2-3 us; keys of a key function go through ``get_many``.
    """
    head = cache.key_head
    if head is None:
        found = cache.get_many((first, second))
        return found.get(first), found.get(second, _MISSING)
    keys = (head + first, head + second)
    started = cache._sample()
    try:
        stored = cache.backend.get_many(keys)
    except BackendUnavailableError as exc:
        cache.recorder.failed("get_many", exc)
        cache.recorder.misses += 2
        return None, _MISSING
    if started is not None:
        cache._record("get_many", started)
    counter = _decoded(cache, first, stored.get(keys[0]))
    entry = _decoded(cache, second, stored.get(keys[1]))
    hits = (counter is not _MISSING) + (entry is not _MISSING)
    cache.recorder.hits += hits
    cache.recorder.misses += 2 - hits
    return None if counter is _MISSING else counter, entry


def _decoded(cache: Cache, key: str, data: bytes | None) -> Any:
    """``data`` read for ``key`` decoded, or ``_MISSING`` if absent or undecodable (counted)."""
    if data is None:
        return _MISSING
    try:
        return cache._decode(key, data)
    except SerializationError as exc:
        cache.recorder.undecodable(key, exc)
        return _MISSING


class Memoized(Generic[P, R]):
    """A memoized function: call it as the original; see ``memoize``."""

    def __init__(
        self,
        func: Callable[P, R],
        timeout: Timeout,
        cache: Cache | None,
        key: Callable[..., str] | None = None,
        tags: MemoTags = (),
        stale_while_revalidate: float = 0,
        stale_if_error: float = 0,
        beta: float = 0,
        refresh_ahead: float = 0,
        unless: Callable[..., bool] | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        #: The original function, uncached.
        self.uncached = func
        self._timeout = timeout
        self._cache = cache
        self._keys = MemoKeys(func, key)
        #: The tag whose generation every entry of this function carries in its key.
        self.function_tag = f"{FUNCTION_TAG_PREFIX}{func.__module__}.{func.__qualname__}"
        self._generation_key = tag_key(self.function_tag)
        #: The generation the last call found in the cache (``None``: none read yet).
        self._generation: int | None = None
        self._tags_of: Callable[..., Iterable[str]] | None = tags if callable(tags) else None
        tag_names = () if callable(tags) else _names(tags)
        self._options: dict[str, Any] = {
            "stale_while_revalidate": stale_while_revalidate,
            "stale_if_error": stale_if_error,
            "beta": beta,
            "tags": tag_names,
            "refresh_ahead": refresh_ahead,
        }
        enveloped = stale_while_revalidate or stale_if_error or beta or tag_names or refresh_ahead
        self._enveloped = bool(enveloped or callable(tags))
        self._unless = unless
        # unless() is called with the call's arguments, unless it takes none.
        self._unless_args = unless is not None and bool(inspect.signature(unless).parameters)
        self._hits = 0
        self._misses = 0
        self._counting = threading.Lock()  # held for one addition: threads share the counters

    @property
    def cache(self) -> Cache:
        """The cache results are stored in (sync ``@memoize``: ``caches["default"]`` unless one was given)."""
        if self._cache is None:
            self._cache = default_cache()
        return self._cache

    @cache.setter
    def cache(self, cache: Cache) -> None:
        self._cache = cache
        self._generation = None  # seen in the other cache

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function would, keeping invalidate/uncached reachable.
        if instance is None:
            return self
        bound = functools.partial(self, instance)
        vars(bound).update(
            invalidate=functools.partial(self.invalidate, instance),
            uncached=functools.partial(self.uncached, instance),
            cache_clear=self.cache_clear,
            cache_info=self.cache_info,
        )
        return bound

    def make_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the key of a call with these arguments, the same in every process.

        The entry is stored under it plus ``@`` and the function's generation
        (see :meth:`cache_clear`).

        :raises TypeError: if an argument has no stable key (see :mod:`cachekit.memoize`).
        """
        return self._keys.make_key(*args, **kwargs)

    def _stored_key(self, cache: Cache, key: str) -> str:
        """``key`` under the function's current generation (see the module docstring)."""
        ((_, generation),) = current_generations(cache, (self.function_tag,))
        self._generation = generation
        return f"{key}@{generation}"

    def _lookup(self, cache: Cache, key: str) -> tuple[str, Any]:
        """``key`` under the function's current generation, and what it holds (``_MISSING``: nothing).

        One ``get_many`` when the last generation seen is still current (see the module docstring).
        """
        counter = self._generation_key
        guess = self._generation
        if cache.stores_objects:
            generation = cache.get(counter)
        elif guess is not None:
            stored_key = f"{key}@{guess}"
            generation, found = _read_two(cache, counter, stored_key)
            if generation == guess and type(generation) is int:
                return stored_key, found
        else:
            generation = cache.get(counter)
        if type(generation) is int:
            self._generation = generation
            stored_key = f"{key}@{generation}"
        else:  # missing (never created, evicted, cleared): created, or adopted from another process
            stored_key = self._stored_key(cache, key)
        return stored_key, cache.get(stored_key, _MISSING)

    def _answers_at_once(self, cache: Cache, entry: CacheEntry[Any]) -> bool:
        """Whether ``get_or_set`` would answer with this entry read for it and start nothing.

        Fresh, no early or ahead refresh due, tags still valid: the first case of
        :meth:`~cachekit.fronts._sync.stampede.EntryFlow.run`, whose re-read of the
        entry this saves. Any other entry goes to ``get_or_set``, which reads it again.
        """
        now = cache.clock()
        options = self._options
        if not entry.is_fresh(now) or entry.refresh_early(now, options["beta"]):
            return False
        return not refresh_due(entry, now, options["refresh_ahead"]) and generations_valid(cache, entry.tags)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        unless = self._unless
        if unless is not None and (unless(*args, **kwargs) if self._unless_args else unless()):
            return self.uncached(*args, **kwargs)  # bypass: the cache is neither read nor written
        key = self._keys.make_key(*args, **kwargs)
        cache = self._cache or self.cache
        key, found = self._lookup(cache, key)
        if not self._enveloped:
            if found is not _MISSING:
                with self._counting:
                    self._hits += 1
                # The cache holds what this function returned under its key.
                hit: R = found
                return hit
        elif isinstance(found, CacheEntry) and self._answers_at_once(cache, found):
            with self._counting:
                self._hits += 1
            fresh: R = found.value
            return fresh
        computed = False

        def compute() -> R:
            nonlocal computed
            computed = computed or not REFRESHING.get()  # a refresh-ahead's is not this call's
            return self.uncached(*args, **kwargs)

        # Named with its result type: mypy cannot tell R from get_or_set's ``Callable[[], T] | T``.
        get_or_set: Callable[..., R] = cache.get_or_set
        if not self._enveloped:
            result = get_or_set(key, compute, self._timeout)
        elif self._tags_of is None:
            result = get_or_set(key, compute, self._timeout, **self._options)
        else:
            names = _names(self._tags_of(*args, **kwargs))
            result = get_or_set(key, compute, self._timeout, **{**self._options, "tags": names})
        with self._counting:
            if computed:
                self._misses += 1
            else:
                self._hits += 1
        return result

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the result cached for these arguments; return whether one was stored."""
        cache = self.cache
        return cache.delete(self._stored_key(cache, self.make_key(*args, **kwargs)))

    def cache_clear(self) -> None:
        """Forget every result of this function, in every process; reset :meth:`cache_info`.

        One ``incr`` of the function's generation (named as ``functools`` names it).

        :raises BackendUnavailableError: if the backend is down, whatever the failure
            policy (as :meth:`~cachekit.Cache.invalidate_tags`).
        """
        invalidate_tags(self.cache, (self.function_tag,))
        with self._counting:
            self._hits = self._misses = 0

    def cache_info(self) -> CacheInfo:
        """Hits and misses of this function's calls in this process since the last :meth:`cache_clear`."""
        return CacheInfo(self._hits, self._misses)


__all__ = ["FUNCTION_TAG_PREFIX", "Memoized", "CacheInfo", "MemoTags"]
