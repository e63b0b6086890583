"""One purge call for every layer: our page cache, then every configured proxy and CDN.

:class:`Purges` (and :class:`AsyncPurges` for an :class:`~cachekit.aio.AsyncCache`)
purges our cache first, so a proxy that refetches at once gets the new page,
then sends the job to each purger's targets. A target that cannot be reached
(refused, timed out, ``5xx``) gets the job queued (:mod:`cachekit.edge.queue`)
and delivered later by :meth:`Purges.deliver_queued` or the background thread of
:meth:`Purges.start_delivery`, with exponential backoff. A target that refuses
the purge (``403``, ``405``...) is reported, not retried: retrying will not help.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import TypeVar

from cachekit.config import read_setting
from cachekit.edge.jobs import InvalidPurgeError
from cachekit.edge.jobs import PurgeDeliveryError
from cachekit.edge.jobs import PurgeJob
from cachekit.edge.purgers import Purger
from cachekit.edge.purgers import VarnishPurger
from cachekit.edge.purgers import check_name
from cachekit.edge.purgers import cloudflare_purger
from cachekit.edge.purgers import fastly_purger
from cachekit.edge.queue import MemoryPurgeQueue
from cachekit.edge.queue import PurgeQueue
from cachekit.edge.queue import QueuedPurge
from cachekit.edge.queue import queue_for
from cachekit.exceptions import ConfigurationError
from cachekit.pages.engine import LOOKUP_KEY

if TYPE_CHECKING:
    from cachekit.aio import AsyncCache
    from cachekit.cache import Cache

CacheT = TypeVar("CacheT", bound="Cache | AsyncCache")

logger = logging.getLogger("cachekit.edge")

#: Seconds before the first retry of a queued purge; doubled per failure up to :data:`MAX_BACKOFF`.
BACKOFF = 1.0
#: Longest wait between two retries of one queued purge.
MAX_BACKOFF = 300.0


@dataclass
class PurgeReport:
    """What one purge call did, per layer.

    Entries name ``purger target`` (never a credential).
    """

    #: URL purges: how many pages our cache held.
    cached: int = 0
    #: Targets that confirmed the purge.
    delivered: list[str] = field(default_factory=list)
    #: Targets that could not be reached: the purge waits in the queue.
    queued: list[str] = field(default_factory=list)
    #: Targets that refused it, or a full queue: the purge is lost there (logged as errors).
    failed: list[str] = field(default_factory=list)
    #: Purgers that cannot purge this kind (a regex ban on Cloudflare...).
    unsupported: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing failed (queued purges will still be delivered)."""
        return not self.failed

    def merge(self, other: PurgeReport) -> PurgeReport:
        """Add ``other``'s entries to this report; return it."""
        self.cached += other.cached
        for name in ("delivered", "queued", "failed", "unsupported"):
            getattr(self, name).extend(getattr(other, name))
        return self


def purgers_from_settings(settings: Sequence[Mapping[str, Any]]) -> list[Purger]:
    """Purgers from settings such as ``PURGERS = [{"BACKEND": "varnish", "HOSTS": [...]}, ...]``.

    Backends: ``varnish`` (``HOSTS``, ``TIMEOUT``), ``fastly`` (``SERVICE_ID``,
    ``API_TOKEN``), ``cloudflare`` (``ZONE_ID``, ``API_TOKEN``); ``NAME`` and
    ``ENDPOINT`` are optional. An :class:`HTTPPurger` for another API is built in code.
    """
    purgers: list[Purger] = []
    for entry in settings:
        options = {key.upper(): value for key, value in entry.items()}
        kind = str(options.pop("BACKEND", "")).lower()
        try:
            if kind == "varnish":
                purgers.append(
                    VarnishPurger(
                        options["HOSTS"],
                        name=options.get("NAME", "varnish"),
                        timeout=float(options.get("TIMEOUT", 5.0)),
                    )
                )
            elif kind in ("fastly", "cloudflare"):
                extra = {k.lower(): options[k] for k in ("NAME", "ENDPOINT") if k in options}
                if kind == "fastly":
                    purgers.append(fastly_purger(options["SERVICE_ID"], options["API_TOKEN"], **extra))
                else:
                    purgers.append(cloudflare_purger(options["ZONE_ID"], options["API_TOKEN"], **extra))
            else:
                raise ConfigurationError(
                    f"PURGERS: unknown BACKEND {kind!r}; expected varnish, fastly or cloudflare.",
                    setting="PURGERS",
                )
        except KeyError as exc:
            raise ConfigurationError(
                f"PURGERS: a {kind} purger needs {exc.args[0]}.", setting="PURGERS"
            ) from None
    return purgers


