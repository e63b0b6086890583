"""The stored page's layout; it lives in :mod:`cachekit.pages.record` (kept for old imports)."""

from __future__ import annotations

from cachekit.pages.record import BODY
from cachekit.pages.record import HEADERS
from cachekit.pages.record import MARK
from cachekit.pages.record import STATUS
from cachekit.pages.record import Page

__all__ = ["BODY", "HEADERS", "MARK", "STATUS", "Page"]
