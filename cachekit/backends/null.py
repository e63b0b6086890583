"""The null backend: stores nothing, for development and for turning caching off."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from cachekit.exceptions import MissingKeyError


class NullLock:
    """A lock that always succeeds: with nothing stored there is nothing to protect."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Return ``True`` at once."""
        return True

    def release(self) -> None:
        """Do nothing."""


class NullBackend:
    """A backend that accepts every write and forgets it: every read is a miss."""

    OPTIONS: ClassVar[Mapping[str, type]] = {}
    stores_objects: ClassVar[bool] = False

    def __init__(self) -> None:
        self._guard = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> NullBackend:
        """Build from ``null://``."""
        return cls(**options)

    @classmethod
    def from_location(cls, location: str | Sequence[str] | None, **options: Any) -> NullBackend:
        """Build from settings; ``LOCATION`` is ignored."""
        return cls(**options)

    def __repr__(self) -> str:
        return "NullBackend()"

    def get(self, key: str) -> bytes | None:
        """Always a miss."""
        return None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Always empty."""
        return {}

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Forget the value."""

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Forget the values."""

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Report success, as the key was absent; nothing is kept."""
        return True

    def delete(self, key: str) -> bool:
        """Nothing was there."""
        return False

    def delete_many(self, keys: Sequence[str]) -> None:
        """Nothing to delete."""

    def incr(self, key: str, delta: int) -> int:
        """Every key is missing."""
        raise MissingKeyError(key)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Nothing was there."""
        return False

    def clear(self, prefix: str = "") -> None:
        """Nothing to clear."""

    def close(self) -> None:
        """Nothing to release."""

    def lock(self, name: str, *, ttl: float) -> NullLock:
        """A lock that never blocks."""
        return NullLock()
