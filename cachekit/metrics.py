"""Moved to :mod:`cachekit.ops.metrics` (Prometheus collector, endpoint); this import path keeps working."""

from cachekit.ops.metrics import COUNTERS as COUNTERS
from cachekit.ops.metrics import GAUGES as GAUGES
from cachekit.ops.metrics import CacheCollector as CacheCollector
from cachekit.ops.metrics import CacheSource as CacheSource
from cachekit.ops.metrics import metrics_app as metrics_app
from cachekit.ops.metrics import render_text as render_text
from cachekit.ops.metrics import samples as samples
