"""``cachekit purge``: remove cached pages by URL and invalidate tags, in our cache and every proxy.

With ``--varnish HOST:PORT`` (repeatable) or ``--purgers FILE`` (a JSON list
as the ``PURGERS`` setting, so API tokens stay out of the command line) the
purge also reaches Varnish and CDNs through :class:`cachekit.edge.Purges`. A
proxy that cannot be reached gets the purge queued on the cache's Redis;
``--retry-queued`` delivers what waits there (also what the app's processes queued,
when they share the cache and its ``--prefix``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cachekit.ops.common import EXIT_NOT_FOUND
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import EXIT_UNAVAILABLE
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import URL_HELP
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register
from cachekit.ops.common import positive
from cachekit.ops.common import shared
from cachekit.ops.common import using


def _purgers(args: argparse.Namespace) -> list[Any]:
    from cachekit.edge import VarnishPurger
    from cachekit.edge import purgers_from_settings

    purgers: list[Any] = []
    if args.varnish:
        purgers.append(VarnishPurger(args.varnish))
    if args.purgers:
        try:
            settings = json.loads(Path(args.purgers).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--purgers {args.purgers}: {exc}", EXIT_USAGE) from None
        if not isinstance(settings, list) or not all(isinstance(entry, dict) for entry in settings):
            raise CommandError(f"--purgers {args.purgers}: expected a JSON list of objects", EXIT_USAGE)
        purgers += purgers_from_settings(settings)
    return purgers


def _say(report: Any) -> None:
    """One line per proxy target: purged, queued or refused."""
    for where in report.delivered:
        print(f"  {where}: purged")
    for where in report.queued:
        print(f"  {where}: unreachable, queued (cachekit purge --retry-queued delivers it)")
    for where in report.failed:
        print(f"  {where}: FAILED (refused, or the queue is full or down: see the log)")
    for where in report.unsupported:
        print(f"  {where}: cannot purge this kind, skipped")


def cmd_purge(args: argparse.Namespace) -> int:
    """Run ``cachekit purge``."""
    if not (args.page_urls or args.tags or args.ban_prefixes or args.retry_queued):
        raise CommandError("nothing to purge: give page URLs and/or --tag NAME", EXIT_USAGE)
    from cachekit.edge import InvalidPurgeError
    from cachekit.edge import PurgeReport
    from cachekit.edge import Purges
    from cachekit.exceptions import ConfigurationError

    try:
        purgers = _purgers(args)
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    found, total = 0, PurgeReport()
    with using(shared(args.url), args.prefix) as cache:
        purges = Purges(
            cache, purgers, key_prefix=args.page_prefix or "", normalize_query=args.normalize_query
        )
        try:
            for page in args.page_urls:
                report = purges.purge(page, soft=args.soft)
                found += report.cached
                print(f"{'purged' if report.cached else '(miss)'} {page}")
                _say(report)
                total.merge(report)
            for prefix in args.ban_prefixes:
                report = purges.purge_prefix(prefix, soft=args.soft)
                print(f"banned {prefix} on the proxies")
                _say(report)
                total.merge(report)
            if args.tags:
                report = purges.invalidate_tags(*args.tags, soft=args.soft)
                how = "marked stale" if args.soft else "invalidated"
                print(f"{how} tag{'s' if len(args.tags) > 1 else ''} {', '.join(args.tags)}")
                _say(report)
                total.merge(report)
            if args.retry_queued:
                report = purges.deliver_queued(limit=args.limit)
                waiting = len(purges.queue)
                print(f"delivered {len(report.delivered)} queued purge(s); {waiting} still waiting")
                _say(report)
                total.merge(report)
        except InvalidPurgeError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if total.failed:
        return EXIT_UNAVAILABLE
    if found or args.tags or args.ban_prefixes or args.retry_queued or total.delivered or total.queued:
        return EXIT_OK
    return EXIT_NOT_FOUND


def register(command: Register) -> None:
    """Add ``cachekit purge`` to the parser."""
    purge = command("purge", "remove cached pages by URL and invalidate tags, here and on proxies", cmd_purge)
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
    purge.add_argument(
        "--soft",
        action="store_true",
        help="mark stale instead of removing: served while revalidated (our cache's tags, xkey-softpurge)",
    )
    purge.add_argument(
        "--ban-prefix",
        dest="ban_prefixes",
        metavar="URL",
        action="append",
        default=[],
        help="on the proxies, remove every page under this absolute URL prefix (repeatable)",
    )
    purge.add_argument(
        "--varnish",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="also purge this Varnish (repeatable; its VCL must allow PURGE/BAN from here)",
    )
    purge.add_argument(
        "--purgers",
        metavar="FILE",
        help='also purge these proxies/CDNs: a JSON list like [{"BACKEND": "fastly", ...}]',
    )
    purge.add_argument(
        "--retry-queued",
        action="store_true",
        help="deliver the purges waiting for proxies that were unreachable",
    )
    purge.add_argument(
        "--limit", type=positive, default=1000, help="at most this many queued purges per run (default 1000)"
    )
    purge.add_argument("--prefix", help="the cache's KEY_PREFIX (default none)")
    purge.add_argument("--page-prefix", default=None, help="the page cache's key_prefix (default none)")
    purge.add_argument(
        "--normalize-query", action="store_true", help="the pages were cached with normalize_query=True"
    )
