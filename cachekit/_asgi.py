"""ASGI types and helpers shared by the ASGI page cache and the ASGI middleware.

They live in :mod:`cachekit.pages.asgi`; the types are those of the ASGI spec
(and of Starlette's ``starlette.types``), so any ASGI app or server fits.
"""

from __future__ import annotations

from cachekit.pages.asgi import ASGIApp
from cachekit.pages.asgi import Message
from cachekit.pages.asgi import RawHeaders
from cachekit.pages.asgi import Receive
from cachekit.pages.asgi import Scope
from cachekit.pages.asgi import Send
from cachekit.pages.asgi import request_header
from cachekit.pages.asgi import request_headers
from cachekit.pages.asgi import send_plain
from cachekit.pages.asgi import to_raw_headers
from cachekit.pages.asgi import to_str_headers

__all__ = [
    "ASGIApp",
    "Message",
    "RawHeaders",
    "Receive",
    "Scope",
    "Send",
    "request_header",
    "request_headers",
    "send_plain",
    "to_raw_headers",
    "to_str_headers",
]
