"""The counters of one cache front and its failure policy: what a backend outage means.

Every front (:class:`~cachekit.Cache`, :class:`~cachekit.aio.AsyncCache`) holds one
:class:`Recorder` as ``cache.recorder``; the page cache and the stampede flows count
through it too, rather than reaching into the front's attributes.
"""

from __future__ import annotations

import logging
import threading
import time

from cachekit.exceptions import SerializationError
from cachekit.signing import BadSignatureError

# The failure policy logs as part of the cache front, where it lived first; log filters name it.
logger = logging.getLogger("cachekit.cache")


class Recorder:
    """Counts a front's hits, misses, writes and errors, and applies its failure policy.

    The counters are plain attributes, kept without a lock: under heavy threading
    a few increments may be lost, which is the price of leaving them always on.

    :param name: the cache's label in log lines.
    :param raises: ``True`` under ``on_error="raise"``: a failure is raised, not absorbed.
    """

    __slots__ = (
        "_last_error_at",
        "_last_warning_at",
        "_warning_lock",
        "bad_signatures",
        "deletes",
        "errors",
        "hits",
        "lock_waits",
        "misses",
        "name",
        "raises",
        "sets",
        "stale_serves",
    )

    def __init__(self, name: str, *, raises: bool) -> None:
        #: The cache's label in log lines.
        self.name = name
        #: Whether a failure is raised (``on_error="raise"``) rather than absorbed.
        self.raises = raises
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0
        self.lock_waits = self.stale_serves = self.bad_signatures = 0
        self._last_error_at = float("-inf")
        self._last_warning_at = float("-inf")
        self._warning_lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Return the counters by name (``hits``, ``misses``, ..., ``bad_signatures``)."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "sets": self.sets,
            "deletes": self.deletes,
            "errors": self.errors,
            "lock_waits": self.lock_waits,
            "stale_serves": self.stale_serves,
            "bad_signatures": self.bad_signatures,
        }

    def reset(self) -> None:
        """Set every counter back to zero."""
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0
        self.lock_waits = self.stale_serves = self.bad_signatures = 0

    def failed(self, operation: str, exc: Exception) -> None:
        """Count and log a backend failure; re-raise it under ``on_error="raise"``."""
        self.errors += 1
        if self.raises:
            raise exc
        now = time.monotonic()
        # One warning per burst of errors, and a reminder each minute of a long outage. The
        # check and the update are one step under a lock, or every thread of a burst warns.
        with self._warning_lock:
            warn = now - self._last_error_at > 10.0 or now - self._last_warning_at > 60.0
            if warn:
                self._last_warning_at = now
            self._last_error_at = now
        if warn:
            logger.warning("cache %s: %s failed, serving misses: %s", self.name or "-", operation, exc)
        else:
            logger.debug("cache %s: %s failed: %s", self.name or "-", operation, exc)

    def undecodable(self, key: str, exc: SerializationError) -> None:
        """Count a stored value that cannot be loaded (a miss); re-raise it under ``on_error="raise"``.

        A bad signature is a miss whatever ``on_error`` says.
        """
        self.errors += 1
        if isinstance(exc, BadSignatureError):
            # A forged or foreign value: a miss whatever on_error says, and one
            # warning per cache (a flood of forgeries must not flood the log).
            self.bad_signatures += 1
            log = logger.warning if self.bad_signatures == 1 else logger.debug
            log("cache %s: %r has a bad signature, not loaded (a miss): %s", self.name or "-", key, exc)
            return
        if self.raises:
            raise exc
        logger.warning(
            "cache %s: stored value for %r is unreadable, treating as a miss: %s", self.name or "-", key, exc
        )


__all__ = ["Recorder"]
