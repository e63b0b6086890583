"""Moved to :mod:`cachekit.ops.latency` (latency histograms); this import path keeps working."""

from cachekit.ops.latency import BOUNDS_US as BOUNDS_US
from cachekit.ops.latency import LatencyHistogram as LatencyHistogram
