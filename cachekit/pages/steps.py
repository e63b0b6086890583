"""The vocabulary of the page-cache steps: what they yield, the keys they name, a request's facts, a plan.

Shared by the engine (:mod:`cachekit.pages.engine`), the runners that do the
yielded operations (:mod:`cachekit.pages.io`) and the WSGI and ASGI shells; free
of I/O, as the engine is. :mod:`cachekit.pages.engine` re-exports every name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple
from typing import TypeAlias

from cachekit.pages.record import Page
from cachekit.pages.rules import parse_cache_control

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


def directives(cache_control: str | None) -> Mapping[str, str | None]:
    """A request's ``Cache-Control`` directives (an empty mapping when it has none)."""
    return parse_cache_control(cache_control) if cache_control else _EMPTY


def digest(*parts: str) -> str:
    """A short hash of ``parts`` for cache keys."""
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
