"""The fields a page cache shares with other caches: ``Cache-Status`` (RFC 9211), ``CDN-Cache-Control``.

:class:`StatusFields` is a part of :class:`~cachekit.pages.engine.PageEngine`
(a base class of it), kept apart because it only writes what the engine decided.
"""

from __future__ import annotations

from collections.abc import Callable

from cachekit.pages.fields import Answer
from cachekit.pages.fields import marked
from cachekit.pages.fields import status_member
from cachekit.pages.fields import without
from cachekit.pages.options import PageOptions
from cachekit.pages.record import FRESH_UNTIL
from cachekit.pages.record import STATUS
from cachekit.pages.record import Page
from cachekit.pages.rules import Storability
from cachekit.pages.rules import header
from cachekit.pages.steps import Plan
from cachekit.pages.steps import Request


class StatusFields:
    """The page engine's ``Cache-Status`` members and the headers a produced response goes on with."""

    options: PageOptions
    # The cache's name as Cache-Status writes it (a token, or a quoted string), serialized once.
    _status_name: str

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
