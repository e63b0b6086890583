"""Step 2 of the page engine: whether a produced response may be stored, and for how long.

RFC 9111 (:func:`cachekit.pages.rules.storability`) and our stricter sharing
rules: ``Authorization``, cookies, and sessions of any session system.
:class:`Verdicts` is a part of :class:`~cachekit.pages.engine.PageEngine` (a base class of it).
"""

from __future__ import annotations

from typing import Any

from cachekit.pages.fields import effective_headers
from cachekit.pages.options import PageOptions
from cachekit.pages.record import SessionUse
from cachekit.pages.record import is_public
from cachekit.pages.record import session_use
from cachekit.pages.rules import Storability
from cachekit.pages.rules import header
from cachekit.pages.rules import storability
from cachekit.pages.rules import vary_headers
from cachekit.pages.steps import Request

#: The verdict on a response that read one user's stored session or will set the session cookie.
SESSION_PRIVATE = Storability(None, "the response used a stored session or changes the session")
#: The verdict on a per-user response to a request carrying identifying cookies.
COOKIE_PRIVATE = Storability(None, "varies on Cookie and the request carried cookies (say public to share)")


class Verdicts:
    """The page engine's storage verdicts on produced responses."""

    options: PageOptions
    # The cache and the default lifetime in its terms (PageEngine.default_lifetime), once known.
    _lifetime: tuple[Any, float | None] | None

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
