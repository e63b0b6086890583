"""The URL a request's trusted forwarded headers describe: what a purge names the page by.

A proxy in front that sets ``X-Forwarded-Proto: https`` (or ``Forwarded:
proto=https;host=...``, ``X-Forwarded-Host``, ``-Port``, ``-Prefix``,
``-Scheme``, ``-Ssl``) tells the app the URL the client asked for; an app
behind Werkzeug's ``ProxyFix`` builds its links from it. The page cache names
such a page's lookup record by that URL, so ``purge("https://example.com/page")``
reaches it, and keys the headers' raw values in the variant (the app may still
read them as they came).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from cachekit.pages.urls import canonical_url

# A host as X-Forwarded-Host / Forwarded host= carry it: a name, IPv4 or [IPv6], optional port.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")
_PORT = re.compile(r"[0-9]{1,5}")


def _first(value: str) -> str:
    # A proxy chain appends: the first value is what the client-facing proxy saw.
    return value.split(",", 1)[0].strip()


def _forwarded_pairs(value: str) -> dict[str, str]:
    """``proto`` and ``host`` of the first element of an RFC 7239 ``Forwarded`` header."""
    pairs: dict[str, str] = {}
    for pair in _first(value).split(";"):
        name, _, text = pair.strip().partition("=")
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        pairs[name.strip().lower()] = text
    return pairs


def effective_url(url: str, forwarded: Mapping[str, str], *, normalize_query: bool = False) -> str | None:
    """The canonical URL that canonical ``url`` becomes under the ``forwarded`` headers (lower-case names).

    ``None`` when a value describes no URL (an unknown scheme, a host with other
    characters, a port out of range, a prefix not starting with ``/``): such a
    request is keyed by its raw values alone, and a purge by URL cannot name it.
    """
    parts = urlsplit(url)
    scheme, host, port, path = parts.scheme, parts.netloc, "", parts.path
    given = forwarded.get("forwarded")
    if given is not None:
        pairs = _forwarded_pairs(given)
        scheme = pairs.get("proto", scheme).lower()
        host = pairs.get("host", host)
    for name in ("x-forwarded-proto", "x-forwarded-scheme"):
        if name in forwarded:
            scheme = _first(forwarded[name]).lower()
    if "x-forwarded-ssl" in forwarded:
        scheme = "https" if _first(forwarded["x-forwarded-ssl"]).lower() == "on" else scheme
    if "x-forwarded-host" in forwarded:
        host = _first(forwarded["x-forwarded-host"])
    if "x-forwarded-port" in forwarded:
        port = _first(forwarded["x-forwarded-port"])
        if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            return None
    if "x-forwarded-prefix" in forwarded:
        prefix = _first(forwarded["x-forwarded-prefix"]).rstrip("/")
        if prefix and (not prefix.startswith("/") or "?" in prefix or "#" in prefix):
            return None
        path = prefix + path
    if scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    if port:
        # The port header replaces the host's own port (as Werkzeug's ProxyFix does).
        head, _, tail = host.rpartition(":")
        host = f"{head if head and tail.isdigit() else host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    try:
        return canonical_url(f"{scheme}://{host}{path or '/'}{query}", normalize_query=normalize_query)
    except ValueError:
        return None


__all__ = ["effective_url"]
