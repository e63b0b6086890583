"""``python -m cachekit``: the same as the ``cachekit`` command."""

import sys

from cachekit.ops.cli import main

sys.exit(main())