class _Delivery:
    """Sending jobs to purgers and queueing what could not be sent: shared by both fronts."""

    def __init__(
        self,
        purgers: Iterable[Purger],
        queue: PurgeQueue,
        backoff: float,
        max_backoff: float,
        clock: Callable[[], float],
    ) -> None:
        self.purgers: dict[str, Purger] = {}
        for purger in purgers:
            name = check_name(purger.name)
            if name in self.purgers:
                raise ConfigurationError(
                    f"two purgers are named {name!r}: give each a name=.", setting="PURGERS"
                )
            self.purgers[name] = purger
        self.queue = queue
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock

    def wait(self, attempts: int) -> float:
        """Seconds before retry number ``attempts + 1``: doubling, capped, with jitter."""
        delay = min(self.max_backoff, self.backoff * 2 ** min(attempts, 30))
        return float(delay * random.uniform(0.5, 1.0))

    def send(self, job: PurgeJob) -> PurgeReport:
        """Deliver ``job`` to every purger's targets; queue what could not be reached."""
        report = PurgeReport()
        for purger in self.purgers.values():
            size = purger.batch(job.kind)
            jobs = (
                [job]
                if size is None or len(job.values) <= size
                else [
                    PurgeJob(job.kind, job.values[start : start + size], job.soft)
                    for start in range(0, len(job.values), size)
                ]
            )
            for target in purger.targets():
                for one in jobs:
                    self._send_one(purger, target, one, report)
        return report

    def _send_one(self, purger: Purger, target: str, job: PurgeJob, report: PurgeReport) -> None:
        where = f"{purger.name} {target}"
        request = purger.request(job, target)
        if request is None:
            if where not in report.unsupported:
                report.unsupported.append(where)
                logger.warning("purger %s cannot purge by %s: skipped", purger.name, job.kind)
            return
        try:
            purger.deliver(request)
        except PurgeDeliveryError as exc:
            if not exc.transient:
                report.failed.append(where)
                logger.error("purge refused by %s: %s", purger.name, exc)
                return
            item = QueuedPurge(purger.name, target, job)
            try:
                queued = self.queue.put(item, self.clock() + self.wait(0))
            except Exception as queue_error:
                logger.error(
                    "purge for %s not queued (%s: %s): %s",
                    where,
                    type(queue_error).__name__,
                    queue_error,
                    exc,
                )
                report.failed.append(where)
                return
            if queued:
                report.queued.append(where)
                logger.warning("purge for %s queued: %s", where, exc)
            else:
                report.failed.append(where)
                logger.error("purge for %s dropped, the purge queue is full: %s", where, exc)
            return
        report.delivered.append(where)

    def deliver_queued(self, limit: int) -> PurgeReport:
        """Try the queued purges that are due (at most ``limit``)."""
        report = PurgeReport()
        for item in self.queue.claim(self.clock(), limit):
            where = f"{item.purger} {item.target}"
            purger = self.purgers.get(item.purger)
            if purger is not None and item.target not in purger.targets():
                # Anyone who can write the queue's store could name any host: a purger's
                # requests (and its credentials) go only to the targets it was built with.
                self.queue.drop(item)
                report.failed.append(where)
                logger.error(
                    "queued purge for %s dropped: %r is not a target of purger %s",
                    where,
                    item.target,
                    item.purger,
                )
                continue
            try:
                request = None if purger is None else purger.request(item.job, item.target)
            except InvalidPurgeError as exc:
                request, why = None, str(exc)
            else:
                why = "no such purger or kind configured now"
            if purger is None or request is None:
                self.queue.drop(item)
                report.failed.append(where)
                logger.error("queued purge for %s dropped: %s", where, why)
                continue
            try:
                purger.deliver(request)
            except PurgeDeliveryError as exc:
                if exc.transient:
                    self.queue.retry(item, self.clock() + self.wait(item.attempts + 1))
                    report.queued.append(where)
                    logger.info(
                        "queued purge for %s failed again (%d attempts): %s", where, item.attempts + 1, exc
                    )
                else:
                    self.queue.drop(item)
                    report.failed.append(where)
                    logger.error("queued purge refused by %s: %s", item.purger, exc)
                continue
            self.queue.done(item)
            report.delivered.append(where)
        return report


