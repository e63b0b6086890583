"""WSGI plumbing of the page cache; it lives in :mod:`cachekit.pages` (kept for old imports)."""

from __future__ import annotations

from cachekit.pages.urls import canonical_url
from cachekit.pages.urls import environ_key
from cachekit.pages.urls import request_url
from cachekit.pages.wsgi import SESSION_ENVIRON_KEY
from cachekit.pages.wsgi import close_iterable
from cachekit.pages.wsgi import status_code

__all__ = [
    "SESSION_ENVIRON_KEY",
    "canonical_url",
    "close_iterable",
    "environ_key",
    "request_url",
    "status_code",
]
