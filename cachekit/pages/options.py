"""PageOptions: the one options object every page-cache shell takes.

``@cache_page``, :class:`~cachekit.pages.wsgi.PageCache`, ``CacheMiddleware``
and their async twins all accept these settings as keyword arguments (or a
ready ``options=PageOptions(...)``); they are checked here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import TypeAlias

from cachekit.background import REVALIDATE_WORKERS
from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Timeout
from cachekit.pages.fields import SURROGATE_KEY_HEADERS
from cachekit.pages.fields import TARGET_FIELDS
from cachekit.pages.fields import parse_dictionary
from cachekit.pages.rules import CACHEABLE_STATUSES
from cachekit.pages.rules import EXPLICIT_STATUSES

#: Tags for a page: names, or a function of the request (WSGI environ or ASGI scope) returning names.
PageTags: TypeAlias = "Iterable[str] | Callable[[Any], Iterable[str]]"

#: Default largest body stored, in bytes; larger responses are served but not stored.
MAX_BODY_SIZE = 1024 * 1024

#: Default number of variants (``Vary`` values x query strings) kept per URL path.
MAX_VARIANTS = 64

#: Request headers an app may build absolute URLs from. Unless named in
#: ``trusted_forwarded`` (then keyed), a request carrying one bypasses the cache.
FORWARDED_HEADERS = (
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
)


def _names(values: Iterable[str], setting: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{setting} must be a list of names, not one str: use {setting}=[{values!r}].")
    return tuple(dict.fromkeys(str(value).strip().lower() for value in values))


@dataclass(frozen=True)
class PageOptions:
    """Settings of one page cache, checked at construction.

    :param timeout: lifetime of responses that state none; ``DEFAULT_TIMEOUT``
        uses the cache's default, ``None`` keeps them until evicted, ``0``
        disables caching.
    :param key_prefix: separates pages of different engines on one cache.
    :param vary_on: request headers to key on even when the response does not
        list them in ``Vary``.
    :param tags: names (or ``f(request) -> names``) for ``cache.invalidate_tags``.
    :param stale_while_revalidate: seconds a stale page is served while one
        request regenerates it; a response's own ``stale-while-revalidate`` wins.
    :param background_revalidate: within that window, answer even the request
        that takes the render lock from the stale page, and re-render in the
        background (a thread pool under WSGI, a task under ASGI). On by
        default; turn it off for an app that must not be called outside a
        server's own request threads: that request then renders inline.
    :param revalidate_workers: background re-renders run at once by one page
        cache in one process; when all are busy the stale page is served and
        the lock let go, so a later request retries.
    :param stale_if_error: seconds a stale page stands in for an error; a
        response's own ``stale-if-error`` wins.
    :param max_body_size: bodies longer than this many bytes are not stored.
    :param etag: add a strong ``ETag`` from the body hash when the app set none.
    :param normalize_query: sort query parameters before keying.
    :param statuses: status codes stored with the default lifetime.
    :param explicit_statuses: status codes stored only with the response's own
        freshness (``max-age``, ``s-maxage``, ``Expires``).
    :param lock: let one request compute a missing page while others wait.
    :param lock_timeout: seconds a request waits for another to compute the
        page; default: the cache's ``lock_timeout``.
    :param shareable_cookies: cookie names that do not identify a user (such
        as ``lang``): a request carrying only these still gets and fills shared
        pages that vary on ``Cookie``.
    :param trusted_forwarded: forwarded headers (``X-Forwarded-Host``...) a
        proxy in front sets and the app may use: they become part of the key.
        A request carrying any other of :data:`FORWARDED_HEADERS` bypasses the cache.
    :param max_variants: variants kept per URL path (``Vary`` values times
        query strings); past it, new variants are served uncached.
    :param cache_status: add ``Cache-Status`` (RFC 9211) to every response
        the cache handled. Off unless set: it tells clients how the cache
        decided (turn it on in development, or behind a proxy that strips it).
    :param cache_status_name: this cache's name in ``Cache-Status``.
    :param target_fields: targeted cache-control fields (RFC 9213) read ahead
        of ``Cache-Control`` for this cache, first valid one wins; ``()``
        reads ``Cache-Control`` only.
    :param cdn_cache_control: a ``CDN-Cache-Control`` value (RFC 9213) for
        caches downstream, added to responses this cache stores when the app
        set none; never added to a response it may not store.
    :param surrogate_key_headers: response headers listing tags the page
        declares (space- or comma-separated); they become tags of the stored page.
    :param expose_surrogate_keys: send those headers on to the client (by
        default they are stripped, as Fastly and Varnish do).
    """

    timeout: Timeout = DEFAULT_TIMEOUT
    key_prefix: str = ""
    vary_on: Iterable[str] = ()
    tags: PageTags = ()
    stale_while_revalidate: float = 0
    stale_if_error: float = 0
    background_revalidate: bool = True
    revalidate_workers: int = REVALIDATE_WORKERS
    max_body_size: int = MAX_BODY_SIZE
    etag: bool = True
    normalize_query: bool = False
    statuses: Iterable[int] = CACHEABLE_STATUSES
    explicit_statuses: Iterable[int] = EXPLICIT_STATUSES
    lock: bool = True
    lock_timeout: float | None = None
    shareable_cookies: Iterable[str] = ()
    trusted_forwarded: Iterable[str] = ()
    max_variants: int = MAX_VARIANTS
    cache_status: bool = False
    cache_status_name: str = "cachekit"
    target_fields: Iterable[str] = TARGET_FIELDS
    cdn_cache_control: str | None = None
    surrogate_key_headers: Iterable[str] = SURROGATE_KEY_HEADERS
    expose_surrogate_keys: bool = False
    #: Every header of :data:`FORWARDED_HEADERS` that is not trusted (derived).
    untrusted_forwarded: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        for option in ("stale_while_revalidate", "stale_if_error", "max_body_size", "max_variants"):
            value = getattr(self, option)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{option} must be a number >= 0, got {value!r}.")
        workers = self.revalidate_workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"revalidate_workers must be an int >= 1, got {workers!r}.")
        if isinstance(self.tags, str):
            raise TypeError(f"tags must be a list of names, not one str: use tags=[{self.tags!r}].")
        trusted = _names(self.trusted_forwarded, "trusted_forwarded")
        unknown = set(trusted) - set(FORWARDED_HEADERS)
        if unknown:
            raise ValueError(
                f"trusted_forwarded names headers that are not forwarding headers: {sorted(unknown)!r}; "
                f"expected some of {list(FORWARDED_HEADERS)!r}."
            )
        name = self.cache_status_name
        if not isinstance(name, str) or not name.strip() or not (name.isascii() and name.isprintable()):
            raise ValueError(f"cache_status_name must be non-empty printable ASCII, got {name!r}.")
        if self.cdn_cache_control is not None and parse_dictionary(self.cdn_cache_control) is None:
            raise ValueError(
                f"cdn_cache_control must be a structured-field dictionary such as 'max-age=600' "
                f"(RFC 9213), got {self.cdn_cache_control!r}."
            )
        set_ = object.__setattr__
        set_(self, "key_prefix", self.key_prefix or "")
        set_(self, "vary_on", _names(self.vary_on, "vary_on"))
        set_(self, "tags", self.tags if callable(self.tags) else tuple(self.tags))
        set_(self, "stale_while_revalidate", float(self.stale_while_revalidate))
        set_(self, "stale_if_error", float(self.stale_if_error))
        set_(self, "background_revalidate", bool(self.background_revalidate))
        set_(self, "max_body_size", int(self.max_body_size))
        set_(self, "max_variants", int(self.max_variants))
        set_(self, "statuses", frozenset(self.statuses))
        set_(self, "explicit_statuses", frozenset(self.explicit_statuses))
        set_(self, "shareable_cookies", frozenset(_names(self.shareable_cookies, "shareable_cookies")))
        set_(self, "trusted_forwarded", trusted)
        set_(self, "target_fields", _names(self.target_fields, "target_fields"))
        set_(self, "surrogate_key_headers", _names(self.surrogate_key_headers, "surrogate_key_headers"))
        set_(self, "untrusted_forwarded", tuple(name for name in FORWARDED_HEADERS if name not in trusted))


def page_options(options: PageOptions | None, settings: dict[str, Any]) -> PageOptions:
    """Return ``options``, or :class:`PageOptions` built from keyword ``settings``; not both."""
    if options is None:
        return PageOptions(**settings)
    if settings:
        raise TypeError(f"Pass either options= or keyword settings, not both (got {sorted(settings)!r}).")
    return options
