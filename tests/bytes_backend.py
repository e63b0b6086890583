"""A backend that holds bytes in a dict, as Redis or memcached would: the front must encode and decode."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

from cachekit.backends.null import NullBackend


class BytesBackend(NullBackend):
    """A dict of bytes that records what ``get_many`` was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, bytes] = {}
        self.asked: list[list[str]] = []

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.data[key] = value

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self.data.update(items)

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        self.asked.append(list(keys))
        return {key: self.data[key] for key in keys if key in self.data}
