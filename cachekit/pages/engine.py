"""The page-cache engine, written once and free of I/O: request facts in, decisions out.

In the style of h11 or Werkzeug's ``sansio``: nothing here calls a cache, an
app or a server. The steps that need the cache are generators that *yield*
the operations they need (``("get", key)``, ``("lock", name, blocking)``...)
and receive the results; :mod:`cachekit.pages.io` runs them on a
:class:`~cachekit.Cache` (plain calls) or an :class:`~cachekit.aio.AsyncCache`
(awaited). The WSGI and ASGI shells only move bytes and call these steps, so
every rule below holds, and is fixed, once for both.

The steps of one ``GET``:

1. The shell reads the URL's lookup record (learned ``Vary`` and purge
   nonce) and, under :meth:`PageEngine.page_key_of`, the request's variant;
   :meth:`PageEngine.fresh` says whether it answers at once (the hit path:
   no step machinery; on a server one round trip, as the record and the page
   :meth:`PageEngine.hinted_key` guesses are read together). Otherwise :meth:`PageEngine.lookup` serves
   it stale within ``stale-while-revalidate``, or takes the URL's one lock
   (its name under the cache's prefix and version) and looks again.
2. The shell runs the app up to the response start; :meth:`PageEngine.verdict`
   says whether the response may be stored (RFC 9111 and our stricter sharing
   rules: ``Authorization``, cookies and sessions of any session system).
3. The shell buffers a storable body up to ``max_body_size``;
   :meth:`PageEngine.finish` stores it (unless a purge came since the
   lookup) and releases the lock: the lock is never held while a client reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple
from typing import TypeAlias
from urllib.parse import urlsplit

from cachekit.pages.fields import CACHE_STATUS
from cachekit.pages.fields import Answer
from cachekit.pages.fields import effective_headers
from cachekit.pages.fields import marked
from cachekit.pages.fields import status_member
from cachekit.pages.fields import surrogate_keys
from cachekit.pages.fields import targeted_directives
from cachekit.pages.fields import without
from cachekit.pages.forwarded import effective_url
from cachekit.pages.options import PageOptions
from cachekit.pages.record import AUTH_OK
from cachekit.pages.record import FIELDS
from cachekit.pages.record import FRESH_UNTIL
from cachekit.pages.record import GATEWAY_TIMEOUT
from cachekit.pages.record import LOOKUP_MARK
from cachekit.pages.record import MARK
from cachekit.pages.record import MUST_REVALIDATE
from cachekit.pages.record import STATUS
from cachekit.pages.record import TAGS
from cachekit.pages.record import Lookup
from cachekit.pages.record import Page
from cachekit.pages.record import SessionUse
from cachekit.pages.record import error_fallback
from cachekit.pages.record import in_revalidate_window
from cachekit.pages.record import is_fresh
from cachekit.pages.record import is_lookup
from cachekit.pages.record import is_public
from cachekit.pages.record import new_lookup
from cachekit.pages.record import page_for
from cachekit.pages.record import servable
from cachekit.pages.record import session_use
from cachekit.pages.record import stored_page
from cachekit.pages.rules import Storability
from cachekit.pages.rules import header
from cachekit.pages.rules import parse_cache_control
from cachekit.pages.rules import storability
from cachekit.pages.rules import vary_headers
from cachekit.pages.soft import stale_from
from cachekit.pages.urls import canonical_url
from cachekit.tags import Generations

#: One operation a step needs done on the cache: ``(name, *arguments)``; see :mod:`cachekit.pages.io`.
Op: TypeAlias = tuple[Any, ...]
#: A step: yields operations, receives their results, returns its decision.
Steps: TypeAlias = Generator[Op, Any, Any]
#: Reads a request header: ``read(source, lower-case name)``, where ``source`` is the
#: shell's request (a WSGI environ; ASGI headers as a dict, read with ``dict.get``).
HeaderReader: TypeAlias = Callable[[Any, str], "str | None"]

LOOKUP_KEY = "cachekit.page.headers."
PAGE_KEY = "cachekit.page.GET."
NOLOCK_KEY = "cachekit.page.nolock."
VARIANTS_KEY = "cachekit.page.variants."
LOCK_KEY = "cachekit.page.lock."
# How long a URL whose own response was not storable skips the stampede lock:
# waiting for a response that will not be stored would only serialize its requests.
NOLOCK_SECONDS = 60.0

_EMPTY: Mapping[str, str | None] = {}
_MEMO_SIZE = 4096
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def directives(cache_control: str | None) -> Mapping[str, str | None]:
    """A request's ``Cache-Control`` directives (an empty mapping when it has none)."""
    return parse_cache_control(cache_control) if cache_control else _EMPTY


