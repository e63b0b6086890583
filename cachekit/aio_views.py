"""The page cache for ASGI apps: :class:`AsyncPageCache` (it lives in :mod:`cachekit.pages.asgi`)."""

from __future__ import annotations

from cachekit.pages.asgi import SESSION_SCOPE_KEY
from cachekit.pages.asgi import AsgiPageTags
from cachekit.pages.asgi import AsyncPageCache

__all__ = ["SESSION_SCOPE_KEY", "AsgiPageTags", "AsyncPageCache"]
