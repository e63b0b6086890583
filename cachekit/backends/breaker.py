"""A circuit breaker: fail fast while a cache server is down, then probe it once.

A server that hangs makes every call pay its socket timeout. The breaker counts
outages (:class:`~cachekit.exceptions.BackendUnavailableError` and its kind, never
a server's error reply to a bad command); after ``failures`` of them within
``window`` seconds it *opens* and :meth:`CircuitBreaker.before_call` raises
:class:`~cachekit.exceptions.BackendUnavailableError` at once, without touching the
network, for ``cooldown`` seconds. Then it is *half-open*: exactly one caller is let
through as a probe while the others still fail fast. The probe's :meth:`success`
closes the breaker; its :meth:`failure` opens it again for another cool-down.

A backend uses it around each network call::

    breaker.before_call()
    try:
        reply = client.get(key)
    except OutageError:
        breaker.failure()
        raise
    breaker.success()

The breaker is thread-safe and holds no I/O, so sync and async backends share it
(its lock is held for a few attribute updates only, never across an await).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable

from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import CacheKitError

__all__ = ["CircuitBreaker", "breaker_stats"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts outages of one server (or node) and fails calls fast while it is down.

    :param failures: outages within ``window`` that open the breaker (at least 1).
    :param window: seconds over which outages are counted.
    :param cooldown: seconds the breaker stays open before it lets one probe through.
    :param clock: a monotonic clock in seconds; tests inject a fake one.
    :param name: what the breaker guards (e.g. ``"redis 127.0.0.1:6379"``), for
        messages and :meth:`snapshot`.
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        window: float = 10.0,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures!r}")
        if window <= 0 or cooldown <= 0:
            raise ValueError(f"window and cooldown must be positive, got {window!r} and {cooldown!r}")
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False
        self._probe_started = 0.0
        #: Times the breaker went from closed (or half-open) to open.
        self.trips = 0
        #: Calls refused without touching the server.
        self.rejections = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (open and the cool-down has passed)."""
        with self._lock:
            return self._current_state()

    def _current_state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
            return HALF_OPEN
        return self._state

    def before_call(self) -> None:
        """Let a call through, or raise at once while the server is known to be down.

        :raises BackendUnavailableError: the breaker is open, or half-open with its
            one probe already under way.
        """
        if self._state == CLOSED:  # the hot path: no lock while all is well
            return
        with self._lock:
            state = self._current_state()
            if state == CLOSED:
                return
            now = self._clock()
            # A probe that never reported back (its caller died or hit a bug) must
            # not keep the breaker shut forever: after a cool-down another may go.
            if state == HALF_OPEN and (not self._probing or now - self._probe_started >= self.cooldown):
                self._probing = True
                self._probe_started = now
                self._state = HALF_OPEN
                return
            self.rejections += 1
        label = f" for {self.name}" if self.name else ""
        raise BackendUnavailableError(
            f"Circuit breaker open{label}: the server failed recently; failing fast."
        )

    def success(self) -> None:
        """Record a call that reached the server; closes a half-open breaker."""
        if self._state == CLOSED and not self._recent:
            return
        with self._lock:
            if self._state != CLOSED:
                self._state = CLOSED
                self._probing = False
            self._recent.clear()

    def failure(self) -> None:
        """Record an outage; opens the breaker after enough of them, or after a failed probe."""
        with self._lock:
            now = self._clock()
            if self._state != CLOSED:
                # A failed probe (or a call let through before the breaker opened):
                # stay open for another full cool-down.
                if self._probing or self._current_state() == HALF_OPEN:
                    self._open(now)
                return
            self._recent.append(now)
            while self._recent and now - self._recent[0] > self.window:
                self._recent.popleft()
            if len(self._recent) >= self.failures:
                self._open(now)

    def _open(self, now: float) -> None:
        self._state = OPEN
        self._opened_at = now
        self._probing = False
        self._recent.clear()
        self.trips += 1

    def snapshot(self) -> dict[str, int | float | str]:
        """The breaker's state and counters, for ``stats()`` and metrics."""
        with self._lock:
            return {
                "name": self.name,
                "state": self._current_state(),
                "recent_failures": len(self._recent),
                "trips": self.trips,
                "rejections": self.rejections,
            }

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state}>"


def breaker_stats(backend: object) -> dict[str, int]:
    """``breaker_open``, ``breaker_trips`` and ``breaker_rejections`` summed over a backend's breakers.

    A backend with breakers exposes them as ``breakers() -> Iterable[CircuitBreaker]``
    (one per server or node); one without reports zeros.
    """
    opened = trips = rejections = 0
    try:
        found: Callable[[], Iterable[CircuitBreaker]] | None = getattr(backend, "breakers", None)
        breakers = list(found()) if found is not None else []
    except CacheKitError:
        breakers = []  # a test double (or a proxy) that fails every attribute: stats() still answers
    for breaker in breakers:
        opened += breaker.state != CLOSED
        trips += breaker.trips
        rejections += breaker.rejections
    return {"breaker_open": opened, "breaker_trips": trips, "breaker_rejections": rejections}
