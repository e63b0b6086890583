"""The ``SESSION_*`` setting names, and a warning for misspelled ones.

``CACHES`` entries with an unknown key are refused, but a settings module holds
many names that are not ours (Django's and Flask's own ``SESSION_*`` settings
among them), so an unknown ``SESSION_*`` name is warned about, with the closest
known name, rather than refused.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

#: The ``SESSION_*`` settings cachekit reads (see ``SessionMiddleware.from_settings``).
OUR_SETTINGS = frozenset(
    {
        "SESSION_ENGINE",
        "SESSION_CACHE_ALIAS",
        "SESSION_COOKIE_NAME",
        "SESSION_COOKIE_AGE",
        "SESSION_COOKIE_DOMAIN",
        "SESSION_COOKIE_PATH",
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "SESSION_COOKIE_ENCRYPT",
        "SESSION_SAVE_EVERY_REQUEST",
        "SESSION_EXPIRE_AT_BROWSER_CLOSE",
        "SESSION_IDLE_TIMEOUT",
        "SESSION_IDLE_REFRESH_INTERVAL",
        "SESSION_SERIALIZER",
        "SESSION_REVOCATION_CACHE",
    }
)

#: ``SESSION_*`` settings of Django, Flask and Flask-Session: not ours, but not typos either.
FRAMEWORK_SETTINGS = frozenset(
    {
        # Django
        "SESSION_FILE_PATH",
        # Flask
        "SESSION_COOKIE_PARTITIONED",
        "SESSION_REFRESH_EACH_REQUEST",
        # Flask-Session
        "SESSION_TYPE",
        "SESSION_PERMANENT",
        "SESSION_USE_SIGNER",
        "SESSION_KEY_PREFIX",
        "SESSION_ID_LENGTH",
        "SESSION_SERIALIZATION_FORMAT",
        "SESSION_CLEANUP_N_REQUESTS",
        "SESSION_REDIS",
        "SESSION_MEMCACHED",
        "SESSION_CACHELIB",
        "SESSION_FILE_DIR",
        "SESSION_FILE_THRESHOLD",
        "SESSION_FILE_MODE",
        "SESSION_MONGODB",
        "SESSION_MONGODB_DB",
        "SESSION_MONGODB_COLLECT",
        "SESSION_SQLALCHEMY",
        "SESSION_SQLALCHEMY_TABLE",
        "SESSION_SQLALCHEMY_SEQUENCE",
        "SESSION_SQLALCHEMY_SCHEMA",
        "SESSION_SQLALCHEMY_BIND_KEY",
        "SESSION_DYNAMODB",
        "SESSION_DYNAMODB_TABLE_NAME",
    }
)


class UnknownSettingWarning(UserWarning):
    """A ``SESSION_*`` setting that neither cachekit nor a known framework reads."""


def _names(settings: Any) -> Iterable[str]:
    if isinstance(settings, Mapping):
        return [name for name in settings if isinstance(name, str)]
    return dir(settings)


def warn_unknown_settings(settings: Any, *, stacklevel: int = 2) -> list[str]:
    """Warn about each unknown ``SESSION_*`` name in ``settings``; return those names.

    :param settings: a mapping (a dict, Flask's ``app.config``) or an object/module.
    :param stacklevel: passed to :func:`warnings.warn`, counted from the caller.
    """
    known = OUR_SETTINGS | FRAMEWORK_SETTINGS
    unknown = sorted(name for name in _names(settings) if name.startswith("SESSION_") and name not in known)
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(OUR_SETTINGS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"cachekit reads: {', '.join(sorted(OUR_SETTINGS))}."
        warnings.warn(
            f"Unknown session setting {name} is ignored; {hint}",
            UnknownSettingWarning,
            stacklevel=stacklevel + 1,
        )
    return unknown


__all__ = ["FRAMEWORK_SETTINGS", "OUR_SETTINGS", "UnknownSettingWarning", "warn_unknown_settings"]
