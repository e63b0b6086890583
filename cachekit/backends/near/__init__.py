"""The near cache's backend-independent parts, shared by the Redis and memcached backends.

Not API: users turn a near cache on with ``near_cache=N`` on a backend (docs/backends.md).
The package holds what does not depend on which server stores the data:

- :mod:`~cachekit.backends.near.store`: the local store, the decoded-value memo, the
  in-flight guard (a read that raced an invalidation never fills) and the readiness and
  flush rules (serve nothing unless every invalidation stream is subscribed);
- :mod:`~cachekit.backends.near.listener`: the invalidation streams, threads with one
  RESP2 connection each (Redis ``CLIENT TRACKING`` or a pub/sub channel), and the
  watcher that follows a changing set of streams (a Redis Cluster's primaries);
- :mod:`~cachekit.backends.near.front`: what every near-cache backend adds to its
  server backend (the ``near``/``near_stats``/``near_memo`` accessors, "write, then
  drop the keys locally").

The server-specific parts stay with their backends: ``backends/redis/_near.py`` (reads
with ``PTTL``, Cluster slot maps) and ``backends/memcached/_near.py`` (the channel writers
publish on, ``near_cache_ttl``).
"""
