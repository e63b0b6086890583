"""Moved to :mod:`cachekit.ops.cli` (the ``cachekit`` command); this import path keeps working."""

from cachekit.ops.cli import COMMANDS as COMMANDS
from cachekit.ops.cli import DESCRIPTION as DESCRIPTION
from cachekit.ops.cli import EPILOG as EPILOG
from cachekit.ops.cli import EXIT_NOT_FOUND as EXIT_NOT_FOUND
from cachekit.ops.cli import EXIT_OK as EXIT_OK
from cachekit.ops.cli import EXIT_UNAVAILABLE as EXIT_UNAVAILABLE
from cachekit.ops.cli import EXIT_USAGE as EXIT_USAGE
from cachekit.ops.cli import CommandError as CommandError
from cachekit.ops.cli import build_parser as build_parser
from cachekit.ops.cli import main as main
