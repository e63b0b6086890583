"""Pure HTTP caching rules for a shared cache; they live in :mod:`cachekit.pages.rules`."""

from __future__ import annotations

from cachekit.pages.rules import CACHEABLE_METHODS
from cachekit.pages.rules import CACHEABLE_STATUSES
from cachekit.pages.rules import DELTA_SECONDS_MAX
from cachekit.pages.rules import EXPLICIT_STATUSES
from cachekit.pages.rules import HOP_BY_HOP
from cachekit.pages.rules import NOT_MODIFIED_HEADERS
from cachekit.pages.rules import Storability
from cachekit.pages.rules import delta_seconds
from cachekit.pages.rules import etag_matches
from cachekit.pages.rules import header
from cachekit.pages.rules import header_values
from cachekit.pages.rules import http_date
from cachekit.pages.rules import is_not_modified
from cachekit.pages.rules import joined
from cachekit.pages.rules import make_etag
from cachekit.pages.rules import not_modified_headers
from cachekit.pages.rules import parse_cache_control
from cachekit.pages.rules import parse_http_date
from cachekit.pages.rules import patch_served_headers
from cachekit.pages.rules import storability
from cachekit.pages.rules import strip_hop_by_hop
from cachekit.pages.rules import vary_headers

__all__ = [
    "CACHEABLE_METHODS",
    "CACHEABLE_STATUSES",
    "DELTA_SECONDS_MAX",
    "EXPLICIT_STATUSES",
    "HOP_BY_HOP",
    "NOT_MODIFIED_HEADERS",
    "Storability",
    "delta_seconds",
    "etag_matches",
    "header",
    "header_values",
    "joined",
    "http_date",
    "is_not_modified",
    "make_etag",
    "not_modified_headers",
    "parse_cache_control",
    "parse_http_date",
    "patch_served_headers",
    "storability",
    "strip_hop_by_hop",
    "vary_headers",
]
