"""Moved to :mod:`cachekit.ops.check` (composition checks); this import path keeps working."""

from cachekit.ops.check import FALLBACK as FALLBACK
from cachekit.ops.check import PAGE_CACHES as PAGE_CACHES
from cachekit.ops.check import PROXY_INSIDE as PROXY_INSIDE
from cachekit.ops.check import PROXY_MIDDLEWARES as PROXY_MIDDLEWARES
from cachekit.ops.check import SESSIONS_LOCAL as SESSIONS_LOCAL
from cachekit.ops.check import Finding as Finding
from cachekit.ops.check import add_arguments as add_arguments
from cachekit.ops.check import app_findings as app_findings
from cachekit.ops.check import cache_findings as cache_findings
from cachekit.ops.check import findings_for as findings_for
from cachekit.ops.check import page_cache_findings as page_cache_findings
from cachekit.ops.check import register as register
from cachekit.ops.check import reset_warnings as reset_warnings
from cachekit.ops.check import run_cli as run_cli
from cachekit.ops.check import session_findings as session_findings
from cachekit.ops.check import walk as walk
from cachekit.ops.check import warn_once as warn_once
from cachekit.ops.check import worker_processes as worker_processes