class _Front(Generic[CacheT]):
    """What :class:`Purges` and :class:`AsyncPurges` share: the constructor and the queue.

    Each names its page cache (WSGI or ASGI, for the URL hashes) and its default queue.
    """

    def __init__(
        self,
        cache: CacheT | None = None,
        purgers: Iterable[Purger] = (),
        *,
        queue: PurgeQueue | None = None,
        key_prefix: str = "",
        normalize_query: bool = False,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self._pages: Any = None
        if cache is not None:
            self._pages = self._page_cache(cache, key_prefix, normalize_query)
        self._delivery = _Delivery(
            purgers, queue if queue is not None else self._default_queue(cache), backoff, max_backoff, clock
        )

    def _page_cache(self, cache: CacheT, key_prefix: str, normalize_query: bool) -> Any:
        raise NotImplementedError

    def _default_queue(self, cache: CacheT | None) -> PurgeQueue:
        raise NotImplementedError

    @property
    def queue(self) -> PurgeQueue:
        """Where unreachable purges wait."""
        return self._delivery.queue

    def _lookup_keys(self, job: PurgeJob) -> Iterator[str]:
        """The keys of the lookup records of ``job``'s URLs, one at a time (a delete purges every variant)."""
        assert self.cache is not None
        key, engine = self.cache.make_key, self._pages.engine
        for url in job.values:
            yield key(LOOKUP_KEY + engine.purge_hash(url))


class Purges(_Front["Cache"]):
    """Purge pages from our page cache and every proxy and CDN in front, in one call.

    :param cache: the :class:`~cachekit.Cache` pages are stored in (``None``: proxies only).
    :param purgers: :class:`~cachekit.edge.VarnishPurger`, :class:`~cachekit.edge.HTTPPurger`...
    :param queue: where unreachable purges wait; default: on ``cache``'s Redis
        when it has one (durable), else in memory (not durable).
    :param key_prefix: the page cache's ``key_prefix``.
    :param normalize_query: the pages were cached with ``normalize_query=True``.
    :param backoff: seconds before the first retry, doubled per failure up to ``max_backoff``.
    """

    _thread: threading.Thread | None = None

    @functools.cached_property
    def _stop(self) -> threading.Event:
        # The delivery thread's stop flag, one per instance, made on first use (no __init__ here).
        return threading.Event()

    def _page_cache(self, cache: Cache, key_prefix: str, normalize_query: bool) -> Any:
        from cachekit.pages.wsgi import PageCache

        return PageCache(cache=cache, key_prefix=key_prefix, normalize_query=normalize_query)

    def _default_queue(self, cache: Cache | None) -> PurgeQueue:
        return queue_for(cache)

    @classmethod
    def from_settings(cls, settings: Any, cache: Cache | None = None, **options: Any) -> Purges:
        """Purges configured by a settings mapping (a dict, a settings module, Flask's ``app.config``).

        Reads ``PURGERS`` (see :func:`purgers_from_settings`) and ``PURGE_QUEUE_LENGTH``
        (the queue's bound, default 10,000); ``options`` go to the constructor.
        """
        purgers = purgers_from_settings(read_setting(settings, "PURGERS") or ())
        length = read_setting(settings, "PURGE_QUEUE_LENGTH")
        if length is not None and "queue" not in options:
            if not isinstance(length, int) or isinstance(length, bool) or length < 1:
                raise ConfigurationError(
                    f"PURGE_QUEUE_LENGTH must be a whole number >= 1, got {length!r}.",
                    setting="PURGE_QUEUE_LENGTH",
                )
            options["queue"] = queue_for(cache, length)
        return cls(cache, purgers, **options)

    @property
    def purgers(self) -> Mapping[str, Purger]:
        """The purgers by name."""
        return self._delivery.purgers

    def __repr__(self) -> str:
        return f"Purges(cache={self.cache!r}, purgers={list(self.purgers.values())!r}, queue={self.queue!r})"

    def purge(self, *urls: str, soft: bool = False) -> PurgeReport:
        """Remove the pages at absolute ``urls`` from our cache and every proxy.

        ``soft``: proxies that can mark them stale instead (vmod_purge's
        ``purge.soft()``, Fastly's soft purge) do; our cache drops them.

        :raises InvalidPurgeError: if a URL is not absolute, or could inject a header.
        :raises BackendUnavailableError: if our cache is down (after the proxies were purged),
            as :meth:`invalidate_tags`: "not cached" would be untrue, and the page would come back.
        """
        job = PurgeJob.urls(list(urls), soft)
        report = PurgeReport()
        error: BaseException | None = None
        if self.cache is not None:
            # The backend itself, not the cache's failure policy (an outage is no miss here).
            backend = self.cache.backend
            try:
                report.cached += sum(bool(backend.delete(lookup)) for lookup in self._lookup_keys(job))
            except Exception as exc:
                error = exc
        report.merge(self._delivery.send(job))
        if error is not None:
            raise error
        return report

    def purge_prefix(self, *prefixes: str, soft: bool = False) -> PurgeReport:
        """Remove every page under these absolute URL prefixes from the proxies (Varnish ban, Cloudflare).

        Our cache cannot find pages by prefix: tag them and :meth:`invalidate_tags`.
        """
        return self._delivery.send(PurgeJob.prefixes(list(prefixes), soft))

    def ban(self, *patterns: str) -> PurgeReport:
        """Ban every page whose path matches one of the regular expressions, on every Varnish."""
        return self._delivery.send(PurgeJob.patterns(list(patterns)))

    def invalidate_tags(self, *tags: str, soft: bool = False) -> PurgeReport:
        """Invalidate pages (and entries) with any of ``tags`` in our cache, then on every proxy.

        ``soft``: pages are marked stale, not removed: our page cache serves them
        within their ``stale_while_revalidate`` window while one request
        re-renders (:func:`cachekit.pages.soft.soft_invalidate_tags`); Varnish
        uses ``xkey-softpurge`` (grace), Fastly its soft purge.

        :raises InvalidPurgeError: if a tag could break a header (space, comma, control character, too long).
        :raises BackendUnavailableError: if our cache is down (after the proxies were purged).
        """
        job = PurgeJob.tags(list(tags), soft)
        error: BaseException | None = None
        if self.cache is not None:
            try:
                if soft:
                    from cachekit.pages.soft import soft_invalidate_tags

                    soft_invalidate_tags(self.cache, job.values)
                else:
                    self.cache.invalidate_tags(*job.values)
            except Exception as exc:
                error = exc
        report = self._delivery.send(job)
        if error is not None:
            raise error
        return report

    def deliver_queued(self, limit: int = 100) -> PurgeReport:
        """Try up to ``limit`` queued purges that are due; what fails again waits longer."""
        return self._delivery.deliver_queued(limit)

    def start_delivery(self, interval: float = 5.0) -> None:
        """Deliver queued purges every ``interval`` seconds in a daemon thread (see :meth:`stop_delivery`)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._deliver_forever, args=(interval,), name="cachekit-purge", daemon=True
        )
        self._thread.start()

    def stop_delivery(self, timeout: float = 5.0) -> None:
        """Stop the background delivery thread (waiting at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _deliver_forever(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.deliver_queued()
            except Exception:
                logger.exception("delivering queued purges failed")


class AsyncPurges(_Front["AsyncCache"]):
    """:class:`Purges` for an :class:`~cachekit.aio.AsyncCache`: our cache awaited, proxies in a thread.

    Requests to proxies use :mod:`http.client` in :func:`asyncio.to_thread`
    (no async HTTP client is a dependency). The queue defaults to memory (not
    durable); pass ``queue=RedisPurgeQueue(redis.Redis(...))`` for a durable one.
    """

    def _page_cache(self, cache: AsyncCache, key_prefix: str, normalize_query: bool) -> Any:
        from cachekit.pages.asgi import AsyncPageCache

        return AsyncPageCache(cache=cache, key_prefix=key_prefix, normalize_query=normalize_query)

    def _default_queue(self, cache: AsyncCache | None) -> PurgeQueue:
        return MemoryPurgeQueue()

    async def purge(self, *urls: str, soft: bool = False) -> PurgeReport:
        """As :meth:`Purges.purge`."""
        job = PurgeJob.urls(list(urls), soft)
        report = PurgeReport()
        error: BaseException | None = None
        if self.cache is not None:
            try:
                for lookup in self._lookup_keys(job):
                    report.cached += bool(await self.cache.backend.delete(lookup))
            except Exception as exc:
                error = exc
        report.merge(await asyncio.to_thread(self._delivery.send, job))
        if error is not None:
            raise error
        return report

    async def purge_prefix(self, *prefixes: str, soft: bool = False) -> PurgeReport:
        """As :meth:`Purges.purge_prefix`."""
        return await asyncio.to_thread(self._delivery.send, PurgeJob.prefixes(list(prefixes), soft))

    async def ban(self, *patterns: str) -> PurgeReport:
        """As :meth:`Purges.ban`."""
        return await asyncio.to_thread(self._delivery.send, PurgeJob.patterns(list(patterns)))

    async def invalidate_tags(self, *tags: str, soft: bool = False) -> PurgeReport:
        """As :meth:`Purges.invalidate_tags`."""
        job = PurgeJob.tags(list(tags), soft)
        error: BaseException | None = None
        if self.cache is not None:
            try:
                if soft:
                    from cachekit.pages.soft import async_soft_invalidate_tags

                    await async_soft_invalidate_tags(self.cache, job.values)
                else:
                    await self.cache.invalidate_tags(*job.values)
            except Exception as exc:
                error = exc
        report = await asyncio.to_thread(self._delivery.send, job)
        if error is not None:
            raise error
        return report

    async def deliver_queued(self, limit: int = 100) -> PurgeReport:
        """As :meth:`Purges.deliver_queued`."""
        return await asyncio.to_thread(self._delivery.deliver_queued, limit)


__all__ = ["AsyncPurges", "PurgeReport", "Purges", "purgers_from_settings"]
