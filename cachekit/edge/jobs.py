"""What a purge asks for (:class:`PurgeJob`), checked once, and the HTTP request that carries it.

Every URL, prefix, pattern and tag is checked here before any purger sees it:
a value that would break a request line or a header (CR, LF, spaces, other
control characters), or is too long for a proxy's header limits, raises
:class:`InvalidPurgeError` with the reason, so it can never inject a header
or a second request.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from dataclasses import dataclass
from dataclasses import field
from typing import Literal
from urllib.parse import urlsplit

from cachekit.exceptions import CacheKitError

#: What a job purges: pages by absolute URL, by URL prefix, by path pattern (Varnish bans) or by tag.
Kind = Literal["url", "prefix", "regex", "tags"]

#: Longest URL, prefix or pattern accepted (Varnish's default request line limit is 8 KiB).
MAX_URL_LENGTH = 2048
#: Longest tag accepted (Fastly and Cloudflare take at most 1,024 bytes per key).
MAX_TAG_LENGTH = 1024
#: Most values in one job: every tag of a job travels in one header line.
MAX_VALUES = 256
#: Bytes one header line may hold (Varnish's default ``http_req_hdr_len`` is 8 KiB).
MAX_HEADER_LENGTH = 8000

# Anything a header or request line must not hold: controls (CR, LF, NUL, DEL...) and whitespace;
# and quotes, which would end a string in a VCL or ban expression.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\"]")
# URLs also must not hold backslashes, which servers and browsers may read as "/".
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f\"\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Tags also must not hold the list separators of xkey/Surrogate-Key (space) and Cache-Tag (comma).
_UNSAFE_TAG = re.compile(r"[\x00-\x20\x7f,\"]")
# A host name (letters, digits, -, _, dots; never only dots) or a bracketed IPv6 address, and a port.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|(?=[^:]*[A-Za-z0-9])[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")
# A dot segment, raw or percent-encoded (".", "..", "%2e", ".%2E"...).
_DOT_SEGMENT = re.compile(r"(?:\.|%2[eE]){1,2}")


class InvalidPurgeError(CacheKitError, ValueError):
    """A URL, prefix, pattern or tag cannot be purged safely; nothing was purged."""


class PurgeDeliveryError(CacheKitError):
    """A purger did not confirm a purge.

    :param transient: whether retrying later may succeed (unreachable, timeout,
        ``5xx``, ``408``, ``429``); such purges are queued, others are reported.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        #: Whether the purge is worth retrying.
        self.transient = transient


