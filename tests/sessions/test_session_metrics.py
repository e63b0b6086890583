"""Session-store counters reach Prometheus through sessions.metrics.SessionStoreCollector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest

import cachekit
from sessions.metrics import COUNTERS
from sessions.metrics import SessionStoreCollector
from sessions.session import Session
from sessions.stores.cache import CacheStore


def test_store_counters_are_exported_by_store_name() -> None:
    store = CacheStore(cachekit.from_url("locmem://session-metrics"))
    for _ in range(3):
        session = Session(store)
        session.set_user("ada")
        session.save()
    assert store.revoke_user("ada") == 3
    registry = CollectorRegistry()
    registry.register(SessionStoreCollector({"web": store}))
    text = generate_latest(registry).decode()
    assert 'cachekit_sessions_created_total{store="web"} 3.0' in text
    assert 'cachekit_sessions_revoked_total{store="web"} 3.0' in text
    for name in COUNTERS:
        assert f"cachekit_sessions_{name}_total" in text
        assert name in store.stats()  # every exported name is one the store counts


def test_stores_built_later_are_found_through_a_callable() -> None:
    stores: dict[str, CacheStore] = {}
    registry = CollectorRegistry()
    registry.register(SessionStoreCollector(lambda: stores))
    assert "store=" not in generate_latest(registry).decode()
    stores["late"] = CacheStore(cachekit.from_url("locmem://session-metrics-late"))
    Session(stores["late"]).save()
    assert 'cachekit_sessions_created_total{store="late"} 1.0' in generate_latest(registry).decode()
