"""``cachekit purge``: remove cached pages by URL and invalidate tags."""

from __future__ import annotations

import argparse

from cachekit.ops.common import EXIT_NOT_FOUND
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import shared
from cachekit.ops.common import using


def cmd_purge(args: argparse.Namespace) -> int:
    """Run ``cachekit purge``."""
    if not args.page_urls and not args.tags:
        raise CommandError("nothing to purge: give page URLs and/or --tag NAME", EXIT_USAGE)
    from cachekit.views import purge

    found = 0
    with using(shared(args.url), args.prefix) as cache:
        for page in args.page_urls:
            try:
                cached = purge(
                    page, cache=cache, key_prefix=args.page_prefix, normalize_query=args.normalize_query
                )
            except ValueError as exc:
                raise CommandError(f"{page!r}: {exc}", EXIT_USAGE) from None
            found += cached
            print(f"{'purged' if cached else '(miss)'} {page}")
        if args.tags:
            cache.invalidate_tags(*args.tags)
            print(f"invalidated tag{'s' if len(args.tags) > 1 else ''} {', '.join(args.tags)}")
    return EXIT_OK if found or args.tags else EXIT_NOT_FOUND


def register(command: Register) -> None:
    """Add ``cachekit purge`` to the parser."""
    purge = command("purge", "remove cached pages by URL and invalidate tags", cmd_purge)
    purge.add_argument("url", metavar="URL", help=URL_HELP)
    purge.add_argument(
        "page_urls",
        nargs="*",
        metavar="PAGE_URL",
        help="absolute URL of a cached page, e.g. http://example.com/",
    )
    purge.add_argument(
        "--tag",
        dest="tags",
        metavar="NAME",
        action="append",
        default=[],
        help="invalidate this tag (repeatable)",
    )
    purge.add_argument("--prefix", help="the cache's KEY_PREFIX (default none)")
    purge.add_argument("--page-prefix", default=None, help="the page cache's key_prefix (default none)")
    purge.add_argument(
        "--normalize-query", action="store_true", help="the pages were cached with normalize_query=True"
    )