def _checked(value: object, what: str, limit: int, unsafe: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPurgeError(f"a {what} must be a non-empty str, got {value!r}.")
    if len(value) > limit:
        raise InvalidPurgeError(
            f"a {what} of {len(value)} characters is longer than {limit}: {value[:40]!r}..."
        )
    if not value.isascii():
        raise InvalidPurgeError(f"a {what} must be ASCII (percent-encode the rest): {value[:80]!r}")
    bad = unsafe.search(value)
    if bad is not None:
        raise InvalidPurgeError(
            f"a {what} must not contain {bad.group()!r} (space, comma, quote, backslash or control "
            f"character): {value[:80]!r}"
        )
    return value


def check_url(url: object, what: str = "URL") -> str:
    """``url`` if it is an absolute ``http(s)`` URL safe in a request line.

    :raises InvalidPurgeError: otherwise, saying why.
    """
    text = _checked(url, what, MAX_URL_LENGTH, _UNSAFE_URL)
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed [IPv6
        raise InvalidPurgeError(f"a {what} must be a URL, got {text[:80]!r}.") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidPurgeError(f"a {what} must be absolute (http://host/path), got {text[:80]!r}.")
    if "@" in parts.netloc:
        raise InvalidPurgeError(
            f"a {what} must not carry user:password@, got {parts.scheme}://...@{parts.hostname}."
        )
    if not valid_netloc(parts.netloc):
        raise InvalidPurgeError(f"a {what} must name a host name or IP address, got {parts.netloc[:80]!r}.")
    if has_dot_segment(parts.path):
        # Servers and proxies resolve them (RFC 3986 section 5.2.4, %2E too in WHATWG URLs): a
        # purge path with one could climb out of an API's purge path. Browsers remove them
        # before they ask, so no cached page is named with one.
        raise InvalidPurgeError(f"a {what} must not contain . or .. path segments, got {text[:80]!r}.")
    return text


def valid_netloc(netloc: str) -> bool:
    """Whether ``netloc`` is a host name, an IPv4 or a bracketed IPv6 address, with an optional port."""
    return _HOST.fullmatch(netloc) is not None


def has_dot_segment(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment, raw or percent-encoded."""
    return any(_DOT_SEGMENT.fullmatch(segment) for segment in path.split("/"))


def check_pattern(pattern: object) -> str:
    """A path pattern (a regular expression for a Varnish ban), checked like a URL."""
    text = _checked(pattern, "pattern", MAX_URL_LENGTH, _UNSAFE)
    try:
        re.compile(text)
    except re.error as exc:
        raise InvalidPurgeError(f"pattern {text[:80]!r} is not a regular expression: {exc}") from None
    return text


def check_tag(tag: object) -> str:
    """``tag`` if it is safe in an ``xkey``, ``Surrogate-Key`` or ``Cache-Tag`` list.

    :raises InvalidPurgeError: otherwise, saying why.
    """
    return _checked(tag, "tag", MAX_TAG_LENGTH, _UNSAFE_TAG)


@dataclass(frozen=True)
class PurgeJob:
    """One purge: a ``kind`` and its values, hard or soft (mark stale, keep serving while revalidating).

    Build jobs with :meth:`urls`, :meth:`prefixes`, :meth:`patterns` or :meth:`tags`:
    they check every value.
    """

    kind: Kind
    values: tuple[str, ...]
    soft: bool = False

    @classmethod
    def urls(cls, urls: tuple[str, ...] | list[str], soft: bool = False) -> PurgeJob:
        """Pages at these absolute URLs."""
        return cls._of("url", [check_url(url) for url in urls], soft)

    @classmethod
    def prefixes(cls, prefixes: tuple[str, ...] | list[str], soft: bool = False) -> PurgeJob:
        """Pages whose absolute URL starts with one of ``prefixes`` (proxies only)."""
        return cls._of("prefix", [check_url(prefix, "URL prefix") for prefix in prefixes], soft)

    @classmethod
    def patterns(cls, patterns: tuple[str, ...] | list[str], soft: bool = False) -> PurgeJob:
        """Pages whose path matches one of the regular expressions (Varnish bans only)."""
        return cls._of("regex", [check_pattern(pattern) for pattern in patterns], soft)

    @classmethod
    def tags(cls, tags: tuple[str, ...] | list[str], soft: bool = False) -> PurgeJob:
        """Pages stored with any of these tags."""
        return cls._of("tags", [check_tag(tag) for tag in tags], soft)

    @classmethod
    def _of(cls, kind: Kind, values: list[str], soft: bool) -> PurgeJob:
        unique = tuple(dict.fromkeys(values))
        if not unique:
            raise InvalidPurgeError(f"nothing to purge: no {kind} given.")
        if len(unique) > MAX_VALUES:
            raise InvalidPurgeError(f"{len(unique)} values in one purge; at most {MAX_VALUES}: split it.")
        joined = sum(len(value) + 1 for value in unique) - 1
        if kind == "tags" and joined > MAX_HEADER_LENGTH:
            # The tags of one job travel in one header line (xkey, Surrogate-Key).
            raise InvalidPurgeError(
                f"these {len(unique)} tags take {joined} bytes in one header, more than {MAX_HEADER_LENGTH}: "
                "split the purge."
            )
        return cls(kind, unique, bool(soft))

    def to_json(self) -> str:
        """The job as compact JSON (how queues store it)."""
        return json.dumps([self.kind, list(self.values), self.soft], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PurgeJob:
        """The job :meth:`to_json` wrote, checked again (a queue is data, not trusted code)."""
        kind, values, soft = json.loads(text)
        build = {"url": cls.urls, "prefix": cls.prefixes, "regex": cls.patterns, "tags": cls.tags}
        if kind not in build:
            raise InvalidPurgeError(f"unknown purge kind {kind!r}.")
        return build[kind](list(values), bool(soft))


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request to a proxy or an API: built by a purger, sent by :func:`send`.

    ``secret`` names headers whose values are never logged nor shown in ``repr``.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    secret: frozenset[str] = field(default_factory=frozenset)

    def __repr__(self) -> str:
        shown = [
            (name, "<redacted>" if name.lower() in self.secret else value) for name, value in self.headers
        ]
        return f"WireRequest({self.method} {self.url}, headers={shown!r})"

    def describe(self) -> str:
        """``METHOD URL``: what logs and errors show (never a header value)."""
        return f"{self.method} {self.url}"


def _header_safe(name: str, value: str) -> None:
    # Defence in depth: purgers build values from checked parts, and http.client checks too.
    if len(value) > MAX_HEADER_LENGTH:
        raise InvalidPurgeError(f"header {name} would be {len(value)} bytes, more than {MAX_HEADER_LENGTH}.")
    if _CONTROL.search(value):
        raise InvalidPurgeError(f"header {name} would contain a control character.")


def send(request: WireRequest, timeout: float, context: ssl.SSLContext | None = None) -> int:
    """Send ``request`` with :mod:`http.client`; return the status if ``2xx``.

    :raises PurgeDeliveryError: ``transient`` for an unreachable host, a
        timeout, ``408``, ``429`` or ``5xx``; not transient for other statuses.
    """
    for name, value in request.headers:
        _header_safe(name, value)
    parts = urlsplit(request.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    what = request.describe()
    try:
        connection.putrequest(
            request.method, target, skip_host=any(n.lower() == "host" for n, _ in request.headers)
        )
        for name, value in request.headers:
            connection.putheader(name, value)
        body = request.body
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        status = response.status
        response.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        raise PurgeDeliveryError(f"{what}: {type(exc).__name__}: {exc}", transient=True) from None
    finally:
        connection.close()
    if 200 <= status < 300:
        return status
    transient = status >= 500 or status in (408, 429)
    raise PurgeDeliveryError(f"{what}: answered {status}", transient=transient)


def json_list(values: tuple[str, ...]) -> str:
    """``values`` as a JSON array, for body templates."""
    return json.dumps(list(values))
