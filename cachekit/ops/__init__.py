"""Operator tools: the ``cachekit`` command, ``cachekit bench``, composition checks, metrics, latency.

One module per subcommand (:mod:`~cachekit.ops.stats`, :mod:`~cachekit.ops.keys`,
:mod:`~cachekit.ops.purge`, ...); each has ``register(command)``, which adds its
subcommands to the parser that :mod:`cachekit.ops.cli` builds. What they share
(exit codes, the one-line error, opening a cache for one command) is in
:mod:`cachekit.ops.common`. The old paths (``cachekit.cli``, ``cachekit.check``,
``cachekit.metrics``, ``cachekit.bench``, ``cachekit.latency``) keep working.
"""
