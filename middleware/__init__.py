"""WSGI middleware for cachekit sessions and page caching."""
