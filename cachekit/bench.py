"""Moved to :mod:`cachekit.ops.bench` (``cachekit bench``); this import path keeps working."""

from cachekit.ops.bench import DEFAULT_URLS as DEFAULT_URLS
from cachekit.ops.bench import NEEDS_MATPLOTLIB as NEEDS_MATPLOTLIB
from cachekit.ops.bench import VALUE as VALUE
from cachekit.ops.bench import Progress as Progress
from cachekit.ops.bench import Row as Row
from cachekit.ops.bench import format_table as format_table
from cachekit.ops.bench import operations as operations
from cachekit.ops.bench import register as register
from cachekit.ops.bench import run as run
from cachekit.ops.bench import run_cli as run_cli
from cachekit.ops.bench import write_png as write_png
