"""Session object and session stores for cachekit."""
