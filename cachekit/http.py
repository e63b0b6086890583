"""Pure HTTP caching rules for a shared cache; they live in :mod:`cachekit.pages.rules`."""

from __future__ import annotations

from cachekit.pages import rules as _rules
from cachekit.pages.rules import *  # noqa: F403

__all__ = list(_rules.__all__)
