"""The ``SESSION_*`` settings: their names, a warning for misspelled ones, and the store they build.

:func:`store_from_settings` builds the store ``SESSION_ENGINE`` names (what
``SessionMiddleware.from_settings`` and the framework adapters use).

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

from cachekit.config import caches
from cachekit.config import coerce_option
from cachekit.config import import_string
from cachekit.config import read_setting
from cachekit.exceptions import ConfigurationError
from cachekit.serializers import Serializer
from sessions.serializers import TaggedJSONSerializer
from sessions.state import DEFAULT_AGE
from sessions.stores.base import Store
from sessions.stores.cache import CacheStore
from sessions.stores.cookie import SignedCookieStore

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


def _serializer_from_setting(value: Any) -> Serializer:
    if value is None or value in ("json", "tagged_json"):
        return TaggedJSONSerializer()
    if isinstance(value, str) and value.rsplit(".", 1)[-1].lower().startswith("pickle"):
        raise ConfigurationError(
            "SESSION_SERIALIZER cannot be pickle: a session store or cookie an attacker can write to "
            "would run code on load. Use 'json'.",
            setting="SESSION_SERIALIZER",
        )
    obj = import_string(value, "SESSION_SERIALIZER") if isinstance(value, str) else value
    if isinstance(obj, type):
        obj = obj()
    if not (callable(getattr(obj, "dumps", None)) and callable(getattr(obj, "loads", None))):
        raise ConfigurationError(
            f"SESSION_SERIALIZER must be 'json' or name an object with dumps/loads, got {value!r}.",
            setting="SESSION_SERIALIZER",
        )
    serializer: Serializer = obj
    return serializer


def _secret_keys(settings: Any) -> list[str | bytes]:
    secret = read_setting(settings, "SECRET_KEY")
    if not isinstance(secret, (str, bytes)) or not secret:
        got = "nothing" if secret is None else "an empty string" if not secret else type(secret).__name__
        raise ConfigurationError(
            f"SECRET_KEY must be set to a long random string for SESSION_ENGINE='signed_cookies'; got {got}.",
            setting="SECRET_KEY",
        )
    fallbacks = read_setting(settings, "SECRET_KEY_FALLBACKS", ())
    if (
        isinstance(fallbacks, (str, bytes))
        or not isinstance(fallbacks, (list, tuple))
        or not all(isinstance(key, (str, bytes)) and key for key in fallbacks)
    ):
        raise ConfigurationError(
            "SECRET_KEY_FALLBACKS must be a list of non-empty strings.", setting="SECRET_KEY_FALLBACKS"
        )
    return [secret, *fallbacks]


def store_from_settings(settings: Any) -> Store:
    """Build the session store named by ``SESSION_ENGINE`` (see ``SessionMiddleware.from_settings``).

    :raises ConfigurationError: naming the first missing or invalid setting.
    """

    def get(name: str, default: Any, kind: type) -> Any:
        return coerce_option(name, read_setting(settings, name, default), kind)

    options: dict[str, Any] = {
        "age": get("SESSION_COOKIE_AGE", DEFAULT_AGE, float),
        "idle_timeout": get("SESSION_IDLE_TIMEOUT", None, float),
        "refresh_interval": get("SESSION_IDLE_REFRESH_INTERVAL", None, float),
        "expire_at_browser_close": get("SESSION_EXPIRE_AT_BROWSER_CLOSE", False, bool),
        "serializer": _serializer_from_setting(read_setting(settings, "SESSION_SERIALIZER")),
    }
    engine = read_setting(settings, "SESSION_ENGINE", "cache")
    if engine == "cache":
        alias = get("SESSION_CACHE_ALIAS", "default", str)
        try:
            cache = caches.for_sessions(alias)
        except KeyError as exc:
            raise ConfigurationError(
                f"SESSION_CACHE_ALIAS: {exc.args[0]}", setting="SESSION_CACHE_ALIAS"
            ) from None
        return CacheStore(cache, **options)
    if engine in ("signed_cookies", "signed_cookie", "cookie"):
        revocation = get("SESSION_REVOCATION_CACHE", None, str)
        try:
            revocation_cache = None if revocation is None else caches[revocation]
        except KeyError as exc:
            raise ConfigurationError(
                f"SESSION_REVOCATION_CACHE: {exc.args[0]}", setting="SESSION_REVOCATION_CACHE"
            ) from None
        return SignedCookieStore(
            _secret_keys(settings),
            encrypt=get("SESSION_COOKIE_ENCRYPT", False, bool),
            revocation_cache=revocation_cache,
            **options,
        )
    if isinstance(engine, str) and "." in engine:
        factory = import_string(engine, "SESSION_ENGINE")
        from_settings = getattr(factory, "from_settings", None)
        if from_settings is None:
            raise ConfigurationError(
                f"SESSION_ENGINE {engine!r} must name a store class with a "
                "from_settings(settings) classmethod.",
                setting="SESSION_ENGINE",
            )
        store = from_settings(settings)
        if not isinstance(store, Store):
            raise ConfigurationError(
                f"SESSION_ENGINE {engine!r} did not build a Store.", setting="SESSION_ENGINE"
            )
        return store
    raise ConfigurationError(
        f"SESSION_ENGINE must be 'cache', 'signed_cookies' or a dotted path, got {engine!r}.",
        setting="SESSION_ENGINE",
    )


__all__ = [
    "FRAMEWORK_SETTINGS",
    "OUR_SETTINGS",
    "UnknownSettingWarning",
    "store_from_settings",
    "warn_unknown_settings",
]
