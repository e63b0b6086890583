"""Session stores: :class:`CacheStore` (server-side, any cache) and :class:`SignedCookieStore`."""

from sessions.stores.base import BaseStore
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore

__all__ = ["BaseStore", "CacheStore", "SignedCookieStore", "Store"]
