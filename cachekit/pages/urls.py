"""Canonical request URLs, as the page cache keys them: the same request over WSGI and ASGI gets one URL.

Pure: a WSGI environ or an ASGI scope in, a string out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import quote
from urllib.parse import unquote_plus
from urllib.parse import unquote_to_bytes
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# Characters kept as they are in a canonical path: unreserved, sub-delims, ":@/" (RFC 3986).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _canonical_host(scheme: str, host: str) -> str:
    # Percent-encode all but host characters: a Host header holding "/", "?" or "#" must not
    # be read as part of the path or query ("Host: site/admin" + "/x" is not site/admin/x).
    host = quote(host.lower(), safe=":[]!$&'()*+,;=", encoding="latin-1", errors="replace")
    name, sep, port = host.rpartition(":")
    if sep and "]" not in port and port == _DEFAULT_PORTS.get(scheme):
        return name
    return host


def _param_name(piece: str) -> str:
    """A query piece's parameter name as apps decode it (``%61`` and ``a`` are one name)."""
    return unquote_plus(piece.partition("=")[0])


def _canonical_query(query: str, normalize: bool) -> str:
    if normalize and query:
        # Keep the raw pieces, decoding nothing: decoding and re-encoding would make
        # "a=%FE" and "a=%FF", or "x=1%3By%3D2" and "x=1;y=2", share one cache entry.
        # Sort by name only, stably: repeated parameters keep their order, because apps
        # read the first (Werkzeug) or the last (Django) and "a=2&a=1" is not "a=1&a=2".
        return "&".join(sorted(query.split("&"), key=_param_name))
    return query


def request_url(environ: WSGIEnvironment, *, normalize_query: bool = False) -> str:
    """Return the canonical ``scheme://host/path?query`` of a request, as the page cache keys it."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if host is None:  # an empty Host is kept: apps build URLs from it as it is ("http:///")
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI hands over the decoded path as latin-1 text; re-encode it the one canonical way.
    path = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE) or "/"
    query = _canonical_query(environ.get("QUERY_STRING", ""), normalize_query)
    url = f"{scheme}://{_canonical_host(scheme, host)}{path}"
    return f"{url}?{query}" if query else url


def canonical_url(url: str, *, normalize_query: bool = False) -> str:
    """Return the canonical form of an absolute URL, matching :func:`request_url`.

    :raises ValueError: if ``url`` has no scheme or host.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"Expected an absolute URL such as 'https://example.com/page', got {url!r}.")
    scheme = parts.scheme.lower()
    path = quote(unquote_to_bytes(parts.path), safe=_PATH_SAFE) or "/"
    query = _canonical_query(parts.query, normalize_query)
    base = f"{scheme}://{_canonical_host(scheme, parts.netloc)}{path}"
    return f"{base}?{query}" if query else base


def environ_key(header_name: str) -> str:
    """Return the environ key of a request header: ``Accept-Language`` -> ``HTTP_ACCEPT_LANGUAGE``."""
    name = header_name.upper().replace("-", "_")
    if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return name
    return "HTTP_" + name


def scope_url(scope: Mapping[str, Any], host: str | None, *, normalize_query: bool = False) -> str:
    """Return the canonical URL of an ASGI HTTP scope, exactly as :func:`request_url` for WSGI.

    ``host`` is the request's ``Host`` header. ``root_path`` always counts,
    as ``SCRIPT_NAME`` does in WSGI: when it is not already the start of the
    path (an outer middleware set it from ``X-Forwarded-Prefix``), it is put in
    front, so an app building links from it gets its own page.
    """
    scheme = scope.get("scheme", "http")
    if not host:
        server = scope.get("server") or ("", "")
        host = f"{server[0]}:{server[1]}"
    root = scope.get("root_path", "") or ""
    raw_path = scope.get("raw_path")
    path = scope.get("path", "")
    raw_bytes = unquote_to_bytes(raw_path.decode("latin-1").partition("?")[0]) if raw_path else b""
    # raw_path is what the client sent, unambiguous ("%2F" stays apart from "/"), but only while
    # path (what the app routes on) still says the same: an outer middleware may have rewritten it.
    raw_text = raw_bytes.decode("utf-8", "replace")
    if raw_path and (path == raw_text or path == root + raw_text or root + path == raw_text):
        path_bytes = raw_bytes
        root_bytes = root.encode("utf-8", "surrogateescape")
        if root_bytes and not path_bytes.startswith(root_bytes):
            path_bytes = root_bytes + path_bytes
    else:
        path_bytes = (path if path.startswith(root) else root + path).encode("utf-8", "surrogateescape")
    path_text = quote(path_bytes, safe=_PATH_SAFE) or "/"
    query = _canonical_query(scope.get("query_string", b"").decode("latin-1"), normalize_query)
    url = f"{scheme}://{_canonical_host(scheme, host)}{path_text}"
    return f"{url}?{query}" if query else url
