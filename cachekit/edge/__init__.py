"""Purges past the app: Varnish, CDNs and a queue for the purges a proxy missed.

:class:`Purges` (sync) and :class:`AsyncPurges` purge our page cache and every
configured purger in one call; see ``docs/views.md``, "Behind Varnish and a CDN".
"""

from cachekit.edge.jobs import InvalidPurgeError
from cachekit.edge.jobs import PurgeDeliveryError
from cachekit.edge.jobs import PurgeJob
from cachekit.edge.purge import AsyncPurges
from cachekit.edge.purge import PurgeReport
from cachekit.edge.purge import Purges
from cachekit.edge.purge import purgers_from_settings
from cachekit.edge.purgers import HTTPCall
from cachekit.edge.purgers import HTTPPurger
from cachekit.edge.purgers import Purger
from cachekit.edge.purgers import VarnishPurger
from cachekit.edge.purgers import cloudflare_purger
from cachekit.edge.purgers import fastly_purger
from cachekit.edge.queue import MemoryPurgeQueue
from cachekit.edge.queue import PurgeQueue
from cachekit.edge.queue import QueuedPurge
from cachekit.edge.queue import RedisPurgeQueue

__all__ = [
    "AsyncPurges",
    "HTTPCall",
    "HTTPPurger",
    "InvalidPurgeError",
    "MemoryPurgeQueue",
    "PurgeDeliveryError",
    "PurgeJob",
    "PurgeQueue",
    "PurgeReport",
    "Purger",
    "Purges",
    "QueuedPurge",
    "RedisPurgeQueue",
    "VarnishPurger",
    "cloudflare_purger",
    "fastly_purger",
    "purgers_from_settings",
]