def digest(*parts: str) -> str:
    """A short hash of ``parts`` for cache keys."""
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


#: The verdict on a response that read one user's stored session or will set the session cookie.
SESSION_PRIVATE = Storability(None, "the response used a stored session or changes the session")
#: The verdict on a per-user response to a request carrying identifying cookies.
COOKIE_PRIVATE = Storability(None, "varies on Cookie and the request carried cookies (say public to share)")


class Request:
    """One request's facts, gathered once by a shell; the steps read and update them."""

    __slots__ = (
        "detail",
        "directives",
        "found",
        "fwd",
        "has_auth",
        "read",
        "source",
        "lock",
        "lookup",
        "method",
        "now",
        "page_key",
        "prior_tags",
        "session",
        "split",
        "static_tags",
        "url_hash",
    )

    def __init__(
        self,
        method: str,
        url_hash: str,
        read: HeaderReader,
        source: Any,
        now: float,
        directives: Mapping[str, str | None],
        has_auth: bool,
        lookup: Any = None,
        page_key: str | None = None,
        split: str = "",
    ) -> None:
        #: The request method.
        self.method = method
        #: The hash naming this URL (with its trusted forwarded inputs) in the engine.
        self.url_hash = url_hash
        #: Reads a request header from :attr:`source` (see :meth:`header`).
        self.read = read
        #: The shell's request that :attr:`read` reads.
        self.source = source
        #: The cache's clock when the request arrived.
        self.now = now
        #: The request's ``Cache-Control`` directives (:func:`directives`).
        self.directives = directives
        #: Whether the request carried ``Authorization``.
        self.has_auth = has_auth
        #: What the URL's lookup record held at lookup (a page is stored only if no purge came since).
        self.lookup = lookup
        #: The variant key the request maps to under :attr:`lookup`, if any.
        self.page_key = page_key
        #: The mount prefix (``SCRIPT_NAME`` / ``root_path``), keyed in the variant.
        self.split = split
        #: The stampede lock this request holds, if any.
        self.lock: Any = None
        #: The session the app used, as the shell found it (read after the response started).
        self.session: Any = None
        #: Whether a page (fresh or stale) was stored for the request's variant at lookup.
        self.found = False
        #: Why the request went to the app, as ``Cache-Status`` ``fwd`` says it (RFC 9211).
        self.fwd = "uri-miss"
        #: Why a storable response was not stored, if it was not (``Cache-Status`` ``detail``).
        self.detail = ""
        #: Tags of the page stored for the variant at lookup (fresh, stale or invalidated).
        self.prior_tags: tuple[str, ...] = ()
        #: The tags the options name for this request (``tags=``), read before the render.
        self.static_tags: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """The request header ``name`` (lower-case), or ``None``."""
        return self.read(self.source, name)

    def handed_over(self, source: Any, read: HeaderReader) -> Request:
        """This request's facts for a background re-render reading ``source``; its lock moves along."""
        job = Request(
            self.method,
            self.url_hash,
            read,
            source,
            self.now,
            self.directives,
            self.has_auth,
            self.lookup,
            self.page_key,
            self.split,
        )
        job.lock, self.lock = self.lock, None
        job.found, job.fwd, job.prior_tags = self.found, self.fwd, self.prior_tags
        return job


class Plan(NamedTuple):
    """What :meth:`PageEngine.lookup` decided."""

    #: ``"serve"`` (answer with :attr:`page`), ``"run"`` (run the app; store if allowed) or ``"pass"``
    #: (run the app and touch nothing).
    action: str
    #: The page to serve, for ``"serve"``; for a ``"run"`` in the stale-while-revalidate window
    #: (the lock taken), the stale page a shell may answer with while it re-renders in the background
    #: (``None`` when the page is fresh but older than the request's ``max-age``: that one renders).
    page: Page | None = None
    #: A stale page that may stand in for an error (stale-if-error), for ``"run"``.
    fallback: Page | None = None
    #: A stale page that must not be served: an error is answered with a 504.
    revalidate: bool = False
    #: Counted as a stale serve.
    stale: bool = False
    #: Served from the page another request rendered while this one waited for the lock.
    collapsed: bool = False


