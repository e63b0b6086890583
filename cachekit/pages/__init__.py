"""The page cache: one I/O-free engine (:mod:`.engine`) driven by a WSGI and an ASGI shell.

``options`` (the one options object), ``rules`` (RFC 9111, pure), ``fields``
(Cache-Status, targeted Cache-Control, surrogate keys; pure), ``record``
(the stored page as plain data), ``engine`` (sans-I/O decisions, with
``steps``: the request's facts and plan, ``verdict``: whether a response is
stored, ``status``: its Cache-Status members), ``io`` (the
engine's cache operations, sync and async), ``urls`` (canonical URLs),
``wsgi`` and ``asgi`` (the shells).
"""

from __future__ import annotations

from cachekit.pages.options import PageOptions
from cachekit.pages.wsgi import PageCache
from cachekit.pages.wsgi import cache_page
from cachekit.pages.wsgi import purge

__all__ = ["PageCache", "PageOptions", "cache_page", "purge"]
