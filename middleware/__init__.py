"""WSGI and ASGI middleware for cachekit sessions and page caching."""

from middleware.asgi_cache import AsgiCacheMiddleware
from middleware.asgi_sessions import AsgiSessionMiddleware
from middleware.cache import CacheMiddleware
from middleware.sessions import SessionMiddleware

__all__ = ["AsgiCacheMiddleware", "AsgiSessionMiddleware", "CacheMiddleware", "SessionMiddleware"]
