"""The page-cache engine, written once and free of I/O: request facts in, decisions out.

In the style of h11 or Werkzeug's ``sansio``: nothing here calls a cache, an
app or a server. The steps that need the cache are generators that *yield*
the operations they need (``("get", key)``, ``("lock", name, blocking)``...)
and receive the results; :mod:`cachekit.pages.io` runs them on a
:class:`~cachekit.Cache` (plain calls) or an :class:`~cachekit.aio.AsyncCache`
(awaited). The WSGI and ASGI shells only move bytes and call these steps, so
every rule below holds, and is fixed, once for both.

The engine's parts, by role: the vocabulary the steps, runners and shells
share (:class:`Request`, :class:`Plan`, the key names) in
:mod:`cachekit.pages.steps`; step 2's verdicts in :mod:`cachekit.pages.verdict`;
the ``Cache-Status`` members in :mod:`cachekit.pages.status`. This module keeps
the keys, the lookup, storing and invalidation, and re-exports every name it had.

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

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cachekit.pages.fields import CACHE_STATUS
from cachekit.pages.fields import status_member
from cachekit.pages.fields import surrogate_keys
from cachekit.pages.fields import targeted_directives
from cachekit.pages.fields import without
from cachekit.pages.forwarded import effective_url
from cachekit.pages.options import PageOptions
from cachekit.pages.record import AUTH_OK
from cachekit.pages.record import FIELDS
from cachekit.pages.record import FRESH_UNTIL
from cachekit.pages.record import LOOKUP_MARK
from cachekit.pages.record import MARK
from cachekit.pages.record import MUST_REVALIDATE
from cachekit.pages.record import TAGS
from cachekit.pages.record import Lookup
from cachekit.pages.record import Page
from cachekit.pages.record import SessionUse
from cachekit.pages.record import error_fallback
from cachekit.pages.record import gateway_timeout
from cachekit.pages.record import in_revalidate_window
from cachekit.pages.record import is_fresh
from cachekit.pages.record import is_lookup
from cachekit.pages.record import new_lookup
from cachekit.pages.record import page_for
from cachekit.pages.record import servable
from cachekit.pages.record import stored_page
from cachekit.pages.rules import Storability
from cachekit.pages.rules import header
from cachekit.pages.rules import vary_headers
from cachekit.pages.soft import stale_from
from cachekit.pages.status import StatusFields
from cachekit.pages.steps import _EMPTY as _EMPTY
from cachekit.pages.steps import _PASS as _PASS
from cachekit.pages.steps import _RUN as _RUN
from cachekit.pages.steps import LOCK_KEY as LOCK_KEY
from cachekit.pages.steps import LOOKUP_KEY as LOOKUP_KEY
from cachekit.pages.steps import NOLOCK_KEY as NOLOCK_KEY
from cachekit.pages.steps import NOLOCK_SECONDS as NOLOCK_SECONDS
from cachekit.pages.steps import PAGE_KEY as PAGE_KEY
from cachekit.pages.steps import VARIANTS_KEY as VARIANTS_KEY
from cachekit.pages.steps import HeaderReader as HeaderReader
from cachekit.pages.steps import Op as Op
from cachekit.pages.steps import Plan as Plan
from cachekit.pages.steps import Request as Request
from cachekit.pages.steps import Steps as Steps
from cachekit.pages.steps import digest as digest
from cachekit.pages.steps import directives as directives
from cachekit.pages.urls import canonical_url
from cachekit.pages.verdict import COOKIE_PRIVATE as COOKIE_PRIVATE
from cachekit.pages.verdict import SESSION_PRIVATE as SESSION_PRIVATE
from cachekit.pages.verdict import Verdicts
from cachekit.tags import Generations

_MEMO_SIZE = 4096
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class PageEngine(Verdicts, StatusFields):
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
        return gateway_timeout() if plan.revalidate and self.options.stale_if_error else None


def _or_absent(value: str | None) -> str:
    return "\n" if value is None else value


def _join(base_path: str, reference: str) -> str:
    if reference.startswith("/"):
        return reference
    return base_path.rpartition("/")[0] + "/" + reference
