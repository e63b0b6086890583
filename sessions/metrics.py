"""Expose session-store counters to Prometheus.

Each server-side store counts what it does (:meth:`sessions.CacheStore.stats`):
sessions ``created``, ``revoked`` by ``revoke_user``, found ``expired``, and
compare-and-set ``conflicts_retried``. Register one collector for the stores an
app runs::

    from prometheus_client import REGISTRY
    from sessions.metrics import SessionStoreCollector

    REGISTRY.register(SessionStoreCollector({"web": store}))

Live sessions are not exported: no cache can count them without a scan.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import Protocol


class CountingStore(Protocol):
    """A store with counters, as :class:`~sessions.CacheStore` and its async twin have."""

    def stats(self) -> dict[str, int]:
        """The store's counters since it was built."""
        ...


#: Counter name in a store's ``stats()`` -> help text.
COUNTERS = {
    "created": "Sessions created (new ids, key cycles included).",
    "revoked": "Sessions ended by revoke_user.",
    "expired": "Sessions found expired on load or in a user's index.",
    "conflicts_retried": "Session saves that lost a compare-and-set race to another request and retried.",
}

StoreSource = Callable[[], Mapping[str, CountingStore]]


class SessionStoreCollector:
    """A ``prometheus_client`` collector: one counter family per statistic, labelled by store name.

    :param stores: the stores to export by name, or a callable returning them
        (for stores built after the collector is registered).
    """

    def __init__(self, stores: Mapping[str, CountingStore] | StoreSource) -> None:
        self._source: StoreSource = stores if callable(stores) else lambda: stores

    def collect(self) -> Iterator[Any]:
        """Yield ``cachekit_sessions_<name>_total`` for every counter of every store."""
        from prometheus_client.core import CounterMetricFamily

        families = {
            name: CounterMetricFamily(f"cachekit_sessions_{name}", help_text, labels=["store"])
            for name, help_text in COUNTERS.items()
        }
        for label, store in sorted(self._source().items()):
            stats = store.stats()
            for name, family in families.items():
                family.add_metric([label], float(stats.get(name, 0)))
        yield from families.values()