_PASS = Plan("pass")
_RUN = Plan("run")


class PageEngine:
    """The rules of one page cache, shared by every shell that has its :class:`PageOptions`."""

    def __init__(self, options: PageOptions) -> None:
        #: The settings.
        self.options = options
        self._explicit = frozenset(options.statuses) | frozenset(options.explicit_statuses)
        self._lifetime: tuple[Any, float | None] | None = None
        self._url_hashes: dict[tuple[Any, ...], str] = {}
        self._path_hashes: dict[str, str] = {}
        self._page_keys: dict[tuple[Any, ...], str] = {}
        # The lookup record this process last read or wrote per URL hash: the hit path reads
        # the page it names together with the record itself (one round trip), then checks it.
        self._hints: dict[str, Lookup] = {}
        # The cache's name as Cache-Status writes it (a token, or a quoted string), serialized once.
        self._status_name = status_member(options.cache_status_name)

    # -- keys ----------------------------------------------------------------------

    def default_lifetime(self, cache: Any) -> float | None:
        """The lifetime of responses that state none, in ``cache``'s terms (``0.0``: caching is off)."""
        known = self._lifetime
        if known is not None and known[0] is cache:
            return known[1]
        lifetime: float | None = cache.lifetime(self.options.timeout)
        self._lifetime = (cache, lifetime)
        return lifetime

    def url_hash(
        self, memo_key: tuple[Any, ...], url: Callable[[], str], read: HeaderReader, source: Any
    ) -> str:
        """Return the hash naming a request's URL; ``url()`` builds the canonical URL on a memo miss."""
        trusted = self.options.trusted_forwarded
        if trusted:
            memo_key = (*memo_key, *(read(source, name) for name in trusted))
        known = self._url_hashes.get(memo_key)
        if known is None:
            if len(self._url_hashes) >= _MEMO_SIZE:
                self._url_hashes.clear()
                self._path_hashes.clear()
            full = url()
            given = {name: value for name in trusted if (value := read(source, name)) is not None}
            # Named by the URL the trusted headers describe, so a purge of that URL reaches the
            # page; their raw values are keyed in the variant (variant_key).
            effective = (
                effective_url(full, given, normalize_query=self.options.normalize_query) if given else full
            )
            if effective is None:  # values that describe no URL: keyed by them (no purge by URL names it)
                forwarded = [f"{name}={value}" for name, value in given.items()]
                known = self.hash_url(full, *forwarded)
                path_hash = self.hash_url(full.partition("?")[0], *forwarded)
            else:
                known = self.hash_url(effective)
                path_hash = self.hash_url(effective.partition("?")[0])
            self._url_hashes[memo_key] = known
            # Variants are counted per path: junk query strings are variants of one page.
            self._path_hashes[known] = path_hash
        return known

    def hash_url(self, url: str, *forwarded: str) -> str:
        """The hash naming canonical ``url`` (and trusted forwarded values) in this engine."""
        return digest(self.options.key_prefix, url, *forwarded)

    def purge_hash(self, url: str) -> str:
        """The hash of absolute ``url`` as :meth:`purge` keys it."""
        return self.hash_url(canonical_url(url, normalize_query=self.options.normalize_query))

    def variant_key(
        self, url_hash: str, lookup: Lookup, read: HeaderReader, source: Any, split: str = ""
    ) -> str:
        """The page key of one variant: URL, learned ``Vary`` names and nonce, the request's values.

        ``split`` is the mount prefix (``SCRIPT_NAME``, ASGI ``root_path``): the URL joins it
        with the path, so where it ends is keyed here (an outer middleware may move it, from
        a header). In the variant, not the URL, so purging the URL drops every split.
        """
        _, names, nonce = lookup
        values = tuple([read(source, name) or "" for name in names])
        trusted = self.options.trusted_forwarded
        # The trusted forwarded headers as they came ("\n", which no header holds, for absent).
        forwarded = tuple([_or_absent(read(source, name)) for name in trusted]) if trusted else ()
        memo_key = (url_hash, lookup, values, split, forwarded)
        page_key = self._page_keys.get(memo_key)
        if page_key is None:
            if len(self._page_keys) >= _MEMO_SIZE:
                self._page_keys.clear()
            # len(forwarded) is fixed per engine, so names and values still split unambiguously.
            parts = (url_hash, nonce, *names, *values, *forwarded)
            # "split" never starts a hex url_hash: no split-less key can equal one with a split.
            page_key = PAGE_KEY + (digest("split", split, *parts) if split else digest(*parts))
            self._page_keys[memo_key] = page_key
        return page_key

    # -- step 1: lookup ------------------------------------------------------------------

    def page_key_of(
        self, url_hash: str, lookup: Any, read: HeaderReader, source: Any, split: str = ""
    ) -> str | None:
        """The variant's page key under the URL's lookup record (read by the shell), if it holds one."""
        if type(lookup) is not tuple or len(lookup) != 3 or lookup[0] != LOOKUP_MARK:
            return None
        if self._hints.get(url_hash) != lookup:
            self._remember(url_hash, lookup)
        return self.variant_key(url_hash, lookup, read, source, split)

    def hinted_key(self, url_hash: str, read: HeaderReader, source: Any, split: str = "") -> str | None:
        """The page key the URL's last-seen lookup record gives the request (``None``: none seen).

        Only a guess, to read with the record in one round trip: the shell keeps the page
        only if the record it read names the same key (:meth:`page_key_of`).
        """
        hint = self._hints.get(url_hash)
        return None if hint is None else self.variant_key(url_hash, hint, read, source, split)

    def _remember(self, url_hash: str, lookup: Lookup) -> None:
        hints = self._hints
        if len(hints) >= _MEMO_SIZE:
            hints.clear()
        hints[url_hash] = lookup

    def fresh(
        self, stored: Any, now: float, has_auth: bool, directives: Mapping[str, str | None]
    ) -> Page | None:
        """The stored page if it answers at once (fresh, allowed, no tags to check), else ``None``.

        The shells' hit path: the reads and this; no :class:`Request`, no step machinery.
        """
        if type(stored) is not tuple or len(stored) != FIELDS or stored[0] != MARK:
            return None
        if stored[TAGS] or (has_auth and not stored[AUTH_OK]):
            return None
        fresh_until = stored[FRESH_UNTIL]
        if fresh_until is not None and now >= fresh_until:
            return None
        return stored if not directives or servable(stored, now, directives) else None

    def lookup(self, request: Request, stored: Any) -> Steps:
        """After :meth:`fresh` said no: a :class:`Plan` (may leave :attr:`Request.lock` held).

        :param stored: what the shell read under the variant's page key (``None``: not read).
        """
        entry = page_for(stored, has_auth=request.has_auth)
        if entry is not None and entry[TAGS] and self.options.surrogate_key_headers:
            request.prior_tags = tuple(tag for tag, _ in entry[TAGS])
        invalidated = False
        if entry is not None and entry[TAGS] and not (yield ("valid", entry[TAGS])):
            since = yield ("soft_since", entry[TAGS])  # a soft invalidation: stale since then, not gone
            if since is None:
                entry, invalidated = None, True  # invalidated by tag: not even a stale copy may be served
            else:
                entry = stale_from(entry, since, self.options)
        now = request.now
        # A known variant: found, or not read because the client asked to revalidate.
        request.found = entry is not None or (
            "no-cache" in request.directives and request.page_key is not None
        )
        if entry is not None and servable(entry, now, request.directives):
            return Plan("serve", entry)
        request.fwd = self._fwd_reason(request, entry, invalidated)
        if request.method == "HEAD":
            return _PASS  # a HEAD response has no body to store
        fallback = error_fallback(entry, now)
        must = entry is not None and fallback is None and bool(entry[MUST_REVALIDATE])
        lock_name = LOCK_KEY + request.url_hash
        if entry is not None and in_revalidate_window(entry, now):
            # Stale but within stale-while-revalidate: never wait; one request refreshes.
            request.lock = yield ("lock", lock_name, False, self.options.lock_timeout)
            if request.lock is None:
                return Plan("serve", entry, stale=True)
            return Plan("run", None if is_fresh(entry, now) else entry, fallback=fallback)
        if self._may_lock(request) and not (yield ("has", NOLOCK_KEY + request.url_hash)):
            request.lock = yield ("lock", lock_name, True, self.options.lock_timeout)
            if request.lock is not None:
                # Whoever held the lock may have stored the page meanwhile.
                lookup = request.lookup = yield ("get", LOOKUP_KEY + request.url_hash)
                if is_lookup(lookup):
                    request.page_key = self.variant_key(
                        request.url_hash, lookup, request.read, request.source, request.split
                    )
                    found = yield from self.read_page(request.page_key, request.has_auth)
                    if found is not None and is_fresh(found, now):
                        yield from self.release(request)
                        return Plan("serve", found, collapsed=True)
        if fallback is None and not must:
            return _RUN
        return Plan("run", fallback=fallback, revalidate=must)

    def _fwd_reason(self, request: Request, entry: Page | None, invalidated: bool) -> str:
        """Why the request goes to the app: an RFC 9211 ``fwd`` value."""
        if entry is not None:
            # Stored but not servable: stale, or too old for the request's own max-age.
            return "stale" if not is_fresh(entry, request.now) else "request"
        if invalidated:
            return "stale"
        if "no-cache" in request.directives and request.page_key is not None:
            return "request"
        lookup = request.lookup
        if not is_lookup(lookup):
            return "uri-miss"
        # The URL is known: with learned Vary names this variant is missing, else the page expired.
        return "vary-miss" if lookup[1] else "miss"

    def _may_lock(self, request: Request) -> bool:
        """Whether a missing page is computed under the stampede lock.

        Not when the client asked to revalidate (it must not get another's copy)
        or not to store, nor with ``Authorization`` (the response is unlikely to be shared).
        """
        d = request.directives
        return self.options.lock and not request.has_auth and "no-cache" not in d and "no-store" not in d

    def read_page(self, page_key: str, has_auth: bool) -> Steps:
        """The page under ``page_key`` the request may see; ``None`` if missing or invalidated by a tag."""
        page = page_for((yield ("get", page_key)), has_auth=has_auth)
        if page is not None and page[TAGS] and not (yield ("valid", page[TAGS])):
            return None  # invalidated by tag: not even a stale copy may be served
        return page

    def rendered_meanwhile(self, request: Request) -> Steps:
        """For a background re-render, under the lock: whether the page is fresh again.

        Another process may have stored it between the request's read and its
        lock: read again, so an expiry stays one render across processes. Tags
        are checked too (a soft-invalidated page is fresh by its own dates). The
        lookup record read now is the one a purge is checked against.
        """
        request.lookup = yield ("get", LOOKUP_KEY + request.url_hash)
        request.page_key = self.page_key_of(
            request.url_hash, request.lookup, request.read, request.source, request.split
        )
        if request.page_key is None:
            return False
        page = yield from self.read_page(request.page_key, request.has_auth)
        return page is not None and is_fresh(page, request.now)

    def release(self, request: Request) -> Steps:
        """Release the request's stampede lock, if it holds one."""
        lock, request.lock = request.lock, None
        if lock is not None:
            yield ("release", lock)

    def generations(self, request: Request, source: Any) -> Steps:
        """The tags' generations before the render (so an invalidation during it wins).

        Besides the ``tags=`` names, the tags the previously stored page
        declared: a re-render that declares them again keeps these generations,
        so an invalidation during the re-render wins for them too.
        """
        tags = self.options.tags
        request.static_tags = tuple(tags(source) if callable(tags) else tags)
        names = tuple(dict.fromkeys((*request.static_tags, *request.prior_tags)))
        return (yield ("generations", names)) if names else ()

    # -- step 2: the verdict -------------------------------------------------------------------

    def verdict(
        self, request: Request, status: int, headers: list[tuple[str, str]], *, failed: bool
    ) -> Storability:
        """Whether the response may be stored, and for how long (RFC 9111 plus our sharing rules)."""
        if failed:
            return Storability(None, "the app reported an error")
        options = self.options
        headers = self.effective(headers)
        length = header(headers, "content-length")
        if (
            length is not None
            and length.isascii()
            and length.isdigit()
            and int(length) > options.max_body_size
        ):
            return Storability(None, "body larger than max_body_size")
        verdict = storability(
            status,
            headers,
            default_timeout=self._lifetime[1] if self._lifetime else None,
            now=request.now,
            has_authorization=request.has_auth,
            request_no_store="no-store" in request.directives,
            statuses=options.statuses,
            explicit_statuses=options.explicit_statuses,
            stale_while_revalidate=options.stale_while_revalidate,
            stale_if_error=options.stale_if_error,
        )
        if not verdict.storable:
            return verdict
        use = self.session_use(request, headers)
        if use is SessionUse.PRIVATE:
            return SESSION_PRIVATE
        if (
            use is not SessionUse.PER_COOKIE
            and "cookie" in vary_headers(headers)
            and self.identifying_cookies(request.header("cookie"))
            and not is_public(headers)
        ):
            return COOKIE_PRIVATE
        return verdict

    def effective(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The response headers as this cache's storage rules read them (targeted fields first, RFC 9213)."""
        return list(effective_headers(headers, self.options.target_fields))  # type: ignore[arg-type]

    def session_use(self, request: Request, headers: list[tuple[str, str]]) -> SessionUse:
        """How the response used the request's session (see :func:`cachekit.pages.record.session_use`)."""
        return session_use(request.session, self.effective(headers))

    def identifying_cookies(self, cookie: str | None) -> bool:
        """Whether a ``Cookie`` header holds a cookie not named in ``shareable_cookies``."""
        if not cookie:
            return False
        shareable = self.options.shareable_cookies
        for part in cookie.split(";"):
            name = part.partition("=")[0].strip()
            if name and name.lower() not in shareable:
                return True
        return False

    def no_lock_earned(self, request: Request, status: int, headers: list[tuple[str, str]]) -> bool:
        """Whether the response's own headers (not the request) make it unstorable: skip the lock a while.

        A request's ``no-store``, ``Authorization``, cookies or conditions, a
        ``206`` or a ``304`` never switch the lock off for others.
        """
        if request.lock is None or status in (206, 304) or not 200 <= status < 500:
            return False
        own = storability(
            status,
            self.effective(headers),
            default_timeout=self._lifetime[1] if self._lifetime else None,
            now=request.now,
            statuses=self.options.statuses,
            explicit_statuses=self.options.explicit_statuses,
        )
        return not own.storable

    def on_start(self, request: Request, status: int, headers: list[tuple[str, str]], failed: bool) -> Steps:
        """The response started: its verdict; an unstorable one releases the lock at once."""
        verdict = self.verdict(request, status, headers, failed=failed)
        if not verdict.storable:
            if self.no_lock_earned(request, status, headers):
                yield ("set", NOLOCK_KEY + request.url_hash, True, NOLOCK_SECONDS)
            yield from self.release(request)
        return verdict

    # -- step 3: storing ----------------------------------------------------------------------------

    def finish(
        self,
        request: Request,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        verdict: Storability,
        generations: Generations,
    ) -> Steps:
        """Store the produced response (``body`` ``None``: too large or unusable), then release the lock.

        Returns whether the page was stored; if not, :attr:`Request.detail` says why.
        """
        try:
            if not verdict.storable:
                request.detail = verdict.reason
                return False
            if body is None:
                request.detail = "body larger than max_body_size or not replayable"
                return False
            use = self.session_use(request, headers)
            # The body may have used the session after the response started.
            if use is SessionUse.PRIVATE:
                request.detail = SESSION_PRIVATE.reason
                return False
            return (yield from self._store(request, status, headers, body, verdict, generations, use))
        finally:
            yield from self.release(request)

    def _store(
        self,
        request: Request,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        verdict: Storability,
        generations: Generations,
        use: SessionUse,
    ) -> Steps:
        options = self.options
        per_cookie = use is SessionUse.PER_COOKIE
        declared = surrogate_keys(headers, options.surrogate_key_headers)  # type: ignore[arg-type]
        if request.prior_tags:
            # Only tags this response names: a previous page's tag it dropped is not kept.
            named = {*request.static_tags, *declared}
            generations = tuple(pair for pair in generations if pair[0] in named)
        if declared:
            known = {tag for tag, _ in generations}
            new = [tag for tag in declared if tag not in known]
            if new:
                # New tags are read after the render: an invalidation of them during it is missed (docs).
                generations = (*generations, *(yield ("generations", new)))
        page = stored_page(
            status,
            # An inner cache's Cache-Status told of this render, not of later hits.
            without(self.page_headers(headers, verdict), (CACHE_STATUS,)),
            body,
            now=request.now,
            verdict=verdict,
            generations=generations,
            etag=options.etag,
            per_cookie=per_cookie,
            # Directives from a targeted field are for this cache: not told to the client.
            patch_freshness=targeted_directives(headers, options.target_fields) is None,  # type: ignore[arg-type]
        )
        names = dict.fromkeys((*options.vary_on, *vary_headers(page[2])))
        previous = request.lookup
        lookup = new_lookup(names, previous)
        lifetime = verdict.lifetime
        stale = max(verdict.stale_while_revalidate, verdict.stale_if_error)
        if verdict.must_revalidate:
            # Never served stale, but kept through the configured windows: an origin
            # failure then is a 504 (RFC 9111 section 4.2.4), not a stale page.
            stale = max(options.stale_while_revalidate, options.stale_if_error)
        keep = None if lifetime is None else lifetime + stale
        # The lookup record outlives its pages, so an expiring page keeps one lock and
        # one variant key across processes until it is rendered again.
        keep_lookup = None if keep is None else 2 * keep + 60.0
        if not (yield from self._within_variant_cap(request, keep_lookup)):
            request.detail = "max_variants reached for this path"
            return False  # served, not stored: one more variant of a page that has its fill
        if (yield from self._claim(LOOKUP_KEY + request.url_hash, previous, lookup, keep_lookup)):
            self._remember(request.url_hash, lookup)
            yield (
                "set",
                self.variant_key(request.url_hash, lookup, request.read, request.source, request.split),
                page,
                keep,
            )
            return True
        request.detail = "purged during the render"
        return False

    # -- the fields shared with other caches ---------------------------------------------------

    def page_headers(self, headers: list[tuple[str, str]], verdict: Storability) -> list[tuple[str, str]]:
        """The headers a produced response goes on with: to the client, and into the stored page.

        Surrogate-key headers are dropped unless ``expose_surrogate_keys``; a
        storable response gets the configured ``CDN-Cache-Control`` when it has none.
        """
        options = self.options
        if options.surrogate_key_headers and not options.expose_surrogate_keys:
            names = options.surrogate_key_headers
            if any(name.lower() in names for name, _ in headers):
                headers = without(headers, names)
        cdn = options.cdn_cache_control
        if cdn is not None and verdict.storable and header(headers, "cdn-cache-control") is None:
            headers = [*headers, ("CDN-Cache-Control", cdn)]
        return headers

    def hit_status(self, page: Page, now: float, plan: Plan | None = None, fwd: str = "miss") -> str | None:
        """The ``Cache-Status`` member for a response served from ``page`` (``None`` when off).

        A collapsed request (``plan.collapsed``: it waited for another's render)
        reports why it would have gone to the app (``fwd``) and ``collapsed``.
        """
        options = self.options
        if not options.cache_status:
            return None
        fresh_until = page[FRESH_UNTIL]
        ttl = None if fresh_until is None else fresh_until - now
        if plan is not None and plan.collapsed:
            return status_member(
                options.cache_status_name,
                fwd=fwd,
                fwd_status=int(page[STATUS][:3]),
                ttl=ttl,
                collapsed=True,
            )
        # The hit path's member by hand: a serialized name and an integer need no serializer.
        return f"{self._status_name};hit" if ttl is None else f"{self._status_name};hit;ttl={int(ttl // 1)}"

    def serve_plan(self, plan: Plan, request: Request, answer: Callable[[Page, float], Answer]) -> Answer:
        """The response for a ``serve`` plan: its page as the shell's ``answer`` renders it, marked."""
        served: Page = plan.page  # type: ignore[assignment]
        out = answer(served, request.now)
        if self.options.cache_status:
            out = marked(out, self.hit_status(served, request.now, plan, request.fwd))
        return out

    def render_status(self, request: Request, status: int, verdict: Storability, stored: bool) -> str | None:
        """The ``Cache-Status`` member for a response the app produced (``None`` when off)."""
        options = self.options
        if not options.cache_status:
            return None
        return status_member(
            options.cache_status_name,
            fwd=request.fwd,
            fwd_status=status or None,
            ttl=verdict.lifetime if stored else None,
            stored=stored,
            detail=None if stored else (request.detail or verdict.reason),
        )

    def error_status(self, request: Request, status: int | None, page: Page | None, now: float) -> str | None:
        """The ``Cache-Status`` member when the app failed and ``page`` (stale) or a 504 answers."""
        options = self.options
        if not options.cache_status:
            return None
        stale_for = None if page is None or page[FRESH_UNTIL] is None else page[FRESH_UNTIL] - now
        return status_member(
            options.cache_status_name,
            fwd=request.fwd,
            fwd_status=status or None,
            ttl=stale_for,
            detail="stale-if-error" if page is not None else "must-revalidate and the origin failed",
        )

    def pass_status(self, fwd: str, status: int, detail: str) -> str | None:
        """The ``Cache-Status`` member for a request passed to the app untouched by the cache."""
        options = self.options
        if not options.cache_status:
            return None
        return status_member(options.cache_status_name, fwd=fwd, fwd_status=status or None, detail=detail)

    def _within_variant_cap(self, request: Request, keep: float | None) -> Steps:
        """Count a new variant of the request's path; ``False`` once past ``max_variants``."""
        path_hash = self._path_hashes.get(request.url_hash)
        if request.found or path_hash is None:
            return True  # a variant already kept (re-rendered), or the memo was just emptied
        count = yield ("count", VARIANTS_KEY + path_hash, keep)
        return count is None or count <= self.options.max_variants

    def _claim(self, lookup_key: str, previous: Any, lookup: Lookup, keep: float | None) -> Steps:
        """Point the URL's lookup record at ``lookup``; ``False`` if a purge got there first.

        ``previous`` is what the key held at lookup, before the render read its
        data. A purge since then deleted the key, and this page, which may hold
        data from before the purge, must not bring it back. So: ``add`` when there
        was none (a purge and a newer render in between keep theirs), ``touch``
        (which cannot re-create a key) when the learned ``Vary`` is unchanged, and
        compare-and-set on the nonce when it changed. If the key holds another
        nonce by then, the page goes under the purged one, which no lookup reaches.
        """
        if not is_lookup(previous):
            return (yield ("add", lookup_key, lookup, keep))
        if lookup == previous:
            return (yield ("touch", lookup_key, keep))
        found = yield ("gets", lookup_key)
        if found is None or not is_lookup(found[0]) or found[0][2] != previous[2]:
            return False
        return (yield ("cas", lookup_key, lookup, found[1], keep))

    # -- unsafe methods -------------------------------------------------------------------------------

    def is_unsafe(self, method: str) -> bool:
        """Whether a successful ``method`` invalidates the target URL (RFC 9111 section 4.4)."""
        return method in _UNSAFE_METHODS

    def invalidate(self, url: str, url_hash: str, status: int, headers: list[tuple[str, str]]) -> Steps:
        """After an unsafe method's non-error answer, drop the target URL and same-origin locations.

        :param url: the request's canonical URL; ``url_hash`` names it as a ``GET`` would.
        """
        if not 200 <= status < 400:
            return
        own = urlsplit(url)
        hashes = [url_hash]
        for name in ("location", "content-location"):
            value = header(headers, name)
            if not value:
                continue
            try:
                split = urlsplit(value)
                if split.netloc and (split.scheme.lower(), split.netloc.lower()) != (own.scheme, own.netloc):
                    continue  # another origin: not ours to invalidate (RFC 9111 section 4.4)
                absolute = value if split.netloc else f"{own.scheme}://{own.netloc}{_join(own.path, value)}"
                hashes.append(self.purge_hash(absolute))
            except ValueError:
                continue
        for target in dict.fromkeys(hashes):
            yield ("delete", LOOKUP_KEY + target)

    def error_answer(self, plan: Plan) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """The 504 for an origin failure when the stale page must be revalidated (RFC 9111 section 4.2.4)."""
        return GATEWAY_TIMEOUT if plan.revalidate and self.options.stale_if_error else None


def _or_absent(value: str | None) -> str:
    return "\n" if value is None else value


def _join(base_path: str, reference: str) -> str:
    if reference.startswith("/"):
        return reference
    return base_path.rpartition("/")[0] + "/" + reference
