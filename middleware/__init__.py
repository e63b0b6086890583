"""WSGI middleware for cachekit sessions and page caching."""

from middleware.cache import CacheMiddleware
from middleware.sessions import SessionMiddleware

__all__ = ["CacheMiddleware", "SessionMiddleware"]
